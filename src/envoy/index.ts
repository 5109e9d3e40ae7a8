import type { CertificateIR, ClusterIR, CredentialIR, IR, ListenerIR } from '../ir/model.js';
import { createHash, hash } from 'node:crypto';
import { replacedAt } from '../ir/delta.js';
import { encodedStandIn } from './encoded.js';
import { aiExtensionCluster } from './ai-extension.js';
import { toClusterLoadAssignment, toEnvoyCluster } from './clusters.js';
import { toEnvoyListener } from './listeners.js';
import { modelRoutingBufferLimit, usesModelRouting } from './model-routing.js';
import { DEFAULT_ENVOY_OPTIONS, type EnvoyOptions } from './options.js';
import type { EnvoyResource, XdsResources } from './resources.js';
import { RoutePieces, toRouteConfiguration, type BodyLimits } from './routes.js';
import { toCertificateSecret, toCredentialSecret } from './secrets.js';
import { otlpCluster } from './tracing.js';

import { toDataPlanesReusing, type DataPlanes, type PlanesMemo } from './data-planes.js';

export { toDataPlanes, type DataPlanes, type ResourceNames } from './data-planes.js';

/** IR → the five xDS resource lists. Pure and deterministic: the same IR gives the same JSON. */
export function toXdsResources(ir: IR, options: Partial<EnvoyOptions> = {}): XdsResources {
  // One builder for both: a full build is a reusing build with nothing to reuse.
  return buildXds(ir, options, undefined, false).xds;
}

/** Resources built from a list of IR objects, at the same index as the object each was built from. */
interface Built<T> {
  readonly irs: readonly T[];
  readonly out: readonly EnvoyResource[];
}

/** Built from content: an equal IR object built again (a Backend translated again) gives the same resource. */
interface BuiltByContent<T> extends Built<T> {
  /**
   * The first CONTENT_DIGEST bytes of the SHA-256 of each IR object's JSON, at CONTENT_DIGEST
   * times its index: one buffer, where a 32-character digest string each cost 48 bytes of heap
   * and 8 of array (3 MiB at 10,000 Backends' 60,000 credentials). Worked out when an edit first
   * compares it (digestAt): a first build has nothing to compare with, and hashing the JSON of
   * 60,000 credentials then was about 0.1 CPU-s before the first configuration could leave.
   */
  readonly json: Buffer;
  /** By index: 1 once `json` holds that object's digest. */
  readonly known: Uint8Array;
}

/** 128 bits: equal content is told from changed content by comparison only, never printed. */
const CONTENT_DIGEST = 16;

function contentDigest(ir: object): Buffer {
  return hash('sha256', JSON.stringify(ir), 'buffer');
}

/**
 * The resources of the last toXdsResourcesReusing call, by the IR object each was built from.
 * Translation hands over the same IR object for what did not change, so its resource is the
 * same object again, which the cache recognises without hashing or encoding it. IR lists are
 * compared item by item with the last ones: an edit replaces objects in place, so what is
 * built again is found without a lookup per object.
 */
export interface EnvoyState {
  readonly options: string;
  readonly bodyLimits: string;
  readonly bodyLimitsByCluster: ReadonlyMap<string, number>;
  readonly aiExtension: boolean;
  readonly clusters: Built<ClusterIR>;
  readonly eds: EdsList;
  readonly endpoints: Built<ClusterIR>;
  /** By listenerKey: a route edit leaves the Listener as it was unless it changes what the Listener reads of the routes. */
  readonly listeners: ReadonlyMap<string, EnvoyResource>;
  /** By IR object, with its listenerKey: an unchanged listener is not looked at again. */
  readonly listenerKeys: WeakMap<ListenerIR, string>;
  readonly routes: ReadonlyMap<ListenerIR, EnvoyResource>;
  /** The route entries and virtual hosts built for these body limits, by IR object. */
  readonly routePieces: RoutePieces;
  readonly credentials: BuiltByContent<CredentialIR>;
  readonly certificates: BuiltByContent<CertificateIR>;
  readonly aiCluster: EnvoyResource | undefined;
  readonly otlpCluster: EnvoyResource | undefined;
  readonly planes: PlanesMemo | undefined;
}

/**
 * A Listener is built from everything of its IR but the routes (they go out over RDS), except
 * whether a route matches on the model header (the listener then reads the model from the body)
 * and the body limit of the AI clusters those routes reach.
 */
function listenerKey(l: ListenerIR, bodyLimits: BodyLimits): string {
  const { virtualHosts: _routes, ...rest } = l;
  const byModel = usesModelRouting(l);
  return `${JSON.stringify(rest)}\0${byModel ? 1 : 0}\0${byModel ? (modelRoutingBufferLimit(l, bodyLimits) ?? '') : ''}`;
}

const NOTHING_BUILT: BuiltByContent<never> = { irs: [], out: [], json: Buffer.alloc(0), known: new Uint8Array(0) };

/** The digest of `built`'s object at index `n` (the first CONTENT_DIGEST bytes of its `json` from n * CONTENT_DIGEST), worked out now if it was not yet. */
function digestAt<T extends object>(built: BuiltByContent<T>, n: number): void {
  if (built.known[n] === 1) return;
  contentDigest(built.irs[n] as T).copy(built.json, n * CONTENT_DIGEST, 0, CONTENT_DIGEST);
  built.known[n] = 1;
}

/** Resources for `irs`, reusing those `previous` built from the same object. */
function buildList<T extends object>(previous: Built<T> | undefined, irs: readonly T[], build: (ir: T) => EnvoyResource): Built<T> {
  if (previous === undefined) return { irs, out: irs.map(build) };
  const at = replacedAt(previous.irs, irs);
  if (at !== undefined) {
    if (at.length === 0) return { irs, out: previous.out };
    const out = previous.out.slice();
    for (const i of at) out[i] = build(irs[i] as T);
    return { irs, out };
  }
  const byObject = new Map<T, EnvoyResource>();
  previous.irs.forEach((ir, i) => byObject.set(ir, previous.out[i] as EnvoyResource));
  return { irs, out: irs.map((ir) => byObject.get(ir) ?? build(ir)) };
}

/**
 * buildList, also reusing the resource of an equal IR object (by JSON). A digest is worked out
 * only where one is compared: an object replaced in place, and the one it replaced; every one,
 * old and new, when the lists cannot be lined up and something was built before.
 */
function buildByContent<T extends object>(previous: BuiltByContent<T>, irs: readonly T[], build: (ir: T) => EnvoyResource): BuiltByContent<T> {
  if (previous.irs === irs) return previous;
  const at = replacedAt(previous.irs, irs);
  const out: EnvoyResource[] = at !== undefined ? previous.out.slice() : new Array<EnvoyResource>(irs.length);
  const json = Buffer.allocUnsafeSlow(irs.length * CONTENT_DIGEST);
  const known = new Uint8Array(irs.length);
  const built: BuiltByContent<T> = { irs, out, json, known };
  if (at !== undefined) {
    previous.json.copy(json);
    known.set(previous.known);
  }
  let byJson: Map<string, EnvoyResource> | undefined;
  const byObject = at === undefined && previous.irs.length > 0 ? new Map(previous.irs.map((ir, i) => [ir, i])) : undefined;
  const place = (i: number): void => {
    const ir = irs[i] as T;
    const was = byObject?.get(ir);
    const start = i * CONTENT_DIGEST;
    if (was !== undefined) {
      out[i] = previous.out[was] as EnvoyResource;
      if (previous.known[was] === 1) {
        previous.json.copy(json, start, was * CONTENT_DIGEST, (was + 1) * CONTENT_DIGEST);
        known[i] = 1;
      }
      return;
    }
    if (previous.irs.length === 0) {
      // Nothing to reuse: the digest waits until an edit compares it.
      out[i] = build(ir);
      return;
    }
    if (at !== undefined) {
      // Replaced in place: equal to what it replaced, or new.
      digestAt(previous, i);
      known[i] = 0;
      digestAt(built, i);
      if (previous.json.compare(json, start, start + CONTENT_DIGEST, start, start + CONTENT_DIGEST) !== 0) out[i] = build(ir);
      return;
    }
    if (byJson === undefined) {
      for (let n = 0; n < previous.irs.length; n++) digestAt(previous, n);
      byJson = new Map(previous.out.map((resource, n) => [previous.json.toString('latin1', n * CONTENT_DIGEST, (n + 1) * CONTENT_DIGEST), resource]));
    }
    digestAt(built, i);
    out[i] = byJson.get(json.toString('latin1', start, start + CONTENT_DIGEST)) ?? build(ir);
  };
  if (at !== undefined) for (const i of at) place(i);
  else for (let i = 0; i < irs.length; i++) place(i);
  return built;
}

function optionsKey(opts: EnvoyOptions): string {
  return JSON.stringify({ ...opts, gatewayAddresses: [...(opts.gatewayAddresses ?? new Map<string, string>())] });
}

function reuse<K, V>(previous: ReadonlyMap<K, V> | undefined, next: Map<K, V>, key: K, build: (key: K) => V): V {
  const value = previous?.get(key) ?? build(key);
  next.set(key, value);
  return value;
}

/** What a cluster gives the Listeners and routes: its request body limit, when it is an AI cluster. */
function bodyLimitOf(c: ClusterIR): string {
  return c.ai === undefined ? '' : `${c.name}\0${c.ai.requestBodyLimitBytes ?? 0}`;
}

/** The request body limits of the AI clusters, from the last ones when only other clusters' other fields changed. */
function bodyLimitsOf(clusters: readonly ClusterIR[], previous: EnvoyState | undefined): { key: string; byCluster: ReadonlyMap<string, number>; ai: boolean } {
  const at = previous === undefined ? undefined : replacedAt(previous.clusters.irs, clusters);
  if (previous !== undefined && at !== undefined && at.every((i) => bodyLimitOf(clusters[i] as ClusterIR) === bodyLimitOf(previous.clusters.irs[i] as ClusterIR))) {
    return { key: previous.bodyLimits, byCluster: previous.bodyLimitsByCluster, ai: previous.aiExtension };
  }
  const byCluster = new Map<string, number>();
  // A fingerprint of the limits in cluster order, not their JSON: kept in the state, the JSON of
  // 10,000 AI clusters' limits was a 370 KB string, made from as many [name, limit] lists.
  const key = createHash('sha256');
  let text = '';
  for (const c of clusters) {
    if (c.ai === undefined) continue;
    const limit = c.ai.requestBodyLimitBytes ?? 0;
    byCluster.set(c.name, limit);
    text += `${c.name}\0${limit}\0`;
    if (text.length >= 64 * 1024) {
      key.update(text);
      text = '';
    }
  }
  return { key: key.update(text).digest('binary'), byCluster, ai: byCluster.size > 0 };
}

/** The EDS clusters among a cluster list, with, by cluster index, the index of each in `list` (-1: not EDS). */
interface EdsList {
  readonly list: readonly ClusterIR[];
  readonly at: Int32Array;
}

/** The EDS clusters among `clusters`, from the last ones when the clusters replaced are EDS as the ones before them were. */
function edsClustersOf(clusters: readonly ClusterIR[], previous: EnvoyState | undefined): EdsList {
  const at = previous === undefined ? undefined : replacedAt(previous.clusters.irs, clusters);
  if (previous !== undefined && at !== undefined) {
    const before = previous.eds;
    if (at.length === 0) return before;
    if (at.every((i) => ((clusters[i] as ClusterIR).discovery === 'eds') === (before.at[i] !== -1))) {
      const list = before.list.slice();
      for (const i of at) {
        const j = before.at[i] ?? -1;
        if (j >= 0) list[j] = clusters[i] as ClusterIR;
      }
      return { list, at: before.at };
    }
  }
  const list: ClusterIR[] = [];
  const where = new Int32Array(clusters.length).fill(-1);
  clusters.forEach((c, i) => {
    if (c.discovery === 'eds') where[i] = list.push(c) - 1;
  });
  return { list, at: where };
}

/**
 * toXdsResources, equal in every byte, building only the resources of IR objects `previous` has
 * not seen; and toDataPlanes of the same IR. Clusters, ClusterLoadAssignments and Secrets come
 * encoded (encodedStandIn): the state keeps their bytes, not their JSON, and the cache takes
 * those bytes as they are.
 */
export function toXdsResourcesReusing(ir: IR, options: Partial<EnvoyOptions>, previous: EnvoyState | undefined): { xds: XdsResources; planes: DataPlanes; state: EnvoyState } {
  return buildXds(ir, options, previous, true);
}

function buildXds(ir: IR, options: Partial<EnvoyOptions>, previous: EnvoyState | undefined, encoded: boolean): { xds: XdsResources; planes: DataPlanes; state: EnvoyState } {
  // Encoded at once, each resource's JSON is garbage before the next one is built.
  const kept = <T>(build: (ir: T) => EnvoyResource): ((ir: T) => EnvoyResource) => (encoded ? (x: T) => encodedStandIn(build(x)) : build);
  const opts = { ...DEFAULT_ENVOY_OPTIONS, ...options };
  const key = optionsKey(opts);
  const same = previous !== undefined && previous.options === key ? previous : undefined;
  const limits = bodyLimitsOf(ir.clusters, same);
  const bodyLimits = limits.byCluster;
  const aiExtension = limits.ai;
  // A Listener's body buffer follows its AI Backends' limits when it routes by model.
  const sameListeners = same !== undefined && same.aiExtension === aiExtension && same.bodyLimits === limits.key ? same : undefined;
  const sameRoutes = same !== undefined && same.bodyLimits === limits.key ? same : undefined;
  const listeners = new Map<string, EnvoyResource>();
  const listenerKeys = sameListeners?.listenerKeys ?? new WeakMap<ListenerIR, string>();
  const keyOf = (l: ListenerIR): string => {
    let k = listenerKeys.get(l);
    if (k === undefined) listenerKeys.set(l, (k = listenerKey(l, bodyLimits)));
    return k;
  };
  const routes = new Map<ListenerIR, EnvoyResource>();
  const clusters = buildList(same?.clusters, ir.clusters, kept((x: ClusterIR) => toEnvoyCluster(x, opts)));
  const eds = edsClustersOf(ir.clusters, same);
  const endpoints = buildList(same?.endpoints, eds.list, kept((x: ClusterIR) => toClusterLoadAssignment(x, opts)));
  const certificates = buildByContent(previous?.certificates ?? NOTHING_BUILT, ir.certificates, kept(toCertificateSecret));
  const credentials = buildByContent(previous?.credentials ?? NOTHING_BUILT, ir.credentials, kept(toCredentialSecret));
  const aiCluster = aiExtension ? (same?.aiCluster ?? aiExtensionCluster(opts)) : undefined;
  const otlp = opts.otlp !== undefined && ir.listeners.length > 0 ? (same?.otlpCluster ?? otlpCluster(opts.otlp, opts)) : undefined;
  const routePieces = sameRoutes?.routePieces ?? new RoutePieces(bodyLimits);
  const xds: XdsResources = {
    listeners: ir.listeners.map((l) => reuse(sameListeners?.listeners, listeners, keyOf(l), () => toEnvoyListener(l, opts, { aiExtension, bodyLimits }))),
    routes: ir.listeners.map((l) => reuse(sameRoutes?.routes, routes, l, (x) => toRouteConfiguration(x, bodyLimits, routePieces))),
    // concat copies the lists whole; a spread walks them item by item.
    clusters: clusters.out.concat(aiCluster ? [aiCluster] : [], otlp ? [otlp] : []),
    // The state's own lists where nothing is added (never changed once built: a next build copies
    // before it replaces): the cache keeps the list it is given, and a copy of the 60,000
    // credentials at 10,000 Backends was 0.5 MiB beside the state's.
    endpoints: endpoints.out,
    secrets: certificates.out.length === 0 ? credentials.out : certificates.out.concat(credentials.out),
  };
  const planes = toDataPlanesReusing(ir, opts, key, same?.planes);
  const state: EnvoyState = {
    options: key,
    bodyLimits: limits.key,
    bodyLimitsByCluster: bodyLimits,
    aiExtension,
    clusters,
    eds,
    endpoints,
    listeners,
    listenerKeys,
    routes,
    routePieces,
    credentials,
    certificates,
    aiCluster,
    otlpCluster: otlp,
    planes: planes.memo,
  };
  return { xds, planes: planes.planes, state };
}
