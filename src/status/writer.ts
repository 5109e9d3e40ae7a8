import type { Logger } from 'pino';
import { CONTROLLER_NAME } from '../api/gateway.js';
import type { ObjectStatus } from '../translate/status.js';
import { IdleWaiters, retryDelayMs } from './background.js';
import { changedConditions, changedFields, sameStatus } from './compare.js';
import { desiredStatus, toRfc3339Seconds, type StatusIntent } from './desired.js';
import { describeRef, isStatusKind, refKey, type ObjectRef } from './kinds.js';
import { isConflict, isNotFound, type StatusClient } from './kube-api.js';

export interface StatusWriterOptions {
  client: StatusClient;
  logger: Logger;
  controllerName?: string;
  /** Changes arriving within this window after the first one are written together. */
  coalesceMs?: number;
  /** At most one write per object per this interval. */
  minIntervalMs?: number;
  /** Objects synced at once. */
  concurrency?: number;
  /** Immediate re-read-and-retry rounds on a 409 before backing off. */
  conflictRetries?: number;
  /** Back-off after an error, doubled per failure up to `maxBackoffMs`. */
  backoffMs?: number;
  maxBackoffMs?: number;
  clock?: () => Date;
}

export interface StatusWriterCounters {
  /** Status PUTs the API server accepted. */
  writes: number;
  /** Syncs that found the object already saying what we would write. */
  skipped: number;
  /** 409 answers (each followed by a re-read). */
  conflicts: number;
  /** Objects gone when we came to write them. */
  notFound: number;
  /** Other failures, retried with back-off. */
  errors: number;
}

interface Entry {
  ref: ObjectRef;
  intent: StatusIntent;
  /** JSON of the intent last handed in, to notice real changes. */
  fingerprint: string;
  dirty: boolean;
  timer?: NodeJS.Timeout;
  inFlight: boolean;
  lastWriteAt: number;
  failures: number;
}

/**
 * Writes translated statuses to the API server through the status subresource, as the leader
 * only. `update` takes the full set of current statuses every time; each object whose status
 * changed is synced once after a short coalescing window: read, build the wanted status
 * (desired.ts), write it only if it differs, retry on conflict. A burst of changes to one object
 * becomes one write, and one object is never written more often than `minIntervalMs`.
 */
export class StatusWriter {
  private readonly client: StatusClient;
  private readonly log: Logger;
  private readonly controllerName: string;
  private readonly coalesceMs: number;
  private readonly minIntervalMs: number;
  private readonly concurrency: number;
  private readonly conflictRetries: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly clock: () => Date;
  private readonly entries = new Map<string, Entry>();
  /** Keys due for a sync, in order; `queued` mirrors it for membership. */
  private readonly ready: string[] = [];
  private readonly queued = new Set<string>();
  private running = 0;
  private leading = false;
  private stopped = false;
  private readonly idleWaiters = new IdleWaiters(() => this.isIdle());
  private readonly count: StatusWriterCounters = { writes: 0, skipped: 0, conflicts: 0, notFound: 0, errors: 0 };

  constructor(opts: StatusWriterOptions) {
    this.client = opts.client;
    this.log = opts.logger;
    this.controllerName = opts.controllerName ?? CONTROLLER_NAME;
    this.coalesceMs = opts.coalesceMs ?? 100;
    this.minIntervalMs = opts.minIntervalMs ?? 500;
    this.concurrency = opts.concurrency ?? 4;
    this.conflictRetries = opts.conflictRetries ?? 5;
    this.backoffMs = opts.backoffMs ?? 500;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
    this.clock = opts.clock ?? (() => new Date());
  }

  /** The current statuses, all of them (not only the changed ones). */
  update(statuses: readonly ObjectStatus[]): void {
    if (this.stopped) return;
    const seen = new Set<string>();
    for (const s of statuses) {
      if (!isStatusKind(s.kind)) continue;
      const ref: ObjectRef = { kind: s.kind, namespace: s.namespace, name: s.name };
      const key = refKey(ref);
      seen.add(key);
      this.intend(key, ref, s);
    }
    for (const [key, e] of this.entries) {
      if (seen.has(key) || 'gone' in e.intent) continue;
      if (e.ref.kind === 'HTTPRoute') {
        // The route no longer names one of our Gateways: our parent entries must go.
        this.intend(key, e.ref, { kind: 'HTTPRoute', namespace: e.ref.namespace, name: e.ref.name, gone: true });
      } else {
        this.forget(key, e);
      }
    }
  }

  /** Writes happen only while leading; becoming leader syncs every known object once. */
  setLeading(leading: boolean): void {
    if (leading === this.leading || this.stopped) return;
    this.leading = leading;
    if (leading) {
      for (const [key, e] of this.entries) {
        e.dirty = true;
        this.schedule(key, e);
      }
      return;
    }
    for (const e of this.entries.values()) {
      if (e.timer) clearTimeout(e.timer);
      delete e.timer;
      e.failures = 0;
    }
    this.ready.length = 0;
    this.queued.clear();
    this.idleWaiters.settle();
  }

  isLeading(): boolean {
    return this.leading;
  }

  counters(): StatusWriterCounters {
    return { ...this.count };
  }

  /** Resolves once nothing is scheduled, queued or in flight. */
  idle(): Promise<void> {
    return this.idleWaiters.wait();
  }

  /** Stops scheduling; writes in flight finish. */
  async stop(): Promise<void> {
    this.setLeading(false);
    this.stopped = true;
    await this.idle();
  }

  private intend(key: string, ref: ObjectRef, intent: StatusIntent): void {
    const fingerprint = JSON.stringify(intent);
    let e = this.entries.get(key);
    if (e && e.fingerprint === fingerprint) return;
    if (!e) {
      e = { ref, intent, fingerprint, dirty: false, inFlight: false, lastWriteAt: Number.NEGATIVE_INFINITY, failures: 0 };
      this.entries.set(key, e);
    }
    e.intent = intent;
    e.fingerprint = fingerprint;
    e.dirty = true;
    this.schedule(key, e);
  }

  private forget(key: string, e: Entry): void {
    if (e.timer) clearTimeout(e.timer);
    this.entries.delete(key);
    if (this.queued.delete(key)) this.ready.splice(this.ready.indexOf(key), 1);
    this.idleWaiters.settle();
  }

  private schedule(key: string, e: Entry, delayMs?: number): void {
    if (!this.leading || this.stopped || !e.dirty || e.inFlight || e.timer || this.queued.has(key)) return;
    const now = Date.now();
    const wait = delayMs ?? Math.max(this.coalesceMs, e.lastWriteAt + this.minIntervalMs - now);
    e.timer = setTimeout(() => {
      delete e.timer;
      if (!this.leading || this.entries.get(key) !== e) return this.idleWaiters.settle();
      this.ready.push(key);
      this.queued.add(key);
      this.pump();
    }, Math.max(0, wait));
  }

  private pump(): void {
    while (this.running < this.concurrency && this.ready.length > 0) {
      const key = this.ready.shift();
      if (key === undefined) break;
      this.queued.delete(key);
      const e = this.entries.get(key);
      if (!e) continue;
      this.running++;
      e.inFlight = true;
      e.dirty = false;
      void this.sync(e)
        .then(
          () => {
            e.failures = 0;
          },
          (err: unknown) => {
            this.count.errors++;
            e.failures++;
            e.dirty = true;
            this.log.warn({ object: describeRef(e.ref), err, attempt: e.failures }, 'status write failed; retrying');
          },
        )
        .finally(() => {
          this.running--;
          e.inFlight = false;
          if (this.entries.get(key) === e && !e.dirty && 'gone' in e.intent) {
            // Our parent entries are removed; nothing left to keep for this route.
            this.entries.delete(key);
          } else if (this.entries.get(key) === e && e.dirty) {
            const backoff = e.failures > 0 ? retryDelayMs(e.failures, this.backoffMs, this.maxBackoffMs) : undefined;
            this.schedule(key, e, backoff);
          }
          this.pump();
          this.idleWaiters.settle();
        });
    }
    this.idleWaiters.settle();
  }

  private async sync(e: Entry): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (!this.leading) {
        e.dirty = true;
        return;
      }
      const object = await this.client.get(e.ref);
      if (!object) {
        this.count.notFound++;
        this.log.debug({ object: describeRef(e.ref) }, 'object is gone; no status to write');
        return;
      }
      const status = desiredStatus(e.intent, object, { controllerName: this.controllerName, now: toRfc3339Seconds(this.clock().toISOString()) });
      if (sameStatus(object.status, status)) {
        this.count.skipped++;
        return;
      }
      if (!this.leading) {
        e.dirty = true;
        return;
      }
      try {
        await this.client.replaceStatus(e.ref, { ...object, status });
        this.count.writes++;
        e.lastWriteAt = Date.now();
        const fields = changedFields(object.status, status);
        const conditionTypes = fields.includes('conditions') ? changedConditions(object.status, status) : [];
        this.log.info({ object: describeRef(e.ref), fields, ...(conditionTypes.length > 0 ? { conditionTypes } : {}) }, 'status written');
        return;
      } catch (err) {
        if (isConflict(err)) {
          this.count.conflicts++;
          if (attempt < this.conflictRetries) continue;
        }
        if (isNotFound(err)) {
          this.count.notFound++;
          return;
        }
        throw err;
      }
    }
  }

  private isIdle(): boolean {
    if (this.running > 0 || this.ready.length > 0) return false;
    for (const e of this.entries.values()) if (e.timer || e.inFlight) return false;
    return true;
  }
}
