import { afterEach, describe, expect, it } from 'vitest';
import { condition } from '../../src/api/conditions.js';
import type { KubeStatusApi } from '../../src/status/kube-api.js';
import { StatusReporter } from '../../src/status/reporter.js';
import type { BackendStatus, WarningEvent } from '../../src/translate/status.js';
import { sleep, waitFor } from '../support/wait.js';
import { FakeEvents, FakeLeases, FakeObjects, quietLogger } from './status-fakes.js';

const status = (message: string): BackendStatus => ({
  kind: 'Backend', namespace: 'ai', name: 'chat', usableMembers: 0, totalMembers: 1, servedPriorities: 0, priorities: [],
  conditions: [condition('ResolvedRefs', false, 'SecretNotFound', message, 1)],
});
const warning: WarningEvent = { object: { kind: 'Backend', namespace: 'ai', name: 'chat' }, reason: 'SecretNotFound', message: 'Secret ai/k not found' };

const reporters: StatusReporter[] = [];
afterEach(async () => {
  await Promise.all(reporters.splice(0).map((r) => r.stop()));
});

describe('StatusReporter', () => {
  it('writes statuses and Events from the Lease holder only, and from the standby once the holder stops', async () => {
    const objects = new FakeObjects();
    objects.put({ kind: 'Backend', namespace: 'ai', name: 'chat' }, {});
    const api: KubeStatusApi = { objects, leases: new FakeLeases(), events: new FakeEvents() };
    const election = { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 50 };
    const a = new StatusReporter({ api, namespace: 'sys', identity: 'a', logger: quietLogger, election });
    reporters.push(a);
    a.start();
    await waitFor(() => a.isLeader(), { what: 'a to lead' });
    const b = new StatusReporter({ api, namespace: 'sys', identity: 'b', logger: quietLogger, election });
    reporters.push(b);
    b.start();
    for (const r of [a, b]) r.publish([status('first')], [warning]);
    await sleep(300);
    expect(a.writer.counters().writes).toBe(1);
    expect(a.recorder.counters().created).toBe(1);
    expect(b.writer.counters()).toEqual({ writes: 0, skipped: 0, conflicts: 0, notFound: 0, errors: 0 });
    expect(b.recorder.counters().created).toBe(0);

    await a.stop();
    await waitFor(() => b.isLeader(), { what: 'b to lead', timeoutMs: 500 });
    b.publish([status('second')], [warning]);
    await sleep(300);
    await b.writer.idle();
    expect(b.writer.counters().writes).toBe(1);
    expect(b.recorder.counters()).toMatchObject({ created: 0, bumped: 0 });
    const conditions = objects.read({ kind: 'Backend', namespace: 'ai', name: 'chat' })?.status?.conditions as { message: string }[];
    expect(conditions[0]?.message).toBe('second');
  });

  it('without leader election acts as the leader: writes statuses and Events with no Lease at all', async () => {
    const objects = new FakeObjects();
    objects.put({ kind: 'Backend', namespace: 'ai', name: 'chat' }, {});
    // An API server where every Lease call fails: nothing may depend on it.
    const leases = new FakeLeases();
    leases.down = true;
    const events = new FakeEvents();
    const solo = new StatusReporter({ api: { objects, leases, events }, namespace: 'sys', identity: 'solo', logger: quietLogger, election: false });
    reporters.push(solo);
    expect(solo.isLeader()).toBe(false);
    solo.start();
    expect(solo.isLeader()).toBe(true);
    expect(solo.elector).toBeUndefined();
    solo.publish([status('written without a Lease')], [warning]);
    await waitFor(() => solo.writer.counters().writes === 1 && events.creates === 1, { what: 'the status write and the Event' });
    const conditions = objects.read({ kind: 'Backend', namespace: 'ai', name: 'chat' })?.status?.conditions as { message: string }[];
    expect(conditions[0]?.message).toBe('written without a Lease');
    expect([...events.events.values()][0]?.reason).toBe('SecretNotFound');
    await solo.stop();
    expect(solo.isLeader()).toBe(false);
  });

  it('with leader election and no reachable Lease writes nothing (the contrast to the case above)', async () => {
    const objects = new FakeObjects();
    objects.put({ kind: 'Backend', namespace: 'ai', name: 'chat' }, {});
    const leases = new FakeLeases();
    leases.down = true;
    const events = new FakeEvents();
    const elected = new StatusReporter({ api: { objects, leases, events }, namespace: 'sys', identity: 'e', logger: quietLogger, election: { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 50 } });
    reporters.push(elected);
    elected.start();
    elected.publish([status('never')], [warning]);
    await sleep(300);
    expect(elected.isLeader()).toBe(false);
    expect(elected.writer.counters().writes).toBe(0);
    expect(events.creates).toBe(0);
  });
});
