import { z } from 'zod';
import { ObjectMeta } from './meta.js';

export const Secret = z.object({
  apiVersion: z.literal('v1', { message: 'apiVersion is v1' }),
  kind: z.literal('Secret'),
  metadata: ObjectMeta,
  type: z.string().optional(),
  data: z.record(z.string(), z.string()).optional(),
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
