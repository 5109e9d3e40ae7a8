import type { z } from 'zod';
import { backendReferenceLink } from './api-docs.js';
import { Backend } from './backend.js';
import { commonBackend } from './backend-common.js';
import { EndpointSlice } from './endpointslice.js';
import { Gateway, GatewayClass } from './gateway.js';
import { HTTPRoute } from './httproute.js';
import { commonHTTPRoute } from './httproute-common.js';
import type { ObjectId } from './meta.js';
import { Namespace } from './namespace.js';
import { ReferenceGrant } from './referencegrant.js';
import { commonSecret, Secret } from './secret.js';
import { Service } from './service.js';

/** Every kind Switchyard reads, with the schema that validates it. */
export const SCHEMAS = {
  GatewayClass,
  Gateway,
  HTTPRoute,
  Backend,
  Secret,
  ReferenceGrant,
  Service,
  EndpointSlice,
  Namespace,
} as const;
export type KnownKind = keyof typeof SCHEMAS;

export type KnownObject =
  | { kind: 'GatewayClass'; value: GatewayClass }
  | { kind: 'Gateway'; value: Gateway }
  | { kind: 'HTTPRoute'; value: HTTPRoute }
  | { kind: 'Backend'; value: Backend }
  | { kind: 'Secret'; value: Secret }
  | { kind: 'ReferenceGrant'; value: ReferenceGrant }
  | { kind: 'Service'; value: Service }
  | { kind: 'EndpointSlice'; value: EndpointSlice }
  | { kind: 'Namespace'; value: Namespace };

/** Kinds without a namespace. */
export const CLUSTER_SCOPED_KINDS: ReadonlySet<string> = new Set(['GatewayClass', 'Namespace']);

/** One validation failure, precise enough to fix without reading code. */
export interface Problem {
  /** "examples/backends.yaml#2" when the object came from a file (document index from 0). */
  source?: string;
  object?: ObjectId;
  /** Dotted field path, e.g. spec.ai.multipool.priorities[1].pool. Empty for the whole document. */
  field: string;
  message: string;
}

export type ParseResult =
  /** `warnings`: what is served anyway but the user should know (fields Switchyard ignores). */
  | { ok: true; object: KnownObject; id: ObjectId; warnings: Problem[] }
  | { ok: false; id?: ObjectId; problems: Problem[] }
  | { ok: 'ignored'; id?: ObjectId; reason: string };

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

export function formatProblem(p: Problem): string {
  const where = p.source ? `${p.source}: ` : '';
  const what = p.object ? `${p.object.kind} ${p.object.namespace ? `${p.object.namespace}/` : ''}${p.object.name}: ` : '';
  const field = p.field ? `${p.field}: ` : '';
  return `${where}${what}${field}${p.message}`;
}

function isPathKey(p: PropertyKey): p is string | number {
  return typeof p !== 'symbol';
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function idOf(doc: Record<string, unknown>): ObjectId | undefined {
  const kind = typeof doc.kind === 'string' ? doc.kind : undefined;
  const meta = isRecord(doc.metadata) ? doc.metadata : undefined;
  const name = meta && typeof meta.name === 'string' ? meta.name : undefined;
  if (!kind || !name) return undefined;
  const namespace = meta && typeof meta.namespace === 'string' ? meta.namespace : CLUSTER_SCOPED_KINDS.has(kind) ? '' : 'default';
  return { kind, namespace, name };
}

function zodProblems(error: z.ZodError, id: ObjectId | undefined, source: string | undefined): Problem[] {
  return error.issues.map((issue) => {
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      const reference = id?.kind === 'Backend' ? `the Backend reference, ${backendReferenceLink(issue.path.filter(isPathKey))}` : `the ${id?.kind ?? 'object'} reference`;
      message = `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}: check the spelling against ${reference}`;
    } else if (issue.code === 'invalid_type' && issue.input === undefined) {
      message = `required field is missing (${issue.message})`;
    }
    const p: Problem = { field: formatPath(issue.path), message };
    if (id) p.object = id;
    if (source) p.source = source;
    return p;
  });
}

/** Validates one decoded manifest document against the schema of its kind. */
export function parseManifest(doc: unknown, source?: string): ParseResult {
  if (doc === null || doc === undefined) return { ok: 'ignored', reason: 'empty document' };
  if (!isRecord(doc)) {
    return { ok: false, problems: [{ field: '', message: 'a manifest must be a mapping with apiVersion, kind and metadata', ...(source ? { source } : {}) }] };
  }
  const id = idOf(doc);
  const kind = doc.kind;
  if (typeof kind !== 'string') {
    return { ok: false, problems: [{ field: 'kind', message: `kind is required (${Object.keys(SCHEMAS).join(', ')})`, ...(source ? { source } : {}) }] };
  }
  if (!(kind in SCHEMAS)) {
    return { ok: 'ignored', ...(id ? { id } : {}), reason: `kind ${kind} is not read by Switchyard` };
  }
  // Most documents of a large configuration are Secrets, Backends and routes of a few plain shapes: checked without zod.
  const common = kind === 'Secret' ? commonSecret(doc) : undefined;
  if (common !== undefined) return { ok: true, object: { kind: 'Secret', value: common }, id: { kind, namespace: common.metadata.namespace, name: common.metadata.name }, warnings: [] };
  const backend = kind === 'Backend' ? commonBackend(doc) : undefined;
  if (backend !== undefined) return { ok: true, object: { kind: 'Backend', value: backend }, id: { kind, namespace: backend.metadata.namespace, name: backend.metadata.name }, warnings: [] };
  // A common route has no field the schema would strip: no unknown-field warning either.
  const route = kind === 'HTTPRoute' ? commonHTTPRoute(doc) : undefined;
  if (route !== undefined) return { ok: true, object: { kind: 'HTTPRoute', value: route }, id: { kind, namespace: route.metadata.namespace, name: route.metadata.name }, warnings: [] };
  const schema = SCHEMAS[kind as KnownKind];
  const parsed = schema.safeParse(doc);
  if (!parsed.success) return { ok: false, ...(id ? { id } : {}), problems: zodProblems(parsed.error, id, source) };
  const value = parsed.data;
  const finalId: ObjectId = { kind, namespace: value.metadata.namespace, name: value.metadata.name };
  const warnings = FORWARD_COMPATIBLE_KINDS.has(kind) ? unknownFieldProblems(doc, value, finalId, source) : [];
  return { ok: true, object: { kind, value } as KnownObject, id: finalId, warnings };
}

/** The kinds parseManifest reads without their schema when they have a common shape (the fast paths above). */
const FAST_PATH_KINDS = ['Backend', 'Secret', 'HTTPRoute'] as const;

/**
 * Runs the schema of each kind parseManifest has a fast path for on `sample(kind)`, an object of
 * that kind as parsed (which the schema accepts: the fast paths return what it would), a few
 * times, results dropped. A configuration of common Backends and Secrets loads without ever
 * running those schemas, and zod builds a schema's checks the first time it runs it: about 25 ms
 * of CPU for Backend's, which the first edit that leaves the common shape (an outlier detection
 * added, say) would otherwise pay before its change reaches Envoy.
 */
export function warmSchemas(sample: (kind: (typeof FAST_PATH_KINDS)[number]) => unknown): void {
  for (const kind of FAST_PATH_KINDS) {
    const value = sample(kind);
    if (value === undefined) continue;
    for (let i = 0; i < 3; i++) SCHEMAS[kind].safeParse(value);
  }
}

/**
 * Gateway API kinds: the schemas strip fields they do not know instead of rejecting them, because
 * Gateway API asks implementations to accept objects written for a newer version of the API
 * (forward compatibility). The object is served without those fields, and the user is told which
 * ones: a typo ("backendRef") and an unimplemented feature ("requestMirror") look alike.
 * Backend is strict instead (our own API: an unknown field is an error).
 */
const FORWARD_COMPATIBLE_KINDS: ReadonlySet<string> = new Set(['GatewayClass', 'Gateway', 'HTTPRoute', 'ReferenceGrant']);

/** At most this many unknown fields are named per object; the count says how many more. */
const MAX_UNKNOWN_FIELDS = 10;

export const UNKNOWN_FIELD_HINT =
  'Switchyard does not read it and serves the object without it (Gateway API forward compatibility); check the spelling against the Gateway API reference, or remove it if you meant a feature Switchyard does not implement';

function unknownFieldProblems(input: Record<string, unknown>, output: unknown, id: ObjectId, source: string | undefined): Problem[] {
  const found: (string | number)[][] = [];
  // metadata is the API server's (managedFields, ownerReferences...) and status is ours to write.
  for (const key of Object.keys(input)) {
    if (key === 'metadata' || key === 'status' || key === 'apiVersion' || key === 'kind') continue;
    collectUnknown(input[key], isRecord(output) ? output[key] : undefined, [key], isRecord(output) && key in output, found);
  }
  const named = found.slice(0, MAX_UNKNOWN_FIELDS);
  const problems = named.map((path): Problem => ({ object: id, field: formatPath(path), message: `unknown field: ${UNKNOWN_FIELD_HINT}`, ...(source ? { source } : {}) }));
  if (found.length > named.length) {
    problems.push({ object: id, field: '', message: `${found.length - named.length} more unknown fields not listed`, ...(source ? { source } : {}) });
  }
  return problems;
}

/**
 * zod drops keys its object schemas do not declare: a key of the input missing from the parsed
 * output is a field the schema does not know. Records keep every key, so they report nothing.
 */
function collectUnknown(input: unknown, output: unknown, path: (string | number)[], present: boolean, found: (string | number)[][]): void {
  if (!present) {
    found.push(path);
    return;
  }
  if (Array.isArray(input) && Array.isArray(output)) {
    input.forEach((item, i) => collectUnknown(item, output[i], [...path, i], i < output.length, found));
    return;
  }
  if (isRecord(input) && isRecord(output)) {
    for (const key of Object.keys(input)) collectUnknown(input[key], output[key], [...path, key], key in output, found);
  }
}
