import { z } from 'zod';
import { ObjectMeta } from './meta.js';

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

/** A Secret's value for one key: stringData wins (as the API server merges it), data is base64. */
export function secretValue(secret: Secret, key: string): string | undefined {
  const plain = secret.stringData?.[key];
  if (plain !== undefined) return plain;
  const encoded = secret.data?.[key];
  if (encoded === undefined) return undefined;
  return Buffer.from(encoded, 'base64').toString('utf8');
}
