import { z } from 'zod';
import { DURATION_HINT, DURATION_PATTERN } from './duration.js';

export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export const ObjectName = z
  .string()
  .max(253)
  .regex(DNS_SUBDOMAIN, 'must be a lowercase DNS subdomain (a-z, 0-9, "-", "."), e.g. "openai-key"');

export const ObjectMeta = z.object({
  name: ObjectName,
  namespace: z.string().max(63).regex(DNS_LABEL, 'must be a lowercase DNS label, e.g. "ai"').default('default'),
  generation: z.number().int().optional(),
  resourceVersion: z.string().optional(),
  uid: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  creationTimestamp: z.string().optional(),
});
export type ObjectMeta = z.infer<typeof ObjectMeta>;

/** "namespace/name": how objects are named in errors, statuses, logs and Envoy names. */
export function objectKey(meta: { namespace: string; name: string }): string {
  return `${meta.namespace}/${meta.name}`;
}

export interface ObjectId {
  kind: string;
  namespace: string;
  name: string;
}

export function describeObject(id: ObjectId): string {
  return `${id.kind} ${id.namespace}/${id.name}`;
}

/**
 * The schema of every duration field (a pattern, so the CRD generated from it validates the same).
 * Here rather than in duration.ts, which stays free of zod: the AI extension parses durations
 * without loading it.
 */
export const DurationString = z.string().regex(new RegExp(DURATION_PATTERN), `invalid duration: ${DURATION_HINT}`);
