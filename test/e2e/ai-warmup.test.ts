import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../../src/ir/model.js';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { WARMUP_ANSWER_HEADER, WARMUP_HEADER, signWarmupHeader } from '../../src/ai-extension/warmup.js';
import { waitFor } from '../support/wait.js';
import { aiBackend, gatewayManifests, httpRoute, regexRoute, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';
import { SKIPPING_HOSTS, skippingBackend, standInsHeld } from '../support/skipping-backend.js';

/**
 * serve warms every AI member's connection through the real Envoy (src/app/ai-warmup.ts): the
 * first request that needs a skip to a member no client ever reached is answered without waiting
 * out Envoy's 5 s connect timeout, and no provider is called by the warm-up.
 */

const HOSTS = SKIPPING_HOSTS;

let gw: GatewayFixture;
/** The same Backend behind an Envoy that serve does not warm (--no-ai-warmup): what a cold member costs. */
let unwarmed: GatewayFixture;
let p0: FakeProvider;
let p1: FakeProvider;
let p2: FakeProvider;
const logLines: string[] = [];
const unwarmedLines: string[] = [];

function withFallback(backend: Manifest): Manifest {
  const spec = backend['spec'] as { ai: { multipool: { priorities: Record<string, unknown>[] } } };
  Object.assign(spec.ai.multipool.priorities[0] ?? {}, { contextWindowFallback: 'NextPool' });
  return backend;
}

async function metric(line: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/metrics`)).text();
  return text.split('\n').filter((l) => line.test(l)).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

function warmedLog(backend: string): Record<string, unknown> | undefined {
  return logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['backend'] === backend && typeof l['msg'] === 'string' && l['msg'].startsWith('ai-warmup: Envoy has a connection ready'));
}

beforeAll(async () => {
  const starting = startGatewayFixture({
    id: 'ai-warmup-off',
    providers: ['p0', 'p1', 'p2'],
    logLines: unwarmedLines,
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [skippingBackend('warm', fakes)],
      'routes.yaml': [httpRoute('chat', [{ path: '/warm/v1', rewritePrefix: '/v1', backend: 'warm' }])],
    }),
    waitForBackends: ['warm'],
  });
  gw = await startGatewayFixture({
    id: 'ai-warmup',
    providers: ['p0', 'p1', 'p2'],
    // Again every 3 s here (20 min by default), to see it repeat.
    aiWarmup: { refreshMs: 3_000 },
    logLines,
    manifests: ({ listenerPort, fakes }) => {
      return {
        'gateway.yaml': gatewayManifests(listenerPort),
        'backends.yaml': [
          skippingBackend('warm', fakes),
          skippingBackend('regex', fakes),
          // A pool of two: the load balancer picks one per attempt; both must end up ready.
          withFallback(aiBackend({ name: 'pair', priorities: [[{ name: 'left', fake: fakes['p0']!, hostname: HOSTS.p0 }, { name: 'right', fake: fakes['p1']!, hostname: HOSTS.p1 }], [{ name: 'last', fake: fakes['p2']!, hostname: HOSTS.p2 }]] })),
          // No stand-in is ever given on its attempts (no drill key, fallback or obtained credential): not warmed.
          aiBackend({ name: 'plain', priorities: [[{ name: 'only', fake: fakes['p0']!, hostname: HOSTS.p0 }], [{ name: 'spare', fake: fakes['p1']!, hostname: HOSTS.p1 }]] }),
        ],
        // Reached only through a route that needs a regular expression: warmed all the same (warm-up routes).
        'routes.yaml': [httpRoute('chat', [{ path: '/warm/v1', rewritePrefix: '/v1', backend: 'warm' }, { path: '/pair/v1', rewritePrefix: '/v1', backend: 'pair' }, { path: '/plain/v1', rewritePrefix: '/v1', backend: 'plain' }]), regexRoute('regex', '/regex/v1/.*', 'regex')],
      };
    },
    waitForBackends: ['warm', 'regex', 'pair', 'plain'],
  });
  ({ p0, p1, p2 } = gw.fakes as Record<'p0' | 'p1' | 'p2', FakeProvider>);
  unwarmed = await starting;
}, 60_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), unwarmed?.stop()]);
});

beforeEach(async () => {
  await gw.resetFakes();
});

describe('serve warms AI members after Envoy takes the configuration', () => {
  it('every pool of the routed Backend is warmed, no provider is called, and the warm-up is labelled in metrics and logs', async () => {
    const report = await waitFor(() => warmedLog('ai/warm'), { what: 'serve to log that ai/warm is warmed', timeoutMs: 30_000, intervalMs: 100 });
    expect(report['readyMembers']).toEqual(expect.arrayContaining(['0/small', '1/large', '2/huge']));
    expect(report['warmup']).toBe(true);
    expect(p0.received()).toHaveLength(0);
    expect(p1.received()).toHaveLength(0);
    expect(p2.received()).toHaveLength(0);
    for (const member of ['small', 'large', 'huge']) {
      expect(await metric(new RegExp(`^switchyard_ai_warmup_attempts_total\\{.*backend="ai/warm".*member="${member}".*outcome="ready"`))).toBeGreaterThan(0);
    }
    // Warm-up attempts are not requests to a provider.
    expect(await metric(/^switchyard_ai_requests_total\{.*backend="ai\/warm"/)).toBe(0);
    expect(warmedLog('ai/regex')?.['readyMembers']).toEqual(expect.arrayContaining(['0/small', '1/large', '2/huge']));
    expect(logLines.some((l) => l.includes('"component":"ai-warmup"') && l.includes('ai/plain'))).toBe(false);
  });

  it('every member of a pool of two, whichever the load balancer picks first', async () => {
    const report = await waitFor(() => warmedLog('ai/pair'), { what: 'serve to log that ai/pair is warmed', timeoutMs: 30_000, intervalMs: 100 });
    expect(report['readyMembers']).toEqual(expect.arrayContaining(['0/left', '0/right', '1/last']));
  });

  it('again within the upstream idle timeout', async () => {
    const ready = (): Promise<number> => metric(/^switchyard_ai_warmup_attempts_total\{.*backend="ai\/warm".*outcome="ready"/);
    const before = await ready();
    await waitFor(async () => (await ready()) > before, { what: 'a second warm-up of ai/warm', timeoutMs: 30_000, intervalMs: 100 });
    expect(p0.received()).toHaveLength(0);
  });

  it('the first skip to the warmed middle pool is answered at once, through a regular-expression route too; where serve does not warm, the same skip waits out the connect timeout', async () => {
    await waitFor(() => warmedLog('ai/warm') && warmedLog('ai/regex'), { what: 'ai/warm and ai/regex warmed', timeoutMs: 30_000 });
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const linesBefore = logLines.length;
    const warm = await gw.chat('/warm/v1');
    expect(warm.content).toBe('answered by p2');
    const regex = await gw.chat('/regex/v1');
    expect(regex.content).toBe('answered by p2');
    expect(p1.received()).toHaveLength(0);
    // Warmed: the skipped member had a connection ready, so the extension held no stand-in for Envoy's connect timeout.
    expect(standInsHeld(logLines.slice(linesBefore), 'ai/warm')).toEqual([]);
    expect(standInsHeld(logLines.slice(linesBefore), 'ai/regex')).toEqual([]);

    const off = unwarmed.fakes as Record<'p0' | 'p1' | 'p2', FakeProvider>;
    await off.p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const cold = await unwarmed.chat('/warm/v1');
    expect(cold.content).toBe('answered by p2');
    expect(off.p1.received()).toHaveLength(0);
    process.stdout.write(`first skip after warm-up: ${Math.round(warm.elapsedMs)} ms (regex route ${Math.round(regex.elapsedMs)} ms); never warmed: ${Math.round(cold.elapsedMs)} ms\n`);
    // Never warmed: the same skip found no connection ready, was held, and waited out Envoy's 5 s connect timeout.
    expect(standInsHeld(unwarmedLines, 'ai/warm').map((h) => h.member)).toEqual(['large']);
    expect(cold.elapsedMs).toBeGreaterThan(DEFAULT_CONNECT_TIMEOUT_MS);
    expect(gw.envoy.running()).toBe(true);
  });

  it('a warm-up header not signed with the extension\'s key is served like any request', async () => {
    const res = await fetch(`http://127.0.0.1:${gw.listenerPort}/warm/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [WARMUP_HEADER]: signWarmupHeader('not-the-key-0123456789abcdef0123456789', 'ai/warm', 2) },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
    });
    await res.arrayBuffer();
    expect(res.status).toBe(200);
    expect(res.headers.get(WARMUP_ANSWER_HEADER)).toBeNull();
    expect(p0.received()).toHaveLength(1);
    expect(p0.received()[0]?.headers[WARMUP_HEADER]).toBeUndefined();
  });
});
