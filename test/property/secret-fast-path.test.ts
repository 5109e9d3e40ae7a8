import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { commonSecret, Secret } from '../../src/api/secret.js';

/**
 * parseManifest takes a Secret of the common shape without zod (commonSecret). Over Secrets
 * near that shape, valid or not, whatever commonSecret accepts the schema accepts too, with the
 * same value down to the order of keys; whatever the schema refuses commonSecret leaves to it.
 */

const names = fc.oneof({ weight: 4, arbitrary: fc.stringMatching(/^[a-z0-9]([-a-z0-9.]{0,10}[a-z0-9])?$/) }, fc.constantFrom('openai-key', 'a', 'a.b-c', 'A', '-x', 'x_y', '', 'a'.repeat(254), 'b'.repeat(253)), fc.string({ maxLength: 8 }));
const namespaces = fc.oneof({ weight: 4, arbitrary: fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?$/) }, fc.constantFrom('ai', 'default', 'a.b', 'X', 'n'.repeat(64), 'n'.repeat(63)), fc.string({ maxLength: 8 }));
const base64 = fc.oneof({ weight: 8, arbitrary: fc.base64String({ maxLength: 24 }) }, fc.constantFrom('QmVhcmVyIHNrLTE=', 'not base64!', 'abc', ''), fc.string({ maxLength: 6 }));
const keys = fc.oneof(fc.constantFrom('Authorization', 'key.json', '0', '10', '__proto__', 'toString'), fc.string({ maxLength: 6 }));
const oddValue = fc.oneof(fc.integer(), fc.constant(null), fc.constant(undefined), fc.array(fc.string(), { maxLength: 2 }), fc.boolean());

const wideMetadata = fc.record(
  {
    name: fc.oneof({ weight: 5, arbitrary: names }, oddValue),
    namespace: fc.oneof({ weight: 5, arbitrary: namespaces }, oddValue),
    labels: fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 }), { maxKeys: 2 }),
    uid: fc.oneof(fc.string({ maxLength: 4 }), oddValue),
  },
  { requiredKeys: [] },
);

// Mostly the common shape, so that commonSecret has something to take.
const metadata = fc.oneof(
  { weight: 6, arbitrary: fc.record({ name: fc.oneof({ weight: 5, arbitrary: names }, oddValue), namespace: fc.oneof({ weight: 5, arbitrary: namespaces }, oddValue) }, { requiredKeys: ['name'] }) },
  { weight: 1, arbitrary: wideMetadata },
);

const fields = {
  apiVersion: fc.oneof({ weight: 8, arbitrary: fc.constant('v1') }, fc.constantFrom('v2', 1)),
  kind: fc.oneof({ weight: 8, arbitrary: fc.constant('Secret') }, fc.constant('Backend')),
  metadata: fc.oneof({ weight: 8, arbitrary: metadata }, oddValue),
  type: fc.oneof({ weight: 4, arbitrary: fc.constantFrom('Opaque', 'kubernetes.io/tls') }, oddValue),
  data: fc.oneof({ weight: 4, arbitrary: fc.dictionary(keys, fc.oneof({ weight: 12, arbitrary: base64 }, oddValue), { maxKeys: 4 }) }, oddValue),
  stringData: fc.oneof({ weight: 4, arbitrary: fc.dictionary(keys, fc.oneof({ weight: 12, arbitrary: fc.string({ maxLength: 8 }) }, oddValue), { maxKeys: 4 }) }, oddValue),
};
const secretDoc = fc.oneof(
  { weight: 6, arbitrary: fc.record(fields, { requiredKeys: ['apiVersion', 'kind', 'metadata'] }) },
  { weight: 1, arbitrary: fc.record({ ...fields, status: fc.string({ maxLength: 3 }) }, { requiredKeys: ['apiVersion', 'kind'] }) },
);

describe('commonSecret', () => {
  it('accepts only what the Secret schema accepts, with the value the schema gives, key order included', () => {
    let taken = 0;
    fc.assert(
      fc.property(secretDoc, (doc) => {
        const fast = commonSecret(doc as Record<string, unknown>);
        const parsed = Secret.safeParse(structuredClone(doc));
        if (fast === undefined) return;
        taken++;
        expect(parsed.success).toBe(true);
        expect(fast).toStrictEqual(parsed.data);
        expect(JSON.stringify(fast)).toBe(JSON.stringify(parsed.data));
      }),
      { numRuns: 3000 },
    );
    // The common shape must come up often enough for the comparison to mean something.
    expect(taken).toBeGreaterThan(100);
  });

  it('takes the Secrets a configuration is made of', () => {
    const doc = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'openai-key', namespace: 'ai' }, type: 'Opaque', data: { Authorization: 'QmVhcmVyIHNrLTE=' }, stringData: { other: 'x' } };
    expect(commonSecret(doc)).toStrictEqual(Secret.parse(doc));
    expect(commonSecret({ ...doc, metadata: { name: 'openai-key' } })?.metadata.namespace).toBe('default');
    // Not base64: the schema says so, with its message.
    expect(commonSecret({ ...doc, data: { Authorization: 'sk-1' } })).toBeUndefined();
  });
});
