import type { CachedResource, CacheView } from './cache.js';
import type { ErrorDetail, NodeInfo } from './wire.js';

export type StreamKind = 'sotw' | 'delta';

export interface NackRecord {
  /** The version the client rejected (the one sent with the NACKed nonce). */
  readonly version: string;
  readonly code: number;
  /** Envoy's error_detail.message, with the secret values it may quote redacted. */
  readonly message: string;
  readonly at: Date;
}

/**
 * Where one client stands for one resource type. `state` is `rejected` while the last version
 * sent was NACKed, `acked` once the client ACKed what was last sent, `pending` in between.
 */
export interface TypeStatus {
  readonly typeUrl: string;
  readonly state: 'pending' | 'acked' | 'rejected';
  readonly sentVersion: string | undefined;
  readonly ackedVersion: string | undefined;
  readonly lastNack: NackRecord | undefined;
}

export interface ClientSnapshot {
  readonly streamId: number;
  readonly nodeId: string;
  readonly nodeCluster: string;
  /** The Gateway this client serves, as its node metadata names it; undefined: every Gateway. */
  readonly gateway: string | undefined;
  readonly kind: StreamKind;
  readonly connectedAt: Date;
  readonly types: readonly TypeStatus[];
}

/** What a stream reports about its client; the server turns these into state and events. */
export interface StreamHooks {
  /** The first request of the stream named its node. */
  identify(node: NodeInfo): void;
  /** The view this stream is served from, chosen at its first request. */
  selected(view: CacheView): void;
  sent(typeUrl: string, version: string): void;
  /**
  /**
   * `viewVersion`: the version of the stream's view the ACKed response stood for (what the
   * fleet's ACK state is kept by, ack-ledger.ts); `version` is the client's own. `resources`: what
   * the acknowledged or rejected response carried (SotW: the client's whole set; delta: the
   * resources it updated), so a NACK can be charged to the resources that changed.
   */
  acked(typeUrl: string, version: string, viewVersion: string, resources: readonly CachedResource[]): void;
  nacked(typeUrl: string, version: string, viewVersion: string, detail: ErrorDetail, resources: readonly CachedResource[]): void;
  /**
   * The view moved to `viewVersion` of `typeUrl` and this client, having ACKed its last response,
   * needs nothing of it: it holds that version as far as it is concerned.
   */
  holds(typeUrl: string, viewVersion: string): void;
  /**
   * Nothing is to be pushed to this client yet: an Envoy of the release before waits until its
   * data plane is served the attempt facts form it reads (built off the request path), and is
   * then pushed all it asked for (AdsStream.retry()).
   */
  waiting?(): boolean;
}

interface MutableTypeStatus {
  sentVersion: string | undefined;
  ackedVersion: string | undefined;
  lastNack: NackRecord | undefined;
  sentRejected: boolean;
}

/** The per-stream bookkeeping behind clients(): what was sent, ACKed and NACKed, per type. */
export class ClientRecord {
  nodeId = '';
  nodeCluster = '';
  gateway: string | undefined;
  identified = false;
  readonly connectedAt = new Date();
  private readonly types = new Map<string, MutableTypeStatus>();

  constructor(
    readonly streamId: number,
    readonly kind: StreamKind,
  ) {}

  recordSent(typeUrl: string, version: string): void {
    const status = this.status(typeUrl);
    status.sentVersion = version;
    status.sentRejected = false;
  }

  recordAck(typeUrl: string, version: string): void {
    const status = this.status(typeUrl);
    status.ackedVersion = version;
    if (version === status.sentVersion) status.sentRejected = false;
  }

  recordNack(typeUrl: string, nack: NackRecord): void {
    const status = this.status(typeUrl);
    status.lastNack = nack;
    if (nack.version === status.sentVersion) status.sentRejected = true;
  }

  snapshot(): ClientSnapshot {
    return {
      streamId: this.streamId,
      nodeId: this.nodeId,
      nodeCluster: this.nodeCluster,
      gateway: this.gateway,
      kind: this.kind,
      connectedAt: this.connectedAt,
      types: [...this.types.entries()].map(([typeUrl, status]) => ({
        typeUrl,
        state: status.sentRejected ? 'rejected' : status.sentVersion !== undefined && status.sentVersion === status.ackedVersion ? 'acked' : 'pending',
        sentVersion: status.sentVersion,
        ackedVersion: status.ackedVersion,
        lastNack: status.lastNack,
      })),
    };
  }

  private status(typeUrl: string): MutableTypeStatus {
    let status = this.types.get(typeUrl);
    if (status === undefined) {
      status = { sentVersion: undefined, ackedVersion: undefined, lastNack: undefined, sentRejected: false };
      this.types.set(typeUrl, status);
    }
    return status;
  }
}
