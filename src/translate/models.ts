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
  let reachesAi = false;
  const owners = new Map<string, string>();
  let known = modelsOfRoute.get(byCluster);
  if (known === undefined) {
    known = new WeakMap();
    modelsOfRoute.set(byCluster, known);
  }
  for (const r of routes) {
    if (r.match.path.kind === 'Exact' && r.match.path.value === MODELS_PATH) return undefined;
    const served = routeModels(r, byCluster, known);
    if (served === NO_MODELS) continue;
    reachesAi = true;
    if ('owner' in served) addModels(owners, served);
    else for (const s of served) addModels(owners, s);
  }
  if (!reachesAi) return undefined;
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
