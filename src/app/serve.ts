import type { Logger } from 'pino';
import { formatProblem, type Problem } from '../api/manifest.js';
import type { EnvoyOptions } from '../envoy/options.js';
import { KIND_FIELD, PUSH_ORDER, TypeUrl } from '../envoy/resources.js';
import { startHealthServer, type HealthServer } from '../observability/health.js';
import { createMetrics, type SwitchyardMetrics } from '../observability/metrics.js';
import { runPipeline } from '../pipeline.js';
import { FileProvider, type Snapshot } from '../providers/file.js';
import { StatusBook } from '../status/book.js';
import { applyXdsFeedback, servedAsFromIr, type ClientTypeFeedback, type ServedAs } from '../status/programmed.js';
import type { ObjectStatus } from '../translate/status.js';
import { SnapshotCache } from '../xds/cache.js';
import { XdsServer } from '../xds/server.js';

export interface ServeOptions {
  config: string;
  xdsPort: number;
  xdsHost: string;
  metricsPort: number;
  metricsHost: string;
  envoy: Partial<EnvoyOptions>;
  logger: Logger;
}

export interface RunningServe {
  xdsPort: number;
  metricsPort: number;
  statuses(): ObjectStatus[];
  problems(): Problem[];
  cache: SnapshotCache;
  xds: XdsServer;
  metrics: SwitchyardMetrics;
  stop(): Promise<void>;
}

function conditionsSummary(s: ObjectStatus): string {
  return ('conditions' in s ? s.conditions : []).map((c) => `${c.type}=${c.status}${c.status === 'True' ? '' : `(${c.reason})`}`).join(' ');
}

/**
 * `switchyard serve`: the file provider feeding the pipeline, the cache and the ADS server, with
 * statuses kept from translation and from what the Envoys ACK or NACK.
 */
export async function serve(opts: ServeOptions): Promise<RunningServe> {
  const log = opts.logger;
  const metrics = createMetrics({ processMetrics: true });
  const cache = new SnapshotCache();
  const xds = new XdsServer({ cache, logger: log.child({ component: 'xds' }) });
  const book = new StatusBook();
  const provider = new FileProvider({ path: opts.config, logger: log });
  let translated: ObjectStatus[] = [];
  let servedAs: ServedAs = new Map();
  let problems: Problem[] = [];
  let loaded = false;

  const publishStatuses = (): void => {
    const clients: ClientTypeFeedback[] = xds.clients().flatMap((c) =>
      c.types.map((t) => ({
        nodeId: c.nodeId,
        typeUrl: t.typeUrl,
        state: t.state,
        ...(t.sentVersion !== undefined ? { sentVersion: t.sentVersion } : {}),
        ...(t.state === 'rejected' && t.lastNack ? { nackMessage: t.lastNack.message } : {}),
      })),
    );
    const versions: Record<string, string | undefined> = {};
    for (const kind of PUSH_ORDER) versions[TypeUrl[kind]] = cache.snapshot(TypeUrl[kind])?.version;
    const { changed } = book.update(applyXdsFeedback(translated, servedAs, { clients, versions }));
    for (const s of changed) log.info({ object: `${s.kind} ${s.namespace ? `${s.namespace}/` : ''}${s.name}`, conditions: conditionsSummary(s) }, 'status changed');
  };

  const apply = (snapshot: Snapshot): void => {
    const started = process.hrtime.bigint();
    problems = snapshot.problems;
    metrics.configProblems.set(problems.length);
    for (const p of problems) log.warn({ problem: formatProblem(p) }, 'configuration problem');
    try {
      const result = runPipeline(snapshot.inputs, opts.envoy);
      const change = cache.setResources(result.xds);
      metrics.translations.inc();
      metrics.translationDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
      for (const kind of PUSH_ORDER) metrics.resources.set({ type: kind }, result.xds[KIND_FIELD[kind]].length);
      translated = result.translation.statuses;
      servedAs = servedAsFromIr(result.translation.ir);
      for (const e of result.translation.events) log.warn({ object: `${e.object.kind} ${e.object.namespace}/${e.object.name}`, reason: e.reason }, e.message);
      log.info({ changed: change.changed.map((t) => t.split('.').pop()), clusters: result.xds.clusters.length, listeners: result.xds.listeners.length }, 'configuration translated');
      loaded = true;
      publishStatuses();
    } catch (err) {
      // A translation that cannot be encoded must not replace what Envoy is serving.
      log.error({ err }, 'translation failed; the previous configuration keeps being served');
    }
  };

  apply(await provider.start());
  provider.onChange(apply);

  xds.on('ack', () => publishStatuses());
  xds.on('nack', (e) => {
    metrics.xdsNacks.inc({ type_url: e.typeUrl });
    log.warn({ node: e.nodeId, typeUrl: e.typeUrl, version: e.version }, `Envoy rejected configuration: ${e.message}`);
    publishStatuses();
  });
  xds.on('connected', (e) => {
    metrics.xdsClients.inc({ kind: e.kind });
    log.info({ node: e.nodeId, kind: e.kind }, 'Envoy connected');
  });
  xds.on('disconnected', (e) => {
    metrics.xdsClients.dec({ kind: e.kind });
    log.info({ node: e.nodeId, kind: e.kind }, 'Envoy disconnected');
    publishStatuses();
  });

  const xdsPort = await xds.start({ port: opts.xdsPort, host: opts.xdsHost });
  let health: HealthServer;
  try {
    health = await startHealthServer({
      port: opts.metricsPort,
      host: opts.metricsHost,
      registry: metrics.registry,
      ready: () => (loaded ? true : { ready: false, reason: 'the configuration has not been translated yet' }),
      statusz: () => ({ statuses: book.all(), problems: problems.map((p) => ({ ...p, text: formatProblem(p) })), clients: xds.clients() }),
    });
  } catch (err) {
    await xds.stop();
    await provider.stop();
    throw err;
  }
  log.info({ config: opts.config, xdsPort, metricsPort: health.port }, 'switchyard serving');

  return {
    xdsPort,
    metricsPort: health.port,
    statuses: () => book.all(),
    problems: () => problems,
    cache,
    xds,
    metrics,
    async stop() {
      await provider.stop();
      await xds.stop();
      await health.close();
    },
  };
}
