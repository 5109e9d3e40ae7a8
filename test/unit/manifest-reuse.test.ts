import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LineCounter, parseAllDocuments } from 'yaml';
import { parseManifest } from '../../src/api/manifest.js';
import type { ManifestDocument } from '../../src/providers/manifest-files.js';
import { parseManifestFile } from '../../src/providers/manifest-files.js';

/**
 * A file re-read after an edit parses only the documents whose text changed; the others are the
 * previous documents (same objects, so translation sees them unchanged). The documents of a file
 * must be what the yaml package reads in the whole file, whatever the split by text guessed.
 */

const secret = (name: string, value = 'Bearer sk-1'): string => `apiVersion: v1\nkind: Secret\nmetadata:\n  name: ${name}\n  namespace: ai\nstringData:\n  Authorization: ${value}\n`;
const route = (name: string, extra = ''): string =>
  `apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: ${name}\n  namespace: ai\nspec:\n  parentRefs: [{name: gw}]\n${extra}`;
const file = (docs: readonly string[]): string => docs.map((d) => `---\n${d}`).join('');

function objectOf(doc: ManifestDocument | undefined): unknown {
  if (doc?.state !== 'object') throw new Error(`expected an object, got ${JSON.stringify(doc)}`);
  return doc.object;
}

describe('parseManifestFile with the previous documents of the file', () => {
  it('parses only the edited document; the others are the very documents of the last parse', () => {
    const docs = [secret('a'), secret('b'), secret('c'), route('r')];
    const before = parseManifestFile('f.yaml', file(docs));
    const edited = [...docs];
    edited[1] = secret('b', 'Bearer sk-2');
    const after = parseManifestFile('f.yaml', file(edited), undefined, before);
    expect(after).toHaveLength(4);
    expect(after[0]).toBe(before[0]);
    expect(after[2]).toBe(before[2]);
    expect(after[3]).toBe(before[3]);
    expect(after[1]).not.toBe(before[1]);
    expect(objectOf(after[1])).toMatchObject({ kind: 'Secret', value: { stringData: { Authorization: 'Bearer sk-2' } } });
    // The same as a parse from scratch.
    expect(after.map(comparable)).toEqual(parseManifestFile('f.yaml', file(edited)).map(comparable));
  });

  it('keeps the validated object of a document that moved, under its new index, warnings included', () => {
    const docs = [secret('a'), route('r', '  rules: [{backendRef: {name: x}}]\n')];
    const before = parseManifestFile('f.yaml', file(docs));
    const warned = before[1];
    if (warned?.state !== 'object') throw new Error('route not parsed');
    expect(warned.warnings.map((w) => w.source)).toEqual(['f.yaml#1']);
    const after = parseManifestFile('f.yaml', file([secret('new'), ...docs]), undefined, before);
    expect(after.map((d) => d.source)).toEqual(['f.yaml#0', 'f.yaml#1', 'f.yaml#2']);
    expect(objectOf(after[1])).toBe(objectOf(before[0]));
    expect(objectOf(after[2])).toBe(objectOf(before[1]));
    const moved = after[2];
    if (moved?.state !== 'object') throw new Error('route not reused');
    expect(moved.warnings.map((w) => w.source)).toEqual(['f.yaml#2']);
    expect(warned.warnings.map((w) => w.source)).toEqual(['f.yaml#1']);
  });

  it('names the new index in the problems of a moved invalid document', () => {
    const bad = 'apiVersion: v1\nkind: Secret\nmetadata: {name: bad, namespace: ai}\nstringData: [1]\n';
    const before = parseManifestFile('f.yaml', file([bad]));
    expect(before[0]?.state).toBe('invalid');
    const after = parseManifestFile('f.yaml', file([secret('a'), bad]), undefined, before);
    expect(after[1]?.state).toBe('invalid');
    if (after[1]?.state !== 'invalid') return;
    expect(after[1].problems.length).toBeGreaterThan(0);
    expect(after[1].problems.every((p) => p.source === 'f.yaml#1')).toBe(true);
  });

  it('parses a broken document again when lines above it move, so its error names the right line', () => {
    const broken = 'apiVersion: v1\nkind: Secret\nmetadata: {name: x\n';
    const before = parseManifestFile('f.yaml', file([broken]));
    const after = parseManifestFile('f.yaml', file([secret('a'), broken]), undefined, before);
    const message = (d: ManifestDocument | undefined): string => (d?.state === 'syntax' ? (d.problems[0]?.message ?? '') : `not a syntax error: ${d?.state}`);
    expect(message(before[0])).toMatch(/line 5,/);
    expect(message(after[1])).toMatch(/line 13,/);
    expect(after[1]?.source).toBe('f.yaml#1');
  });

  it('gives what a parse from scratch gives, whatever the previous text was', () => {
    fc.assert(
      fc.property(fileText, fileText, (first, second) => {
        const previous = parseManifestFile('f.yaml', first);
        expect(parseManifestFile('f.yaml', second, undefined, previous).map(comparable)).toEqual(parseManifestFile('f.yaml', second).map(comparable));
      }),
      { numRuns: 200 },
    );
  });
});

describe('document boundaries', () => {
  const cases: Record<string, string> = {
    'a byte order mark before a comment and a marker': '\uFEFF# header\n---\na: 1\n',
    'a byte order mark then a marker': '\uFEFF---\na: 1\n---\nb: 2\n',
    'a byte order mark before a later document': 'a: 1\n---\n\uFEFF# c\n---\nb: 2\n',
    'a byte order mark before a bare document': '\uFEFFa: 1\n---\nb: 2\n',
    'an end marker outside a document': 'a: 1\n...\n...\nb: 2\n',
    'carriage returns alone': 'a: 1\r---\rb: 2\r',
    'a document start marker inside a top-level block scalar': '--- |\nfoo\n--- bar\n',
    'markers in quoted strings': 'a: "x\n--- y"\n---\nb: \'p\n... q\'\n',
    'markers in an indented block scalar': 'a: |\n  ---\n  ...\n---\nb: 2\n',
  };
  for (const [name, text] of Object.entries(cases)) {
    it(`are the yaml package's: ${name}`, () => {
      expect(parseManifestFile('f.yaml', text).map(comparable)).toEqual(reference('f.yaml', text));
    });
  }

  it("are the yaml package's for generated files with markers in scalars, comments, directives and end markers", () => {
    fc.assert(
      fc.property(fileText, (text) => {
        expect(parseManifestFile('f.yaml', text).map(comparable)).toEqual(reference('f.yaml', text));
      }),
      { numRuns: 300 },
    );
  });
});

/** What a document means to a user: its state, index, object or problems (not its text hash). */
function comparable(doc: ManifestDocument): unknown {
  switch (doc.state) {
    case 'object':
      return { state: doc.state, source: doc.source, id: doc.id, value: doc.object.value, warnings: doc.warnings };
    case 'invalid':
      return { state: doc.state, source: doc.source, id: doc.id, problems: doc.problems };
    case 'syntax':
      // Where the first error is; the yaml package's wording of it is its own.
      return { state: doc.state, source: doc.source, problems: doc.problems.map((p) => /^YAML syntax error at line \d+, column \d+/.exec(p.message)?.[0] ?? p.message) };
    case 'ignored':
      return { state: doc.state, source: doc.source };
  }
}

/** The documents as the yaml package reads the whole file. */
function reference(name: string, text: string): unknown[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { prettyErrors: false, lineCounter });
  return docs.map((doc, i) => {
    const source = `${name}#${i}`;
    const [error] = doc.errors;
    if (error !== undefined) {
      const { line, col } = lineCounter.linePos(error.pos[0]);
      return { state: 'syntax', source, problems: [`YAML syntax error at line ${line}, column ${col}`] };
    }
    const result = parseManifest(doc.toJS(), source);
    if (result.ok === 'ignored') return { state: 'ignored', source };
    if (result.ok === false) return { state: 'invalid', source, id: result.id, problems: result.problems };
    return { state: 'object', source, id: result.id, value: result.object.value, warnings: result.warnings };
  });
}

/** Values that put markers, quotes and comments where a split by lines could go wrong. */
const scalar = fc.constantFrom(
  'plain',
  '"double --- quoted"',
  "'single ... quoted'",
  '|\n    ---\n    ...\n    text',
  '>-\n    folded\n    --- not a marker',
  '"multi\n    line"',
  '"broken\n--- quote"',
  '# only a comment',
  '[a, b]',
  '{k: v}',
  "'it''s'",
);
const documentText = fc.oneof(
  fc.tuple(fc.constantFrom('a', 'b', 'c'), scalar).map(([name, value]) => `apiVersion: v1\nkind: Secret\nmetadata:\n  name: ${name}\n  namespace: ai\nstringData:\n  key: ${value}\n`),
  fc.tuple(fc.constantFrom('r', 's'), scalar).map(([name, value]) => route(name, `  x-unknown: ${value}\n`)),
  fc.constantFrom('# a comment\n', '', 'key: [unclosed\n', 'kind: Unknown\nmetadata: {name: u}\n', '--- # marker with a comment\nkind: Namespace\nmetadata: {name: n}\n', '- a list\n'),
);
const separator = fc.constantFrom('---\n', '...\n---\n', '...\n', '---\r\n', '\n---\n', '%YAML 1.2\n---\n', '...\n%YAML 1.2\n---\n', '--- \n', '\uFEFF---\n');
const fileText = fc.array(fc.tuple(separator, documentText), { maxLength: 6 }).map((parts) => parts.map(([sep, doc]) => `${sep}${doc}`).join(''));
