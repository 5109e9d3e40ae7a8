import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Backend } from '../../src/api/backend.js';
import { commonBackend } from '../../src/api/backend-common.js';
import { parseManifest } from '../../src/api/manifest.js';
import { expectBenchConfigurationTaken, expectSameAsSchema, near, oddValues, withOneChange } from './fast-path-docs.js';

/**
 * parseManifest takes a Backend of the common shape without zod (commonBackend). Over Backends
 * near that shape, valid or not, whatever commonBackend accepts the schema accepts too, with the
 * same value down to the order of keys; whatever the schema refuses commonBackend leaves to it,
 * so every error message is still the schema's.
 */

const odd = oddValues(129, 'http://x', 'x:80', 'm'.repeat(64), 'AI', 'Static', 'Inline', 'Passthrough', 'SecretRef');

/** Backends of the common shape, a few of their values just outside it. */
const names = near(fc.oneof(fc.stringMatching(/^[a-z0-9]([-a-z0-9.]{0,10}[a-z0-9])?$/), fc.constantFrom('chat', 'a', 'a.b', 'b'.repeat(253))), 'b'.repeat(254), 'A', '-x', 'x_y', '', 1);
const labels = near(fc.oneof(fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?$/), fc.constant('d'.repeat(63))), 'd'.repeat(64), 'a.b', 'X', '', null);
const hosts = near(fc.constantFrom('api.example.com', '10.0.0.7', 'p0-m0.chat-7.llm.internal', '[::1]', 'host_1', 'a.', 'UPPER.Case', 'h'.repeat(253)), 'h'.repeat(254), '', 'has space', 'http://x', 'x:80', 'a..b', 7);
const ports = near(fc.integer({ min: 1, max: 65535 }), 0, 65536, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '443');
const tokens = fc.oneof(
  { weight: 8, arbitrary: names.map((name) => ({ kind: 'SecretRef', secretRef: { name } })) },
  { weight: 2, arbitrary: fc.constantFrom({ kind: 'Passthrough' }, { kind: 'Inline', inline: 'sk-1' }) },
  { weight: 1, arbitrary: fc.constantFrom({ kind: 'Passthrough', secretRef: { name: 'k' } }, { kind: 'SecretRef' }, { kind: 'SecretRef', secretRef: { name: 'k' }, inline: 'x' }, { kind: 'Inline' }, { kind: 'Other' }, { kind: 'SecretRef', secretRef: {} }, { kind: 'SecretRef', secretRef: { name: 'k', key: 'x' } }) },
);
const compatible = fc.record(
  {
    host: hosts,
    port: ports,
    path: near(fc.constantFrom('/v1/chat/completions', '/'), 'v1', '', 1),
    tls: near(fc.boolean(), 'true', 1),
    model: near(fc.constantFrom('model-0', 'gpt-4o'), '', 0),
    authHeader: near(fc.constantFrom('x-api-key', 'Authorization'), '', 'bad header', 'h'.repeat(257), 'x:y'),
    authToken: tokens,
  },
  { requiredKeys: ['host'] },
);
const openai = fc.record({ model: near(fc.constantFrom('gpt-4o', 'o3'), '', 5), authToken: tokens }, { requiredKeys: ['authToken'] });
const provider = fc.oneof(
  { weight: 4, arbitrary: compatible.map((c) => ({ openaiCompatible: c })) },
  { weight: 2, arbitrary: openai.map((o) => ({ openai: o })) },
  { weight: 1, arbitrary: fc.record({ anthropic: fc.record({ authToken: tokens }) }) },
);
const member = fc.record(
  {
    name: labels,
    weight: near(fc.integer({ min: 1, max: 128 }), 0, 129, 2.5, '1'),
    provider: near(provider, {}, { openai: { authToken: { kind: 'Passthrough' } }, openaiCompatible: { host: 'h' } }, { openai: undefined }),
    hostOverride: fc.record({ host: hosts, port: ports, tls: near(fc.boolean(), 'no') }, { requiredKeys: ['host', 'port'] }),
  },
  { requiredKeys: ['provider'] },
);
const priority = fc.record({ pool: near(fc.array(member, { minLength: 1, maxLength: 3 }), [], {}) });
const validDoc = fc.record({
  apiVersion: fc.constant('switchyard.dev/v1alpha1'),
  kind: fc.constant('Backend'),
  metadata: fc.record({ name: names, namespace: labels }, { requiredKeys: ['name'] }),
  spec: fc.oneof(
    { weight: 8, arbitrary: fc.record({ type: near(fc.constant('AI'), 'Static', 'ai', undefined), ai: fc.record({ multipool: fc.record({ priorities: near(fc.array(priority, { minLength: 1, maxLength: 3 }), [], Array.from({ length: 17 }, () => ({ pool: [{ provider: { openai: { authToken: { kind: 'Passthrough' } } } }] }))) }) }) }, { requiredKeys: ['ai'] }) },
    { weight: 1, arbitrary: fc.record({ ai: fc.record({ llm: fc.record({ provider }) }) }) },
  ),
});

const backendDoc = withOneChange(validDoc, odd, ['status', 'retry', 'limits', 'name', 'labels', 'models', 'inline', 'extra', 'secretRef', 'kind', 'host', 'port', 'tls', 'openai', 'llm', 'multipool', 'type']);

describe('commonBackend', () => {
  it('accepts only what the Backend schema accepts, with the value the schema gives, key order included', () => {
    expectSameAsSchema(backendDoc, commonBackend, Backend);
  });

  it("takes the bench configuration's Backends, and parseManifest gives what the schema gives", () => {
    expectBenchConfigurationTaken('Backend', commonBackend, Backend);
  });

  it('leaves a Backend the schema refuses to the schema, whose message names the field', () => {
    const doc = { apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name: 'chat', namespace: 'ai' }, spec: { ai: { multipool: { priorities: [{ pool: [{ provider: { openaiCompatible: { host: 'h', port: 0 } } }] }] } } } };
    expect(commonBackend(doc)).toBeUndefined();
    const result = parseManifest(doc, 'x.yaml#0');
    expect(result.ok).toBe(false);
    if (result.ok !== false) return;
    expect(result.problems.map((p) => p.field)).toEqual(['spec.ai.multipool.priorities[0].pool[0].provider.openaiCompatible.port']);
  });
});
