import { ABANDONED_HEADER, type ListenerIR, type VirtualHostIR } from '../ir/model.js';
import { ANY } from './names.js';
import { deepFrozen, type JsonObject } from './resources.js';

/**
 * The warm-up routes (issue 11): serve's warm-up requests (src/app/ai-warmup.ts) reach each AI
 * cluster through a virtual host of its own in every route configuration, not through the user's
 * routes. So HTTPS listeners, routes that match a regular expression or a query parameter, and
 * Backends split with others in one rule are warmed like the rest, and a member the load
 * balancer rarely picks is addressed directly (the stateful session filter's override host).
 *
 * Any client of the listener can reach this virtual host. What keeps it harmless: a route
 * matches only with the warm-up header present, and adds WARMUP_ROUTE_HEADER, which a client
 * cannot remove; the AI extension answers every attempt of a request that carries it itself,
 * with a 403 when the warm-up header is not signed with its key, so no provider is ever called
 * from here (src/ai-extension/exchange.ts).
 */

/** The signed warm-up order (src/ai-extension/warmup.ts); the routes match on its presence. */
export const WARMUP_HEADER = 'x-switchyard-warmup';
/** The AI cluster a warm-up request is for (its route matches this exactly). */
export const WARMUP_CLUSTER_HEADER = 'x-switchyard-warmup-cluster';
/** Base64 of "address:port" of the host the attempt should go to (stateful session, header based). */
export const WARMUP_HOST_HEADER = 'x-switchyard-warmup-host';
/** Set by the warm-up routes: the extension must answer every attempt itself. */
export const WARMUP_ROUTE_HEADER = 'x-switchyard-warmup-route';
/** The Host of warm-up requests: `.invalid` is never a real name (RFC 2606), so no user host has it. */
export const WARMUP_DOMAIN = 'ai-warmup.switchyard.invalid';
/** Retries of a warm-up route: one per pool it walks past (previous_priorities), so 17 pools at most. */
export const WARMUP_RETRIES = 16;

const STATEFUL_SESSION = 'envoy.filters.http.stateful_session';

/**
 * The AI clusters of a listener whose attempts the extension may stand in for (a route to them
 * retries ABANDONED_HEADER), whatever the route's match or split: those a skip or a credential
 * hand-over can reach. `ai`: the AI clusters' names.
 */
export function warmedClusters(l: ListenerIR, ai: ReadonlyMap<string, unknown>): string[] {
  // Envoy refuses a route configuration in which two virtual hosts share a domain: a user's
  // hostname equal to the warm-up one (never a real name) leaves that listener without warm-up.
  if (l.virtualHosts.some((vh) => vh.domains.includes(WARMUP_DOMAIN))) return [];
  const names = new Set<string>();
  for (const vh of l.virtualHosts) for (const name of standInClusters(vh)) if (ai.has(name)) names.add(name);
  return [...names].sort();
}

/** By IR object (never changed once built): an edit of one route walks its own host's routes only. */
const byHost = new WeakMap<VirtualHostIR, readonly string[]>();

/** The clusters a route of the host sends to with retries of ABANDONED_HEADER. */
function standInClusters(vh: VirtualHostIR): readonly string[] {
  let names = byHost.get(vh);
  if (names === undefined) {
    const found = new Set<string>();
    for (const r of vh.routes) {
      if (r.action.kind !== 'forward' || r.action.retry?.retriableHeaders?.includes(ABANDONED_HEADER) !== true) continue;
      for (const c of r.action.clusters) found.add(c.name);
    }
    names = [...found];
    byHost.set(vh, names);
  }
  return names;
}

const SESSION_BY_HEADER: JsonObject = deepFrozen({
  '@type': ANY.statefulSessionPerRoute,
  stateful_session: {
    session_state: { name: 'envoy.http.stateful_session.header', typed_config: { '@type': ANY.headerSessionState, name: WARMUP_HOST_HEADER } },
  },
});

/**
 * The warm-up route's retries walk the pools one attempt each, as a Backend's defaults do: the
 * extension stands in a retried answer on every pool before the one being warmed.
 */
const WARMUP_RETRY_POLICY: JsonObject = deepFrozen({
  retry_on: 'retriable-headers',
  num_retries: WARMUP_RETRIES,
  retriable_headers: [{ name: ABANDONED_HEADER, present_match: true }],
  retry_back_off: { base_interval: '0.001s', max_interval: '0.010s' },
  retry_priority: { name: 'envoy.retry_priorities.previous_priorities', typed_config: { '@type': ANY.previousPriorities, update_frequency: 1 } },
  retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts', typed_config: { '@type': ANY.previousHosts } }],
  host_selection_retry_max_attempts: '3',
});

const MARK: JsonObject = deepFrozen({ header: { key: WARMUP_ROUTE_HEADER, value: '1' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' });

function warmupRoute(cluster: string): JsonObject {
  return {
    name: `switchyard/ai-warmup/${cluster}`,
    match: {
      prefix: '/',
      headers: [
        { name: WARMUP_CLUSTER_HEADER, string_match: { exact: cluster } },
        { name: WARMUP_HEADER, present_match: true },
      ],
    },
    request_headers_to_add: [MARK],
    typed_per_filter_config: { [STATEFUL_SESSION]: SESSION_BY_HEADER },
    route: { cluster, timeout: '30s', retry_policy: WARMUP_RETRY_POLICY },
  };
}

/** The warm-up virtual host of a route configuration; undefined when no cluster needs one. */
export function warmupVirtualHost(clusters: readonly string[]): JsonObject | undefined {
  if (clusters.length === 0) return undefined;
  return {
    name: 'switchyard/ai-warmup',
    domains: [WARMUP_DOMAIN],
    routes: clusters.map(warmupRoute),
    // The extension tells a warm-up request's attempts apart by it.
    include_request_attempt_count: true,
  };
}

/**
 * In the listener's filter chain, off unless a route turns it on (the warm-up routes): only
 * there does a header choose the upstream host.
 */
export function statefulSessionFilter(): JsonObject {
  return { name: STATEFUL_SESSION, typed_config: { '@type': ANY.statefulSession }, disabled: true };
}
