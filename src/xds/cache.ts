import { hash as digestOf } from 'node:crypto';
import type { DataPlanes, ResourceNames } from '../envoy/data-planes.js';
import { EncodedResource, bytesVersion, encodedForm } from '../envoy/encoded.js';
import { encodeResourceAny, keepLastEncoded, keepLastEncodedIn } from '../envoy/proto.js';
import { withChanges } from './layered-map.js';
import { knownEveryResource, rememberEveryResource } from './snapshot-diff.js';
import {
  KIND_FIELD,
  PUSH_ORDER,
  TypeUrl,
  resourceName,
  type EnvoyResource,
  type ResourceKind,
  type TypeUrlValue,
  type XdsResources,
} from '../envoy/resources.js';

/**
 * One resource as served: its JSON (or a stand-in holding only its bytes: encodedStandIn), its
 * content version, and its bytes, encoded once. The cache's records are EncodedResources (a
 * stand-in's own record when it came encoded): `any` is a view made on first read and kept, which
 * a response's run replaces (keepIn).
 */
export interface CachedResource {
  readonly typeUrl: TypeUrlValue;
  readonly name: string;
  /** A hash of the resource's encoded bytes: equal content gives an equal version, across restarts too. */
  readonly version: string;
  readonly resource: EnvoyResource;
  /** The resource wrapped in a google.protobuf.Any, ready to be spliced into any response. */
  readonly any: Uint8Array;
}

/** Every resource of one type at one version. */
export interface TypeSnapshot {
  readonly typeUrl: TypeUrlValue;
  readonly kind: ResourceKind;
  /** versionOfSet over every resource of the type. */
  readonly version: string;
  readonly resources: ReadonlyMap<string, CachedResource>;
}

export interface CacheChange {
  /** The types whose version changed in the whole configuration, in PUSH_ORDER (make-before-break). */
  readonly changed: readonly TypeUrlValue[];
  /** Per view that changed: its types whose version changed, in PUSH_ORDER. Views that did not change are absent. */
  readonly views: ReadonlyMap<CacheView, readonly TypeUrlValue[]>;
}

/** The key of the view of an Envoy that names no Gateway: every Gateway (the shared data plane). */
export const SHARED_VIEW = '';

/**
 * What one data plane receives: a Gateway's own Envoys get that Gateway's resources; an Envoy
 * that names no Gateway gets the shared view. Resources are the cache's own objects (encoded
 * once, the same bytes in every view); versions are the view's own (versionOfSet over its subset).
 */
export interface CacheView {
  /** The Gateway ("namespace/name"), or SHARED_VIEW. */
  readonly key: string;
  /** The configuration has this Gateway (always true for the shared view); an unknown one is empty until it appears. */
  readonly known: boolean;
  /** Why resources are left out of this view (the shared view: ports two Gateways want). */
  readonly problems: readonly string[];
  /** Served the legacy attempt facts form at its last rebuild (AttemptForms). */
  readonly legacy: boolean;
  snapshot(typeUrl: string): TypeSnapshot | undefined;
}

const NONE: ResourceNames = { listeners: [], routes: [], clusters: [], endpoints: [], secrets: [] };

/** One view's snapshots, rebuilt from the whole configuration after each change. */
class DataPlaneView implements CacheView {
  known = false;
  /** Served the legacy attempt facts form (AttemptForms) at its last rebuild. */
  legacy = false;
  problems: readonly string[] = [];
  private snapshots = new Map<TypeUrlValue, TypeSnapshot>();
  /** Per type: the names this view was last asked to select, and the same as a set. */
  private readonly selections = new Map<TypeUrlValue, { names: readonly string[]; set: ReadonlySet<string> }>();

  constructor(readonly key: string) {}

  snapshot(typeUrl: string): TypeSnapshot | undefined {
    return this.snapshots.get(typeUrl as TypeUrlValue);
  }

  /**
   * Selects this view's subset of `all`; returns the types whose version changed. `deltas`: per
   * type, the names whose resource changed in `all` since the last rebuild (absent: unknown), so
   * that a view whose selection did not change follows only those.
   */
  rebuild(all: ReadonlyMap<TypeUrlValue, TypeSnapshot>, planes: DataPlanes | undefined, deltas: ReadonlyMap<TypeUrlValue, ReadonlySet<string>>): TypeUrlValue[] {
    const shared = this.key === SHARED_VIEW;
    const selection = shared ? undefined : planes?.gateways.get(this.key);
    this.known = shared || selection !== undefined;
    this.problems = shared ? (planes?.shared.problems ?? []) : [];
    const changed: TypeUrlValue[] = [];
    const next = new Map<TypeUrlValue, TypeSnapshot>();
    for (const kind of PUSH_ORDER) {
      const typeUrl = TypeUrl[kind];
      const full = all.get(typeUrl);
      if (full === undefined) continue;
      const previous = this.snapshots.get(typeUrl);
      let snapshot: TypeSnapshot;
      if (shared) {
        const excluded = new Set(planes?.shared.excluded[KIND_FIELD[kind]] ?? []);
        snapshot = excluded.size === 0 ? full : subset(full, [...full.resources.keys()].filter((name) => !excluded.has(name)), previous);
      } else {
        const names = (selection ?? NONE)[KIND_FIELD[kind]];
        const last = this.selections.get(typeUrl);
        const delta = deltas.get(typeUrl);
        if (previous !== undefined && last !== undefined && delta !== undefined && sameNames(last.names, names)) {
          snapshot = patched(full, previous, last.set, delta);
        } else {
          snapshot = subset(full, names, previous);
        }
        if (last?.names !== names) this.selections.set(typeUrl, { names, set: last !== undefined && sameNames(last.names, names) ? last.set : new Set(names) });
      }
      next.set(typeUrl, snapshot);
      if (previous?.version !== snapshot.version) changed.push(typeUrl);
    }
    this.snapshots = next;
    return changed;
  }
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** `previous` (the subset of `selected` in the last full snapshot) brought up to `full`, visiting only the `changed` names. */
function patched(full: TypeSnapshot, previous: TypeSnapshot, selected: ReadonlySet<string>, changed: ReadonlySet<string>): TypeSnapshot {
  const changes = new Map<string, CachedResource | undefined>();
  let sum: SetSum | undefined;
  for (const name of changed) {
    if (!selected.has(name)) continue;
    const now = full.resources.get(name);
    const old = previous.resources.get(name);
    if (now === old) continue;
    sum ??= sumOf(previous);
    if (old !== undefined) addPair(sum, old, -1);
    if (now !== undefined) addPair(sum, now, 1);
    changes.set(name, now);
  }
  if (sum === undefined) return previous;
  const snapshot = snapshotOf(full.typeUrl, full.kind, withChanges(previous.resources, changes), sum);
  // Streams of this view send every resource: their list follows from the last one by the changes, without a pass over the map.
  const before = knownEveryResource(previous.resources);
  if (before !== undefined) rememberEveryResource(snapshot.resources, patchedList(before, previous.resources, changes));
  return snapshot;
}

/** `before` (the list of `had`) with `changes` applied: changed resources in place, removed ones left out, added ones at the end. */
function patchedList(before: readonly CachedResource[], had: ReadonlyMap<string, CachedResource>, changes: ReadonlyMap<string, CachedResource | undefined>): CachedResource[] {
  // An edit replaces a few resources: a copy with those in place costs two builtins (a copy and
  // a search by identity), where the walk below asks the map about every name. At 10,000
  // Clusters that walk, run for the first time, held a Gateway's first edit 10-50 ms (issue 9).
  const copy = replacedInPlace(before, had, changes);
  if (copy !== undefined) return copy;
  const list: CachedResource[] = [];
  for (const resource of before) {
    if (!changes.has(resource.name)) list.push(resource);
    else {
      const now = changes.get(resource.name);
      if (now !== undefined) list.push(now);
    }
  }
  for (const [name, now] of changes) if (now !== undefined && !had.has(name)) list.push(now);
  return list;
}

/** patchedList when every change replaces a resource `before` holds (none added or removed); otherwise undefined. */
function replacedInPlace(before: readonly CachedResource[], had: ReadonlyMap<string, CachedResource>, changes: ReadonlyMap<string, CachedResource | undefined>): CachedResource[] | undefined {
  if (changes.size > 8) return undefined;
  let list: CachedResource[] | undefined;
  for (const [name, now] of changes) {
    const old = had.get(name);
    if (now === undefined || old === undefined) return undefined;
    const at = before.indexOf(old);
    if (at < 0) return undefined;
    list ??= before.slice();
    list[at] = now;
  }
  return list;
}

/**
 * The resources of `full` named in `names` (absent names are skipped); `previous` is reused when
 * it holds exactly those. Its version follows from `previous`'s by what was added and removed.
 */
function subset(full: TypeSnapshot, names: readonly string[], previous: TypeSnapshot | undefined): TypeSnapshot {
  const resources = new Map<string, CachedResource>();
  const before = previous?.resources;
  const sum = previous === undefined ? emptySum() : sumOf(previous);
  let same = 0;
  let changed = false;
  for (const name of names) {
    const resource = full.resources.get(name);
    if (resource === undefined || resources.has(name)) continue;
    resources.set(name, resource);
    const old = before?.get(name);
    if (old === resource) {
      same++;
      continue;
    }
    changed = true;
    addPair(sum, resource, 1);
    if (old !== undefined) {
      same++;
      addPair(sum, old, -1);
    }
  }
  if (previous !== undefined && !changed && same === previous.resources.size) return previous;
  if (before !== undefined && same < before.size) {
    for (const [name, old] of before) if (!resources.has(name)) addPair(sum, old, -1);
  }
  return snapshotOf(full.typeUrl, full.kind, resources, sum);
}

/**
 * Resources of another form, of the same names as some the configuration has, served in their
 * place to the views named (the legacy attempt facts form of the AI clusters, for data planes
 * with an Envoy of the release before: src/xds/attempt-forms.ts, src/envoy/attempt-forms.ts).
 */
export interface AttemptForms {
  readonly views: ReadonlySet<string>;
  readonly resources: Pick<XdsResources, 'clusters' | 'endpoints'>;
}

/**
 * The cache's record of a resource of another form: a stand-in's own (what the Envoy stage builds,
 * src/envoy/attempt-forms.ts), else one encoded now, on every call.
 */
function formRecord(typeUrl: TypeUrlValue, resource: EnvoyResource): CachedResource {
  const form = encodedForm(resource);
  if (form !== undefined) return form;
  const version = bytesVersion(encodeResourceAny(resource, false));
  return new EncodedResource(typeUrl, resourceName(resource), version, keepLastEncoded(), resource);
}

/** Resources put in place between two asks of enough() (FormsOverlay.step): well under a millisecond of work. */
const FORM_CHECK_EVERY = 256;

/**
 * The configuration's snapshots of the form types (Clusters, ClusterLoadAssignments) with the
 * resources of another form in place of those of the same names (a name the configuration lacks
 * is not added), built in steps: at 10,000 AI Backends that is about 20,000 resources, 40-80 ms
 * of work in one go (src/xds/attempt-forms.ts says who needs it). Built over the snapshots the
 * cache had when it was made; once the configuration moved on, it is stale (builtOver).
 */
export class FormsOverlay {
  private readonly pending: { typeUrl: TypeUrlValue; main: TypeSnapshot; list: readonly EnvoyResource[]; at: number; sum: SetSum; changes: Map<string, CachedResource> }[] = [];
  private readonly built = new Map<TypeUrlValue, TypeSnapshot>();
  /** The configuration's snapshots of the form types it is built over (the cache's map changes; these objects do not). */
  private readonly over = new Map<TypeUrlValue, TypeSnapshot | undefined>();

  constructor(snapshots: ReadonlyMap<TypeUrlValue, TypeSnapshot>, readonly forms: AttemptForms) {
    for (const typeUrl of FORM_TYPES) {
      const main = snapshots.get(typeUrl);
      this.over.set(typeUrl, main);
      if (main === undefined) continue;
      const list = typeUrl === TypeUrl.cluster ? forms.resources.clusters : forms.resources.endpoints;
      this.pending.push({ typeUrl, main, list, at: 0, sum: sumOf(main), changes: new Map() });
    }
  }

  /** Puts resources in place until `enough()` says to stop (asked every FORM_CHECK_EVERY); true once all are. */
  step(enough: () => boolean): boolean {
    let sinceCheck = 0;
    for (;;) {
      const work = this.pending[0];
      if (work === undefined) return true;
      const { typeUrl, main, list, sum, changes } = work;
      while (work.at < list.length) {
        if (++sinceCheck > FORM_CHECK_EVERY) {
          sinceCheck = 0;
          if (enough()) return false;
        }
        const index = work.at++;
        const item = list[index] as EnvoyResource;
        if (item['@type'] !== typeUrl) throw new Error(`${KIND_FIELD[main.kind]}[${index}] of another form: @type is ${String(item['@type'])}, expected ${typeUrl}`);
        const resource = formRecord(typeUrl, item);
        const old = main.resources.get(resource.name);
        if (old === undefined || old === resource) continue;
        if (changes.has(resource.name)) throw new Error(`${KIND_FIELD[main.kind]}[${index}] of another form: two resources share the name ${resource.name}`);
        addPair(sum, old, -1);
        addPair(sum, resource, 1);
        changes.set(resource.name, resource);
      }
      this.built.set(typeUrl, changes.size === 0 ? main : snapshotOf(typeUrl, main.kind, withChanges(main.resources, changes), sum));
      this.pending.shift();
    }
  }

  /** Whether it is built over `snapshots` (the same snapshot objects of the form types). */
  builtOver(snapshots: ReadonlyMap<TypeUrlValue, TypeSnapshot>): boolean {
    return FORM_TYPES.every((typeUrl) => snapshots.get(typeUrl) === this.over.get(typeUrl));
  }

  /** `snapshots` with the form types' snapshots replaced by the built ones. Only once step() said done. */
  applyTo(snapshots: ReadonlyMap<TypeUrlValue, TypeSnapshot>): ReadonlyMap<TypeUrlValue, TypeSnapshot> {
    if (this.pending.length > 0) throw new Error('FormsOverlay: not built yet');
    const all = new Map(snapshots);
    for (const [typeUrl, snapshot] of this.built) all.set(typeUrl, snapshot);
    return all;
  }
}

const FORM_TYPES: readonly TypeUrlValue[] = [TypeUrl.cluster, TypeUrl.endpoint];
const NO_DELTAS: ReadonlyMap<TypeUrlValue, ReadonlySet<string>> = new Map();

export type CacheListener = (change: CacheChange) => void;

/**
 * The version of a set of resources: a hash of its size and of the sum of one digest per member.
 * A sum needs no sorting and follows an edit by adding and subtracting the members it changed, so
 * the cache keeps a type's version in step with work proportional to the change. The server
 * computes it for a client's subscribed subset with the same function, so a wildcard client's
 * version is the type's version.
 */
export function versionOfSet(resources: Iterable<Pick<CachedResource, 'name' | 'version'>>): string {
  const sum = emptySum();
  let count = 0;
  for (const resource of resources) {
    addPair(sum, resource, 1);
    count++;
  }
  return setVersion(sum, count);
}

/**
 * A set's sum: per lane, the exact sum of its members' lanes. A lane is under 2^24, so a double
 * holds the sum exactly up to 2^29 members, and it is the same number however the set was reached.
 */
type SetSum = number[];

const LANES = 4;

function emptySum(): SetSum {
  return [0, 0, 0, 0];
}

function setVersion(sum: SetSum, count: number): string {
  return digestOf('sha256', `${count}:${sum.join(':')}`, 'base64url').slice(0, 16);
}

/** base64url digit values by char code, -1 for any other character. */
const BASE64URL = new Int8Array(128).fill(-1);
for (const [i, c] of [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'].entries()) BASE64URL[c.charCodeAt(0)] = i;

/** The lanes of the member being added: scratch, filled by versionLanes or hashedLanes. */
const lanes = new Float64Array(LANES);

/**
 * Adds (`sign` 1) or takes away (-1) a member's digest: its version's 96 bits as four 24-bit
 * lanes. No SHA-256 is needed for the cache's members: their version is already a hash of their
 * bytes (bytesVersion), and those bytes hold their name, so the version alone tells the
 * (name, content) pair; a cheap hash of the name is mixed in all the same, so that equal
 * versions on other names (hand-made ones) are another set. Any other version is hashed with
 * the name.
 */
function addPair(sum: SetSum, resource: Pick<CachedResource, 'name' | 'version'>, sign: 1 | -1): void {
  if (!versionLanes(resource.version, resource.name)) hashedLanes(resource.name, resource.version);
  for (let i = 0; i < LANES; i++) (sum[i] as number) += sign * (lanes[i] as number);
}

/** Odd multipliers that turn one 32-bit hash of a name into four different lane masks. */
const NAME_MIX = [0x9e3779b1, 0x85ebca77, 0xc2b2ae3d, 0x27d4eb2f];

/** Fills `lanes` from a bytesVersion (16 base64url characters) and `name`; false for any other version. */
function versionLanes(version: string, name: string): boolean {
  if (version.length !== 16) return false;
  // FNV-1a over the name's UTF-16 code units.
  let named = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) named = Math.imul(named ^ name.charCodeAt(i), 0x01000193);
  for (let lane = 0; lane < LANES; lane++) {
    let value = 0;
    for (let i = lane * 4; i < lane * 4 + 4; i++) {
      const code = version.charCodeAt(i);
      const digit = code < 128 ? (BASE64URL[code] as number) : -1;
      if (digit < 0) return false;
      value = value * 64 + digit;
    }
    lanes[lane] = (value ^ (Math.imul(named, NAME_MIX[lane] as number) >>> 8)) >>> 0;
  }
  return true;
}

function hashedLanes(name: string, version: string): void {
  const digest = digestOf('sha256', `${name}\u0000${version}`, 'buffer');
  for (let lane = 0; lane < LANES; lane++) lanes[lane] = digest.readUIntBE(lane * 3, 3);
}

/** Per snapshot: its sum, the start of the next version's sum. */
const setSums = new WeakMap<TypeSnapshot, SetSum>();

/** A copy of the snapshot's sum, for the caller to change. */
function sumOf(snapshot: TypeSnapshot): SetSum {
  let sum = setSums.get(snapshot);
  if (sum === undefined) {
    sum = emptySum();
    for (const resource of snapshot.resources.values()) addPair(sum, resource, 1);
    setSums.set(snapshot, sum);
  }
  return sum.slice();
}

/** `sum` becomes the snapshot's own: the caller lets go of it. */
function snapshotOf(typeUrl: TypeUrlValue, kind: ResourceKind, resources: ReadonlyMap<string, CachedResource>, sum: SetSum): TypeSnapshot {
  const snapshot: TypeSnapshot = { typeUrl, kind, version: setVersion(sum, resources.size), resources };
  setSums.set(snapshot, sum);
  return snapshot;
}

/**
 * A resource's content version, as the cache versions it: a hash of its encoded bytes (which
 * the encoder writes in field order whatever the JSON's key order).
 */
export function contentVersion(resource: EnvoyResource): string {
  return encodedForm(resource)?.version ?? bytesVersion(encodeResourceAny(resource, false));
}

/**
 * Numbers the setResources passes of every cache in the process: a record met in a pass is
 * marked with its number, and a stand-in's record may be in two caches (each its own numbers
 * would clash).
 */
let passes = 0;

/**
 * The versioned snapshot cache between translation and the xDS server. It knows nothing of
 * Kubernetes, of translation or of streams: it turns whole sets of resources into encoded,
 * versioned snapshots and tells watchers which types changed.
 */
export class SnapshotCache {
  private readonly snapshots = new Map<TypeUrlValue, TypeSnapshot>();
  private readonly listeners = new Set<CacheListener>();
  private readonly views = new Map<string, DataPlaneView>();
  private planes: DataPlanes | undefined;
  private encodes = 0;
  /** Per type: the list last handed over and the entry of each of its positions. */
  private readonly listed = new Map<TypeUrlValue, Listed>();
  /**
   * While some view is served another attempt facts form: those views, and the configuration with
   * that form's resources in place (FormsOverlay). Absent otherwise: no second copy of anything in
   * the common case.
   */
  private forms: { views: ReadonlySet<string>; all: ReadonlyMap<TypeUrlValue, TypeSnapshot> } | undefined;
  /** The overlay prepareForms last handed out, for the setResources that follows it. */
  private prepared: FormsOverlay | undefined;

  /**
   * How many resources have been encoded into new bytes since the cache was created. A rebuilt
   * resource equal to the one served is encoded to compare, not counted, and keeps its bytes.
   */
  get encodedCount(): number {
    return this.encodes;
  }

  /** False until the first setResources: the server holds its first responses until then. */
  get ready(): boolean {
    return this.snapshots.size > 0;
  }

  /** The whole configuration of one type (what the shared view holds when no port is contested). */
  snapshot(typeUrl: string): TypeSnapshot | undefined {
    return this.snapshots.get(typeUrl as TypeUrlValue);
  }

  /**
   * The view of the Envoys that serve `gateway` ("namespace/name"), or of those that name none
   * (undefined: the shared data plane, every Gateway). A Gateway the configuration does not
   * have gets an empty view that fills when it appears.
   */
  view(gateway: string | undefined): CacheView {
    const key = gateway ?? SHARED_VIEW;
    let view = this.views.get(key);
    if (view === undefined) {
      view = new DataPlaneView(key);
      this.rebuildView(view, this.planes, NO_DELTAS);
      this.views.set(key, view);
    }
    return view;
  }

  /**
   * Replaces the whole configuration. Only resources whose JSON changed are encoded again; an
   * invalid resource throws before anything is replaced. `planes` says which resources each
   * Gateway's view holds (without it, Gateway views are empty and the shared view holds all).
   * Watchers hear of the changed types and views, and nothing at all when nothing changed.
   */
  setResources(resources: XdsResources, planes?: DataPlanes, forms?: AttemptForms): CacheChange {
    const built = PUSH_ORDER.map((kind) => this.buildSnapshot(kind, resources[KIND_FIELD[kind]]));
    // Nothing is replaced before every type was built: an invalid resource throws above.
    const changed: TypeUrlValue[] = [];
    const deltas = new Map<TypeUrlValue, ReadonlySet<string>>();
    for (const { snapshot, delta, listed } of built) {
      const typeUrl = snapshot.typeUrl;
      this.listed.set(typeUrl, listed);
      if (this.snapshots.get(typeUrl)?.version === snapshot.version) {
        deltas.set(typeUrl, NO_NAMES);
        continue;
      }
      changed.push(typeUrl);
      this.snapshots.set(typeUrl, snapshot);
      if (delta !== undefined) deltas.set(typeUrl, delta);
    }
    this.planes = planes;
    this.applyForms(forms);
    const views = new Map<CacheView, readonly TypeUrlValue[]>();
    for (const view of this.views.values()) {
      const viewChanged = this.rebuildView(view, planes, deltas);
      if (viewChanged.length > 0) views.set(view, viewChanged);
    }
    const change: CacheChange = { changed, views };
    if (changed.length > 0 || views.size > 0) {
      for (const listener of [...this.listeners]) listener(change);
    }
    return change;
  }

  /**
   * Keeps the configuration with `forms` in place for their views (built now, or taken from the
   * overlay prepareForms built for these very forms over this very configuration); drops it when
   * no view needs it.
   */
  private applyForms(forms: AttemptForms | undefined): void {
    const prepared = this.prepared;
    this.prepared = undefined;
    if (forms === undefined || forms.views.size === 0) {
      this.forms = undefined;
      return;
    }
    const overlay = prepared !== undefined && prepared.forms === forms && prepared.builtOver(this.snapshots) ? prepared : new FormsOverlay(this.snapshots, forms);
    overlay.step(() => false);
    this.forms = { views: forms.views, all: overlay.applyTo(this.snapshots) };
  }

  /**
   * An overlay of `forms` over the configuration as it is now, to be built in steps (each as long
   * as the caller likes) before setResources is given the very same `forms`: that call then only
   * takes it (finishing what is left of it), instead of building it in one go. One built over a
   * configuration that changed since, or for other forms, is not used: setResources builds its own.
   */
  prepareForms(forms: AttemptForms): FormsOverlay {
    this.prepared = new FormsOverlay(this.snapshots, forms);
    return this.prepared;
  }

  /**
   * A view's rebuild from the configuration in its form. A view served another form, or changing
   * form, is selected afresh: the names that changed in the configuration say nothing of what it
   * served (a selection walks the view's names, only while a data plane is being upgraded).
   */
  private rebuildView(view: DataPlaneView, planes: DataPlanes | undefined, deltas: ReadonlyMap<TypeUrlValue, ReadonlySet<string>>): TypeUrlValue[] {
    const forms = this.forms !== undefined && this.forms.views.has(view.key) ? this.forms : undefined;
    const fresh = forms !== undefined || view.legacy;
    view.legacy = forms !== undefined;
    return view.rebuild(forms?.all ?? this.snapshots, planes, fresh ? NO_DELTAS : deltas);
  }

  /** Every view asked for so far. */
  allViews(): IterableIterator<CacheView> {
    return this.views.values();
  }

  /** Calls `listener` after every setResources that changed at least one type. */
  watch(listener: CacheListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * The type's next snapshot (`previous` itself when nothing changed), the names that changed
   * (undefined when there was no previous), and the list as handed over. Work beyond one
   * comparison per position is proportional to what changed: the translator hands over the very
   * object it built last time, at the same position, for what did not change; only an object
   * not seen before is encoded; the set's version moves by the pairs that changed.
   */
  private buildSnapshot(kind: ResourceKind, list: readonly EnvoyResource[]): Built {
    const typeUrl = TypeUrl[kind];
    const previous = this.snapshots.get(typeUrl);
    const before = previous?.resources as ReadonlyMap<string, EncodedResource> | undefined;
    const last = this.listed.get(typeUrl);
    const aligned = last !== undefined && last.list.length === list.length ? last : undefined;
    const pass = ++passes;
    const duplicate = (name: string): Error => new Error(`${KIND_FIELD[kind]}[${name}]: two resources share this name`);
    const entries: EncodedResource[] = aligned !== undefined ? aligned.entries.slice() : new Array<EncodedResource>(list.length);
    // New or changed names, with their entries.
    const updates = new Map<string, EncodedResource>();
    let met = 0;
    for (let index = 0; index < list.length; index++) {
      const resource = list[index] as EnvoyResource;
      if (aligned !== undefined && aligned.list[index] === resource) {
        const entry = aligned.entries[index] as EncodedResource;
        if (entry.pass === pass) throw duplicate(entry.name);
        entry.pass = pass;
        met++;
        continue;
      }
      if (resource['@type'] !== typeUrl) {
        throw new Error(`${KIND_FIELD[kind]}[${index}]: @type is ${String(resource['@type'])}, expected ${typeUrl}`);
      }
      const form = encodedForm(resource);
      const name = form?.name ?? resourceName(resource);
      const old = before?.get(name);
      if (old !== undefined) {
        if (old.pass === pass) throw duplicate(name);
        old.pass = pass;
        met++;
        if (old.resource === resource) {
          entries[index] = old;
          continue;
        }
      } else if (updates.has(name)) {
        throw duplicate(name);
      }
      // Encoded in scratch memory to compare (unless it comes encoded): a rebuilt resource equal to the served one keeps its bytes.
      const version = form?.version ?? bytesVersion(encodeResourceAny(resource, false));
      if (old !== undefined && old.version === version) {
        // Pieces met for the first time in it (reuseEncodedPieces) read the served bytes.
        if (form === undefined) keepLastEncodedIn(() => old.any);
        old.follow(resource);
        entries[index] = old;
        continue;
      }
      this.encodes++;
      // A stand-in is its own record; JSON gets one, holding the bytes just encoded.
      const entry = form ?? new EncodedResource(typeUrl, name, version, keepLastEncoded(), resource);
      updates.set(name, entry);
      entries[index] = entry;
    }
    const listed: Listed = { list, entries };
    if (previous === undefined || before === undefined) {
      const sum = emptySum();
      for (const entry of updates.values()) addPair(sum, entry, 1);
      const snapshot = snapshotOf(typeUrl, kind, updates, sum);
      rememberEveryResource(snapshot.resources, entries);
      return { snapshot, delta: undefined, listed };
    }
    if (updates.size === 0 && met === before.size) return { snapshot: previous, delta: NO_NAMES, listed };
    const sum = sumOf(previous);
    const changes = new Map<string, EncodedResource | undefined>();
    if (met < before.size) {
      for (const [name, old] of before) {
        if (old.pass === pass) continue;
        changes.set(name, undefined);
        addPair(sum, old, -1);
        old.retire();
      }
    }
    for (const [name, entry] of updates) {
      const old = before.get(name);
      if (old !== undefined) {
        addPair(sum, old, -1);
        old.retire();
      }
      addPair(sum, entry, 1);
      changes.set(name, entry);
    }
    const snapshot = snapshotOf(typeUrl, kind, withChanges(before, changes), sum);
    // The list as handed over holds exactly the snapshot's resources: streams that send them all need no pass over the map.
    rememberEveryResource(snapshot.resources, entries);
    return { snapshot, delta: new Set(changes.keys()), listed };
  }
}

interface Listed {
  readonly list: readonly EnvoyResource[];
  readonly entries: readonly EncodedResource[];
}

interface Built {
  readonly snapshot: TypeSnapshot;
  readonly delta: ReadonlySet<string> | undefined;
  readonly listed: Listed;
}

const NO_NAMES: ReadonlySet<string> = new Set();
