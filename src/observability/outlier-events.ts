import { open, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
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

/** A pool member, as the log and metrics name it. */
export interface MemberRef {
  backend: string;
  member: string;
  priority: number;
  /** Its Host (the endpoint's hostname in Envoy): tells apart members at one address in /clusters. */
  hostname: string;
}

/**
 * Every member an endpoint may be: those at its address and port, else (a hostname Envoy
 * resolved) those of the cluster at its port whose address is a hostname. Several when members
 * of the Backend share an address and port (a STRICT_DNS cluster, one Envoy host per member):
 * Envoy's outlier event carries the cluster and address only.
 */
export function membersAt(ir: IR, cluster: string, upstream: string): MemberRef[] {
  const c = ir.clusters.find((x) => x.name === cluster);
  if (c === undefined) return [];
  const at = upstream.lastIndexOf(':');
  const address = upstream.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(upstream.slice(at + 1));
  const backend = `${c.backend.namespace}/${c.backend.name}`;
  const members = c.priorities.flatMap((p) => p.members.map((m) => ({ m, priority: p.level })));
  const exact = members.filter(({ m }) => m.address === address && m.port === port);
  const found = exact.length > 0 ? exact : members.filter(({ m }) => m.port === port && isIP(m.address) === 0);
  return found.map(({ m, priority }) => ({ backend, member: m.name, priority, hostname: m.hostname }));
}

/** The member an endpoint belongs to, when only one can be (membersAt). */
export function memberAt(ir: IR, cluster: string, upstream: string): { backend: string; member: string; priority: number } | undefined {
  const found = membersAt(ir, cluster, upstream);
  const only = found.length === 1 ? found[0] : undefined;
  return only === undefined ? undefined : { backend: only.backend, member: only.member, priority: only.priority };
}

/** One host of a cluster in Envoy's admin /clusters. */
export interface EnvoyHost {
  /** "address:port", as in an outlier event's upstream_url. */
  upstream: string;
  hostname: string;
  priority: number;
  ejected: boolean;
}

/** The hosts of `cluster` in the admin API's /clusters?format=json; undefined when it cannot be read. */
export async function clusterHosts(adminUrl: string, cluster: string): Promise<EnvoyHost[] | undefined> {
  try {
    const res = await fetch(`${adminUrl}/clusters?format=json`, { signal: AbortSignal.timeout(2_000) });
    if (!res.ok) return undefined;
    const body = (await res.json()) as { cluster_statuses?: { name?: string; host_statuses?: Record<string, unknown>[] }[] };
    const c = body.cluster_statuses?.find((x) => x.name === cluster);
    return (c?.host_statuses ?? []).map((h) => {
      const sock = ((h['address'] as Record<string, unknown> | undefined)?.['socket_address'] ?? {}) as Record<string, unknown>;
      const address = String(sock['address'] ?? '');
      const health = (h['health_status'] ?? {}) as Record<string, unknown>;
      return {
        upstream: `${isIP(address) === 6 ? `[${address}]` : address}:${Number(sock['port_value'] ?? 0)}`,
        hostname: typeof h['hostname'] === 'string' ? h['hostname'] : '',
        priority: typeof h['priority'] === 'number' ? h['priority'] : 0,
        ejected: health['failed_outlier_check'] === true,
      };
    });
  } catch {
    return undefined;
  }
}

/** Where an event came from: the admin API of the Envoy that wrote it, when known. */
export interface OutlierEventSource {
  adminUrl?: string | undefined;
}

/**
 * Which of several members at one address an event is about. Envoy's event names the cluster and
 * address only (envoy.data.cluster.v3.OutlierDetectionEvent has no priority, locality or
 * hostname), but its admin /clusters lists each host with its priority, hostname and
 * failed_outlier_check: an ejection is a member whose host is ejected now and was not held
 * ejected, a return one held ejected whose host is not any more. Without the admin API, or
 * when that leaves several (the host already back, two ejected at once), the lowest priority
 * among those not held ejected (a request tries the pools in order, so the first pool reaches
 * its threshold first), and a return goes to the member ejected first.
 */
async function whichMember(e: OutlierEvent, candidates: readonly MemberRef[], held: readonly MemberRef[], from: OutlierEventSource | undefined): Promise<MemberRef | undefined> {
  const hosts = from?.adminUrl !== undefined ? (await clusterHosts(from.adminUrl, e.cluster))?.filter((h) => h.upstream === e.upstream) : undefined;
  const isHeld = (c: MemberRef): boolean => held.some((h) => h.member === c.member && h.priority === c.priority);
  const hostOf = (c: MemberRef): EnvoyHost | undefined => hosts?.find((h) => h.priority === c.priority && h.hostname === c.hostname);
  if (e.action === 'EJECT') {
    const free = candidates.filter((c) => !isHeld(c));
    const ejectedNow = free.filter((c) => hostOf(c)?.ejected === true);
    const pool = ejectedNow.length > 0 ? ejectedNow : free.length > 0 ? free : candidates;
    return [...pool].sort((a, b) => a.priority - b.priority)[0];
  }
  const backNow = held.filter((c) => hostOf(c)?.ejected === false);
  return (backNow.length > 0 ? backNow : held)[0] ?? candidates[0];
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

/**
 * Logs each ejection and un-ejection by member, and counts them. Events are handled one at a
 * time, in order: telling members at one address apart may ask the Envoy's admin API.
 */
export function ejectionReporter(opts: { logger: Logger; registry: Registry; ir: () => IR | undefined }): (e: OutlierEvent, from?: OutlierEventSource) => void {
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
  /** Members held ejected, by cluster and address, in the order they were ejected. */
  const held = new Map<string, MemberRef[]>();
  const handle = async (e: OutlierEvent, from: OutlierEventSource | undefined): Promise<void> => {
    // An ejection Envoy only counted (enforcing_* below 100%) left the member in; Envoy marks
    // every un-ejection enforced: false (seen with 1.40).
    if (e.action === 'EJECT' && e.enforced === false) return;
    const ir = opts.ir();
    const candidates = ir === undefined ? [] : membersAt(ir, e.cluster, e.upstream);
    const key = `${e.cluster}\0${e.upstream}`;
    const heldHere = held.get(key) ?? [];
    const m = candidates.length <= 1 ? candidates[0] : await whichMember(e, candidates, heldHere, from);
    if (m !== undefined) {
      const rest = heldHere.filter((h) => h.member !== m.member || h.priority !== m.priority);
      const next = e.action === 'EJECT' ? [...rest, m] : rest;
      if (next.length > 0) held.set(key, next);
      else held.delete(key);
    }
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
  let queue = Promise.resolve();
  return (e, from) => {
    queue = queue.then(() => handle(e, from)).catch((err: unknown) => opts.logger.error({ err }, 'outlier events: an event could not be reported'));
  };
}
