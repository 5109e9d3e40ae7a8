import { canonicalJson } from '../manifest-files.js';
import { CREDENTIAL_SECRET_KEYS } from '../../translate/credentials.js';
import type { RawObject } from './api-client.js';
import type { WatchedKind } from './kinds.js';

/**
 * Secret keys translation reads: provider credentials (an API key, a Vertex AI service-account
 * key, Bedrock's AWS keys), a Backend's drill key, and the certificate and key of an HTTPS
 * listener (the keys of a kubernetes.io/tls Secret). Nothing else of a Secret is kept in memory.
 */
export const SECRET_KEYS_READ: readonly string[] = [...CREDENTIAL_SECRET_KEYS, 'tls.crt', 'tls.key'];

/** Written by `kubectl apply`: a full copy of the applied object, which for a Secret holds its values. */
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

const KEPT_METADATA = ['name', 'namespace', 'uid', 'generation', 'labels', 'annotations', 'creationTimestamp'] as const;

function isRecord(v: unknown): v is RawObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An object reduced to what translation may read, and its content fingerprint. */
export interface ReducedObject {
  namespace: string;
  name: string;
  object: RawObject;
  /** Changes exactly when what translation may read changes: not on status writes or resourceVersion bumps. */
  content: string;
}

/**
 * Keeps what translation may read of a raw object: apiVersion and kind (list items omit them),
 * identifying metadata, and the spec. Drops status (our own writes must not look like a change),
 * resourceVersion, managedFields, kubectl's last-applied copy, and every Secret key translation
 * does not read.
 */
export function reduceObject(kind: WatchedKind, raw: RawObject): ReducedObject {
  const { metadata, status: _status, apiVersion: _apiVersion, kind: _kind, ...rest } = raw;
  const meta: RawObject = {};
  const source = isRecord(metadata) ? metadata : {};
  for (const key of KEPT_METADATA) if (source[key] !== undefined) meta[key] = source[key];
  if (isRecord(meta['annotations'])) {
    const { [LAST_APPLIED]: _lastApplied, ...annotations } = meta['annotations'];
    if (Object.keys(annotations).length > 0) meta['annotations'] = annotations;
    else delete meta['annotations'];
  }
  let body: RawObject = rest;
  if (kind.kind === 'Secret') {
    // Annotations may hold anything, values included; a Secret's own data is filtered by key.
    delete meta['annotations'];
    const data: RawObject = {};
    const all = isRecord(raw['data']) ? raw['data'] : {};
    for (const key of SECRET_KEYS_READ) if (all[key] !== undefined) data[key] = all[key];
    body = { ...(raw['type'] !== undefined ? { type: raw['type'] } : {}), data };
  }
  const object: RawObject = { apiVersion: kind.apiVersion, kind: kind.kind, metadata: meta, ...body };
  const namespace = typeof meta['namespace'] === 'string' ? meta['namespace'] : '';
  const name = typeof meta['name'] === 'string' ? meta['name'] : '';
  return { namespace, name, object, content: canonicalJson(object) };
}
