import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import {
  aiBackend,
  attempts,
  gatewayManifests,
  httpRoute,
  startGatewayFixture,
  type GatewayFixture,
} from '../support/gateway-fixture.js';
import { E2E_LOAD_MARGIN_MS, logTiming } from '../support/timing.js';
import { waitFor } from '../support/wait.js';

/**
 * Priority failover through the real controller and the real Envoy: one three-priority Backend
 * (`chat`, outlier detection off so every request pays its failed attempts and counts are exact)
 * and one single-pool Backend (`solo`) that must honour Retry-After.
 */

/**
 * "Promptly" in this file means without waiting for any timer, judged by Envoy's counters, not the
 * clock: no attempt ended on a per-try or connect timeout, and no retry was held for a Retry-After.
 * How long it took is printed.
 */
const TIMER_STATS = ['upstream_rq_per_try_timeout', 'upstream_cx_connect_timeout', 'upstream_rq_retry_backoff_ratelimited'] as const;
async function timerStats(): Promise<Record<string, number>> {
  return Object.fromEntries(await Promise.all(TIMER_STATS.map(async (s) => [s, await gw.clusterStat('chat', s)] as const)));
}
/** The `/slow/v1` route's timeouts.backendRequest. */
const PER_TRY_MS = 1_000;

const HOSTS = { p0: 'primary.llm.test', p1: 'secondary.llm.test', p2: 'tertiary.llm.test', solo: 'solo.llm.test' } as const;

let gw: GatewayFixture;
let p0: FakeProvider;
let p1: FakeProvider;
let p2: FakeProvider;
let solo: FakeProvider;

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'failover',
    providers: ['p0', 'p1', 'p2', 'solo'],
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        aiBackend({
          name: 'chat',
          priorities: [
            [{ name: 'primary', fake: fakes['p0']!, hostname: HOSTS.p0 }],
            [{ name: 'secondary', fake: fakes['p1']!, hostname: HOSTS.p1 }],
            [{ name: 'tertiary', fake: fakes['p2']!, hostname: HOSTS.p2 }],
          ],
          outlierDetection: { enabled: false },
        }),
        aiBackend({ name: 'solo', llm: true, priorities: [[{ fake: fakes['solo']!, hostname: HOSTS.solo }]] }),
      ],
      'routes.yaml': [
        httpRoute('chat', [
          { path: '/v1', backend: 'chat' },
          { path: '/slow/v1', rewritePrefix: '/v1', backend: 'chat', timeouts: { backendRequest: '1s' } },
          { path: '/solo/v1', rewritePrefix: '/v1', backend: 'solo' },
        ]),
      ],
    }),
    waitForBackends: ['chat', 'solo'],
  });
  ({ p0, p1, p2, solo } = gw.fakes as Record<'p0' | 'p1' | 'p2' | 'solo', FakeProvider>);
});

afterAll(async () => {
  await gw?.stop();
});

beforeEach(async () => {
  await gw.resetFakes();
});

describe('status', () => {
  it('reports Programmed=True for the Backend and the Gateway once Envoy has acknowledged the configuration', async () => {
    const before = (kind: string, name: string) => {
      const s = gw.statusesBeforeEnvoy.find((x) => x.kind === kind && x.name === name);
      return s && 'conditions' in s ? s.conditions.find((c) => c.type === 'Programmed') : undefined;
    };
    expect(before('Backend', 'chat')).toMatchObject({ status: 'False', reason: 'Pending' });
    expect(before('Gateway', 'ai-gateway')).toMatchObject({ status: 'False', reason: 'Pending' });
    const programmed = (): string[] =>
      [gw.condition('Backend', 'chat', 'Programmed'), gw.condition('Backend', 'solo', 'Programmed'), gw.condition('Gateway', 'ai-gateway', 'Programmed')].map(
        (c) => c?.status ?? 'absent',
      );
    await waitFor(() => programmed().every((s) => s === 'True'), { what: 'Programmed=True on ai/chat, ai/solo and Gateway ai/ai-gateway', timeoutMs: 5_000 });
    expect(gw.condition('Backend', 'chat', 'Programmed')).toMatchObject({ status: 'True', reason: 'Programmed' });
    expect(gw.condition('Backend', 'solo', 'Programmed')).toMatchObject({ status: 'True', reason: 'Programmed' });
    expect(gw.condition('Gateway', 'ai-gateway', 'Programmed')).toMatchObject({ status: 'True', reason: 'Programmed' });
    const gateway = gw.status('Gateway', 'ai-gateway');
    const listener = gateway && 'listeners' in gateway ? gateway.listeners.find((l) => l.name === 'http') : undefined;
    expect(listener?.conditions.find((c) => c.type === 'Programmed')).toMatchObject({ status: 'True', reason: 'Programmed' });
    expect(gw.condition('Backend', 'chat', 'Accepted')?.status).toBe('True');
    expect(gw.condition('Backend', 'chat', 'ResolvedRefs')?.status).toBe('True');
  });
});

describe('priority failover', () => {
  it('answers from priority 1 when priority 0 returns 503, trying priority 0 exactly once per request', async () => {
    await p0.setMode({ kind: 'status', status: 503 });
    const retriesBefore = await gw.clusterStat('chat', 'upstream_rq_retry');
    const requests = 5;
    for (let i = 0; i < requests; i++) {
      const answer = await gw.chat();
      expect(answer).toMatchObject({ content: 'answered by p1', answeredBy: 'p1' });
    }
    expect(attempts(p0.received())).toEqual(Array<number>(requests).fill(1));
    expect(attempts(p1.received())).toEqual(Array<number>(requests).fill(2));
    expect(p2.received()).toHaveLength(0);
    expect(await gw.clusterStat('chat', 'upstream_rq_retry')).toBe(retriesBefore + requests);
  });

  it('answers from priority 2 when priorities 0 and 1 fail, each member seeing its own Host header', async () => {
    await p0.setMode({ kind: 'status', status: 503 });
    await p1.setMode({ kind: 'status', status: 500 });
    const answer = await gw.chat();
    expect(answer.content).toBe('answered by p2');
    expect(attempts(p0.received())).toEqual([1]);
    expect(attempts(p1.received())).toEqual([2]);
    expect(attempts(p2.received())).toEqual([3]);
    expect(p0.received()[0]?.host).toBe(HOSTS.p0);
    expect(p1.received()[0]?.host).toBe(HOSTS.p1);
    expect(p2.received()[0]?.host).toBe(HOSTS.p2);
    // Envoy's router would name the Host it rewrote (the previous member's) in x-envoy-original-host.
    expect([p0, p1, p2].map((p) => p.received()[0]?.headers['x-envoy-original-host'])).toEqual([undefined, undefined, undefined]);
  });

  it('gives the client the upstream 503 promptly when every priority fails', async () => {
    for (const f of [p0, p1, p2]) await f.setMode({ kind: 'status', status: 503 });
    const exhaustedBefore = await gw.clusterStat('chat', 'upstream_rq_retry_limit_exceeded');
    const timersBefore = await timerStats();
    const failure = await gw.chatFailure();
    expect(failure.status).toBe(503);
    // The body is the last provider's own error, passed through.
    expect(failure.message).toContain('p2 is failing with 503');
    logTiming('503 from every priority', failure.elapsedMs);
    expect(await timerStats()).toEqual(timersBefore);
    expect([...attempts(p0.received()), ...attempts(p1.received()), ...attempts(p2.received())]).toEqual([1, 2, 3]);
    expect(await gw.clusterStat('chat', 'upstream_rq_retry_limit_exceeded')).toBe(exhaustedBefore + 1);
  });

  it('moves a 429 with Retry-After: 20 to priority 1 at once instead of waiting', async () => {
    await p0.setMode({ kind: 'ratelimit', retryAfterSeconds: 20 });
    const rateLimitedBefore = await gw.clusterStat('chat', 'upstream_rq_retry_backoff_ratelimited');
    const answer = await gw.chat();
    expect(answer.answeredBy).toBe('p1');
    logTiming('429 Retry-After: 20 moved to priority 1', answer.elapsedMs);
    // Waiting as asked would take 20 s; half of that separates the two behaviours at any load.
    expect(answer.elapsedMs).toBeLessThan(20_000 / 2);
    expect(p0.counts().ratelimit).toBe(1);
    expect(attempts(p1.received())).toEqual([2]);
    expect(await gw.clusterStat('chat', 'upstream_rq_retry_backoff_ratelimited')).toBe(rateLimitedBefore);
  });

  it('fails over to priority 1 when priority 0 refuses connections', async () => {
    await p0.setMode('refuse');
    const connectFailBefore = await gw.clusterStat('chat', 'upstream_cx_connect_fail');
    const timersBefore = await timerStats();
    for (let i = 0; i < 2; i++) {
      const answer = await gw.chat();
      expect(answer.answeredBy).toBe('p1');
      logTiming('refused priority 0 moved to priority 1', answer.elapsedMs);
    }
    // Refused, not timed out: the failed connects were counted, and no timer held an attempt.
    expect(await timerStats()).toEqual(timersBefore);
    expect(attempts(p1.received())).toEqual([2, 2]);
    expect(p2.received()).toHaveLength(0);
    expect(await gw.clusterStat('chat', 'upstream_cx_connect_fail')).toBeGreaterThan(connectFailBefore);
  });

  it('fails over to priority 1 when priority 0 resets the connection', async () => {
    await p0.setMode('reset');
    const answer = await gw.chat();
    expect(answer.answeredBy).toBe('p1');
    expect(p0.counts().reset).toBe(1);
    expect(attempts(p1.received())).toEqual([2]);
    expect(p2.received()).toHaveLength(0);
  });

  it('gives up on a stalled priority 0 after timeouts.backendRequest (1s) and answers from priority 1', async () => {
    await p0.setMode('stall');
    const perTryTimeoutsBefore = await gw.clusterStat('chat', 'upstream_rq_per_try_timeout');
    const answer = await gw.chat('/slow/v1');
    expect(answer.answeredBy).toBe('p1');
    logTiming('stalled priority 0 abandoned', answer.elapsedMs);
    // Not before the per-try timeout (load only delays), and long before the route's own timeout.
    expect(answer.elapsedMs).toBeGreaterThanOrEqual(PER_TRY_MS - 100);
    expect(answer.elapsedMs).toBeLessThan(PER_TRY_MS + E2E_LOAD_MARGIN_MS);
    expect(p0.counts().stall).toBe(1);
    // Envoy abandoned the stalled attempt rather than leaving it open.
    await waitFor(() => p0.stalled() === 0, { what: 'the stalled request to be closed by Envoy', timeoutMs: 2_000 });
    expect(attempts(p1.received())).toEqual([2]);
    expect(p1.received()[0]?.path).toBe('/v1/chat/completions');
    expect(await gw.clusterStat('chat', 'upstream_rq_per_try_timeout')).toBe(perTryTimeoutsBefore + 1);
  });
});

describe('single-pool Backend', () => {
  it('waits for Retry-After (1 s) before retrying a 429 when there is no other priority', async () => {
    await solo.setMode({ kind: 'ratelimit', retryAfterSeconds: 1 });
    const pending = gw.chat('/solo/v1');
    // The provider recovers as soon as it has refused the first attempt.
    await waitFor(() => solo.received().length >= 1, { what: 'the first attempt on solo', timeoutMs: 2_000, intervalMs: 5 });
    await solo.setMode('ok');
    const answer = await pending;
    expect(answer.answeredBy).toBe('solo');
    logTiming('429 Retry-After: 1 retried on the same pool', answer.elapsedMs);
    expect(answer.elapsedMs).toBeGreaterThanOrEqual(900);
    expect(answer.elapsedMs).toBeLessThan(1_000 + E2E_LOAD_MARGIN_MS);
    const [first, second] = solo.received();
    expect(attempts(solo.received())).toEqual([1, 2]);
    expect(first?.outcome).toBe('ratelimit');
    expect((second?.time ?? 0) - (first?.time ?? 0)).toBeGreaterThanOrEqual(900);
    expect(second?.host).toBe(HOSTS.solo);
    expect(await gw.clusterStat('solo', 'upstream_rq_retry_backoff_ratelimited')).toBe(1);
  });
});
