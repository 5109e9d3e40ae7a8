import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import {
  aiBackend,
  gatewayManifests,
  httpRoute,
  startGatewayFixture,
  type FakeMember,
  type GatewayFixture,
  type Manifest,
} from '../support/gateway-fixture.js';
import { steadyStream } from '../support/steady-stream.js';
import { E2E_LOAD_MARGIN_MS, logTiming, WATCHED_CHANGE_MS } from '../support/timing.js';
import { waitFor } from '../support/wait.js';

/**
 * Editing the Backend on disk reaches Envoy without dropping a request: a steady stream runs
 * across the edit and every request gets an answer. How fast is printed, not judged (a bench's
 * business); the bound only tells the file watch from the provider's 30 s resync.
 */

const RATE_PER_SECOND = 20;

let gw: GatewayFixture;
let alpha: FakeProvider;
let bravo: FakeProvider;
let alphaMember: FakeMember;
let bravoMember: FakeMember;

function chatFile(priorities: FakeMember[][], outlierDetection?: Manifest): Manifest[] {
  return [
    aiBackend({ name: 'chat', priorities, ...(outlierDetection ? { outlierDetection } : {}) }),
    httpRoute('chat', [{ path: '/v1', backend: 'chat' }]),
  ];
}

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'hot-reload',
    providers: ['alpha', 'bravo'],
    manifests: ({ listenerPort, fakes }) => {
      alphaMember = { name: 'alpha', fake: fakes['alpha']!, hostname: 'alpha.llm.test' };
      bravoMember = { name: 'bravo', fake: fakes['bravo']!, hostname: 'bravo.llm.test' };
      return { 'gateway.yaml': gatewayManifests(listenerPort), 'chat.yaml': chatFile([[alphaMember], [bravoMember]]) };
    },
    waitForBackends: ['chat'],
  });
  ({ alpha, bravo } = gw.fakes as Record<'alpha' | 'bravo', FakeProvider>);
});

afterAll(async () => {
  await gw?.stop();
});

interface StreamResult {
  sentAt: number;
  answeredBy: string | null;
  error?: string;
}

/** Sends RATE_PER_SECOND chat requests a second while `during` runs and for `tailMs` after; every request's outcome. */
function chatStream(during: () => Promise<void>, tailMs: number): Promise<StreamResult[]> {
  return steadyStream(() => {
    const sentAt = Date.now();
    return gw.chat().then(
      (a): StreamResult => ({ sentAt, answeredBy: a.answeredBy }),
      (err: unknown): StreamResult => ({ sentAt, answeredBy: null, error: err instanceof Error ? err.message : String(err) }),
    );
  }, RATE_PER_SECOND, during, tailMs);
}

/** Swaps the priorities on disk while requests flow; returns when the file was written and what the stream saw. */
async function swapUnderLoad(next: Manifest[], from: FakeProvider, to: FakeProvider): Promise<{ writtenAt: number; results: StreamResult[]; switchMs: number }> {
  await gw.resetFakes();
  let writtenAt = 0;
  // The stream runs from before the edit, until the old priority 0 has answered a quarter
  // second's worth of it, until the new priority 0 has had a second's worth, however long the
  // switch takes on a loaded machine, then half a second more.
  const results = await chatStream(async () => {
    await waitFor(() => from.received().length >= RATE_PER_SECOND / 4, { what: `${from.name} to be sent ${RATE_PER_SECOND / 4} requests before the edit`, timeoutMs: E2E_LOAD_MARGIN_MS });
    writtenAt = gw.write('chat.yaml', next);
    await waitFor(() => to.received().length >= RATE_PER_SECOND, {
      what: `${to.name} to be sent ${RATE_PER_SECOND} requests after the edit`,
      timeoutMs: WATCHED_CHANGE_MS + 1_000,
    });
  }, 500);
  const firstOnNew = to.received()[0]?.time ?? Infinity;
  return { writtenAt, results, switchMs: firstOnNew - writtenAt };
}

function expectCleanSwitch(run: { writtenAt: number; results: StreamResult[]; switchMs: number }, from: FakeProvider, to: FakeProvider): void {
  const failures = run.results.filter((r) => r.error !== undefined);
  expect(failures).toEqual([]);
  expect(run.results.length).toBeGreaterThanOrEqual(RATE_PER_SECOND * 1.5);
  // Before the edit, only the old priority 0 was sent requests. (Told at the providers: a request
  // the client sent just before the write can reach Envoy after the new configuration did.)
  expect(from.received().filter((r) => r.time < run.writtenAt).length).toBeGreaterThan(0);
  expect(to.received().filter((r) => r.time < run.writtenAt)).toEqual([]);
  logTiming(`switch from ${from.name} to ${to.name}`, run.switchMs);
  expect(run.switchMs).toBeLessThan(WATCHED_CHANGE_MS);
  // Once Envoy sent the new priority 0 its first request, it sent it every request that came after:
  // each one the client sent from that moment on was answered by it (Envoy has one worker here, so
  // its configuration changes at once; requests it had routed before may still reach the old one).
  const switchedAt = run.writtenAt + run.switchMs;
  const after = run.results.filter((r) => r.sentAt > switchedAt);
  expect(after.length).toBeGreaterThan(0);
  expect(after.filter((r) => r.answeredBy !== to.name)).toEqual([]);
  expect(to.received().length).toBeGreaterThanOrEqual(RATE_PER_SECOND);
  // Nothing was answered by a retry: the old priority 0 stayed healthy throughout.
  expect([...from.received(), ...to.received()].every((r) => r.headers['x-envoy-attempt-count'] === '1')).toBe(true);
}

it('lands an edit of the Backend on disk (priority 0 swapped) in Envoy through the file watch, with no failed request in a 20 req/s stream', async () => {
  const run = await swapUnderLoad(chatFile([[bravoMember], [alphaMember]]), alpha, bravo);
  expectCleanSwitch(run, alpha, bravo);
  await gw.waitForHosts('chat', new Map([[bravo.port, 0], [alpha.port, 1]]));
  expect(gw.condition('Backend', 'chat', 'Programmed')?.status).toBe('True');
  process.stdout.write(`hot-reload: endpoint-only edit reached the new priority 0 ${run.switchMs} ms after the write (${run.results.length} requests, 0 failed)\n`);
});

it('lands an edit that also changes cluster settings (outlier detection) the same way', async () => {
  const run = await swapUnderLoad(chatFile([[alphaMember], [bravoMember]], { consecutive5xx: 5, baseEjectionTime: '10s' }), bravo, alpha);
  expectCleanSwitch(run, bravo, alpha);
  const dump = JSON.stringify(await gw.envoy.configDump());
  expect(dump).toContain('"consecutive_5xx":5');
  process.stdout.write(`hot-reload: cluster+endpoint edit reached the new priority 0 ${run.switchMs} ms after the write (${run.results.length} requests, 0 failed)\n`);
});
