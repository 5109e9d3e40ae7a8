import type { Backend, PoolMember } from '../api/backend.js';
import { MODEL_HEADER, MODELS_PATH, type ModelAliases } from '../api/models.js';
import type { ClusterIR, RouteIR } from '../ir/model.js';
import { shared } from './shared.js';

/**
 * Model names and aliases: what each AI member is sent for a client's model, and what a Gateway
 * answers on GET /v1/models (OpenAI's list format) from the routes of one virtual host.
 */

/**
 * The aliases one member applies. A member whose provider fixes its model keeps it for every
 * alias but its own; the Backend's aliases are for members that would otherwise pass the
 * client's model through.
 */
export function memberModelAliases(backend: ModelAliases | undefined, member: Pick<PoolMember, 'models'>, fixedModel: string | undefined): Record<string, string> | undefined {
  const merged = { ...(fixedModel === undefined ? backend : {}), ...member.models };
  return Object.keys(merged).length > 0 ? merged : undefined;
}

/** What a client may name in `model` to reach a Backend: its aliases and its usable members' models. */
export interface ServedModels {
  /** "<namespace>/<name>" of the Backend, OpenAI's `owned_by`. */
  owner: string;
  ids: string[];
}

export function servedModels(backend: Backend, cluster: ClusterIR, owner: string): ServedModels {
  const ids = new Set<string>(Object.keys(backend.spec.ai?.models ?? {}));
  for (const p of cluster.priorities) {
    for (const m of p.members) {
      if (m.metadata.model !== undefined) ids.add(m.metadata.model);
      for (const alias of Object.keys(m.metadata.modelAliases ?? {})) ids.add(alias);
    }
  }
  // Backends of one shape serve the same model names: one frozen list for all of them.
  return { owner, ids: shared([...ids]) };
}

/**
 * What a host's /v1/models answer reads of one route entry: the served models of the Backends it
 * forwards to (the translation's own ServedModels when the route does not narrow them, so an
 * entry costs no copy of them), one list or, for the usual route to one Backend, that one.
 */
type RouteModels = ServedModels | readonly ServedModels[];

/**
 * RouteModels of each route entry that reaches an AI Backend, by map of models by cluster: a
 * host's answer is built again after an edit of one of its routes. A new map (a Backend's models
 * changed) starts a new table, and a table goes with its map; an entry of {id, owner} pairs per
 * route kept 3.5 MB at 10,000 routes.
 */
const modelsOfRoute = new WeakMap<ReadonlyMap<string, ServedModels>, WeakMap<RouteIR, RouteModels>>();

const NO_MODELS: readonly ServedModels[] = [];

function routeModels(route: RouteIR, byCluster: ReadonlyMap<string, ServedModels>, known: WeakMap<RouteIR, RouteModels>): RouteModels {
  const models = known.get(route);
  if (models !== undefined) return models;
  const fresh = modelsOf(route, byCluster);
  // Routes to no AI Backend are answered at once: only the others are worth an entry.
  if (fresh !== NO_MODELS) known.set(route, fresh);
  return fresh;
}

/**
 * The model names one route entry accepts, by owner: its own x-switchyard-model match, else its
 * Backends'. NO_MODELS when it reaches no AI Backend.
 */
function modelsOf(route: RouteIR, byCluster: ReadonlyMap<string, ServedModels>): RouteModels {
  if (route.action.kind !== 'forward') return NO_MODELS;
  const clusters = route.action.clusters;
  const served: ServedModels[] = [];
  for (const c of clusters) {
    const s = byCluster.get(c.name);
    if (s) served.push(s);
  }
  if (served.length === 0) return NO_MODELS;
  const match = route.match.headers.find((h) => h.name === MODEL_HEADER);
  if (match && !match.regex) return { owner: served[0]?.owner ?? '', ids: [match.value] };
  if (match) {
    const pattern = fullMatch(match.value);
    return served.map((s) => ({ owner: s.owner, ids: pattern === undefined ? s.ids : s.ids.filter((id) => pattern.test(id)) }));
  }
  return served.length === 1 ? (served[0] as ServedModels) : served;
}

/** Gateway API header regexes match the whole value; JS syntax covers the RE2 subset models use. */
function fullMatch(re2: string): RegExp | undefined {
  try {
    return new RegExp(`^(?:${re2})$`, 'u');
  } catch {
    return undefined;
  }
}

/**
 * GET /v1/models for a virtual host whose routes reach an AI Backend, unless an HTTPRoute there
 * claims the exact path itself (its own answer wins). Sorted by id, each id once.
 */
export function modelsRoute(routes: readonly RouteIR[], byCluster: ReadonlyMap<string, ServedModels>, virtualHost: string): RouteIR | undefined {
  return hostModels(routes, byCluster, virtualHost)?.route;
}

/** A host's /v1/models answer, and the owner of each model id it lists (what modelsAfterEdit starts from). */
export interface HostModels {
  readonly route: RouteIR;
  readonly owners: ReadonlyMap<string, string>;
}

/** modelsRoute, with the owners it found. */
export function hostModels(routes: readonly RouteIR[], byCluster: ReadonlyMap<string, ServedModels>, virtualHost: string): HostModels | undefined {
  let reachesAi = false;
  const owners = new Map<string, string>();
  const known = knownModels(byCluster);
  for (const r of routes) {
    if (claimsModelsPath(r)) return undefined;
    const served = routeModels(r, byCluster, known);
    if (served === NO_MODELS) continue;
    reachesAi = true;
    if ('owner' in served) addModels(owners, served);
    else for (const s of served) addModels(owners, s);
  }
  if (!reachesAi) return undefined;
  return { route: modelsAnswer(owners, virtualHost), owners };
}

/**
 * hostModels after an edit of a few of the host's routes (`removed` left, `added` joined;
 * `routes` is the host's routes now, in order), from its answer before: only the model ids the
 * routes that moved serve are looked for again, each from the first route on, where the first
 * route serving it names its owner (usually the first route or one near it). An edit of one route
 * among 10,000 on one host built the answer from all of them. Undefined when it cannot be
 * followed so (then the caller builds it from all routes): no answer before or one listing no
 * model, a moved route that claims the path itself, or no model id left.
 */
export function modelsAfterEdit(
  before: HostModels | undefined,
  routes: readonly RouteIR[],
  removed: readonly RouteIR[],
  added: readonly RouteIR[],
  byCluster: ReadonlyMap<string, ServedModels>,
  virtualHost: string,
): HostModels | undefined {
  if (before === undefined) return undefined;
  const known = knownModels(byCluster);
  const ids = new Set<string>();
  for (const r of [...removed, ...added]) {
    if (claimsModelsPath(r)) return undefined;
    const served = routeModels(r, byCluster, known);
    if ('owner' in served) for (const id of served.ids) ids.add(id);
    else for (const s of served) for (const id of s.ids) ids.add(id);
  }
  // An answer listing no model says only that some route reaches an AI Backend, which the moved
  // routes may have been the last to do: built again from all routes.
  if (before.owners.size === 0) return undefined;
  if (ids.size === 0) return before;
  const owners = new Map(before.owners);
  for (const id of ids) {
    const owner = firstOwner(routes, id, byCluster, known);
    if (owner === undefined) owners.delete(id);
    else owners.set(id, owner);
  }
  if (owners.size === 0) return undefined;
  return { route: modelsAnswer(owners, virtualHost), owners };
}

/** The owner the first route serving `id` names (as addModels would have it), else undefined. */
function firstOwner(routes: readonly RouteIR[], id: string, byCluster: ReadonlyMap<string, ServedModels>, known: WeakMap<RouteIR, RouteModels>): string | undefined {
  for (const r of routes) {
    const served = routeModels(r, byCluster, known);
    if (served === NO_MODELS) continue;
    if ('owner' in served) {
      if (served.ids.includes(id)) return served.owner;
    } else {
      for (const s of served) if (s.ids.includes(id)) return s.owner;
    }
  }
  return undefined;
}

function claimsModelsPath(r: RouteIR): boolean {
  return r.match.path.kind === 'Exact' && r.match.path.value === MODELS_PATH;
}

function knownModels(byCluster: ReadonlyMap<string, ServedModels>): WeakMap<RouteIR, RouteModels> {
  let known = modelsOfRoute.get(byCluster);
  if (known === undefined) {
    known = new WeakMap();
    modelsOfRoute.set(byCluster, known);
  }
  return known;
}

function modelsAnswer(owners: ReadonlyMap<string, string>, virtualHost: string): RouteIR {
  const data = [...owners.keys()].sort(byCodeUnits).map((id) => ({ id, object: 'model', created: 0, owned_by: owners.get(id) ?? '' }));
  return {
    name: `${virtualHost}/models`,
    match: { path: { kind: 'Exact', value: MODELS_PATH }, headers: [], queryParams: [], method: 'GET' },
    action: { kind: 'direct', status: 200, body: JSON.stringify({ object: 'list', data }), contentType: 'application/json' },
  };
}

/** Each id not yet listed, with its owner: the first route to name a model names its owner. */
function addModels(owners: Map<string, string>, served: ServedModels): void {
  for (const id of served.ids) if (!owners.has(id)) owners.set(id, served.owner);
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
