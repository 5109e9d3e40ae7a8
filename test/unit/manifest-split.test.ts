import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parseDocument } from 'yaml';
import { yamlDocuments } from '../../src/providers/manifest-files.js';

/**
 * File mode parses a manifest file one document at a time (memory); the split must give the
 * documents, and the document indices, that the yaml package gives for the whole file.
 */

const CASES: Record<string, string> = {
  'one document': 'a: 1\n',
  'two documents': 'a: 1\n---\nb: 2\n',
  'a leading marker': '---\na: 1\n---\nb: 2\n',
  'a leading comment': '# header\n---\na: 1\n',
  'a trailing marker': 'a: 1\n---\n',
  'empty documents between markers': '---\n---\na: 1\n---\n\n---\nb: 2',
  'content on the marker line': '--- {a: 1}\n--- # comment\nb: 2\n',
  'a document end marker': 'a: 1\n...\n---\nb: 2\n...\n# trailing comment\n',
  'a bare document after an end marker': 'a: 1\n...\nb: 2\n',
  'a directive': '%YAML 1.2\n---\na: 1\n...\n%YAML 1.2\n---\nb: 2\n',
  'markers inside a block scalar are not markers when indented': 'a: |\n  ---\n  x\n---\nb: 2\n',
  'CRLF line ends': 'a: 1\r\n---\r\nb: 2\r\n',
  'dashes that are not a marker': '----\n---x: 1\n',
  'no final newline': 'a: 1\n---\nb: 2',
  'only comments': '# nothing here\n\n# at all\n',
  'empty text': '',
};

describe('yamlDocuments', () => {
  for (const [name, text] of Object.entries(CASES)) {
    it(`splits like parseAllDocuments: ${name}`, () => {
      const whole = parseAllDocuments(text).map((d) => d.toJS() as unknown);
      const split = [...yamlDocuments(text)].map((c) => parseDocument(c.text).toJS() as unknown);
      expect(split).toEqual(whole);
    });
  }

  it('gives each document the line it starts on, so errors point into the file', () => {
    const chunks = [...yamlDocuments('a: 1\n---\nb: 2\n\n---\nc: 3\n')];
    expect(chunks.map((c) => c.firstLine)).toEqual([1, 2, 5]);
  });
});

describe('canonicalDigest', () => {
  it('equals the hash of canonicalJson, so fingerprints keep their meaning without the text', async () => {
    const { createHash } = await import('node:crypto');
    const { canonicalDigest, canonicalJson } = await import('../../src/providers/manifest-files.js');
    const value = { b: [1, 'two', null, { y: true, x: undefined }, undefined], a: { 'k"ey': 'v\n', n: 1.5 }, big: 'x'.repeat(70_000) };
    expect(canonicalDigest(value)).toBe(createHash('sha256').update(canonicalJson(value)).digest('base64'));
    expect(canonicalDigest({ a: 1, b: 2 })).toBe(canonicalDigest({ b: 2, a: 1 }));
    expect(canonicalDigest({ a: 1 })).not.toBe(canonicalDigest({ a: 2 }));
  });
});
