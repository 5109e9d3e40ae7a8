import { sameItems } from '../ir/delta.js';
import type { VirtualHostIR } from '../ir/model.js';
import { hostModels, modelsAfterEdit, type HostModels, type ServedModels } from './models.js';
import { compareRoutes } from './precedence.js';
import type { PlacedRoute } from './routes.js';

/**
 * A listener's virtual hosts, kept per hostname with the routes in precedence order, so that an
 * edit of a few HTTPRoutes moves only their entries (a binary search each) instead of sorting
 * every route of the listener again; the virtual hosts the edit did not touch stay the same
 * objects, which the Envoy stage recognises.
 */

/** One virtual host: its placed routes in precedence order, and its IR. */
export interface HostRoutes {
  readonly sorted: readonly PlacedRoute[];
  readonly vh: VirtualHostIR;
  /** Its /v1/models answer and the owners in it, when it has one. */
  readonly models: HostModels | undefined;
}

/** A listener's virtual hosts by hostname, and the models they were built with. */
export interface ListenerHosts {
  readonly hosts: ReadonlyMap<string, HostRoutes>;
  readonly byCluster: ReadonlyMap<string, ServedModels>;
  /** In listener order: '*' last, others by code units. */
  readonly virtualHosts: readonly VirtualHostIR[];
}

/** Placements that left and joined one listener. */
export interface PlacementDelta {
  readonly removed: PlacedRoute[];
  readonly added: PlacedRoute[];
}

/**
 * Per listener, the placements of the route results `before` that `after` replaced: the old
 * results' placements leave, the new ones' join.
 */
export function placementDelta(before: readonly { placed: readonly PlacedRoute[] }[], after: readonly { placed: readonly PlacedRoute[] }[]): Map<string, PlacementDelta> {
  const byListener = new Map<string, PlacementDelta>();
  const of = (listener: string): PlacementDelta => {
    let d = byListener.get(listener);
    if (d === undefined) byListener.set(listener, (d = { removed: [], added: [] }));
    return d;
  };
  for (const r of before) for (const p of r.placed) of(p.envoyListener).removed.push(p);
  for (const r of after) for (const p of r.placed) of(p.envoyListener).added.push(p);
  return byListener;
}

/** Past this share of a host's routes, sorting them all again costs less than moving each. */
const MAX_MOVED_SHARE = 8;

/** No placement of the listener changed. */
export const NO_PLACEMENTS_MOVED: PlacementDelta = { removed: [], added: [] };

/**
 * The listener's virtual hosts. With `previous` (built for the same listener shape) and the
 * `delta` since then, only the hosts the delta touches are rebuilt; with 'unknown' (or no
 * previous), they are built from `placed()`, every placement of the listener in route order,
 * and a host whose routes come out as they were keeps its last IR.
 */
export function listenerHosts(
  listener: string,
  previous: ListenerHosts | undefined,
  delta: PlacementDelta | 'unknown',
  placed: () => readonly PlacedRoute[],
  byCluster: ReadonlyMap<string, ServedModels>,
): ListenerHosts {
  const moved = previous === undefined || delta === 'unknown' ? undefined : movedByHost(previous, delta);
  if (previous !== undefined && moved !== undefined && moved.size === 0 && previous.byCluster === byCluster) return previous;
  const followed = previous !== undefined && moved !== undefined ? movedHosts(previous, moved) : undefined;
  const sorted = followed ?? sortedHosts(placed());
  const hosts = new Map<string, HostRoutes>();
  for (const hostname of [...sorted.keys()].sort(hostOrder)) {
    const routes = sorted.get(hostname) as readonly PlacedRoute[];
    const before = previous?.hosts.get(hostname);
    const same = before !== undefined && (before.sorted === routes || sameItems(before.sorted, routes));
    // What moved on this host, when the models are those of the last build (else every route is looked at).
    const hostDelta = followed !== undefined && previous?.byCluster === byCluster ? moved?.get(hostname) : undefined;
    hosts.set(hostname, hostRoutes(listener, hostname, same ? before.sorted : routes, byCluster, before, same && previous?.byCluster === byCluster, hostDelta));
  }
  return { hosts, byCluster, virtualHosts: [...hosts.values()].map((h) => h.vh) };
}

/** Every host's placements in precedence order, from the listener's placements in route order. */
function sortedHosts(placed: readonly PlacedRoute[]): Map<string, readonly PlacedRoute[]> {
  const grouped = new Map<string, PlacedRoute[]>();
  for (const p of placed) {
    const list = grouped.get(p.hostname);
    if (list) list.push(p);
    else grouped.set(p.hostname, [p]);
  }
  // A stable sort: placements that rank equal (one route placed twice) keep route order.
  for (const list of grouped.values()) list.sort(compareRoutes);
  return grouped;
}

/** The last hosts' placements with `moved` applied; undefined when they do not line up (then all are sorted again). */
function movedHosts(previous: ListenerHosts, moved: ReadonlyMap<string, PlacementDelta>): Map<string, readonly PlacedRoute[]> | undefined {
  const sorted = new Map<string, readonly PlacedRoute[]>();
  for (const [hostname, h] of previous.hosts) sorted.set(hostname, h.sorted);
  for (const [hostname, d] of moved) {
    const routes = moveRoutes(sorted.get(hostname) ?? [], d);
    if (routes === undefined) return undefined;
    if (routes.length === 0) sorted.delete(hostname);
    else sorted.set(hostname, routes);
  }
  return sorted;
}

/**
 * The delta by hostname; undefined when it moves too much of a host to follow it entry by
 * entry (then every host is sorted again).
 */
function movedByHost(previous: ListenerHosts, delta: PlacementDelta): Map<string, PlacementDelta> | undefined {
  const byHost = new Map<string, PlacementDelta>();
  const of = (hostname: string): PlacementDelta => {
    let d = byHost.get(hostname);
    if (d === undefined) byHost.set(hostname, (d = { removed: [], added: [] }));
    return d;
  };
  for (const p of delta.removed) of(p.hostname).removed.push(p);
  for (const p of delta.added) of(p.hostname).added.push(p);
  for (const [hostname, d] of byHost) {
    const size = previous.hosts.get(hostname)?.sorted.length ?? 0;
    if (d.removed.length + d.added.length > Math.max(64, size / MAX_MOVED_SHARE)) return undefined;
  }
  return byHost;
}

/**
 * `sorted` without `d.removed` and with `d.added`, each put where a stable sort of the whole
 * list puts it; undefined if a placement to remove is not there (then the caller sorts all).
 * Placements that rank equal belong to one route (the route's key is part of the rank), whose
 * old placements all leave and new ones join in its order: after the equal ones already there.
 */
function moveRoutes(sorted: readonly PlacedRoute[], d: PlacementDelta): PlacedRoute[] | undefined {
  const list = sorted.slice();
  for (const p of d.removed) {
    let i = lowerBound(list, p);
    while (i < list.length && list[i] !== p && compareRoutes(list[i] as PlacedRoute, p) === 0) i++;
    if (list[i] !== p) return undefined;
    list.splice(i, 1);
  }
  for (const p of d.added) list.splice(upperBound(list, p), 0, p);
  return list;
}

function lowerBound(list: readonly PlacedRoute[], p: PlacedRoute): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareRoutes(list[mid] as PlacedRoute, p) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function upperBound(list: readonly PlacedRoute[], p: PlacedRoute): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareRoutes(list[mid] as PlacedRoute, p) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** One host's IR: its routes in order, after its /v1/models answer when it has one. */
function hostRoutes(
  listener: string,
  hostname: string,
  sorted: readonly PlacedRoute[],
  byCluster: ReadonlyMap<string, ServedModels>,
  before: HostRoutes | undefined,
  unchanged: boolean,
  delta: PlacementDelta | undefined,
): HostRoutes {
  if (unchanged && before !== undefined) return before;
  const name = `${listener}/${hostname}`;
  const routes = sorted.map((p) => p.route);
  const edited = delta === undefined ? undefined : modelsAfterEdit(before?.models, routes, delta.removed.map((p) => p.route), delta.added.map((p) => p.route), byCluster, name);
  const found = edited ?? hostModels(routes, byCluster, name);
  let models = found?.route;
  // The same answer keeps its object: the Envoy stage then reuses what it built of it.
  const was = before?.vh.routes[0];
  if (models !== undefined && was !== undefined && was.name === models.name && JSON.stringify(was) === JSON.stringify(models)) models = was;
  const kept = found === undefined || models === undefined ? undefined : { route: models, owners: found.owners };
  if (before !== undefined && sameItems(before.sorted, sorted)) {
    const hadModels = before.vh.routes.length > before.sorted.length;
    if (models === undefined ? !hadModels : hadModels && models === was) return before;
  }
  return { sorted, vh: { name, domains: [hostname], routes: models ? [models, ...routes] : routes }, models: kept };
}

function hostOrder(a: string, b: string): number {
  return a === '*' ? 1 : b === '*' ? -1 : a < b ? -1 : a > b ? 1 : 0;
}

