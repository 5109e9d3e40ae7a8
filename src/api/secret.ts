import { z } from 'zod';
import { DNS_LABEL, DNS_SUBDOMAIN, ObjectMeta } from './meta.js';
import { isPlainRecord } from './common-shape.js';

/**
 * Standard base64 with padding, as the API server requires for `data` ([]byte in JSON). Checked
 * here because file mode has no API server: undecodable data would otherwise become a garbled
 * credential. The message never quotes the value.
 */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const Base64Value = z.string().regex(BASE64, 'is not base64: a Secret\'s data values are base64-encoded (e.g. `base64 -w0 key.txt`); put plain text under stringData instead');

export const Secret = z.object({
  apiVersion: z.literal('v1', { message: 'apiVersion is v1' }),
  kind: z.literal('Secret'),
  metadata: ObjectMeta,
  type: z.string().optional(),
  data: z.record(z.string(), Base64Value).optional(),
  stringData: z.record(z.string(), z.string()).optional(),
});
export type Secret = z.infer<typeof Secret>;

const SECRET_KEYS: ReadonlySet<string> = new Set(['apiVersion', 'kind', 'metadata', 'type', 'data', 'stringData']);

/**
 * The common Secret (name, namespace, type, data, stringData and nothing else, all valid) as the
 * Secret schema parses it, without the schema: a configuration holds six Secrets per Backend,
 * and this costs about a third of what the schema does. Anything else, valid or not, is undefined: the
 * schema decides it, and its messages stay the only ones. test/property/secret-fast-path
 * checks the two agree.
 */
export function commonSecret(doc: Record<string, unknown>): Secret | undefined {
  if (!isPlainRecord(doc) || doc.apiVersion !== 'v1' || doc.kind !== 'Secret') return undefined;
  for (const key in doc) if (!SECRET_KEYS.has(key)) return undefined;
  const meta = doc.metadata;
  if (!isPlainRecord(meta)) return undefined;
  let keys = 0;
  for (const key in meta) {
    if (key !== 'name' && key !== 'namespace') return undefined;
    keys++;
  }
  const { name, namespace } = meta;
  if (typeof name !== 'string' || name.length > 253 || !DNS_SUBDOMAIN.test(name)) return undefined;
  if (namespace !== undefined && (typeof namespace !== 'string' || namespace.length > 63 || !DNS_LABEL.test(namespace))) return undefined;
  if (keys !== (namespace === undefined ? 1 : 2)) return undefined;
  if (doc.type !== undefined && typeof doc.type !== 'string') return undefined;
  if ('type' in doc && doc.type === undefined) return undefined;
  const data = stringRecord(doc, 'data', BASE64);
  const stringData = stringRecord(doc, 'stringData', undefined);
  if (data === null || stringData === null) return undefined;
  // Grown from an empty literal, which has four in-object slots: a literal of three would put the
  // fourth field (stringData, in nearly every Secret) in a property array of its own.
  const out = {} as Secret;
  out.apiVersion = 'v1';
  out.kind = 'Secret';
  out.metadata = { name, namespace: namespace ?? 'default' };
  if (typeof doc.type === 'string') out.type = doc.type;
  if (data !== undefined) out.data = data;
  if (stringData !== undefined) out.stringData = stringData;
  return out;
}

/** A copy of doc[field] when it is a record of strings (matching `pattern`); undefined when absent; null otherwise. */
function stringRecord(doc: Record<string, unknown>, field: string, pattern: RegExp | undefined): Record<string, string> | undefined | null {
  if (!(field in doc)) return undefined;
  const value = doc[field];
  if (!isPlainRecord(value)) return null;
  const keys = Object.keys(value);
  for (const key of keys) {
    const item = value[key];
    if (key === '__proto__' || typeof item !== 'string' || (pattern !== undefined && !pattern.test(item))) return null;
  }
  // A Secret made for Switchyard holds the one key translation reads: a literal of that key is an
  // object of one slot, where one grown from {} keeps four (56 bytes instead of 32, per Secret).
  if (keys.length === 1 && keys[0] === AUTHORIZATION) return { Authorization: value[AUTHORIZATION] as string };
  const out: Record<string, string> = {};
  for (const key of keys) out[key] = value[key] as string;
  return out;
}

const AUTHORIZATION = 'Authorization';

/** A Secret's value for one key: stringData wins (as the API server merges it), data is base64. */
export function secretValue(secret: Secret, key: string): string | undefined {
  const plain = secret.stringData?.[key];
  if (plain !== undefined) return plain;
  const encoded = secret.data?.[key];
  if (encoded === undefined) return undefined;
  return Buffer.from(encoded, 'base64').toString('utf8');
}
