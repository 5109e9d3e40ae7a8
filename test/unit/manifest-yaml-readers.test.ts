import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDocument, stringify } from 'yaml';
import { parseManifestFile, quickYamlValue } from '../../src/providers/manifest-files.js';

/**
 * File mode reads most documents with js-yaml (fast) and falls back to the yaml package, which
 * words the errors. Whatever js-yaml reads must be what the yaml package reads.
 */

/** The yaml package's reading, or undefined when it has errors. */
function reference(text: string): { value: unknown } | undefined {
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) return undefined;
  return { value: doc.toJS() as unknown };
}

function agrees(text: string): void {
  const quick = quickYamlValue(text);
  if (quick === undefined) return;
  expect(reference(text), `yaml package on ${JSON.stringify(text)}`).toEqual(quick);
}

const SCALARS = [
  '017', '0o17', '0x1A', '0b101', '1_000', '.5', '+1', '-0', '1.', '1e3', '1E+3', '6.8523015e+5', '.NaN', '.nan', '-.inf', '+.Inf', '.INF', '12345678901234567890', '9007199254740993',
  'true', 'True', 'TRUE', 'tRue', 'yes', 'no', 'on', 'off', 'y', 'null', 'Null', 'NULL', '~', '', '2024-10-21', '2001-12-14t21:59:43.10-05:00', '1:20', '190:20:30',
  '"\\x41\\u0042\\N\\_"', '"\\/"', "'it''s'", '""', "''", '"multi\n  line"', 'plain words', 'a#b', 'x # comment', '"# not a comment"', '=', '<<', '"<<"', 'a: b', '@x', '`x', '-', '- x', '? x', ':x', 'x:',
  '[a, b, ]', '{a: 1, }', '[a, {b: c}, [d]]', '{a: [1, 2], b: {c: d}}', '{x}', '[x: 1]', '{x: }', '&a x', '*a', '|\n  block\n  text\n', '>-\n  folded\n\n  para\n', '|+\n  keep\n\n', '|2\n   indented\n',
  '"tab\there"', 'with\ttab', 'Bearer sk-123', 'http://host:8080/path?q=1', '10.0.0.1', '443',
];
const KEYS = ['a', 'b', 'key with spaces', '"quoted"', "'single'", '1', '1.0', '0x10', 'true', '~', 'null', '""', '? complex', '[1, 2]', '-1', '.inf', '<<', '__proto__', 'k', 'Authorization'];

const scalar = fc.constantFrom(...SCALARS);
const key = fc.constantFrom(...KEYS);
const line = fc.tuple(fc.integer({ min: 0, max: 3 }), fc.oneof(fc.tuple(key, scalar).map(([k, v]) => `${k}: ${v}`), key.map((k) => `${k}:`), scalar.map((v) => `- ${v}`), fc.constant('# comment')));
const documentText = fc.array(line, { minLength: 1, maxLength: 8 }).map((lines) => lines.map(([indent, text]) => `${'  '.repeat(indent)}${text}`).join('\n') + '\n');

describe('js-yaml and the yaml package', () => {
  it('read generated documents alike (or js-yaml leaves them to the yaml package)', () => {
    fc.assert(fc.property(documentText, agrees), { numRuns: 3000 });
  });

  it('read every scalar alike as a value and as a key', () => {
    for (const v of SCALARS) agrees(`a: ${v}\n`);
    for (const k of KEYS) agrees(`${k}: v\n`);
    for (const k of SCALARS) agrees(`${k}: v\n`);
  });

  it('read what the yaml package writes alike', () => {
    const value = fc.jsonValue({ maxDepth: 4 });
    fc.assert(
      fc.property(value, fc.constantFrom('PLAIN', 'QUOTE_DOUBLE', 'QUOTE_SINGLE', 'BLOCK_LITERAL', 'BLOCK_FOLDED') as fc.Arbitrary<'PLAIN'>, fc.boolean(), (v, defaultStringType, flow) => {
        agrees(stringify({ spec: v }, { defaultStringType, collectionStyle: flow ? 'flow' : 'block' }));
      }),
      { numRuns: 1000 },
    );
  });

  it('leaves to the yaml package what js-yaml would read differently', () => {
    expect(quickYamlValue(': x\n')).toBeUndefined();
    expect(quickYamlValue('~: x\n')).toBeUndefined();
    expect(quickYamlValue('%YAML 1.1\n---\na: yes\n')).toBeUndefined();
    expect(quickYamlValue('a: !!float 1\n')).toBeUndefined();
    expect(quickYamlValue('a: &x {b: 1}\nc: *x\n')).toBeUndefined();
    expect(quickYamlValue('a: 1\na: 2\n')).toBeUndefined();
    expect(quickYamlValue('a: {b: 1}\n')).toEqual({ value: { a: { b: 1 } } });
  });

  it("words a syntax error as the yaml package does, with the file's line", () => {
    const [doc] = parseManifestFile('f.yaml', '# header\napiVersion: v1\nkind: Secret\nmetadata: {name: x\n');
    expect(doc?.state).toBe('syntax');
    if (doc?.state !== 'syntax') return;
    expect(doc.problems[0]?.message).toMatch(/^YAML syntax error at line 5, column 1: Flow map in block collection must be sufficiently indented and end with a \}/);
  });
});
