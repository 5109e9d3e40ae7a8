import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeProvider, type FakeProvider } from '../../examples/demo/fake-provider.js';
import { startAiExtension, type RunningAiExtension } from '../../src/ai-extension/server.js';
import { CONTROLLER_NAME } from '../../src/api/gateway.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import type { KubeClient, RawObject } from '../../src/providers/kubernetes/api-client.js';
import { SHARE_KEY, SHARE_LABEL } from '../../src/app/replica-share.js';
import {
  chatThrough,
  readObject,
  removeTestObjects,
  secretObject,
  startEnvoyFor,
  startReplica,
  waitForAnswer,
  type Replica,
} from '../support/controller-replica.js';
import type { EnvoyProcess } from '../support/envoy.js';
import { aiBackend } from '../support/gateway-fixture.js';
import { createObject, createTestNamespace, K8S_SETTLE_MS, patchObject, randomSuffix, testClient, type TestNamespace } from '../support/kube-cluster.js';
import { freePort } from '../support/ports.js';
import { logTiming } from '../support/timing.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * Status from the whole fleet across controller replicas, against the real API server: each
 * replica shares what its Envoys ACKed and reported in a ConfigMap of its own, and the leader
 * writes status from all of them. Both replicas are configured alike (same listener address,
 * one AI extension), as replicas of one Deployment are, so they serve identical versions.
 */

const SUFFIX = randomSuffix();
const CLASS = `switchyard-fleet-${SUFFIX}`;
const LEASE_MS = 3_000;
const LEASE = { leaseDurationMs: LEASE_MS, renewDeadlineMs: 2_000, retryPeriodMs: 500 };
/** A dead replica's share counts this long: longer than a Lease takeover, as in production. */
const EXPIRE_MS = 9_000;
const SHARE = { heartbeatMs: 500, expireMs: EXPIRE_MS, minIntervalMs: 100 };
/**
 * Member figures cover the last windowMs: longer than this file runs, so the figures of its
 * requests never age out during it (that is a real change, and a status write, mid-test).
 */
const LOAD = { intervalMs: 500, windowMs: 300_000, refreshMs: 250 };
const GATEWAY = 'gw';
const BACKEND = 'chat';
const SECRET = 'chat-key';

let client: KubeClient;
let ns: TestNamespace;
let secondary: FakeProvider;
let extension: RunningAiExtension;
let listenerPort: number;
let socketDir: string;
const replicas: Replica[] = [];
const envoys: EnvoyProcess[] = [];

async function replica(name: string, xdsPort = 0, xdsSocket?: string, owner?: { name: string; uid: string }): Promise<Replica> {
  const r = await startReplica({
    namespace: ns.name,
    identity: `fleet-${name}-${SUFFIX}`,
    lease: LEASE,
    xdsPort,
    listenerAddress: '127.0.0.1',
    extension,
    ...(xdsSocket ? { xdsSocket } : {}),
    replicaShare: { ...SHARE, ...(owner ? { owner } : {}) },
    loadReporting: LOAD,
  });
  replicas.push(r);
  return r;
}

async function envoyOf(r: Replica, name: string): Promise<EnvoyProcess> {
  const e = await startEnvoyFor(r.ctl.xdsPort, `fleet-${name}-${SUFFIX}`);
  envoys.push(e);
  return e;
}

/** The Backend: priority 0's host does not resolve, priority 1 answers. */
function backendObject(consecutive5xx?: number): RawObject {
  const b = aiBackend({
    name: BACKEND,
    priorities: [
      [{ name: 'primary', fake: secondary, hostname: 'primary.llm.test', secret: SECRET }],
      [{ name: 'secondary', fake: secondary, hostname: 'secondary.llm.test', secret: SECRET }],
    ],
    outlierDetection: consecutive5xx === undefined ? { enabled: false } : { enabled: true, consecutive5xx },
  });
  const pools = (((b['spec'] as JsonObject)['ai'] as JsonObject)['multipool'] as JsonObject)['priorities'] as JsonObject[];
  (pools[0]!['pool'] as JsonObject[])[0]!['hostOverride'] = { host: 'does-not-exist.invalid', port: 443 };
  return { ...b, metadata: { name: BACKEND, namespace: ns.name } };
}

interface Observed {
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

async function backend(): Promise<{ generation: number; conditions: Map<string, Observed>; members: Map<string, { requests?: number; errors?: number }> }> {
  const o = await readObject(client, 'Backend', ns.name, BACKEND);
  const status = (o['status'] ?? {}) as JsonObject;
  const conditions = new Map<string, Observed>();
  for (const c of (status['conditions'] ?? []) as JsonObject[]) conditions.set(String(c['type']), c as unknown as Observed);
  const members = new Map<string, { requests?: number; errors?: number }>();
  for (const p of (status['priorities'] ?? []) as JsonObject[]) for (const m of (p['members'] ?? []) as JsonObject[]) members.set(String(m['name']), m as { requests?: number; errors?: number });
  return { generation: Number((o['metadata'] as JsonObject)['generation']), conditions, members };
}

const backendRef = (): string => `Backend ${ns.name}/${BACKEND}`;

/** When a replica last wrote its share (ms since the epoch), from the heartbeat in its ConfigMap. */
async function lastHeartbeat(r: Replica): Promise<number> {
  const maps = (await client.request({ path: `/api/v1/namespaces/${ns.name}/configmaps`, query: { labelSelector: `${SHARE_LABEL}=switchyard-controller` } })) as { items: RawObject[] };
  const mine = maps.items.find((m) => ((m['metadata'] as JsonObject)['annotations'] as JsonObject | undefined)?.['switchyard.dev/replica'] === r.identity);
  const beat = Date.parse(String((mine?.['data'] as JsonObject | undefined)?.['heartbeat']));
  if (Number.isNaN(beat)) throw new Error(`no heartbeat in ${r.identity}'s share: ${JSON.stringify(mine)}`);
  return beat;
}

beforeAll(async () => {
  client = testClient();
  ns = await createTestNamespace(client, 'fleet');
  secondary = await startFakeProvider({ name: 'secondary' });
  listenerPort = await freePort();
  socketDir = mkdtempSync(join(tmpdir(), 'switchyard-fleet-'));
  extension = await startAiExtension({
    port: await freePort(),
    host: '127.0.0.1',
    nodeId: `ai-extension/fleet-${SUFFIX}`,
    xds: { socket: join(socketDir, 'ads.sock') },
    logger: createLogger({ level: 'warn', name: 'ai-extension' }, { write: () => undefined }),
  });
  for (const o of [
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: CLASS }, spec: { controllerName: CONTROLLER_NAME } },
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: GATEWAY, namespace: ns.name }, spec: { gatewayClassName: CLASS, listeners: [{ name: 'http', protocol: 'HTTP', port: listenerPort }] } },
    secretObject(ns.name, SECRET, 'Bearer sk-fleet'),
    backendObject(),
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'chat', namespace: ns.name },
      spec: { parentRefs: [{ name: GATEWAY }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/v1' } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: BACKEND }] }] },
    },
  ]) await createObject(client, o);
}, 60_000);

afterAll(async () => {
  for (const e of envoys) if (!e.running()) e.printLogs(40);
  await Promise.allSettled(envoys.map((e) => e.stop()));
  await Promise.allSettled(replicas.map((r) => r.stop()));
  await extension?.stop();
  await secondary?.close();
  if (socketDir) rmSync(socketDir, { recursive: true, force: true });
  if (ns) await removeTestObjects(client, ns.name, CLASS);
  client?.close();
});

describe('status from the whole fleet of two replicas', () => {
  let leader: Replica;
  let follower: Replica;
  let followerEnvoy: EnvoyProcess;

  it('writes Programmed=True from an Envoy connected only to the replica that does not lead', async () => {
    // The first replica takes the Lease before the second starts: the roles are known. It runs "in" a
    // Pod (an object only: no kubelet here), which owns its share.
    const pod = (await client.request({
      method: 'POST',
      path: `/api/v1/namespaces/${ns.name}/pods`,
      body: { apiVersion: 'v1', kind: 'Pod', metadata: { name: `fleet-a-${SUFFIX}` }, spec: { containers: [{ name: 'controller', image: 'switchyard:test' }] } },
    })) as { metadata: { name: string; uid: string } };
    leader = await replica('a', 0, undefined, { name: pod.metadata.name, uid: pod.metadata.uid });
    await waitFor(() => leader.ctl.isLeader(), { what: 'replica a to lead', timeoutMs: 10_000 });
    follower = await replica('b', 0, join(socketDir, 'ads.sock'));
    followerEnvoy = await envoyOf(follower, 'b');
    await followerEnvoy.waitForListener(`${ns.name}/${GATEWAY}/${listenerPort}`, 15_000);

    await waitFor(async () => (await backend()).conditions.get('Programmed')?.status === 'True', { what: 'Programmed=True on the Backend', timeoutMs: 15_000 });
    await waitFor(async () => (await readObject(client, 'Gateway', ns.name, GATEWAY))['status'] !== undefined && JSON.stringify((await readObject(client, 'Gateway', ns.name, GATEWAY))['status']).includes('"reason":"Programmed"'), { what: 'Programmed on the Gateway', timeoutMs: 10_000 });
    expect(leader.ctl.isLeader()).toBe(true);
    expect(follower.ctl.isLeader()).toBe(false);
    // The leader has no Envoy of its own: what it wrote came from the follower's share.
    expect(leader.ctl.xds.clients().map((c) => c.nodeId)).toEqual([]);
    expect(follower.ctl.xds.clients().map((c) => c.nodeId)).toContain(followerEnvoy.id);
    // The API server can answer a read with the new status before the writer has its PUT's answer (and logs it).
    await leader.ctl.writer?.idle();
    expect(leader.writesTo(backendRef())).toBeGreaterThanOrEqual(1);
    expect(follower.writesTo(backendRef())).toBe(0);
    expect(leader.ctl.share?.stats().remotes).toEqual([follower.identity]);
    const statusz = (await (await fetch(`http://127.0.0.1:${leader.ctl.metricsPort}/statusz`)).json()) as { replicaShares?: { remotes: string[] } };
    expect(statusz.replicaShares?.remotes).toEqual([follower.identity]);

    // One ConfigMap per replica, named after it, that says no secret value.
    const maps = (await client.request({ path: `/api/v1/namespaces/${ns.name}/configmaps`, query: { labelSelector: `${SHARE_LABEL}=switchyard-controller` } })) as { items: RawObject[] };
    const byReplica = new Map(maps.items.map((m) => [String(((m['metadata'] as JsonObject)['annotations'] as JsonObject)['switchyard.dev/replica']), m]));
    expect([...byReplica.keys()].sort()).toEqual([leader.identity, follower.identity].sort());
    expect((byReplica.get(leader.identity)?.['metadata'] as JsonObject)['ownerReferences']).toEqual([{ apiVersion: 'v1', kind: 'Pod', name: pod.metadata.name, uid: pod.metadata.uid }]);
    expect((byReplica.get(follower.identity)?.['metadata'] as JsonObject)['ownerReferences']).toBeUndefined();
    const shared = String((byReplica.get(follower.identity)?.['data'] as JsonObject)[SHARE_KEY]);
    expect(shared).toContain(followerEnvoy.id);
    expect(shared).not.toContain('sk-fleet');

    // A share nobody can read (another version, a hand edit) is ignored with a log that names it; status stands.
    await client.request({
      method: 'POST',
      path: `/api/v1/namespaces/${ns.name}/configmaps`,
      body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'switchyard-controller-replica-bogus', labels: { [SHARE_LABEL]: 'switchyard-controller' } }, data: { [SHARE_KEY]: '{"format":1' } },
    });
    const ignored = await waitFor(() => leader.records('ignoring a replica share that cannot be read')[0], { what: 'the leader to log the unreadable share', timeoutMs: K8S_SETTLE_MS });
    expect(String(ignored['reason'])).toContain(`ConfigMap ${ns.name}/switchyard-controller-replica-bogus: data["share.json"] is not JSON`);
    expect(leader.ctl.share?.stats().remotes).toEqual([follower.identity]);
    expect((await backend()).conditions.get('Programmed')?.status).toBe('True');
  }, 60_000);

  it('writes Degraded and member figures from load only the follower\'s Envoy reported', async () => {
    for (let i = 0; i < 8; i++) expect((await chatThrough('127.0.0.1', listenerPort)).answeredBy).toBe('secondary');
    const seen = await waitFor(
      async () => {
        const b = await backend();
        return b.conditions.get('Degraded')?.status === 'True' && (b.members.get('secondary')?.requests ?? 0) >= 8 ? b : undefined;
      },
      { what: 'Degraded=True and the secondary\'s requests on the Backend', timeoutMs: 15_000, intervalMs: 100 },
    );
    const degraded = seen.conditions.get('Degraded');
    expect(['HostNotResolved', 'MemberUnreachable']).toContain(degraded?.reason);
    expect(degraded?.message).toContain('member primary');
    expect(seen.members.get('secondary')).toMatchObject({ errors: 0 });
    expect(seen.members.get('primary')).toMatchObject({ requests: 0 });
    // Written by the leader, whose own Envoys reported nothing.
    await leader.ctl.writer?.idle();
    expect(leader.writesTo(backendRef())).toBeGreaterThanOrEqual(2);
    expect(follower.writesTo(backendRef())).toBe(0);
    // Quiet traffic: the shares go on beating (at their heartbeat, not faster), the status stays as
    // written. Reports of the last requests may still be on their way (one load-report interval):
    // first wait for every one of the 8 to be counted in the written status (the window outlasts the
    // file, so the count stops there) and the writer to have nothing left, then no write may come
    // while nothing changes. Only this file's objects: the controllers also see what other test
    // files create meanwhile.
    const writesHere = (): string[] =>
      leader.records('status written').map((r) => `${String(r['object'])} ${JSON.stringify(r['fields'])}`).filter((o) => o.includes(` ${ns.name}/`) || o.includes(CLASS));
    const secondaryHere = (): number | undefined => {
      const s = leader.ctl.statuses().find((x) => x.kind === 'Backend' && x.namespace === ns.name && x.name === BACKEND);
      return s && 'priorities' in s ? s.priorities.flatMap((p) => p.members).find((m) => m.name === 'secondary')?.requests : undefined;
    };
    await waitFor(async () => secondaryHere() === 8 && (await backend()).members.get('secondary')?.requests === 8, { what: 'all 8 requests counted in the leader\'s view and in the written status', timeoutMs: 15_000, intervalMs: 100 });
    await leader.ctl.writer?.idle();
    const writes = writesHere();
    const shareWrites = follower.ctl.share?.stats().writes ?? 0;
    // A quiet spell of QUIET_BEATS heartbeats of the follower's share, each one a fresh reading
    // of the fleet's shares by the leader: in it no status may be written. Its end is the beats
    // themselves, not a clock (a loaded machine takes longer to beat, and the spell waits for it).
    const QUIET_BEATS = 6;
    const beatsSince = (): number => (follower.ctl.share?.stats().writes ?? 0) - shareWrites;
    const quietFrom = performance.now();
    await waitFor(() => beatsSince() >= QUIET_BEATS, { what: `${QUIET_BEATS} heartbeats of the follower's share`, timeoutMs: 5 * QUIET_BEATS * SHARE.heartbeatMs, intervalMs: 50 });
    const quietMs = performance.now() - quietFrom;
    expect(writesHere().slice(writes.length), 'status writes with nothing changed').toEqual([]);
    const beats = beatsSince();
    // At the heartbeat, not faster: counted against the spell as long as it really was.
    logTiming(`quiet spell with ${beats} share writes`, quietMs);
    expect(beats).toBeLessThanOrEqual(Math.floor(quietMs / SHARE.heartbeatMs) + 2);
    const metrics = await (await fetch(`http://127.0.0.1:${leader.ctl.metricsPort}/metrics`)).text();
    expect(Number(/switchyard_backend_member_requests\{backend="[^"]+\/chat",member="secondary",priority="1"\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(8);
  }, 40_000);

  it('after a leader change, writes Programmed for a new generation only the old leader\'s Envoy ACKed, and keeps it while that replica\'s share lives', async () => {
    // Only the leader's Envoy now: the follower's goes away.
    await followerEnvoy.stop();
    const leaderEnvoy = await envoyOf(leader, 'a');
    await leaderEnvoy.waitForListener(`${ns.name}/${GATEWAY}/${listenerPort}`, 15_000);
    await waitFor(() => leader.ctl.xds.clients().some((c) => c.nodeId === leaderEnvoy.id && c.types.length > 0 && c.types.every((t) => t.state === 'acked')), { what: 'the leader\'s Envoy to ACK', timeoutMs: 10_000 });

    // The Lease moves to b while a keeps running (a lost renewal, a rollout): a's Envoy stays with a.
    await leader.ctl.elector?.stop({ release: true });
    await waitFor(() => follower.ctl.isLeader(), { what: 'b to take the released Lease', timeoutMs: K8S_SETTLE_MS, intervalMs: 20 });
    const [oldLeader, newLeader] = [leader, follower];
    const oldLeaderWrites = oldLeader.ctl.writer?.counters().writes;
    expect(newLeader.ctl.xds.clients().filter((c) => c.nodeId.startsWith('fleet-')).map((c) => c.nodeId)).toEqual([]);

    // A new generation that changes the Backend's cluster, ACKed by the old leader's Envoy alone.
    const writesBefore = newLeader.writesTo(backendRef());
    await patchObject(client, backendObject(), { spec: { outlierDetection: { enabled: true, consecutive5xx: 7 } } });
    const acked = await waitFor(
      async () => {
        const b = await backend();
        const p = b.conditions.get('Programmed');
        return p?.status === 'True' && p.observedGeneration === b.generation && b.generation >= 2 ? { generation: b.generation, since: p.lastTransitionTime } : undefined;
      },
      { what: 'Programmed=True for the new generation, written by the new leader', timeoutMs: 15_000, intervalMs: 100 },
    );
    await newLeader.ctl.writer?.idle();
    expect(newLeader.writesTo(backendRef())).toBeGreaterThan(writesBefore);
    expect(oldLeader.ctl.writer?.counters().writes).toBe(oldLeaderWrites);

    // The old leader dies. Its share still counts (its Envoy reconnects elsewhere within that time, in a cluster).
    const programmedHere = (): string => {
      const s = newLeader.ctl.statuses().find((x) => x.kind === 'Backend' && x.name === BACKEND);
      const p = s && 'conditions' in s ? s.conditions.find((c) => c.type === 'Programmed') : undefined;
      return `${p?.status}/${p?.reason}/${p?.observedGeneration}`;
    };
    await oldLeader.crash();
    // The share counts for EXPIRE_MS after the new leader saw its last heartbeat, by the new
    // leader's clock. Judged from the heartbeat the dead replica last wrote (its ConfigMap, written
    // in this process: the same clock), not from when the test crashed it: a loaded machine may
    // have delayed that heartbeat by more than its period. Less two heartbeat periods, for last
    // heartbeats whose watch events had not reached the new leader when the replica died.
    const lastBeat = await lastHeartbeat(oldLeader);
    const countsUntil = lastBeat + EXPIRE_MS - 2 * SHARE.heartbeatMs;
    const samples: string[] = [];
    for (let at = Date.now(); at < countsUntil; at = Date.now()) {
      samples.push(programmedHere());
      await sleep(Math.min(100, countsUntil - at));
    }
    expect(samples.length).toBeGreaterThan(10);
    expect(new Set(samples)).toEqual(new Set([`True/Programmed/${acked.generation}`]));
    expect((await backend()).conditions.get('Programmed')?.lastTransitionTime).toBe(acked.since);

    // Then it expires: no connected Envoy serves this generation any more. (The status writer keeps
    // the Programmed=True already written for this generation over a Pending: src/status/desired.ts.)
    await waitFor(() => programmedHere() === `False/Pending/${acked.generation}`, { what: 'Pending in the new leader\'s view once the dead replica\'s share expired', timeoutMs: EXPIRE_MS + K8S_SETTLE_MS, intervalMs: 100 });
    const expiredAfter = Date.now() - lastBeat;
    expect(expiredAfter).toBeGreaterThanOrEqual(EXPIRE_MS - 2 * SHARE.heartbeatMs);
    expect((await backend()).conditions.get('Programmed')).toMatchObject({ status: 'True', observedGeneration: acked.generation });
    process.stdout.write(`fleet: the dead replica's share counted for ${expiredAfter} ms after its last heartbeat (expiry ${EXPIRE_MS} ms)\n`);

    // The replica comes back where its Envoy dials: the Envoy's ACK reaches the leader through the new share.
    const back = await replica('a2', oldLeader.ctl.xdsPort);
    await waitFor(() => programmedHere() === `True/Programmed/${acked.generation}`, { what: 'Programmed=True again in the leader\'s view, through the restarted replica', timeoutMs: 45_000, intervalMs: 200 });
    expect(back.ctl.isLeader()).toBe(false);
    await waitForAnswer('127.0.0.1', listenerPort, 'secondary', 'the restarted replica\'s Envoy to answer');
  }, 120_000);
});
