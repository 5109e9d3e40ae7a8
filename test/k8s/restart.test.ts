import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeProvider, type FakeProvider } from '../../examples/demo/fake-provider.js';
import { startAiExtension, type RunningAiExtension } from '../../src/ai-extension/server.js';
import { PUSH_ORDER, TypeUrl, type JsonObject, type JsonValue } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import type { KubeClient } from '../../src/providers/kubernetes/api-client.js';
import {
  apiCondition,
  BACKEND,
  chatThrough,
  conditionsOf,
  gatewayObjects,
  GATEWAY,
  MISSING_SECRET,
  readObject,
  removeTestObjects,
  resourceVersionOf,
  ROUTE,
  secretObject,
  startEnvoyFor,
  startReplica,
  waitForAnswer,
  warningEvents,
  type ConditionView,
  type Replica,
} from '../support/controller-replica.js';
import type { EnvoyProcess } from '../support/envoy.js';
import { createObject, createTestNamespace, K8S_SETTLE_MS, randomSuffix, testClient, type TestNamespace } from '../support/kube-cluster.js';
import { freePort } from '../support/ports.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * A controller restart against the real API server with a real Envoy: the new process relists,
 * computes the same xDS versions (content hashes), so the Envoy that reconnects to it applies
 * nothing new; and it writes no status, because nothing about the objects changed. Envoy keeps
 * answering while no controller runs at all.
 */

const SUFFIX = randomSuffix();
const CLASS = `switchyard-restart-${SUFFIX}`;
const IDENTITY = `restart-${SUFFIX}`;
const NODE = `restart-envoy-${SUFFIX}`;
const LEASE = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 500 };

let client: KubeClient;
let ns: TestNamespace;
let working: FakeProvider;
let waiting: FakeProvider;
let extension: RunningAiExtension;
let envoy: EnvoyProcess;
let listenerPort: number;
let xdsPort: number;
let first: Replica | undefined;
let second: Replica | undefined;
const extensionLog: string[] = [];

/** The objects whose status the controller writes, as `kind, namespace, name` and as its log names them. */
function statusObjects(): { kind: string; namespace: string; name: string; logName: string }[] {
  return [
    { kind: 'GatewayClass', namespace: '', name: CLASS, logName: `GatewayClass ${CLASS}` },
    { kind: 'Gateway', namespace: ns.name, name: GATEWAY, logName: `Gateway ${ns.name}/${GATEWAY}` },
    { kind: 'HTTPRoute', namespace: ns.name, name: ROUTE, logName: `HTTPRoute ${ns.name}/${ROUTE}` },
    { kind: 'Backend', namespace: ns.name, name: BACKEND, logName: `Backend ${ns.name}/${BACKEND}` },
  ];
}

interface ObjectState {
  resourceVersion: string;
  conditions: Record<string, ConditionView>;
}

async function objectStates(): Promise<Record<string, ObjectState>> {
  const out: Record<string, ObjectState> = {};
  for (const o of statusObjects()) {
    const obj = await readObject(client, o.kind, o.namespace, o.name);
    out[o.logName] = { resourceVersion: resourceVersionOf(obj), conditions: conditionsOf(obj) };
  }
  return out;
}

/** The cache's version per type. */
function cacheVersions(r: Replica): Record<string, string | undefined> {
  return Object.fromEntries(PUSH_ORDER.map((kind) => [kind, r.ctl.cache.snapshot(TypeUrl[kind])?.version]));
}

/** What the xDS server knows the Envoy ACKed, per type it subscribed to; undefined while it is not connected or has something un-ACKed. */
function envoyAcked(r: Replica): Record<string, string | undefined> | undefined {
  const c = r.ctl.xds.clients().find((x) => x.nodeId === NODE);
  if (!c || c.types.length === 0 || c.types.some((t) => t.state !== 'acked')) return undefined;
  return Object.fromEntries(PUSH_ORDER.flatMap((kind) => c.types.filter((t) => t.typeUrl === TypeUrl[kind]).map((t) => [kind, t.ackedVersion])));
}

/** The Envoy ACKed everything it was sent, and the wildcard types (clusters, listeners) at the cache's versions. */
function envoyUpToDate(r: Replica): boolean {
  const acked = envoyAcked(r);
  const versions = cacheVersions(r);
  return acked !== undefined && acked['cluster'] === versions['cluster'] && acked['listener'] === versions['listener'];
}

function obj(v: JsonValue | undefined): JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v : {};
}

function arr(v: JsonValue | undefined): JsonObject[] {
  return Array.isArray(v) ? v.map(obj) : [];
}

/** JSON with object keys sorted. */
function canonical(v: JsonValue): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k] ?? null)}`).join(',')}}`;
  return JSON.stringify(v);
}

function nameOf(resource: JsonObject): string {
  const n = resource['name'] ?? resource['cluster_name'];
  return typeof n === 'string' ? n : '?';
}

/**
 * Envoy's own view of its dynamic configuration: per section, the version it last applied and,
 * per resource, the version and time it was last updated. An update that changed anything moves
 * at least one of these.
 */
async function envoyConfig(): Promise<Record<string, string>> {
  const dump = await envoy.configDump({ includeEds: true });
  const out: Record<string, string> = {};
  for (const section of arr(dump['configs'])) {
    const type = String(section['@type']).split('.').pop() ?? '?';
    if (section['version_info'] !== undefined) out[`${type}.version_info`] = String(section['version_info']);
    for (const c of arr(section['dynamic_active_clusters'])) out[`${type} ${nameOf(obj(c['cluster']))}`] = `${String(c['version_info'])} @ ${String(c['last_updated'])}`;
    for (const l of arr(section['dynamic_listeners'])) {
      const active = obj(l['active_state']);
      out[`${type} ${String(l['name'])}`] = `${String(active['version_info'])} @ ${String(active['last_updated'])}`;
    }
    for (const r of arr(section['dynamic_route_configs'])) out[`${type} ${nameOf(obj(r['route_config']))}`] = `${String(r['version_info'])} @ ${String(r['last_updated'])}`;
    // Envoy keeps no version or time per assignment: its endpoints stand for it (metadata maps
    // come out of Envoy in no fixed key order).
    for (const e of arr(section['dynamic_endpoint_configs'])) out[`${type} ${nameOf(obj(e['endpoint_config']))}`] = canonical(obj(e['endpoint_config'])['endpoints'] ?? []);
  }
  return out;
}

/** Envoy counters and gauges that move when an xDS update adds, changes or removes anything. */
const CHANGE_STATS = /^(cluster_manager\.(cluster_added|cluster_modified|cluster_removed|cluster_updated|cluster_updated_via_merge|cds\.update_rejected|cds\.version)|listener_manager\.(listener_added|listener_modified|listener_removed|listener_create_success|lds\.update_rejected|lds\.version)|http\..*\.rds\..*\.(config_reload|update_rejected|version)|cluster\..*\.(membership_change|update_rejected))$/;

async function changeStats(): Promise<Record<string, number>> {
  const all = await envoy.stats();
  return Object.fromEntries([...all].filter(([name]) => CHANGE_STATS.test(name)).sort(([a], [b]) => (a < b ? -1 : 1)));
}

async function updateSuccesses(): Promise<{ cds: number; lds: number }> {
  return { cds: (await envoy.stat('cluster_manager.cds.update_success')) ?? 0, lds: (await envoy.stat('listener_manager.lds.update_success')) ?? 0 };
}

/** Serving, leading, the Envoy ACKed the cache's versions, every status written and nothing left to write. */
async function settled(r: Replica): Promise<void> {
  await waitFor(() => r.ctl.isLeader(), { what: `${r.identity} to hold the Lease`, timeoutMs: 10_000 });
  await waitFor(() => envoyUpToDate(r), { what: `Envoy to ACK everything ${r.identity} sent, its clusters and listeners at the cache's versions`, timeoutMs: 30_000 });
  await waitFor(async () => (await apiCondition(client, 'Backend', ns.name, BACKEND, 'Programmed'))?.status === 'True', { what: 'Programmed=True on the Backend', timeoutMs: 10_000 });
  await waitFor(async () => (await apiCondition(client, 'Gateway', ns.name, GATEWAY, 'Programmed'))?.status === 'True', { what: 'Programmed=True on the Gateway', timeoutMs: 10_000 });
  // The writer has looked at every object, and nothing is scheduled or in flight: idle() counts a
  // change still in its coalescing window (a timer) as work, so no sleep is needed to get past it.
  await waitFor(() => { const c = r.ctl.writer?.counters(); return c !== undefined && c.writes + c.skipped + c.notFound >= statusObjects().length; }, { what: `${r.identity}'s writer to look at all ${statusObjects().length} objects`, timeoutMs: K8S_SETTLE_MS });
  await r.ctl.writer?.idle();
}

let socketDir: string | undefined;
let xdsSocket: string;

beforeAll(async () => {
  client = testClient();
  ns = await createTestNamespace(client, 'restart');
  working = await startFakeProvider({ name: 'working' });
  waiting = await startFakeProvider({ name: 'waiting' });
  listenerPort = await freePort();
  xdsPort = await freePort();
  socketDir = mkdtempSync(join(tmpdir(), 'switchyard-restart-xds-'));
  xdsSocket = join(socketDir, 'ads.sock');
  // As in the chart: the AI extension lives next to Envoy, so it outlives a controller restart.
  extension = await startAiExtension({
    port: 0,
    host: '127.0.0.1',
    nodeId: `ai-extension/${SUFFIX}`,
    // Provider keys go only to the ai-extension identity: a private socket each replica serves.
    xds: { socket: xdsSocket },
    logger: createLogger({ level: 'info', name: 'ai-extension' }, { write: (line: string) => void extensionLog.push(line) }),
  });
  for (const o of gatewayObjects({ namespace: ns.name, className: CLASS, listenerPort, working, waiting })) await createObject(client, o);

  first = await startReplica({ namespace: ns.name, identity: IDENTITY, lease: LEASE, xdsPort, extension, xdsSocket });
  envoy = await startEnvoyFor(xdsPort, NODE, { loadReporting: false });
  await envoy.waitForListener(`${ns.name}/${GATEWAY}/${listenerPort}`, 15_000);
  await waitForAnswer('127.0.0.1', listenerPort, 'working', 'the working member to answer through Envoy');
  await settled(first);
  await waitFor(async () => (await warningEvents(client, ns.name, 'Backend', BACKEND))['SecretNotFound'] === 1, { what: 'the SecretNotFound Warning Event', timeoutMs: K8S_SETTLE_MS });
}, 120_000);

afterAll(async () => {
  if (envoy?.running()) process.kill(envoy.pid, 'SIGCONT');
  if (envoy && !envoy.running()) envoy.printLogs(40);
  await envoy?.stop();
  await second?.stop();
  await first?.stop();
  await extension?.stop();
  if (socketDir) rmSync(socketDir, { recursive: true, force: true });
  await working?.close();
  await waiting?.close();
  if (ns) await removeTestObjects(client, ns.name, CLASS);
  client?.close();
});

describe('a controller restart', () => {
  let versions: Record<string, string | undefined>;
  let acked: Record<string, string | undefined> | undefined;
  let envoyBefore: Record<string, string>;
  let statsBefore: Record<string, number>;
  let successesBefore: { cds: number; lds: number };
  let statesBefore: Record<string, ObjectState>;
  let eventsBefore: Record<string, number>;

  it('starts from a controller that serves Envoy and has written a non-trivial status', async () => {
    const r = first;
    if (!r) throw new Error('the first controller did not start');
    versions = cacheVersions(r);
    acked = envoyAcked(r);
    envoyBefore = await envoyConfig();
    statsBefore = await changeStats();
    successesBefore = await updateSuccesses();
    statesBefore = await objectStates();
    eventsBefore = await warningEvents(client, ns.name, 'Backend', BACKEND);

    expect(acked).toMatchObject({ cluster: versions['cluster'], listener: versions['listener'] });
    expect(Object.keys(acked ?? {}).sort()).toEqual(['cluster', 'endpoint', 'listener', 'route']);
    for (const kind of ['cluster', 'listener', 'route', 'endpoint']) expect(versions[kind], kind).toMatch(/^[\w-]{16}$/);
    const backend = statesBefore[`Backend ${ns.name}/${BACKEND}`]?.conditions;
    expect(backend?.['ResolvedRefs']).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
    expect(backend?.['Programmed']).toMatchObject({ status: 'True' });
    expect(backend?.['Accepted']).toMatchObject({ status: 'True' });
    expect(statesBefore[`Gateway ${ns.name}/${GATEWAY}`]?.conditions['listener http: Programmed']).toMatchObject({ status: 'True' });
    expect(Object.values(statesBefore[`HTTPRoute ${ns.name}/${ROUTE}`]?.conditions ?? {}).map((c) => c.status)).toEqual(['True', 'True']);
    expect(statesBefore[`GatewayClass ${CLASS}`]?.conditions['Accepted']).toMatchObject({ status: 'True' });
    // The missing Secret was reported once, as a Warning Event.
    expect(eventsBefore['SecretNotFound']).toBe(1);
    // These objects got their status from this controller. (Not necessarily the GatewayClass: a
    // controller of another test file on this API server may accept it first, as it accepts every
    // class naming our controller.)
    for (const o of statusObjects().filter((x) => x.kind !== 'GatewayClass')) expect(r.writesTo(o.logName), o.logName).toBeGreaterThanOrEqual(1);
    // The Envoy dump has something to compare: the Backend's cluster, the listener, its routes and endpoints.
    expect(Object.keys(envoyBefore).some((k) => k.includes(`backend/${ns.name}/${BACKEND}`))).toBe(true);
    expect(Object.keys(statsBefore).length).toBeGreaterThan(5);
  });

  it('leaves Envoy answering while no controller runs', async () => {
    const r = first;
    if (!r) throw new Error('the first controller did not start');
    await r.stop();
    first = undefined;
    await waitFor(async () => (await envoy.stat('control_plane.connected_state')) === 0, { what: 'Envoy to notice the controller is gone', timeoutMs: 10_000 });
    for (let i = 0; i < 3; i++) {
      const answer = await chatThrough('127.0.0.1', listenerPort);
      expect(answer, answer.body).toMatchObject({ status: 200, answeredBy: 'working' });
    }
  });

  it('relists and serves the same versions: the reconnected Envoy applies nothing new', async () => {
    // Envoy's reconnect back-off (up to 30 s) easily outlasts a restart: it comes back only after
    // the new controller leads and has looked at every object once, which is when a status that
    // says "no Envoy connected" would be written.
    process.kill(envoy.pid, 'SIGSTOP');
    try {
      second = await startReplica({ namespace: ns.name, identity: IDENTITY, lease: LEASE, xdsPort, extension, xdsSocket });
      const r = second;
      // Relisted: the same objects give the same content hashes, before any Envoy is back.
      expect(cacheVersions(r)).toEqual(versions);
      await waitFor(() => r.ctl.isLeader(), { what: 'the restarted controller to take the released Lease', timeoutMs: K8S_SETTLE_MS });
      await waitFor(
        () => {
          const c = r.ctl.writer?.counters();
          return c !== undefined && c.writes + c.skipped >= statusObjects().length;
        },
        { what: 'the new leader to sync every object once', timeoutMs: K8S_SETTLE_MS },
      );
      await r.ctl.writer?.idle();
      expect(envoyAcked(r)).toBeUndefined();
    } finally {
      process.kill(envoy.pid, 'SIGCONT');
    }
    const r = second;
    await settled(r);
    expect(await envoy.stat('control_plane.connected_state')).toBe(1);
    expect(envoyAcked(r)).toEqual(acked);
    expect(await envoyConfig()).toEqual(envoyBefore);
    expect(await changeStats()).toEqual(statsBefore);
    // Envoy did hear from the new server: one CDS and one LDS response each, the same versions,
    // taken as updates that change nothing (no cluster or listener added, modified or removed).
    expect(await updateSuccesses()).toEqual({ cds: successesBefore.cds + 1, lds: successesBefore.lds + 1 });
    const answer = await chatThrough('127.0.0.1', listenerPort);
    expect(answer, answer.body).toMatchObject({ status: 200, answeredBy: 'working' });
  });

  it('writes no status that did not change, and no Event again', async () => {
    const r = second;
    if (!r) throw new Error('the restarted controller did not start');
    // Once the writer has looked at every object (becoming leader syncs them all; the Envoy's
    // ACKs came before, in the test above) and has nothing left to do.
    await waitFor(() => (r.ctl.writer?.counters().skipped ?? 0) + statusObjects().reduce((n, o) => n + r.writesTo(o.logName), 0) >= statusObjects().length, { what: `the restarted controller's writer to look at all ${statusObjects().length} objects (skipped ${r.ctl.writer?.counters().skipped ?? 0})`, timeoutMs: 30_000, intervalMs: 50 });
    await r.ctl.writer?.idle();
    for (const o of statusObjects()) expect(r.writesTo(o.logName), `status writes to ${o.logName} after the restart`).toBe(0);
    expect(await objectStates()).toEqual(statesBefore);
    expect(await warningEvents(client, ns.name, 'Backend', BACKEND)).toEqual(eventsBefore);
    expect(r.ctl.recorder?.counters()).toMatchObject({ created: 0, bumped: 0 });
    // It did look at them: every object was read and found to say what it would write.
    expect(r.ctl.writer?.counters().skipped).toBeGreaterThanOrEqual(statusObjects().length);
  });

  it('still writes the status that does change: the missing Secret arrives', async () => {
    const r = second;
    if (!r) throw new Error('the restarted controller did not start');
    const before = statesBefore[`Backend ${ns.name}/${BACKEND}`];
    // A condition's lastTransitionTime has one-second resolution (metav1.Time): the Secret arrives
    // in a later second than the condition's last transition, or a moved time could read the same
    // (a CI run on a fast machine wrote both in 08:12:08).
    const lastMoved = Date.parse(before?.conditions['ResolvedRefs']?.lastTransitionTime ?? '');
    if (Number.isFinite(lastMoved)) await sleep(Math.max(0, lastMoved + 1_000 - Date.now() + 50));
    await createObject(client, secretObject(ns.name, MISSING_SECRET, 'Bearer sk-waiting'));
    await waitFor(async () => (await apiCondition(client, 'Backend', ns.name, BACKEND, 'ResolvedRefs'))?.status === 'True', { what: 'ResolvedRefs=True on the Backend', timeoutMs: K8S_SETTLE_MS });
    // The API server has the status before the writer's call returns and it logs the write.
    await waitFor(() => r.writesTo(`Backend ${ns.name}/${BACKEND}`) >= 1, { what: 'the restarted controller to log its status write to the Backend', timeoutMs: K8S_SETTLE_MS });
    const after = conditionsOf(await readObject(client, 'Backend', ns.name, BACKEND));
    // Only the condition that changed moved its transition time.
    expect(after['Accepted']?.lastTransitionTime).toBe(before?.conditions['Accepted']?.lastTransitionTime);
    expect(after['ResolvedRefs']?.lastTransitionTime).not.toBe(before?.conditions['ResolvedRefs']?.lastTransitionTime);
  });
});
