import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { attempts, type GatewayFixture } from '../support/gateway-fixture.js';
import { chatUntilEjected, startTwoPriorities } from '../support/two-priorities.js';
import { E2E_LOAD_MARGIN_MS, logTiming } from '../support/timing.js';
import { waitFor } from '../support/wait.js';

/**
 * Passive health checking: a failing priority 0 is ejected after a few failures, so later requests
 * stop paying a failed attempt on it; once healthy and past its ejection time it gets traffic back.
 */

const BASE_EJECTION_MS = 2_000;
/** How often Envoy looks for hosts to bring back (test/support/two-priorities.ts). */
const INTERVAL_MS = 250;
/**
 * The bound on the return: the ejection time, one interval, and the load margin; still far below
 * the 15 s an ejection lasts when baseEjectionTime is not applied (the Backend default).
 */
const RETURN_BOUND_MS = BASE_EJECTION_MS + INTERVAL_MS + E2E_LOAD_MARGIN_MS;

let gw: GatewayFixture;
let p0: FakeProvider;
let p1: FakeProvider;

beforeAll(async () => {
  ({ gw, p0, p1 } = await startTwoPriorities({ id: 'outlier', baseEjectionTime: `${BASE_EJECTION_MS / 1000}s` }));
});

afterAll(async () => {
  await gw?.stop();
});

async function primaryHost(): Promise<{ healthFlags: string[] }> {
  const host = (await gw.hosts('chat')).find((h) => h.port === p0.port);
  if (!host) throw new Error('priority 0 host missing from /clusters');
  return host;
}

it('ejects a failing priority 0, sends later requests straight to priority 1, and brings priority 0 back after the ejection time', async () => {
  expect(await gw.clusterStat('chat', 'outlier_detection.ejections_enforced_total')).toBe(0);
  await p0.setMode({ kind: 'status', status: 503 });

  const { notYetAt, ejectedAt, answeredBy } = await chatUntilEjected(gw);
  expect(answeredBy.every((name) => name === 'p1')).toBe(true);
  expect(p0.received().length).toBeGreaterThanOrEqual(3);
  expect(p0.received().length).toBeLessThanOrEqual(4);
  expect((await primaryHost()).healthFlags).toContain('failed_outlier_check');
  expect(await gw.clusterStat('chat', 'outlier_detection.ejections_active')).toBe(1);

  // Ejected: no request pays a failed attempt on priority 0 any more.
  const failedAttempts = p0.received().length;
  p1.clear();
  for (let i = 0; i < 5; i++) {
    const answer = await gw.chat();
    expect(answer.answeredBy).toBe('p1');
  }
  expect(p0.received()).toHaveLength(failedAttempts);
  expect(attempts(p1.received())).toEqual([1, 1, 1, 1, 1]);

  // Healthy again: traffic returns once the ejection time has passed, not before. Each side is
  // judged with the estimate that load can only make safer: the earliest the ejection can have
  // been against the latest the return can have been, and the other way round.
  await p0.setMode('ok');
  let sentAt = 0;
  const returnedAt = await waitFor(
    async () => {
      sentAt = Date.now();
      return (await gw.chat()).answeredBy === 'p0' ? Date.now() : undefined;
    },
    { what: 'traffic to return to priority 0', timeoutMs: RETURN_BOUND_MS, intervalMs: 100 },
  );
  const ejectedForMs = returnedAt - ejectedAt;
  logTiming('priority 0 ejected for (from the ejection seen to the first answer)', ejectedForMs);
  expect(returnedAt - notYetAt).toBeGreaterThanOrEqual(BASE_EJECTION_MS);
  expect(sentAt - ejectedAt).toBeLessThan(RETURN_BOUND_MS);
  expect((await primaryHost()).healthFlags).not.toContain('failed_outlier_check');
  expect(await gw.clusterStat('chat', 'outlier_detection.ejections_active')).toBe(0);
  for (let i = 0; i < 3; i++) expect((await gw.chat()).answeredBy).toBe('p0');
  process.stdout.write(`outlier: ejected after ${failedAttempts} failed attempts; priority 0 back after ${ejectedForMs} ms\n`);
});
