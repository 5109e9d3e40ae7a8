import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { LeaderElector, type LeaderElectorOptions } from '../../src/status/leader.js';
import { sleep, waitFor } from '../support/wait.js';
import type { LeaseClient } from '../../src/status/kube-api.js';
import { FakeLeases, quietLogger, RecordingLeases, type LeaseCall } from './status-fakes.js';

const timing = { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100 };
const electors: LeaderElector[] = [];
function elector(leases: LeaseClient, identity: string, extra: Partial<LeaderElectorOptions> = {}): LeaderElector {
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

/** The call that made `identity` the holder (its first successful create or replace naming it). */
function takeover(calls: LeaseCall[], identity: string): number {
  const at = calls.findIndex((c) => c.op !== 'get' && c.ok && c.holder === identity);
  expect(at, `${identity} to have taken the Lease`).toBeGreaterThan(0);
  return at;
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
    const bCalls = new RecordingLeases(leases);
    const b = elector(bCalls, 'b');
    b.start();
    // b has read the Lease a holds, twice (it tried and declined), rather than a fixed sleep.
    await waitFor(() => bCalls.calls.filter((c) => c.op === 'get' && c.result?.holderIdentity === 'a').length >= 2, { what: 'b to read a\'s Lease twice' });
    expect(b.isLeader()).toBe(false);
    const aStopped = leases.record('sys', 'switchyard-controller');
    await a.stop();
    expect(stopped).toEqual(['a']);
    const released = leases.record('sys', 'switchyard-controller');
    expect(released).toMatchObject({ holderIdentity: '' });
    expect(released?.resourceVersion).not.toBe(aStopped?.resourceVersion);
    await waitFor(() => b.isLeader(), { what: 'b to lead', timeoutMs: 2000, intervalMs: 5 });
    // Judged by b's tries, not the clock (a loaded machine delays every try alike): the first
    // read of b that saw the release is followed by b's write that took the Lease.
    const calls = bCalls.calls;
    const sawRelease = calls.findIndex((c) => c.op === 'get' && c.result?.resourceVersion === released?.resourceVersion);
    expect(sawRelease, "b's read of the released Lease").toBeGreaterThanOrEqual(0);
    expect(takeover(calls, 'b')).toBe(sawRelease + 1);
    expect(leases.record('sys', 'switchyard-controller')).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
  });

  it('waits out the lease of a leader that died without releasing, then takes over', async () => {
    const leases = new FakeLeases();
    const a = elector(leases, 'a');
    a.start();
    await waitFor(() => a.isLeader(), { what: 'a to lead' });
    const bCalls = new RecordingLeases(leases);
    const b = elector(bCalls, 'b');
    b.start();
    await waitFor(() => bCalls.calls.filter((c) => c.op === 'get' && c.result?.holderIdentity === 'a').length >= 2, { what: 'b to read a\'s Lease twice' });
    expect(b.isLeader()).toBe(false);
    await a.stop({ release: false });
    const last = leases.record('sys', 'switchyard-controller');
    expect(last?.holderIdentity).toBe('a');
    await waitFor(() => b.isLeader(), { what: 'b to lead', timeoutMs: 3000, intervalMs: 5 });
    // Judged by b's tries, not the clock (a loaded machine delays every try alike). b counts the
    // lease from the read in which it first saw a's last renewal: a moment between that read's
    // endedAt and its settledAt.
    const calls = bCalls.calls;
    const saw = calls.findIndex((c) => c.op === 'get' && c.result?.resourceVersion === last?.resourceVersion);
    const seen = calls[saw];
    if (seen?.settledAt === undefined) throw new Error(`b never read a's last renewal: ${JSON.stringify(calls)}`);
    const took = takeover(calls, 'b');
    // Not before the lease ran out ...
    expect(calls[took]!.startedAt - seen.endedAt).toBeGreaterThanOrEqual(timing.leaseDurationMs);
    // ... and at b's first try after it had: every earlier read of b returned before then.
    const declined = calls.slice(saw, took - 1);
    expect(declined.length).toBeGreaterThan(0);
    for (const c of declined) expect(c).toMatchObject({ op: 'get', result: { holderIdentity: 'a' } });
    for (const c of declined) expect(c.endedAt - seen.settledAt).toBeLessThan(timing.leaseDurationMs);
    expect(calls[took - 1]).toMatchObject({ op: 'get', result: { resourceVersion: last?.resourceVersion } });
  });

  it('stops leading when it cannot renew within the renew deadline, before anyone else may take the Lease', async () => {
    const leases = new FakeLeases();
    const events: string[] = [];
    const aCalls = new RecordingLeases(leases);
    const a = elector(aCalls, 'a', { onStartedLeading: () => void events.push('started'), onStoppedLeading: () => void events.push('stopped') });
    a.start();
    await waitFor(() => a.isLeader(), { what: 'a to lead' });
    // a's last acquire or renewal (a create or a replace) began with the read before it.
    const wrote = aCalls.calls.map((c) => c.op !== 'get' && c.ok).lastIndexOf(true);
    const renewedAt = aCalls.calls[wrote - 1]?.startedAt;
    if (renewedAt === undefined) throw new Error(`a led without a write of its own: ${JSON.stringify(aCalls.calls)}`);
    leases.down = true;
    // A follower may take the Lease a lease duration after it saw a's last renewal land. Judged
    // by the order of two timers, not by the clock (a loaded machine delays both alike): a's own
    // deadline must fire before one set halfway between the renew deadline and the lease duration.
    await sleep(renewedAt + (timing.renewDeadlineMs + timing.leaseDurationMs) / 2 - performance.now());
    expect(a.isLeader()).toBe(false);
    expect(events).toEqual(['started', 'stopped']);
    leases.down = false;
    await waitFor(() => a.isLeader(), { what: 'a to lead again once the API server answers' });
  });

  it('refuses timings under which two replicas could lead at once', () => {
    expect(() => elector(new FakeLeases(), 'x', { leaseDurationMs: 1000, renewDeadlineMs: 1000, retryPeriodMs: 100 })).toThrow(/renewDeadline/);
    expect(() => elector(new FakeLeases(), 'x', { leaseDurationMs: 1000, renewDeadlineMs: 500, retryPeriodMs: 500 })).toThrow(/retryPeriod/);
  });
});
