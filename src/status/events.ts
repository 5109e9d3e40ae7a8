import { createHash } from 'node:crypto';
import type { CoreV1Event } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { CONTROLLER_NAME } from '../api/gateway.js';
import type { WarningEvent } from '../translate/status.js';
import { IdleWaiters, retryDelayMs } from './background.js';
import { apiVersionOf, describeRef, isStatusKind, STATUS_KINDS, type ObjectRef } from './kinds.js';
import { isConflict, type EventClient, type StatusClient } from './kube-api.js';

export interface EventRecorderOptions {
  events: EventClient;
  /** To name the object by uid and resourceVersion. */
  objects: StatusClient;
  logger: Logger;
  /** reportingComponent (the controller name). */
  controllerName?: string;
  /** source.component. */
  component?: string;
  /** reportingInstance and source.host: this replica. */
  instance: string;
  /** A warning that goes away and comes back bumps its Event at most this often. */
  repeatIntervalMs?: number;
  clock?: () => Date;
}

export interface EventRecorderCounters {
  /** Events created. */
  created: number;
  /** Existing Events whose count and lastTimestamp were bumped. */
  bumped: number;
  /** Appearances folded into a later bump (or dropped while not leading). */
  suppressed: number;
  errors: number;
}

// What `kubectl describe` shows comfortably; translation messages are far shorter.
const MAX_MESSAGE = 1024;
// An Event outlives its problem for the API server's event TTL (1 h by default); remembering it as long lets a recurrence bump it.
const MEMORY_MS = 60 * 60 * 1000;
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30_000;
// How much later than another replica's report of the same appearance we may notice it ourselves.
const SAME_APPEARANCE_MS = 5_000;

interface Tracked {
  warning: WarningEvent;
  ref: ObjectRef;
  present: boolean;
  /** Appearances not yet on the Event. */
  pending: number;
  /** Whether this replica has reported it (created, bumped or found it). */
  reported: boolean;
  /** When this replica saw it appear; undefined when it was there from this replica's first translation on. */
  appearedAt?: number;
  lastReportAt: number;
  timer?: NodeJS.Timeout;
  /** A report is queued or running. */
  queued: boolean;
  /** Failed reports in a row, for the retry back-off. */
  failures: number;
}

function warningKey(w: WarningEvent): string {
  return JSON.stringify([w.object.kind, w.object.namespace, w.object.name, w.reason, w.message]);
}

function timeOf(v: Date | string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const ms = new Date(v).getTime();
  return Number.isNaN(ms) ? undefined : ms;
}

/** A stable name per (object uid, reason, message): the same problem always lands on the same Event. */
export function eventName(w: WarningEvent, uid: string): string {
  const hash = createHash('sha256').update(JSON.stringify([w.object.kind, uid, w.reason, w.message])).digest('hex').slice(0, 16);
  return `${w.object.name.slice(0, 200)}.${hash}`;
}

/**
 * Turns translation's warnings (missing Secrets, unusable references) into core/v1 Warning Events
 * on the objects concerned, as the leader only. `record` takes the full set of current warnings
 * every time. A warning that persists is reported once; one that goes away and comes back bumps
 * the same Event's count and lastTimestamp, at most once per `repeatIntervalMs`. Only reason and
 * message are copied: translation never puts a credential in either.
 */
export class EventRecorder {
  private readonly opts: Required<Omit<EventRecorderOptions, 'clock'>> & { clock: () => Date };
  private readonly tracked = new Map<string, Tracked>();
  private leading = false;
  /** A first set of warnings was recorded: what appears later is new, not inherited from an earlier run. */
  private primed = false;
  private queue: Promise<void> = Promise.resolve();
  private pendingWork = 0;
  private readonly idleWaiters = new IdleWaiters(() => this.isIdle());
  private readonly count: EventRecorderCounters = { created: 0, bumped: 0, suppressed: 0, errors: 0 };

  constructor(opts: EventRecorderOptions) {
    this.opts = {
      controllerName: CONTROLLER_NAME,
      component: 'switchyard-controller',
      repeatIntervalMs: 60_000,
      clock: () => new Date(),
      ...opts,
    };
  }

  record(warnings: readonly WarningEvent[]): void {
    const now = this.opts.clock().getTime();
    const current = new Map<string, WarningEvent>();
    for (const w of warnings) if (isStatusKind(w.object.kind)) current.set(warningKey(w), w);
    for (const [key, t] of this.tracked) {
      if (current.has(key)) continue;
      t.present = false;
      // A follower forgets what came and went; the leader reports every appearance, at its pace.
      if ((!this.leading && !t.reported) || (t.pending === 0 && now - t.lastReportAt > MEMORY_MS)) this.drop(key, t);
    }
    for (const [key, w] of current) {
      const t = this.tracked.get(key);
      if (t?.present) continue;
      if (!t) {
        const kind = w.object.kind;
        if (!isStatusKind(kind)) continue;
        const ref: ObjectRef = { kind, namespace: STATUS_KINDS[kind].namespaced ? w.object.namespace : '', name: w.object.name };
        this.tracked.set(key, { warning: w, ref, present: true, pending: 1, reported: false, lastReportAt: Number.NEGATIVE_INFINITY, queued: false, failures: 0, ...(this.primed ? { appearedAt: now } : {}) });
      } else {
        t.present = true;
        t.appearedAt = now;
        t.pending++;
        if (t.reported && now - t.lastReportAt < this.opts.repeatIntervalMs) this.count.suppressed++;
      }
      this.plan(key);
    }
    this.primed = true;
  }

  /** Events are written only while leading; a new leader reports what is present and not yet reported by it. */
  setLeading(leading: boolean): void {
    if (leading === this.leading) return;
    this.leading = leading;
    for (const [key, t] of this.tracked) {
      if (t.timer) clearTimeout(t.timer);
      delete t.timer;
      if (leading && t.present) this.plan(key);
    }
  }

  counters(): EventRecorderCounters {
    return { ...this.count };
  }

  idle(): Promise<void> {
    return this.idleWaiters.wait();
  }

  async stop(): Promise<void> {
    this.setLeading(false);
    await this.idle();
  }

  private drop(key: string, t: Tracked): void {
    if (t.timer) clearTimeout(t.timer);
    this.tracked.delete(key);
  }

  /** Reports now, or when the repeat interval since the last report has passed. */
  private plan(key: string): void {
    const t = this.tracked.get(key);
    if (!t || !this.leading || t.timer || t.queued) return;
    if (t.reported && t.pending === 0) return;
    const wait = t.lastReportAt + this.opts.repeatIntervalMs - this.opts.clock().getTime();
    if (!t.reported || wait <= 0) this.enqueue(key, t);
    else this.later(key, t, wait);
  }

  private later(key: string, t: Tracked, ms: number): void {
    t.timer = setTimeout(() => {
      delete t.timer;
      if (this.tracked.get(key) === t && this.leading && t.pending > 0) this.enqueue(key, t);
      this.idleWaiters.settle();
    }, ms);
  }

  private enqueue(key: string, t: Tracked): void {
    this.pendingWork++;
    t.queued = true;
    this.queue = this.queue
      .then(() => (this.tracked.get(key) === t && this.leading ? this.report(t) : undefined))
      .then(
        () => {
          t.failures = 0;
        },
        (err: unknown) => {
          this.count.errors++;
          t.failures++;
          this.opts.logger.warn({ object: describeRef(t.ref), reason: t.warning.reason, err, attempt: t.failures }, 'could not record Warning Event; retrying');
          if (this.tracked.get(key) === t && this.leading && !t.timer) this.later(key, t, retryDelayMs(t.failures, RETRY_BASE_MS, RETRY_MAX_MS));
        },
      )
      .finally(() => {
        t.queued = false;
        this.pendingWork--;
        if (t.pending > 0) this.plan(key);
        this.idleWaiters.settle();
      });
  }

  private async report(t: Tracked): Promise<void> {
    const object = await this.opts.objects.get(t.ref);
    if (!object) {
      t.pending = 0;
      return;
    }
    const r = STATUS_KINDS[t.ref.kind];
    const now = this.opts.clock();
    const namespace = r.namespaced ? t.ref.namespace : 'default';
    const name = eventName(t.warning, object.metadata.uid ?? '');
    const appearances = t.pending;
    const message = t.warning.message.length > MAX_MESSAGE ? `${t.warning.message.slice(0, MAX_MESSAGE - 3)}...` : t.warning.message;
    const event: CoreV1Event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name, namespace },
      involvedObject: {
        apiVersion: apiVersionOf(r),
        kind: t.ref.kind,
        name: t.ref.name,
        ...(r.namespaced ? { namespace: t.ref.namespace } : {}),
        ...(object.metadata.uid ? { uid: object.metadata.uid } : {}),
        ...(object.metadata.resourceVersion ? { resourceVersion: object.metadata.resourceVersion } : {}),
      },
      type: 'Warning',
      reason: t.warning.reason,
      message,
      count: Math.max(1, appearances),
      firstTimestamp: now,
      lastTimestamp: now,
      source: { component: this.opts.component, host: this.opts.instance },
      reportingComponent: this.opts.controllerName,
      reportingInstance: this.opts.instance,
    };
    try {
      await this.opts.events.create(event);
      this.count.created++;
      this.opts.logger.info({ object: describeRef(t.ref), reason: t.warning.reason, event: name }, 'Warning Event recorded');
    } catch (err) {
      if (!isConflict(err)) throw err;
      // The Event exists: reported by an earlier run or leader, or this problem came back. Came
      // back also when it appeared under our eyes after the Event was last reported (by a leader
      // before us): not when we inherited it at start, nor when the leader before us reported it.
      const existing = await this.opts.events.get(namespace, name);
      if (!existing) throw err;
      const lastReported = timeOf(existing.lastTimestamp ?? existing.firstTimestamp);
      const comeBack = t.reported || (t.appearedAt !== undefined && lastReported !== undefined && lastReported < t.appearedAt - SAME_APPEARANCE_MS);
      if (comeBack) {
        await this.opts.events.replace({ ...existing, count: (existing.count ?? 1) + appearances, lastTimestamp: now });
        this.count.bumped++;
      }
    }
    t.reported = true;
    // Appearances recorded while this report was in flight are for the next one.
    t.pending = Math.max(0, t.pending - appearances);
    t.lastReportAt = now.getTime();
  }

  private isIdle(): boolean {
    if (this.pendingWork > 0) return false;
    for (const t of this.tracked.values()) if (t.timer) return false;
    return true;
  }
}
