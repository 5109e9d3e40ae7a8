import { BACKEND_GROUP } from '../api/backend.js';
import { condition, type Condition } from '../api/conditions.js';
import { parseDuration } from '../api/duration.js';
import { CONTROLLER_NAME, GATEWAY_GROUP } from '../api/gateway.js';
import type { BackendRef, HTTPRoute, HTTPRouteFilter, HTTPRouteMatch, HTTPRouteRule, HeaderModifier, ParentReference } from '../api/httproute.js';
import { headerEditProblem, headerNameProblem, headerValueProblem, hostnameProblem, pathProblem, preciseHostnameProblem } from '../api/http-syntax.js';
import { namespaceLabels, selectorMatches, type Namespace } from '../api/namespace.js';
import type { ClusterIR, ForwardAction, HeaderEdits, MatchIR, RetryPlan, RouteIR, WeightedCluster } from '../ir/model.js';
import type { TranslatedBackend } from './backends.js';
import { isServed, listenerTakesKind, type ServedListener } from './gateways.js';
import { effectiveHostnames } from './hostnames.js';
import type { ReferenceGrant } from './inputs.js';
import type { RankedRoute } from './precedence.js';
import { referencePermitted } from './references.js';
import { re2Error } from './regex.js';
import { backendRetryPlan, withRouteRetry } from './retry.js';
import { shared } from './shared.js';
import { serviceRetryPlan, type ServiceBackends } from './services.js';
import type { HTTPRouteStatus, RouteParentStatus, WarningEvent } from './status.js';
import { compact } from '../ir/compact.js';

/** Whole-request timeout when the HTTPRoute sets none: LLM answers take far longer than Envoy's 15 s default. */
export const DEFAULT_ROUTE_TIMEOUT_MS = 300_000;

/** One route entry placed on an Envoy listener's virtual host. */
export interface PlacedRoute extends RankedRoute<RouteIR> {
  envoyListener: string;
  hostname: string;
}

export interface TranslatedRoute {
  status: HTTPRouteStatus;
  placed: PlacedRoute[];
  events: WarningEvent[];
  /** The listeners whose attachedRoutes this route counted, once per attachment (replayed when the result is reused). */
  attachedTo: readonly ServedListener[];
}

interface RouteContext {
  gateways: ReadonlyMap<string, { listeners: ServedListener[] }>;
  /** Gateways that exist but belong to another controller: their parentRefs are not ours to report. */
  foreignGateways: ReadonlySet<string>;
  backends: Pick<ReadonlyMap<string, TranslatedBackend>, 'get'>;
  services: Pick<ServiceBackends, 'resolve'>;
  /** Namespaces by name, for listeners that select route namespaces by label. */
  namespaces: ReadonlyMap<string, Namespace>;
  grants: readonly ReferenceGrant[];
}

function toMatch(m: HTTPRouteMatch | undefined): MatchIR {
  const path = m?.path;
  return {
    path: { kind: path?.type ?? 'PathPrefix', value: path?.value ?? '/' },
    // Most matches have neither: one shared empty list, not two per route.
    headers: m?.headers?.length ? m.headers.map((h) => ({ name: h.name.toLowerCase(), value: h.value, regex: h.type === 'RegularExpression' })) : shared([]),
    queryParams: m?.queryParams?.length ? m.queryParams.map((q) => ({ name: q.name, value: q.value, regex: q.type === 'RegularExpression' })) : shared([]),
    ...(m?.method ? { method: m.method } : {}),
  };
}

function toHeaderEdits(h: HeaderModifier | undefined): HeaderEdits | undefined {
  if (!h) return undefined;
  return { set: h.set ?? [], add: h.add ?? [], remove: h.remove ?? [] };
}

function filterOf<T extends HTTPRouteFilter['type']>(rule: HTTPRouteRule, type: T): HTTPRouteFilter | undefined {
  return rule.filters?.find((f) => f.type === type);
}

/** What a resolved backendRef sends traffic to. */
interface RefTarget {
  kind: 'Backend' | 'Service';
  /** Absent when a Backend has no usable member: the rule then answers 503 with `unavailable`. */
  cluster?: ClusterIR;
  unavailable?: string;
  /** A Backend's own retry plan; Services start from serviceRetryPlan. */
  retry?: RetryPlan;
}

interface RefResolution {
  ok: boolean;
  reason?: string;
  message?: string;
  /** Not a reference problem: the backendRef asks for a filter Switchyard does not apply there. */
  unsupportedFilter?: boolean;
  target?: RefTarget;
  weight: number;
  ref: BackendRef;
}

function backendTarget(b: TranslatedBackend): RefTarget {
  return { kind: 'Backend', retry: b.retry, ...(b.cluster ? { cluster: b.cluster } : {}), ...(b.unavailable ? { unavailable: b.unavailable } : {}) };
}

/** Filters Envoy applies per weighted cluster (request and response header edits). */
const BACKEND_REF_FILTERS: readonly string[] = ['RequestHeaderModifier', 'ResponseHeaderModifier'];

function resolveBackendRef(route: HTTPRoute, ref: BackendRef, ctx: RouteContext, field: string): RefResolution {
  const resolved = resolveBackendTarget(route, ref, ctx);
  if (!resolved.ok) return resolved;
  const unsupported = (ref.filters ?? []).flatMap((f, k) => (BACKEND_REF_FILTERS.includes(f.type) ? [] : [`${field}.filters[${k}]`]));
  const first = ref.filters?.find((f) => !BACKEND_REF_FILTERS.includes(f.type));
  if (!first) return resolved;
  return {
    ok: false,
    unsupportedFilter: true,
    weight: resolved.weight,
    ref,
    reason: 'UnsupportedValue',
    message: `${unsupported.join(', ')}: filter type ${first.type} is not supported on a backendRef (only ${BACKEND_REF_FILTERS.join(' and ')}); move it to the rule's filters. This backendRef's share of requests is answered 500`,
  };
}

function resolveBackendTarget(route: HTTPRoute, ref: BackendRef, ctx: RouteContext): RefResolution {
  const group = ref.group ?? '';
  const kind = ref.kind ?? 'Service';
  const namespace = ref.namespace ?? route.metadata.namespace;
  const weight = ref.weight ?? 1;
  const where = `backendRef ${kind} ${namespace}/${ref.name}`;
  if (!(group === BACKEND_GROUP && kind === 'Backend') && !(group === '' && kind === 'Service')) {
    return { ok: false, weight, ref, reason: 'InvalidKind', message: `${where}: group "${group}" kind "${kind}" is not supported; use a core Service or group ${BACKEND_GROUP} kind Backend` };
  }
  if (!referencePermitted(ctx.grants, { group: GATEWAY_GROUP, kind: 'HTTPRoute', namespace: route.metadata.namespace }, { group, kind, namespace, name: ref.name })) {
    return { ok: false, weight, ref, reason: 'RefNotPermitted', message: `${where} is in another namespace and no ReferenceGrant in ${namespace} allows it` };
  }
  if (kind === 'Service') {
    const service = ctx.services.resolve(namespace, ref.name, ref.port);
    if (!service.ok) return { ok: false, weight, ref, reason: service.reason, message: service.message };
    return { ok: true, weight, ref, target: { kind: 'Service', cluster: service.cluster } };
  }
  const backend = ctx.backends.get(`${namespace}/${ref.name}`);
  if (!backend) return { ok: false, weight, ref, reason: 'BackendNotFound', message: `${where} not found` };
  return { ok: true, weight, ref, target: backendTarget(backend) };
}

function ruleAction(route: HTTPRoute, rule: HTTPRouteRule, ruleIndex: number, refs: RefResolution[]): RouteIR['action'] {
  const redirect = filterOf(rule, 'RequestRedirect')?.requestRedirect;
  if (redirect) {
    const path = redirect.path;
    return {
      kind: 'redirect',
      statusCode: redirect.statusCode ?? 302,
      ...(redirect.scheme ? { scheme: redirect.scheme } : {}),
      ...(redirect.hostname ? { hostname: redirect.hostname } : {}),
      ...(redirect.port ? { port: redirect.port } : {}),
      ...(path ? { path: path.type === 'ReplaceFullPath' ? { kind: 'full', value: path.replaceFullPath ?? '/' } : { kind: 'prefix', value: path.replacePrefixMatch ?? '/' } } : {}),
    };
  }
  const where = `HTTPRoute ${route.metadata.namespace}/${route.metadata.name} rule ${ruleIndex}`;
  if (refs.length === 0) return { kind: 'direct', status: 500, body: `switchyard: ${where} has no backendRefs\n` };
  const valid = refs.filter((r) => r.ok && r.weight > 0);
  if (valid.length === 0) {
    const causes = refs.filter((r) => !r.ok).map((r) => r.message);
    return { kind: 'direct', status: 500, body: `switchyard: ${where}: ${causes.join('; ') || 'every backendRef has weight 0'}\n` };
  }
  const serving = valid.filter((r) => r.target?.cluster);
  if (serving.length === 0) {
    return { kind: 'direct', status: 503, body: `switchyard: ${valid.map((r) => r.target?.unavailable ?? '').join('; ')}\n` };
  }
  // The retry plan follows the backend that takes the largest share of this rule's traffic.
  const main = [...serving].sort((a, b) => b.weight - a.weight)[0]?.target;
  const backendRequestMs = rule.timeouts?.backendRequest ? parseDuration(rule.timeouts.backendRequest) : undefined;
  const base = main?.kind === 'Service' ? serviceRetryPlan(rule.retry !== undefined) : main?.retry ?? backendRetryPlan(undefined, 1);
  const retry = shared(withRouteRetry(base, rule.retry, backendRequestMs));
  const requestMs = rule.timeouts?.request ? parseDuration(rule.timeouts.request) : undefined;
  const rewrite = filterOf(rule, 'URLRewrite')?.urlRewrite;
  // Gateway API: the share of traffic an invalid backendRef would have taken is answered 500.
  // Envoy does that for a weighted cluster that does not exist, with cluster_not_found 500.
  const invalidShare = refs.flatMap((r, i) => (!r.ok && r.weight > 0 ? [{ name: `invalid/${route.metadata.namespace}/${route.metadata.name}/rule/${ruleIndex}/ref/${i}`, weight: r.weight }] : []));
  const action: ForwardAction = {
    kind: 'forward',
    clusters: [...serving.map((r) => weightedCluster(r)), ...invalidShare],
    ...(invalidShare.length > 0 ? { clusterNotFoundStatus: 500 as const } : {}),
    timeoutMs: requestMs ?? DEFAULT_ROUTE_TIMEOUT_MS,
    // Backend members carry their provider's hostname; a Service keeps the client's Host.
    autoHostRewrite: !rewrite?.hostname && serving.some((r) => r.target?.kind === 'Backend'),
    // Envoy applies a per-try timeout (timeouts.backendRequest) only through a retry policy, even with no retries.
    ...(retry.attempts > 0 || retry.perTryTimeoutMs !== undefined ? { retry } : {}),
    ...(rewrite?.hostname ? { hostRewrite: rewrite.hostname } : {}),
  };
  if (rewrite?.path) {
    action.pathRewrite = rewrite.path.type === 'ReplaceFullPath'
      ? { kind: 'full', value: rewrite.path.replaceFullPath ?? '/' }
      : { kind: 'prefix', value: rewrite.path.replacePrefixMatch ?? '/' };
  }
  return action;
}

function weightedCluster(r: RefResolution): WeightedCluster {
  const requestHeaders = toHeaderEdits(r.ref.filters?.find((f) => f.type === 'RequestHeaderModifier')?.requestHeaderModifier);
  const responseHeaders = toHeaderEdits(r.ref.filters?.find((f) => f.type === 'ResponseHeaderModifier')?.responseHeaderModifier);
  return {
    name: r.target?.cluster?.name ?? '',
    weight: r.weight,
    ...(requestHeaders ? { requestHeaders } : {}),
    ...(responseHeaders ? { responseHeaders } : {}),
  };
}

function parentKey(route: HTTPRoute, p: ParentReference): string {
  return `${p.namespace ?? route.metadata.namespace}/${p.name}`;
}

function listenerAllows(l: ServedListener, route: HTTPRoute, namespaces: ReadonlyMap<string, Namespace>): boolean {
  const allowed = l.spec.allowedRoutes?.namespaces;
  const from = allowed?.from ?? 'Same';
  if (from === 'All') return true;
  if (from === 'Same') return l.gateway.metadata.namespace === route.metadata.namespace;
  // Gateway API requires a selector with from: Selector; without one nothing is selected.
  if (!allowed?.selector) return false;
  const ns = route.metadata.namespace;
  return selectorMatches(allowed.selector, namespaceLabels(ns, namespaces.get(ns)));
}

function notAllowedMessage(candidates: ServedListener[], route: HTTPRoute, gateway: string, namespaces: ReadonlyMap<string, Namespace>): string {
  const reasons = candidates.map((l) => {
    if (!listenerTakesKind(l, 'HTTPRoute')) {
      const kinds = l.supportedKinds.map((k) => k.kind).join(', ');
      return `listener ${l.spec.name} takes ${kinds ? `only ${kinds}` : 'no route kind Switchyard serves'}`;
    }
    return listenerAllows(l, route, namespaces) ? '' : `listener ${l.spec.name} does not allow routes from namespace ${route.metadata.namespace}`;
  });
  return `no listener of Gateway ${gateway} allows this HTTPRoute: ${reasons.filter((r) => r !== '').join('; ')}`;
}

function attachedMessage(attached: ServedListener[], gateway: string): string {
  const base = `attached to ${attached.length} listener${attached.length > 1 ? 's' : ''} of Gateway ${gateway}`;
  const unserved = attached.filter((l) => !isServed(l));
  if (unserved.length === 0) return base;
  return `${base}; not served on ${unserved.length > 1 ? 'listeners' : 'listener'} ${unserved.map((l) => l.spec.name).join(', ')} (the Gateway's listener conditions say why)`;
}

const WELL_KNOWN_PORTS: Record<string, number> = { http: 80, https: 443 };

/**
 * The redirect port Gateway API prescribes (HTTPRequestRedirectFilter.port): the one asked for,
 * else the scheme's well-known port when the scheme changes, else the listener's port. The
 * Location leaves out the port that is the scheme's own (a SHOULD of the same field); Envoy keeps
 * a port_redirect even then, but drops the request's port whenever host_redirect is set.
 */
function onListener(action: RouteIR['action'], l: ServedListener): RouteIR['action'] {
  if (action.kind !== 'redirect') return action;
  const scheme = action.scheme ?? (l.spec.protocol === 'HTTPS' ? 'https' : 'http');
  const port = action.port ?? (action.scheme ? WELL_KNOWN_PORTS[action.scheme] : undefined) ?? l.spec.port;
  if (port === WELL_KNOWN_PORTS[scheme] && action.hostname) {
    const { port: _dropped, ...rest } = action;
    return rest;
  }
  return { ...action, port };
}

/** Rule filter types Switchyard applies. */
const RULE_FILTERS: readonly string[] = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'URLRewrite', 'RequestRedirect'];

interface RuleProblem {
  rule: number;
  message: string;
}

/**
 * Rule filters Switchyard cannot apply. Gateway API: a filter must never be skipped. An
 * ExtensionRef that cannot be resolved answers the requests it would have processed with an
 * error (500); any other type is an unsupported value, and its rule is dropped (the
 * PartiallyInvalid "Dropped Rule" approach) so the route's other rules keep serving.
 */
function ruleFilterProblems(route: HTTPRoute): { dropped: RuleProblem[]; unresolved: RuleProblem[] } {
  const dropped: RuleProblem[] = [];
  const unresolved: RuleProblem[] = [];
  route.spec.rules.forEach((rule, i) => {
    (rule.filters ?? []).forEach((f, k) => {
      const field = `spec.rules[${i}].filters[${k}]`;
      if (RULE_FILTERS.includes(f.type)) return;
      if (f.type === 'ExtensionRef') {
        const ref = f.extensionRef;
        const what = ref ? ` ${ref.group ? `${ref.group}/` : ''}${ref.kind} ${ref.name}` : '';
        unresolved.push({ rule: i, message: `${field}.extensionRef${what} cannot be resolved: Switchyard has no extension filters; remove the filter` });
      } else if (!dropped.some((d) => d.rule === i)) {
        dropped.push({ rule: i, message: `Dropped Rule ${i}: ${field}: filter type ${f.type} is not supported (Switchyard applies ${RULE_FILTERS.join(', ')}); remove the filter` });
      }
    });
  });
  return { dropped, unresolved };
}

/**
 * A part of an HTTPRoute that Envoy would refuse. Served, it would make Envoy reject the
 * listener's whole RouteConfiguration, freezing every route on that Gateway, so the translator
 * leaves it out: a match (`match` set), a whole rule (its filters are shared by its matches), or
 * the whole route (`rule` unset: its hostnames are every rule's virtual hosts).
 */
interface RouteProblem {
  rule?: number;
  match?: number;
  message: string;
}

function problem(field: string, issue: string | undefined, fix: string, at: { rule?: number; match?: number }): RouteProblem[] {
  return issue === undefined ? [] : [{ ...at, message: `${field}: ${issue}${fix ? `; ${fix}` : ''}` }];
}

function regexProblems(m: HTTPRouteMatch, field: string, at: { rule: number; match: number }): RouteProblem[] {
  const candidates: { path: string; pattern: string }[] = [];
  if (m.path?.type === 'RegularExpression' && m.path.value !== undefined) candidates.push({ path: `${field}.path.value`, pattern: m.path.value });
  (m.headers ?? []).forEach((h, k) => h.type === 'RegularExpression' && candidates.push({ path: `${field}.headers[${k}].value`, pattern: h.value }));
  (m.queryParams ?? []).forEach((q, k) => q.type === 'RegularExpression' && candidates.push({ path: `${field}.queryParams[${k}].value`, pattern: q.value }));
  for (const c of candidates) {
    const error = re2Error(c.pattern);
    if (error !== undefined) return [{ ...at, message: `${c.path}: ${JSON.stringify(c.pattern)} is not an RE2 regular expression Envoy accepts (${error}); fix the pattern (RE2 syntax, as Envoy uses)` }];
  }
  return [];
}

function headerModifierProblems(h: HeaderModifier | undefined, field: string, rule: number): RouteProblem[] {
  if (!h) return [];
  const out: RouteProblem[] = [];
  for (const edit of ['set', 'add'] as const) {
    (h[edit] ?? []).forEach((x, k) => {
      out.push(...problem(`${field}.${edit}[${k}].name`, headerEditProblem(x.name, edit), '', { rule }));
      out.push(...problem(`${field}.${edit}[${k}].value`, headerValueProblem(x.value), 'put one value on one line', { rule }));
    });
  }
  (h.remove ?? []).forEach((name, k) => out.push(...problem(`${field}.remove[${k}]`, headerEditProblem(name, 'remove'), '', { rule })));
  return out;
}

function pathModifierProblems(p: { replaceFullPath?: string | undefined; replacePrefixMatch?: string | undefined } | undefined, field: string, rule: number): RouteProblem[] {
  if (!p) return [];
  return [
    ...problem(`${field}.replaceFullPath`, p.replaceFullPath === undefined ? undefined : pathProblem(p.replaceFullPath), '', { rule }),
    ...problem(`${field}.replacePrefixMatch`, p.replacePrefixMatch === undefined ? undefined : pathProblem(p.replacePrefixMatch), '', { rule }),
  ];
}

/** Every value of the route that Envoy validates, checked the way Envoy checks it. */
function routeProblems(route: HTTPRoute): RouteProblem[] {
  const out: RouteProblem[] = [];
  (route.spec.hostnames ?? []).forEach((h, k) => out.push(...problem(`spec.hostnames[${k}]`, hostnameProblem(h), '', {})));
  route.spec.rules.forEach((rule, i) => {
    (rule.matches ?? []).forEach((m, j) => {
      const field = `spec.rules[${i}].matches[${j}]`;
      const at = { rule: i, match: j };
      const names = [
        ...(m.headers ?? []).map((h, k) => problem(`${field}.headers[${k}].name`, headerNameProblem(h.name), '', at)),
        ...(m.headers ?? []).map((h, k) => (h.type === 'RegularExpression' ? [] : problem(`${field}.headers[${k}].value`, headerValueProblem(h.value), '', at))),
      ].flat();
      out.push(...names, ...regexProblems(m, field, at));
    });
    (rule.filters ?? []).forEach((f, k) => {
      const field = `spec.rules[${i}].filters[${k}]`;
      out.push(...headerModifierProblems(f.requestHeaderModifier, `${field}.requestHeaderModifier`, i));
      out.push(...headerModifierProblems(f.responseHeaderModifier, `${field}.responseHeaderModifier`, i));
      if (f.urlRewrite?.hostname !== undefined) out.push(...problem(`${field}.urlRewrite.hostname`, preciseHostnameProblem(f.urlRewrite.hostname), '', { rule: i }));
      out.push(...pathModifierProblems(f.urlRewrite?.path, `${field}.urlRewrite.path`, i));
      if (f.requestRedirect?.hostname !== undefined) out.push(...problem(`${field}.requestRedirect.hostname`, preciseHostnameProblem(f.requestRedirect.hostname), '', { rule: i }));
      out.push(...pathModifierProblems(f.requestRedirect?.path, `${field}.requestRedirect.path`, i));
    });
    (rule.backendRefs ?? []).forEach((ref, j) => {
      (ref.filters ?? []).forEach((f, k) => {
        const field = `spec.rules[${i}].backendRefs[${j}].filters[${k}]`;
        out.push(...headerModifierProblems(f.requestHeaderModifier, `${field}.requestHeaderModifier`, i));
        out.push(...headerModifierProblems(f.responseHeaderModifier, `${field}.responseHeaderModifier`, i));
      });
    });
  });
  return out;
}

function refused(problems: readonly RouteProblem[], rule: number, match: number): boolean {
  return problems.some((p) => p.rule === undefined || (p.rule === rule && (p.match === undefined || p.match === match)));
}

/**
 * One list per listener for the routes attached to it alone (nearly all of them), read only: a
 * list each cost 56 bytes per route for as long as it is served.
 */
const onlyListeners = new WeakMap<ServedListener, readonly ServedListener[]>();

function onlyListener(l: ServedListener): readonly ServedListener[] {
  let list = onlyListeners.get(l);
  if (list === undefined) {
    list = [l];
    onlyListeners.set(l, list);
  }
  return list;
}

export function translateRoute(route: HTTPRoute, ctx: RouteContext): TranslatedRoute {
  const gen = route.metadata.generation;
  // Flat strings (join), not a template's concatenations: every route entry keeps its key and
  // name for as long as it is served, and a concatenation kept its pieces beside the flat copy
  // hashing or encoding it made (about 1 MB at 10,000 routes).
  const routeKey = [route.metadata.namespace, route.metadata.name].join('/');
  const events: WarningEvent[] = [];
  const placed: PlacedRoute[] = [];
  const parents: RouteParentStatus[] = [];
  const attachedTo: ServedListener[] = [];

  const refsByRule = route.spec.rules.map((rule, i) => (rule.backendRefs ?? []).map((ref, j) => resolveBackendRef(route, ref, ctx, `spec.rules[${i}].backendRefs[${j}]`)));
  const badRefs = refsByRule.flat().filter((r) => !r.ok && !r.unsupportedFilter);
  const filterProblems = refsByRule.flat().filter((r) => r.unsupportedFilter).map((r) => r.message ?? '');
  for (const bad of refsByRule.flat().filter((r) => !r.ok)) {
    events.push({ object: { kind: 'HTTPRoute', namespace: route.metadata.namespace, name: route.metadata.name }, reason: bad.reason ?? 'BackendNotFound', message: bad.message ?? '' });
  }
  const invalidMatches = routeProblems(route);
  const ruleFilters = ruleFilterProblems(route);
  const servedRules = route.spec.rules.map((rule, i) => {
    if (ruleFilters.dropped.some((d) => d.rule === i)) return [];
    const matches = rule.matches && rule.matches.length > 0 ? rule.matches : [undefined];
    return matches.map((m, j) => ({ m, j })).filter(({ j }) => !refused(invalidMatches, i, j));
  });
  for (const p of [...invalidMatches, ...ruleFilters.dropped]) {
    events.push({ object: { kind: 'HTTPRoute', namespace: route.metadata.namespace, name: route.metadata.name }, reason: 'UnsupportedValue', message: p.message });
  }
  for (const p of ruleFilters.unresolved) {
    events.push({ object: { kind: 'HTTPRoute', namespace: route.metadata.namespace, name: route.metadata.name }, reason: 'InvalidKind', message: p.message });
  }
  const nothingServed = servedRules.every((matches) => matches.length === 0);
  const unservedReason = [...ruleFilters.dropped, ...invalidMatches].map((p) => p.message).join('; ');
  // The same on every listener the route attaches to: built once.
  const ruleEntries = route.spec.rules.map((rule, ruleIndex) => {
    const unresolved = ruleFilters.unresolved.filter((p) => p.rule === ruleIndex);
    const where = `HTTPRoute ${routeKey} rule ${ruleIndex}`;
    return {
      action: unresolved.length > 0
        ? { kind: 'direct' as const, status: 500, body: `switchyard: ${where}: ${unresolved.map((p) => p.message).join('; ')}\n` }
        : ruleAction(route, rule, ruleIndex, refsByRule[ruleIndex] ?? []),
      requestHeaders: toHeaderEdits(filterOf(rule, 'RequestHeaderModifier')?.requestHeaderModifier),
      responseHeaders: toHeaderEdits(filterOf(rule, 'ResponseHeaderModifier')?.responseHeaderModifier),
    };
  });
  // A rule's own retry.attempts may leave a Backend's named fallback out of reach: the extension
  // then gives the client the refusal itself, and the route says why here.
  const retryWarnings = ruleEntries.flatMap(({ action }, ruleIndex) => {
    const retry = action.kind === 'forward' ? action.retry : undefined;
    const named = retry?.namedFallback;
    const asked = route.spec.rules[ruleIndex]?.retry?.attempts;
    if (named === undefined || asked === undefined || asked >= named.retries) return [];
    return [`spec.rules[${ruleIndex}].retry.attempts (${asked}) is below the ${named.retries} retries its Backend's fallback to pool "${named.pool}" may need (each skipped pool takes an attempt, without calling its provider): such a refusal goes to the client instead; raise it to ${named.retries} or remove it`];
  });
  for (const message of retryWarnings) {
    events.push({ object: { kind: 'HTTPRoute', namespace: route.metadata.namespace, name: route.metadata.name }, reason: 'RetriesBelowFallback', message });
  }
  // Gateway API wants a PartiallyInvalid message that drops rules to start with "Dropped Rule".
  const partialProblems = nothingServed ? filterProblems : [
    ...ruleFilters.dropped.map((p) => p.message),
    ...(invalidMatches.length > 0 ? [`${invalidMatches.map((p) => p.message).join('; ')}; the rest of the route is served`] : []),
    ...filterProblems,
  ];
  const partiallyInvalid: Condition | undefined = partialProblems.length > 0
    ? condition('PartiallyInvalid', true, 'UnsupportedValue', partialProblems.join('; '), gen)
    : undefined;
  const refProblems = [...badRefs.map((r) => ({ reason: r.reason ?? 'BackendNotFound', message: r.message ?? '' })), ...ruleFilters.unresolved.map((p) => ({ reason: 'InvalidKind', message: p.message }))];
  const resolved: Condition = refProblems.length === 0
    ? condition('ResolvedRefs', true, 'ResolvedRefs', 'all backendRefs are resolved', gen)
    : condition('ResolvedRefs', false, refProblems[0]?.reason ?? 'BackendNotFound', refProblems.map((r) => r.message).join('; '), gen);

  for (const parent of route.spec.parentRefs ?? []) {
    if ((parent.group ?? GATEWAY_GROUP) !== GATEWAY_GROUP || (parent.kind ?? 'Gateway') !== 'Gateway') continue;
    const key = parentKey(route, parent);
    if (ctx.foreignGateways.has(key)) continue;
    const gw = ctx.gateways.get(key);
    const status = (accepted: Condition): RouteParentStatus => ({
      // A copy: the status is shared (see below) and frozen, the route's own parentRef is not.
      parentRef: { ...parent },
      controllerName: CONTROLLER_NAME,
      conditions: [accepted, resolved, ...(partiallyInvalid ? [partiallyInvalid] : [])],
    });
    if (!gw) {
      parents.push(status(condition('Accepted', false, 'NoMatchingParent', `Gateway ${key} not found`, gen)));
      continue;
    }
    const candidates = gw.listeners.filter((l) => (parent.sectionName === undefined || l.spec.name === parent.sectionName) && (parent.port === undefined || l.spec.port === parent.port));
    if (candidates.length === 0) {
      parents.push(status(condition('Accepted', false, 'NoMatchingParent', `Gateway ${key} has no listener${parent.sectionName ? ` named ${parent.sectionName}` : ''}${parent.port ? ` on port ${parent.port}` : ''}`, gen)));
      continue;
    }
    // Gateway API attachment depends only on allowedRoutes (namespaces and kinds) and the
    // parentRef: a listener that is not served (a conflict, an unusable certificate) still
    // counts the routes attached to it; only the served ones get them in Envoy.
    const allowed = candidates.filter((l) => listenerTakesKind(l, 'HTTPRoute') && listenerAllows(l, route, ctx.namespaces));
    if (allowed.length === 0) {
      parents.push(status(condition('Accepted', false, 'NotAllowedByListeners', notAllowedMessage(candidates, route, key, ctx.namespaces), gen)));
      continue;
    }
    const attached: ServedListener[] = [];
    for (const l of allowed) {
      const hostnames = effectiveHostnames(l.spec.hostname, route.spec.hostnames);
      if (hostnames.length === 0) continue;
      attached.push(l);
      attachedTo.push(l);
      l.attachedRoutes++;
      if (!isServed(l) || nothingServed) continue;
      ruleEntries.forEach(({ action, requestHeaders, responseHeaders }, ruleIndex) => {
        const listenerAction = onListener(action, l);
        for (const { m, j: matchIndex } of servedRules[ruleIndex] ?? []) {
          const match = toMatch(m);
          const ir: RouteIR = {
            name: [routeKey, 'rule', ruleIndex, 'match', matchIndex].join('/'),
            match,
            action: listenerAction,
            ...(requestHeaders ? { requestHeaders } : {}),
            ...(responseHeaders ? { responseHeaders } : {}),
          };
          for (const hostname of hostnames) {
            placed.push({ route: ir, match, createdAt: route.metadata.creationTimestamp ?? '', routeKey, ruleIndex, matchIndex, envoyListener: l.envoyListener, hostname });
          }
        }
      });
    }
    if (nothingServed && attached.length > 0) {
      parents.push(status(condition('Accepted', false, 'UnsupportedValue', unservedReason, gen)));
      continue;
    }
    parents.push(status(attached.length > 0
      ? condition('Accepted', true, 'Accepted', `${attachedMessage(attached, key)}${retryWarnings.length > 0 ? `; warning: ${retryWarnings.join('; ')}` : ''}`, gen)
      : condition('Accepted', false, 'NoMatchingListenerHostname', `no listener of Gateway ${key} matches the route's hostnames`, gen)));
  }

  const { namespace, name, uid } = route.metadata;
  return { status: { kind: 'HTTPRoute', namespace, name, ...(uid !== undefined ? { uid } : {}), parents: shared(compact(parents)) }, placed: compact(placed), events: events.length > 0 ? compact(events) : shared([]), attachedTo: attachedTo.length === 1 ? onlyListener(attachedTo[0] as ServedListener) : compact(attachedTo) };
}
