import type { Logger } from 'pino';
import { PUSH_ORDER, TypeUrl, type TypeUrlValue } from '../envoy/resources.js';
import { mayReceive, mayWithhold } from './access.js';
import { versionOfSet, type CacheView, type CachedResource, type SnapshotCache, type TypeSnapshot } from './cache.js';
import type { StreamHooks } from './client-state.js';
import type { StreamIdentity } from './identity.js';
import { ClusterHold, refersToClusters } from './removal-hold.js';
import type { NodeInfo, WireMessage } from './wire.js';

export interface AdsStreamOptions {
  cache: SnapshotCache;
  /** Who the stream authenticated as (identity.ts): decides what it may receive (access.ts). */
  identity: StreamIdentity;
  hooks: StreamHooks;
  /**
   * Writes responses, in order, as one write: those of one push (a CDS update and the
   * assignments it makes Envoy wait for) cost a client one transport write, not one each.
   * `flushed` is called once the transport has taken them (for gRPC: written out within the
   * client's HTTP/2 flow-control window), once per call and in the order of the calls; the same
   * function is passed on every call. Returns false when the stream's write buffer is full:
   * nothing more is written until resume(). `messages` is the stream's own array, read during the
   * call only: it is reused for the next write.
   */
  send: (messages: readonly WireMessage[], flushed: () => void) => boolean;
  logger: Logger;
}

/** The order in which due types are pushed (make-before-break), as type URLs. */
const PUSH_ORDER_URLS: readonly TypeUrlValue[] = PUSH_ORDER.map((kind) => TypeUrl[kind]);
/**
 * A bit per served type, by its place in PUSH_ORDER: a stream's due and in-flight types are two
 * numbers. As Sets they grew and shrank their tables on every push and every write completion,
 * two thousand times per change at a thousand streams (issue 9).
 */
const TYPE_BITS: ReadonlyMap<string, number> = new Map(PUSH_ORDER_URLS.map((typeUrl, i) => [typeUrl, 1 << i]));
const CLUSTER_BIT = TYPE_BITS.get(TypeUrl.cluster) ?? 0;
/**
 * The bits of a change's types, once per list: a fan-out hands every stream the same list
 * (push-pacer.ts), where each type looked up in two Maps per stream was about a tenth of a push
 * (issue 9).
 */
const changeBits = new WeakMap<readonly string[], number>();

function bitsOf(changed: readonly string[]): number {
  let bits = changeBits.get(changed);
  if (bits === undefined) {
    bits = 0;
    for (let i = 0; i < changed.length; i++) bits |= TYPE_BITS.get(changed[i] as string) ?? 0;
    changeBits.set(changed, bits);
  }
  return bits;
}

/** Writes a stream may have in flight: at most one per type (flush()), and they are reported flushed in order. */
const MAX_WRITES = 8;

/** What SotW and delta requests both carry: who asks, for which type, replying to which response. */
interface AdsRequest {
  readonly node: NodeInfo | undefined;
  readonly typeUrl: string;
  readonly responseNonce: string;
}

/**
 * One ADS stream, whatever its variant (sotw.ts, delta.ts): the client's identity, per-type state,
 * nonces, fan-out of cache changes, access control and the make-before-break hold of removed
 * clusters (removal-hold.ts). The variant decides what a request subscribes to, what an ACK is,
 * which resources a push selects and how it responds.
 *
 * Every push goes through `push` here: the variant selects (wildcard or named), then what the
 * stream's identity may not receive (access.ts) is withheld, and only then does the variant see
 * the resources it may send. The variants never read the cache, so none can skip the check.
 *
 * `State` is the variant's per-type state; `Held` what it keeps of a held cluster to serve it on.
 */
export abstract class AdsStream<Request extends AdsRequest, State, Held> {
  protected readonly types = new Map<string, State>();
  /** The types of `types` as bits (TYPE_BITS): a change's types are matched against them at once. */
  private watched = 0;
  /** Removed clusters whose removal waits until the routes that may name them are ACKed (removal-hold.ts). */
  protected readonly held = new ClusterHold<Held>();
  /** The types to push again once the held clusters are released. */
  protected abstract readonly heldBack: readonly TypeUrlValue[];
  private identified = false;
  private node: NodeInfo | undefined;
  /** What this client is served from: chosen by its node metadata at its first request. */
  private view: CacheView | undefined;
  private readonly refused = new Set<string>();
  private nonceCounter = 0;
  /**
   * Back-pressure. A type is `due` when the client should be sent what it lacks of it; the push
   * happens when the type has no response still waiting in the transport (`inFlight`) and the
   * write buffer has room (`congested` false). A push computes the response from the cache at
   * that moment, so a slow client skips the versions it could not take: one pending response per
   * type at most, and a change costs a congested stream one bit set.
   */
  private due = 0;
  private inFlight = 0;
  private congested = false;
  private flushing = false;
  /** The responses of the running flush(), written together at its end, and their types. */
  private readonly outbox: (WireMessage | undefined)[] = [];
  private outboxCount = 0;
  private outboxTypes = 0;
  /** Reused arrays of one and of two responses, handed to send(): a push is nearly always one or two. */
  private readonly single: WireMessage[] = [];
  private readonly pair: WireMessage[] = [];
  /** The types of each write not yet reported flushed, oldest first: a ring of MAX_WRITES. */
  private readonly writes: number[] = new Array<number>(MAX_WRITES).fill(0);
  private writeHead = 0;
  private writeCount = 0;
  /** Passed with every write: one function for the stream's life, not one per write. */
  private readonly flushed = (): void => this.onFlushed();
  /** The client watches listeners or routes (types are never dropped once asked for). */
  private routesWatched = false;
  /** The cluster set changed since the last cluster push: removed clusters may have to be held. */
  private clustersChanged = false;
  private readonly cache: SnapshotCache;
  private readonly identity: StreamIdentity;
  protected readonly options: Omit<AdsStreamOptions, 'cache' | 'identity'>;

  constructor({ cache, identity, ...options }: AdsStreamOptions) {
    this.cache = cache;
    this.identity = identity;
    this.options = options;
  }

  onRequest(request: Request): void {
    const { hooks, logger } = this.options;
    if (!this.identified && request.node !== undefined) {
      this.identified = true;
      this.node = request.node;
      hooks.identify(request.node);
    }
    if (this.view === undefined) {
      // Envoy names its Gateway in the first request's node (set_node_on_first_message_only).
      this.view = this.cache.view(request.node?.gateway);
      hooks.selected(this.view);
    }
    if (!TYPE_BITS.has(request.typeUrl)) {
      logger.debug({ typeUrl: request.typeUrl }, 'xds: request for a type Switchyard does not serve');
      return;
    }
    let state = this.types.get(request.typeUrl);
    const first = state === undefined;
    if (state === undefined) {
      state = this.newState(request);
      this.types.set(request.typeUrl, state);
      this.watched |= TYPE_BITS.get(request.typeUrl) ?? 0;
      if (refersToClusters(request.typeUrl)) this.routesWatched = true;
    }
    if (request.responseNonce !== '' && !this.acceptReply(state, request)) return;
    const changed = this.updateSubscription(state, request, first);
    if (first || changed) this.schedule(request.typeUrl);
    if (refersToClusters(request.typeUrl)) this.releaseHeldClusters();
  }

  /** Pushes, in PUSH_ORDER (make-before-break), every changed type this client watches. */
  onCacheChange(changed: readonly TypeUrlValue[]): void {
    const bits = bitsOf(changed);
    if ((bits & CLUSTER_BIT) !== 0) this.clustersChanged = true;
    this.due |= bits & this.watched;
    this.retry();
  }

  /** Pushes what is due: after a change, a drain, or what the client waited for (StreamHooks.waiting) being there. */
  retry(): void {
    this.flush();
    this.releaseHeldClusters();
  }

  /** The transport's write buffer has room again ('drain'): push the newest of what is due. */
  resume(): void {
    this.congested = false;
    this.retry();
  }

  /** Types with a response waiting in the transport or a push waiting for room; for tests and metrics. */
  backlog(): { inFlight: readonly string[]; due: readonly string[]; congested: boolean } {
    return { inFlight: typesOf(this.inFlight), due: typesOf(this.due), congested: this.congested };
  }

  /** This client's view of `typeUrl`: its Gateway's resources, or every Gateway's. */
  private snapshot(typeUrl: string): TypeSnapshot | undefined {
    return this.view?.snapshot(typeUrl);
  }

  /**
   * Sends what the client should hold of `typeUrl` and does not, if anything, out of what its
   * identity may receive.
   */
  private push(typeUrl: string, state: State): void {
    const snapshot = this.snapshot(typeUrl);
    if (snapshot === undefined) return;
    const selected = this.select(typeUrl, state, snapshot);
    if (!mayWithhold(typeUrl)) {
      this.respond(typeUrl, state, selected, snapshot, snapshot.version);
      return;
    }
    const admitted: CachedResource[] = [];
    const withheld = new Set<string>();
    for (const resource of selected) {
      if (this.permitted(typeUrl, resource.name)) admitted.push(resource);
      else withheld.add(resource.name);
    }
    this.respond(typeUrl, state, admitted, withheld.size === 0 ? snapshot : without(snapshot, withheld), snapshot.version);
  }

  /** Whether this client may receive `name`; a refusal is logged once per name (never the value). */
  private permitted(typeUrl: string, name: string): boolean {
    if (mayReceive(this.identity, typeUrl, name)) return true;
    if (!this.refused.has(name)) {
      this.refused.add(name);
      this.options.logger.warn(
        { role: this.identity.role, via: this.identity.via, node: this.node?.id, nodeCluster: this.node?.cluster, resource: name },
        'xds: withheld a provider credential from a stream not authenticated as the AI extension',
      );
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

  /**
   * What the client subscribes to of `typeUrl`, plus anything still served on (held clusters);
   * access is checked on the result, by the caller.
   */
  protected abstract select(typeUrl: string, state: State, snapshot: TypeSnapshot): readonly CachedResource[];

  /**
   * Sends (deliver()) what the client should hold of `admitted` and does not, if anything.
   * `snapshot` is the type as this client may see it: without the withheld resources, and then
   * with a version of its own, so that no response shared by version carries them to this
   * client or others. `viewVersion`: the view's version of the type, which the response (or,
   * when nothing is to be sent, what the client already holds) stands for.
   */
  protected abstract respond(typeUrl: string, state: State, admitted: readonly CachedResource[], snapshot: TypeSnapshot, viewVersion: string): void;

  /** Holds the clusters of `clusters` the client holds and `current` no longer has. */
  protected abstract holdGone(clusters: State, current: ReadonlyMap<string, CachedResource>): void;

  /** The last response of this type was ACKed (or none was sent). */
  protected abstract isSettled(state: State): boolean;

  /** Forgets that the client holds `name`, so that the next push sends it again. */
  protected abstract forgetSent(state: State, name: string): void;

  /**
   * Hands a response of `typeUrl` to the transport; the variants call it from respond(), which
   * runs inside flush(): the responses of one flush leave in one write when it ends.
   */
  protected deliver(typeUrl: string, message: WireMessage): void {
    const bit = TYPE_BITS.get(typeUrl) ?? 0;
    this.inFlight |= bit;
    // Slots are overwritten, never dropped: an array emptied gives its storage back and the next push allocates it again.
    this.outbox[this.outboxCount++] = message;
    this.outboxTypes |= bit;
    if (!this.flushing) this.sendOutbox();
  }

  private sendOutbox(): void {
    const count = this.outboxCount;
    if (count === 0) return;
    const messages = count === 1 ? this.single : count === 2 ? this.pair : new Array<WireMessage>(count);
    for (let i = 0; i < count; i++) {
      messages[i] = this.outbox[i] as WireMessage;
      this.outbox[i] = undefined;
    }
    this.outboxCount = 0;
    const types = this.outboxTypes;
    this.outboxTypes = 0;
    // Noted before send(), which may report the write flushed at once.
    this.writes[(this.writeHead + this.writeCount) % MAX_WRITES] = types;
    this.writeCount++;
    const room = this.options.send(messages, this.flushed);
    // Not kept alive by the stream until its next write.
    if (count <= 2) for (let i = 0; i < count; i++) (messages as (WireMessage | undefined)[])[i] = undefined;
    if (!room) this.congested = true;
  }

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
    for (let i = 0; i < names.length; i++) this.forgetSent(endpoints, names[i] as string);
    this.schedule(TypeUrl.endpoint);
  }

  private schedule(typeUrl: string): void {
    this.due |= TYPE_BITS.get(typeUrl) ?? 0;
    this.flush();
  }

  /**
   * Pushes the due types in PUSH_ORDER, stopping at the first one that must wait, so that a
   * later type never overtakes an earlier one (routes never name clusters not yet sent).
   * Re-entrant calls (a push that makes another type due) are picked up by the running loop.
   */
  private flush(): void {
    if (this.flushing || this.due === 0 || this.options.hooks.waiting?.() === true) return;
    this.flushing = true;
    try {
      for (let i = 0; i < PUSH_ORDER_URLS.length; i++) {
        const bit = 1 << i;
        if ((this.due & bit) === 0) continue;
        if (this.congested || (this.inFlight & bit) !== 0) break;
        this.due &= ~bit;
        const typeUrl = PUSH_ORDER_URLS[i] as TypeUrlValue;
        const state = this.types.get(typeUrl);
        if (state === undefined) continue;
        if (typeUrl === TypeUrl.cluster && this.clustersChanged) {
          this.clustersChanged = false;
          this.holdRemovedClusters();
        }
        this.push(typeUrl, state);
      }
    } finally {
      this.flushing = false;
      this.sendOutbox();
    }
  }

  /** The oldest write not yet reported flushed was. */
  private onFlushed(): void {
    if (this.writeCount === 0) return;
    const types = this.writes[this.writeHead] as number;
    this.writeHead = (this.writeHead + 1) % MAX_WRITES;
    this.writeCount--;
    this.inFlight &= ~types;
    if ((this.due & types) !== 0) this.flush();
  }

  /** Clusters the client holds that the configuration dropped: their removal waits while routes may name them. */
  private holdRemovedClusters(): void {
    const state = this.types.get(TypeUrl.cluster);
    const current = this.snapshot(TypeUrl.cluster)?.resources;
    if (state === undefined || current === undefined) return;
    if (this.held.size > 0) for (const [name] of this.held.entries()) if (current.has(name)) this.held.forget(name);
    if (!this.routesWatched) return;
    this.holdGone(state, current);
  }

  /**
   * Pushes the held removals once every listener and route response this client was sent is
   * ACKed and none waits to be sent.
   */
  private releaseHeldClusters(): void {
    if (this.held.size === 0) return;
    for (const [typeUrl, state] of this.types) {
      const bit = TYPE_BITS.get(typeUrl) ?? 0;
      if (refersToClusters(typeUrl) && (!this.isSettled(state) || (this.due & bit) !== 0 || (this.inFlight & bit) !== 0)) return;
    }
    this.held.clear();
    for (const typeUrl of this.heldBack) if (this.types.has(typeUrl)) this.due |= TYPE_BITS.get(typeUrl) ?? 0;
    this.flush();
  }
}

/** The types of `bits`, in PUSH_ORDER. */
function typesOf(bits: number): string[] {
  return PUSH_ORDER_URLS.filter((_, i) => (bits & (1 << i)) !== 0);
}

/** `snapshot` without the resources named in `withheld`, at the version of what is left. */
function without(snapshot: TypeSnapshot, withheld: ReadonlySet<string>): TypeSnapshot {
  const resources = new Map([...snapshot.resources].filter(([name]) => !withheld.has(name)));
  return { ...snapshot, version: versionOfSet(resources.values()), resources };
}
