import type { Logger } from 'pino';
import type { ObjectStatus, WarningEvent } from '../translate/status.js';
import { EventRecorder, type EventRecorderOptions } from './events.js';
import type { KubeStatusApi } from './kube-api.js';
import { defaultIdentity, LeaderElector, type LeaderElectorOptions } from './leader.js';
import { StatusWriter, type StatusWriterOptions } from './writer.js';

export interface StatusReporterOptions {
  api: KubeStatusApi;
  /** The controller's namespace: where its Lease lives. */
  namespace: string;
  logger: Logger;
  /** This replica; defaults to $POD_NAME, else hostname_pid. */
  identity?: string;
  /**
   * The Lease's name and timings; `false`: no leader election, this replica acts as the leader
   * from start() on (controller-runtime's convention for a single replica).
   */
  election?: Partial<Pick<LeaderElectorOptions, 'name' | 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs'>> | false;
  writer?: Partial<Omit<StatusWriterOptions, 'client' | 'logger'>>;
  events?: Partial<Omit<EventRecorderOptions, 'events' | 'objects' | 'logger' | 'instance'>>;
  onStartedLeading?: () => void;
  onStoppedLeading?: () => void;
}

/**
 * The Kubernetes side of status for one controller replica: every replica keeps the latest
 * statuses and warnings, only the Lease holder writes them (StatusWriter, EventRecorder). On
 * shutdown the writes in flight finish before the Lease is released.
 */
export class StatusReporter {
  readonly writer: StatusWriter;
  readonly recorder: EventRecorder;
  /** Absent without leader election. */
  readonly elector: LeaderElector | undefined;
  private readonly onStartedLeading: (() => void) | undefined;
  private readonly log: Logger;
  private started = false;

  constructor(opts: StatusReporterOptions) {
    const log = opts.logger.child({ component: 'status' });
    this.writer = new StatusWriter({ ...opts.writer, client: opts.api.objects, logger: log });
    this.onStartedLeading = opts.onStartedLeading;
    this.log = log;
    this.elector = opts.election === false ? undefined : new LeaderElector({
      ...opts.election,
      client: opts.api.leases,
      namespace: opts.namespace,
      logger: log,
      ...(opts.identity ? { identity: opts.identity } : {}),
      onStartedLeading: () => {
        this.writer.setLeading(true);
        this.recorder.setLeading(true);
        opts.onStartedLeading?.();
      },
      onStoppedLeading: async () => {
        this.writer.setLeading(false);
        this.recorder.setLeading(false);
        opts.onStoppedLeading?.();
        await Promise.all([this.writer.idle(), this.recorder.idle()]);
      },
    });
    this.recorder = new EventRecorder({ ...opts.events, events: opts.api.events, objects: opts.api.objects, logger: log, instance: this.elector?.identity ?? opts.identity ?? defaultIdentity() });
  }

  start(): void {
    if (this.elector) {
      this.elector.start();
      return;
    }
    this.started = true;
    this.log.info('status: no leader election; this replica writes status and Events (run only one such replica)');
    this.writer.setLeading(true);
    this.recorder.setLeading(true);
    this.onStartedLeading?.();
  }

  /** The full current statuses (after StatusBook stamping) and warnings of the latest translation. */
  publish(statuses: readonly ObjectStatus[], warnings: readonly WarningEvent[]): void {
    this.writer.update(statuses);
    this.recorder.record(warnings);
  }

  isLeader(): boolean {
    return this.elector ? this.elector.isLeader() : this.started;
  }

  /** Graceful shutdown: stop writing, finish in-flight writes, release the Lease. */
  async stop(): Promise<void> {
    await this.elector?.stop({ release: true });
    this.started = false;
    await Promise.all([this.writer.stop(), this.recorder.stop()]);
  }
}
