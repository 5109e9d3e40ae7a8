import { inject } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { startAiExtension, type RunningAiExtension } from '../../src/ai-extension/server.js';
import { CONTROLLER_NAME } from '../../src/api/gateway.js';
import { controller, type ControllerOptions, type RunningController } from '../../src/app/controller.js';
import { buildBootstrap } from '../../src/envoy/bootstrap.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { createLogger, type Logger } from '../../src/observability/logger.js';
import { isNotFound, type KubeClient, type RawObject } from '../../src/providers/kubernetes/api-client.js';
import type { LeaseClient } from '../../src/status/kube-api.js';
import { chatCompletion, type ChatAnswer } from './chat.js';
import { startEnvoy, type EnvoyProcess } from './envoy.js';
import { aiBackend } from './gateway-fixture.js';
import { objectPath, removeNamespace } from './kube-cluster.js';
import { freePort } from './ports.js';
import { waitFor } from './wait.js';

/**
 * Controller replicas for the restart and replica tests: `switchyard controller` in-process,
 * scoped to one test namespace, each with its own AI extension and (optionally) its own Envoy,
 * and what each replica logged, so status writes can be told apart per object and per replica.
 */


export interface LeaseTiming {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

export interface ReplicaOptions {
  namespace: string;
  identity: string;
  lease: LeaseTiming;
  /** The Lease API the replica's elector uses (a RecordingLeases, to judge it by its tries); absent: its kubeconfig's. */
  leases?: LeaseClient;
  /** 0 (default): any free port. A restarted replica passes its predecessor's port. */
  xdsPort?: number;
  /** Where this replica's Envoy binds the Gateway's listeners (127.0.0.x keeps two Envoys apart). */
  listenerAddress?: string;
  /** An AI extension to point the configuration at; absent: one is started for this replica. */
  extension?: RunningAiExtension;
  /**
   * The Unix socket (in a private directory the test owns) where `extension` reads provider keys:
   * the replica serves it (streams on it are the ai-extension identity), and a restarted replica
   * serves it again at the same path.
   */
  xdsSocket?: string;
  /** Timings of the replica's share (heartbeat, expiry, rate); absent: the defaults. */
  replicaShare?: ControllerOptions['replicaShare'];
  /** Load reporting tuning (report interval, window, refresh); absent: the defaults. */
  loadReporting?: ControllerOptions['loadReporting'];
}

export interface Replica {
  readonly identity: string;
  readonly ctl: RunningController;
  readonly extension: RunningAiExtension;
  readonly logLines: string[];
  /** The replica's log records with this `msg`, parsed. */
  records(msg: string): Record<string, unknown>[];
  /** Status PUTs this replica made for one object (`Backend ns/name`, `GatewayClass name`), from its log. */
  writesTo(object: string): number;
  /** A crash as far as the cluster can tell: the Lease is not released, it has to run out. */
  crash(): Promise<void>;
  /** Graceful shutdown: last writes, Lease released, servers closed. */
  stop(): Promise<void>;
}

/**
 * A controller for tests: scoped to `namespaces`, every port on loopback (xDS and metrics on free
 * ports), Envoy listeners on `listenerAddress`, the AI extension at 127.0.0.1:`extensionPort`.
 */
export function loopbackController(o: {
  namespaces: string[];
  extensionPort: number;
  logger: Logger;
  leaderElection: ControllerOptions['leaderElection'];
  xdsPort?: number;
  listenerAddress?: string;
  replicaShare?: ControllerOptions['replicaShare'];
  loadReporting?: ControllerOptions['loadReporting'];
}): Promise<RunningController> {
  return controller({
    kubeconfig: inject('kubeconfig'),
    namespaces: o.namespaces,
    xdsPort: o.xdsPort ?? 0,
    xdsHost: '127.0.0.1',
    metricsPort: 0,
    metricsHost: '127.0.0.1',
    envoy: { listenerAddress: o.listenerAddress ?? '127.0.0.1', aiExtension: { host: '127.0.0.1', port: o.extensionPort } },
    logger: o.logger,
    leaderElection: o.leaderElection,
    ...(o.replicaShare !== undefined ? { replicaShare: o.replicaShare } : {}),
    ...(o.loadReporting !== undefined ? { loadReporting: o.loadReporting } : {}),
  });
}

/** A Lease short enough that a test does not wait long for leadership. */
const SHORT_LEASE: LeaseTiming = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 };

/**
 * One controller as the chart runs it, for tests of a single replica: loopbackController scoped to
 * `namespaces` (its Lease, a short one, in the first), and an AI extension next to it that takes
 * provider keys from the controller's private socket. Both log to `logger`.
 */
export async function startControllerWithExtension(o: { namespaces: string[]; identity: string; logger: Logger }): Promise<{ ctl: RunningController; extension: RunningAiExtension }> {
  const extension = await startAiExtension({ port: 0, host: '127.0.0.1', logger: o.logger.child({ component: 'ai-extension' }) });
  let ctl: RunningController | undefined;
  try {
    ctl = await loopbackController({
      namespaces: o.namespaces,
      extensionPort: extension.port,
      logger: o.logger,
      leaderElection: { namespace: o.namespaces[0] ?? '', identity: o.identity, ...SHORT_LEASE },
    });
    extension.connect({ socket: await ctl.xds.privateSocket() });
    return { ctl, extension };
  } catch (err) {
    await ctl?.stop();
    await extension.stop();
    throw err;
  }
}

export async function startReplica(opts: ReplicaOptions): Promise<Replica> {
  const logLines: string[] = [];
  const logger = createLogger({ level: 'info', name: opts.identity }, { write: (line: string) => void logLines.push(line) });
  const ownExtension = opts.extension === undefined;
  const extension = opts.extension ?? (await startAiExtension({ port: 0, host: '127.0.0.1', logger: logger.child({ component: 'ai-extension' }), nodeId: `ai-extension/${opts.identity}` }));
  let ctl: RunningController;
  try {
    ctl = await loopbackController({
      namespaces: [opts.namespace],
      extensionPort: extension.port,
      logger,
      leaderElection: { namespace: opts.namespace, identity: opts.identity, ...opts.lease, ...(opts.leases ? { client: opts.leases } : {}) },
      ...(opts.xdsPort !== undefined ? { xdsPort: opts.xdsPort } : {}),
      ...(opts.listenerAddress !== undefined ? { listenerAddress: opts.listenerAddress } : {}),
      ...(opts.replicaShare !== undefined ? { replicaShare: opts.replicaShare } : {}),
      ...(opts.loadReporting !== undefined ? { loadReporting: opts.loadReporting } : {}),
    });
  } catch (err) {
    if (ownExtension) await extension.stop();
    throw err;
  }
  if (opts.xdsSocket !== undefined) await ctl.xds.listenUnix(opts.xdsSocket);
  if (ownExtension) extension.connect({ socket: await ctl.xds.privateSocket() });
  const records = (msg: string): Record<string, unknown>[] =>
    logLines.flatMap((line) => {
      const parsed: unknown = JSON.parse(line);
      return typeof parsed === 'object' && parsed !== null && 'msg' in parsed && parsed.msg === msg ? [parsed as Record<string, unknown>] : [];
    });
  let stopped = false;
  const finish = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await ctl.stop();
    if (ownExtension) await extension.stop();
  };
  return {
    identity: opts.identity,
    ctl,
    extension,
    logLines,
    records,
    writesTo: (object) => records('status written').filter((r) => r['object'] === object).length,
    crash: async () => {
      // Stops renewing without handing the Lease back; the rest of stop() then finds the elector stopped.
      await ctl.elector?.stop({ release: false });
      await finish();
    },
    stop: finish,
  };
}

/**
 * An Envoy whose bootstrap points at one replica's xDS port; it reports load (LRS) to that
 * replica unless `loadReporting` is false (a test of one controller restarting: a new process
 * starts from an empty load window and rightly rewrites Degraded, which such a test is not about).
 */
export async function startEnvoyFor(xdsPort: number, id: string, opts: { loadReporting?: boolean } = {}): Promise<EnvoyProcess> {
  const adminPort = await freePort();
  return startEnvoy({ bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: xdsPort }, nodeId: id, adminPort, loadReporting: opts.loadReporting ?? true }), adminPort, id });
}

export interface GatewayObjects {
  namespace: string;
  className: string;
  listenerPort: number;
  /** Answers as the priority-0 member, whose Secret exists. */
  working: FakeProvider;
  /** The priority-1 member, whose Secret `missingSecret` does not exist (yet). */
  waiting: FakeProvider;
}

export const GATEWAY = 'gw';
export const BACKEND = 'chat';
export const ROUTE = 'chat';
export const WORKING_SECRET = 'working-key';
export const MISSING_SECRET = 'missing-key';

/** GatewayClass, Gateway, a Backend with one working member and one whose Secret is missing, an HTTPRoute to it, the working member's Secret. */
export function gatewayObjects(o: GatewayObjects): RawObject[] {
  const backend = aiBackend({
    name: BACKEND,
    priorities: [
      [{ name: 'working', fake: o.working, hostname: 'working.llm.test', secret: WORKING_SECRET }],
      [{ name: 'waiting', fake: o.waiting, hostname: 'waiting.llm.test', secret: MISSING_SECRET }],
    ],
    outlierDetection: { enabled: false },
  });
  return [
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: o.className }, spec: { controllerName: CONTROLLER_NAME } },
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: GATEWAY, namespace: o.namespace },
      spec: { gatewayClassName: o.className, listeners: [{ name: 'http', protocol: 'HTTP', port: o.listenerPort }] },
    },
    secretObject(o.namespace, WORKING_SECRET, 'Bearer sk-working'),
    { ...backend, metadata: { name: BACKEND, namespace: o.namespace } },
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: ROUTE, namespace: o.namespace },
      spec: {
        parentRefs: [{ name: GATEWAY }],
        rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/v1' } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: BACKEND }] }],
      },
    },
  ];
}

export function secretObject(namespace: string, name: string, authorization: string): RawObject {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, stringData: { Authorization: authorization } };
}

/** The API server's copy of one object (kinds the provider watches). */
export async function readObject(client: KubeClient, kind: string, namespace: string, name: string): Promise<RawObject> {
  const got = await client.request({ method: 'GET', path: objectPath({ kind, metadata: namespace ? { name, namespace } : { name } }) });
  if (typeof got !== 'object' || got === null || Array.isArray(got)) throw new Error(`${kind} ${name}: the API server answered something that is not an object`);
  return got as RawObject;
}

function record(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function list(v: unknown): Record<string, unknown>[] {
  return Array.isArray(v) ? v.map(record) : [];
}

export interface ConditionView {
  type: string;
  status: string;
  reason: string;
  lastTransitionTime: string;
}

function conditionViews(v: unknown, prefix: string): [string, ConditionView][] {
  return list(v).map((c) => [
    `${prefix}${String(c['type'])}`,
    { type: String(c['type']), status: String(c['status']), reason: String(c['reason']), lastTransitionTime: String(c['lastTransitionTime']) },
  ]);
}

/** Every condition of an object's status, top-level, per Gateway listener and per HTTPRoute parent, keyed by where it is. */
export function conditionsOf(object: RawObject): Record<string, ConditionView> {
  const status = record(object['status']);
  return Object.fromEntries([
    ...conditionViews(status['conditions'], ''),
    ...list(status['listeners']).flatMap((l) => conditionViews(l['conditions'], `listener ${String(l['name'])}: `)),
    ...list(status['parents']).flatMap((p) => conditionViews(p['conditions'], `parent ${String(record(p['parentRef'])['name'])} (${String(p['controllerName'])}): `)),
  ]);
}

export function resourceVersionOf(object: RawObject): string {
  return String(record(object['metadata'])['resourceVersion']);
}

/** The condition of that type on an object as the API server has it (top-level, or of our first route parent). */
export async function apiCondition(client: KubeClient, kind: string, namespace: string, name: string, type: string): Promise<ConditionView | undefined> {
  const all = conditionsOf(await readObject(client, kind, namespace, name));
  return all[type] ?? Object.entries(all).find(([key]) => key.startsWith('parent ') && key.includes(`(${CONTROLLER_NAME}): `) && key.endsWith(`: ${type}`))?.[1];
}

/** Warning Events on one object: reason → count. */
export async function warningEvents(client: KubeClient, namespace: string, kind: string, name: string): Promise<Record<string, number>> {
  const got = record(await client.request({ method: 'GET', path: `/api/v1/namespaces/${namespace}/events`, query: { fieldSelector: `involvedObject.kind=${kind},involvedObject.name=${name}` } }));
  const out: Record<string, number> = {};
  for (const e of list(got['items'])) {
    if (e['type'] !== 'Warning') continue;
    const reason = String(e['reason']);
    out[reason] = (out[reason] ?? 0) + (typeof e['count'] === 'number' ? e['count'] : 1);
  }
  return out;
}

export interface LeaseView {
  holder: string;
  transitions: number;
}

export async function leaseOf(client: KubeClient, namespace: string, name = 'switchyard-controller'): Promise<LeaseView | undefined> {
  try {
    const spec = record(record(await client.request({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${name}` }))['spec']);
    return { holder: typeof spec['holderIdentity'] === 'string' ? spec['holderIdentity'] : '', transitions: typeof spec['leaseTransitions'] === 'number' ? spec['leaseTransitions'] : 0 };
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/**
 * removeNamespace, plus what it does not know of: the controllers' Lease and the Warning Events
 * (nothing else deletes them without a kube-controller-manager), and the GatewayClass.
 */
export async function removeTestObjects(client: KubeClient, namespace: string, className?: string): Promise<void> {
  for (const path of [`/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`, `/api/v1/namespaces/${namespace}/events`]) {
    await client.request({ method: 'DELETE', path }).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }
  await removeNamespace(client, namespace);
  if (className) {
    await client.request({ method: 'DELETE', path: `/apis/gateway.networking.k8s.io/v1/gatewayclasses/${className}` }).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });
  }
}

/** One chat completion through a listener; who answered (the fake's `x-fake-provider`) and the HTTP status. */
export function chatThrough(address: string, port: number): Promise<ChatAnswer> {
  return chatCompletion(`http://${address}:${port}/v1/chat/completions`, { authorization: 'Bearer sk-client' });
}

/** Waits until a request through the listener is answered by `who`. */
export async function waitForAnswer(address: string, port: number, who: string, what: string, timeoutMs = 15_000): Promise<void> {
  await waitFor(async () => (await chatThrough(address, port)).answeredBy === who, { what, timeoutMs, intervalMs: 100 });
}

export function asJsonObject(v: unknown): JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as JsonObject) : {};
}

/** (port, priority) of every host Envoy has in a cluster, sorted by port. */
export async function clusterHosts(envoy: EnvoyProcess, cluster: string): Promise<[number, number][]> {
  const body = await envoy.clusters();
  const statuses = Array.isArray(body['cluster_statuses']) ? body['cluster_statuses'].map(asJsonObject) : [];
  const hosts = statuses.find((s) => s['name'] === cluster)?.['host_statuses'];
  return (Array.isArray(hosts) ? hosts.map(asJsonObject) : [])
    .map((h): [number, number] => {
      const port = asJsonObject(asJsonObject(h['address'])['socket_address'])['port_value'];
      const priority = h['priority'];
      return [typeof port === 'number' ? port : 0, typeof priority === 'number' ? priority : 0];
    })
    .sort(([a], [b]) => a - b);
}

export async function waitForHosts(envoy: EnvoyProcess, cluster: string, expected: [number, number][], what: string, timeoutMs = 10_000): Promise<void> {
  const want = JSON.stringify([...expected].sort(([a], [b]) => a - b));
  let last = '';
  try {
    await waitFor(
      async () => {
        last = JSON.stringify(await clusterHosts(envoy, cluster));
        return last === want;
      },
      { what: `${what}: Envoy ${envoy.id} cluster ${cluster} with hosts (port, priority) ${want}`, timeoutMs, intervalMs: 50 },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen: ${last}`);
  }
}
