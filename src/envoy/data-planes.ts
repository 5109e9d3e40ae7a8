import type { ClusterIR, GatewayIR, IR, ListenerIR, VirtualHostIR } from '../ir/model.js';
import { replacedAt, sameItems } from '../ir/delta.js';
import { AI_EXTENSION_CLUSTER } from './ai-extension.js';
import { OTLP_CLUSTER } from './tracing.js';
import { listenerBindAddress } from './listeners.js';
import { DEFAULT_ENVOY_OPTIONS, type EnvoyOptions } from './options.js';
import type { XdsResources } from './resources.js';

/** Names of resources, per kind (fields as in XdsResources). */
export type ResourceNames = Readonly<Record<keyof XdsResources, readonly string[]>>;

/**
 * Which resources each data plane receives (Gateway API: a Gateway is its own data plane).
 * The resources themselves are built once (toXdsResources); this only says who gets which.
 */
export interface DataPlanes {
  /**
   * "namespace/name" → what the Envoys of that Gateway need: its listeners, their route
   * configurations, the clusters those routes name (and the AI extension cluster if one of them
   * uses it), their assignments and the certificates its listeners serve. Never a provider
   * credential: those are the AI extension's.
   */
  readonly gateways: ReadonlyMap<string, ResourceNames>;
  /**
   * The data plane an Envoy that names no Gateway serves: everything but these resources. Two
   * Gateways that want one port cannot share an Envoy: the younger one's listener is left out.
   */
  readonly shared: { readonly excluded: Partial<ResourceNames>; readonly problems: readonly string[] };
}

function gatewayKey(g: { namespace: string; name: string }): string {
  return `${g.namespace}/${g.name}`;
}

/** The clusters of each virtual host, by IR object (never changed once built): an edit of one route walks its host's routes only. */
const hostClusters = new WeakMap<VirtualHostIR, ReadonlySet<string>>();

function forwardedByHost(vh: VirtualHostIR): ReadonlySet<string> {
  let names = hostClusters.get(vh);
  if (names === undefined) {
    const found = new Set<string>();
    for (const r of vh.routes) if (r.action.kind === 'forward') for (const c of r.action.clusters) found.add(c.name);
    hostClusters.set(vh, found);
    names = found;
  }
  return names;
}

/** The clusters some listener's routes send traffic to. */
function forwardedClusters(listeners: readonly ListenerIR[]): ReadonlySet<string> {
  const only = listeners.length === 1 && listeners[0]?.virtualHosts.length === 1 ? listeners[0].virtualHosts[0] : undefined;
  if (only !== undefined) return forwardedByHost(only);
  const names = new Set<string>();
  for (const l of listeners) for (const vh of l.virtualHosts) for (const name of forwardedByHost(vh)) names.add(name);
  return names;
}

/** What one Gateway's data plane receives, given the clusters its routes send traffic to. */
function gatewayNames(listeners: readonly ListenerIR[], forwarded: ReadonlySet<string>, clusters: ReadonlyMap<string, ClusterIR>, opts: EnvoyOptions): ResourceNames {
  const clusterNames: string[] = [];
  for (const name of forwarded) if (clusters.has(name)) clusterNames.push(name);
  const selected = clusterNames.sort().flatMap((name) => {
    const c = clusters.get(name);
    return c === undefined ? [] : [c];
  });
  return {
    listeners: listeners.map((l) => l.name),
    // toRouteConfiguration names a listener's routes after the listener.
    routes: listeners.map((l) => l.name),
    clusters: [
      ...selected.map((c) => c.name),
      ...(selected.some((c) => c.ai !== undefined) ? [AI_EXTENSION_CLUSTER] : []),
      // Every listener's tracer exports through it.
      ...(opts.otlp !== undefined && listeners.length > 0 ? [OTLP_CLUSTER] : []),
    ],
    endpoints: selected.filter((c) => c.discovery === 'eds').map((c) => c.name),
    secrets: [...new Set(listeners.flatMap((l) => l.tls.flatMap((t) => t.certificates)))].sort(),
  };
}

function listenersByGateway(ir: IR): Map<string, ListenerIR[]> {
  const byGateway = new Map<string, ListenerIR[]>();
  for (const l of ir.listeners) {
    const key = gatewayKey(l.gateway);
    const listeners = byGateway.get(key);
    if (listeners === undefined) byGateway.set(key, [l]);
    else listeners.push(l);
  }
  return byGateway;
}

const UNSPECIFIED = new Set(['0.0.0.0', '::', '']);

/** Two binds collide on one port when they name the same address or one is the wildcard. */
function collide(a: string, b: string): boolean {
  return a === b || UNSPECIFIED.has(a) || UNSPECIFIED.has(b);
}

/** IR → what each data plane receives. Pure; names match toXdsResources' resources. */
export function toDataPlanes(ir: IR, options: Partial<EnvoyOptions> = {}): DataPlanes {
  return planesOf(ir, { ...DEFAULT_ENVOY_OPTIONS, ...options }, undefined).planes;
}

/** One Gateway's part of the data planes, with what it was computed from. */
interface GatewayPlane {
  readonly listeners: readonly ListenerIR[];
  readonly forwarded: ReadonlySet<string>;
  readonly names: ResourceNames;
}

/**
 * The data planes; a Gateway whose listeners are the same objects as in `previous`, or send
 * traffic to the same clusters from listeners of the same names and certificates, keeps its
 * names (the caller vouches that what is read of each cluster is as it was).
 */
function planesOf(ir: IR, opts: EnvoyOptions, previous: ReadonlyMap<string, GatewayPlane> | undefined): { planes: DataPlanes; byGateway: Map<string, GatewayPlane> } {
  let clusters: Map<string, ClusterIR> | undefined;
  const byGateway = listenersByGateway(ir);
  const planes = new Map<string, GatewayPlane>();
  const gateways = new Map<string, ResourceNames>();
  for (const g of ir.gateways) {
    const key = gatewayKey(g);
    const listeners = byGateway.get(key) ?? [];
    const before = previous?.get(key);
    let plane: GatewayPlane;
    if (before !== undefined && sameItems(before.listeners, listeners)) plane = before;
    else {
      const forwarded = forwardedClusters(listeners);
      if (before !== undefined && sameShape(before.listeners, listeners) && sameSet(before.forwarded, forwarded)) plane = { listeners, forwarded, names: before.names };
      else {
        clusters ??= new Map(ir.clusters.map((c) => [c.name, c]));
        plane = { listeners, forwarded, names: gatewayNames(listeners, forwarded, clusters, opts) };
      }
    }
    planes.set(key, plane);
    gateways.set(key, plane.names);
  }
  return { planes: { gateways, shared: sharedPlane(ir.gateways, byGateway, opts) }, byGateway: planes };
}

/** Listeners of the same names and certificates: what a Gateway's names read of them besides their routes. */
function sameShape(a: readonly ListenerIR[], b: readonly ListenerIR[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((l, i) => l.name === b[i]?.name && JSON.stringify(l.tls) === JSON.stringify(b[i]?.tls));
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const name of a) if (!b.has(name)) return false;
  return true;
}

/** The shared data plane: every Gateway's listeners but those on a port an older Gateway holds. */
function sharedPlane(gateways: readonly GatewayIR[], byGateway: ReadonlyMap<string, readonly ListenerIR[]>, opts: EnvoyOptions): DataPlanes['shared'] {
  // Oldest Gateway first (then by name): it keeps a contested port on the shared data plane,
  // so which Gateway loses it does not change when another one is edited.
  const order = [...gateways].sort((a, b) => {
    const ta = a.createdAt ?? '';
    const tb = b.createdAt ?? '';
    if (ta !== tb) return ta < tb ? -1 : 1;
    const ka = gatewayKey(a);
    const kb = gatewayKey(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  const bound = new Map<number, { address: string; gateway: string }[]>();
  const excluded: string[] = [];
  const problems: string[] = [];
  for (const g of order) {
    const key = gatewayKey(g);
    for (const l of byGateway.get(key) ?? []) {
      const address = listenerBindAddress(l, opts);
      let onPort = bound.get(l.port);
      if (onPort === undefined) {
        onPort = [];
        bound.set(l.port, onPort);
      }
      const owner = onPort.find((b) => b.gateway !== key && collide(b.address, address));
      if (owner !== undefined) {
        excluded.push(l.name);
        problems.push(
          `Gateway ${key}: listener ${l.name} is left out of the data plane shared by every Gateway (Envoys bootstrapped without --gateway): ` +
            `port ${l.port} is already used there by the older Gateway ${owner.gateway}; run an Envoy per Gateway (switchyard bootstrap --gateway ${key}) or move one Gateway to another port`,
        );
        continue;
      }
      onPort.push({ address, gateway: key });
    }
  }
  return { excluded: excluded.length > 0 ? { listeners: excluded, routes: excluded } : {}, problems };
}

/** What toDataPlanesReusing needs to tell that the data planes are as they were. */
export interface PlanesMemo {
  readonly options: string;
  readonly gateways: string;
  readonly listeners: readonly ListenerIR[];
  readonly clusters: readonly ClusterIR[];
  readonly planes: DataPlanes;
  readonly byGateway: ReadonlyMap<string, GatewayPlane>;
}

/** What toDataPlanes reads of a cluster. */
function clusterFacts(c: ClusterIR): string {
  return `${c.name}\0${c.ai !== undefined}\0${c.discovery}`;
}

/**
 * toDataPlanes, giving back the last result when the Gateways, the Listeners (the same objects)
 * and what it reads of each cluster are as they were: an edit of one Backend's members leaves
 * every data plane as it was, without walking every route again.
 */
export function toDataPlanesReusing(ir: IR, options: EnvoyOptions, optionsKey: string, previous: PlanesMemo | undefined): { planes: DataPlanes; memo: PlanesMemo } {
  const gateways = JSON.stringify(ir.gateways);
  let same: PlanesMemo | undefined;
  if (previous !== undefined && previous.options === optionsKey && previous.gateways === gateways) {
    const at = replacedAt(previous.clusters, ir.clusters);
    if (at !== undefined && at.every((i) => clusterFacts(ir.clusters[i] as ClusterIR) === clusterFacts(previous.clusters[i] as ClusterIR))) same = previous;
  }
  if (same !== undefined && sameItems(same.listeners, ir.listeners)) return { planes: same.planes, memo: { ...same, clusters: ir.clusters } };
  // A route edit: only the Gateway whose listener changed looks at its routes again.
  const { planes, byGateway } = planesOf(ir, options, same?.byGateway);
  return { planes, memo: { options: optionsKey, gateways, listeners: ir.listeners, clusters: ir.clusters, planes, byGateway } };
}
