import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { attempts, type GatewayFixture } from '../support/gateway-fixture.js';
import { chatUntilEjected, startTwoPriorities } from '../support/two-priorities.js';
import { waitFor } from '../support/wait.js';

/**
 * Passive health checking: a failing priority 0 is ejected after a few failures, so later requests
 * stop paying a failed attempt on it; once healthy and past its ejection time it gets traffic back.
 */

const BASE_EJECTION_MS = 2_000;

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

  const { ejectedAt, answeredBy } = await chatUntilEjected(gw);
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

  // Healthy again: traffic returns once the ejection time has passed, not before.
  await p0.setMode('ok');
  const returnedAt = await waitFor(
    async () => ((await gw.chat()).answeredBy === 'p0' ? Date.now() : undefined),
    { what: 'traffic to return to priority 0', timeoutMs: 6_000, intervalMs: 100 },
  );
  const ejectedForMs = returnedAt - ejectedAt;
  expect(ejectedForMs).toBeGreaterThanOrEqual(BASE_EJECTION_MS - 200);
  expect(ejectedForMs).toBeLessThan(BASE_EJECTION_MS + 1_500);
  expect((await primaryHost()).healthFlags).not.toContain('failed_outlier_check');
  expect(await gw.clusterStat('chat', 'outlier_detection.ejections_active')).toBe(0);
  for (let i = 0; i < 3; i++) expect((await gw.chat()).answeredBy).toBe('p0');
  process.stdout.write(`outlier: ejected after ${failedAttempts} failed attempts; priority 0 back after ${ejectedForMs} ms\n`);
});
