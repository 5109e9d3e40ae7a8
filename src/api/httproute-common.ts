import type { BackendRef, HTTPRoute, HTTPRouteMatch, HTTPRouteRule, ParentReference } from './httproute.js';
import { commonMetadata, isIntegerIn, isObjectName, onlyKeys } from './common-shape.js';

/**
 * The common HTTPRoute as the HTTPRoute schema parses it, without the schema: parent references,
 * hostnames, and rules of path matches (and methods) sending to backend references, every field
 * one the schema knows (so no unknown-field warning is due) and nothing else (no filters,
 * headers or query parameter matches, timeouts, retries, parent ports, labels). zod costs about
 * 10 microseconds for such a route, and its unknown-field walk 3 more: at 10,000 routes, a tenth
 * of a CPU-second of the first load (issue 9). Anything else, valid or not, is undefined: the
 * schema decides it, and its messages and warnings stay the only ones.
 * test/property/httproute-fast-path checks the two agree, down to the order of keys. Objects are
 * grown from empty literals in the schema's key order, as zod builds them, so both kinds of
 * route have the same shapes for the code that reads them.
 */
export function commonHTTPRoute(doc: Record<string, unknown>): HTTPRoute | undefined {
  if (!onlyKeys(doc, TOP_KEYS) || (doc.apiVersion !== V1 && doc.apiVersion !== V1BETA1) || doc.kind !== 'HTTPRoute') return undefined;
  const metadata = commonMetadata(doc.metadata);
  const spec = doc.spec;
  if (metadata === undefined || !onlyKeys(spec, SPEC_KEYS)) return undefined;
  const out = {} as HTTPRoute['spec'];
  if ('parentRefs' in spec) {
    const refs = listOf(spec.parentRefs, Number.MAX_SAFE_INTEGER, commonParentRef);
    if (refs === undefined) return undefined;
    out.parentRefs = refs;
  }
  if ('hostnames' in spec) {
    const hostnames = listOf(spec.hostnames, Number.MAX_SAFE_INTEGER, (h) => (typeof h === 'string' && h.length >= 1 ? h : undefined));
    if (hostnames === undefined) return undefined;
    out.hostnames = hostnames;
  }
  // Absent rules take the schema's default: left to it.
  const rules = listOf(spec.rules, 64, commonRule);
  if (rules === undefined) return undefined;
  out.rules = rules;
  const route = {} as HTTPRoute;
  route.apiVersion = doc.apiVersion;
  route.kind = 'HTTPRoute';
  route.metadata = metadata;
  route.spec = out;
  return route;
}

const V1 = 'gateway.networking.k8s.io/v1';
const V1BETA1 = 'gateway.networking.k8s.io/v1beta1';

const TOP_KEYS: ReadonlySet<string> = new Set(['apiVersion', 'kind', 'metadata', 'spec']);
const SPEC_KEYS: ReadonlySet<string> = new Set(['parentRefs', 'hostnames', 'rules']);
const PARENT_KEYS: ReadonlySet<string> = new Set(['group', 'kind', 'namespace', 'name', 'sectionName']);
const RULE_KEYS: ReadonlySet<string> = new Set(['name', 'matches', 'backendRefs']);
const MATCH_KEYS: ReadonlySet<string> = new Set(['path', 'method']);
const PATH_KEYS: ReadonlySet<string> = new Set(['type', 'value']);
const BACKEND_REF_KEYS: ReadonlySet<string> = new Set(['group', 'kind', 'name', 'namespace', 'port', 'weight']);
const PATH_TYPES: ReadonlySet<unknown> = new Set(['Exact', 'PathPrefix', 'RegularExpression']);
const METHODS: ReadonlySet<unknown> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);

function commonParentRef(value: unknown): ParentReference | undefined {
  if (!onlyKeys(value, PARENT_KEYS) || !isObjectName(value.name)) return undefined;
  const out = {} as ParentReference;
  if ('group' in value) {
    if (typeof value.group !== 'string') return undefined;
    out.group = value.group;
  }
  if ('kind' in value) {
    if (typeof value.kind !== 'string') return undefined;
    out.kind = value.kind;
  }
  if ('namespace' in value) {
    if (typeof value.namespace !== 'string') return undefined;
    out.namespace = value.namespace;
  }
  out.name = value.name;
  if ('sectionName' in value) {
    if (typeof value.sectionName !== 'string') return undefined;
    out.sectionName = value.sectionName;
  }
  return out;
}

function commonRule(value: unknown): HTTPRouteRule | undefined {
  if (!onlyKeys(value, RULE_KEYS)) return undefined;
  const out = {} as HTTPRouteRule;
  if ('name' in value) {
    if (typeof value.name !== 'string') return undefined;
    out.name = value.name;
  }
  if ('matches' in value) {
    const matches = listOf(value.matches, 64, commonMatch);
    if (matches === undefined) return undefined;
    out.matches = matches;
  }
  if ('backendRefs' in value) {
    const refs = listOf(value.backendRefs, Number.MAX_SAFE_INTEGER, commonBackendRef);
    if (refs === undefined) return undefined;
    out.backendRefs = refs;
  }
  return out;
}

function commonMatch(value: unknown): HTTPRouteMatch | undefined {
  if (!onlyKeys(value, MATCH_KEYS)) return undefined;
  const out = {} as HTTPRouteMatch;
  if ('path' in value) {
    const path = value.path;
    if (!onlyKeys(path, PATH_KEYS)) return undefined;
    const outPath = {} as NonNullable<HTTPRouteMatch['path']>;
    if ('type' in path) {
      if (!PATH_TYPES.has(path.type)) return undefined;
      outPath.type = path.type as NonNullable<HTTPRouteMatch['path']>['type'];
    }
    if ('value' in path) {
      if (typeof path.value !== 'string') return undefined;
      outPath.value = path.value;
    }
    out.path = outPath;
  }
  if ('method' in value) {
    if (!METHODS.has(value.method)) return undefined;
    out.method = value.method as HTTPRouteMatch['method'];
  }
  return out;
}

function commonBackendRef(value: unknown): BackendRef | undefined {
  if (!onlyKeys(value, BACKEND_REF_KEYS) || !isObjectName(value.name)) return undefined;
  const out = {} as BackendRef;
  if ('group' in value) {
    if (typeof value.group !== 'string') return undefined;
    out.group = value.group;
  }
  if ('kind' in value) {
    if (typeof value.kind !== 'string') return undefined;
    out.kind = value.kind;
  }
  out.name = value.name;
  if ('namespace' in value) {
    if (typeof value.namespace !== 'string') return undefined;
    out.namespace = value.namespace;
  }
  if ('port' in value) {
    if (!isIntegerIn(value.port, 1, 65535)) return undefined;
    out.port = value.port;
  }
  if ('weight' in value) {
    if (!isIntegerIn(value.weight, 0, 1_000_000)) return undefined;
    out.weight = value.weight;
  }
  return out;
}

/** Each item of a list of at most `max` read by `item`; undefined when it is no list, too long, or an item is not common. */
function listOf<T>(value: unknown, max: number, item: (v: unknown) => T | undefined): T[] | undefined {
  if (!Array.isArray(value) || value.length > max) return undefined;
  const out = new Array<T>(value.length);
  for (let i = 0; i < value.length; i++) {
    const read = item(value[i]);
    if (read === undefined) return undefined;
    out[i] = read;
  }
  return out;
}
