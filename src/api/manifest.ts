import type { z } from 'zod';
import { Backend } from './backend.js';
import { EndpointSlice } from './endpointslice.js';
import { Gateway, GatewayClass } from './gateway.js';
import { HTTPRoute } from './httproute.js';
import type { ObjectId } from './meta.js';
import { Namespace } from './namespace.js';
import { ReferenceGrant } from './referencegrant.js';
import { Secret } from './secret.js';
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
  | { ok: true; object: KnownObject; id: ObjectId }
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
      message = `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}: check the spelling against the ${id?.kind ?? 'object'} reference`;
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
  const schema = SCHEMAS[kind as KnownKind];
  const parsed = schema.safeParse(doc);
  if (!parsed.success) return { ok: false, ...(id ? { id } : {}), problems: zodProblems(parsed.error, id, source) };
  const value = parsed.data;
  const finalId: ObjectId = { kind, namespace: value.metadata.namespace, name: value.metadata.name };
  return { ok: true, object: { kind, value } as KnownObject, id: finalId };
}
