import type { Logger } from 'pino';
import { WARMUP_ANSWER_HEADER, WARMUP_HEADER, parseWarmupAnswer, signWarmupHeader, type WarmupAnswer } from '../ai-extension/warmup.js';
import { ABANDONED_HEADER, type IR, type RouteIR } from '../ir/model.js';

// Not `import ... from 'node:http'` (see src/observability/health.ts): that loads Node's bundled undici.
const { request } = process.getBuiltinModule('node:http');

/**
 * serve's warm-up of AI members (issue 11): a skip or a credential hand-over on a member Envoy has
 * no connection to waits out Envoy's 5 s connect timeout (src/ai-extension/README.md, "Standing
 * in for the upstream"). So, after each configuration and then within the upstream idle timeout,
 * serve sends each AI Backend one warm-up request per priority through one of its own routes;
 * the extension answers every attempt itself (src/ai-extension/warmup.ts) and no provider is
 * called. A request is sent again until the warmed pool says its connection was ready.
 *
 * Limits of this slice: HTTP listeners only; a route whose match needs a regular expression or a
 * query parameter is not used; in a pool of several members the load balancer picks the member
 * of each attempt, so a pool counts as warm once as many distinct members answered ready as it
 * has, within a bounded number of requests (a weighted pool may leave a light member cold).
 */

export interface WarmupTarget {
  /** "namespace/name" of the Backend. */
  backend: string;
  /** The Gateway ("namespace/name") and listener port, and the route's path. */
  gateway: string;
  port: number;
  path: string;
  method: string;
  host: string;
  /** Exact header matches of the route, sent as they are. */
  headers: Record<string, string>;
  /** Envoy priority levels, with how many members each has. */
  priorities: { level: number; members: number }[];
  /** Retries of the route, and attempts per priority before previous_priorities moves on. */
  retries: number;
  attemptsPerPriority: number;
}

/** Model routing matches this header, which the listener sets from the body's model (src/envoy/model-routing.ts). */
const MODEL_HEADER = 'x-switchyard-model';

function hostFor(domains: readonly string[]): string {
  const exact = domains.find((d) => !d.includes('*'));
  if (exact !== undefined) return exact;
  const wildcard = domains.find((d) => d.startsWith('*.'));
  // Any name reaches a catch-all virtual host; `.invalid` can never be a real one (RFC 2606).
  return wildcard !== undefined ? `warmup${wildcard.slice(1)}` : 'warmup.switchyard.invalid';
}

function usable(route: RouteIR): boolean {
  const m = route.match;
  return (m.path.kind === 'Exact' || m.path.kind === 'PathPrefix') && m.queryParams.length === 0 && m.headers.every((h) => !h.regex);
}

/**
 * How far a route's retries carry a warm-up: a stand-in is retried only for ABANDONED_HEADER, and
 * each pool passed takes `attemptsPerPriority` attempts. Of a Backend's routes the one reaching
 * furthest is used (an HTTPRoute rule may cut a Backend's retries short).
 */
function reach(route: RouteIR): { retries: number; attemptsPerPriority: number } {
  const retry = route.action.kind === 'forward' ? route.action.retry : undefined;
  if (retry === undefined || !(retry.retriableHeaders ?? []).includes(ABANDONED_HEADER)) return { retries: 0, attemptsPerPriority: 1 };
  return { retries: retry.attempts, attemptsPerPriority: Math.max(1, retry.attemptsPerPriority ?? 1) };
}

/**
 * One warm-up target per AI Backend that an HTTP listener routes to alone (a single backendRef)
 * and whose attempts the extension may stand in for (a drill key, a named fallback, a credential
 * it obtains: the route retries ABANDONED_HEADER): the route whose retries reach furthest, the
 * first of those in listener, virtual host and route order. Pure: no I/O.
 */
export function warmupTargets(ir: IR): WarmupTarget[] {
  const ai = new Map(ir.clusters.filter((c) => c.ai !== undefined && c.priorities.length > 0).map((c) => [c.name, c] as const));
  const targets = new Map<string, WarmupTarget>();
  for (const listener of ir.listeners) {
    if (listener.protocol !== 'HTTP') continue;
    for (const vhost of listener.virtualHosts) {
      for (const route of vhost.routes) {
        if (route.action.kind !== 'forward' || route.action.clusters.length !== 1 || !usable(route)) continue;
        const cluster = ai.get(route.action.clusters[0]?.name ?? '');
        if (cluster === undefined) continue;
        const backend = `${cluster.backend.namespace}/${cluster.backend.name}`;
        const carries = reach(route);
        // No stand-in is ever retried there, so none is given: nothing waits for a connection.
        if (carries.retries === 0 || (targets.get(backend)?.retries ?? 0) >= carries.retries) continue;
        const headers: Record<string, string> = {};
        for (const h of route.match.headers) headers[h.name.toLowerCase()] = h.value;
        targets.set(backend, {
          backend,
          gateway: `${listener.gateway.namespace}/${listener.gateway.name}`,
          port: listener.port,
          path: route.match.path.value,
          method: route.match.method ?? 'POST',
          host: hostFor(vhost.domains),
          headers,
          priorities: cluster.priorities.map((p) => ({ level: p.level, members: p.members.length })),
          ...carries,
        });
      }
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

export interface AiWarmupOptions {
  /** The AI extension's warm-up key (RunningAiExtension.warmupKey). */
  key: string;
  logger: Logger;
  /** Where this host reaches the Gateway's listeners (asked at each request: Host infrastructure places Gateways as it goes). */
  addressOf: (gateway: string) => string;
  /** How often every Backend is warmed again; below Envoy's upstream idle timeout (1 h). Default 20 min. */
  refreshMs?: number;
  /** Pause before a request is sent again to a member Envoy was still connecting to. */
  resendPauseMs?: number;
  /** How long a Backend is tried while Envoy has no route or no listener for it yet. */
  giveUpAfterMs?: number;
}

/** What one warm-up of a Backend found, for the log. */
interface WarmupReport {
  backend: string;
  /** Members Envoy had a connection ready to, by the end. */
  ready: string[];
  requests: number;
  /** Why it stopped short of every member, if it did. */
  incomplete?: string;
}

const DEFAULT_REFRESH_MS = 20 * 60_000;
/** A pool of n members is asked at most this many times n, plus this (the load balancer picks). */
const REQUESTS_PER_MEMBER = 4;

/** Backends warmed at once; a Backend's pools are warmed in order, one request at a time. */
const WORKERS = 4;

/** Sends the warm-up requests. */
export class AiWarmup {
  private targets = new Map<string, { target: WarmupTarget; fingerprint: string }>();
  /** Backends waiting, each once; whether it is a configuration's first warm-up (logged at info) or a refresh. */
  private readonly queue = new Map<string, 'changed' | 'refresh'>();
  private workers = 0;
  private stopped = false;
  private readonly refresh: NodeJS.Timeout;

  constructor(private readonly opts: AiWarmupOptions) {
    this.refresh = setInterval(() => this.enqueue([...this.targets.keys()], 'refresh'), opts.refreshMs ?? DEFAULT_REFRESH_MS);
    this.refresh.unref();
  }

  /** A new configuration: Backends that are new or changed are warmed now. */
  update(ir: IR): void {
    const next = new Map<string, { target: WarmupTarget; fingerprint: string }>();
    const changed: string[] = [];
    for (const target of warmupTargets(ir)) {
      const fingerprint = JSON.stringify(target);
      next.set(target.backend, { target, fingerprint });
      if (this.targets.get(target.backend)?.fingerprint !== fingerprint) changed.push(target.backend);
    }
    this.targets = next;
    this.enqueue(changed, 'changed');
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.refresh);
  }

  private enqueue(backends: readonly string[], why: 'changed' | 'refresh'): void {
    for (const b of backends) if (this.queue.get(b) !== 'changed') this.queue.set(b, why);
    // drain() takes its first Backend before it yields, so this starts one worker per Backend, up to WORKERS.
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
        const log = { backend: report.backend, readyMembers: report.ready, requests: report.requests, warmup: true };
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

  private async warm(target: WarmupTarget): Promise<WarmupReport> {
    const ready = new Set<string>();
    let requests = 0;
    const started = Date.now();
    let pauseMs = 250;
    for (const pool of target.priorities) {
      if (pool.level * target.attemptsPerPriority > target.retries) {
        return { backend: target.backend, ready: [...ready], requests, incomplete: `priority ${pool.level}: the route's ${target.retries} retries end before it` };
      }
      const readyHere = new Set<string>();
      let asked = 0;
      while (readyHere.size < pool.members && asked < REQUESTS_PER_MEMBER * pool.members + REQUESTS_PER_MEMBER) {
        if (this.stopped) return { backend: target.backend, ready: [...ready], requests, incomplete: 'stopped' };
        requests++;
        const answer = await this.send(target, pool.level);
        if (answer === undefined) {
          // No answer from the extension: Envoy has not taken the configuration yet, or is down.
          if (Date.now() - started > (this.opts.giveUpAfterMs ?? 60_000)) {
            return { backend: target.backend, ready: [...ready], requests, incomplete: 'no warm-up answer came through Envoy (is the route served?)' };
          }
          await pause(pauseMs);
          pauseMs = Math.min(pauseMs * 2, 5_000);
          continue;
        }
        asked++;
        if (answer.ready) {
          ready.add(`${answer.priority}/${answer.member}`);
          if (answer.priority === pool.level) readyHere.add(answer.member);
        }
        if (!answer.ready || answer.priority !== pool.level || readyHere.size < pool.members) await pause(this.opts.resendPauseMs ?? 100);
      }
      if (readyHere.size < pool.members) {
        return { backend: target.backend, ready: [...ready], requests, incomplete: `priority ${pool.level}: ${readyHere.size} of ${pool.members} members answered ready` };
      }
    }
    return { backend: target.backend, ready: [...ready], requests };
  }

  /** One warm-up request; the extension's answer, or undefined when none came. */
  private send(target: WarmupTarget, level: number): Promise<WarmupAnswer | undefined> {
    const model = target.headers[MODEL_HEADER];
    const body = JSON.stringify({ model: model ?? 'switchyard-warmup', max_tokens: 1, messages: [{ role: 'user', content: 'switchyard warm-up' }] });
    const headers: Record<string, string> = { ...target.headers, host: target.host, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
    // The listener sets it from the body, and drops a client's own.
    delete headers[MODEL_HEADER];
    headers[WARMUP_HEADER] = signWarmupHeader(this.opts.key, target.backend, level);
    return new Promise((resolve) => {
      const req = request({ host: this.opts.addressOf(target.gateway), port: target.port, path: target.path, method: target.method, headers, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', () => {
          const value = res.headers[WARMUP_ANSWER_HEADER];
          resolve(typeof value === 'string' ? parseWarmupAnswer(value) : undefined);
        });
        res.on('error', () => resolve(undefined));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => resolve(undefined));
      req.end(body);
    });
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
