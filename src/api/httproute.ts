import { z } from 'zod';
import { DurationString, ObjectMeta, ObjectName } from './meta.js';

const Duration = DurationString;

/**
 * The RE2 program size Envoy accepts from Switchyard's Envoys. Envoy refuses a regex whose RE2
 * program has more instructions than the runtime key `re2.max_program_size.error_level`
 * (source/common/common/regex.cc; default 100, which a 64-character token such as
 * `/x/[a-z0-9]{64}` already exceeds). `switchyard bootstrap`, `serve`'s Envoys and the chart set
 * the key to this value; an Envoy bootstrapped by hand keeps 100 and NACKs patterns between the
 * two, which the runtime's NACK isolation then pins on the HTTPRoute that brought them.
 * Istio sets the same key far higher (32768); 1000 still keeps a match linear and cheap.
 */
export const REGEX_PROGRAM_SIZE_LIMIT = 1000;

export const ParentReference = z.object({
  group: z.string().optional(),
  kind: z.string().optional(),
  namespace: z.string().optional(),
  name: ObjectName,
  sectionName: z.string().optional(),
  port: z.number().int().optional(),
});
export type ParentReference = z.infer<typeof ParentReference>;

const HeaderMatch = z.object({
  type: z.enum(['Exact', 'RegularExpression']).optional(),
  name: z.string().min(1),
  value: z.string(),
});

export const HTTPRouteMatch = z.object({
  path: z
    .object({
      type: z.enum(['Exact', 'PathPrefix', 'RegularExpression']).optional(),
      value: z.string().optional(),
    })
    .optional(),
  headers: z.array(HeaderMatch).optional(),
  queryParams: z.array(HeaderMatch).optional(),
  method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']).optional(),
});
export type HTTPRouteMatch = z.infer<typeof HTTPRouteMatch>;

const HeaderModifier = z.object({
  set: z.array(z.object({ name: z.string().min(1), value: z.string() })).optional(),
  add: z.array(z.object({ name: z.string().min(1), value: z.string() })).optional(),
  remove: z.array(z.string().min(1)).optional(),
});
export type HeaderModifier = z.infer<typeof HeaderModifier>;

const PathModifier = z.object({
  type: z.enum(['ReplaceFullPath', 'ReplacePrefixMatch']),
  replaceFullPath: z.string().optional(),
  replacePrefixMatch: z.string().optional(),
});

export const HTTPRouteFilter = z.object({
  // Any name: Gateway API adds filter types over time (CORS, ExternalAuth) and wants an unknown
  // one reported on the route (UnsupportedValue), not the route refused as unreadable.
  type: z.string().min(1),
  extensionRef: z.object({ group: z.string(), kind: z.string().min(1), name: z.string().min(1) }).optional(),
  requestHeaderModifier: HeaderModifier.optional(),
  responseHeaderModifier: HeaderModifier.optional(),
  urlRewrite: z.object({ hostname: z.string().optional(), path: PathModifier.optional() }).optional(),
  requestRedirect: z
    .object({
      scheme: z.enum(['http', 'https']).optional(),
      hostname: z.string().optional(),
      path: PathModifier.optional(),
      port: z.number().int().optional(),
      statusCode: z.union([z.literal(301), z.literal(302), z.literal(303), z.literal(307), z.literal(308)]).optional(),
    })
    .optional(),
});
export type HTTPRouteFilter = z.infer<typeof HTTPRouteFilter>;

export const BackendRef = z.object({
  group: z.string().optional(),
  kind: z.string().optional(),
  name: ObjectName,
  namespace: z.string().optional(),
  port: z.number().int().min(1).max(65535).optional(),
  weight: z.number().int().min(0).max(1_000_000).optional(),
  /** Applied only to requests sent to this backend (HTTPBackendRef.filters). */
  filters: z.array(HTTPRouteFilter).max(16).optional(),
});
export type BackendRef = z.infer<typeof BackendRef>;

/** GEP-1731 (experimental channel). */
export const HTTPRouteRetry = z.object({
  codes: z.array(z.number().int().min(400).max(599)).optional(),
  attempts: z.number().int().min(0, 'retry.attempts cannot be negative').optional(),
  backoff: Duration.optional(),
});
export type HTTPRouteRetry = z.infer<typeof HTTPRouteRetry>;

export const HTTPRouteRule = z.object({
  name: z.string().optional(),
  matches: z.array(HTTPRouteMatch).max(64).optional(),
  filters: z.array(HTTPRouteFilter).optional(),
  backendRefs: z.array(BackendRef).optional(),
  timeouts: z.object({ request: Duration.optional(), backendRequest: Duration.optional() }).optional(),
  retry: HTTPRouteRetry.optional(),
});
export type HTTPRouteRule = z.infer<typeof HTTPRouteRule>;

export const HTTPRoute = z.object({
  apiVersion: z.enum(['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'], {
    message: 'apiVersion is gateway.networking.k8s.io/v1',
  }),
  kind: z.literal('HTTPRoute'),
  metadata: ObjectMeta,
  spec: z.object({
    parentRefs: z.array(ParentReference).optional(),
    hostnames: z.array(z.string().min(1)).optional(),
    rules: z.array(HTTPRouteRule).max(64).default([{}]),
  }),
});
export type HTTPRoute = z.infer<typeof HTTPRoute>;
