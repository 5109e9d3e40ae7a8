import { open, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { IR } from '../ir/model.js';

/**
 * Cool-down made visible per member: Envoy's outlier detection ejects a failing member for a
 * while (base_ejection_time, growing with each ejection) and says so only in its admin API and,
 * when its bootstrap sets cluster_manager.outlier_detection.event_log_path, in a JSON line per
 * ejection and un-ejection. This follows that file and names the member of each event.
 */

export interface OutlierEvent {
  cluster: string;
  /** "address:port" of the ejected endpoint. */
  upstream: string;
  action: 'EJECT' | 'UNEJECT';
  /** Envoy's cause: CONSECUTIVE_5XX, CONSECUTIVE_GATEWAY_FAILURE, ... */
  type: string;
  ejections?: number;
  enforced?: boolean;
}

/** One line of Envoy's outlier event log (envoy.data.cluster.v3.OutlierDetectionEvent as JSON). */
export function parseOutlierEvent(line: string): OutlierEvent | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const r = raw as Record<string, unknown>;
  const action = r['action'];
  if (typeof r['cluster_name'] !== 'string' || typeof r['upstream_url'] !== 'string' || (action !== 'EJECT' && action !== 'UNEJECT')) return undefined;
  const ejections = Number(r['num_ejections']);
  return {
    cluster: r['cluster_name'],
    upstream: r['upstream_url'],
    action,
    type: typeof r['type'] === 'string' ? r['type'] : '',
    ...(Number.isFinite(ejections) ? { ejections } : {}),
    ...(typeof r['enforced'] === 'boolean' ? { enforced: r['enforced'] } : {}),
  };
}

/**
 * The member an endpoint belongs to: by address and port, else (a hostname Envoy resolved) by
 * port when exactly one member of the cluster has it.
 */
export function memberAt(ir: IR, cluster: string, upstream: string): { backend: string; member: string; priority: number } | undefined {
  const c = ir.clusters.find((x) => x.name === cluster);
  if (c === undefined) return undefined;
  const at = upstream.lastIndexOf(':');
  const address = upstream.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(upstream.slice(at + 1));
  const members = c.priorities.flatMap((p) => p.members.map((m) => ({ m, priority: p.level })));
  const exact = members.find(({ m }) => m.address === address && m.port === port);
  const byPort = members.filter(({ m }) => m.port === port);
  const found = exact ?? (byPort.length === 1 ? byPort[0] : undefined);
  if (found === undefined) return undefined;
  return { backend: `${c.backend.namespace}/${c.backend.name}`, member: found.m.name, priority: found.priority };
}

/** Follows a file Envoy appends to (it may not exist yet, or start over after a restart). */
export class OutlierEventTail {
  private offset = 0;
  private partial = '';
  private timer: NodeJS.Timeout | undefined;
  private reading = false;

  constructor(
    private readonly path: string,
    private readonly onEvent: (e: OutlierEvent) => void,
    private readonly intervalMs = 200,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.poll(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Reads what was appended since the last call. */
  async poll(): Promise<void> {
    if (this.reading) return;
    this.reading = true;
    try {
      const size = (await stat(this.path)).size;
      // A restarted Envoy truncates the log: read it from its start.
      if (size < this.offset) {
        this.offset = 0;
        this.partial = '';
      }
      if (size === this.offset) return;
      const file = await open(this.path, 'r');
      try {
        const buf = Buffer.alloc(size - this.offset);
        const { bytesRead } = await file.read(buf, 0, buf.length, this.offset);
        this.offset += bytesRead;
        const text = this.partial + buf.subarray(0, bytesRead).toString('utf8');
        const lines = text.split('\n');
        this.partial = lines.pop() ?? '';
        for (const line of lines) {
          const e = parseOutlierEvent(line);
          if (e !== undefined) this.onEvent(e);
        }
      } finally {
        await file.close();
      }
    } catch {
      // Not written yet (no ejection so far): the next poll looks again.
    } finally {
      this.reading = false;
    }
  }
}

/** Logs each ejection and un-ejection by member, and counts them. */
export function ejectionReporter(opts: { logger: Logger; registry: Registry; ir: () => IR | undefined }): (e: OutlierEvent) => void {
  const registers = [opts.registry];
  const ejections = new Counter({
    name: 'switchyard_member_ejections_total',
    help: 'Ejections of a pool member by Envoy\'s outlier detection (its cool-down), by Backend, member and cause (Envoy\'s type, e.g. CONSECUTIVE_5XX).',
    labelNames: ['backend', 'member', 'type'],
    registers,
  });
  const ejected = new Gauge({
    name: 'switchyard_member_ejected',
    help: 'Endpoints of the member that Envoy has ejected now (in cool-down), as the Envoys followed by this process report them.',
    labelNames: ['backend', 'member'],
    registers,
  });
  return (e) => {
    // An ejection Envoy only counted (enforcing_* below 100%) left the member in; Envoy marks
    // every un-ejection enforced: false (seen with 1.40).
    if (e.action === 'EJECT' && e.enforced === false) return;
    const ir = opts.ir();
    const m = ir === undefined ? undefined : memberAt(ir, e.cluster, e.upstream);
    const labels = { backend: m?.backend ?? e.cluster, member: m?.member ?? e.upstream };
    const fields = { backend: labels.backend, member: labels.member, ...(m ? { priority: m.priority } : {}), upstream: e.upstream, cause: e.type, ejections: e.ejections };
    if (e.action === 'EJECT') {
      ejections.inc({ ...labels, type: e.type });
      ejected.inc(labels);
      opts.logger.warn(fields, 'pool member ejected by Envoy\'s outlier detection (cool-down): Envoy skips it until its ejection time passes');
    } else {
      ejected.dec(labels);
      opts.logger.info(fields, 'pool member back from its cool-down: Envoy picks it again');
    }
  };
}
