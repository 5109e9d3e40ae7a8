import { existsSync, readFileSync } from 'node:fs';
import { KubeClient } from '../providers/kubernetes/api-client.js';
import { loadKubeConfig } from '../providers/kubernetes/kubeconfig.js';
import { KubernetesProvider, type KubernetesProviderOptions } from '../providers/kubernetes/provider.js';
import type { EventRecorder } from '../status/events.js';
import { kubeStatusApi } from '../status/kube-api.js';
import type { LeaderElector, LeaderElectorOptions } from '../status/leader.js';
import { StatusReporter } from '../status/reporter.js';
import type { StatusWriter } from '../status/writer.js';
import { startGatewayRuntime, type RunningGateway, type ServingOptions, type StatusSink } from './gateway-runtime.js';

const IN_CLUSTER_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The Lease and its timings, as the leader elector takes them. */
export type LeaderElectionOptions = Pick<LeaderElectorOptions, 'namespace' | 'name' | 'identity' | 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs'>;

export interface ControllerOptions extends ServingOptions {
  /** A kubeconfig file; absent: $KUBECONFIG, the in-cluster service account, then ~/.kube/config. */
  kubeconfig?: string;
  /** Namespaces to watch; empty: all. */
  namespaces: readonly string[];
  /** Status writing and Warning Events, by the replica holding the Lease; `false`: serve xDS only. */
  leaderElection: LeaderElectionOptions | false;
  /** Provider tuning (debounce, back-off, watch timeouts), for tests and operators. */
  provider?: Omit<Partial<KubernetesProviderOptions>, 'client' | 'namespaces' | 'logger'>;
}

export interface RunningController extends RunningGateway {
  provider: KubernetesProvider;
  /** Where the API server configuration came from ("in-cluster service account", a file). */
  kubeconfigSource: string;
  isLeader(): boolean;
  writer?: StatusWriter;
  recorder?: EventRecorder;
  elector?: LeaderElector;
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

  let reporter: StatusReporter | undefined;
  let sink: StatusSink | undefined;
  if (opts.leaderElection) {
    const { namespace, identity, ...election } = opts.leaderElection;
    const status = new StatusReporter({
      api: kubeStatusApi(kube.config),
      namespace,
      logger: log,
      ...(identity ? { identity } : {}),
      election,
    });
    reporter = status;
    sink = {
      statuses: (all) => status.writer.update(all),
      warnings: (events) => status.recorder.record(events),
    };
  }

  let runtime: RunningGateway;
  try {
    runtime = await startGatewayRuntime({
      provider,
      xdsPort: opts.xdsPort,
      xdsHost: opts.xdsHost,
      ...(opts.xdsTls ? { xdsTls: opts.xdsTls } : {}),
      metricsPort: opts.metricsPort,
      metricsHost: opts.metricsHost,
      envoy: opts.envoy,
      ...(opts.loadReporting ? { loadReporting: opts.loadReporting } : {}),
      logger: log,
      ...(sink ? { statusSink: sink } : {}),
      origin: { kubeconfig: kube.source, server: kube.server, namespaces: opts.namespaces.length > 0 ? opts.namespaces.join(',') : 'all' },
    });
  } catch (err) {
    client.close();
    throw err;
  }
  // Only now: a replica that cannot serve must not take the Lease.
  reporter?.start();

  const running: RunningController = {
    ...runtime,
    provider,
    kubeconfigSource: kube.source,
    isLeader: () => reporter?.isLeader() ?? false,
    ...(reporter ? { writer: reporter.writer, recorder: reporter.recorder, elector: reporter.elector } : {}),
    async stop() {
      // Hand the Lease over first (after our last status writes), then stop serving.
      await reporter?.stop();
      await runtime.stop();
      client.close();
    },
  };
  return running;
}
