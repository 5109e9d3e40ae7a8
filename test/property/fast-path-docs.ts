import fc from 'fast-check';
import { expect } from 'vitest';
import { stringify } from 'yaml';
import type { ZodType } from 'zod';
import { generateManifests } from '../../bench/translate.js';
import { parseManifest } from '../../src/api/manifest.js';

// What the fast-path property tests (Backend, HTTPRoute) share: documents near the common shape,
// and the comparison of a fast path with its schema over them.

/** Values out of place almost anywhere, with `more` that are just out of place in one kind of document. */
export function oddValues(...more: unknown[]): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.integer({ min: -2, max: 70_000 }),
    fc.constantFrom(null, undefined, true, 2.5, Number.NaN, 0, 65536, '', 'Bad', '-x', 'has space', 'v1', 'h'.repeat(254), ...more),
    fc.string({ maxLength: 4 }),
    fc.array(fc.string(), { maxLength: 2 }),
    fc.constant(0).map(() => ({})),
  );
}

/** Mostly `valid`, now and then a value just outside what the schema allows there. */
export const near = <T>(valid: fc.Arbitrary<T>, ...invalid: unknown[]): fc.Arbitrary<unknown> => fc.oneof({ weight: 40, arbitrary: valid }, { weight: 1, arbitrary: fc.constantFrom(...invalid) });

/** Every place in a value: [parent, key] pairs, depth first. */
function places(value: unknown, out: [Record<string, unknown> | unknown[], string | number][] = []): [Record<string, unknown> | unknown[], string | number][] {
  if (Array.isArray(value)) value.forEach((item, i) => { out.push([value, i]); places(item, out); });
  else if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) { out.push([value as Record<string, unknown>, k]); places(v, out); }
  return out;
}

/** A valid document, or one with a field replaced by an odd value, removed, or added (one of `keys`) where the common shape has none. */
export function withOneChange(valid: fc.Arbitrary<unknown>, odd: fc.Arbitrary<unknown>, keys: readonly string[]): fc.Arbitrary<unknown> {
  return fc.tuple(valid, fc.nat(3), fc.nat(), odd, fc.constantFrom(...keys)).map(([generated, how, at, value, key]) => {
    // Generated values may share objects (constantFrom): a mutation must not reach the next run.
    const doc = structuredClone(generated);
    if (how === 0) return doc;
    const all = places(doc);
    const [parent, field] = all[at % all.length] as [Record<string, unknown>, string];
    if (how === 1) parent[field] = value;
    else if (how === 2) delete parent[field];
    else {
      const target = parent[field];
      if (typeof target === 'object' && target !== null && !Array.isArray(target)) (target as Record<string, unknown>)[key] = value;
    }
    return doc;
  });
}

/**
 * Over `docs`, whatever `fast` takes the schema takes too, with the same value down to the order of
 * keys (`also` checks more of a taken document). Both sides must come up often enough for the
 * comparison to mean something: more than 150 documents taken, more than 100 valid ones left to the schema.
 */
export function expectSameAsSchema(docs: fc.Arbitrary<unknown>, fast: (doc: Record<string, unknown>) => unknown, schema: ZodType, also?: (doc: unknown, parsed: unknown) => void): void {
  let taken = 0;
  let valid = 0;
  fc.assert(
    fc.property(docs, (doc) => {
      const value = fast(doc as Record<string, unknown>);
      const parsed = schema.safeParse(structuredClone(doc));
      if (parsed.success) valid++;
      if (value === undefined) return;
      taken++;
      expect(parsed.success, JSON.stringify(doc)).toBe(true);
      expect(value).toStrictEqual(parsed.data);
      expect(JSON.stringify(value)).toBe(JSON.stringify(parsed.data));
      also?.(doc, parsed.data);
    }),
    { numRuns: 6000 },
  );
  // About 5% of runs take a fast path; the floors leave room for the seed.
  expect(taken).toBeGreaterThan(150);
  expect(valid - taken).toBeGreaterThan(100);
}

/**
 * The bench configuration's documents of `kind` (20 of them) are all taken by `fast`, and
 * parseManifest gives for each what the schema gives, with no warning, down to the YAML text.
 */
export function expectBenchConfigurationTaken(kind: string, fast: (doc: Record<string, unknown>) => unknown, schema: ZodType): void {
  const docs = generateManifests(20).filter((d) => (d as { kind?: string }).kind === kind) as Record<string, unknown>[];
  expect(docs.length).toBe(20);
  for (const doc of docs) {
    expect(fast(doc)).toBeDefined();
    const result = parseManifest(structuredClone(doc), 'x.yaml#0');
    expect(result.ok).toBe(true);
    if (result.ok !== true) return;
    expect(result.warnings).toEqual([]);
    expect(JSON.stringify(result.object.value)).toBe(JSON.stringify(schema.parse(doc)));
    expect(stringify(result.object.value)).toBe(stringify(schema.parse(doc)));
  }
}
