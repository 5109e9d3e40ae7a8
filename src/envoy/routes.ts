import { toEnvoyDuration } from '../api/duration.js';
import { ABANDONED_HEADER, ROUTE_RETRIES_HEADER, type HeaderEdits, type ListenerIR, type MatchIR, type RetryPlan, type RouteIR, type VirtualHostIR } from '../ir/model.js';
import { warmedClusters, warmupVirtualHost } from './ai-warmup-routes.js';
import { ANY } from './names.js';
import { encodeOnce, reuseEncodedPieces } from './proto.js';
import { TypeUrl, deepFrozen, type EnvoyResource, type JsonObject, type JsonValue } from './resources.js';

/** A PathPrefix without its trailing "/" ("/" stays "/"). */
function prefixPath(value: string): string {
  const trimmed = value.replace(/\/+$/, '');
  return trimmed === '' ? '/' : trimmed;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * URLRewrite ReplacePrefixMatch. Envoy's prefix_rewrite keeps what follows the matched prefix,
 * "/" included, so "/" as replacement would give "//x"; Gateway API wants "/x" (trailing slashes
 * of prefix and replacement do not count).
 */
function prefixRewrite(match: MatchIR, replacement: string): JsonObject {
  const target = replacement.replace(/\/+$/, '');
  const prefix = match.path.kind === 'PathPrefix' ? prefixPath(match.path.value) : undefined;
  if (prefix === '/') return target === '' ? {} : { prefix_rewrite: `${target}/` };
  if (target === '' && prefix !== undefined) return { regex_rewrite: { pattern: { regex: `^${escapeRegex(prefix)}/*` }, substitution: '/' } };
  return { prefix_rewrite: target === '' ? '/' : target };
}

function stringMatch(value: string, regex: boolean): JsonObject {
  return regex ? { safe_regex: { regex: value } } : { exact: value };
}

function routeMatch(m: MatchIR): JsonObject {
  const out: JsonObject = {};
  const { kind, value } = m.path;
  if (kind === 'Exact') out.path = value;
  else if (kind === 'RegularExpression') out.safe_regex = { regex: value };
  else {
    // Gateway API PathPrefix matches whole segments ("/v1" matches "/v1/x", not "/v1x") and
    // ignores a trailing "/" ("/v1/" matches "/v1" too).
    const prefix = prefixPath(value);
    if (prefix === '/') out.prefix = '/';
    else out.path_separated_prefix = prefix;
  }
  const headers: JsonObject[] = m.headers.map((h) => ({ name: h.name, string_match: stringMatch(h.value, h.regex) }));
  if (m.method) headers.push({ name: ':method', string_match: { exact: m.method } });
  if (headers.length > 0) out.headers = headers;
  if (m.queryParams.length > 0) out.query_parameters = m.queryParams.map((q) => ({ name: q.name, string_match: stringMatch(q.value, q.regex) }));
  return out;
}

function toRetryPolicy(r: RetryPlan): JsonObject {
  const policy: JsonObject = {
    retry_on: r.retryOn.join(','),
    num_retries: r.attempts,
    retry_back_off: {
      base_interval: toEnvoyDuration(r.backoff.baseMs),
      ...(r.backoff.maxMs !== undefined ? { max_interval: toEnvoyDuration(r.backoff.maxMs) } : {}),
    },
  };
  if (r.statusCodes.length > 0) policy.retriable_status_codes = [...r.statusCodes];
  if (r.retriableHeaders && r.retriableHeaders.length > 0) policy.retriable_headers = r.retriableHeaders.map((name) => ({ name, present_match: true }));
  if (r.perTryTimeoutMs !== undefined) policy.per_try_timeout = toEnvoyDuration(r.perTryTimeoutMs);
  if (r.rateLimited) {
    policy.rate_limited_retry_back_off = {
      reset_headers: r.rateLimited.resetHeaders.map((h) => ({ name: h.name, format: h.format === 'Seconds' ? 'SECONDS' : 'UNIX_TIMESTAMP' })),
      max_interval: toEnvoyDuration(r.rateLimited.maxMs),
    };
  }
  if (r.attemptsPerPriority !== undefined) {
    policy.retry_priority = {
      name: 'envoy.retry_priorities.previous_priorities',
      typed_config: { '@type': ANY.previousPriorities, update_frequency: r.attemptsPerPriority },
    };
  }
  if (r.avoidPreviousHosts) {
    policy.retry_host_predicate = [{ name: 'envoy.retry_host_predicates.previous_hosts', typed_config: { '@type': ANY.previousHosts } }];
    policy.host_selection_retry_max_attempts = String(r.hostSelectionAttempts);
  }
  return policy;
}

/**
 * The retry policies of one RouteConfiguration, one object per distinct plan: the routes to
 * Backends with the same retry settings (most of them: the defaults) share it. A policy per
 * route was a tenth of the route JSON at 10,000 Backends. Frozen, as every shared part of a
 * resource (resources.ts deepFrozen); kept for one configuration only, so it never outgrows it.
 */
const RETRY_POLICY_TYPE = 'envoy.config.route.v3.RetryPolicy';

class RetryPolicies {
  private readonly byPlan = new Map<string, JsonObject>();

  of(r: RetryPlan): JsonObject {
    const { namedFallback: _usedByTheRoute, ...plan } = r;
    const key = JSON.stringify(plan);
    let policy = this.byPlan.get(key);
    if (policy === undefined) {
      policy = deepFrozen(toRetryPolicy(r));
      this.byPlan.set(key, policy);
      // Shared by the routes to every Backend with these settings: encoded once, copied into each
      // route after (10,000 Backends: 10,000 encodes of one policy, and as many sorts of its fields).
      encodeOnce(RETRY_POLICY_TYPE, [policy]);
    }
    return policy;
  }
}

/**
 * Envoy reads header values as substitution formats: "%REQ(x)%" is expanded, a lone "%" makes it
 * refuse the whole RouteConfiguration. Gateway API values are literal, so every "%" is doubled.
 */
function literalHeaderValue(value: string): string {
  return value.replaceAll('%', '%%');
}

function headerEdits(h: HeaderEdits | undefined, prefix: 'request' | 'response'): JsonObject {
  if (!h) return {};
  const add: JsonValue[] = [
    ...h.set.map((x) => ({ header: { key: x.name, value: literalHeaderValue(x.value) }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' })),
    ...h.add.map((x) => ({ header: { key: x.name, value: literalHeaderValue(x.value) }, append_action: 'APPEND_IF_EXISTS_OR_ADD' })),
  ];
  const out: JsonObject = {};
  if (add.length > 0) out[`${prefix}_headers_to_add`] = add;
  if (h.remove.length > 0) out[`${prefix}_headers_to_remove`] = [...h.remove];
  return out;
}

/**
 * Headers by which a client Envoy trusts (an internal address) overrides or widens the route's
 * retry policy. Each retry's pool follows the policy (previous_priorities, the extension's skips),
 * so the Backend's plan must be the only one.
 */
export const CLIENT_RETRY_HEADERS = ['x-envoy-max-retries', 'x-envoy-retry-on', 'x-envoy-retry-grpc-on', 'x-envoy-retriable-status-codes', 'x-envoy-retriable-header-names'];

const REDIRECT_CODES: Record<number, string> = {
  301: 'MOVED_PERMANENTLY', 302: 'FOUND', 303: 'SEE_OTHER', 307: 'TEMPORARY_REDIRECT', 308: 'PERMANENT_REDIRECT',
};

/**
 * The few distinct route timeouts, one string each: every route entry's action kept a string of
 * its own (10,000 routes, nearly all with the default timeout).
 */
const timeouts = new Map<number, string>();

function routeTimeout(ms: number): string {
  let text = timeouts.get(ms);
  if (text === undefined) {
    text = toEnvoyDuration(ms);
    // Bounded: a configuration has few distinct timeouts, but they are user input.
    if (timeouts.size >= 256) timeouts.clear();
    timeouts.set(ms, text);
  }
  return text;
}

function toRoute(r: RouteIR, policies: RetryPolicies): JsonObject {
  const route: JsonObject = { name: r.name, match: routeMatch(r.match), ...headerEdits(r.requestHeaders, 'request'), ...headerEdits(r.responseHeaders, 'response') };
  const a = r.action;
  if (a.kind === 'direct') {
    route.direct_response = { status: a.status, body: { inline_string: a.body } };
    // Added to the rule's own ResponseHeaderModifier edits, not instead of them.
    const edits = Array.isArray(route.response_headers_to_add) ? route.response_headers_to_add : [];
    route.response_headers_to_add = [...edits, { header: { key: 'content-type', value: a.contentType ?? 'text/plain; charset=utf-8' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }];
    return route;
  }
  if (a.kind === 'redirect') {
    const redirect: JsonObject = { response_code: REDIRECT_CODES[a.statusCode] ?? 'FOUND' };
    if (a.scheme) redirect.scheme_redirect = a.scheme;
    if (a.hostname) redirect.host_redirect = a.hostname;
    if (a.port) redirect.port_redirect = a.port;
    if (a.path?.kind === 'full') redirect.path_redirect = a.path.value;
    if (a.path?.kind === 'prefix') redirect.prefix_rewrite = a.path.value;
    route.redirect = redirect;
    return route;
  }
  const action: JsonObject = { timeout: routeTimeout(a.timeoutMs) };
  const only = a.clusters.length === 1 ? a.clusters[0] : undefined;
  // Per-backend header edits (backendRef filters) exist only on weighted cluster entries, where
  // Envoy applies them once it has picked the cluster; one cluster is then a one-entry list.
  const perCluster = a.clusters.some((c) => c.requestHeaders || c.responseHeaders);
  if (only && !perCluster) action.cluster = only.name;
  else {
    action.weighted_clusters = {
      clusters: a.clusters.map((c) => ({ name: c.name, weight: c.weight, ...headerEdits(c.requestHeaders, 'request'), ...headerEdits(c.responseHeaders, 'response') })),
    };
  }
  if (a.clusterNotFoundStatus === 500) action.cluster_not_found_response_code = 'INTERNAL_SERVER_ERROR';
  if (a.hostRewrite) action.host_rewrite_literal = a.hostRewrite;
  else if (a.autoHostRewrite) action.auto_host_rewrite = true;
  if (a.pathRewrite?.kind === 'prefix') Object.assign(action, prefixRewrite(r.match, a.pathRewrite.value));
  if (a.pathRewrite?.kind === 'full') action.regex_rewrite = { pattern: { regex: '^/.*$' }, substitution: a.pathRewrite.value };
  if (a.retry) action.retry_policy = policies.of(a.retry);
  const standsIn = a.retry?.retriableHeaders?.includes(ABANDONED_HEADER) === true;
  if (standsIn) {
    // Envoy applies the route's header removals before it reads the retry headers (router
    // decodeHeaders: finalizeRequestHeaders, then createRetryState), whether or not the HCM
    // trusts the client: on a route where the AI extension stands in answers, a client's own
    // retry count could end the request on a stand-in with no body.
    const removals = Array.isArray(route.request_headers_to_remove) ? route.request_headers_to_remove : [];
    route.request_headers_to_remove = [...removals, ...CLIENT_RETRY_HEADERS.filter((h) => !removals.includes(h))];
  }
  if (a.retry !== undefined && (a.retry.namedFallback !== undefined || standsIn)) {
    // The extension's stand-ins need the route's retries: a skip must not spend the last one, and
    // the last attempt's failure is answered with a body. Evaluated once per request, before host
    // selection: a constant of the route is all it carries.
    const edits = Array.isArray(route.request_headers_to_add) ? route.request_headers_to_add : [];
    const value = `${a.retry.attempts}/${a.retry.attemptsPerPriority ?? 1}`;
    route.request_headers_to_add = [...edits, { header: { key: ROUTE_RETRIES_HEADER, value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }];
  }
  route.route = action;
  return route;
}

/** Route → request body limit for routes that forward to clusters that need one (AI clusters). */
export type BodyLimits = ReadonlyMap<string, number>;

function withBodyLimit(route: JsonObject, r: RouteIR, limits: BodyLimits): JsonObject {
  if (r.action.kind !== 'forward') return route;
  const limit = Math.max(0, ...r.action.clusters.map((c) => limits.get(c.name) ?? 0));
  // Retries hold the whole request (and so does the extension): the listener's 1 MiB default is too small.
  if (limit > 0) route.request_body_buffer_limit = String(limit);
  return route;
}

/** Envoy refuses a whole RouteConfiguration with a larger direct_response body unless told more. */
const ENVOY_DIRECT_RESPONSE_BODY_LIMIT = 4096;

/** A virtual host as built: its JSON, and the largest direct response body among its routes. */
interface BuiltHost {
  readonly json: JsonObject;
  readonly largestDirect: number;
}

/**
 * The route entries and virtual hosts built for one set of body limits, by the IR object each
 * was built from. Translation hands over the same IR objects for the routes and virtual hosts
 * an edit did not touch, so a RouteConfiguration is assembled from the JSON built before, and
 * the encoder copies the bytes of each route entry it encoded before (reuseEncodedPieces):
 * an edit of one route among thousands builds and encodes that route.
 */
export class RoutePieces {
  readonly routes = new WeakMap<RouteIR, JsonObject>();
  readonly hosts = new WeakMap<VirtualHostIR, BuiltHost>();
  constructor(readonly bodyLimits: BodyLimits) {}
}

const ROUTE_TYPE = 'envoy.config.route.v3.Route';

function toVirtualHost(vh: VirtualHostIR, pieces: RoutePieces, policies: RetryPolicies): BuiltHost {
  const known = pieces.hosts.get(vh);
  if (known !== undefined) return known;
  const fresh: JsonObject[] = [];
  let largestDirect = 0;
  const routes = vh.routes.map((r) => {
    if (r.action.kind === 'direct') largestDirect = Math.max(largestDirect, Buffer.byteLength(r.action.body));
    let json = pieces.routes.get(r);
    if (json === undefined) {
      json = withBodyLimit(toRoute(r, policies), r, pieces.bodyLimits);
      pieces.routes.set(r, json);
      fresh.push(json);
    }
    return json;
  });
  if (fresh.length > 0) reuseEncodedPieces(ROUTE_TYPE, fresh);
  const built: BuiltHost = {
    json: {
      name: vh.name,
      domains: [...vh.domains],
      routes,
      // Lets upstreams (and tests) see which attempt of a request they serve.
      include_request_attempt_count: true,
    },
    largestDirect,
  };
  pieces.hosts.set(vh, built);
  return built;
}

/** `pieces`: what was built before for the same body limits (a new set when omitted). */
export function toRouteConfiguration(l: ListenerIR, bodyLimits: BodyLimits = new Map(), pieces: RoutePieces = new RoutePieces(bodyLimits)): EnvoyResource {
  // Routes built in this call share retry policies; those built before keep theirs.
  const policies = new RetryPolicies();
  const hosts = l.virtualHosts.map((vh) => toVirtualHost(vh, pieces, policies));
  const largest = Math.max(0, ...hosts.map((h) => h.largestDirect));
  const directLimit = largest > ENVOY_DIRECT_RESPONSE_BODY_LIMIT ? largest : undefined;
  const warmup = warmupVirtualHost(warmedClusters(l, bodyLimits));
  return {
    '@type': TypeUrl.route,
    name: l.name,
    // GET /v1/models lists every model a host serves: past ~50 models its body outgrows the default.
    ...(directLimit !== undefined ? { max_direct_response_body_size_bytes: directLimit } : {}),
    // Routes may name clusters that do not exist (an invalid backendRef's share, answered 500);
    // RDS does not validate them by default, and saying so keeps static and RDS use alike.
    validate_clusters: false,
    // Gateway API matches hostnames without the port ("very.specific.com:1234" is very.specific.com),
    // yet the backend must see the Host the client sent: HCM's strip_any_host_port would rewrite it.
    ignore_port_in_host_matching: true,
    virtual_hosts: [...(warmup !== undefined ? [warmup] : []), ...hosts.map((h) => h.json)],
  };
}
