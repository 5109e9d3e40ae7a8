import type { Logger } from 'pino';
import { formatProblem } from '../../api/manifest.js';
import { silentLogger } from '../../observability/logger.js';
import { canonicalDigest, type Snapshot } from '../manifest-files.js';
import type { KubeClient } from './api-client.js';
import { Informer, type InformerStats } from './informer.js';
import { WATCHED_KINDS, type WatchedKind } from './kinds.js';
import { SnapshotBuilder } from './snapshot.js';

export type SnapshotListener = (snapshot: Snapshot) => void;

export interface KubernetesProviderOptions {
  client: KubeClient;
  /** Namespaces to watch; empty or absent: all. Cluster-scoped kinds are always watched. */
  namespaces?: readonly string[];
  logger?: Logger;
  /** Quiet time after the last event before a snapshot is built, so a burst gives one snapshot. */
  debounceMs?: number;
  /** Upper bound on that wait, so a steady stream of events still produces snapshots. */
  maxDelayMs?: number;
  /** How long start() waits for every kind to be listed before it gives up. */
  syncTimeoutMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  /** Server-side watch timeout range in seconds (client-go picks 5-10 minutes). */
  watchTimeoutSeconds?: { min: number; max: number };
  /** Kinds to watch (default: every kind Switchyard reads). */
  kinds?: readonly WatchedKind[];
}

/**
 * Serves the objects of a Kubernetes API server as Inputs snapshots: one informer per kind (and
 * per watched namespace), whose changes are coalesced into one snapshot per burst. The same
 * start/onChange/current/stop shape as the file provider, so the pipeline does not know which
 * one feeds it.
 */
export class KubernetesProvider {
  private readonly log: Logger;
  private readonly informers: { kind: WatchedKind; informer: Informer }[] = [];
  private readonly listeners = new Set<SnapshotListener>();
  private readonly builder = new SnapshotBuilder();
  private readonly debounceMs: number;
  private readonly maxDelayMs: number;
  private readonly syncTimeoutMs: number;
  private snapshot: Snapshot | undefined;
  private fingerprint = '';
  private timer: NodeJS.Timeout | undefined;
  private firstEventAt: number | undefined;
  private started = false;
  private stopped = false;
  private emitted = 0;

  constructor(private readonly opts: KubernetesProviderOptions) {
    this.log = (opts.logger ?? silentLogger()).child({ component: 'kubernetes-provider' });
    this.debounceMs = opts.debounceMs ?? 75;
    this.maxDelayMs = opts.maxDelayMs ?? 400;
    this.syncTimeoutMs = opts.syncTimeoutMs ?? 60_000;
    const namespaces = [...new Set(opts.namespaces ?? [])].filter((n) => n !== '');
    for (const kind of opts.kinds ?? WATCHED_KINDS) {
      const scopes: (string | undefined)[] = kind.namespaced && namespaces.length > 0 ? namespaces : [undefined];
      for (const namespace of scopes) {
        const informer = new Informer({
          client: opts.client,
          kind,
          ...(namespace !== undefined ? { namespace } : {}),
          logger: this.log,
          onChange: () => this.requestSnapshot(),
          backoff: opts.backoff ?? { initialMs: 250, maxMs: 30_000 },
          watchTimeoutSeconds: opts.watchTimeoutSeconds ?? { min: 300, max: 600 },
        });
        this.informers.push({ kind, informer });
      }
    }
  }

  /** Lists every kind, then returns the first snapshot; later ones go to onChange listeners. */
  async start(): Promise<Snapshot> {
    this.stopped = false;
    const scope = this.opts.namespaces && this.opts.namespaces.length > 0 ? this.opts.namespaces.join(',') : 'all namespaces';
    this.log.info({ server: this.opts.client.server.origin, namespaces: scope }, 'kubernetes provider: listing and watching');
    for (const { informer } of this.informers) informer.start();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.syncTimeoutMs);
    });
    const outcome = await Promise.race([Promise.all(this.informers.map((i) => i.informer.synced)).then(() => 'synced' as const), timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      const waiting = this.informers
        .map(({ informer }) => informer.stats())
        .filter((s) => s.state === 'starting')
        .map((s) => `${s.kind}${s.namespace ? ` in ${s.namespace}` : ''}${s.lastError ? ` (${s.lastError})` : ''}`);
      await this.stop();
      throw new Error(`cannot list from the API server ${this.opts.client.server.origin} within ${this.syncTimeoutMs} ms: ${waiting.join('; ')}`);
    }
    const snapshot = this.build();
    this.started = true;
    return snapshot;
  }

  /** Calls `listener` with every later snapshot whose content differs from the previous one. */
  onChange(listener: SnapshotListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  current(): Snapshot | undefined {
    return this.snapshot;
  }

  /** Per informer: state, object count, lists, watches, relists after 410, failures. */
  stats(): InformerStats[] {
    return this.informers.map(({ informer }) => informer.stats());
  }

  /** Snapshots handed out so far, the first (from start()) included. */
  get snapshots(): number {
    return this.emitted;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await Promise.all(this.informers.map(({ informer }) => informer.stop()));
  }

  private requestSnapshot(): void {
    if (!this.started || this.stopped) return;
    const now = Date.now();
    this.firstEventAt ??= now;
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.debounceMs, this.firstEventAt + this.maxDelayMs - now));
    this.timer = setTimeout(() => this.publish(), wait);
  }

  private publish(): void {
    this.timer = undefined;
    this.firstEventAt = undefined;
    if (this.stopped) return;
    const before = this.fingerprint;
    const snapshot = this.build();
    if (this.fingerprint === before) return;
    for (const listener of this.listeners) {
      try {
        listener(snapshot);
      } catch (err) {
        this.log.error({ err }, 'kubernetes provider: a change listener threw');
      }
    }
  }

  private build(): Snapshot {
    const objects = this.informers.flatMap(({ kind, informer }) => informer.list().map((object) => ({ kind: kind.kind, object })));
    const snapshot = this.builder.build(objects);
    const fingerprint = canonicalDigest(snapshot);
    if (fingerprint !== this.fingerprint) {
      this.fingerprint = fingerprint;
      this.snapshot = snapshot;
      this.emitted++;
      this.report(snapshot);
    }
    return this.snapshot ?? snapshot;
  }

  private report(snapshot: Snapshot): void {
    const { inputs, problems } = snapshot;
    this.log.info(
      {
        gatewayClasses: inputs.gatewayClasses.length,
        gateways: inputs.gateways.length,
        httpRoutes: inputs.httpRoutes.length,
        backends: inputs.backends.length,
        secrets: inputs.secrets.length,
        services: inputs.services.length,
        endpointSlices: inputs.endpointSlices.length,
        referenceGrants: inputs.referenceGrants.length,
        namespaces: inputs.namespaces.length,
        invalid: inputs.invalid.length,
        problems: problems.length,
      },
      'kubernetes provider: snapshot',
    );
    // Problems name objects and fields, never values.
    for (const p of problems) this.log.warn({ object: p.object, field: p.field }, formatProblem(p));
  }
}
