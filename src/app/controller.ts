import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { HostInfrastructure, type HostInfrastructureOptions } from '../infrastructure/host.js';
import { KubeClient } from '../providers/kubernetes/api-client.js';
import { loadKubeConfig } from '../providers/kubernetes/kubeconfig.js';
import { KubernetesProvider, type KubernetesProviderOptions } from '../providers/kubernetes/provider.js';
import type { EventRecorder } from '../status/events.js';
import { kubeStatusApi, type LeaseClient } from '../status/kube-api.js';
import { DEFAULT_LEASE_NAME, defaultIdentity, type LeaderElector, type LeaderElectorOptions } from '../status/leader.js';
import { StatusReporter } from '../status/reporter.js';
import type { StatusWriter } from '../status/writer.js';
import { startManagedXdsTls, type ManagedXdsTls, type ManagedXdsTlsOptions } from './xds-pki.js';
import { startGatewayRuntime, type RunningGateway, type ServingOptions, type StatusOverlay, type StatusSink } from './gateway-runtime.js';
import { defaultStateDir, lockStateDir, openStateDir, type StateDir } from './state-dir.js';
import { ReplicaShareExchange, type ReplicaShareOptions } from './replica-share.js';
import { withGatewayAddresses } from '../infrastructure/addresses.js';
import type { DataPlaneSettings } from '../infrastructure/data-plane-objects.js';
import { KubernetesInfrastructure } from '../infrastructure/kubernetes.js';
import type { IR } from '../ir/model.js';

/** Gateway addresses from the data planes' Services, and a status rebuild when they change. */
function addressOverlay(infrastructure: KubernetesInfrastructure, namespace: string): StatusOverlay {
  const listeners: (() => void)[] = [];
  infrastructure.onAddresses(() => {
    for (const l of listeners) l();
  });
  return {
    apply: (statuses) => withGatewayAddresses(statuses, infrastructure.addresses(), namespace),
    onChange: (l) => listeners.push(l),
  };
}

const IN_CLUSTER_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/**
 * The Lease and its timings, as the leader elector takes them. `client`: the Lease API to use
 * instead of the kubeconfig's (tests pass one that records the replica's tries on the Lease, to
 * judge a takeover by its order instead of the wall clock).
 */
export type LeaderElectionOptions = Pick<LeaderElectorOptions, 'namespace' | 'name' | 'identity' | 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs'> & { client?: LeaseClient };

export interface ControllerOptions extends ServingOptions {
  /** A kubeconfig file; absent: $KUBECONFIG, the in-cluster service account, then ~/.kube/config. */
  kubeconfig?: string;
  /** Namespaces to watch; empty: all. */
  namespaces: readonly string[];
  /**
   * Status writing and Warning Events, by the replica holding the Lease; `false`: no Lease, this
   * replica writes them (controller-runtime's convention: without election a replica acts as leader).
   */
  leaderElection: LeaderElectionOptions | false;
  /**
   * Serve xDS over mTLS with certificates the controller issues and renews itself, kept in
   * Secrets `<prefix>-{ca,controller,envoy,ai-extension}` of `namespace` (src/app/xds-pki.ts).
   * Replaces `xdsTls`.
   */
  managedXdsTls?: Omit<ManagedXdsTlsOptions, 'client' | 'logger'>;
  /**
   * Create one Envoy data plane per Gateway (src/infrastructure/): the leader applies them,
   * every replica reports their Services' addresses in Gateway status. Absent: Envoys are the
   * user's (`switchyard bootstrap --gateway NS/NAME`).
   */
  dataPlane?: DataPlaneSettings;
  /** Provider tuning (debounce, back-off, watch timeouts), for tests and operators. */
  provider?: Omit<Partial<KubernetesProviderOptions>, 'client' | 'namespaces' | 'logger'>;
  /**
   * Run one Envoy per Gateway on this machine (src/infrastructure/host.ts); the leader writes
   * their addresses to status.addresses. `stateDir` default: defaultStateDir("controller").
   * `extProc`: how those Envoys reach the AI extension. `unix` (default): `<stateDir>/ext-proc.sock`,
   * a pipe in the 0700 state directory (the extension's answers carry provider keys: no TCP port
   * any local process could call), and the extension reads its keys over `<stateDir>/ads.sock`;
   * `tcp`: `envoy.aiExtension` (an extension on another host, or given on purpose).
   */
  infrastructure?: Omit<HostInfrastructureOptions, 'logger' | 'stateDir'> & { kind: 'host'; stateDir?: string; extProc?: 'unix' | 'tcp' };
  /**
   * With leader election: each replica shares its Envoys' ACK/NACK state and load reports in a
   * ConfigMap of its own, and every replica merges the others' into status (src/app/replica-share.ts).
   * Timings for tests and operators, and the owning Pod (default: $POD_NAME and $POD_UID when
   * POD_NAME is the replica's identity); `false`: each replica counts only its own Envoys.
   */
  replicaShare?: Partial<Pick<ReplicaShareOptions, 'heartbeatMs' | 'expireMs' | 'minIntervalMs' | 'owner'>> | false;
}

export interface RunningController extends RunningGateway {
  provider: KubernetesProvider;
  /** Where the API server configuration came from ("in-cluster service account", a file). */
  kubeconfigSource: string;
  isLeader(): boolean;
  writer?: StatusWriter;
  recorder?: EventRecorder;
  elector?: LeaderElector;
  infrastructure?: KubernetesInfrastructure;
  /** Absent without leader election (one replica) or with replicaShare false. */
  share?: ReplicaShareExchange;
}

/** The Lease namespace when none is given: $POD_NAMESPACE, the service account's namespace, else "default". */
export function defaultLeaseNamespace(env: NodeJS.ProcessEnv = process.env): string {
  if (env['POD_NAMESPACE']) return env['POD_NAMESPACE'];
  if (existsSync(IN_CLUSTER_NAMESPACE_FILE)) return readFileSync(IN_CLUSTER_NAMESPACE_FILE, 'utf8').trim() || 'default';
  return 'default';
}

/**
 * `switchyard controller`: the Kubernetes provider feeding the same pipeline as `serve`. Every
 * replica serves xDS; only the one holding the Lease writes status and Warning Events.
 */
export async function controller(opts: ControllerOptions): Promise<RunningController> {
  const log = opts.logger;
  const kube = loadKubeConfig(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {});
  const client = new KubeClient(kube.config);
  const provider = new KubernetesProvider({ ...opts.provider, client, namespaces: opts.namespaces, logger: log });

  const infrastructure = opts.dataPlane ? new KubernetesInfrastructure({ client, settings: opts.dataPlane, logger: log }) : undefined;
  // Without leader election this replica is the leader (controller-runtime's convention): it
  // writes status and Events from the start, and nobody else should run.
  const election = opts.leaderElection;
  const statusApi = kubeStatusApi(kube.config);
  const reporter = new StatusReporter({
    api: election !== false && election.client ? { ...statusApi, leases: election.client } : statusApi,
    namespace: election === false ? defaultLeaseNamespace() : election.namespace,
    logger: log,
    ...(election !== false && election.identity ? { identity: election.identity } : {}),
    election: election === false ? false : { ...pick(election, ['name', 'leaseDurationMs', 'renewDeadlineMs', 'retryPeriodMs']) },
    // The data planes are the leader's to create, like status.
    onStartedLeading: () => infrastructure?.setLeading(true),
    onStoppedLeading: () => infrastructure?.setLeading(false),
  });
  const sink: StatusSink = {
    statuses: (all) => reporter.writer.update(all),
    warnings: (events) => reporter.recorder.record(events),
  };

  // Only replicas that elect a leader have peers to share with.
  const share = election === false || opts.replicaShare === false ? undefined : new ReplicaShareExchange({
    ...podOwner(election.identity ?? defaultIdentity()),
    ...(opts.replicaShare ?? {}),
    client,
    namespace: election.namespace,
    identity: election.identity ?? defaultIdentity(),
    group: election.name ?? DEFAULT_LEASE_NAME,
    logger: log,
  });

  let host: { state: StateDir; unlock: () => void; infrastructure: HostInfrastructure; extProcSocket: string | undefined } | undefined;
  if (opts.infrastructure) {
    const { kind: _kind, stateDir, extProc = 'unix', ...choice } = opts.infrastructure;
    const state = openStateDir(stateDir ?? defaultStateDir('controller'));
    host = {
      state,
      unlock: lockStateDir(state),
      infrastructure: new HostInfrastructure({ ...choice, stateDir: state.path, logger: log.child({ component: 'host-infrastructure' }) }),
      extProcSocket: extProc === 'unix' ? state.extProcSocket : undefined,
    };
  }
  // The Envoys run here reach the extension through the state directory, never a TCP port.
  const envoy = host?.extProcSocket !== undefined ? { ...opts.envoy, aiExtension: { socket: host.extProcSocket } } : opts.envoy;

  let runtime: RunningGateway;
  let managed: ManagedXdsTls | undefined;
  try {
    if (opts.managedXdsTls) managed = await startManagedXdsTls({ ...opts.managedXdsTls, client, logger: log });
    const xdsTls = managed?.tls ?? opts.xdsTls;
    runtime = await startGatewayRuntime({
      provider,
      xdsPort: opts.xdsPort,
      xdsHost: opts.xdsHost,
      ...(xdsTls ? { xdsTls } : {}),
      metricsPort: opts.metricsPort,
      metricsHost: opts.metricsHost,
      envoy,
      ...(opts.loadReporting ? { loadReporting: opts.loadReporting } : {}),
      logger: log,
      statusSink: sink,
      ...(share ? { fleet: share } : {}),
      ...(host ? { infrastructure: host.infrastructure } : {}),
      ...(infrastructure && opts.dataPlane ? {
        onTranslated: (ir: IR) => infrastructure.update(ir),
        statusOverlay: addressOverlay(infrastructure, opts.dataPlane.namespace),
      } : {}),
      origin: { kubeconfig: kube.source, server: kube.server, namespaces: opts.namespaces.length > 0 ? opts.namespaces.join(',') : 'all' },
    });
    if (host) {
      // The Envoys dial this controller over a Unix socket of their own (envoy identity) in its private state directory.
      host.infrastructure.start({ socket: await runtime.xds.listenEnvoySocket(host.state.envoySocket) });
      const warm = `--warmup-envoys-dir ${join(host.state.path, 'envoy')}`;
      if (host.extProcSocket !== undefined) {
        // The extension beside them, run by this user, reads keys here as serve's does (ai-extension
        // identity, in the 0700 directory): no certificate to hand it, no key on a TCP port.
        // Left behind by a controller that was killed; the lock says no live one owns it.
        rmSync(host.state.socket, { force: true });
        await runtime.xds.listenUnix(host.state.socket);
        log.info({ stateDir: host.state.path, extProcSocket: host.extProcSocket }, `controller: Envoys run here and reach the AI extension on a Unix socket; run it as this user: switchyard ai-extension --xds-socket ${host.state.socket} --listen-socket ${host.extProcSocket} ${warm}`);
      } else {
        // The controller has no AI extension of its own to sign warm-up requests: the one its Envoys dial warms them.
        log.info({ stateDir: host.state.path }, `controller: Envoys run here; to keep their AI members' connections warm, run the AI extension with ${warm}`);
      }
    }
  } catch (err) {
    await host?.infrastructure.stop();
    await infrastructure?.stop();
    host?.unlock();
    managed?.stop();
    client.close();
    throw err;
  }
  // Only now: a replica that cannot serve must not take the Lease.
  infrastructure?.start();
  share?.start();
  reporter.start();

  const running: RunningController = {
    ...runtime,
    provider,
    kubeconfigSource: kube.source,
    isLeader: () => reporter.isLeader(),
    writer: reporter.writer,
    recorder: reporter.recorder,
    ...(reporter.elector ? { elector: reporter.elector } : {}),
    ...(infrastructure ? { infrastructure } : {}),
    ...(share ? { share } : {}),
    async stop() {
      // Hand the Lease over first (after our last status writes), then stop serving.
      await reporter.stop();
      await share?.stop();
      await host?.infrastructure.stop();
      await infrastructure?.stop();
      managed?.stop();
      await runtime.stop();
      if (host?.extProcSocket !== undefined) rmSync(host.state.socket, { force: true });
      client.close();
      host?.unlock();
    },
  };
  return running;
}

/** The Pod this replica runs in ($POD_NAME, $POD_UID from the downward API), when it is the replica's identity. */
function podOwner(identity: string, env: NodeJS.ProcessEnv = process.env): { owner?: { name: string; uid: string } } {
  const name = env['POD_NAME'];
  const uid = env['POD_UID'];
  return name && uid && name === identity ? { owner: { name, uid } } : {};
}

/** The fields of `o` named in `keys` that are set (exactOptionalPropertyTypes: no explicit undefined). */
function pick<T extends object, K extends keyof T>(o: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
  return out;
}
