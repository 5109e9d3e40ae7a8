import { createHash } from 'node:crypto';
import type { DataPlanes, ResourceNames } from '../envoy/data-planes.js';
import { encodeResource, messageType } from '../envoy/proto.js';
import {
  KIND_FIELD,
  PUSH_ORDER,
  TypeUrl,
  resourceName,
  type EnvoyResource,
  type JsonValue,
  type ResourceKind,
  type TypeUrlValue,
  type XdsResources,
} from '../envoy/resources.js';

/** One resource as served: its JSON, its content version, and its bytes, encoded once. */
export interface CachedResource {
  readonly typeUrl: TypeUrlValue;
  readonly name: string;
  /** A hash of the resource's JSON: equal content gives an equal version, across restarts too. */
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
  snapshot(typeUrl: string): TypeSnapshot | undefined;
}

const NONE: ResourceNames = { listeners: [], routes: [], clusters: [], endpoints: [], secrets: [] };

/** One view's snapshots, rebuilt from the whole configuration after each change. */
class DataPlaneView implements CacheView {
  known = false;
  problems: readonly string[] = [];
  private snapshots = new Map<TypeUrlValue, TypeSnapshot>();

  constructor(readonly key: string) {}

  snapshot(typeUrl: string): TypeSnapshot | undefined {
    return this.snapshots.get(typeUrl as TypeUrlValue);
  }

  /** Selects this view's subset of `all`; returns the types whose version changed. */
  rebuild(all: ReadonlyMap<TypeUrlValue, TypeSnapshot>, planes: DataPlanes | undefined): TypeUrlValue[] {
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
        snapshot = subset(full, (selection ?? NONE)[KIND_FIELD[kind]], previous);
      }
      next.set(typeUrl, snapshot);
      if (previous?.version !== snapshot.version) changed.push(typeUrl);
    }
    this.snapshots = next;
    return changed;
  }
}

/** The resources of `full` named in `names` (absent names are skipped); `previous` is reused when it holds exactly those. */
function subset(full: TypeSnapshot, names: readonly string[], previous: TypeSnapshot | undefined): TypeSnapshot {
  const resources = new Map<string, CachedResource>();
  for (const name of names) {
    const resource = full.resources.get(name);
    if (resource !== undefined) resources.set(name, resource);
  }
  if (previous !== undefined && previous.resources.size === resources.size && [...resources].every(([name, r]) => previous.resources.get(name) === r)) return previous;
  return { typeUrl: full.typeUrl, kind: full.kind, version: versionOfSet(resources.values()), resources };
}

export type CacheListener = (change: CacheChange) => void;

/**
 * The version of a set of resources: a hash over the sorted (name, resource version) pairs.
 * The server computes it for a client's subscribed subset with the same formula, so a wildcard
 * client's version is the type's version.
 */
export function versionOfSet(resources: Iterable<Pick<CachedResource, 'name' | 'version'>>): string {
  const pairs = [...resources].map((resource) => `${resource.name}\u0000${resource.version}`).sort();
  return hash(pairs.join('\n'));
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 16);
}

/** A resource's content version: a hash of its JSON, as the cache versions it. */
export function contentVersion(resource: EnvoyResource): string {
  return hash(canonicalJson(resource));
}

/** JSON with object keys sorted, so key order in the translator's output does not change versions. */
function canonicalJson(value: JsonValue): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key] ?? null)}`).join(',')}}`;
}

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

  /** How many resources have been encoded since the cache was created. */
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
      view.rebuild(this.snapshots, this.planes);
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
  setResources(resources: XdsResources, planes?: DataPlanes): CacheChange {
    const next = new Map<TypeUrlValue, TypeSnapshot>();
    for (const kind of PUSH_ORDER) {
      next.set(TypeUrl[kind], this.buildSnapshot(kind, resources[KIND_FIELD[kind]]));
    }
    const changed = PUSH_ORDER.map((kind) => TypeUrl[kind]).filter(
      (typeUrl) => this.snapshots.get(typeUrl)?.version !== next.get(typeUrl)?.version,
    );
    for (const typeUrl of changed) {
      const snapshot = next.get(typeUrl);
      if (snapshot !== undefined) this.snapshots.set(typeUrl, snapshot);
    }
    this.planes = planes;
    const views = new Map<CacheView, readonly TypeUrlValue[]>();
    for (const view of this.views.values()) {
      const viewChanged = view.rebuild(this.snapshots, planes);
      if (viewChanged.length > 0) views.set(view, viewChanged);
    }
    const change: CacheChange = { changed, views };
    if (changed.length > 0 || views.size > 0) {
      for (const listener of [...this.listeners]) listener(change);
    }
    return change;
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

  private buildSnapshot(kind: ResourceKind, list: readonly EnvoyResource[]): TypeSnapshot {
    const typeUrl = TypeUrl[kind];
    const previous = this.snapshots.get(typeUrl);
    const resources = new Map<string, CachedResource>();
    let reused = 0;
    for (const [index, resource] of list.entries()) {
      if (resource['@type'] !== typeUrl) {
        throw new Error(`${KIND_FIELD[kind]}[${index}]: @type is ${String(resource['@type'])}, expected ${typeUrl}`);
      }
      const name = resourceName(resource);
      if (resources.has(name)) throw new Error(`${KIND_FIELD[kind]}[${name}]: two resources share this name`);
      const old = previous?.resources.get(name);
      // The translator hands over the very object it built last time for what did not change.
      if (old !== undefined && old.resource === resource) {
        resources.set(name, old);
        reused++;
        continue;
      }
      const version = contentVersion(resource);
      resources.set(name, old !== undefined && old.version === version ? old : this.encode(typeUrl, name, version, resource));
    }
    if (previous !== undefined && reused === resources.size && reused === previous.resources.size) return previous;
    return { typeUrl, kind, version: versionOfSet(resources.values()), resources };
  }

  private encode(typeUrl: TypeUrlValue, name: string, version: string, resource: EnvoyResource): CachedResource {
    const body = encodeResource(resource);
    this.encodes++;
    const any = messageType('google.protobuf.Any').encode({ type_url: typeUrl, value: body }).finish();
    return { typeUrl, name, version, resource, any };
  }
}
