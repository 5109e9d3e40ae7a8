import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import type { BackendStatus } from '../../src/translate/status.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import {
  aiBackend,
  gatewayManifests,
  httpRoute,
  startGatewayFixture,
  type FakeMember,
  type GatewayFixture,
  type Manifest,
} from '../support/gateway-fixture.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

/**
 * Fleet health from Envoy's load reports: a Backend whose primary member's host does not resolve
 * keeps answering from its secondary, and its status says which member is out and why; once
 * the member is fixed, Degraded clears.
 */

const WINDOW_MS = 4_000;

let gw: GatewayFixture;
let p0: FakeProvider;
let p1: FakeProvider;

/** The chat Backend; `primaryHost` is where its priority 0 member's traffic goes. */
function chatBackend(primaryHost: string | undefined, primaryPort?: number): Manifest {
  const backend = aiBackend({
    name: 'chat',
    priorities: [
      [{ name: 'primary', fake: p0, hostname: 'primary.llm.test' } satisfies FakeMember],
      [{ name: 'secondary', fake: p1, hostname: 'secondary.llm.test' }],
    ],
  });
  if (primaryHost !== undefined) {
    const pools = (((backend['spec'] as JsonObject)['ai'] as JsonObject)['multipool'] as JsonObject)['priorities'] as JsonObject[];
    const primary = (pools[0]!['pool'] as JsonObject[])[0]!;
    primary['hostOverride'] = { host: primaryHost, port: primaryPort ?? p0.port };
  }
  return backend;
}

function deadOnly(): Manifest {
  const backend = aiBackend({ name: 'dead', priorities: [[{ name: 'only', fake: p0, hostname: 'dead.llm.test' }]] });
  const pools = (((backend['spec'] as JsonObject)['ai'] as JsonObject)['multipool'] as JsonObject)['priorities'] as JsonObject[];
  (pools[0]!['pool'] as JsonObject[])[0]!['hostOverride'] = { host: 'does-not-exist.invalid', port: 443 };
  return backend;
}

function manifests(listenerPort: number, primaryHost: string, primaryPort?: number): Record<string, Manifest[]> {
  return {
    'gateway.yaml': gatewayManifests(listenerPort),
    'chat.yaml': [chatBackend(primaryHost, primaryPort), deadOnly(), httpRoute('chat', [{ path: '/v1', backend: 'chat' }, { path: '/dead', backend: 'dead', rewritePrefix: '/v1' }])],
  };
}

let listenerPort = 0;

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'fleet-health',
    providers: ['p0', 'p1'],
    manifests: (ctx) => {
      p0 = ctx.fakes['p0']!;
      p1 = ctx.fakes['p1']!;
      listenerPort = ctx.listenerPort;
      return manifests(ctx.listenerPort, 'does-not-exist.invalid');
    },
    loadReporting: { intervalMs: 500, windowMs: WINDOW_MS, refreshMs: 250 },
  });
});

afterAll(async () => {
  await gw?.stop();
});

function chat(): BackendStatus {
  const s = gw.status('Backend', 'chat');
  if (!s || !('priorities' in s)) throw new Error('no status for Backend chat');
  return s;
}

function member(name: string): { requests?: number; errors?: number } | undefined {
  return chat().priorities.flatMap((p) => p.members).find((m) => m.name === name);
}

it('names the member whose host does not resolve in Degraded, with each member\'s figures, and clears once it is fixed', async () => {
  for (let i = 0; i < 8; i++) expect((await gw.chat()).answeredBy).toBe('p1');
  const degraded = await waitFor(
    () => {
      const c = gw.condition('Backend', 'chat', 'Degraded');
      // The figures follow the load reports, a report interval or two behind the requests.
      return c?.status === 'True' && (member('secondary')?.requests ?? 0) >= 8 ? c : undefined;
    },
    { what: 'Degraded=True on Backend chat, with the requests counted', timeoutMs: 10_000, intervalMs: 50 },
  );
  expect(['MemberUnreachable', 'HostNotResolved']).toContain(degraded.reason);
  expect(degraded.message).toContain('member primary');
  expect(degraded.message).toContain('does-not-exist.invalid');
  expect(degraded.message).not.toContain('secondary');
  expect(member('secondary')?.requests).toBeGreaterThanOrEqual(8);
  expect(member('secondary')?.errors).toBe(0);
  expect(member('primary')?.requests).toBe(0);
  // /statusz serves the same statuses.
  const statusz = (await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/statusz`)).json()) as { statuses: BackendStatus[] };
  const served = statusz.statuses.find((s) => s.kind === 'Backend' && s.name === 'chat');
  expect(served?.conditions.find((c) => c.type === 'Degraded')?.message).toContain('member primary');
  expect(served?.priorities[1]?.members[0]?.requests).toBeGreaterThanOrEqual(8);

  // A Backend whose only member's host does not resolve serves nothing, so no load report
  // mentions it: the controller's own DNS lookup says why.
  const failure = await gw.chatFailure('/dead');
  expect(failure.status).toBe(503);
  expect(failure.message).toContain('no healthy upstream in backend/ai/dead');
  expect(failure.message).toContain('kubectl describe backend');
  const dead = await waitFor(
    () => {
      const c = gw.condition('Backend', 'dead', 'Degraded');
      return c?.status === 'True' ? c : undefined;
    },
    { what: 'Degraded=True on Backend dead', timeoutMs: 10_000, intervalMs: 50 },
  );
  expect(dead.reason).toBe('HostNotResolved');
  expect(dead.message).toContain('member only');
  expect(dead.message).toContain('does-not-exist.invalid does not resolve');
  const degradedSince = gw.condition('Backend', 'chat', 'Degraded')?.lastTransitionTime;

  gw.write('chat.yaml', manifests(listenerPort, '127.0.0.1')['chat.yaml']!);
  await gw.waitForHosts('chat', new Map([[p0.port, 0], [p1.port, 1]]));
  const started = Date.now();
  const cleared = await waitFor(
    async () => {
      await gw.chat();
      const c = gw.condition('Backend', 'chat', 'Degraded');
      return c?.status === 'False' ? c : undefined;
    },
    { what: 'Degraded to clear on Backend chat', timeoutMs: WINDOW_MS + 5_000, intervalMs: 100 },
  );
  expect(cleared.reason).toBe('Healthy');
  expect(Date.parse(cleared.lastTransitionTime ?? '')).toBeGreaterThan(Date.parse(degradedSince ?? ''));
  expect(member('primary')?.requests).toBeGreaterThan(0);
  process.stdout.write(`fleet-health: Degraded cleared ${Date.now() - started} ms after the fix\n`);
});

it('reports a member whose attempts fail, in status and /metrics, until the window has passed without failures', async () => {
  // Start from an empty window: the test before left successes of the primary in it.
  await waitFor(() => member('primary')?.requests === 0 && member('secondary')?.requests === 0, { what: 'the window to empty', timeoutMs: WINDOW_MS + 5_000, intervalMs: 50 });
  p0.clear();
  await p0.setMode({ kind: 'status', status: 503 });
  // The failures are reported after this instant: they must count for a whole window (less one
  // slot, a twelfth of it) from here.
  const failingFrom = Date.now();
  for (let i = 0; i < 4; i++) expect((await gw.chat()).answeredBy).toBe('p1');
  const failing = await waitFor(
    () => {
      const c = gw.condition('Backend', 'chat', 'Degraded');
      if (c?.status === 'True' && c.reason === 'MemberFailing') return c;
      return undefined;
    },
    { what: 'Degraded=True (MemberFailing) on Backend chat', timeoutMs: 10_000, intervalMs: 50 },
  );
  expect(failing.message).toMatch(/member primary \(priority 0, 127\.0\.0\.1\): (every attempt|\d+% or more of its attempts) failed in the last 4 s/);
  expect(failing.message).not.toContain('secondary');
  // Outlier detection ejects the primary after 3 failures in a row: Envoy tried it that often.
  const tried = p0.received().length;
  expect(tried).toBeGreaterThanOrEqual(3);
  await waitFor(() => member('primary')?.errors === tried && member('primary')?.requests === tried, { what: `the ${tried} failed attempts in the figures`, timeoutMs: 3_000, intervalMs: 20 });

  const metrics = await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/metrics`)).text();
  expect(metrics).toMatch(/switchyard_backend_degraded\{backend="ai\/chat"\} 1/);
  const errors = /switchyard_backend_member_errors\{backend="ai\/chat",member="primary",priority="0"\} (\d+)/.exec(metrics);
  expect(Number(errors?.[1])).toBe(tried);

  // No more traffic: the failures age out of the window and nothing is failing any more.
  await p0.setMode('ok');
  await waitFor(
    () => gw.condition('Backend', 'chat', 'Degraded')?.status === 'False',
    { what: 'Degraded to clear once the failures left the window', timeoutMs: WINDOW_MS + 5_000, intervalMs: 50 },
  );
  const clearedAfterMs = Date.now() - failingFrom;
  expect(clearedAfterMs).toBeGreaterThanOrEqual(WINDOW_MS - WINDOW_MS / 12);
  process.stdout.write(`fleet-health: MemberFailing cleared ${clearedAfterMs} ms after the failures began (window ${WINDOW_MS} ms)\n`);
});

it('counts attempts that cannot connect as errors of their member', async () => {
  await waitFor(() => member('primary')?.requests === 0 && member('secondary')?.requests === 0, { what: 'the window to empty', timeoutMs: WINDOW_MS + 5_000, intervalMs: 50 });
  // A port nothing listens on: every attempt to the primary fails to connect.
  const closed = await freePort();
  gw.write('chat.yaml', manifests(listenerPort, '127.0.0.1', closed)['chat.yaml']!);
  await gw.waitForHosts('chat', new Map([[closed, 0], [p1.port, 1]]));
  for (let i = 0; i < 4; i++) expect((await gw.chat()).answeredBy).toBe('p1');
  const failing = await waitFor(
    () => {
      const c = gw.condition('Backend', 'chat', 'Degraded');
      return c?.status === 'True' && c.reason === 'MemberFailing' ? c : undefined;
    },
    { what: 'Degraded=True (MemberFailing) for connection failures', timeoutMs: 10_000, intervalMs: 50 },
  );
  expect(failing.message).toContain('member primary (priority 0, 127.0.0.1): every attempt failed');
  expect(member('primary')?.errors).toBe(member('primary')?.requests);
});
