import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { isConflict, type LeaseClient, type LeaseRecord, type LeaseSpec } from './kube-api.js';

export interface LeaderElectorOptions {
  client: LeaseClient;
  /** The controller's namespace, where the Lease lives. */
  namespace: string;
  name?: string;
  /** Defaults to $POD_NAME, else hostname_pid. */
  identity?: string;
  /** How long a Lease holds without renewal before another replica may take it (written to the Lease in whole seconds). */
  leaseDurationMs?: number;
  /** A leader that could not renew for this long stops leading; must be below the lease duration. */
  renewDeadlineMs?: number;
  /** How often every replica tries to acquire or renew. */
  retryPeriodMs?: number;
  onStartedLeading?: () => void;
  /** Awaited on `stop()` before the Lease is released, so a successor never overlaps with our last writes. */
  onStoppedLeading?: () => void | Promise<void>;
  onNewLeader?: (identity: string) => void;
  logger: Logger;
}

export const DEFAULT_LEASE_NAME = 'switchyard-controller';

export function defaultIdentity(): string {
  return process.env.POD_NAME || `${hostname()}_${process.pid}`;
}

/** Never wait forever on one call: a hung request must not stall renewals. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Leader election on a coordination.k8s.io/v1 Lease. Every replica tries every `retryPeriodMs`:
 * a Lease that is free (no holder, or released) or expired is taken with a conditional update,
 * so of two contenders exactly one wins. Expiry is judged from when this replica *saw* the Lease
 * last change, never from the holder's clock. The leader renews on the same period and demotes
 * itself when `renewDeadlineMs` passes without a renewal, before any follower can consider the
 * Lease expired. `stop()` releases the Lease (empty holder) so a successor takes over at its next try.
 */
export class LeaderElector {
  readonly identity: string;
  private readonly client: LeaseClient;
  private readonly namespace: string;
  private readonly name: string;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly log: Logger;
  private readonly opts: LeaderElectorOptions;
  private leading = false;
  private stopped = true;
  private timer?: NodeJS.Timeout;
  private deadline?: NodeJS.Timeout;
  private tickRunning: Promise<void> = Promise.resolve();
  private observed?: { record: LeaseRecord; at: number };
  private lastHolder = '';

  constructor(opts: LeaderElectorOptions) {
    this.opts = opts;
    this.client = opts.client;
    this.namespace = opts.namespace;
    this.name = opts.name ?? DEFAULT_LEASE_NAME;
    this.identity = opts.identity ?? defaultIdentity();
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 1_000;
    this.log = opts.logger.child({ lease: `${this.namespace}/${this.name}`, identity: this.identity });
    // The leader demotes itself at renewDeadline after its last renewal began; followers wait a
    // full lease duration after they saw that renewal land. Hence renewDeadline < leaseDuration.
    if (!(this.retryPeriodMs < this.renewDeadlineMs && this.renewDeadlineMs < this.leaseDurationMs)) {
      throw new Error(
        `leader election needs retryPeriod (${this.retryPeriodMs} ms) < renewDeadline (${this.renewDeadlineMs} ms) < leaseDuration (${this.leaseDurationMs} ms), or two replicas could lead at once`,
      );
    }
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop();
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** The holder last seen on the Lease ('' when free or unknown). */
  leader(): string {
    return this.lastHolder;
  }

  /**
   * Stops trying. With `release` (the default, for graceful shutdown) a leader first stops
   * leading, then empties the Lease's holder so a successor takes over at once; without it the
   * Lease is left to expire, as when the process is killed.
   */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.tickRunning;
    await this.demote('stopping');
    // Also when not (yet) leading: a tick cut short by stop() may have just acquired the Lease.
    if (opts.release ?? true) await this.release();
  }

  private loop(): void {
    if (this.stopped) return;
    this.tickRunning = this.tick().finally(() => {
      if (!this.stopped) this.timer = setTimeout(() => this.loop(), this.retryPeriodMs);
    });
  }

  private leaseSeconds(): number {
    return Math.max(1, Math.ceil(this.leaseDurationMs / 1000));
  }

  private observe(record: LeaseRecord, at: number): void {
    if (!this.observed || this.observed.record.resourceVersion !== record.resourceVersion) this.observed = { record, at };
    if (record.holderIdentity !== this.lastHolder) {
      this.lastHolder = record.holderIdentity;
      if (record.holderIdentity) {
        this.log.info({ holder: record.holderIdentity }, 'lease holder changed');
        this.opts.onNewLeader?.(record.holderIdentity);
      }
    }
  }

  private async tick(): Promise<void> {
    const started = performance.now();
    const nowIso = new Date().toISOString();
    const timeoutMs = Math.max(this.retryPeriodMs, this.renewDeadlineMs / 2);
    try {
      const current = await withTimeout(this.client.get(this.namespace, this.name), timeoutMs, 'reading the Lease');
      if (this.stopped) return;
      if (!current) {
        const created = await withTimeout(
          this.client.create(this.namespace, this.name, { holderIdentity: this.identity, leaseDurationSeconds: this.leaseSeconds(), leaseTransitions: 0, acquireTime: nowIso, renewTime: nowIso }),
          timeoutMs,
          'creating the Lease',
        );
        this.observe(created, performance.now());
        this.renewed(started);
        return;
      }
      this.observe(current, performance.now());
      const holder = current.holderIdentity;
      if (holder && holder !== this.identity) {
        if (this.leading) await this.demote(`the Lease is now held by ${holder}`);
        const seen = this.observed?.at ?? started;
        if (performance.now() < seen + current.leaseDurationSeconds * 1000) return;
        this.log.info({ holder, leaseDurationSeconds: current.leaseDurationSeconds }, 'lease expired; taking over');
      }
      const mine = holder === this.identity;
      const spec: LeaseSpec = {
        holderIdentity: this.identity,
        leaseDurationSeconds: this.leaseSeconds(),
        leaseTransitions: mine ? current.leaseTransitions : current.leaseTransitions + 1,
        renewTime: nowIso,
        acquireTime: mine && current.acquireTime ? current.acquireTime : nowIso,
      };
      const updated = await withTimeout(this.client.replace(this.namespace, this.name, current.resourceVersion, spec), timeoutMs, 'updating the Lease');
      if (this.stopped) return;
      this.observe(updated, performance.now());
      this.renewed(started);
    } catch (err) {
      // A conflict means another replica wrote first: it won this round.
      if (isConflict(err)) this.log.debug('lease update conflicted; another replica wrote first');
      else this.log.warn({ err }, 'could not acquire or renew the lease');
    }
  }

  /** A successful acquire or renew that started at `started`: the lease is ours until started + renewDeadline. */
  private renewed(started: number): void {
    if (this.stopped) return;
    if (this.deadline) clearTimeout(this.deadline);
    const left = started + this.renewDeadlineMs - performance.now();
    this.deadline = setTimeout(() => {
      this.demote(`no renewal for ${this.renewDeadlineMs} ms`).catch((err: unknown) => this.log.error({ err }, 'stopping leadership failed'));
    }, Math.max(0, left));
    if (!this.leading) {
      this.leading = true;
      this.log.info('started leading');
      this.opts.onStartedLeading?.();
    }
  }

  private async demote(why: string): Promise<void> {
    if (this.deadline) clearTimeout(this.deadline);
    delete this.deadline;
    if (!this.leading) return;
    this.leading = false;
    this.log.info({ why }, 'stopped leading');
    await this.opts.onStoppedLeading?.();
  }

  private async release(): Promise<void> {
    try {
      const current = await withTimeout(this.client.get(this.namespace, this.name), this.renewDeadlineMs, 'reading the Lease');
      if (!current || current.holderIdentity !== this.identity) return;
      const now = new Date().toISOString();
      // Duration 1 s as well, so a client that ignores an empty holder still sees it expire at once.
      await withTimeout(
        this.client.replace(this.namespace, this.name, current.resourceVersion, {
          holderIdentity: '',
          leaseDurationSeconds: 1,
          leaseTransitions: current.leaseTransitions,
          renewTime: now,
          ...(current.acquireTime ? { acquireTime: current.acquireTime } : {}),
        }),
        this.renewDeadlineMs,
        'releasing the Lease',
      );
      this.log.info('lease released');
    } catch (err) {
      this.log.warn({ err }, 'could not release the lease; the next leader waits for it to expire');
    }
  }
}
