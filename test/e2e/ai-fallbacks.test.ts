import { createServer, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../../src/ir/model.js';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { runDrillRequests } from '../../src/cli/drill.js';
import { waitFor } from '../support/wait.js';
import { GATEWAY, NAMESPACE, aiBackend, gatewayManifests, httpRoute, routeAccepted, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';

/**
 * Context-window and content-policy fallback through the real Envoy and the AI extension: a pool
 * whose member answers 400 context_length_exceeded (or a content-filter refusal, in OpenAI's or
 * Azure OpenAI's words) hands the request to the next priority when the pool says so; any other
 * 400 reaches the client and nothing else is called. The official OpenAI client talks to the gateway.
 */

const HOSTS = { p0: 'small.llm.test', p1: 'large.llm.test', p2: 'huge.llm.test' } as const;

let gw: GatewayFixture;
let p0: FakeProvider;
let p1: FakeProvider;
let p2: FakeProvider;

/** Names each pool, and sets the first pool's fallbacks. */
function named(backend: Manifest, names: string[], first: Record<string, string>): Manifest {
  const spec = backend['spec'] as { ai: { multipool: { priorities: Record<string, unknown>[] } } };
  spec.ai.multipool.priorities.forEach((p, i) => Object.assign(p, { name: names[i] }));
  return withFallbacks(backend, first);
}

function withFallbacks(backend: Manifest, first: Record<string, string>): Manifest {
  const spec = backend['spec'] as { ai: { multipool: { priorities: Record<string, unknown>[] } } };
  Object.assign(spec.ai.multipool.priorities[0] ?? {}, first);
  return backend;
}

const DRILL_KEY = 'drill-key-0123456789abcdef0123456789abcdef';
const DRILL_KEY_SECRET = 'warmed-drill-key';

function withDrill(backend: Manifest): Manifest {
  (backend['spec'] as Record<string, unknown>)['drill'] = { keySecretRef: { name: DRILL_KEY_SECRET } };
  return backend;
}

/** Accepts connections and never writes: a TLS handshake with it never completes. */
const silent = createServer((socket) => {
  silentSockets.push(socket);
  socket.on('error', () => undefined);
});
const silentSockets: Socket[] = [];
const silentPort = (): number => (silent.address() as AddressInfo).port;

/** The middle member of a Backend speaks TLS. */
function stalledTls(backend: Manifest): Manifest {
  const spec = backend['spec'] as { ai: { multipool: { priorities: { pool: { provider: { openaiCompatible: Record<string, unknown> } }[] }[] } } };
  const member = spec.ai.multipool.priorities[1]?.pool[0];
  if (member !== undefined) member.provider.openaiCompatible['tls'] = true;
  return backend;
}

beforeAll(async () => {
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  gw = await startGatewayFixture({
    id: 'ai-fallbacks',
    providers: ['p0', 'p1', 'p2'],
    manifests: ({ listenerPort, fakes }) => {
      const pools = [[{ name: 'small', fake: fakes['p0']!, hostname: HOSTS.p0 }], [{ name: 'large', fake: fakes['p1']!, hostname: HOSTS.p1 }]];
      const three = [...pools, [{ name: 'huge', fake: fakes['p2']!, hostname: HOSTS.p2 }]];
      return {
        'gateway.yaml': gatewayManifests(listenerPort),
        'backends.yaml': [
          withFallbacks(aiBackend({ name: 'chat', priorities: pools, outlierDetection: { enabled: false } }), { contextWindowFallback: 'NextPool', contentPolicyFallback: 'NextPool' }),
          withFallbacks(aiBackend({ name: 'context-only', priorities: pools, outlierDetection: { enabled: false } }), { contextWindowFallback: 'NextPool' }),
          named(aiBackend({ name: 'skip', priorities: three, outlierDetection: { enabled: false } }), ['small-pool', 'large-pool', 'huge-pool'], { contextWindowFallback: 'huge-pool', contentPolicyFallback: 'huge-pool' }),
          // A context-window refusal tries the middle pool, a content-policy one skips it: the
          // middle pool's own 503s and the skips interleave on its one host.
          named(aiBackend({ name: 'guarded', priorities: three, outlierDetection: { consecutive5xx: 2, baseEjectionTime: '30s', interval: '250ms' } }), ['small-pool', 'large-pool', 'huge-pool'], { contextWindowFallback: 'NextPool', contentPolicyFallback: 'huge-pool' }),
          named(aiBackend({ name: 'cold', priorities: three, outlierDetection: { enabled: false } }), ['small-pool', 'large-pool', 'huge-pool'], { contextWindowFallback: 'huge-pool' }),
          // The same, with a drill key: a drill warms its pools before the first skip.
          withDrill(named(aiBackend({ name: 'warmed', priorities: three, outlierDetection: { enabled: false } }), ['small-pool', 'large-pool', 'huge-pool'], { contextWindowFallback: 'huge-pool' })),
          { apiVersion: 'v1', kind: 'Secret', metadata: { name: DRILL_KEY_SECRET, namespace: NAMESPACE }, stringData: { key: DRILL_KEY } },
          // Its middle member speaks TLS to a server that accepts and never answers.
          stalledTls(named(aiBackend({ name: 'stalled', priorities: [pools[0]!, [{ name: 'stalled', fake: { host: '127.0.0.1', port: silentPort() }, hostname: 'stalled.llm.test' }], three[2]!], outlierDetection: { enabled: false } }), ['small-pool', 'large-pool', 'huge-pool'], { contextWindowFallback: 'huge-pool' })),
          // Its named pool is ejected at its first 503.
          named(aiBackend({ name: 'fragile', priorities: three, outlierDetection: { consecutive5xx: 1, baseEjectionTime: '30s', interval: '250ms' } }), ['small-pool', 'large-pool', 'huge-pool'], { contextWindowFallback: 'huge-pool' }),
        ],
        'routes.yaml': [
          httpRoute('chat', [
            { path: '/v1', backend: 'chat' },
            { path: '/context-only/v1', rewritePrefix: '/v1', backend: 'context-only' },
            { path: '/skip/v1', rewritePrefix: '/v1', backend: 'skip' },
            { path: '/guarded/v1', rewritePrefix: '/v1', backend: 'guarded' },
            { path: '/fragile/v1', rewritePrefix: '/v1', backend: 'fragile' },
            { path: '/cold/v1', rewritePrefix: '/v1', backend: 'cold' },
            { path: '/warmed/v1', rewritePrefix: '/v1', backend: 'warmed' },
            { path: '/stalled/v1', rewritePrefix: '/v1', backend: 'stalled' },
          ]),
          // The rule's own retry.attempts (1) is below the 2 the skip Backend's fallback needs.
          {
            apiVersion: 'gateway.networking.k8s.io/v1',
            kind: 'HTTPRoute',
            metadata: { name: 'short-retries', namespace: NAMESPACE },
            spec: {
              parentRefs: [{ name: GATEWAY }],
              rules: [{
                matches: [{ path: { type: 'PathPrefix', value: '/short/v1' } }],
                filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } } }],
                backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: 'skip' }],
                retry: { attempts: 1 },
              }],
            },
          },
        ],
      };
    },
    waitForBackends: ['chat', 'context-only', 'skip', 'guarded', 'fragile', 'cold', 'warmed', 'stalled'],
  });
  ({ p0, p1, p2 } = gw.fakes as Record<'p0' | 'p1' | 'p2', FakeProvider>);
});

afterAll(async () => {
  await gw?.stop();
  for (const socket of silentSockets) socket.destroy();
  await new Promise((resolve) => silent.close(resolve));
});

beforeEach(async () => {
  await gw.resetFakes();
});

async function failures(member: string, cause: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('switchyard_ai_failures_total{') && l.includes(`member="${member}"`) && l.includes(`cause="${cause}"`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('a pool with contextWindowFallback: NextPool', () => {
  it('hands an OpenAI context_length_exceeded to the next priority, counted by cause', async () => {
    const before = await failures('small', 'context_length_exceeded');
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const answer = await gw.chat();
    expect(answer.content).toBe('answered by p1');
    expect(p0.received()).toHaveLength(1);
    expect(p1.received()[0]?.headers['x-envoy-attempt-count']).toBe('2');
    expect(await failures('small', 'context_length_exceeded')).toBe(before + 1);
  });

  it('does so for a streamed request too: the client gets the larger pool\'s stream', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const stream = await gw.client().chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'a long prompt' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('answered by p1');
    expect(p0.received()).toHaveLength(1);
  });

  it('passes any other 400 to the client untouched, and calls no other pool', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'invalid' });
    const failure = await gw.chatFailure();
    expect(failure.status).toBe(400);
    expect(failure.message).toContain("Invalid value for 'temperature'");
    expect(p0.received()).toHaveLength(1);
    expect(p1.received()).toHaveLength(0);
  });
});

describe('a pool with contentPolicyFallback: NextPool', () => {
  it('hands an Azure OpenAI content_filter refusal to the next priority', async () => {
    const before = await failures('small', 'content_policy');
    await p0.setMode({ kind: 'refusal', refusal: 'content_policy', api: 'azureopenai' });
    const answer = await gw.chat();
    expect(answer.content).toBe('answered by p1');
    expect(p0.received()).toHaveLength(1);
    expect(await failures('small', 'content_policy')).toBe(before + 1);
  });

  it('hands an OpenAI content_filter refusal to the next priority', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'content_policy', api: 'openai' });
    expect((await gw.chat()).content).toBe('answered by p1');
  });
});

describe('a pool without the fallback', () => {
  it('gives the client its content-policy refusal as the provider said it; the next pool is never called', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'content_policy', api: 'azureopenai' });
    const failure = await gw.chatFailure('/context-only/v1');
    expect(failure.status).toBe(400);
    expect(failure.message).toContain('content management policy');
    expect(p1.received()).toHaveLength(0);
  });

  it('the last pool\'s own refusal reaches the client when it has no fallback either', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    await p1.setMode({ kind: 'refusal', refusal: 'context_length' });
    const failure = await gw.chatFailure();
    expect(failure.status).toBe(400);
    expect(failure.message).toContain('maximum context length is 8192 tokens');
    expect(p0.received()).toHaveLength(1);
    expect(p1.received()).toHaveLength(1);
  });
});

/**
 * One real failover to the middle pool, so that Envoy has a connection to it ready: a skip
 * without one waits for Envoy's connect timeout (a stand-in before the connection is up crashes
 * Envoy 1.40).
 */
async function connectMiddle(prefix: string, status = 503): Promise<void> {
  await p0.setMode({ kind: 'status', status });
  expect((await gw.chat(prefix)).content).toBe('answered by p1');
  await gw.resetFakes();
}

describe('a fallback that names a later pool', () => {
  beforeEach(async () => {
    await connectMiddle('/skip/v1');
  });

  it('sends a context-window refusal to the named pool; the pool in between is skipped without a call and counted', async () => {
    const skippedBefore = await failures('large', 'skipped_by_fallback');
    const fourXxBefore = await failures('large', 'status_4xx');
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const answer = await gw.chat('/skip/v1');
    expect(answer.content).toBe('answered by p2');
    expect(p0.received()).toHaveLength(1);
    expect(p1.received()).toHaveLength(0);
    // Attempt 2 was the skipped one on the middle pool.
    expect(p2.received()[0]?.headers['x-envoy-attempt-count']).toBe('3');
    expect(await failures('large', 'skipped_by_fallback')).toBe(skippedBefore + 1);
    // The stand-in answer is not the member's own failure.
    expect(await failures('large', 'status_4xx')).toBe(fourXxBefore);
  });

  it('does so for a streamed content-policy refusal answered 200 (Azure OpenAI: finish_reason content_filter, no content)', async () => {
    await p0.setMode({ kind: 'filtered', api: 'azureopenai' });
    const stream = await gw.client('/skip/v1').chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('answered by p2');
    expect(p0.received()).toHaveLength(1);
    expect(p1.received()).toHaveLength(0);
  });

  it('leaves ordinary failures to the next priority: a 503 on the first pool is answered by the middle one', async () => {
    await p0.setMode({ kind: 'status', status: 503 });
    expect((await gw.chat('/skip/v1')).content).toBe('answered by p1');
    expect(p2.received()).toHaveLength(0);
  });

  it('a 503 after the refusal goes on down the priorities from the named pool', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    await p2.setMode({ kind: 'status', status: 503 });
    // No pool after the named one: its 503 reaches the client, and the skipped pool is never called.
    const failure = await gw.chatFailure('/skip/v1');
    expect(failure.status).toBe(503);
    expect(p1.received()).toHaveLength(0);
  });
});

describe('a route whose own retries cannot reach the named pool', () => {
  it('says so in its status', () => {
    const accepted = routeAccepted(gw, 'short-retries');
    expect(accepted.status).toBe('True');
    expect(accepted.message).toContain('spec.rules[0].retry.attempts (1) is below the 2 retries');
    expect(accepted.message).toContain('pool "huge-pool"');
  });

  it('gives the client the provider\'s own refusal, not an empty stand-in, and calls no other pool', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const failure = await gw.chatFailure('/short/v1');
    expect(failure.status).toBe(400);
    expect(failure.message).toContain('maximum context length is 8192 tokens');
    expect(p0.received()).toHaveLength(1);
    expect(p1.received()).toHaveLength(0);
    expect(p2.received()).toHaveLength(0);
  });

  it('a content-policy refusal answered 200 reaches the client as the provider gave it', async () => {
    await p0.setMode({ kind: 'filtered', api: 'azureopenai' });
    const completion = await gw.client('/short/v1').chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] });
    expect(completion.choices[0]?.finish_reason).toBe('content_filter');
    expect(p2.received()).toHaveLength(0);
  });

  it('the same refusal through the Backend\'s own retries still reaches the named pool', async () => {
    await connectMiddle('/skip/v1');
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    expect((await gw.chat('/skip/v1')).content).toBe('answered by p2');
    // The route's retries are for the extension: no provider sees them.
    expect(p0.received()[0]?.headers['x-switchyard-route-retries']).toBeUndefined();
    expect(p2.received()[0]?.headers['x-switchyard-route-retries']).toBeUndefined();
  });
});

describe('outlier detection and skipped pools', () => {
  const ejections = async (): Promise<number> => gw.clusterStat('guarded', 'outlier_detection.ejections_enforced_consecutive_5xx');
  const contextRefused = async (): Promise<string> => {
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    return (await gw.chat('/guarded/v1')).content;
  };
  const policyRefused = async (): Promise<string> => {
    await p0.setMode({ kind: 'refusal', refusal: 'content_policy', api: 'azureopenai' });
    return (await gw.chat('/guarded/v1')).content;
  };

  it('skips of a member whose last answer was good do not count against it (consecutive5xx 2, four skips)', async () => {
    expect(await contextRefused()).toBe('answered by p1');
    for (let i = 0; i < 4; i++) expect(await policyRefused()).toBe('answered by p2');
    expect(p1.received()).toHaveLength(1);
    expect(await ejections()).toBe(0);
  });

  it('a failing member of a skipped pool is still ejected when its 503s and the skips interleave', async () => {
    await p1.setMode({ kind: 'status', status: 503 });
    const answeredBy: string[] = [];
    // consecutive5xx 2: each context-window refusal reaches the middle pool (503), each
    // content-policy refusal skips it; one real 503 per round, a skip between them. A skip
    // answered 424 reset Envoy's count every time: 3 rounds, 3 real 503s, no ejection.
    for (let round = 0; round < 3 && (await ejections()) === 0; round++) {
      answeredBy.push(await contextRefused());
      answeredBy.push(await policyRefused());
    }
    expect(answeredBy.every((a) => a === 'answered by p2')).toBe(true);
    await waitFor(async () => ((await ejections()) > 0 ? true : undefined), { what: 'Envoy to eject the failing middle pool', timeoutMs: 3_000, intervalMs: 20 });
    const host = (await gw.hosts('guarded')).find((h) => h.port === p1.port);
    expect(host?.healthFlags).toContain('failed_outlier_check');
    // Ejected: a context-window refusal now goes past the middle pool without calling it.
    const calls = p1.received().length;
    expect(await contextRefused()).toBe('answered by p2');
    expect(p1.received()).toHaveLength(calls);
  });
});

describe('a named pool that is ejected', () => {
  it('the route\'s last attempt is not spent on a skip: the client gets a provider\'s answer, never the empty stand-in', async () => {
    // A 429 moves on without counting against the first pool (consecutive5xx: 1).
    await connectMiddle('/fragile/v1', 429);
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    await p2.setMode({ kind: 'status', status: 503 });
    expect((await gw.chatFailure('/fragile/v1')).status).toBe(503);
    await waitFor(async () => ((await gw.hosts('fragile')).find((h) => h.port === p2.port)?.healthFlags.includes('failed_outlier_check') === true ? true : undefined), { what: 'Envoy to eject the named pool', timeoutMs: 3_000, intervalMs: 20 });
    await gw.resetFakes();
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    // Attempt 2 skips the middle pool; with the named pool ejected, previous_priorities starts
    // again from the first pool for attempt 3, the route's last (2 retries): that pool is asked.
    const failure = await gw.chatFailure('/fragile/v1');
    expect(failure.status).toBe(400);
    expect(failure.message).toContain('maximum context length is 8192 tokens');
    expect(p0.received()).toHaveLength(2);
    expect(p1.received()).toHaveLength(0);
    expect(p2.received()).toHaveLength(0);
  });
});

describe('a skip with no connection to the skipped member ready', () => {
  it('waits for Envoy to connect, then skips: the middle pool is never called', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    // The 'cold' Backend's middle pool has had no request: Envoy connects to it for this attempt.
    const answer = await gw.chat('/cold/v1');
    expect(answer.content).toBe('answered by p2');
    expect(p1.received()).toHaveLength(0);
    // The stand-in waited for Envoy's connect timeout (5 s): by then Envoy has the connection.
    expect(answer.elapsedMs).toBeGreaterThan(5_000);
    expect(gw.envoy.running()).toBe(true);
  });

  it('after a drill through the pools before the named one, the first skip does not wait: the drill warmed their members and called none of them', async () => {
    // Neither pool before the named one has had a request. The drill's attempts there answer
    // "not ready" (a local reply, safe while Envoy connects) and are sent again: Envoy kept
    // connecting, and the spare connection of its preconnect policy stays.
    const drill = await runDrillRequests({ backend: 'ai/warmed', priority: 1, requests: 1, gateway: new URL(`http://127.0.0.1:${gw.listenerPort}/warmed/v1`), model: 'client-model', output: 'table' }, DRILL_KEY);
    expect(drill[0]).toMatchObject({ status: 200, failedOver: true });
    expect(p0.received()).toHaveLength(0);
    expect(p1.received()).toHaveLength(0);
    await gw.resetFakes();
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const answer = await gw.chat('/warmed/v1');
    expect(answer.content).toBe('answered by p2');
    expect(p1.received()).toHaveLength(0);
    // The 'cold' Backend above waited Envoy's connect timeout (5 s) for the same skip; this one
    // must not (how fast is a bench's business).
    console.log(`warmed skip: ${Math.round(answer.elapsedMs)} ms`);
    expect(answer.elapsedMs).toBeLessThan(DEFAULT_CONNECT_TIMEOUT_MS);
    expect(gw.envoy.running()).toBe(true);
  });

  it('a member whose TLS handshake never completes: Envoy fails the attempt at its connect timeout and the named pool answers; Envoy keeps serving', async () => {
    // Before the wait, the skip's stand-in reached Envoy's router while it was still connecting,
    // and Envoy 1.40 crashed (segmentation fault, every time).
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const answer = await gw.chat('/stalled/v1');
    expect(answer.content).toBe('answered by p2');
    expect(gw.envoy.running()).toBe(true);
    expect(await gw.clusterStat('stalled', 'upstream_cx_connect_timeout')).toBeGreaterThan(0);
  });
});

describe('content-policy refusals answered 200, with contentPolicyFallback: NextPool', () => {
  for (const api of ['openai', 'azureopenai'] as const) {
    it(`hands ${api}'s non-streamed refusal to the next priority`, async () => {
      const before = await failures('small', 'content_policy');
      await p0.setMode({ kind: 'filtered', api });
      expect((await gw.chat()).content).toBe('answered by p1');
      expect(p0.received()).toHaveLength(1);
      expect(await failures('small', 'content_policy')).toBe(before + 1);
    });

    it(`hands ${api}'s streamed refusal, sent before any content, to the next priority`, async () => {
      await p0.setMode({ kind: 'filtered', api });
      const stream = await gw.client().chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }], stream: true });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      expect(text).toBe('answered by p1');
      expect(p0.received()).toHaveLength(1);
    });
  }

  it('a filter that stops a stream after its first content is not retried: the client already reads it', async () => {
    await p0.setMode({ kind: 'filtered', api: 'azureopenai', afterContent: true });
    const stream = await gw.client().chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }], stream: true });
    let text = '';
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe('begun by p0');
    expect(finish).toBe('content_filter');
    expect(p1.received()).toHaveLength(0);
  });

  it('an answer with content is not held back as a refusal: the client gets the first pool\'s answer', async () => {
    const stream = await gw.client().chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('answered by p0');
    expect(p1.received()).toHaveLength(0);
  });

  it('without the fallback the client gets the provider\'s 200 refusal as it was', async () => {
    await p0.setMode({ kind: 'filtered', api: 'openai' });
    const completion = await gw.client('/context-only/v1').chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] });
    expect(completion.choices[0]?.finish_reason).toBe('content_filter');
    expect(completion.choices[0]?.message.content).toBeNull();
    expect(p1.received()).toHaveLength(0);
  });
});
