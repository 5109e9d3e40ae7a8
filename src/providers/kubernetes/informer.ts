import type { Logger } from 'pino';
import { describeKubeError, isGone, isNotFound, type KubeClient, type WatchEvent } from './api-client.js';
import { Backoff, sleep } from './backoff.js';
import { collectionPath, type WatchedKind } from './kinds.js';
import { reduceObject, type ReducedObject } from './reduce.js';

export type InformerState = 'starting' | 'synced' | 'absent';

/** Counters a test or an operator can read to see what an informer went through. */
export interface InformerStats {
  kind: string;
  namespace: string;
  state: InformerState;
  objects: number;
  resourceVersion: string;
  lists: number;
  watches: number;
  /** Relists because the API server no longer had the resourceVersion (410 Gone / Expired). */
  relistsAfterGone: number;
  /** Watches that ended in an error (network, API server) and were retried after a back-off. */
  failures: number;
  lastError?: string;
}

export interface InformerOptions {
  client: KubeClient;
  kind: WatchedKind;
  /** Undefined: all namespaces (and always for cluster-scoped kinds). */
  namespace?: string;
  logger: Logger;
  /** Called after every change to the objects held. */
  onChange(): void;
  backoff: { initialMs: number; maxMs: number };
  /** Server-side watch timeout range in seconds; each watch picks one at random so reconnects spread out. */
  watchTimeoutSeconds: { min: number; max: number };
}

/**
 * List-then-watch for one kind in one namespace (or all): holds the current objects, reduced to
 * what translation reads, and keeps them current. A watch that ends is resumed from the last
 * resourceVersion seen; a 410 (that version was compacted away) relists; any other failure is
 * retried with exponential back-off. A kind whose CRD is not installed counts as synced and empty
 * while the informer keeps checking for it.
 */
export class Informer {
  private readonly objects = new Map<string, ReducedObject>();
  private readonly backoff: Backoff;
  private readonly abort = new AbortController();
  private readonly log: Logger;
  private resourceVersion = '';
  private state: InformerState = 'starting';
  private running: Promise<void> | undefined;
  private resolveSynced: () => void = () => undefined;
  /** Set once `synced` resolved: from then on every change is reported, a late-appearing CRD's objects included. */
  private reported = false;
  private readonly counters = { lists: 0, watches: 0, relistsAfterGone: 0, failures: 0 };
  private lastError: string | undefined;
  /** Resolves once the first list succeeded, or the kind's CRD was found absent. */
  readonly synced: Promise<void>;

  constructor(private readonly opts: InformerOptions) {
    this.backoff = new Backoff(opts.backoff.initialMs, opts.backoff.maxMs);
    this.log = opts.logger.child({ kind: opts.kind.kind, ...(opts.namespace ? { namespace: opts.namespace } : {}) });
    this.synced = new Promise((resolve) => {
      this.resolveSynced = resolve;
    });
  }

  get label(): string {
    return `${this.opts.kind.kind}${this.opts.namespace ? ` in ${this.opts.namespace}` : ''}`;
  }

  start(): void {
    this.running ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort(new Error('informer stopped'));
    await this.running;
  }

  /** The objects held, reduced; in no particular order. */
  list(): ReducedObject[] {
    return [...this.objects.values()];
  }

  stats(): InformerStats {
    return {
      kind: this.opts.kind.kind,
      namespace: this.opts.namespace ?? '',
      state: this.state,
      objects: this.objects.size,
      resourceVersion: this.resourceVersion,
      ...this.counters,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  private get path(): string {
    return collectionPath(this.opts.kind, this.opts.namespace);
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        if (this.resourceVersion === '') await this.relist(signal);
        await this.watchOnce(signal);
      } catch (err) {
        if (signal.aborted) break;
        // A watch told its resourceVersion is gone relists at once; a list that fails so (an expired
        // continue token) is retried with back-off like any other failure.
        if (isGone(err) && this.resourceVersion !== '') {
          this.counters.relistsAfterGone++;
          this.log.info({ resourceVersion: this.resourceVersion, reason: describeKubeError(err) }, `watch ${this.label}: resourceVersion is too old; relisting`);
          this.resourceVersion = '';
          continue;
        }
        const reason = describeKubeError(err);
        this.lastError = reason;
        const wait = this.backoff.next();
        if (isNotFound(err) && this.opts.kind.fromCrd) {
          this.becomeAbsent(reason, wait);
        } else {
          this.counters.failures++;
          const level = this.backoff.failures > 3 || this.state === 'starting' ? 'warn' : 'info';
          const what = this.resourceVersion === '' ? 'list' : 'watch';
          this.log[level]({ reason, retryInMs: wait, resourceVersion: this.resourceVersion || undefined }, `${what} ${this.label} failed; retrying`);
        }
        await sleep(wait, signal);
      }
    }
  }

  private markSynced(): void {
    this.reported = true;
    this.resolveSynced();
  }

  private becomeAbsent(reason: string, retryInMs: number): void {
    const hint = this.opts.kind.whenAbsent ? `: ${this.opts.kind.whenAbsent}` : '';
    if (this.state !== 'absent') {
      this.log.warn({ apiVersion: this.opts.kind.apiVersion, reason, retryInMs }, `${this.opts.kind.kind} (${this.opts.kind.apiVersion}) is not served by the API server${hint}; checking again with back-off`);
    } else {
      this.log.debug({ reason, retryInMs }, `${this.opts.kind.kind} is still not served`);
    }
    this.state = 'absent';
    this.resourceVersion = '';
    if (this.objects.size > 0) {
      this.objects.clear();
      this.opts.onChange();
    }
    this.markSynced();
  }

  private async relist(signal: AbortSignal): Promise<void> {
    this.counters.lists++;
    const list = await this.opts.client.list(this.path, signal);
    const next = new Map<string, ReducedObject>();
    for (const raw of list.items) {
      const r = reduceObject(this.opts.kind, raw);
      next.set(`${r.namespace}/${r.name}`, r);
    }
    let changed = next.size !== this.objects.size;
    for (const [key, r] of next) if (this.objects.get(key)?.content !== r.content) changed = true;
    this.objects.clear();
    for (const [key, r] of next) this.objects.set(key, r);
    this.resourceVersion = list.resourceVersion;
    if (this.state === 'absent') this.log.info(`${this.opts.kind.kind} (${this.opts.kind.apiVersion}) is served now`);
    this.state = 'synced';
    this.lastError = undefined;
    this.log.debug({ objects: next.size, resourceVersion: list.resourceVersion }, `listed ${this.label}`);
    if (changed && this.reported) this.opts.onChange();
    this.markSynced();
  }

  private async watchOnce(signal: AbortSignal): Promise<void> {
    const { min, max } = this.opts.watchTimeoutSeconds;
    const timeoutSeconds = Math.round(min + Math.random() * (max - min));
    this.counters.watches++;
    let events = 0;
    await this.opts.client.watch({
      path: this.path,
      query: { resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
      signal,
      idleTimeoutMs: (timeoutSeconds + 30) * 1000,
      onEvent: (e) => {
        events++;
        this.apply(e);
      },
    });
    // A clean end at timeoutSeconds: resume at once. Errors are handled (with back-off) by run().
    this.backoff.reset();
    this.log.debug({ events, resourceVersion: this.resourceVersion }, `watch ${this.label} ended; resuming`);
  }

  private apply(e: WatchEvent): void {
    const meta = e.object['metadata'];
    const rv = typeof meta === 'object' && meta !== null && 'resourceVersion' in meta && typeof meta.resourceVersion === 'string' ? meta.resourceVersion : undefined;
    if (rv) this.resourceVersion = rv;
    // The first event proves the connection works: later failures start the back-off afresh.
    this.backoff.reset();
    if (e.type === 'BOOKMARK') return;
    const r = reduceObject(this.opts.kind, e.object);
    const key = `${r.namespace}/${r.name}`;
    if (e.type === 'DELETED') {
      if (this.objects.delete(key)) this.opts.onChange();
      return;
    }
    if (this.objects.get(key)?.content === r.content) return;
    this.objects.set(key, r);
    this.opts.onChange();
  }
}
