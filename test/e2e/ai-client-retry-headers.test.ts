import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import type { EnvoyResource, JsonObject, XdsResources } from '../../src/envoy/resources.js';
import { NAMESPACE, aiBackend, gatewayManifests, httpRoute, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';

/**
 * A client's own retry headers on an AI route, through the real Envoy. Envoy honours
 * `x-envoy-max-retries` only from a client its HTTP connection manager trusts (an internal
 * address, with use_remote_address); Switchyard's listeners trust none, so the test seam makes
 * this Envoy trust loopback, as a deployment behind a trusting front proxy would. With a
 * trusted client the header would let it end a request on the extension's stand-in (a skip
 * on the way to the pool a refusal names: 424, no body); the route removes it, so the
 * Backend's retries decide, whoever sends the request.
 */

const BARE_ROUTE = `${NAMESPACE}/bare/rule/0/match/0`;

let gw: GatewayFixture;
let p0: FakeProvider;
let p1: FakeProvider;
let p2: FakeProvider;

/** Loopback is internal: Envoy honours the client's x-envoy-* retry headers. The bare route keeps none of its removals. */
function trustLoopback(xds: XdsResources): XdsResources {
  const listeners = xds.listeners.map((l): EnvoyResource => {
    const chains = (l['filter_chains'] as JsonObject[]).map((chain) => ({
      ...chain,
      filters: (chain['filters'] as JsonObject[]).map((f) => ({
        ...f,
        typed_config: { ...(f['typed_config'] as JsonObject), use_remote_address: true, internal_address_config: { cidr_ranges: [{ address_prefix: '127.0.0.0', prefix_len: 8 }] } },
      })),
    }));
    return { ...l, filter_chains: chains };
  });
  const routes = xds.routes.map((rc): EnvoyResource => ({
    ...rc,
    virtual_hosts: (rc['virtual_hosts'] as JsonObject[]).map((vh) => ({
      ...vh,
      routes: (vh['routes'] as JsonObject[]).map((r) => {
        if (r['name'] !== BARE_ROUTE) return r;
        const { request_headers_to_remove: _removed, ...rest } = r;
        return rest;
      }),
    })),
  }));
  return { ...xds, listeners, routes };
}

function skipBackend(fakes: Record<string, FakeProvider>): Manifest {
  const backend = aiBackend({
    name: 'skip',
    priorities: [[{ name: 'small', fake: fakes['p0']!, hostname: 'small.llm.test' }], [{ name: 'large', fake: fakes['p1']!, hostname: 'large.llm.test' }], [{ name: 'huge', fake: fakes['p2']!, hostname: 'huge.llm.test' }]],
    outlierDetection: { enabled: false },
  });
  const priorities = (backend['spec'] as { ai: { multipool: { priorities: Record<string, unknown>[] } } }).ai.multipool.priorities;
  priorities.forEach((p, i) => Object.assign(p, { name: ['small-pool', 'large-pool', 'huge-pool'][i] }));
  Object.assign(priorities[0] ?? {}, { contextWindowFallback: 'huge-pool' });
  return backend;
}

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'ai-client-retry-headers',
    providers: ['p0', 'p1', 'p2'],
    testOnlyRewrite: trustLoopback,
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [skipBackend(fakes)],
      'routes.yaml': [httpRoute('chat', [{ path: '/v1', backend: 'skip' }]), httpRoute('bare', [{ path: '/bare/v1', rewritePrefix: '/v1', backend: 'skip' }])],
    }),
    waitForBackends: ['skip'],
  });
  ({ p0, p1, p2 } = gw.fakes as Record<'p0' | 'p1' | 'p2', FakeProvider>);
});

afterAll(async () => {
  await gw?.stop();
});

beforeEach(async () => {
  await gw.resetFakes();
  // One real failover to the middle pool: the extension skips a member only when Envoy has a
  // connection to it ready (a stand-in before it crashes Envoy 1.40).
  await p0.setMode({ kind: 'status', status: 503 });
  expect((await post('/v1', {})).answeredBy).toBe('p1');
  await gw.resetFakes();
});

async function post(prefix: string, headers: Record<string, string>): Promise<{ status: number; body: string; answeredBy: string | null }> {
  const response = await fetch(`http://127.0.0.1:${gw.listenerPort}${prefix}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-client', ...headers },
    body: JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'a long prompt' }] }),
  });
  return { status: response.status, body: await response.text(), answeredBy: response.headers.get('x-fake-provider') };
}

describe('a trusted client that limits retries below what the named pool needs', () => {
  it('without the route\'s removal it ends on the stand-in of the skipped pool: 424, no body (what the removal prevents)', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const answer = await post('/bare/v1', { 'x-envoy-max-retries': '1' });
    expect(answer).toMatchObject({ status: 424, body: '' });
    expect(p1.received()).toHaveLength(0);
    expect(p2.received()).toHaveLength(0);
  });

  it('gets the named pool\'s answer: the route removes its x-envoy-max-retries, the Backend\'s retries decide', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const answer = await post('/v1', { 'x-envoy-max-retries': '1' });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ choices: [{ message: { content: 'answered by p2' } }] });
    expect(p0.received()).toHaveLength(1);
    expect(p1.received()).toHaveLength(0);
    expect(p2.received()[0]?.headers['x-envoy-max-retries']).toBeUndefined();
  });

  it('cannot turn failover off with x-envoy-max-retries: 0: a 503 on the first pool is answered by the next', async () => {
    await p0.setMode({ kind: 'status', status: 503 });
    const answer = await post('/v1', { 'x-envoy-max-retries': '0' });
    expect(answer).toMatchObject({ status: 200, answeredBy: 'p1' });
  });
});
