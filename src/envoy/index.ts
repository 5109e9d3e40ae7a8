import type { ClusterIR, IR, ListenerIR } from '../ir/model.js';
import { aiExtensionCluster } from './ai-extension.js';
import { toClusterLoadAssignment, toEnvoyCluster } from './clusters.js';
import { toEnvoyListener } from './listeners.js';
import { DEFAULT_ENVOY_OPTIONS, type EnvoyOptions } from './options.js';
import type { EnvoyResource, XdsResources } from './resources.js';
import { toRouteConfiguration } from './routes.js';
import { toCertificateSecret, toCredentialSecret } from './secrets.js';
import { otlpCluster } from './tracing.js';

export { toDataPlanes, type DataPlanes, type ResourceNames } from './data-planes.js';

/** IR → the five xDS resource lists. Pure and deterministic: the same IR gives the same JSON. */
export function toXdsResources(ir: IR, options: Partial<EnvoyOptions> = {}): XdsResources {
  // One builder for both: a full build is a reusing build with nothing to reuse.
  return toXdsResourcesReusing(ir, options, undefined).xds;
}

/**
 * The resources of the last toXdsResourcesReusing call, by the IR object each was built from.
 * Translation hands over the same IR object for what did not change, so its resource is the
 * same object again, which the cache recognises without hashing or encoding it.
 */
export interface EnvoyState {
  readonly options: string;
  readonly bodyLimits: string;
  readonly aiExtension: boolean;
  readonly clusters: ReadonlyMap<ClusterIR, EnvoyResource>;
  readonly endpoints: ReadonlyMap<ClusterIR, EnvoyResource>;
  /** By the listener without its routes (listenerShape): a route edit leaves the Listener as it was. */
  readonly listeners: ReadonlyMap<string, EnvoyResource>;
  readonly routes: ReadonlyMap<ListenerIR, EnvoyResource>;
  /** By content: a Backend translated again yields equal credentials, and their Secrets stay the same objects. */
  readonly credentials: ContentMemo;
  readonly certificates: ContentMemo;
  readonly aiCluster: EnvoyResource | undefined;
  readonly otlpCluster: EnvoyResource | undefined;
}

/** A Listener is built from everything of its IR but the routes (they go out over RDS). */
function listenerShape(l: ListenerIR): string {
  const { virtualHosts: _routes, ...rest } = l;
  return JSON.stringify(rest);
}

/** Resources by the IR object they were built from, and by its JSON for an equal IR object built again. */
interface ContentMemo {
  readonly byObject: Map<object, { json: string; value: EnvoyResource }>;
  readonly byJson: Map<string, EnvoyResource>;
}

function newContentMemo(): ContentMemo {
  return { byObject: new Map(), byJson: new Map() };
}

function byContent<T extends object>(previous: ContentMemo | undefined, next: ContentMemo, ir: T, build: (ir: T) => EnvoyResource): EnvoyResource {
  let entry = previous?.byObject.get(ir);
  if (entry === undefined) {
    const json = JSON.stringify(ir);
    entry = { json, value: previous?.byJson.get(json) ?? build(ir) };
  }
  next.byObject.set(ir, entry);
  next.byJson.set(entry.json, entry.value);
  return entry.value;
}

function optionsKey(opts: EnvoyOptions): string {
  return JSON.stringify({ ...opts, gatewayAddresses: [...(opts.gatewayAddresses ?? new Map<string, string>())] });
}

function reuse<K, V>(previous: ReadonlyMap<K, V> | undefined, next: Map<K, V>, key: K, build: (key: K) => V): V {
  const value = previous?.get(key) ?? build(key);
  next.set(key, value);
  return value;
}

/** toXdsResources, equal in every byte, building only the resources of IR objects `previous` has not seen. */
export function toXdsResourcesReusing(ir: IR, options: Partial<EnvoyOptions>, previous: EnvoyState | undefined): { xds: XdsResources; state: EnvoyState } {
  const opts = { ...DEFAULT_ENVOY_OPTIONS, ...options };
  const ai = ir.clusters.filter((c) => c.ai !== undefined);
  const bodyLimits = new Map(ai.map((c) => [c.name, c.ai?.requestBodyLimitBytes ?? 0]));
  const key = optionsKey(opts);
  const limitsKey = JSON.stringify([...bodyLimits]);
  const aiExtension = ai.length > 0;
  const same = previous !== undefined && previous.options === key ? previous : undefined;
  // A Listener's body buffer follows its AI Backends' limits when it routes by model.
  const sameListeners = same !== undefined && same.aiExtension === aiExtension && same.bodyLimits === limitsKey ? same : undefined;
  const sameRoutes = same !== undefined && same.bodyLimits === limitsKey ? same : undefined;
  const state = {
    options: key,
    bodyLimits: limitsKey,
    aiExtension,
    clusters: new Map<ClusterIR, EnvoyResource>(),
    endpoints: new Map<ClusterIR, EnvoyResource>(),
    listeners: new Map<string, EnvoyResource>(),
    routes: new Map<ListenerIR, EnvoyResource>(),
    credentials: newContentMemo(),
    certificates: newContentMemo(),
    aiCluster: aiExtension ? (same?.aiCluster ?? aiExtensionCluster(opts)) : undefined,
    otlpCluster: opts.otlp !== undefined && ir.listeners.length > 0 ? (same?.otlpCluster ?? otlpCluster(opts.otlp, opts)) : undefined,
  };
  const xds: XdsResources = {
    listeners: ir.listeners.map((l) => reuse(sameListeners?.listeners, state.listeners, listenerShape(l), () => toEnvoyListener(l, opts, { aiExtension, bodyLimits }))),
    routes: ir.listeners.map((l) => reuse(sameRoutes?.routes, state.routes, l, (x) => toRouteConfiguration(x, bodyLimits))),
    clusters: [...ir.clusters.map((c) => reuse(same?.clusters, state.clusters, c, (x) => toEnvoyCluster(x, opts))), ...(state.aiCluster ? [state.aiCluster] : []), ...(state.otlpCluster ? [state.otlpCluster] : [])],
    endpoints: ir.clusters.filter((c) => c.discovery === 'eds').map((c) => reuse(same?.endpoints, state.endpoints, c, (x) => toClusterLoadAssignment(x, opts))),
    secrets: [
      ...ir.certificates.map((c) => byContent(previous?.certificates, state.certificates, c, toCertificateSecret)),
      ...ir.credentials.map((c) => byContent(previous?.credentials, state.credentials, c, toCredentialSecret)),
    ],
  };
  return { xds, state };
}
