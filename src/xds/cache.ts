import { createHash } from 'node:crypto';
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
  /** The types whose version changed, in PUSH_ORDER (make-before-break). */
  readonly changed: readonly TypeUrlValue[];
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
  private encodes = 0;

  /** How many resources have been encoded since the cache was created. */
  get encodedCount(): number {
    return this.encodes;
  }

  /** False until the first setResources: the server holds its first responses until then. */
  get ready(): boolean {
    return this.snapshots.size > 0;
  }

  snapshot(typeUrl: string): TypeSnapshot | undefined {
    return this.snapshots.get(typeUrl as TypeUrlValue);
  }

  /**
   * Replaces the whole configuration. Only resources whose JSON changed are encoded again; an
   * invalid resource throws before anything is replaced. Watchers hear of the changed types,
   * and nothing at all when nothing changed.
   */
  setResources(resources: XdsResources): CacheChange {
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
    const change: CacheChange = { changed };
    if (changed.length > 0) {
      for (const listener of [...this.listeners]) listener(change);
    }
    return change;
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
    for (const [index, resource] of list.entries()) {
      if (resource['@type'] !== typeUrl) {
        throw new Error(`${KIND_FIELD[kind]}[${index}]: @type is ${String(resource['@type'])}, expected ${typeUrl}`);
      }
      const name = resourceName(resource);
      if (resources.has(name)) throw new Error(`${KIND_FIELD[kind]}[${name}]: two resources share this name`);
      const version = hash(canonicalJson(resource));
      const old = previous?.resources.get(name);
      resources.set(name, old !== undefined && old.version === version ? old : this.encode(typeUrl, name, version, resource));
    }
    return { typeUrl, kind, version: versionOfSet(resources.values()), resources };
  }

  private encode(typeUrl: TypeUrlValue, name: string, version: string, resource: EnvoyResource): CachedResource {
    const body = encodeResource(resource);
    this.encodes++;
    const any = messageType('google.protobuf.Any').encode({ type_url: typeUrl, value: body }).finish();
    return { typeUrl, name, version, resource, any };
  }
}
