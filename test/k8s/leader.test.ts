import { CoordinationV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { kubeStatusApi, type KubeStatusApi, type LeaseClient } from '../../src/status/kube-api.js';
import { LeaderElector } from '../../src/status/leader.js';
import { K8S_SETTLE_MS } from '../support/kube-cluster.js';
import { createNamespace } from '../support/kube.js';
import { expectTookExpiredLease, expectTookReleasedLeaseAtOnce } from '../support/lease-tries.js';
import { sleep, waitFor } from '../support/wait.js';
import { quietLogger, RecordingLeases } from '../unit/status-fakes.js';

/**
 * Leader election on a real coordination.k8s.io/v1 Lease, with a 3 s lease so that waiting one
 * out stays short: one leader at a time, a released Lease is taken at the successor's next try,
 * a dead leader's Lease is taken once it has run out. Takeovers are judged by the successor's
 * recorded tries on the Lease (test/support/lease-tries.ts), not by the wall clock.
 */

const LEASE_MS = 3000;
const RETRY_MS = 500;

let ns: { name: string; remove(): Promise<void> };
let api: KubeStatusApi;
let coordination: CoordinationV1Api;
const electors: LeaderElector[] = [];

function elector(identity: string, lease: string, client: LeaseClient = api.leases): LeaderElector {
  const e = new LeaderElector({ client, namespace: ns.name, name: lease, identity, logger: quietLogger, leaseDurationMs: LEASE_MS, renewDeadlineMs: 2000, retryPeriodMs: RETRY_MS });
  electors.push(e);
  e.start();
  return e;
}

async function holder(lease: string): Promise<{ holder: string; transitions: number; duration: number }> {
  const l = await coordination.readNamespacedLease({ namespace: ns.name, name: lease });
  return { holder: l.spec?.holderIdentity ?? '', transitions: l.spec?.leaseTransitions ?? 0, duration: l.spec?.leaseDurationSeconds ?? 0 };
}

/** Samples every 20 ms: the most replicas that believed they led at the same moment. */
async function mostLeadersAtOnce(es: LeaderElector[], ms: number): Promise<number> {
  let most = 0;
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) most = Math.max(most, es.filter((e) => e.isLeader()).length);
  return most;
}

beforeAll(async () => {
  ns = await createNamespace('leader');
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfig'));
  api = kubeStatusApi(kc);
  coordination = kc.makeApiClient(CoordinationV1Api);
});
afterEach(async () => {
  await Promise.all(electors.splice(0).map((e) => e.stop({ release: false })));
});
afterAll(async () => {
  if (!ns) return;
  // Nothing deletes a namespace's objects without a kube-controller-manager: remove the Leases.
  await coordination.deleteCollectionNamespacedLease({ namespace: ns.name }).catch(() => undefined);
  await ns.remove();
});

describe('LeaderElector on a real Lease', () => {
  it('lets exactly one of two replicas lead, for longer than a lease, and names it on the Lease', async () => {
    const a = elector('replica-a', 'one-leader');
    const b = elector('replica-b', 'one-leader');
    await waitFor(() => a.isLeader() || b.isLeader(), { what: 'a leader', timeoutMs: K8S_SETTLE_MS });
    expect(await mostLeadersAtOnce([a, b], LEASE_MS + 1000)).toBe(1);
    const leader = a.isLeader() ? a : b;
    expect(await holder('one-leader')).toMatchObject({ holder: leader.identity, duration: LEASE_MS / 1000 });
    expect((a.isLeader() ? b : a).leader()).toBe(leader.identity);
  });

  it('hands over at the successor\'s next try when the leader stops and releases the Lease', async () => {
    const a = elector('replica-a', 'release');
    await waitFor(() => a.isLeader(), { what: 'replica-a to lead', timeoutMs: K8S_SETTLE_MS });
    const bTries = new RecordingLeases(api.leases);
    const b = elector('replica-b', 'release', bTries);
    await waitFor(() => bTries.calls.filter((c) => c.op === 'get' && c.ok).length >= 2, { what: 'replica-b to read the held Lease twice', timeoutMs: K8S_SETTLE_MS });
    expect(b.isLeader()).toBe(false);
    const { transitions } = await holder('release');
    await a.stop();
    expect(a.isLeader()).toBe(false);
    // Not the lease duration (3 s): the successor takes a released Lease at its next try.
    await waitFor(() => b.isLeader(), { what: 'replica-b to lead after the release', timeoutMs: LEASE_MS + K8S_SETTLE_MS, intervalMs: 10 });
    expectTookReleasedLeaseAtOnce(bTries.calls, 'replica-b', 'replica-a');
    expect(await holder('release')).toMatchObject({ holder: 'replica-b', transitions: transitions + 1 });
  });

  it('replaces a killed leader (no release) once its lease has run out, not before', async () => {
    const a = elector('replica-a', 'kill');
    await waitFor(() => a.isLeader(), { what: 'replica-a to lead', timeoutMs: K8S_SETTLE_MS });
    const bTries = new RecordingLeases(api.leases);
    const b = elector('replica-b', 'kill', bTries);
    await waitFor(() => bTries.calls.filter((c) => c.op === 'get' && c.ok).length >= 2, { what: 'replica-b to read the held Lease twice', timeoutMs: K8S_SETTLE_MS });
    await a.stop({ release: false });
    expect((await holder('kill')).holder).toBe('replica-a');
    await waitFor(() => b.isLeader(), { what: 'replica-b to take over the expired lease', timeoutMs: LEASE_MS + K8S_SETTLE_MS, intervalMs: 10 });
    const waited = expectTookExpiredLease(bTries.calls, 'replica-b', 'replica-a', LEASE_MS);
    process.stdout.write(`leader: replica-b took the expired Lease ${Math.round(waited)} ms after it first saw its last renewal (lease ${LEASE_MS} ms)\n`);
    expect((await holder('kill')).holder).toBe('replica-b');
  });
});
