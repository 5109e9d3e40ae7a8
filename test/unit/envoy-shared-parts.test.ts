/**
 * Parts equal in many resources (an AI cluster's upstream filters, a route's retry policy) are
 * built once and shared by reference, which keeps a large configuration's memory down. Sharing
 * must never show: the bytes are those of unshared copies, and a shared part cannot be edited
 * through one resource.
 */
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { decodeAttemptFacts } from '../../src/envoy/attempt-facts.js';
import { encodeResourceAny } from '../../src/envoy/proto.js';
import type { EnvoyResource, JsonObject } from '../../src/envoy/resources.js';
import { runPipeline } from '../../src/pipeline.js';
import { ManifestStore, parseManifestFile } from '../../src/providers/manifest-files.js';
import { EDGE_GATEWAY } from '../support/edge-gateway.js';

function backend(i: number, retry?: unknown): unknown {
  return {
    apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name: `chat-${i}`, namespace: 'ai' },
    spec: {
      type: 'AI',
      ...(retry !== undefined ? { retry } : {}),
      ai: { multipool: { priorities: [0, 1].map((p) => ({ pool: [{ name: `p${p}`, provider: { openaiCompatible: { host: `p${p}.llm.internal`, port: 443, model: 'm', authToken: { kind: 'SecretRef', secretRef: { name: `key-${i}-${p}` } } } }, hostOverride: { host: `10.${p}.0.${i + 1}`, port: 8443 } }] })) } },
    },
  };
}

const docs: unknown[] = [
  ...EDGE_GATEWAY,
];
for (let i = 0; i < 3; i++) {
  docs.push(backend(i, i === 2 ? { attempts: 5 } : undefined));
  for (const p of [0, 1]) docs.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: `key-${i}-${p}`, namespace: 'ai' }, stringData: { Authorization: `sk-${i}-${p}` } });
  docs.push({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: `chat-${i}`, namespace: 'ai' },
    spec: { parentRefs: [{ name: 'edge' }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: `/chat-${i}` } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: `chat-${i}` }] }] },
  });
}

function pipeline(): ReturnType<typeof runPipeline> {
  const file = { name: 'config.yaml', documents: parseManifestFile('config.yaml', docs.map((d) => stringify(d)).join('---\n')) };
  const { inputs, problems } = new ManifestStore().build([file]);
  expect(problems).toEqual([]);
  return runPipeline(inputs);
}

function field(o: JsonObject, ...path: string[]): JsonObject {
  let at: JsonObject = o;
  for (const key of path) at = at[key] as JsonObject;
  return at;
}

function retryPolicies(routeConfig: EnvoyResource): JsonObject[] {
  const routes = (field(routeConfig, 'virtual_hosts')[0] as unknown as JsonObject)['routes'] as JsonObject[];
  return routes.flatMap((r) => {
    const policy = (r['route'] as JsonObject | undefined)?.['retry_policy'];
    return policy === undefined ? [] : [policy as JsonObject];
  });
}

describe('shared parts of Envoy resources', () => {
  it('gives every AI cluster the same upstream filters object, which no cluster can edit', () => {
    const { xds } = pipeline();
    const ai = xds.clusters.filter((c) => String(c['name']).startsWith('backend/'));
    expect(ai).toHaveLength(3);
    const options = ai.map((c) => c['typed_extension_protocol_options']);
    expect(options[1]).toBe(options[0]);
    expect(options[2]).toBe(options[0]);
    const filters = field(ai[0] as JsonObject, 'typed_extension_protocol_options', 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions')['http_filters'] as unknown as JsonObject[];
    expect(() => {
      (filters[0] as JsonObject)['name'] = 'edited';
    }).toThrow(TypeError);
    expect(() => filters.push({})).toThrow(TypeError);
  });

  it('shares a retry policy between routes whose Backends retry alike, and only between them', () => {
    const { xds } = pipeline();
    const [config] = xds.routes;
    const policies = retryPolicies(config as EnvoyResource);
    expect(policies).toHaveLength(3);
    const distinct = new Set(policies);
    expect(distinct.size).toBe(2);
    expect(policies.map((p) => p['num_retries']).sort()).toEqual([2, 2, 5]);
  });

  it('puts each AI member\'s facts in its endpoint (test/unit/envoy-attempt-facts.test.ts), and one locality object per priority level', () => {
    const { xds, translation } = pipeline();
    const members = translation.ir.clusters.flatMap((c) => c.priorities.flatMap((p) => p.members));
    const endpoints = xds.endpoints.flatMap((cla) => (cla['endpoints'] as JsonObject[]).flatMap((e) => e['lb_endpoints'] as JsonObject[]));
    expect(endpoints).toHaveLength(members.length);
    endpoints.forEach((e, i) => expect(decodeAttemptFacts(String(field(e, 'metadata', 'filter_metadata', 'switchyard.dev')['attempt']))).toMatchObject({ member: members[i]?.metadata.member }));
    const localities = xds.endpoints.flatMap((cla) => (cla['endpoints'] as JsonObject[]).map((e) => e['locality']));
    expect(new Set(localities).size).toBe(2);
  });

  it('encodes every resource to the bytes of an unshared copy of it', () => {
    const { xds } = pipeline();
    for (const list of Object.values(xds)) {
      for (const resource of list as EnvoyResource[]) {
        expect(Buffer.from(encodeResourceAny(resource))).toEqual(Buffer.from(encodeResourceAny(structuredClone(resource))));
      }
    }
  });
});
