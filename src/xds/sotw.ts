import { TypeUrl } from '../envoy/resources.js';
import { AdsStream, type AdsStreamOptions } from './ads-stream.js';
import { versionOfSet, type CachedResource, type TypeSnapshot } from './cache.js';
import { WILDCARD, absenceMeansRemoval, allowsLegacyWildcard, assignmentNamesOf } from './subscription.js';
import { sotwResponseBody, withNonce, type DiscoveryRequest } from './wire.js';

/** One SotW response as every stream that gets this exact set can send it. */
export interface SharedResponse {
  /** The DiscoveryResponse without a nonce. */
  readonly body: Uint8Array;
  /** The body with a nonce of its own: the very bytes written to every stream it suits. */
  readonly message: Buffer;
  readonly nonce: string;
}

/**
 * Responses shared by every SotW stream of the server, keyed by type and set version: a thousand
 * wildcard clients cost one encode per change, and the same Buffer goes to each of them (a nonce
 * need only differ from the stream's previous one, so one nonce serves every stream).
 */
export class SharedResponseBodies {
  private readonly bodies = new Map<string, Map<string, SharedResponse>>();
  private sequence = 0;

  get(typeUrl: string, version: string, resources: readonly CachedResource[]): SharedResponse {
    let byVersion = this.bodies.get(typeUrl);
    if (byVersion === undefined) {
      byVersion = new Map();
      this.bodies.set(typeUrl, byVersion);
    }
    let shared = byVersion.get(version);
    if (shared === undefined) {
      const body = sotwResponseBody(typeUrl, version, resources.map((resource) => resource.any));
      // Not a stream's own counter: those are decimal, this one never collides with them.
      const nonce = `s${(++this.sequence).toString(36)}`;
      shared = { body, message: withNonce(body, nonce), nonce };
      byVersion.set(version, shared);
    }
    return shared;
  }

  /** Drops the responses of types that changed; the subsets of the old version are not asked for again. */
  invalidate(typeUrls: readonly string[]): void {
    for (const typeUrl of typeUrls) this.bodies.delete(typeUrl);
  }
}

interface SotwTypeState {
  wildcard: boolean;
  names: Set<string>;
  /** Nonce of the last response: only a request carrying it is an ACK/NACK; older ones are stale. */
  lastNonce: string | undefined;
  lastVersion: string | undefined;
  /** The view's version the last response stands for (client-state.ts StreamHooks.acked). */
  lastViewVersion: string;
  /**
   * What the client was last sent, by name: for a wildcard client, the very map of the snapshot
   * it was sent (shared by every such stream; copied before this stream changes it, see ownSent).
   */
  sent: ReadonlyMap<string, CachedResource>;
  sentShared: boolean;
  /** The last response was ACKed (or none was sent yet). */
  settled: boolean;
}

export interface SotwStreamOptions extends AdsStreamOptions {
  bodies: SharedResponseBodies;
}

/**
 * One state-of-the-world ADS stream: subscriptions per type, nonces, ACK/NACK, and pushes of
 * the full subscribed set when (and only when) it differs from what this client was sent.
 */
export class SotwStream extends AdsStream<DiscoveryRequest, SotwTypeState, CachedResource> {
  /**
   * Only the cluster set: once the held clusters go, the assignments served on for them name
   * nothing, and an EDS set that only shrank is not pushed (absenceMeansRemoval).
   */
  protected readonly heldBack = [TypeUrl.cluster];
  private readonly bodies: SharedResponseBodies;

  constructor(options: SotwStreamOptions) {
    super(options);
    this.bodies = options.bodies;
  }

  protected newState(): SotwTypeState {
    return { wildcard: false, names: new Set(), lastNonce: undefined, lastVersion: undefined, lastViewVersion: '', sent: new Map(), sentShared: false, settled: true };
  }

  protected acceptReply(state: SotwTypeState, request: DiscoveryRequest): boolean {
    const { hooks, logger } = this.options;
    if (request.responseNonce !== state.lastNonce) {
      // xDS protocol: a request with an older nonce is superseded by the response in flight.
      logger.debug({ typeUrl: request.typeUrl, nonce: request.responseNonce }, 'xds: stale nonce ignored');
      return false;
    }
    const version = state.lastVersion ?? '';
    if (request.errorDetail !== undefined) {
      hooks.nacked(request.typeUrl, version, state.lastViewVersion, request.errorDetail, sentList(state));
    } else {
      state.settled = true;
      hooks.acked(request.typeUrl, request.versionInfo, state.lastViewVersion, sentList(state));
    }
    return true;
  }

  protected updateSubscription(state: SotwTypeState, request: DiscoveryRequest, first: boolean): boolean {
    const names = request.resourceNames;
    const wildcard = names.includes(WILDCARD) || (names.length === 0 && allowsLegacyWildcard(request.typeUrl) && (first || state.wildcard));
    const explicit = new Set(names.filter((name) => name !== WILDCARD));
    const changed = wildcard !== state.wildcard || explicit.size !== state.names.size || [...explicit].some((name) => !state.names.has(name));
    state.wildcard = wildcard;
    state.names = explicit;
    // A client drops what it unsubscribes from; if it asks again it must be sent again.
    if (!wildcard) {
      for (const name of state.sent.keys()) if (!explicit.has(name)) ownSent(state).delete(name);
    }
    return changed;
  }

  protected select(typeUrl: string, state: SotwTypeState, snapshot: TypeSnapshot): CachedResource[] {
    const selected: CachedResource[] = [];
    if (state.wildcard) {
      const all = everyResource(snapshot.resources);
      if (!this.holding(typeUrl, state)) return all;
      selected.push(...all);
    } else {
      for (const name of state.names) {
        const resource = snapshot.resources.get(name) ?? this.stillServed(typeUrl, state, name);
        if (resource !== undefined) selected.push(resource);
      }
    }
    if (this.holding(typeUrl, state)) for (const [, resource] of this.held.entries()) selected.push(resource);
    return selected;
  }

  protected respond(typeUrl: string, state: SotwTypeState, selected: CachedResource[], snapshot: TypeSnapshot, viewVersion: string): void {
    const holding = this.holding(typeUrl, state);
    const whole = state.wildcard && !holding && selected.length === snapshot.resources.size;
    const updated = whole && state.sentShared ? changedBetween(state.sent, snapshot.resources) : selected.filter((resource) => state.sent.get(resource.name)?.version !== resource.version);
    const news = updated.length > 0;
    const removals = absenceMeansRemoval(typeUrl) && selected.length < state.sent.size;
    // A wildcard client waits for its first response even when the set is empty (Envoy's
    // initialization blocks on the first CDS and LDS responses).
    const unanswered = state.wildcard && state.lastNonce === undefined;
    if (!news && !removals && !unanswered) {
      // What the client was sent is what the view's new version means for it.
      state.lastViewVersion = viewVersion;
      if (state.settled && state.lastNonce !== undefined) this.options.hooks.holds(typeUrl, viewVersion);
      return;
    }
    // A set that differs from the snapshot gets its own version, and so its own shared body.
    const version = state.wildcard && !holding ? snapshot.version : versionOfSet(selected);
    const shared = this.bodies.get(typeUrl, version, selected);
    // The same response again (assignments re-sent, a subscription back): a nonce of its own, so an ACK of the first is not one of this.
    const own = state.lastNonce === shared.nonce;
    const nonce = own ? this.nextNonce() : shared.nonce;
    state.lastNonce = nonce;
    state.lastVersion = version;
    state.lastViewVersion = viewVersion;
    state.settled = false;
    state.sent = whole ? snapshot.resources : new Map(selected.map((resource) => [resource.name, resource]));
    state.sentShared = whole;
    this.deliver(typeUrl, own ? withNonce(shared.body, nonce) : shared.message);
    this.options.hooks.sent(typeUrl, version);
    this.options.logger.debug({ typeUrl, version, nonce, resources: selected.length }, 'xds: sotw response sent');
    if (typeUrl === TypeUrl.cluster) this.resendAssignments(assignmentNamesOf(updated));
  }

  private holding(typeUrl: string, state: SotwTypeState): boolean {
    return typeUrl === TypeUrl.cluster && state.wildcard && this.held.size > 0;
  }

  /** Subscribed clusters gone from the configuration are kept, as last sent, while routes may name them. */
  protected holdGone(clusters: SotwTypeState, current: ReadonlyMap<string, CachedResource>): void {
    for (const [name, resource] of clusters.sent) {
      if (!current.has(name) && (clusters.wildcard || clusters.names.has(name))) this.held.hold(name, resource);
    }
  }

  /**
   * A subscribed resource gone from the configuration that must still be sent: a held cluster,
   * or, while clusters are held, an assignment (Envoy empties an EDS cluster whose assignment
   * disappears from a SotW response).
   */
  private stillServed(typeUrl: string, state: SotwTypeState, name: string): CachedResource | undefined {
    if (typeUrl === TypeUrl.cluster) return this.held.has(name) ? state.sent.get(name) : undefined;
    if (typeUrl === TypeUrl.endpoint && this.held.size > 0) return state.sent.get(name);
    return undefined;
  }

  protected isSettled(state: SotwTypeState): boolean {
    return state.settled;
  }

  protected forgetSent(state: SotwTypeState, name: string): void {
    if (state.sent.has(name)) ownSent(state).delete(name);
  }
}

/** `state.sent`, made this stream's own (a copy of the shared snapshot map) before it is changed. */
function ownSent(state: SotwTypeState): Map<string, CachedResource> {
  if (state.sentShared || !(state.sent instanceof Map)) {
    state.sent = new Map(state.sent);
    state.sentShared = false;
  }
  return state.sent as Map<string, CachedResource>;
}

/** What the client was last sent, as a list: the snapshot's own shared array when it took the snapshot whole. */
function sentList(state: SotwTypeState): readonly CachedResource[] {
  return state.sentShared ? everyResource(state.sent) : [...state.sent.values()];
}

/** Every resource of a snapshot as an array, built once per snapshot for all the streams that take it whole. */
const wholeSets = new WeakMap<ReadonlyMap<string, CachedResource>, CachedResource[]>();
function everyResource(resources: ReadonlyMap<string, CachedResource>): CachedResource[] {
  let all = wholeSets.get(resources);
  if (all === undefined) {
    all = [...resources.values()];
    wholeSets.set(resources, all);
  }
  return all;
}

/** What is new or changed in `next` since `previous`, computed once per pair of snapshots, not per stream. */
const changes = new WeakMap<ReadonlyMap<string, CachedResource>, WeakMap<ReadonlyMap<string, CachedResource>, CachedResource[]>>();
function changedBetween(previous: ReadonlyMap<string, CachedResource>, next: ReadonlyMap<string, CachedResource>): CachedResource[] {
  let byNext = changes.get(previous);
  if (byNext === undefined) {
    byNext = new WeakMap();
    changes.set(previous, byNext);
  }
  let changed = byNext.get(next);
  if (changed === undefined) {
    changed = everyResource(next).filter((resource) => previous.get(resource.name)?.version !== resource.version);
    byNext.set(next, changed);
  }
  return changed;
}
