import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/providers/manifest-files.js';

/** The definition canonicalJson keeps: JSON.stringify with a copy of every object, its keys inserted sorted by code units. */
function reference(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
    const record = v as Record<string, unknown>;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(record).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) sorted[k] = record[k];
    return sorted;
  });
}

function outcome(f: () => string): { text?: string; threw?: string } {
  try {
    return { text: f() };
  } catch (err) {
    return { threw: err instanceof Error ? err.constructor.name : String(err) };
  }
}

/** Keys that sort differently as array indices and as text, and keys an assignment treats specially. */
const trickyKey = fc.constantFrom('0', '1', '2', '9', '10', '01', '-1', '1.5', '4294967294', '4294967295', '__proto__', 'constructor', 'toJSON', 'a', 'B', 'é', '', ' ');

describe('canonicalJson', () => {
  it('writes what JSON.stringify writes with sorted copies of every object, for any value', () => {
    fc.assert(
      fc.property(fc.anything({ key: fc.oneof(fc.string(), trickyKey), withDate: true, withMap: true, withSet: true, withNullPrototype: true, withBoxedValues: true, withSparseArray: true, withTypedArray: true, withBigInt: true, withObjectString: true, maxDepth: 4 }), (value) => {
        expect(outcome(() => canonicalJson(value))).toEqual(outcome(() => reference(value)));
      }),
      { numRuns: 2000 },
    );
  });

  it('writes what JSON.stringify writes for JSON-like documents with undefined values and reordered keys', () => {
    const doc = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, fc.constant(undefined), fc.double(), fc.integer(), fc.boolean(), fc.constant(null), fc.string(), fc.array(tie('value')), fc.dictionary(fc.oneof(fc.string(), trickyKey), tie('value'))),
    })).value;
    fc.assert(
      fc.property(doc, (value) => {
        expect(canonicalJson(value)).toBe(reference(value));
      }),
      { numRuns: 2000 },
    );
  });

  it('does not depend on the order keys were written in', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: 'x' }, 10: 0, 9: 0 })).toBe(canonicalJson({ 9: 0, a: { c: 'x', d: [1, { y: 2, z: 1 }] }, b: 1, 10: 0 }));
    expect(canonicalJson({ b: 1, a: 2, 10: 3, 9: 4 })).toBe('{"9":4,"10":3,"a":2,"b":1}');
  });
});
