import type { Logger } from 'pino';
import { TypeUrl, kindOfTypeUrl, type TypeUrlValue } from '../envoy/resources.js';
import { mayReceive } from './access.js';
import type { CachedResource, SnapshotCache } from './cache.js';
import type { StreamHooks } from './client-state.js';
import { ClusterHold, refersToClusters } from './removal-hold.js';
import type { NodeInfo } from './wire.js';

export interface AdsStreamOptions {
  cache: SnapshotCache;
  hooks: StreamHooks;
  send: (message: Buffer) => void;
  logger: Logger;
}

/** What SotW and delta requests both carry: who asks, for which type, replying to which response. */
interface AdsRequest {
  readonly node: NodeInfo | undefined;
  readonly typeUrl: string;
  readonly responseNonce: string;
}

/**
 * One ADS stream, whatever its variant (sotw.ts, delta.ts): the client's identity, per-type state,
 * nonces, fan-out of cache changes and the make-before-break hold of removed clusters
 * (removal-hold.ts). The variant decides what a request subscribes to, what an ACK is and what
 * a push sends.
 *
 * `State` is the variant's per-type state; `Held` what it keeps of a held cluster to serve it on.
 */
export abstract class AdsStream<Request extends AdsRequest, State, Held> {
  protected readonly types = new Map<string, State>();
  /** Removed clusters whose removal waits until the routes that may name them are ACKed (removal-hold.ts). */
  protected readonly held = new ClusterHold<Held>();
  /** The types to push again once the held clusters are released. */
  protected abstract readonly heldBack: readonly TypeUrlValue[];
  private identified = false;
  private node: NodeInfo | undefined;
  private readonly refused = new Set<string>();
  private nonceCounter = 0;

  constructor(protected readonly options: AdsStreamOptions) {}

  onRequest(request: Request): void {
    const { hooks, logger } = this.options;
    if (!this.identified && request.node !== undefined) {
      this.identified = true;
      this.node = request.node;
      hooks.identify(request.node);
    }
    if (kindOfTypeUrl(request.typeUrl) === undefined) {
      logger.debug({ typeUrl: request.typeUrl }, 'xds: request for a type Switchyard does not serve');
      return;
    }
    let state = this.types.get(request.typeUrl);
    const first = state === undefined;
    if (state === undefined) {
      state = this.newState(request);
      this.types.set(request.typeUrl, state);
    }
    if (request.responseNonce !== '' && !this.acceptReply(state, request)) return;
    const changed = this.updateSubscription(state, request, first);
    if (first || changed) this.push(request.typeUrl, state);
    if (refersToClusters(request.typeUrl)) this.releaseHeldClusters();
  }

  /** Pushes, in the order given (make-before-break), every changed type this client watches. */
  onCacheChange(changed: readonly TypeUrlValue[]): void {
    if (changed.includes(TypeUrl.cluster)) this.holdRemovedClusters();
    for (const typeUrl of changed) this.pushIfWatched(typeUrl);
    this.releaseHeldClusters();
  }

  /** Whether this client may receive `name`; a refusal is logged once per name. */
  protected permitted(typeUrl: string, name: string): boolean {
    if (mayReceive(this.node, typeUrl, name)) return true;
    if (!this.refused.has(name)) {
      this.refused.add(name);
      this.options.logger.warn({ node: this.node?.id, nodeCluster: this.node?.cluster, resource: name }, 'xds: refused a provider credential to a client that is not the AI extension');
    }
    return false;
  }

  protected abstract newState(request: Request): State;

  /**
   * Takes the ACK or NACK a request carries (it has a response nonce). False: the request is to
   * be ignored altogether.
   */
  protected abstract acceptReply(state: State, request: Request): boolean;

  /** Applies the request's subscription; true when what the client watches changed. */
  protected abstract updateSubscription(state: State, request: Request, first: boolean): boolean;

  /** Sends what the client should hold of `typeUrl` and does not, if anything. */
  protected abstract push(typeUrl: string, state: State): void;

  /** Holds the clusters of `clusters` the client holds and `current` no longer has. */
  protected abstract holdGone(clusters: State, current: ReadonlyMap<string, CachedResource>): void;

  /** The last response of this type was ACKed (or none was sent). */
  protected abstract isSettled(state: State): boolean;

  /** Forgets that the client holds `name`, so that the next push sends it again. */
  protected abstract forgetSent(state: State, name: string): void;

  protected nextNonce(): string {
    return String(++this.nonceCounter);
  }

  /**
   * Sends the ClusterLoadAssignments of updated EDS clusters again, changed or not (see
   * assignmentNamesOf in subscription.ts).
   */
  protected resendAssignments(names: readonly string[]): void {
    const endpoints = this.types.get(TypeUrl.endpoint);
    if (endpoints === undefined || names.length === 0) return;
    for (const name of names) this.forgetSent(endpoints, name);
    this.push(TypeUrl.endpoint, endpoints);
  }

  private pushIfWatched(typeUrl: string): void {
    const state = this.types.get(typeUrl);
    if (state !== undefined) this.push(typeUrl, state);
  }

  /** Clusters the client holds that the configuration dropped: their removal waits while routes may name them. */
  private holdRemovedClusters(): void {
    const state = this.types.get(TypeUrl.cluster);
    const current = this.options.cache.snapshot(TypeUrl.cluster)?.resources;
    if (state === undefined || current === undefined) return;
    for (const [name] of this.held.entries()) if (current.has(name)) this.held.forget(name);
    if (!this.servesRoutes()) return;
    this.holdGone(state, current);
  }

  private servesRoutes(): boolean {
    return [...this.types.keys()].some(refersToClusters);
  }

  /** Pushes the held removals once every listener and route response this client was sent is ACKed. */
  private releaseHeldClusters(): void {
    if (this.held.size === 0) return;
    for (const [typeUrl, state] of this.types) if (refersToClusters(typeUrl) && !this.isSettled(state)) return;
    this.held.clear();
    for (const typeUrl of this.heldBack) this.pushIfWatched(typeUrl);
  }
}
