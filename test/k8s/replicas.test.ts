import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeProvider, type FakeProvider } from '../../examples/demo/fake-provider.js';
import { startAiExtension, type RunningAiExtension } from '../../src/ai-extension/server.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import type { KubeClient } from '../../src/providers/kubernetes/api-client.js';
import { kubeStatusApi } from '../../src/status/kube-api.js';
import {
  apiCondition,
  BACKEND,
  chatThrough,
  GATEWAY,
  gatewayObjects,
  leaseOf,
  MISSING_SECRET,
  removeTestObjects,
  ROUTE,
  secretObject,
  startEnvoyFor,
  startReplica,
  waitForAnswer,
  waitForHosts,
  warningEvents,
  type Replica,
} from '../support/controller-replica.js';
import type { EnvoyProcess } from '../support/envoy.js';
import { createObject, createTestNamespace, deleteObject, K8S_SETTLE_MS, randomSuffix, testClient, testKubeConfig, type TestNamespace } from '../support/kube-cluster.js';
import { expectTookExpiredLease, expectTookReleasedLeaseAtOnce } from '../support/lease-tries.js';
import { freePort } from '../support/ports.js';
import { sleep, waitFor } from '../support/wait.js';
import { RecordingLeases } from '../unit/status-fakes.js';

/**
 * Two `switchyard controller` replicas against the real API server, each with its own Envoy (and
 * AI extension, as in the chart's Envoy pod): both serve xDS, only the Lease holder writes status.
 * A leader that dies without releasing the Lease is replaced once the Lease has run out, and the
 * new leader writes the next status change; a leader that stops gracefully hands over at once.
 * Takeovers are judged by the successor's recorded tries on the Lease (test/support/lease-tries.ts),
 * not by the wall clock.
 */

const SUFFIX = randomSuffix();
const CLASS = `switchyard-replicas-${SUFFIX}`;
const LEASE_MS = 3_000;
const RETRY_MS = 500;
const LEASE = { leaseDurationMs: LEASE_MS, renewDeadlineMs: 2_000, retryPeriodMs: RETRY_MS };

/** A controller replica with the Envoy and AI extension that talk to it. */
interface Member {
  name: string;
  replica: Replica;
  envoy: EnvoyProcess;
  extension: RunningAiExtension;
  /** The loopback address this Envoy binds the Gateway's listener to, so two Envoys share the port. */
  address: string;
  xdsPort: number;
  xdsSocket: string;
  /** The replica's tries on the Lease. */
  leaseTries: RecordingLeases;
}

const socketDirs: string[] = [];

let client: KubeClient;
let ns: TestNamespace;
let working: FakeProvider;
let waiting: FakeProvider;
let listenerPort: number;
const members: Member[] = [];
const extensionLog: string[] = [];

async function startMember(name: string, address: string): Promise<Member> {
  const xdsPort = await freePort();
  // Provider keys go only to the ai-extension identity: a private socket each replica serves.
  const xdsSocket = join(mkdtempSync(join(tmpdir(), `switchyard-replica-${name}-`)), 'ads.sock');
  socketDirs.push(dirname(xdsSocket));
  const extension = await startAiExtension({
    port: 0,
    host: '127.0.0.1',
    nodeId: `ai-extension/${name}-${SUFFIX}`,
    xds: { socket: xdsSocket },
    logger: createLogger({ level: 'info', name: `ai-extension-${name}` }, { write: (line: string) => void extensionLog.push(line) }),
  });
  const leaseTries = new RecordingLeases(kubeStatusApi(testKubeConfig()).leases);
  const replica = await startReplica({ namespace: ns.name, identity: `replica-${name}-${SUFFIX}`, lease: LEASE, leases: leaseTries, xdsPort, listenerAddress: address, extension, xdsSocket });
  const envoy = await startEnvoyFor(xdsPort, `replicas-${name}-${SUFFIX}`);
  const m: Member = { name, replica, envoy, extension, address, xdsPort, xdsSocket, leaseTries };
  members.push(m);
  return m;
}

/** The same member's replica started again (a new process): same xDS port, same Envoy and extension. */
async function restartReplica(m: Member, name: string): Promise<Member> {
  const leaseTries = new RecordingLeases(kubeStatusApi(testKubeConfig()).leases);
  const replica = await startReplica({ namespace: ns.name, identity: `replica-${name}-${SUFFIX}`, lease: LEASE, leases: leaseTries, xdsPort: m.xdsPort, listenerAddress: m.address, extension: m.extension, xdsSocket: m.xdsSocket });
  const restarted: Member = { ...m, name, replica, leaseTries };
  members.push(restarted);
  return restarted;
}

const backendRef = (): string => `Backend ${ns.name}/${BACKEND}`;
const statusObjects = (): string[] => [`GatewayClass ${CLASS}`, `Gateway ${ns.name}/${GATEWAY}`, `HTTPRoute ${ns.name}/${ROUTE}`, backendRef()];
const cluster = (): string => `backend/${ns.name}/${BACKEND}`;

/** Samples every 20 ms: the most replicas that believed they led at the same moment, and who. */
async function leadersOver(rs: Replica[], ms: number): Promise<{ most: number; seen: Set<string> }> {
  let most = 0;
  const seen = new Set<string>();
  for (const end = Date.now() + ms; Date.now() < end; await sleep(20)) {
    const leading = rs.filter((r) => r.ctl.isLeader());
    most = Math.max(most, leading.length);
    for (const r of leading) seen.add(r.identity);
  }
  return { most, seen };
}

/**
 * Status writes to one object that touch more than member figures. The Envoys report load (LRS)
 * and every replica shares its own with the others, so a new leader computes the fleet's figures
 * too; they are refreshed every few seconds, so it may write fresher ones on taking over. No
 * condition may change hands with the Lease.
 */
function conditionWrites(r: Replica, object: string): unknown[] {
  return r.records('status written').filter((w) => w['object'] === object && JSON.stringify(w['fields']) !== JSON.stringify(['priorities']));
}

async function backendCondition(type: string): Promise<{ status?: string; reason?: string }> {
  return (await apiCondition(client, 'Backend', ns.name, BACKEND, type)) ?? {};
}

beforeAll(async () => {
  client = testClient();
  ns = await createTestNamespace(client, 'replicas');
  working = await startFakeProvider({ name: 'working' });
  waiting = await startFakeProvider({ name: 'waiting' });
  listenerPort = await freePort();
  for (const o of gatewayObjects({ namespace: ns.name, className: CLASS, listenerPort, working, waiting })) await createObject(client, o);
  await startMember('a', '127.0.0.1');
  await startMember('b', '127.0.0.2');
}, 120_000);

afterAll(async () => {
  for (const m of members) if (!m.envoy.running()) m.envoy.printLogs(40);
  const envoys = new Set(members.map((m) => m.envoy));
  const extensions = new Set(members.map((m) => m.extension));
  await Promise.allSettled([...envoys].map((e) => e.stop()));
  await Promise.allSettled(members.map((m) => m.replica.stop()));
  await Promise.allSettled([...extensions].map((e) => e.stop()));
  for (const dir of socketDirs) rmSync(dir, { recursive: true, force: true });
  await working?.close();
  await waiting?.close();
  if (ns) await removeTestObjects(client, ns.name, CLASS);
  client?.close();
});

describe('two controller replicas', () => {
  let leader: Member;
  let follower: Member;

  it('both serve xDS: each Envoy gets the configuration from its own replica and answers', async () => {
    for (const m of members) {
      await m.envoy.waitForListener(`${ns.name}/${GATEWAY}/${listenerPort}`, 15_000);
      await waitForAnswer(m.address, listenerPort, 'working', `the working member to answer through Envoy ${m.name}`);
      await waitForHosts(m.envoy, cluster(), [[working.port, 0]], `only the member with a Secret in Envoy ${m.name}`);
      // Its own replica's xDS server serves it, and only it.
      expect(m.replica.ctl.xds.clients().filter((c) => c.nodeId.startsWith('replicas-')).map((c) => c.nodeId)).toEqual([m.envoy.id]);
    }
    const [a, b] = members;
    // The same objects, the same clusters (only the listener address and the extension port differ per Envoy).
    const names = (m: Member | undefined): string[] => [...(m?.replica.ctl.cache.snapshot(TypeUrl.cluster)?.resources.keys() ?? [])].sort();
    expect(names(a)).toEqual(names(b));
    expect(a?.replica.ctl.cache.snapshot(TypeUrl.endpoint)?.version).toBe(b?.replica.ctl.cache.snapshot(TypeUrl.endpoint)?.version);
  });

  it('lets exactly one of them write status; the other writes nothing', async () => {
    await waitFor(() => members.some((m) => m.replica.ctl.isLeader()), { what: 'a leader', timeoutMs: 10_000 });
    const found = members.find((m) => m.replica.ctl.isLeader());
    const other = members.find((m) => !m.replica.ctl.isLeader());
    if (!found || !other) throw new Error('expected one leader and one follower');
    leader = found;
    follower = other;
    await waitFor(async () => (await backendCondition('ResolvedRefs')).reason === 'SecretNotFound', { what: 'ResolvedRefs=False/SecretNotFound on the Backend', timeoutMs: 10_000 });
    await waitFor(async () => (await backendCondition('Programmed')).status === 'True', { what: 'Programmed=True on the Backend', timeoutMs: 10_000 });
    await waitFor(async () => (await apiCondition(client, 'Gateway', ns.name, GATEWAY, 'Programmed'))?.status === 'True', { what: 'Programmed=True on the Gateway', timeoutMs: 10_000 });

    // Longer than a lease: still one leader, always the same.
    const { most, seen } = await leadersOver(members.map((m) => m.replica), LEASE_MS + 1_000);
    expect(most).toBe(1);
    expect([...seen]).toEqual([leader.replica.identity]);
    expect((await leaseOf(client, ns.name))?.holder).toBe(leader.replica.identity);
    expect(follower.replica.ctl.isLeader()).toBe(false);

    // (Not the GatewayClass: a controller of another test file may accept it first.)
    for (const o of statusObjects().slice(1)) expect(leader.replica.writesTo(o), `${leader.name} writes to ${o}`).toBeGreaterThanOrEqual(1);
    // The follower translated the same statuses (and would write them) but did not even read an object.
    expect(follower.replica.ctl.writer?.counters()).toEqual({ writes: 0, skipped: 0, conflicts: 0, notFound: 0, errors: 0 });
    expect(follower.replica.records('status written')).toEqual([]);
    expect(follower.replica.ctl.recorder?.counters()).toMatchObject({ created: 0, bumped: 0 });
    const followerView = follower.replica.ctl.statuses().find((s) => s.kind === 'Backend' && s.name === BACKEND && s.namespace === ns.name);
    expect(followerView && 'conditions' in followerView ? followerView.conditions.find((c) => c.type === 'ResolvedRefs') : undefined).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
    expect(await warningEvents(client, ns.name, 'Backend', BACKEND)).toEqual({ SecretNotFound: 1 });
  });

  it('replaces a leader killed without releasing the Lease once it has run out, and the new leader writes the next change', async () => {
    const before = await leaseOf(client, ns.name);
    const crashing = leader.replica.crash();
    // Nothing handed the Lease back: it names the dead leader until it runs out.
    expect((await leaseOf(client, ns.name))?.holder).toBe(leader.replica.identity);
    await waitFor(() => follower.replica.ctl.isLeader(), { what: `${follower.name} to take over the expired Lease`, timeoutMs: LEASE_MS + K8S_SETTLE_MS, intervalMs: 10 });
    await crashing;
    // Not before the Lease ran out as the follower counts it (from the read in which it first saw
    // the dead leader's last renewal), and at its first try after that.
    const waited = expectTookExpiredLease(follower.leaseTries.calls, follower.replica.identity, leader.replica.identity, LEASE_MS);
    process.stdout.write(`replicas: ${follower.name} took the expired Lease ${Math.round(waited)} ms after it first saw its last renewal (lease ${LEASE_MS} ms)\n`);
    expect(await leaseOf(client, ns.name)).toEqual({ holder: follower.replica.identity, transitions: (before?.transitions ?? 0) + 1 });

    // Taking over, the new leader looked at every object and found nothing to change.
    await waitFor(
      () => {
        const c = follower.replica.ctl.writer?.counters();
        return c !== undefined && c.skipped + c.writes >= statusObjects().length;
      },
      { what: 'the new leader to sync every object once', timeoutMs: K8S_SETTLE_MS },
    );
    await follower.replica.ctl.writer?.idle();
    const viewOf = (r: Replica): unknown => r.ctl.statuses().find((s) => s.kind === 'Backend' && s.name === BACKEND);
    for (const o of statusObjects()) expect(conditionWrites(follower.replica, o), `${follower.name} rewrites ${o} on taking over: ${JSON.stringify(follower.replica.records('status written'))}; its view ${JSON.stringify(viewOf(follower.replica))}; the dead leader's ${JSON.stringify(viewOf(leader.replica))}`).toEqual([]);

    // The next change is the new leader's to write.
    await createObject(client, secretObject(ns.name, MISSING_SECRET, 'Bearer sk-waiting'));
    await waitFor(async () => (await backendCondition('ResolvedRefs')).status === 'True', { what: 'ResolvedRefs=True on the Backend, written by the new leader', timeoutMs: K8S_SETTLE_MS });
    // The API server can answer a read with the new status before the writer has its PUT's answer (and logs it).
    await follower.replica.ctl.writer?.idle();
    expect(follower.replica.writesTo(backendRef())).toBeGreaterThanOrEqual(1);
    await waitForHosts(follower.envoy, cluster(), [[working.port, 0], [waiting.port, 1]], 'the member whose Secret arrived, in the new leader\'s Envoy');
    // The dead replica's Envoy keeps serving what it had.
    const answer = await chatThrough(leader.address, listenerPort);
    expect(answer, answer.body).toMatchObject({ status: 200, answeredBy: 'working' });
    expect(await leader.envoy.stat('control_plane.connected_state')).toBe(0);
  });

  it('hands over at the successor\'s next try when the leader stops gracefully, and the successor writes the next change', async () => {
    // The dead replica comes back (a new process, same Envoy): a follower now.
    const successor = await restartReplica(leader, 'a2');
    // Envoy retries its ADS stream with a jittered back-off of up to 30 s.
    await waitForHosts(successor.envoy, cluster(), [[working.port, 0], [waiting.port, 1]], 'the restarted replica\'s Envoy up to date', 40_000);
    await waitFor(() => successor.replica.ctl.xds.clients().some((c) => c.nodeId === successor.envoy.id && c.types.length > 0 && c.types.every((t) => t.state === 'acked')), { what: 'the restarted replica\'s Envoy to ACK', timeoutMs: 30_000 });
    // Following: it has seen the leader hold the Lease.
    await waitFor(() => successor.leaseTries.calls.filter((c) => c.op === 'get' && c.ok).length >= 2, { what: 'the restarted replica to read the held Lease twice', timeoutMs: 10_000 });
    expect(successor.replica.ctl.isLeader()).toBe(false);
    expect(successor.replica.ctl.writer?.counters().writes).toBe(0);
    const before = await leaseOf(client, ns.name);

    const stopping = follower.replica.stop();
    // Not the lease duration: the successor takes a released Lease at its next try.
    await waitFor(() => successor.replica.ctl.isLeader(), { what: 'the successor to take the released Lease', timeoutMs: LEASE_MS + K8S_SETTLE_MS, intervalMs: 10 });
    expectTookReleasedLeaseAtOnce(successor.leaseTries.calls, successor.replica.identity, follower.replica.identity);
    await stopping;
    expect(await leaseOf(client, ns.name)).toEqual({ holder: successor.replica.identity, transitions: (before?.transitions ?? 0) + 1 });

    await waitFor(
      () => {
        const c = successor.replica.ctl.writer?.counters();
        return c !== undefined && c.skipped + c.writes >= statusObjects().length;
      },
      { what: 'the successor to sync every object once', timeoutMs: K8S_SETTLE_MS },
    );
    await successor.replica.ctl.writer?.idle();
    for (const o of statusObjects()) expect(conditionWrites(successor.replica, o), `${successor.name} rewrites ${o} on taking over: ${JSON.stringify(successor.replica.records('status written'))}`).toEqual([]);

    await deleteObject(client, secretObject(ns.name, MISSING_SECRET, ''));
    await waitFor(async () => (await backendCondition('ResolvedRefs')).reason === 'SecretNotFound', { what: 'ResolvedRefs=False/SecretNotFound again, written by the successor', timeoutMs: K8S_SETTLE_MS });
    await successor.replica.ctl.writer?.idle();
    expect(successor.replica.writesTo(backendRef())).toBeGreaterThanOrEqual(1);
    // The problem is back: the successor bumps the Event the first leader created for it.
    await waitFor(async () => (await warningEvents(client, ns.name, 'Backend', BACKEND))['SecretNotFound'] === 2, { what: 'the SecretNotFound Event counted twice', timeoutMs: K8S_SETTLE_MS });
    expect(successor.replica.ctl.recorder?.counters()).toMatchObject({ created: 0, bumped: 1 });
    await waitForHosts(successor.envoy, cluster(), [[working.port, 0]], 'the member whose Secret is gone, dropped');
    await waitForAnswer(successor.address, listenerPort, 'working', 'the remaining member to answer through the successor\'s Envoy');
  }, 90_000);
});
