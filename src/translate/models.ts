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

/** What a host's /v1/models answer reads of one route entry, for one map of models by cluster. */
interface RouteModels {
  readonly byCluster: ReadonlyMap<string, ServedModels>;
  /** It forwards to an AI Backend's cluster. */
  readonly reachesAi: boolean;
  readonly models: readonly { id: string; owner: string }[];
}

/** RouteModels of each route entry, while the models by cluster are the same map: a host's answer is built again after an edit of one of its routes. */
const modelsOfRoute = new WeakMap<RouteIR, RouteModels>();

const NO_MODELS: readonly { id: string; owner: string }[] = [];

function routeModels(route: RouteIR, byCluster: ReadonlyMap<string, ServedModels>): RouteModels {
  const known = modelsOfRoute.get(route);
  if (known !== undefined && known.byCluster === byCluster) return known;
  const reachesAi = route.action.kind === 'forward' && route.action.clusters.some((c) => byCluster.has(c.name));
  const models = reachesAi ? modelsOf(route, byCluster) : NO_MODELS;
  const entry = { byCluster, reachesAi, models };
  // Routes to no AI Backend are answered at once: only the others are worth an entry.
  if (reachesAi) modelsOfRoute.set(route, entry);
  return entry;
}

/** The model names one route entry accepts: its own x-switchyard-model match, else its Backends'. */
function modelsOf(route: RouteIR, byCluster: ReadonlyMap<string, ServedModels>): { id: string; owner: string }[] {
  if (route.action.kind !== 'forward') return [];
  const served = route.action.clusters.flatMap((c) => {
    const s = byCluster.get(c.name);
    return s ? [s] : [];
  });
  if (served.length === 0) return [];
  const match = route.match.headers.find((h) => h.name === MODEL_HEADER);
  const owner = served[0]?.owner ?? '';
  if (match && !match.regex) return [{ id: match.value, owner }];
  const pattern = match ? fullMatch(match.value) : undefined;
  return served.flatMap((s) => s.ids.filter((id) => pattern === undefined || pattern.test(id)).map((id) => ({ id, owner: s.owner })));
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
  for (const r of routes) {
    if (r.match.path.kind === 'Exact' && r.match.path.value === MODELS_PATH) return undefined;
    const served = routeModels(r, byCluster);
    if (!served.reachesAi) continue;
    reachesAi = true;
    for (const m of served.models) if (!owners.has(m.id)) owners.set(m.id, m.owner);
  }
  if (!reachesAi) return undefined;
  const data = [...owners.keys()].sort(byCodeUnits).map((id) => ({ id, object: 'model', created: 0, owned_by: owners.get(id) ?? '' }));
  return {
    name: `${virtualHost}/models`,
    match: { path: { kind: 'Exact', value: MODELS_PATH }, headers: [], queryParams: [], method: 'GET' },
    action: { kind: 'direct', status: 200, body: JSON.stringify({ object: 'list', data }), contentType: 'application/json' },
  };
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
