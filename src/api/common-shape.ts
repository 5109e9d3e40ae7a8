import type { ObjectMeta } from './meta.js';
import { DNS_LABEL, DNS_SUBDOMAIN } from './meta.js';

// The checks the fast paths (commonBackend, commonHTTPRoute) share: each answers as the schema
// would for one value, so that a fast path takes only what its schema takes, with the same value.

/** metadata of only a name and a namespace, the namespace defaulted as the schema defaults it; undefined for anything else. */
export function commonMetadata(meta: unknown): ObjectMeta | undefined {
  if (!onlyKeys(meta, METADATA_KEYS)) return undefined;
  const { name, namespace } = meta;
  if (!isObjectName(name)) return undefined;
  if ('namespace' in meta && (typeof namespace !== 'string' || namespace.length > 63 || !DNS_LABEL.test(namespace))) return undefined;
  return { name, namespace: typeof namespace === 'string' ? namespace : 'default' };
}

const METADATA_KEYS: ReadonlySet<string> = new Set(['name', 'namespace']);

export function isObjectName(v: unknown): v is string {
  return typeof v === 'string' && v.length <= 253 && DNS_SUBDOMAIN.test(v);
}

export function isIntegerIn(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
}

/** A plain object whose own keys are all in `allowed`, none of them holding undefined (the schema reads a present undefined as absent, this as unknown). */
export function onlyKeys(v: unknown, allowed: ReadonlySet<string>): v is Record<string, unknown> {
  if (!isPlainRecord(v)) return false;
  for (const key in v) if (!allowed.has(key) || v[key] === undefined) return false;
  return true;
}

export function isPlainRecord(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
