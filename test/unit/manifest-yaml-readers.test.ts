import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDocument, stringify } from 'yaml';
import { isAscii } from 'node:buffer';
import { readdirSync, readFileSync } from 'node:fs';
import { generateManifests } from '../../bench/translate.js';
import { parseManifestFile, quickYamlValue, yamlDocuments } from '../../src/providers/manifest-files.js';
import { readBlockYaml } from '../../src/providers/yaml-block.js';

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
  const block = readBlockYaml(text);
  if (block !== undefined) expect(reference(text), `yaml package on ${JSON.stringify(text)}, read by readBlockYaml`).toEqual(block);
  // File mode hands an ASCII document's bytes along, and its strings are decoded from them.
  const bytes = Buffer.from(text, 'utf8');
  if (isAscii(bytes)) expect(readBlockYaml(text, bytes), `readBlockYaml on the bytes of ${JSON.stringify(text)}`).toEqual(block);
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

/** Lines in the block reader's subset, and lines just outside it, at any indentation. */
const BLOCK_VALUES = [
  'plain', 'two words', 'x # comment', 'a#b', 'a:b', 'http://h:80/p', '10.0.0.1', '2024-10-21', '443', '0', '007', '1.5', '1e3', '.5', '.inf', '.x', '+1', '+x', '-1', '-x', 'true', 'False', 'yes', 'null', '~', 'NULL', 'nULL',
  '"double"', '"with \\ slash"', '"a" # c', '"a"#c', '"a" b', "'single'", "'it''s'", "''", "'a' # c", "'open", '"open', 'a: b', 'x:', 'a  b  ', '<<', '[a]', '{a: 1}', '&x a', '*x', '|', '>-', '@x', '`x', '? x', '%x', 'é ü 日本',
];
const BLOCK_KEYS = ['a', 'b', 'name', 'app.kubernetes.io/name', 'x-api-key', '_x', 'true', 'Null', 'null', '__proto__', '1', 'a b', '"q"', '-a', 'constructor', 'toString'];
const blockLine = fc.tuple(
  fc.integer({ min: 0, max: 6 }),
  fc.oneof(
    fc.tuple(fc.constantFrom(...BLOCK_KEYS), fc.constantFrom(...BLOCK_VALUES)).map(([k, v]) => `${k}: ${v}`),
    fc.constantFrom(...BLOCK_KEYS).map((k) => `${k}:`),
    fc.constantFrom(...BLOCK_VALUES).map((v) => `- ${v}`),
    fc.tuple(fc.constantFrom(...BLOCK_KEYS), fc.constantFrom(...BLOCK_VALUES)).map(([k, v]) => `- ${k}: ${v}`),
    fc.constantFrom(...BLOCK_KEYS).map((k) => `- ${k}:`),
    fc.constantFrom('-', '- - a', '# comment', '', '---', '--- # c', '...', 'a:\tb', '\ta: b', 'key:  # c'),
  ),
);
const blockDocument = fc.array(blockLine, { minLength: 1, maxLength: 12 }).map((lines) => lines.map(([indent, text]) => `${' '.repeat(indent)}${text}`).join('\n') + '\n');

describe('the block reader', () => {
  it('reads what the yaml package reads, on generated documents, or leaves them to the others', () => {
    fc.assert(fc.property(blockDocument, agrees), { numRuns: 5000 });
  });

  it('reads a document of thousands of lines, and the small ones after it, as the yaml package does', () => {
    const big = { kind: 'List', items: Array.from({ length: 3000 }, (_, i) => ({ name: `item-${i}`, nested: { port: i } })) };
    const small = { kind: 'Secret', metadata: { name: 'k', namespace: 'ai' }, stringData: { Authorization: 'Bearer sk-1' } };
    for (const value of [small, big, small, big, small]) {
      const text = stringify(value);
      expect(readBlockYaml(text)).toEqual({ value });
    }
  });

  it('reads what the yaml package writes in block style, as the yaml package reads it', () => {
    const words = fc.constantFrom('a', 'b', 'name', 'x-api-key', 'app.kubernetes.io/name', '_x', 'model');
    const key = fc.oneof({ arbitrary: words, weight: 8 }, { arbitrary: fc.constantFrom(...BLOCK_KEYS), weight: 1 }, { arbitrary: fc.string(), weight: 1 });
    const text = fc.oneof({ arbitrary: fc.constantFrom(...BLOCK_VALUES), weight: 4 }, { arbitrary: fc.string(), weight: 1 });
    const leaf = fc.oneof(text, fc.integer(), fc.double(), fc.boolean(), fc.constant(null));
    const value = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('node'), { maxLength: 4 }), fc.dictionary(key, tie('node'), { maxKeys: 4 })),
      top: fc.dictionary(key, tie('node'), { minKeys: 1, maxKeys: 5 }),
    })).top;
    let read = 0;
    fc.assert(
      fc.property(value, fc.constantFrom('PLAIN', 'QUOTE_DOUBLE', 'QUOTE_SINGLE') as fc.Arbitrary<'PLAIN'>, fc.integer({ min: 2, max: 4 }), fc.boolean(), (v, defaultStringType, indent, indentSeq) => {
        const text = stringify(v, { defaultStringType, indent, indentSeq });
        if (readBlockYaml(text) !== undefined) read++;
        agrees(text);
      }),
      { numRuns: 2000 },
    );
    // Negative and fractional numbers and escaped strings are outside the subset, so most of these are left to the others; a reader that gives up on everything would be no use.
    expect(read).toBeGreaterThan(40);
  });

  it("reads every document of the bench's configuration, and those of examples/ it reads, as the yaml package does", () => {
    const bench = generateManifests(50).map((doc) => stringify(doc));
    for (const text of bench) {
      expect(readBlockYaml(text), text).toBeDefined();
      agrees(text);
    }
    // Written by hand, with flow mappings: read by the others, mostly.
    for (const file of readdirSync('examples').filter((f) => /\.ya?ml$/.test(f))) {
      for (const { text } of yamlDocuments(readFileSync(`examples/${file}`))) agrees(text);
    }
  });

  it('reads the shapes manifests use', () => {
    const text = '---\n# c\napiVersion: v1\nkind: Secret # k\nmetadata:\n  name: a\n  labels:\n    app.kubernetes.io/name: x\nspec:\n  list:\n  - a\n  - b: 1\n    c: "q"\n  -\n  - \'it\'\'s\'\n  empty:\n  n: ~\n';
    expect(readBlockYaml(text)).toEqual({ value: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'a', labels: { 'app.kubernetes.io/name': 'x' } }, spec: { list: ['a', { b: 1, c: 'q' }, null, "it's"], empty: null, n: null } } });
    expect(reference(text)).toEqual(readBlockYaml(text));
  });

  it('leaves what it does not read to the others', () => {
    for (const text of ['a: 1\na: 2\n', 'a: [1]\n', 'a: |\n  x\n', 'a: "x\\ny"\n', 'a: b\n  c\n', '- a\n', 'a: 1.5\n', 'null: 1\n', 'a:\tb\n', 'a: &x 1\n', 'a: 1\n--- \nb: 2\n', '# only a comment\n']) {
      expect(readBlockYaml(text), text).toBeUndefined();
    }
  });
});

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
