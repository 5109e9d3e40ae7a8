import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** How an Envoy's ADS stream speaks: state-of-the-world or incremental (delta) xDS. */
export type XdsStreamKind = 'sotw' | 'delta';

export interface SwitchyardMetrics {
  /** Registry to serve on /metrics; its own, so tests and embedders never share prom-client's global one. */
  registry: Registry;
  translations: Counter;
  translationDuration: Histogram;
  configProblems: Gauge;
  xdsClients: Gauge<'kind'>;
  xdsPushes: Counter<'type_url'>;
  xdsNacks: Counter<'type_url'>;
  resources: Gauge<'type'>;
  /** From Envoys' load reports over the last window, per Backend member (src/status/fleet-health.ts). */
  memberRequests: Gauge<'backend' | 'member' | 'priority'>;
  memberErrors: Gauge<'backend' | 'member' | 'priority'>;
  backendDegraded: Gauge<'backend'>;
}

export interface MetricsOptions {
  /** Process metrics (CPU, memory, event-loop lag, GC); off for short-lived commands and tests. */
  processMetrics?: boolean;
}

export function createMetrics(options: MetricsOptions = {}): SwitchyardMetrics {
  const registry = new Registry();
  const registers = [registry];
  const metrics: SwitchyardMetrics = {
    registry,
    translations: new Counter({
      name: 'switchyard_translations_total',
      help: 'Translations of the inputs into Envoy resources.',
      registers,
    }),
    translationDuration: new Histogram({
      name: 'switchyard_translation_duration_seconds',
      help: 'Time to translate the inputs into Envoy resources.',
      // Translation is in-memory work: most runs take well under 100 ms.
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    configProblems: new Gauge({
      name: 'switchyard_config_problems',
      help: 'Problems found in the current configuration (invalid objects, broken references, syntax errors).',
      registers,
    }),
    xdsClients: new Gauge({
      name: 'switchyard_xds_clients',
      help: 'Connected xDS streams, by stream kind.',
      labelNames: ['kind'],
      registers,
    }),
    xdsPushes: new Counter({
      name: 'switchyard_xds_pushes_total',
      help: 'xDS responses sent, by resource type URL.',
      labelNames: ['type_url'],
      registers,
    }),
    xdsNacks: new Counter({
      name: 'switchyard_xds_nacks_total',
      help: 'xDS responses rejected by a client (NACK), by resource type URL.',
      labelNames: ['type_url'],
      registers,
    }),
    resources: new Gauge({
      name: 'switchyard_resources',
      help: 'Resources in the current snapshot, by type.',
      labelNames: ['type'],
      registers,
    }),
    memberRequests: new Gauge({
      name: 'switchyard_backend_member_requests',
      help: 'Attempts the Envoys sent to a Backend member over the load window (LRS reports, all Envoys).',
      labelNames: ['backend', 'member', 'priority'],
      registers,
    }),
    memberErrors: new Gauge({
      name: 'switchyard_backend_member_errors',
      help: 'Attempts to a Backend member that failed (5xx, failed or reset connections) over the load window.',
      labelNames: ['backend', 'member', 'priority'],
      registers,
    }),
    backendDegraded: new Gauge({
      name: 'switchyard_backend_degraded',
      help: '1 when a Backend is Degraded (a member failing or unreachable over the load window), 0 when not, absent without load reports.',
      labelNames: ['backend'],
      registers,
    }),
  };
  // Both series exist from the start, so "no delta clients" reads as 0 rather than as no data.
  for (const kind of ['sotw', 'delta'] satisfies XdsStreamKind[]) metrics.xdsClients.set({ kind }, 0);
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  return metrics;
}
