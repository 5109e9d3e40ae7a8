import { TypeUrl } from '../envoy/resources.js';
import { AdsStream, type AdsStreamOptions } from './ads-stream.js';
import { versionOfSet, type CachedResource, type TypeSnapshot } from './cache.js';
import { LayeredMap } from './layered-map.js';
import { changedBetween, everyResource, goneBetween } from './snapshot-diff.js';
import { WILDCARD, absenceMeansRemoval, allowsLegacyWildcard, assignmentNamesOf } from './subscription.js';
import { sotwResponseBody, withNonce, type DiscoveryRequest, type WireMessage } from './wire.js';

/** One SotW response as every stream that gets this exact set can send it. */
export interface SharedResponse {
  /** The DiscoveryResponse without a nonce. */
  readonly body: WireMessage;
  /** The body with a nonce of its own: the very pieces written to every stream it suits. */
  readonly message: WireMessage;
  readonly nonce: string;
}

/** The same response under two shared nonces, for a stream that is sent it twice in a row. */
interface SharedPair {
  readonly first: SharedResponse;
  second: SharedResponse | undefined;
}

/**
 * Partial responses (the assignments re-sent after CDS, see respond) kept per type of a version
 * that stays put while another type changes: a bound on what a long run of edits leaves here.
 */
const MAX_PARTIAL_BODIES = 256;
/** Separates a partial response's key from its version. */
const PARTIAL = '\u0000';

/**
 * Responses shared by every SotW stream of the server, keyed by type and content: a thousand
 * clients cost one encode per change, and the same Buffer goes to each of them (a nonce need
 * only differ from the stream's previous one, so one nonce serves every stream, and a second one
 * every stream sent the same response twice in a row).
 */
export class SharedResponseBodies {
  private readonly bodies = new Map<string, Map<string, SharedPair>>();
  private readonly partials = new Map<string, number>();
  private sequence = 0;

  /**
   * The response of `version` carrying `resources`; `key` tells it from other responses of the
   * same version (a partial one); `previousNonce`: the stream's last nonce, which this one must not repeat.
   */
  get(typeUrl: string, version: string, resources: readonly CachedResource[], key = version, previousNonce?: string): SharedResponse {
    let byKey = this.bodies.get(typeUrl);
    if (byKey === undefined) {
      byKey = new Map();
      this.bodies.set(typeUrl, byKey);
    }
    let pair = byKey.get(key);
    if (pair === undefined) {
      if (key !== version) {
        const partials = (this.partials.get(typeUrl) ?? 0) + 1;
        this.partials.set(typeUrl, partials);
        if (partials > MAX_PARTIAL_BODIES) {
          for (const k of [...byKey.keys()]) if (k.includes(PARTIAL)) byKey.delete(k);
          this.partials.set(typeUrl, 1);
        }
      }
      pair = { first: this.encode(sotwResponseBody(typeUrl, version, resources)), second: undefined };
      byKey.set(key, pair);
    }
    if (previousNonce !== pair.first.nonce) return pair.first;
    pair.second ??= this.encode(pair.first.body);
    return pair.second;
  }

  /** Drops the responses of types that changed; the subsets of the old version are not asked for again. */
  invalidate(typeUrls: readonly string[]): void {
    for (const typeUrl of typeUrls) {
      this.bodies.delete(typeUrl);
      this.partials.delete(typeUrl);
    }
  }

  private encode(body: WireMessage): SharedResponse {
    // Not a stream's own counter: those are decimal, this one never collides with them.
    const nonce = `s${(++this.sequence).toString(36)}`;
    return { body, message: withNonce(body, nonce), nonce };
  }
}

interface SotwTypeState {
  wildcard: boolean;
  /** Read only: streams that asked for the same names in the same decoded request share it (explicitNames). */
  names: ReadonlySet<string>;
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
  /** `sent` as a list, for ACK and NACK events: built once per response, not per reply. */
  sentList: readonly CachedResource[];
  /** The resource names of the last request, as sent: an ACK that names the same ones changes nothing. */
  requested: readonly string[] | undefined;
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
    return { wildcard: false, names: new Set(), lastNonce: undefined, lastVersion: undefined, lastViewVersion: '', sent: new Map(), sentShared: false, sentList: [], requested: undefined, settled: true };
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
      hooks.nacked(request.typeUrl, version, state.lastViewVersion, request.errorDetail, state.sentList);
    } else {
      state.settled = true;
      hooks.acked(request.typeUrl, request.versionInfo, state.lastViewVersion, state.sentList);
    }
    return true;
  }

  protected updateSubscription(state: SotwTypeState, request: DiscoveryRequest, first: boolean): boolean {
    const names = request.resourceNames;
    // Every ACK repeats the subscription: a thousand assignment names a stream, a thousand streams.
    if (!first && sameNames(names, state.requested)) return false;
    state.requested = names;
    const wildcard = names.includes(WILDCARD) || (names.length === 0 && allowsLegacyWildcard(request.typeUrl) && (first || state.wildcard));
    const explicit = explicitNames(names);
    const changed = wildcard !== state.wildcard || !sameSet(explicit, state.names);
    state.wildcard = wildcard;
    state.names = explicit;
    // A client drops what it unsubscribes from; if it asks again it must be sent again.
    if (!wildcard) {
      for (const name of state.sent.keys()) if (!explicit.has(name)) ownSent(state).delete(name);
    }
    return changed;
  }

  protected select(typeUrl: string, state: SotwTypeState, snapshot: TypeSnapshot): readonly CachedResource[] {
    const selected: CachedResource[] = [];
    if (state.wildcard) {
      const all = everyResource(snapshot.resources);
      if (!this.holding(typeUrl, state)) return all;
      selected.push(...all);
    } else if (this.held.size === 0) {
      // Nothing held back: the selection depends on the names and the snapshot only.
      return namedSelection(state.names, snapshot.resources);
    } else {
      for (const name of state.names) {
        const resource = snapshot.resources.get(name) ?? this.stillServed(typeUrl, state, name);
        if (resource !== undefined) selected.push(resource);
      }
    }
    if (this.holding(typeUrl, state)) for (const [, resource] of this.held.entries()) selected.push(resource);
    return selected;
  }

  protected respond(typeUrl: string, state: SotwTypeState, selected: readonly CachedResource[], snapshot: TypeSnapshot, viewVersion: string): void {
    const holding = this.holding(typeUrl, state);
    const whole = state.wildcard && !holding && selected.length === snapshot.resources.size;
    // A stream sent nothing yet lacks all it selected: the very list the fleet shares, so that what
    // is worked out of it (assignmentNamesOf) is worked out once, not per stream.
    const updated =
      state.sent.size === 0
        ? selected
        : whole && state.sentShared
          ? changedBetween(state.sent, snapshot.resources)
          : lackedOf(state, selected);
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
    const version = state.wildcard && !holding ? snapshot.version : versionOfSelection(selected, snapshot);
    // Only LDS and CDS responses must carry every resource the client holds (xDS protocol,
    // "Resource types and state of the world"); the others carry what it lacks: the assignments
    // re-sent after a cluster update are a handful, not every one, and the same few for every stream.
    const partial = !absenceMeansRemoval(typeUrl) && state.lastNonce !== undefined && updated.length < selected.length;
    const shared = partial
      ? this.bodies.get(typeUrl, version, updated, `${version}${PARTIAL}${versionOfSet(updated)}`, state.lastNonce)
      : this.bodies.get(typeUrl, version, selected, version, state.lastNonce);
    state.lastNonce = shared.nonce;
    state.lastVersion = version;
    state.lastViewVersion = viewVersion;
    state.settled = false;
    if (whole) {
      state.sent = snapshot.resources;
      state.sentList = everyResource(snapshot.resources);
    } else {
      state.sent = sentAfter(state, selected, updated);
      state.sentList = selected;
    }
    state.sentShared = whole;
    this.deliver(typeUrl, shared.message);
    this.options.hooks.sent(typeUrl, version);
    const { logger } = this.options;
    if (logger.isLevelEnabled('debug')) logger.debug({ typeUrl, version, nonce: shared.nonce, resources: partial ? updated.length : selected.length }, 'xds: sotw response sent');
    if (typeUrl === TypeUrl.cluster) this.resendAssignments(assignmentNamesOf(updated));
  }

  private holding(typeUrl: string, state: SotwTypeState): boolean {
    return typeUrl === TypeUrl.cluster && state.wildcard && this.held.size > 0;
  }

  /** Subscribed clusters gone from the configuration are kept, as last sent, while routes may name them. */
  protected holdGone(clusters: SotwTypeState, current: ReadonlyMap<string, CachedResource>): void {
    const gone = clusters.sentShared ? goneBetween(clusters.sent, current) : clusters.sent;
    for (const [name, resource] of gone) {
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
    if (!state.sent.has(name)) return;
    if (state.sent instanceof ForgottenSent) state.sent.forget(name);
    else if (state.sentShared || !(state.sent instanceof Map)) {
      // The assignments re-sent after a cluster update: a name or a few out of the map the fleet
      // shares, not a copy of its 10,000 names a stream.
      state.sent = new ForgottenSent(state.sent, name);
      state.sentShared = false;
    } else state.sent.delete(name);
  }
}

/**
 * What a stream was sent when that is a map other streams share (a selection's, selectionMap, or
 * a snapshot's) less the few names forgotten since (forgetSent): this stream's own, never shared,
 * and never changed but by forget(). What it lacks of a selection is worked out from the shared
 * map once for the fleet (lackedOf), and the names forgotten are looked up alone.
 */
class ForgottenSent implements ReadonlyMap<string, CachedResource> {
  readonly forgotten = new Set<string>();
  size: number;

  constructor(
    readonly base: ReadonlyMap<string, CachedResource>,
    name: string,
  ) {
    this.size = base.size;
    this.forget(name);
  }

  forget(name: string): void {
    if (this.forgotten.has(name) || !this.base.has(name)) return;
    this.forgotten.add(name);
    this.size--;
  }

  get(name: string): CachedResource | undefined {
    return this.forgotten.has(name) ? undefined : this.base.get(name);
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  *entries(): MapIterator<[string, CachedResource]> {
    for (const entry of this.base.entries()) if (!this.forgotten.has(entry[0])) yield entry;
  }

  *keys(): MapIterator<string> {
    for (const [name] of this.entries()) yield name;
  }

  *values(): MapIterator<CachedResource> {
    for (const [, resource] of this.entries()) yield resource;
  }

  [Symbol.iterator](): MapIterator<[string, CachedResource]> {
    return this.entries();
  }

  forEach(callback: (value: CachedResource, key: string, map: ReadonlyMap<string, CachedResource>) => void, thisArg?: unknown): void {
    for (const [name, resource] of this.entries()) callback.call(thisArg, resource, name, this);
  }
}

/**
 * What the stream lacks of `selected` (notSent). A fleet's EDS streams were sent the one map of the
 * last selection, less the assignments a cluster update forgets, and select the one new
 * selection: the lookups of every selected name are made once for the fleet (sharedLack), not
 * 10,000 a stream (issue 9: about a millisecond a stream at 10,000 Backends x 100 SotW streams).
 */
function lackedOf(state: SotwTypeState, selected: readonly CachedResource[]): readonly CachedResource[] {
  const sent = state.sent;
  if (sent instanceof ForgottenSent) {
    if (!fleetSelections.has(selected)) return notSent(sent, selected);
    const lacked = sharedLack(sent.base, selected);
    const byName = selectionMap(selected);
    let forgotten: CachedResource[] | undefined;
    for (const name of sent.forgotten) {
      const resource = byName.get(name);
      // Not lacked already: the shared map has it at the selected version.
      if (resource !== undefined && sent.base.get(name)?.version === resource.version) (forgotten ??= []).push(resource);
    }
    return forgotten === undefined ? lacked : [...lacked, ...forgotten];
  }
  // A map of this stream's own, changed in place (sentAfter): nothing to share.
  if (sent instanceof Map && !state.sentShared) return notSent(sent, selected);
  return sharedLack(sent, selected);
}

/** What a shared map, read only, lacks of `selected`: worked out once per pair, for every stream that has both. */
const lacks = new WeakMap<ReadonlyMap<string, CachedResource>, { selected: readonly CachedResource[]; lacked: readonly CachedResource[] }>();

function sharedLack(sent: ReadonlyMap<string, CachedResource>, selected: readonly CachedResource[]): readonly CachedResource[] {
  const known = lacks.get(sent);
  if (known !== undefined && known.selected === selected) return known.lacked;
  const lacked = notSent(sent, selected);
  lacks.set(sent, { selected, lacked });
  return lacked;
}

/**
 * The resources of `selected` whose version differs from what was sent. Not a closure in
 * respond(): that would make each of its calls (per stream, per push) allocate a context.
 */
function notSent(sent: ReadonlyMap<string, CachedResource>, selected: readonly CachedResource[]): CachedResource[] {
  const lacked: CachedResource[] = [];
  for (let i = 0; i < selected.length; i++) {
    const resource = selected[i] as CachedResource;
    if (sent.get(resource.name)?.version !== resource.version) lacked.push(resource);
  }
  return lacked;
}

/** `state.sent`, made this stream's own (a copy of the shared snapshot map) before it is changed. */
function ownSent(state: SotwTypeState): Map<string, CachedResource> {
  if (state.sentShared || !(state.sent instanceof Map)) {
    state.sent = new Map(state.sent);
    state.sentShared = false;
  }
  return state.sent as Map<string, CachedResource>;
}

/** Whether two sets hold the same names (a helper, not a closure: see notSent). */
function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const name of a) if (!b.has(name)) return false;
  return true;
}

/** Whether a request names the same resources, in the same order, as the previous one. */
function sameNames(names: readonly string[], previous: readonly string[] | undefined): boolean {
  if (previous === undefined || names.length !== previous.length) return false;
  for (let i = 0; i < names.length; i++) if (names[i] !== previous[i]) return false;
  return true;
}

/**
 * The version of `selected`: the snapshot's own when it is the whole snapshot (a named
 * subscription to every assignment, the usual EDS case), saving a sort and a hash per stream.
 */
function versionOfSelection(selected: readonly CachedResource[], snapshot: TypeSnapshot): string {
  const known = selectionVersions.get(selected);
  if (known !== undefined && known.snapshot === snapshot) return known.version;
  const version = selected.length === snapshot.resources.size && selected.every((resource) => snapshot.resources.get(resource.name) === resource) ? snapshot.version : versionOfSet(selected);
  selectionVersions.set(selected, { snapshot, version });
  return version;
}

/*
 * A fleet that connects asks for the same thousand assignments in one shared decoded request
 * (server.ts, RecentRequests): the set of those names, the resources they select from a snapshot
 * and the version of that selection are worked out once for the fleet, not once a stream (about
 * a third of a millisecond each at 1,000 Backends). All three are read only once made.
 */
const explicitSets = new WeakMap<readonly string[], ReadonlySet<string>>();
const selections = new WeakMap<ReadonlySet<string>, { resources: ReadonlyMap<string, CachedResource>; selected: readonly CachedResource[] }>();
const selectionVersions = new WeakMap<readonly CachedResource[], { snapshot: TypeSnapshot; version: string }>();

const selectionMaps = new WeakMap<readonly CachedResource[], ReadonlyMap<string, CachedResource>>();
/** Selections shared by the streams of a fleet (namedSelection): worth a map by name (selectionMap) for lackedOf. */
const fleetSelections = new WeakSet<readonly CachedResource[]>();

function selectionMap(selected: readonly CachedResource[]): ReadonlyMap<string, CachedResource> {
  let map = selectionMaps.get(selected);
  if (map === undefined) {
    map = new LayeredMap(new Map(selected.map((resource) => [resource.name, resource])), new Map<string, CachedResource | undefined>());
    selectionMaps.set(selected, map);
  }
  return map;
}

function explicitNames(names: readonly string[]): ReadonlySet<string> {
  let set = explicitSets.get(names);
  if (set === undefined) {
    set = new Set(names.filter((name) => name !== WILDCARD));
    explicitSets.set(names, set);
  }
  return set;
}

function namedSelection(names: ReadonlySet<string>, resources: ReadonlyMap<string, CachedResource>): readonly CachedResource[] {
  const known = selections.get(names);
  if (known !== undefined && known.resources === resources) return known.selected;
  const selected: CachedResource[] = [];
  for (const name of names) {
    const resource = resources.get(name);
    if (resource !== undefined) selected.push(resource);
  }
  selections.set(names, { resources, selected });
  fleetSelections.add(selected);
  return selected;
}

/** What a stream holds once sent `updated` out of `selected`: its map updated in place when that gives the same set. */
function sentAfter(state: SotwTypeState, selected: readonly CachedResource[], updated: readonly CachedResource[]): ReadonlyMap<string, CachedResource> {
  // A stream's first response of a named set: the one map of that selection, read only, for every
  // stream sent it (not a Map: ownSent copies it before this stream changes it).
  if (state.sent.size === 0 && updated.length === selected.length) return selectionMap(selected);
  if ((state.sentShared || !(state.sent instanceof Map)) && fleetSelections.has(selected)) {
    // A map this stream may not change (shared, or a ForgottenSent): every selected name is in it
    // or updated (lackedOf), so as many names as selected means no other, and the fleet's one map
    // of the selection stands for it, not a copy a stream.
    let size = state.sent.size;
    for (let i = 0; i < updated.length; i++) if (state.sent.get((updated[i] as CachedResource).name) === undefined) size++;
    if (size === selected.length) return selectionMap(selected);
  }
  if (!state.sentShared && state.sent.size + updated.length >= selected.length) {
    const sent = ownSent(state);
    for (const resource of updated) sent.set(resource.name, resource);
    // Every selected resource is in it now; the same size means nothing else is.
    if (sent.size === selected.length) return sent;
  }
  return new Map(selected.map((resource) => [resource.name, resource]));
}
