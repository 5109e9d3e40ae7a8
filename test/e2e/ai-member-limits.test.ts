import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { aiBackend, gatewayManifests, httpRoute, startGatewayFixture, type GatewayFixture, type FakeMember } from '../support/gateway-fixture.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

/**
 * Member limits across Envoy replicas: two gateways (each a serve with its own AI extension and
 * its own real Envoy) share one real Redis. The primary member allows 3 requests a minute; six
 * requests spread over both Envoys reach it exactly 3 times, the other 3 are answered by the next
 * priority, no client error, and the limited member is never called past its limit.
 */

const HOSTS = { limited: 'limited.llm.test', spare: 'spare.llm.test' } as const;

let redis: ChildProcess;
let a: GatewayFixture;
let b: GatewayFixture;
let limited: FakeProvider;
const logsA: string[] = [];
let spare: FakeProvider;
let thrifty: FakeProvider;
/** The thrifty member's tokensPerMinute: a few answers' worth. */
const TOKENS_PER_MINUTE = 40;

function redisServer(): string {
  // scripts/ensure-redis.sh (make test) installs it; missing, the test fails here rather than skip.
  const found = execFileSync('bash', ['-c', 'command -v redis-server || { test -x .toolchain/bin/redis-server && echo .toolchain/bin/redis-server; } || true'], { encoding: 'utf8' }).trim();
  if (found === '') throw new Error('redis-server not found: run scripts/ensure-redis.sh (apt-get install -y redis-server)');
  return found;
}

async function startRedis(port: number): Promise<ChildProcess> {
  const proc = spawn(redisServer(), ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) resolve();
    });
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
  });
  return proc;
}

/** Health flags Envoy shows for the limited member's host (failed_active_health_check once it is out). */
async function limitedFlags(gw: GatewayFixture): Promise<string[]> {
  const host = (await gw.hosts('chat')).find((h) => h.port === limited.port);
  return host?.healthFlags ?? ['absent'];
}

async function metric(gw: GatewayFixture, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && labels.split(',').every((p) => l.includes(p)));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

beforeAll(async () => {
  const redisPort = await freePort();
  redis = await startRedis(redisPort);
  const manifests = (fakes: Record<string, FakeProvider>) => ({ listenerPort }: { listenerPort: number }) => {
    const pools: FakeMember[][] = [
      [{ name: 'limited', fake: fakes['limited']!, hostname: HOSTS.limited, limits: { requestsPerMinute: 3 } }],
      [{ name: 'spare', fake: fakes['spare']!, hostname: HOSTS.spare }],
    ];
    const tokenPools: FakeMember[][] = [
      [{ name: 'thrifty', fake: fakes['thrifty']!, hostname: 'thrifty.llm.test', limits: { tokensPerMinute: TOKENS_PER_MINUTE } }],
      [{ name: 'spare', fake: fakes['spare']!, hostname: HOSTS.spare }],
    ];
    return {
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        aiBackend({ name: 'chat', priorities: pools, outlierDetection: { enabled: false } }),
        aiBackend({ name: 'tokens', priorities: tokenPools, outlierDetection: { enabled: false } }),
      ],
      'routes.yaml': [httpRoute('chat', [{ path: '/v1', backend: 'chat' }, { path: '/tokens/v1', rewritePrefix: '/v1', backend: 'tokens' }])],
    };
  };
  a = await startGatewayFixture({
    id: 'ai-limits-a',
    providers: ['limited', 'spare', 'thrifty'],
    logLines: logsA,
    limitsRedis: `redis://127.0.0.1:${redisPort}`,
    manifests: ({ listenerPort, fakes }) => manifests(fakes)({ listenerPort }),
    waitForBackends: ['chat', 'tokens'],
  });
  ({ limited, spare, thrifty } = a.fakes as Record<'limited' | 'spare' | 'thrifty', FakeProvider>);
  // The second replica's members are the first one's fakes: one provider, two gateways.
  b = await startGatewayFixture({
    id: 'ai-limits-b',
    providers: [],
    limitsRedis: `redis://127.0.0.1:${redisPort}`,
    manifests: ({ listenerPort }) => manifests(a.fakes)({ listenerPort }),
    waitForBackends: ['chat', 'tokens'],
  });
  // Both Envoys have health-checked the members once (the extension said SERVING).
  for (const gw of [a, b]) {
    await waitFor(async () => (await limitedFlags(gw)).length === 0, { what: 'the limited member healthy (health-checked by the extension) before any request', timeoutMs: 15_000 });
  }
}, 90_000);

afterAll(async () => {
  await Promise.allSettled([b?.stop()]);
  await Promise.allSettled([a?.stop()]);
  redis?.kill('SIGKILL');
});

describe('requestsPerMinute shared by two Envoys through Redis', () => {
  it('six requests over both Envoys: exactly 3 reach the limited member, 3 the next priority, 0 errors', async () => {
    // Counts live in whole-minute windows: start early in one, so the six requests share it.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 45_000) await new Promise((r) => setTimeout(r, 60_000 - intoMinute + 200));
    limited.clear();
    spare.clear();
    const gateways = [a, b, a, b, a, b];
    const answeredBy: (string | null)[] = [];
    const errors: unknown[] = [];
    for (const [i, gw] of gateways.entries()) {
      try {
        answeredBy.push((await gw.chat()).answeredBy);
      } catch (err) {
        errors.push(err);
      }
      if (i === 2) {
        // The third request reached the limit: each Envoy's next health check of the member
        // (every 250 ms, against its own extension, which reads the shared count) takes it out.
        for (const g of [a, b]) {
          await waitFor(async () => (await limitedFlags(g)).includes('failed_active_health_check'), { what: 'the limited member taken out by its health check', timeoutMs: 5_000, intervalMs: 20 });
        }
      }
    }
    expect(errors).toEqual([]);
    expect(answeredBy).toEqual(['limited', 'limited', 'limited', 'spare', 'spare', 'spare']);
    expect(limited.received().length).toBe(3);
    expect(spare.received().length).toBe(3);
    // Both extensions saw the member at its limit (one from its own count, one from its check).
    expect(await metric(a, 'switchyard_ai_member_limited_total', 'member="limited",limit="requests"')).toBe(1);
    expect(await metric(b, 'switchyard_ai_member_limited_total', 'member="limited",limit="requests"')).toBe(1);
    expect(await metric(a, 'switchyard_ai_member_limit_overruns_total', 'member="limited"') + await metric(b, 'switchyard_ai_member_limit_overruns_total', 'member="limited"')).toBe(0);
  });

  it('tokensPerMinute: the tokens of the answers (their usage) take the member out once they reach the limit', async () => {
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 45_000) await new Promise((r) => setTimeout(r, 60_000 - intoMinute + 200));
    thrifty.clear();
    spare.clear();
    let spent = 0;
    const thriftyFlags = async (gw: GatewayFixture): Promise<string[]> => (await gw.hosts('tokens')).find((h) => h.port === thrifty.port)?.healthFlags ?? ['absent'];
    const answeredBy: string[] = [];
    for (let i = 0; i < 12 && spent < TOKENS_PER_MINUTE; i++) {
      const gw = i % 2 === 0 ? a : b;
      const { data, response } = await gw.client('/tokens/v1').chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] }).withResponse();
      answeredBy.push(response.headers.get('x-fake-provider') ?? '');
      spent += data.usage?.total_tokens ?? 0;
    }
    expect(spent).toBeGreaterThanOrEqual(TOKENS_PER_MINUTE);
    // Every answer so far came from the thrifty member, which is now at its limit on both Envoys.
    expect(answeredBy.every((n) => n === 'thrifty')).toBe(true);
    for (const g of [a, b]) {
      await waitFor(async () => (await thriftyFlags(g)).includes('failed_active_health_check'), { what: 'the thrifty member taken out once its tokens reached the limit', timeoutMs: 5_000, intervalMs: 20 });
    }
    const before = thrifty.received().length;
    const next = [(await a.chat('/tokens/v1')).answeredBy, (await b.chat('/tokens/v1')).answeredBy];
    expect(next).toEqual(['spare', 'spare']);
    expect(thrifty.received().length).toBe(before);
    expect(await metric(a, 'switchyard_ai_member_limited_total', 'member="thrifty",limit="tokens"') + await metric(b, 'switchyard_ai_member_limited_total', 'member="thrifty",limit="tokens"')).toBeGreaterThanOrEqual(1);
  });

  it('Redis gone: limits fail open (every request served, the limited member back in), with a warning and a metric', async () => {
    // A store call that timed out earlier (a loaded machine) was an outage of its own, warned once.
    const logsBefore = logsA.length;
    redis.kill('SIGKILL');
    await new Promise((r) => redis.once('exit', r));
    // The member is still at its limit in the window, but the count cannot be read: it serves.
    for (const g of [a, b]) {
      await waitFor(async () => (await limitedFlags(g)).length === 0, { what: 'the limited member back in once its count cannot be read', timeoutMs: 5_000, intervalMs: 20 });
    }
    limited.clear();
    spare.clear();
    const answeredBy = [(await a.chat()).answeredBy, (await b.chat()).answeredBy];
    expect(answeredBy).toEqual(['limited', 'limited']);
    expect(await metric(a, 'switchyard_ai_member_limits_store_failures_total', '')).toBeGreaterThan(0);
    expect(await metric(b, 'switchyard_ai_member_limits_store_failures_total', '')).toBeGreaterThan(0);
    const warnings = logsA.slice(logsBefore).filter((l) => l.includes('member limit store unreachable'));
    // One warning per outage, not one per failed call.
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toContain('"level":40');
  });
});
