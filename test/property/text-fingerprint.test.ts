import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { generateManifests } from '../../bench/translate.js';
import { canonicalJson } from '../../src/providers/manifest-files.js';
import { bytesFingerprint, textFingerprint } from '../../src/providers/text-fingerprint.js';

/** A copy of `bytes` with the byte at `at` changed to `value` (which differs from it). */
function edited(bytes: Uint8Array, at: number, value: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[at] = value;
  return copy;
}

const key = ([high, low]: readonly [number, number]): string => `${high}:${low}`;

describe('document fingerprints (the file provider tells edited documents by them)', () => {
  it('change whenever one byte of a text changes, wherever it is (blocks and the tail)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 80 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (bytes, where, delta) => {
          const at = where % bytes.length;
          const other = edited(bytes, at, (bytes[at]! + delta) & 0xff);
          expect(key(bytesFingerprint(other))).not.toBe(key(bytesFingerprint(bytes)));
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('change whenever a text grows or shrinks by trailing zero bytes (the tail is padded with zeros)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 1, max: 9 }), (bytes, zeros) => {
        const longer = new Uint8Array(bytes.length + zeros);
        longer.set(bytes);
        expect(key(bytesFingerprint(longer))).not.toBe(key(bytesFingerprint(bytes)));
      }),
      { numRuns: 2000 },
    );
  });

  it('of a range of a buffer equal those of the same bytes on their own', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 60 }), fc.nat(), fc.nat(), (bytes, a, b) => {
        const from = bytes.length === 0 ? 0 : a % (bytes.length + 1);
        const to = from + (bytes.length - from === 0 ? 0 : b % (bytes.length - from + 1));
        expect(bytesFingerprint(bytes, from, to)).toEqual(bytesFingerprint(bytes.slice(from, to)));
      }),
      { numRuns: 2000 },
    );
  });

  it('of a string change whenever one UTF-16 code unit changes (any unit: non-ASCII and lone surrogates too)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }), fc.nat(), fc.integer({ min: 1, max: 0xffff }), (text, where, delta) => {
        const at = where % text.length;
        const unit = (text.charCodeAt(at) + delta) & 0xffff;
        const other = text.slice(0, at) + String.fromCharCode(unit) + text.slice(at + 1);
        expect(key(textFingerprint(other))).not.toBe(key(textFingerprint(text)));
      }),
      { numRuns: 5000 },
    );
  });

  it('differ for every two different documents of the bench configuration at 10,000 Backends (no accidental collision)', () => {
    const texts = new Set((generateManifests(10_000) as unknown[]).map((doc) => canonicalJson(doc)));
    expect(texts.size).toBeGreaterThan(50_000);
    const ofText = new Set<string>();
    const ofBytes = new Set<string>();
    for (const text of texts) {
      ofText.add(key(textFingerprint(text)));
      ofBytes.add(key(bytesFingerprint(Buffer.from(text, 'utf8'))));
    }
    expect(ofText.size).toBe(texts.size);
    expect(ofBytes.size).toBe(texts.size);
  });
});
