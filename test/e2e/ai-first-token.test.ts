import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { E2E_LOAD_MARGIN_MS } from '../support/timing.js';
import { readStreamedText } from '../support/chat.js';
import { aiBackend, gatewayManifests, httpRoute, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';

/**
 * First-token deadline through the real Envoy and the AI extension: a primary that answers 200 at
 * once and then sends only keep-alives (SSE comments, a role-only chunk; blank lines for JSON) is
 * abandoned when firstTokenTimeout passes, before the client has received a byte, and the next
 * priority answers. The official OpenAI client talks to the gateway.
 */

const HOSTS = { p0: 'primary.llm.test', p1: 'secondary.llm.test', p2: 'tertiary.llm.test' } as const;
const DEADLINE_MS = 2_000;
/**
 * The attempt is abandoned at the deadline, not at the route's timeout (300 s; the client gives up
 * at 20 s): the first token comes within the load margin after it. Issue 11's figure (under 2.5 s)
 * is a benchmark row (`npm run bench -- --suite ai-first-token`), not a timed test: on a loaded
 * machine Envoy and the fakes share two cores with other test files.
 */
const FIRST_TOKEN_BOUND_MS = DEADLINE_MS + E2E_LOAD_MARGIN_MS;
/** The `pools` Backend: two silent pools of 700 ms each; its own 10 s is what ignoring them would cost. */
const POOL_DEADLINE_MS = 700;
/** The `solo` Backend's deadline. */
const SOLO_DEADLINE_MS = 500;

let gw: GatewayFixture;
let p0: FakeProvider;
let p1: FakeProvider;
let p2: FakeProvider;
const logLines: string[] = [];

function withDeadlines(backend: Manifest, backendDeadline: string, poolDeadlines: (string | undefined)[] = []): Manifest {
  const spec = backend['spec'] as { ai: { firstTokenTimeout?: string; multipool: { priorities: { firstTokenTimeout?: string }[] } } };
  spec.ai.firstTokenTimeout = backendDeadline;
  poolDeadlines.forEach((d, i) => {
    const pool = spec.ai.multipool.priorities[i];
    if (d !== undefined && pool) pool.firstTokenTimeout = d;
  });
  return backend;
}

function withLlmDeadline(backend: Manifest, deadline: string): Manifest {
  (backend['spec'] as { ai: { firstTokenTimeout?: string } }).ai.firstTokenTimeout = deadline;
  return backend;
}

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'ai-first-token',
    providers: ['p0', 'p1', 'p2'],
    logLines,
    // The secondary streams its events 30 ms apart, so "first token" and "whole answer" differ.
    fakeOptions: { p1: { streamIntervalMs: 30 } },
    manifests: ({ listenerPort, fakes }) => {
      const pools = [
        [{ name: 'primary', fake: fakes['p0']!, hostname: HOSTS.p0 }],
        [{ name: 'secondary', fake: fakes['p1']!, hostname: HOSTS.p1 }],
        [{ name: 'tertiary', fake: fakes['p2']!, hostname: HOSTS.p2 }],
      ];
      return {
        'gateway.yaml': gatewayManifests(listenerPort),
        'backends.yaml': [
          withDeadlines(aiBackend({ name: 'chat', priorities: pools.slice(0, 2), outlierDetection: { enabled: false } }), '2s'),
          // The Backend's 10s would keep the client waiting; the primary pool's own 700ms wins.
          withDeadlines(aiBackend({ name: 'pools', priorities: pools, outlierDetection: { enabled: false } }), '10s', ['700ms', '700ms']),
          // Without a deadline a silent provider keeps the client waiting (the behaviour this fixes).
          aiBackend({ name: 'plain', priorities: pools.slice(0, 2), outlierDetection: { enabled: false } }),
          // One member and no retries: nothing can take over.
          withLlmDeadline(aiBackend({ name: 'solo', llm: true, priorities: [pools[0]!], retry: { attempts: 0 } }), '500ms'),
        ],
        'routes.yaml': [
          httpRoute('chat', [
            { path: '/v1', backend: 'chat' },
            { path: '/pools/v1', rewritePrefix: '/v1', backend: 'pools' },
            { path: '/plain/v1', rewritePrefix: '/v1', backend: 'plain', timeouts: { request: '4s' } },
            { path: '/solo/v1', rewritePrefix: '/v1', backend: 'solo' },
          ]),
        ],
      };
    },
    waitForBackends: ['chat', 'pools', 'plain', 'solo'],
  });
  ({ p0, p1, p2 } = gw.fakes as Record<'p0' | 'p1' | 'p2', FakeProvider>);
  // Steady state: Envoy's first connections (to the extension, to the fakes) are not the deadline's cost.
  await Promise.all([gw.chat(), gw.chat(), gw.chat(), gw.chat()]);
  await gw.resetFakes();
});

afterAll(async () => {
  await gw?.stop();
});

beforeEach(async () => {
  await gw.resetFakes();
});

interface Streamed {
  firstTokenMs: number;
  text: string;
}

/** One streamed chat completion: when its first content arrived and what it said. */
async function streamed(prefix = '/v1'): Promise<Streamed> {
  const started = performance.now();
  const stream = await gw.client(prefix).chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }], stream: true });
  const { text, arrivals } = await readStreamedText(stream, started);
  return { firstTokenMs: arrivals[0] ?? -1, text };
}

async function whole(prefix = '/v1'): Promise<{ ms: number; text: string }> {
  const started = performance.now();
  const completion = await gw.client(prefix).chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] });
  return { ms: performance.now() - started, text: completion.choices[0]?.message.content ?? '' };
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((p) => l.includes(p)));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('a primary that sends headers and keep-alives but no content', () => {
  it('streamed: the first token comes from the secondary soon after the 2 s deadline, for every request (official client)', async () => {
    await p0.setMode({ kind: 'silent', keepAliveMs: 200 });
    const results = await Promise.allSettled([streamed(), streamed(), streamed(), streamed()]);
    const failures = results.filter((r) => r.status === 'rejected');
    expect(failures).toEqual([]);
    console.log(`first token (streamed, 4 concurrent): ${results.map((r) => (r.status === 'fulfilled' ? `${r.value.firstTokenMs.toFixed(0)} ms` : 'failed')).join(', ')}`);
    for (const r of results) {
      if (r.status !== 'fulfilled') continue;
      expect(r.value.text).toBe('answered by p1');
      // The deadline was waited for (the primary had its chance), and not much longer.
      expect(r.value.firstTokenMs).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
      expect(r.value.firstTokenMs).toBeLessThan(FIRST_TOKEN_BOUND_MS);
    }
    expect(p0.received()).toHaveLength(4);
    expect(p1.received()).toHaveLength(4);
    expect(p1.received().every((r) => r.headers['x-envoy-attempt-count'] === '2')).toBe(true);
  });

  it('non-streamed: the answer comes from the secondary soon after the 2 s deadline, for every request', async () => {
    await p0.setMode({ kind: 'silent', keepAliveMs: 200 });
    const results = await Promise.allSettled([whole(), whole(), whole(), whole()]);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    console.log(`answer (non-streamed, 4 concurrent): ${results.map((r) => (r.status === 'fulfilled' ? `${r.value.ms.toFixed(0)} ms` : 'failed')).join(', ')}`);
    for (const r of results) {
      if (r.status !== 'fulfilled') continue;
      expect(r.value.text).toBe('answered by p1');
      expect(r.value.ms).toBeGreaterThanOrEqual(DEADLINE_MS - 50);
      expect(r.value.ms).toBeLessThan(FIRST_TOKEN_BOUND_MS);
    }
  });

  it('is counted as first_token_timeout in metrics and named in the log', async () => {
    const before = await metric('switchyard_ai_failures_total', 'member="primary",cause="first_token_timeout"');
    await p0.setMode({ kind: 'silent', keepAliveMs: 200 });
    await streamed();
    expect(await metric('switchyard_ai_failures_total', 'member="primary",cause="first_token_timeout"')).toBe(before + 1);
    const line = logLines.find((l) => l.includes('first_token_timeout') && l.includes('"member":"primary"'));
    expect(line).toBeDefined();
    expect(line).toContain('"firstTokenTimeoutMs":2000');
  });

  it('a pool\'s own firstTokenTimeout overrides the Backend\'s: two silent pools, the third answers', async () => {
    await p0.setMode({ kind: 'silent', keepAliveMs: 200 });
    await p1.setMode({ kind: 'silent', keepAliveMs: 200 });
    const r = await streamed('/pools/v1');
    expect(r.text).toBe('answered by p2');
    // 700 ms per silent pool, far below the Backend's 10 s.
    console.log(`first token after two silent 700 ms pools: ${r.firstTokenMs.toFixed(0)} ms`);
    expect(r.firstTokenMs).toBeGreaterThanOrEqual(2 * POOL_DEADLINE_MS - 50);
    expect(r.firstTokenMs).toBeLessThan(2 * POOL_DEADLINE_MS + E2E_LOAD_MARGIN_MS);
    expect(p2.received()[0]?.headers['x-envoy-attempt-count']).toBe('3');
  });

  it('without firstTokenTimeout the client keeps waiting on the silent primary (what the deadline fixes)', async () => {
    await p0.setMode({ kind: 'silent', keepAliveMs: 200 });
    const started = performance.now();
    const outcome = await streamed('/plain/v1').then((r) => r.text, (err: unknown) => `failed: ${String(err)}`);
    // The route's 4 s request timeout ends it; the secondary was never asked.
    expect(outcome).not.toBe('answered by p1');
    expect(performance.now() - started).toBeGreaterThan(3_500);
    expect(p1.received()).toHaveLength(0);
  });
});

describe('when no other pool can take over', () => {
  it('the client gets a 504 at once, not the silent stream, and its connection is not left on it', async () => {
    await p0.setMode({ kind: 'silent', keepAliveMs: 100 });
    const started = performance.now();
    const failure = await gw.chatFailure('/solo/v1');
    expect(failure.status).toBe(504);
    // Ended by the extension at its 500 ms deadline, not by the route's 300 s timeout.
    const tookMs = performance.now() - started;
    console.log(`504 with no other pool: ${tookMs.toFixed(0)} ms`);
    expect(tookMs).toBeGreaterThanOrEqual(SOLO_DEADLINE_MS - 50);
    expect(tookMs).toBeLessThan(SOLO_DEADLINE_MS + E2E_LOAD_MARGIN_MS);
    expect(p0.received()).toHaveLength(1);
    // The next request (same client, pooled connection) is served normally.
    await p0.setMode('ok');
    expect((await gw.chat('/solo/v1')).content).toBe('answered by p0');
  });
});

describe('answers that start in time', () => {
  it('pass through unchanged, streamed chunk by chunk, with no failure counted', async () => {
    const before = await metric('switchyard_ai_failures_total', 'member="secondary",cause="first_token_timeout"');
    await p0.setMode({ kind: 'status', status: 503 });
    const started = performance.now();
    const stream = await gw.client().chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }], stream: true });
    const { text, arrivals } = await readStreamedText(stream, started);
    expect(text).toBe('answered by p1');
    // Held only until the first word: the later words still arrive as the provider writes them
    // (30 ms apart). Held to the end, all would arrive together; on a loaded machine the first two
    // may reach the client in one read, so the last must come at least about one interval later.
    expect((arrivals.at(-1) ?? 0) - (arrivals[0] ?? 0)).toBeGreaterThan(25);
    expect(await metric('switchyard_ai_failures_total', 'member="secondary",cause="first_token_timeout"')).toBe(before);
  });
});
