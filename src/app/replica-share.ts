import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { describeKubeError, isGone, isNotFound, type KubeClient, type RawObject, type WatchEvent } from '../providers/kubernetes/api-client.js';
import { Backoff, sleep } from '../providers/kubernetes/backoff.js';
import { parseReplicaShare, SHARE_FORMAT, type FleetExchange, type LocalShare, type ReplicaShare } from '../status/fleet-share.js';

/**
 * The fleet exchange in Kubernetes: every replica keeps one ConfigMap of its own, named after it
 * (owned by its Pod when it runs in one, so it goes with the Pod), with what its Envoys ACKed,
 * rejected and reported (src/status/fleet-share.ts) and a heartbeat; every replica watches the
 * others' (a follower too, so a new leader knows the fleet the moment it takes over). A share
 * counts while it is fresh: written within `expireMs` as this replica saw it (its own clock, as
 * the leader elector judges the Lease) and by its writer's clock. A replica that stops or dies
 * leaves its share to expire, which is the time its Envoys get to reconnect to another replica:
 * a configuration they ACKed stays Programmed meanwhile.
 */

export const SHARE_LABEL = 'switchyard.dev/replica-share';
export const SHARE_KEY = 'share.json';
const FIELD_MANAGER = 'switchyard-replica-share';
/** A ConfigMap holds at most 1 MiB; a share this large has lost its compactness (a fleet mid-rollout with thousands of distinct states). */
const MAX_SHARE_BYTES = 900 * 1024;

export interface ReplicaShareOptions {
  client: KubeClient;
  /** The controller's namespace (where its Lease is). */
  namespace: string;
  /** This replica (the Lease identity). */
  identity: string;
  /** Replicas of one controller share with each other only: its Lease name. */
  group: string;
  /** The Pod this replica runs in: the ConfigMap is deleted with it. */
  owner?: { name: string; uid: string };
  /** How often the share is written when nothing changed (the heartbeat). */
  heartbeatMs?: number;
  /** A share not rewritten for this long no longer counts. */
  expireMs?: number;
  /** Changes are written at most this often. */
  minIntervalMs?: number;
  logger: Logger;
}

export const DEFAULT_SHARE_TIMING = { heartbeatMs: 10_000, expireMs: 45_000, minIntervalMs: 1_000 };

/** A DNS subdomain name for the replica's ConfigMap; a hash keeps names apart that sanitising would merge. */
export function shareObjectName(group: string, identity: string): string {
  const clean = `${group}-replica-${identity}`.toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/^[-.]+|[-.]+$/g, '');
  const exact = clean === `${group}-replica-${identity}` && clean.length <= 253;
  if (exact) return clean;
  const hash = createHash('sha256').update(identity).digest('hex').slice(0, 8);
  return `${clean.slice(0, 240).replace(/[-.]+$/, '')}-${hash}`;
}

interface Remote {
  share: ReplicaShare;
  /** The share as written: a heartbeat that changes nothing else is not news. */
  text: string;
  /** Bumped when `text` changes. */
  revision: number;
  resourceVersion: string;
  /** performance.now() when this replica saw the share change. */
  seenAt: number;
  /** The writer's clock at its write (ms since epoch). */
  writtenAt: number;
}

export class ReplicaShareExchange implements FleetExchange {
  readonly name: string;
  private readonly opts: ReplicaShareOptions;
  private readonly timing: typeof DEFAULT_SHARE_TIMING;
  private readonly log: Logger;
  private readonly remoteShares = new Map<string, Remote>();
  /** Shares that could not be read, by object name: their text, so one is reported once, not at each heartbeat. */
  private readonly unreadable = new Map<string, string>();
  private readonly listeners: (() => void)[] = [];
  private readonly abort = new AbortController();
  private readonly backoff = new Backoff(500, 15_000);
  private local: () => LocalShare = () => ({ views: {}, load: { windowMs: 1, reporters: 0, clusters: {} } });
  private watching: Promise<void> | undefined;
  private resourceVersion = '';
  private heartbeat: NodeJS.Timeout | undefined;
  private pending: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private lastWritten = '';
  private lastWriteAt = -Infinity;
  private lastHeartbeatAt = -Infinity;
  private fresh = '';
  private stopped = false;
  private failingSince: number | undefined;
  private readonly counters = { writes: 0, skipped: 0, failures: 0 };

  constructor(opts: ReplicaShareOptions) {
    this.opts = opts;
    this.timing = {
      heartbeatMs: opts.heartbeatMs ?? DEFAULT_SHARE_TIMING.heartbeatMs,
      expireMs: opts.expireMs ?? DEFAULT_SHARE_TIMING.expireMs,
      minIntervalMs: opts.minIntervalMs ?? DEFAULT_SHARE_TIMING.minIntervalMs,
    };
    if (!(this.timing.heartbeatMs * 2 <= this.timing.expireMs)) {
      throw new Error(`replica share: expireMs (${this.timing.expireMs} ms) must be at least twice heartbeatMs (${this.timing.heartbeatMs} ms), or one late heartbeat drops a live replica's Envoys`);
    }
    this.name = shareObjectName(opts.group, opts.identity);
    this.log = opts.logger.child({ component: 'replica-share', configMap: `${opts.namespace}/${this.name}` });
  }

  attach(local: () => LocalShare): void {
    this.local = local;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  remotes(): ReplicaShare[] {
    const now = performance.now();
    const wall = Date.now();
    const out: ReplicaShare[] = [];
    for (const r of this.remoteShares.values()) if (this.isFresh(r, now, wall)) out.push(r.share);
    return out;
  }

  /** Writes, skipped writes (nothing changed, no heartbeat due) and failures, for tests and /statusz. */
  stats(): { writes: number; skipped: number; failures: number; remotes: string[] } {
    return { ...this.counters, remotes: this.remotes().map((r) => r.replica).sort() };
  }

  start(): void {
    if (this.watching) return;
    this.watching = this.watchLoop();
    const tick = Math.min(this.timing.heartbeatMs, this.timing.expireMs / 4);
    this.heartbeat = setInterval(() => {
      this.notifyIfFreshChanged();
      if (performance.now() - this.lastHeartbeatAt >= this.timing.heartbeatMs - tick / 2) this.schedule(true);
    }, tick);
    this.heartbeat.unref();
    this.schedule(true);
  }

  localChanged(): void {
    this.schedule(false);
  }

  /** Stops writing and watching; the ConfigMap is left to expire (see the class comment). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.pending);
    this.abort.abort(new Error('replica share stopped'));
    await this.writing;
    await this.watching;
  }

  private isFresh(r: Remote, now: number, wall: number): boolean {
    // Our own clock first; the writer's as well, so a long-dead share listed at start does not count for a whole expiry.
    return now - r.seenAt < this.timing.expireMs && wall - r.writtenAt < 2 * this.timing.expireMs;
  }

  private notifyIfFreshChanged(): void {
    const now = performance.now();
    const wall = Date.now();
    const key = [...this.remoteShares].filter(([, r]) => this.isFresh(r, now, wall)).map(([name, r]) => `${name}@${r.revision}`).sort().join(' ');
    if (key === this.fresh) return;
    this.fresh = key;
    for (const l of this.listeners) l();
  }

  private schedule(heartbeat: boolean): void {
    if (this.stopped) return;
    if (heartbeat) {
      clearTimeout(this.pending);
      this.pending = undefined;
      this.writing = this.writing.then(() => this.write(true));
      return;
    }
    if (this.pending) return;
    const wait = Math.max(0, this.lastWriteAt + this.timing.minIntervalMs - performance.now());
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.writing = this.writing.then(() => this.write(false));
    }, wait);
  }

  private async write(heartbeat: boolean): Promise<void> {
    if (this.stopped) return;
    const share: ReplicaShare = { format: SHARE_FORMAT, replica: this.opts.identity, ...this.local() };
    let text = JSON.stringify(share);
    if (Buffer.byteLength(text) > MAX_SHARE_BYTES) {
      this.log.error({ bytes: Buffer.byteLength(text) }, 'this replica\'s share is larger than a ConfigMap should hold; load figures are left out of it until it is smaller');
      text = JSON.stringify({ ...share, load: { ...share.load, clusters: {} } });
    }
    if (!heartbeat && text === this.lastWritten) {
      this.counters.skipped++;
      return;
    }
    const now = new Date().toISOString();
    const body: RawObject = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: this.name,
        namespace: this.opts.namespace,
        labels: { [SHARE_LABEL]: this.opts.group, 'app.kubernetes.io/managed-by': 'switchyard' },
        annotations: { 'switchyard.dev/replica': this.opts.identity },
        ...(this.opts.owner ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: this.opts.owner.name, uid: this.opts.owner.uid }] } : {}),
      },
      data: { [SHARE_KEY]: text, heartbeat: now },
    };
    const started = performance.now();
    try {
      // Server-side apply: one call creates or replaces it, whatever was there.
      await this.opts.client.request({
        method: 'PATCH',
        path: `/api/v1/namespaces/${this.opts.namespace}/configmaps/${this.name}`,
        query: { fieldManager: FIELD_MANAGER, force: true },
        body,
        contentType: 'application/apply-patch+yaml',
        signal: this.abort.signal,
        timeoutMs: 10_000,
      });
      this.counters.writes++;
      if (this.failingSince !== undefined) this.log.info('this replica\'s share is written again');
      this.failingSince = undefined;
      this.lastWritten = text;
      this.lastWriteAt = started;
      this.lastHeartbeatAt = started;
    } catch (err) {
      if (this.stopped) return;
      this.counters.failures++;
      this.lastWritten = '';
      // Once per outage at warn: a refused write is retried at every change and heartbeat.
      const level = this.failingSince === undefined ? 'warn' : 'debug';
      this.failingSince ??= Date.now();
      this.log[level]({ reason: describeKubeError(err) }, `could not write this replica's share; the leader counts its Envoys again once it is written (RBAC: configmaps create/patch in ${this.opts.namespace})`);
    }
  }

  private async watchLoop(): Promise<void> {
    const signal = this.abort.signal;
    const path = `/api/v1/namespaces/${this.opts.namespace}/configmaps`;
    const labelSelector = `${SHARE_LABEL}=${this.opts.group}`;
    while (!signal.aborted) {
      try {
        if (this.resourceVersion === '') {
          const listed = await this.opts.client.request({ path, query: { labelSelector }, signal });
          const list = isRecord(listed) ? listed : {};
          const items = Array.isArray(list['items']) ? list['items'].filter(isRecord) : [];
          const names = new Set<string>();
          for (const item of items) names.add(this.take(item));
          for (const name of [...this.remoteShares.keys()]) if (!names.has(name)) this.remoteShares.delete(name);
          for (const name of [...this.unreadable.keys()]) if (!names.has(name)) this.unreadable.delete(name);
          const meta = isRecord(list['metadata']) ? list['metadata'] : {};
          this.resourceVersion = typeof meta['resourceVersion'] === 'string' ? meta['resourceVersion'] : '';
          this.notifyIfFreshChanged();
        }
        const timeoutSeconds = 240 + Math.round(Math.random() * 120);
        await this.opts.client.watch({
          path,
          query: { labelSelector, resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
          signal,
          idleTimeoutMs: (timeoutSeconds + 30) * 1000,
          onEvent: (e) => this.apply(e),
        });
        this.backoff.reset();
      } catch (err) {
        if (signal.aborted) break;
        if (isGone(err)) {
          this.resourceVersion = '';
          continue;
        }
        const wait = this.backoff.next();
        this.log.warn({ reason: describeKubeError(err), retryInMs: wait }, `watching the replicas' shares failed; retrying (RBAC: configmaps list/watch in ${this.opts.namespace})`);
        if (isNotFound(err)) this.resourceVersion = '';
        await sleep(wait, signal);
      }
    }
  }

  private apply(e: WatchEvent): void {
    this.backoff.reset();
    const meta = isRecord(e.object['metadata']) ? e.object['metadata'] : {};
    if (typeof meta['resourceVersion'] === 'string') this.resourceVersion = meta['resourceVersion'];
    if (e.type === 'BOOKMARK') return;
    if (e.type === 'DELETED') {
      if (typeof meta['name'] === 'string') {
        this.remoteShares.delete(meta['name']);
        this.unreadable.delete(meta['name']);
      }
    } else {
      this.take(e.object);
    }
    this.notifyIfFreshChanged();
  }

  /** Holds one ConfigMap's share (not ours); returns its name. */
  private take(object: RawObject): string {
    const meta = isRecord(object['metadata']) ? object['metadata'] : {};
    const name = typeof meta['name'] === 'string' ? meta['name'] : '';
    const resourceVersion = typeof meta['resourceVersion'] === 'string' ? meta['resourceVersion'] : '';
    if (name === '' || name === this.name) return name;
    const known = this.remoteShares.get(name);
    if (known?.resourceVersion === resourceVersion) return name;
    const data = isRecord(object['data']) ? object['data'] : {};
    const text = typeof data[SHARE_KEY] === 'string' ? data[SHARE_KEY] : '';
    const heartbeat = typeof data['heartbeat'] === 'string' ? Date.parse(data['heartbeat']) : NaN;
    const writtenAt = Number.isNaN(heartbeat) ? Date.now() : heartbeat;
    if (this.unreadable.get(name) === text) return name;
    if (known && known.text === text) {
      this.remoteShares.set(name, { ...known, resourceVersion, seenAt: performance.now(), writtenAt });
      return name;
    }
    try {
      const share = parseReplicaShare(text, `ConfigMap ${this.opts.namespace}/${name}`);
      this.unreadable.delete(name);
      this.remoteShares.set(name, { share, text, revision: (known?.revision ?? 0) + 1, resourceVersion, seenAt: performance.now(), writtenAt });
    } catch (err) {
      this.remoteShares.delete(name);
      this.unreadable.set(name, text);
      this.log.warn({ reason: err instanceof Error ? err.message : String(err) }, 'ignoring a replica share that cannot be read');
    }
    return name;
  }
}

function isRecord(v: unknown): v is RawObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
