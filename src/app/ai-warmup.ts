import { lookup } from 'node:dns/promises';
import { readdirSync, readFileSync } from 'node:fs';
import type { ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  WARMUP_ANSWER_HEADER, WARMUP_CLUSTER_HEADER, WARMUP_DOMAIN, WARMUP_HEADER, WARMUP_HOST_HEADER, WARMUP_RETRIES,
  parseWarmupAnswer, signWarmupHeader, type WarmupAnswer,
} from '../ai-extension/warmup.js';
import { warmedClusters } from '../envoy/ai-warmup-routes.js';
import type { IR, ListenerIR } from '../ir/model.js';

// Not `import ... from 'node:http'` (see src/observability/health.ts): that loads Node's bundled undici.
const { request: httpRequest, Agent: HttpAgent } = process.getBuiltinModule('node:http');
const { request: httpsRequest, Agent: HttpsAgent } = process.getBuiltinModule('node:https');

/**
 * serve's warm-up of AI members (issue 11): a skip or a credential hand-over on a member Envoy has
 * no connection to waits out Envoy's 5 s connect timeout (src/ai-extension/README.md, "Standing
 * in for the upstream"). So, after each configuration and then within the upstream idle timeout,
 * serve sends warm-up requests to every AI cluster through the warm-up routes each route
 * configuration has (src/envoy/ai-warmup-routes.ts), on any listener of the Gateway, HTTP or
 * HTTPS; the extension answers every attempt itself (src/ai-extension/warmup.ts) and no provider
 * is called. A pool is asked until each of its members has said its connection was ready.
 *
 * A member is addressed by its own address (the route's override host), so a light member of a
 * weighted pool is reached as surely as a heavy one; every other request is left to the load
 * balancer, which reaches a member whose address another member of the Backend shares (Envoy
 * keeps one host per address for overrides) and one whose hostname resolves elsewhere in Envoy.
 */

export interface WarmupMember {
  /** Its name, when known (from the IR; Envoy's admin API gives the host only). */
  name?: string;
  /** As in the IR: an IP, or a hostname Envoy resolves (STRICT_DNS); from the admin API, the address Envoy resolved. */
  address: string;
  port: number;
}

export interface WarmupTarget {
  /** "namespace/name" of the Backend, and its cluster. */
  backend: string;
  cluster: string;
  /** The Gateway ("namespace/name") whose Envoy is warmed, and a listener of it. */
  gateway: string;
  /** Where the listener is reached, when known from Envoy itself; else from addressOf(gateway). */
  address?: string;
  port: number;
  protocol: ListenerIR['protocol'];
  /** HTTPS: the name sent as SNI, so the listener's filter chain is found. */
  serverName?: string;
  /** Envoy priority levels, with their members. */
  priorities: { level: number; members: WarmupMember[] }[];
  /** Envoy's worker threads, when known from Envoy itself (each is warmed on its own). */
  workers?: number;
}

/** A name for SNI from a listener's server names: a wildcard's own label stands for any. */
function sniFor(serverNames: readonly string[]): string | undefined {
  const name = serverNames[0];
  if (name === undefined) return undefined;
  return name.startsWith('*.') ? `warmup${name.slice(1)}` : name;
}

/**
 * One warm-up target per Gateway and AI Backend whose attempts the extension may stand in for
 * (a drill key, a named fallback, a credential it obtains: a route retries ABANDONED_HEADER),
 * whatever the route's match, split or listener protocol: reached through the first HTTP
 * listener of the Gateway that routes to it, else the first HTTPS one. Each Gateway is its own
 * Envoy (connections are per Envoy). Pure: no I/O.
 */
export function warmupTargets(ir: IR): WarmupTarget[] {
  const ai = new Map(ir.clusters.filter((c) => c.ai !== undefined && c.priorities.length > 0).map((c) => [c.name, c] as const));
  const targets = new Map<string, WarmupTarget>();
  // HTTP listeners first: no TLS handshake per request.
  const listeners = [...ir.listeners.filter((l) => l.protocol === 'HTTP'), ...ir.listeners.filter((l) => l.protocol === 'HTTPS')];
  for (const listener of listeners) {
    const gateway = `${listener.gateway.namespace}/${listener.gateway.name}`;
    for (const name of warmedClusters(listener, ai)) {
      const cluster = ai.get(name);
      if (cluster === undefined || targets.has(`${gateway}\0${name}`)) continue;
      const serverName = listener.protocol === 'HTTPS' ? sniFor(listener.tls[0]?.serverNames ?? []) : undefined;
      targets.set(`${gateway}\0${name}`, {
        backend: `${cluster.backend.namespace}/${cluster.backend.name}`,
        cluster: name,
        gateway,
        port: listener.port,
        protocol: listener.protocol,
        ...(serverName !== undefined ? { serverName } : {}),
        priorities: cluster.priorities.map((p) => ({ level: p.level, members: p.members.map((m) => ({ name: m.name, address: m.address, port: m.port })) })),
      });
    }
  }
  return [...targets.values()];
}

/** Where a listener bound to every address is reached from this host. */
export function loopbackFor(bound: string): string {
  if (bound === '0.0.0.0') return '127.0.0.1';
  if (bound === '::') return '::1';
  return bound;
}

type Json = Record<string, unknown>;
const asJson = (v: unknown): Json => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : {});
const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

async function adminJson(adminUrl: string, path: string): Promise<Json> {
  const res = await fetch(`${adminUrl}${path}`, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`${adminUrl}${path}: HTTP ${res.status}`);
  return asJson(await res.json());
}

/**
 * The warm-up targets of the Envoy whose admin API is at `adminUrl`, read from Envoy itself: the
 * clusters of the warm-up virtual host of each route configuration (src/envoy/ai-warmup-routes.ts),
 * a listener that uses it (HTTP first), and each cluster's hosts by priority with the addresses
 * Envoy resolved. For a sender beside an Envoy it does not configure (the AI extension in a
 * Gateway's pod, where the controller runs no sender). Reads the admin API only.
 */
export async function targetsFromEnvoyAdmin(adminUrl: string): Promise<WarmupTarget[]> {
  const [listeners, routes, clusters, workers] = await Promise.all([
    adminJson(adminUrl, '/config_dump?resource=dynamic_listeners'),
    adminJson(adminUrl, '/config_dump?resource=dynamic_route_configs'),
    adminJson(adminUrl, '/clusters?format=json'),
    envoyConcurrency(adminUrl),
  ]);
  const warmedBy = new Map<string, string[]>();
  for (const c of asList(routes['configs'])) {
    const config = asJson(asJson(c)['route_config']);
    const vhost = asList(config['virtual_hosts']).map(asJson).find((v) => asList(v['domains']).includes(WARMUP_DOMAIN));
    if (vhost === undefined) continue;
    warmedBy.set(String(config['name']), asList(vhost['routes']).map((r) => String(asJson(asJson(r)['route'])['cluster'] ?? '')).filter((n) => n !== ''));
  }
  const hostsOfCluster = new Map<string, { level: number; members: WarmupMember[] }[]>();
  for (const c of asList(clusters['cluster_statuses']).map(asJson)) {
    const levels = new Map<number, WarmupMember[]>();
    for (const h of asList(c['host_statuses']).map(asJson)) {
      const sock = asJson(asJson(h['address'])['socket_address']);
      const level = typeof h['priority'] === 'number' ? h['priority'] : 0;
      levels.set(level, [...(levels.get(level) ?? []), { address: String(sock['address'] ?? ''), port: Number(sock['port_value'] ?? 0) }]);
    }
    hostsOfCluster.set(String(c['name']), [...levels].sort(([a], [b]) => a - b).map(([level, members]) => ({ level, members })));
  }
  const found: { tls: boolean; target: Omit<WarmupTarget, 'cluster' | 'backend' | 'priorities'>; routeConfig: string }[] = [];
  for (const l of asList(listeners['configs']).map((x) => asJson(asJson(asJson(x)['active_state'])['listener']))) {
    const sock = asJson(asJson(l['address'])['socket_address']);
    const chain = asList(l['filter_chains']).map(asJson)[0] ?? {};
    const hcm = asJson(asList(chain['filters']).map(asJson)[0]?.['typed_config']);
    const routeConfig = String(asJson(hcm['rds'])['route_config_name'] ?? '');
    const tls = chain['transport_socket'] !== undefined;
    const serverName = tls ? sniFor(asList(asJson(chain['filter_chain_match'])['server_names']).map(String)) : undefined;
    found.push({
      tls,
      routeConfig,
      target: { gateway: String(l['name'] ?? ''), address: loopbackFor(String(sock['address'] ?? '0.0.0.0')), port: Number(sock['port_value'] ?? 0), protocol: tls ? 'HTTPS' : 'HTTP', ...(serverName !== undefined ? { serverName } : {}) },
    });
  }
  const targets = new Map<string, WarmupTarget>();
  for (const { target, routeConfig } of [...found.filter((f) => !f.tls), ...found.filter((f) => f.tls)]) {
    for (const cluster of warmedBy.get(routeConfig) ?? []) {
      const priorities = hostsOfCluster.get(cluster);
      if (targets.has(cluster) || priorities === undefined || priorities.length === 0) continue;
      // One Envoy: the first listener that reaches a cluster warms its connections for all.
      targets.set(cluster, { ...target, gateway: 'this Envoy', backend: cluster.replace(/^backend\//, ''), cluster, priorities, ...(workers !== undefined ? { workers } : {}) });
    }
  }
  return [...targets.values()];
}

/**
 * The Envoys a sender beside them warms: one admin URL, or every Envoy the Host infrastructure
 * runs under a state directory's `envoy/` (each Gateway's `<namespace>_<name>/admin-address`,
 * rewritten when its Envoy restarts on another admin port), by the Gateway each serves.
 */
export type BesideEnvoys = { adminUrl: string } | { adminDir: string };

/** The admin URL of each Envoy, by a name for the log: read again at every poll. */
export function besideAdminUrls(where: BesideEnvoys): Map<string, string> {
  if ('adminUrl' in where) return new Map([['this Envoy', where.adminUrl]]);
  const out = new Map<string, string>();
  for (const entry of readdirSync(where.adminDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    let address: string;
    try {
      address = readFileSync(join(where.adminDir, entry.name, 'admin-address'), 'utf8').trim();
    } catch {
      // Its Envoy is starting: not written yet.
      continue;
    }
    if (address !== '') out.set(entry.name.replace('_', '/'), `http://${address}`);
  }
  return out;
}

/**
 * The warm-up sender beside Envoys it does not configure (the AI extension in a Gateway's pod,
 * or beside the Envoys `controller --infrastructure host` runs): their targets are read from
 * their admin APIs every `pollMs` (a configuration change is warmed within it; unchanged targets
 * only at the refresh).
 */
export function warmupBesideEnvoy(opts: Omit<AiWarmupOptions, 'addressOf'> & BesideEnvoys & { pollMs?: number }): { stop(): void } {
  const warmup = new AiWarmup(opts);
  let stopped = false;
  const failing = new Set<string>();
  const poll = async (): Promise<void> => {
    let envoys: Map<string, string>;
    try {
      envoys = besideAdminUrls(opts);
    } catch (err) {
      if (!failing.has('')) opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'ai-warmup: cannot list the Envoys to warm; no warm-up until it can');
      failing.add('');
      return;
    }
    failing.delete('');
    const all: WarmupTarget[] = [];
    await Promise.all([...envoys].map(async ([name, adminUrl]) => {
      try {
        const targets = await targetsFromEnvoyAdmin(adminUrl);
        all.push(...targets.map((t) => ({ ...t, gateway: name })));
        failing.delete(adminUrl);
      } catch (err) {
        // Envoy starting, or restarting: said once, then quiet until it answers again.
        if (!failing.has(adminUrl)) opts.logger.warn({ envoy: name, adminUrl, err: err instanceof Error ? err.message : String(err) }, 'ai-warmup: Envoy\'s admin API did not answer; no warm-up until it does');
        failing.add(adminUrl);
      }
    }));
    if (!stopped) warmup.updateTargets(all);
  };
  void poll();
  const timer = setInterval(() => void poll(), opts.pollMs ?? 15_000);
  timer.unref();
  return {
    stop(): void {
      stopped = true;
      clearInterval(timer);
      warmup.stop();
    },
  };
}

/** The value of WARMUP_HOST_HEADER for an endpoint: Envoy's own spelling of the address, in base64. */
export function overrideHost(address: string, port: number): string {
  return Buffer.from(isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`).toString('base64');
}

export interface AiWarmupOptions {
  /** The AI extension's warm-up key (RunningAiExtension.warmupKey). */
  key: string;
  logger: Logger;
  /** Where this host reaches the Gateway's listeners (asked at each request: Host infrastructure places Gateways as it goes), for targets that do not say. */
  addressOf?: (gateway: string) => string;
  /** How often every Backend is warmed again; below Envoy's upstream idle timeout (1 h). Default 20 min. */
  refreshMs?: number;
  /** Pause before a request is sent again to a member Envoy was still connecting to. */
  resendPauseMs?: number;
  /** How long a Backend is tried while Envoy has no route or no listener for it yet. */
  giveUpAfterMs?: number;
  /** The admin API of the Gateway's Envoy, when known: its worker count says how many to warm. */
  envoyAdminOf?: (gateway: string) => string | undefined;
}

/** What one warm-up of a Backend found, for the log. */
interface WarmupReport {
  backend: string;
  gateway: string;
  /** Members Envoy had a connection ready to, by the end ("priority/member"). */
  ready: string[];
  requests: number;
  /** Envoy worker threads warmed, and how many Envoy has when known. */
  workers: number;
  envoyWorkers?: number;
  /** Why it stopped short of every member, if it did. */
  incomplete?: string;
}

const DEFAULT_REFRESH_MS = 20 * 60_000;
/** A pool of n members is asked at most this many times n, plus this. */
const REQUESTS_PER_MEMBER = 4;

/** Backends warmed at once; a Backend's pools are warmed in order, one request at a time. */
const WORKERS = 4;

/**
 * Connections opened per Envoy worker (plus this many) before giving up on reaching all of them.
 * The kernel's hash sends each to a worker by chance: at 4 per worker a test run's warm-up ended
 * with 1 of 2 workers warm (20 requests: one walk, then 11 connections that each met the warm
 * worker, a 1 in 2,048 chance), and the first skip on the other waited 5 s.
 * At 16, missing one of 2 workers is 1 in 10^14, one of 64 about 1 in 200,000; a connection that
 * meets a warm worker costs one request, and only while a worker is still missing.
 */
const LANES_PER_WORKER = 16;
/** When Envoy's worker count is unknown: stop after this many connections in a row met only warm workers (a second of 2 workers missed about 1 time in a million), or this many in all. */
const MISSES_UNKNOWN_WORKERS = 20;
const LANES_UNKNOWN_WORKERS = 64;

function targetKey(t: WarmupTarget): string {
  return `${t.gateway}\0${t.cluster}`;
}

/** Sends the warm-up requests. */
export class AiWarmup {
  private targets = new Map<string, { target: WarmupTarget; fingerprint: string }>();
  /** Targets waiting, each once; whether it is a configuration's first warm-up (logged at info) or a refresh. */
  private readonly queue = new Map<string, 'changed' | 'refresh'>();
  private workers = 0;
  private stopped = false;
  /** Per listener (protocol, address, port, SNI): the connections kept, by the Envoy worker each reaches. */
  private readonly pools = new Map<string, LanePool>();
  private readonly refresh: NodeJS.Timeout;

  constructor(private readonly opts: AiWarmupOptions) {
    this.refresh = setInterval(() => this.enqueue([...this.targets.keys()], 'refresh'), opts.refreshMs ?? DEFAULT_REFRESH_MS);
    this.refresh.unref();
  }

  /** A new configuration: Backends that are new or changed are warmed now. */
  update(ir: IR): void {
    this.updateTargets(warmupTargets(ir));
  }

  /** The targets of a new configuration (warmupTargets, or targetsFromEnvoyAdmin): new or changed ones are warmed now. */
  updateTargets(targets: readonly WarmupTarget[]): void {
    const next = new Map<string, { target: WarmupTarget; fingerprint: string }>();
    const changed: string[] = [];
    for (const target of targets) {
      const fingerprint = JSON.stringify(target);
      const key = targetKey(target);
      next.set(key, { target, fingerprint });
      if (this.targets.get(key)?.fingerprint !== fingerprint) changed.push(key);
    }
    this.targets = next;
    this.enqueue(changed, 'changed');
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.refresh);
    for (const pool of this.pools.values()) for (const lane of pool.lanes.values()) lane.destroy();
    this.pools.clear();
  }

  private enqueue(keys: readonly string[], why: 'changed' | 'refresh'): void {
    for (const k of keys) if (this.queue.get(k) !== 'changed') this.queue.set(k, why);
    // drain() takes its first target before it yields, so this starts one worker per target, up to WORKERS.
    while (this.workers < WORKERS && this.queue.size > 0) void this.drain();
  }

  private take(): [string, 'changed' | 'refresh'] | undefined {
    const first = this.queue.entries().next();
    if (first.done === true) return undefined;
    this.queue.delete(first.value[0]);
    return first.value;
  }

  private async drain(): Promise<void> {
    this.workers++;
    try {
      for (let next = this.take(); next !== undefined && !this.stopped; next = this.take()) {
        const entry = this.targets.get(next[0]);
        if (entry === undefined) continue;
        const report = await this.warm(entry.target);
        if (this.stopped) return;
        const log = { backend: report.backend, gateway: report.gateway, readyMembers: report.ready, requests: report.requests, envoyWorkers: report.envoyWorkers, workersWarmed: report.workers, warmup: true };
        if (report.incomplete !== undefined) {
          this.opts.logger.warn({ ...log, reason: report.incomplete }, 'ai-warmup: Backend not fully warmed; a skip to a cold member waits for Envoy to connect (up to 5 s)');
        } else {
          // Every 20 minutes for every Backend would be most of the log at scale.
          const level = next[1] === 'changed' ? 'info' : 'debug';
          this.opts.logger[level](log, 'ai-warmup: Envoy has a connection ready to every member of the Backend');
        }
      }
    } finally {
      this.workers--;
    }
  }

  /**
   * Warms every Envoy worker thread: each has connection pools of its own, so each is walked
   * through a downstream connection of its own. Envoy spreads connections over its workers (the
   * kernel's SO_REUSEPORT hash), not evenly: connections are opened one after another until the
   * extension's answers have named as many workers as Envoy has (or, when that number is not
   * known, until several connections in a row meet only workers already warm).
   */
  private async warm(target: WarmupTarget): Promise<WarmupReport> {
    const started = Date.now();
    const pool = this.lanePool(target);
    let envoyWorkers = target.workers ?? pool.discovered ?? (await this.workersOf(target));
    const warmedWorkers = new Set<string>();
    const ready = new Set<string>();
    let requests = 0;
    let lanes = 0;
    let misses = 0;
    const report = (incomplete?: string): WarmupReport => ({
      backend: target.backend,
      gateway: target.gateway,
      ready: [...ready],
      requests,
      workers: warmedWorkers.size,
      ...(envoyWorkers !== undefined ? { envoyWorkers } : {}),
      ...(incomplete !== undefined ? { incomplete } : {}),
    });
    // The connections earlier warm-ups of this listener found a worker on, then new ones.
    const known = [...pool.lanes];
    const maxLanes = (): number => known.length + (envoyWorkers !== undefined ? LANES_PER_WORKER * envoyWorkers + LANES_PER_WORKER : LANES_UNKNOWN_WORKERS);
    while (lanes < maxLanes() && !this.stopped) {
      if (envoyWorkers !== undefined ? warmedWorkers.size >= envoyWorkers : misses >= MISSES_UNKNOWN_WORKERS) break;
      const reused = known[lanes];
      lanes++;
      const lane = reused?.[1] ?? laneAgent(target);
      let kept = false;
      try {
        const walked = await this.walk(target, lane, warmedWorkers, started);
        requests += walked.requests;
        for (const r of walked.ready) ready.add(r);
        if (walked.incomplete !== undefined) return report(walked.incomplete);
        // An extension that names no worker (an older one): nothing tells the workers apart.
        if (walked.worker === undefined) {
          warmedWorkers.add('');
          break;
        }
        if (walked.fresh) {
          warmedWorkers.add(walked.worker);
          misses = 0;
        } else if (reused === undefined) {
          misses++;
        }
        kept = this.keepLane(pool, reused?.[0], walked.worker, lane);
        // A configuration is warmed as it is served, often before the Envoys serve runs have
        // started: their admin API answers once one has answered a warm-up request.
        envoyWorkers ??= await this.workersOf(target);
      } finally {
        if (!kept) lane.destroy();
      }
    }
    if (this.stopped) return report('stopped');
    // The count found by trying: the next Backends of this listener take it as known.
    if (envoyWorkers === undefined && !warmedWorkers.has('')) pool.discovered = warmedWorkers.size;
    if (envoyWorkers !== undefined && warmedWorkers.size < envoyWorkers) {
      return report(`${warmedWorkers.size} of Envoy's ${envoyWorkers} worker threads warmed after ${lanes} connections (Envoy spreads connections over its workers by a hash)`);
    }
    return report();
  }

  /**
   * The connections kept to one listener, one per Envoy worker found: every Backend behind it is
   * walked over them, so a warm-up of many Backends opens a connection per worker, not per
   * Backend (and leaves no socket per Backend in TIME_WAIT).
   */
  private lanePool(target: WarmupTarget): LanePool {
    const key = `${target.protocol}\0${target.address ?? this.opts.addressOf?.(target.gateway) ?? '127.0.0.1'}\0${target.port}\0${target.serverName ?? ''}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = { lanes: new Map(), discovered: undefined };
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** Keeps `lane` as the connection to `worker` (replacing what it was filed under); false when it is not kept. */
  private keepLane(pool: LanePool, filedAs: string | undefined, worker: string, lane: LaneAgent): boolean {
    if (filedAs !== undefined && filedAs !== worker) pool.lanes.delete(filedAs);
    const held = pool.lanes.get(worker);
    if (held !== undefined && held !== lane) return false;
    if (this.stopped) return false;
    pool.lanes.set(worker, lane);
    return true;
  }

  /** Envoy's worker threads, from its admin API (`/server_info`) when this sender knows where it is. */
  private async workersOf(target: WarmupTarget): Promise<number | undefined> {
    const admin = this.opts.envoyAdminOf?.(target.gateway);
    return admin === undefined ? undefined : envoyConcurrency(admin).catch(() => undefined);
  }

  /**
   * One walk of the Backend's pools over one downstream connection (one Envoy worker), until
   * every member answered ready there. It stops at the first answer when that worker was warmed
   * already (`fresh` false), and when an answer comes from another worker than the first (Envoy
   * closed the connection and a new one landed elsewhere).
   */
  private async walk(target: WarmupTarget, lane: LaneAgent, warmedWorkers: ReadonlySet<string>, started: number): Promise<LaneWalk> {
    const ready = new Set<string>();
    let requests = 0;
    let worker: string | undefined;
    let first = true;
    let pauseMs = 250;
    const result = (fresh: boolean, incomplete?: string): LaneWalk => ({ ready: [...ready], requests, fresh, ...(worker !== undefined ? { worker } : {}), ...(incomplete !== undefined ? { incomplete } : {}) });
    for (const pool of target.priorities) {
      if (pool.level > WARMUP_RETRIES) return result(true, `priority ${pool.level}: the warm-up route's ${WARMUP_RETRIES} retries end before it`);
      const hosts = await hostsOf(pool.members);
      const readyHere = new Set<string>();
      /** Override hosts whose member answered ready when addressed. */
      const readyHosts = new Set<string>();
      const done = (m: WarmupMember, i: number): boolean => (m.name !== undefined && readyHere.has(m.name)) || (hosts[i] ?? []).some((h) => readyHosts.has(h));
      let asked = 0;
      let turn = 0;
      const size = pool.members.length;
      const cold = (): string[] => pool.members.flatMap((m, i) => (done(m, i) ? [] : (hosts[i] ?? [])));
      const warmed = (): number => pool.members.filter((m, i) => done(m, i)).length;
      while (warmed() < size && asked < REQUESTS_PER_MEMBER * size + REQUESTS_PER_MEMBER) {
        if (this.stopped) return result(false, 'stopped');
        // Cold members by their address, and every other request the load balancer's pick.
        const addressed = cold();
        const host = addressed.length > 0 && turn % 2 === 0 ? addressed[Math.floor(turn / 2) % addressed.length] : undefined;
        turn++;
        requests++;
        const answer = await this.send(target, pool.level, host, lane);
        if (answer === undefined) {
          // No answer from the extension: Envoy has not taken the configuration yet, or is down.
          if (Date.now() - started > (this.opts.giveUpAfterMs ?? 60_000)) return result(false, 'no warm-up answer came through Envoy (is the route served?)');
          await pause(pauseMs);
          pauseMs = Math.min(pauseMs * 2, 5_000);
          continue;
        }
        if (first) {
          first = false;
          worker = answer.worker;
          if (worker !== undefined && warmedWorkers.has(worker)) return result(false);
        } else if (answer.worker !== worker) {
          // Another worker answered: this walk says nothing whole about either.
          return result(false);
        }
        asked++;
        if (answer.ready) {
          ready.add(`${answer.priority}/${answer.member}`);
          if (answer.priority === pool.level) {
            readyHere.add(answer.member);
            if (host !== undefined) readyHosts.add(host);
          }
        }
        if (!answer.ready || answer.priority !== pool.level) await pause(this.opts.resendPauseMs ?? 100);
      }
      if (warmed() < size) return result(false, `priority ${pool.level}: ${warmed()} of ${size} members answered ready`);
    }
    return result(true);
  }

  /** One warm-up request over `lane`, to the member at `host` (an override host value) or to the pick of Envoy; the extension's answer, or undefined when none came. */
  private send(target: WarmupTarget, level: number, host: string | undefined, lane: LaneAgent): Promise<WarmupAnswer | undefined> {
    const body = JSON.stringify({ model: 'switchyard-warmup', max_tokens: 1, messages: [{ role: 'user', content: 'switchyard warm-up' }] });
    const headers: Record<string, string> = {
      host: WARMUP_DOMAIN,
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      [WARMUP_CLUSTER_HEADER]: target.cluster,
      [WARMUP_HEADER]: signWarmupHeader(this.opts.key, target.backend, level),
      ...(host !== undefined ? { [WARMUP_HOST_HEADER]: host } : {}),
    };
    const options: RequestOptions = { host: target.address ?? this.opts.addressOf?.(target.gateway) ?? '127.0.0.1', port: target.port, path: '/v1/chat/completions', method: 'POST', headers, timeout: 10_000 };
    return new Promise((resolve) => {
      const answered = (res: IncomingMessage): void => {
        res.resume();
        res.on('end', () => {
          const value = res.headers[WARMUP_ANSWER_HEADER];
          resolve(typeof value === 'string' ? parseWarmupAnswer(value) : undefined);
        });
        res.on('error', () => resolve(undefined));
      };
      // This host's own Envoy on loopback, whose certificate names the Gateway's hostnames, not
      // the address dialled; the request carries nothing but a single-use signed order.
      const req: ClientRequest = lane instanceof HttpsAgent
        ? httpsRequest({ ...options, agent: lane, rejectUnauthorized: false, ...(target.serverName !== undefined ? { servername: target.serverName } : {}) }, answered)
        : httpRequest({ ...options, agent: lane }, answered);
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => resolve(undefined));
      req.end(body);
    });
  }
}

type LaneAgent = InstanceType<typeof HttpAgent> | InstanceType<typeof HttpsAgent>;

interface LanePool {
  lanes: Map<string, LaneAgent>;
  /** Workers found by trying, when Envoy's count was not known. */
  discovered: number | undefined;
}

/** What one walk over one downstream connection found. */
interface LaneWalk {
  ready: string[];
  requests: number;
  /** The worker the extension named (absent: it names none). */
  worker?: string;
  /** That worker was not warm before and now has a connection ready to every member. */
  fresh: boolean;
  incomplete?: string;
}

/** One downstream connection, kept for a walk: an agent of a single keep-alive socket. */
function laneAgent(target: WarmupTarget): LaneAgent {
  const options = { keepAlive: true, maxSockets: 1 };
  return target.protocol === 'HTTPS' ? new HttpsAgent(options) : new HttpAgent(options);
}

/** Envoy's worker threads (`--concurrency`), from its admin API. */
export async function envoyConcurrency(adminUrl: string): Promise<number | undefined> {
  const info = await adminJson(adminUrl, '/server_info');
  const concurrency = asJson(info['command_line_options'])['concurrency'];
  return typeof concurrency === 'number' && Number.isInteger(concurrency) && concurrency > 0 ? concurrency : undefined;
}

/**
 * Each member's override host values: its IP, or the addresses its hostname resolves to here (as
 * Envoy resolves it, V4_PREFERRED); none when it does not resolve.
 */
async function hostsOf(members: readonly WarmupMember[]): Promise<string[][]> {
  const out: string[][] = [];
  for (const m of members) {
    if (isIP(m.address) !== 0) {
      out.push([overrideHost(m.address, m.port)]);
      continue;
    }
    try {
      const found = await lookup(m.address, { all: true });
      const v4 = found.filter((a) => a.family === 4);
      out.push((v4.length > 0 ? v4 : found).map((a) => overrideHost(a.address, m.port)));
    } catch {
      out.push([]);
    }
  }
  return out;
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
