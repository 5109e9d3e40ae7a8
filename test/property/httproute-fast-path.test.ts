import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HTTPRoute } from '../../src/api/httproute.js';
import { commonHTTPRoute } from '../../src/api/httproute-common.js';
import { parseManifest } from '../../src/api/manifest.js';
import { expectBenchConfigurationTaken, expectSameAsSchema, near, oddValues, withOneChange } from './fast-path-docs.js';

/**
 * parseManifest takes an HTTPRoute of the common shape without zod (commonHTTPRoute). Over routes
 * near that shape, valid or not, whatever commonHTTPRoute accepts the schema accepts too, with
 * the same value down to the order of keys and without stripping a field (so no unknown-field
 * warning was due); whatever else, the schema decides, with its messages and warnings.
 */

const odd = oddValues(1_000_001, 'PathPrefix', 'GET', 'get');

const names = near(fc.oneof(fc.stringMatching(/^[a-z0-9]([-a-z0-9.]{0,10}[a-z0-9])?$/), fc.constantFrom('chat', 'a', 'a.b', 'b'.repeat(253))), 'b'.repeat(254), 'A', '-x', 'x_y', '', 1);
const labels = near(fc.oneof(fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?$/), fc.constant('d'.repeat(63))), 'd'.repeat(64), 'a.b', 'X', '', null);
const strings = near(fc.oneof(fc.constantFrom('', 'switchyard.dev', 'Backend', 'Gateway', 'http'), fc.string({ maxLength: 6 })), 1, null, true);
const parentRef = fc.record({ group: strings, kind: strings, namespace: strings, name: names, sectionName: strings }, { requiredKeys: ['name'] });
const backendRef = fc.record(
  {
    group: strings,
    kind: strings,
    name: names,
    namespace: strings,
    port: near(fc.integer({ min: 1, max: 65535 }), 0, 65536, 1.5, '80'),
    weight: near(fc.integer({ min: 0, max: 1_000_000 }), -1, 1_000_001, 0.5, '1'),
  },
  { requiredKeys: ['name'] },
);
const match = fc.record(
  {
    path: fc.record({ type: near(fc.constantFrom('Exact', 'PathPrefix', 'RegularExpression'), 'Prefix', '', 1), value: near(fc.constantFrom('/', '/chat/v1', '/x/[a-z]+'), 1, null) }, { requiredKeys: [] }),
    method: near(fc.constantFrom('GET', 'POST', 'PATCH'), 'get', 'FETCH', 1),
  },
  { requiredKeys: [] },
);
const rule = fc.record(
  {
    name: strings,
    matches: near(fc.array(match, { maxLength: 3 }), Array.from({ length: 65 }, () => ({ path: { value: '/' } }))),
    backendRefs: fc.array(backendRef, { maxLength: 3 }),
  },
  { requiredKeys: [] },
);
const validDoc = fc.record({
  apiVersion: near(fc.constantFrom('gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'), 'gateway.networking.k8s.io/v1alpha2', 'v1'),
  kind: fc.constant('HTTPRoute'),
  metadata: fc.record({ name: names, namespace: labels }, { requiredKeys: ['name'] }),
  spec: fc.record(
    {
      parentRefs: fc.array(parentRef, { maxLength: 2 }),
      hostnames: fc.array(near(fc.constantFrom('api.example.com', '*.example.com', 'x'), ''), { maxLength: 2 }),
      rules: near(fc.array(rule, { maxLength: 3 }), Array.from({ length: 65 }, () => ({}))),
    },
    { requiredKeys: [] },
  ),
});

const routeDoc = withOneChange(validDoc, odd, ['status', 'filters', 'headers', 'queryParams', 'timeouts', 'retry', 'port', 'labels', 'generation', 'extra', 'name', 'path', 'type', 'value', 'weight', 'rules']);

describe('commonHTTPRoute', () => {
  it('accepts only what the HTTPRoute schema accepts, with the value the schema gives, key order included, nothing stripped', () => {
    expectSameAsSchema(routeDoc, commonHTTPRoute, HTTPRoute, (doc, parsed) => {
      // parseManifest warns about what the schema strips: the fast path gives no warning, so nothing may be stripped.
      const result = parseManifest(structuredClone(doc), 'x.yaml#0');
      expect(result.ok).toBe(true);
      if (result.ok === true) expect(result.warnings).toEqual([]);
      expect(JSON.stringify((parsed as { spec: unknown }).spec).length, JSON.stringify(doc)).toBe(JSON.stringify((doc as { spec: unknown }).spec).length);
    });
  });

  it("takes the bench configuration's routes, and parseManifest gives what the schema gives", () => {
    expectBenchConfigurationTaken('HTTPRoute', commonHTTPRoute, HTTPRoute);
  });

  it('leaves to the schema a route it refuses, and one with a field it strips, whose warning names the field', () => {
    const base = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'chat', namespace: 'ai' } };
    const refused = { ...base, spec: { rules: [{ backendRefs: [{ name: 'chat', port: 0 }] }] } };
    expect(commonHTTPRoute(refused)).toBeUndefined();
    const bad = parseManifest(refused, 'x.yaml#0');
    expect(bad.ok).toBe(false);
    if (bad.ok === false) expect(bad.problems.map((p) => p.field)).toEqual(['spec.rules[0].backendRefs[0].port']);
    const typo = { ...base, spec: { rules: [{ backendRef: [{ name: 'chat' }] }] } };
    expect(commonHTTPRoute(typo)).toBeUndefined();
    const warned = parseManifest(typo, 'x.yaml#0');
    expect(warned.ok).toBe(true);
    if (warned.ok === true) expect(warned.warnings.map((p) => p.field)).toEqual(['spec.rules[0].backendRef']);
    // No rules: the schema's default ([{}]), not the fast path's.
    expect(commonHTTPRoute({ ...base, spec: {} })).toBeUndefined();
  });
});
