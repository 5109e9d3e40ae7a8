import type { ClusterIR, IR, ListenerIR } from '../ir/model.js';
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

/** The clusters a listener's routes send traffic to. */
function forwardedClusters(l: ListenerIR): Set<string> {
  const names = new Set<string>();
  for (const vh of l.virtualHosts) {
    for (const r of vh.routes) if (r.action.kind === 'forward') for (const c of r.action.clusters) names.add(c.name);
  }
  return names;
}

const UNSPECIFIED = new Set(['0.0.0.0', '::', '']);

/** Two binds collide on one port when they name the same address or one is the wildcard. */
function collide(a: string, b: string): boolean {
  return a === b || UNSPECIFIED.has(a) || UNSPECIFIED.has(b);
}

/** IR → what each data plane receives. Pure; names match toXdsResources' resources. */
export function toDataPlanes(ir: IR, options: Partial<EnvoyOptions> = {}): DataPlanes {
  const opts = { ...DEFAULT_ENVOY_OPTIONS, ...options };
  const clusters = new Map(ir.clusters.map((c) => [c.name, c]));
  const byGateway = new Map<string, ListenerIR[]>();
  for (const l of ir.listeners) {
    const key = gatewayKey(l.gateway);
    const listeners = byGateway.get(key);
    if (listeners === undefined) byGateway.set(key, [l]);
    else listeners.push(l);
  }

  const gateways = new Map<string, ResourceNames>();
  for (const g of ir.gateways) {
    const listeners = byGateway.get(gatewayKey(g)) ?? [];
    const clusterNames = new Set<string>();
    for (const l of listeners) for (const name of forwardedClusters(l)) if (clusters.has(name)) clusterNames.add(name);
    const selected = [...clusterNames].sort().flatMap((name) => {
      const c = clusters.get(name);
      return c === undefined ? [] : [c];
    });
    gateways.set(gatewayKey(g), {
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
    });
  }

  // Oldest Gateway first (then by name): it keeps a contested port on the shared data plane,
  // so which Gateway loses it does not change when another one is edited.
  const order = [...ir.gateways].sort((a, b) => {
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
  return { gateways, shared: { excluded: excluded.length > 0 ? { listeners: excluded, routes: excluded } : {}, problems } };
}

/** What toDataPlanesReusing needs to tell that the data planes are as they were. */
export interface PlanesMemo {
  readonly options: string;
  readonly gateways: string;
  readonly listeners: readonly ListenerIR[];
  readonly clusters: readonly ClusterIR[];
  readonly planes: DataPlanes;
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
  if (previous !== undefined && previous.options === optionsKey && previous.gateways === gateways && sameItems(previous.listeners, ir.listeners)) {
    const at = replacedAt(previous.clusters, ir.clusters);
    if (at !== undefined && at.every((i) => clusterFacts(ir.clusters[i] as ClusterIR) === clusterFacts(previous.clusters[i] as ClusterIR))) {
      return { planes: previous.planes, memo: { ...previous, clusters: ir.clusters } };
    }
  }
  const planes = toDataPlanes(ir, options);
  return { planes, memo: { options: optionsKey, gateways, listeners: ir.listeners, clusters: ir.clusters, planes } };
}
