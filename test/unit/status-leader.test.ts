import { afterEach, describe, expect, it } from 'vitest';
import { LeaderElector, type LeaderElectorOptions } from '../../src/status/leader.js';
import { sleep, waitFor } from '../support/wait.js';
import { FakeLeases, quietLogger } from './status-fakes.js';

const timing = { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100 };
const electors: LeaderElector[] = [];
function elector(leases: FakeLeases, identity: string, extra: Partial<LeaderElectorOptions> = {}): LeaderElector {
  const e = new LeaderElector({ client: leases, namespace: 'sys', identity, logger: quietLogger, ...timing, ...extra });
  electors.push(e);
  return e;
}
afterEach(async () => {
  await Promise.all(electors.splice(0).map((e) => e.stop({ release: false })));
});

/** Samples both electors until one leads, then keeps sampling: never two at once. */
async function watchLeaders(es: LeaderElector[], ms: number): Promise<number> {
  const end = Date.now() + ms;
  let maxAtOnce = 0;
  while (Date.now() < end) {
    maxAtOnce = Math.max(maxAtOnce, es.filter((e) => e.isLeader()).length);
    await sleep(10);
  }
  return maxAtOnce;
}

describe('LeaderElector', () => {
  it('lets exactly one of two replicas lead, and writes who on the Lease', async () => {
    const leases = new FakeLeases();
    const a = elector(leases, 'a');
    const b = elector(leases, 'b');
    a.start();
    b.start();
    await waitFor(() => a.isLeader() || b.isLeader(), { what: 'a leader' });
    expect(await watchLeaders([a, b], 2500)).toBe(1);
    const leader = a.isLeader() ? 'a' : 'b';
    expect(leases.record('sys', 'switchyard-controller')).toMatchObject({ holderIdentity: leader, leaseDurationSeconds: 1, leaseTransitions: 0 });
    expect(a.leader()).toBe(leader);
    expect(b.leader()).toBe(leader);
  });

  it('hands over at the successor’s next try when the leader stops and releases', async () => {
    const leases = new FakeLeases();
    const stopped: string[] = [];
    const a = elector(leases, 'a', { onStoppedLeading: () => void stopped.push('a') });
    a.start();
    await waitFor(() => a.isLeader(), { what: 'a to lead' });
    const b = elector(leases, 'b');
    b.start();
    await sleep(300);
    expect(b.isLeader()).toBe(false);
    const t0 = Date.now();
    await a.stop();
    expect(stopped).toEqual(['a']);
    expect(leases.record('sys', 'switchyard-controller')?.holderIdentity).not.toBe('a');
    await waitFor(() => b.isLeader(), { what: 'b to lead', timeoutMs: 2000, intervalMs: 5 });
    expect(Date.now() - t0).toBeLessThan(timing.retryPeriodMs * 3);
    expect(leases.record('sys', 'switchyard-controller')).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
  });

  it('waits out the lease of a leader that died without releasing, then takes over', async () => {
    const leases = new FakeLeases();
    const a = elector(leases, 'a');
    a.start();
    await waitFor(() => a.isLeader(), { what: 'a to lead' });
    const b = elector(leases, 'b');
    b.start();
    await sleep(300);
    const t0 = Date.now();
    await a.stop({ release: false });
    expect(leases.record('sys', 'switchyard-controller')?.holderIdentity).toBe('a');
    await waitFor(() => b.isLeader(), { what: 'b to lead', timeoutMs: 3000, intervalMs: 5 });
    const took = Date.now() - t0;
    // Not before the lease ran out (less what b had already waited since a's last renewal), not long after.
    expect(took).toBeGreaterThan(timing.leaseDurationMs - 2 * timing.retryPeriodMs);
    expect(took).toBeLessThan(timing.leaseDurationMs + 3 * timing.retryPeriodMs);
  });

  it('stops leading when it cannot renew within the renew deadline, before anyone else may take the Lease', async () => {
    const leases = new FakeLeases();
    const events: string[] = [];
    const a = elector(leases, 'a', { onStartedLeading: () => void events.push('started'), onStoppedLeading: () => void events.push('stopped') });
    a.start();
    await waitFor(() => a.isLeader(), { what: 'a to lead' });
    leases.down = true;
    const t0 = Date.now();
    await waitFor(() => !a.isLeader(), { what: 'a to step down', timeoutMs: 2000, intervalMs: 5 });
    expect(Date.now() - t0).toBeLessThan(timing.leaseDurationMs);
    expect(events).toEqual(['started', 'stopped']);
    leases.down = false;
    await waitFor(() => a.isLeader(), { what: 'a to lead again once the API server answers' });
  });

  it('refuses timings under which two replicas could lead at once', () => {
    expect(() => elector(new FakeLeases(), 'x', { leaseDurationMs: 1000, renewDeadlineMs: 1000, retryPeriodMs: 100 })).toThrow(/renewDeadline/);
    expect(() => elector(new FakeLeases(), 'x', { leaseDurationMs: 1000, renewDeadlineMs: 500, retryPeriodMs: 500 })).toThrow(/retryPeriod/);
  });
});
