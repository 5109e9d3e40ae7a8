import { TypeUrl } from '../envoy/resources.js';
import { AdsStream, type AdsStreamOptions } from './ads-stream.js';
import { versionOfSet, type CachedResource, type TypeSnapshot } from './cache.js';
import { NO_RESOURCES, changedBetween, everyResource, goneBetween, goneNamesBetween } from './snapshot-diff.js';
import { WILDCARD, allowsLegacyWildcard, assignmentNamesOf } from './subscription.js';
import { deltaResponse, type DeltaDiscoveryRequest, type WireMessage } from './wire.js';

/**
 * What a client holds of one type, name → version. While it holds exactly a snapshot's resources
 * (the usual case: a wildcard or whole subscription that took every response), that is the
 * snapshot's own map, shared by every such stream; changes made to it afterwards (a resource to
 * send again, an unsubscription) go in an overlay, so a stream never copies a thousand entries.
 */
class KnownVersions {
  /** The snapshot map the client holds, before `overlay`. */
  private base: ReadonlyMap<string, CachedResource> = NO_RESOURCES;
  /** name → version, or undefined when the client no longer holds it (as far as we know). */
  private overlay = new Map<string, string | undefined>();

  constructor(initial: Iterable<[string, string]>) {
    for (const [name, version] of initial) this.overlay.set(name, version);
  }

  /** The snapshot the client holds exactly, if it does. */
  get at(): ReadonlyMap<string, CachedResource> | undefined {
    return this.overlay.size === 0 ? this.base : undefined;
  }

  /** The client now holds exactly `resources`. */
  adopt(resources: ReadonlyMap<string, CachedResource>): void {
    this.base = resources;
    if (this.overlay.size > 0) this.overlay = new Map();
  }

  get(name: string): string | undefined {
    return this.overlay.has(name) ? this.overlay.get(name) : this.base.get(name)?.version;
  }

  set(name: string, version: string): void {
    if (this.base.get(name)?.version === version) this.overlay.delete(name);
    else this.overlay.set(name, version);
  }

  delete(name: string): void {
    if (this.base.has(name)) this.overlay.set(name, undefined);
    else this.overlay.delete(name);
  }

  /**
   * When the client holds `resources` but for the overlay (a resource to send again after an
   * update of its cluster): what it lacks and what it holds that `resources` has not, read off
   * the overlay alone. Undefined otherwise.
   */
  lacking(resources: ReadonlyMap<string, CachedResource>): { updated: CachedResource[]; gone: string[] } | undefined {
    if (this.base !== resources) return undefined;
    const updated: CachedResource[] = [];
    const gone: string[] = [];
    for (const [name, version] of this.overlay) {
      const resource = resources.get(name);
      if (resource === undefined) {
        if (version !== undefined) gone.push(name);
      } else if (resource.version !== version) updated.push(resource);
    }
    return { updated, gone };
  }

  *names(): IterableIterator<string> {
    for (const name of this.base.keys()) if (!this.overlay.has(name) || this.overlay.get(name) !== undefined) yield name;
    for (const [name, version] of this.overlay) if (version !== undefined && !this.base.has(name)) yield name;
  }
}

/** One delta response as every stream that goes from one snapshot to the next can send it. */
interface SharedDelta {
  readonly message: WireMessage;
  readonly nonce: string;
  readonly updated: CachedResource[];
}

/**
 * Delta responses shared by streams, keyed by the snapshot each stream held and the one it is
 * brought to: a thousand wildcard streams cost one encode per change and write the same
 * bytes (a nonce need only be unique within a stream, so one serves them all).
 */
const sharedDeltas = new WeakMap<ReadonlyMap<string, CachedResource>, WeakMap<ReadonlyMap<string, CachedResource>, SharedDelta>>();
let sharedSequence = 0;

function sharedDelta(typeUrl: string, from: ReadonlyMap<string, CachedResource>, to: TypeSnapshot, updated: CachedResource[], removed: readonly string[]): SharedDelta {
  let byTo = sharedDeltas.get(from);
  if (byTo === undefined) {
    byTo = new WeakMap();
    sharedDeltas.set(from, byTo);
  }
  let shared = byTo.get(to.resources);
  if (shared === undefined) {
    // Not a stream's own counter: those are decimal, this one never collides with them.
    const nonce = `d${(++sharedSequence).toString(36)}`;
    shared = { message: deltaResponse({ typeUrl, systemVersion: to.version, resources: updated, removed, nonce }), nonce, updated };
    byTo.set(to.resources, shared);
  }
  return shared;
}

/**
 * Responses that send a few resources of a snapshot again to streams that hold the rest of it
 * (the assignments of updated EDS clusters, which Envoy waits for: see assignmentNamesOf), by
 * snapshot and names. Such a resend follows every cluster edit on every stream; shared, it is
 * one encode and the same bytes for the fleet, as the change that caused it. A snapshot keeps a
 * few name sets only: an assignment snapshot outlives many cluster edits.
 */
const sharedResends = new WeakMap<ReadonlyMap<string, CachedResource>, Map<string, SharedDelta>>();
const RESENDS_KEPT = 16;

function sharedResendOf(typeUrl: string, to: TypeSnapshot, names: readonly string[], count: number): SharedDelta | undefined {
  let byNames = sharedResends.get(to.resources);
  if (byNames === undefined) {
    byNames = new Map();
    sharedResends.set(to.resources, byNames);
  }
  // One name (one cluster edited) is its own key: found without building anything.
  const single = count === 1 ? (names[0] as string) : undefined;
  if (single !== undefined) {
    const known = byNames.get(single);
    if (known !== undefined) return known;
  }
  const updated = resourcesNamed(names, count, to.resources);
  if (updated.length === 0) return undefined;
  const key = updated.length === 1 ? (updated[0] as CachedResource).name : updated.map((resource) => resource.name).sort().join('\n');
  let shared = byNames.get(key);
  if (shared === undefined) {
    const nonce = `d${(++sharedSequence).toString(36)}`;
    shared = { message: deltaResponse({ typeUrl, systemVersion: to.version, resources: updated, removed: [], nonce }), nonce, updated };
    byNames.set(key, shared);
    if (byNames.size > RESENDS_KEPT) byNames.delete(byNames.keys().next().value as string);
  }
  return shared;
}

/** Unanswered nonces kept per type; Envoy ACKs each delta response, usually at once. */
const MAX_OUTSTANDING_NONCES = 64;

/** A response sent and not yet ACKed or NACKed; the record is Outstanding's, reused for a later response. */
interface SentResponse {
  nonce: string;
  /** The system version of the response. */
  version: string;
  /** The view's version it stands for (moved on when a later change needs nothing sent: respond()). */
  viewVersion: string;
  /** The resources it updated. */
  updated: CachedResource[];
}

/**
 * The responses of one type awaiting a reply, oldest first: none or one nearly always, so a short
 * array searched from the end, not a Map (a Map's entry added and deleted per response and ACK
 * reallocates its table each time: a thousand streams' garbage per push). Its slots are kept and
 * overwritten: an array shortened to nothing gives its storage back, and the next push allocates
 * it again. So are the records in them: a record taken (its reply came) moves past the last
 * response, where the next add() fills it in again, one object per stream per push fewer.
 */
class Outstanding {
  private readonly slots: (SentResponse | undefined)[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The newest response awaiting a reply. */
  get last(): SentResponse | undefined {
    return this.count === 0 ? undefined : this.slots[this.count - 1];
  }

  has(nonce: string): boolean {
    return this.indexOf(nonce) !== -1;
  }

  /** Keeps the response until its reply; the oldest is forgotten past MAX_OUTSTANDING_NONCES. */
  add(nonce: string, version: string, viewVersion: string, updated: CachedResource[]): void {
    if (this.count === MAX_OUTSTANDING_NONCES) this.removeAt(0);
    const record = this.slots[this.count];
    if (record === undefined) this.slots[this.count] = { nonce, version, viewVersion, updated };
    else {
      record.nonce = nonce;
      record.version = version;
      record.viewVersion = viewVersion;
      record.updated = updated;
    }
    this.count++;
  }

  /**
   * The response with `nonce`, no longer awaiting a reply; undefined for an unknown nonce. Read it
   * before the next add(), which reuses the record.
   */
  take(nonce: string): SentResponse | undefined {
    const at = this.indexOf(nonce);
    if (at === -1) return undefined;
    const response = this.slots[at];
    this.removeAt(at);
    return response;
  }

  private removeAt(at: number): void {
    const removed = this.slots[at];
    for (let i = at; i < this.count - 1; i++) this.slots[i] = this.slots[i + 1];
    this.slots[--this.count] = removed;
  }

  private indexOf(nonce: string): number {
    for (let i = this.count - 1; i >= 0; i--) if (this.slots[i]?.nonce === nonce) return i;
    return -1;
  }
}

interface DeltaTypeState {
  wildcard: boolean;
  names: Set<string>;
  /** What `names` selected of a snapshot's map, until the names or the map change: an EDS subscription is a thousand names, re-read on every cluster edit. */
  selection: { readonly of: ReadonlyMap<string, CachedResource>; readonly resources: readonly CachedResource[] } | undefined;
  /** What the client holds: name → version (from initial_resource_versions, then what we sent). */
  known: KnownVersions;
  /** The responses awaiting an ACK or NACK. */
  outstanding: Outstanding;
  /**
   * Names to send again at the next push whether the client holds them or not (forgetSent), in
   * order: kept apart from `known` so that a client holding the whole snapshot keeps holding it
   * and takes the fleet's shared resend (respond()). The first `resendCount` slots: the array is
   * overwritten, never emptied (emptied, it gives its storage back, allocated again at the next
   * edit on every stream).
   */
  readonly resend: string[];
  resendCount: number;
  answered: boolean;
  /** The last reply was a NACK: the client still serves an older version. */
  rejected: boolean;
}

export type DeltaStreamOptions = AdsStreamOptions;

/**
 * One incremental (delta) ADS stream: per-resource versions, subscribe/unsubscribe, removals
 * in removed_resources, and only the resources whose version the client does not hold.
 */
export class DeltaStream extends AdsStream<DeltaDiscoveryRequest, DeltaTypeState, true> {
  /** Both carry removals that waited for the release (mayRemove). */
  protected readonly heldBack = [TypeUrl.cluster, TypeUrl.endpoint];

  protected newState(request: DeltaDiscoveryRequest): DeltaTypeState {
    return { wildcard: false, names: new Set(), selection: undefined, known: new KnownVersions(request.initialResourceVersions), outstanding: new Outstanding(), resend: [], resendCount: 0, answered: false, rejected: false };
  }

  protected acceptReply(state: DeltaTypeState, request: DeltaDiscoveryRequest): boolean {
    const { hooks, logger } = this.options;
    // Delta requests that carry a nonce are ACKs or NACKs and nothing else (xDS protocol).
    // Its record is read before the hooks run: a push they cause reuses it.
    const sent = state.outstanding.take(request.responseNonce);
    if (sent === undefined) {
      logger.debug({ typeUrl: request.typeUrl, nonce: request.responseNonce }, 'xds: delta reply to an unknown nonce');
    } else if (request.errorDetail !== undefined) {
      state.rejected = true;
      hooks.nacked(request.typeUrl, sent.version, sent.viewVersion, request.errorDetail, sent.updated);
    } else {
      state.rejected = false;
      hooks.acked(request.typeUrl, sent.version, sent.viewVersion, sent.updated);
    }
    return true;
  }

  protected updateSubscription(state: DeltaTypeState, request: DeltaDiscoveryRequest, first: boolean): boolean {
    let changed = false;
    if (first && request.subscribe.length === 0 && allowsLegacyWildcard(request.typeUrl)) {
      state.wildcard = true;
      changed = true;
    }
    // Indexed: an ACK's empty lists make no iterator.
    for (let i = 0; i < request.subscribe.length; i++) {
      const name = request.subscribe[i] as string;
      if (name === WILDCARD) {
        changed ||= !state.wildcard;
        state.wildcard = true;
      } else if (!state.names.has(name)) {
        state.names.add(name);
        state.selection = undefined;
        changed = true;
      }
    }
    for (let i = 0; i < request.unsubscribe.length; i++) {
      const name = request.unsubscribe[i] as string;
      if (name === WILDCARD) {
        changed ||= state.wildcard;
        state.wildcard = false;
        continue;
      }
      if (state.names.delete(name)) state.selection = undefined;
      // Still wanted through the wildcard: the client keeps it, so we must keep tracking it.
      if (!state.wildcard) state.known.delete(name);
    }
    // Only a request that changes the subscription can leave the client holding what it no longer watches.
    if (!state.wildcard && (first || request.unsubscribe.length > 0 || changed)) {
      for (const name of [...state.known.names()]) if (!state.names.has(name)) state.known.delete(name);
    }
    return changed;
  }

  protected select(_typeUrl: string, state: DeltaTypeState, snapshot: TypeSnapshot): readonly CachedResource[] {
    if (state.wildcard) return everyResource(snapshot.resources);
    if (state.selection?.of === snapshot.resources) return state.selection.resources;
    const selected: CachedResource[] = [];
    for (const name of state.names) {
      const resource = snapshot.resources.get(name);
      if (resource !== undefined) selected.push(resource);
    }
    state.selection = { of: snapshot.resources, resources: selected };
    return selected;
  }

  protected respond(typeUrl: string, state: DeltaTypeState, inScope: readonly CachedResource[], snapshot: TypeSnapshot, viewVersion: string): void {
    // Every resource of the snapshot is in scope and nothing is held back: what the client is
    // sent, and holds afterwards, depends only on the snapshot it held and this one.
    const whole = inScope.length === snapshot.resources.size && this.held.size === 0;
    if (state.resendCount > 0) {
      if (whole && state.known.at === snapshot.resources && this.resendShared(typeUrl, state, snapshot, viewVersion)) return;
      // Otherwise the client is taken not to hold them, and the ways below send them.
      for (let i = 0; i < state.resendCount; i++) state.known.delete(state.resend[i] as string);
      state.resendCount = 0;
    }
    const from = whole ? state.known.at : undefined;
    const near = whole && from === undefined ? state.known.lacking(snapshot.resources) : undefined;
    // No closures here: one would make every call of respond() allocate a context (per stream, per push).
    const updated = from !== undefined ? changedBetween(from, snapshot.resources) : (near?.updated ?? lackedOf(state.known, inScope));
    const removed = from !== undefined ? goneNamesBetween(from, snapshot.resources) : (near?.gone ?? this.removable(typeUrl, state.known, snapshot.resources));
    // A wildcard client waits for a first response even when there is nothing to send.
    if (updated.length === 0 && removed.length === 0 && !(state.wildcard && !state.answered)) {
      if (whole && from === undefined) state.known.adopt(snapshot.resources);
      // Once the responses in flight are ACKed the client holds what the view's new version means for it.
      const last = state.outstanding.last;
      if (last !== undefined) last.viewVersion = viewVersion;
      else if (state.answered && !state.rejected) this.options.hooks.holds(typeUrl, viewVersion);
      return;
    }
    state.answered = true;
    // Both leave the client holding exactly the snapshot, at its version, whatever the stream.
    const shared =
      from !== undefined
        ? sharedDelta(typeUrl, from, snapshot, updated, removed)
        : near !== undefined && near.gone.length === 0 && removed.length === 0
          ? sharedResendOf(typeUrl, snapshot, namesOf(near.updated), near.updated.length)
          : undefined;
    if (shared !== undefined && !state.outstanding.has(shared.nonce)) {
      state.known.adopt(snapshot.resources);
      this.sendResponse(typeUrl, state, snapshot.version, viewVersion, shared.updated, removed.length, shared.nonce, shared.message);
      return;
    }
    for (const resource of updated) state.known.set(resource.name, resource.version);
    for (const name of removed) state.known.delete(name);
    // Held clusters are part of what the client holds, so of the version it acknowledges.
    const held = typeUrl === TypeUrl.cluster && this.held.size > 0 ? this.heldAsKnown(state.known) : NO_HELD;
    // Every resource of the snapshot and nothing else: the snapshot's version, without a hash per stream.
    const version = (state.wildcard || whole) && held.length === 0 ? snapshot.version : versionOfSet([...inScope, ...held]);
    // It holds the whole snapshot now (removals were all made): later changes take the shared way.
    if (whole) state.known.adopt(snapshot.resources);
    const nonce = this.nextNonce();
    this.sendResponse(typeUrl, state, version, viewVersion, updated, removed.length, nonce, deltaResponse({ typeUrl, systemVersion: version, resources: updated, removed, nonce }));
  }

  /**
   * The client holds exactly `snapshot` and is to be sent some of it again (the assignments of
   * updated clusters): the same response as every such stream, and it still holds the snapshot
   * afterwards. False when that cannot be (nothing of it is in the snapshot, or this stream has
   * that very response unanswered): the caller sends them its own way.
   */
  private resendShared(typeUrl: string, state: DeltaTypeState, snapshot: TypeSnapshot, viewVersion: string): boolean {
    const shared = sharedResendOf(typeUrl, snapshot, state.resend, state.resendCount);
    if (shared === undefined) return false;
    if (state.outstanding.has(shared.nonce)) return false;
    state.resendCount = 0;
    state.answered = true;
    this.sendResponse(typeUrl, state, snapshot.version, viewVersion, shared.updated, 0, shared.nonce, shared.message);
    return true;
  }

  private sendResponse(typeUrl: string, state: DeltaTypeState, version: string, viewVersion: string, updated: CachedResource[], removed: number, nonce: string, message: WireMessage): void {
    state.outstanding.add(nonce, version, viewVersion, updated);
    this.deliver(typeUrl, message);
    this.options.hooks.sent(typeUrl, version);
    const { logger } = this.options;
    if (logger.isLevelEnabled('debug')) logger.debug({ typeUrl, version, nonce, updated: updated.length, removed }, 'xds: delta response sent');
    if (typeUrl === TypeUrl.cluster) this.resendAssignments(assignmentNamesOf(updated));
  }

  protected holdGone(clusters: DeltaTypeState, current: ReadonlyMap<string, CachedResource>): void {
    const at = clusters.known.at;
    if (at !== undefined) {
      const gone = goneNamesBetween(at, current);
      for (let i = 0; i < gone.length; i++) this.held.hold(gone[i] as string, true);
      return;
    }
    for (const name of [...clusters.known.names()]) if (!current.has(name)) this.held.hold(name, true);
  }

  /** What the client holds that `resources` has not and may be removed now. */
  private removable(typeUrl: string, known: KnownVersions, resources: ReadonlyMap<string, CachedResource>): string[] {
    const removed: string[] = [];
    for (const name of known.names()) if (!resources.has(name) && this.mayRemove(typeUrl, name)) removed.push(name);
    return removed;
  }

  /** The held clusters with the versions the client holds of them, for the version of what it holds. */
  private heldAsKnown(known: KnownVersions): { name: string; version: string }[] {
    const held: { name: string; version: string }[] = [];
    for (const [name] of this.held.entries()) held.push({ name, version: known.get(name) ?? '' });
    return held;
  }

  /** While any cluster is held, assignment removals wait too: they would empty it. */
  private mayRemove(typeUrl: string, name: string): boolean {
    if (typeUrl === TypeUrl.cluster) return !this.held.has(name);
    if (typeUrl === TypeUrl.endpoint) return this.held.size === 0;
    return true;
  }

  protected isSettled(state: DeltaTypeState): boolean {
    return state.outstanding.size === 0 && !state.rejected;
  }

  protected forgetSent(state: DeltaTypeState, name: string): void {
    state.resend[state.resendCount++] = name;
  }
}

const NO_HELD: readonly { name: string; version: string }[] = [];

/** The resources of `inScope` whose version the client does not hold. */
function lackedOf(known: KnownVersions, inScope: readonly CachedResource[]): CachedResource[] {
  const lacked: CachedResource[] = [];
  for (let i = 0; i < inScope.length; i++) {
    const resource = inScope[i] as CachedResource;
    if (known.get(resource.name) !== resource.version) lacked.push(resource);
  }
  return lacked;
}

function namesOf(resources: readonly CachedResource[]): string[] {
  const names: string[] = [];
  for (let i = 0; i < resources.length; i++) names.push((resources[i] as CachedResource).name);
  return names;
}

/** The resources of `resources` named in the first `count` of `names`, in the order named, each once. */
function resourcesNamed(names: readonly string[], count: number, resources: ReadonlyMap<string, CachedResource>): CachedResource[] {
  const found: CachedResource[] = [];
  // A cluster edit resends a name or a few; a large batch is deduplicated by a set.
  const seen = count > 16 ? new Set<string>() : undefined;
  for (let i = 0; i < count; i++) {
    const name = names[i] as string;
    if (seen !== undefined ? seen.has(name) : names.indexOf(name) !== i) continue;
    seen?.add(name);
    const resource = resources.get(name);
    if (resource !== undefined) found.push(resource);
  }
  return found;
}
