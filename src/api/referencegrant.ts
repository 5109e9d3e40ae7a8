import { z } from 'zod';
import { ObjectMeta } from './meta.js';

const GroupKind = { group: z.string(), kind: z.string().min(1) };

/** gateway.networking.k8s.io ReferenceGrant: lets objects of `from` refer to objects of `to` in its namespace. */
export const ReferenceGrant = z.object({
  apiVersion: z.enum(['gateway.networking.k8s.io/v1beta1', 'gateway.networking.k8s.io/v1'], {
    message: 'apiVersion is gateway.networking.k8s.io/v1beta1',
  }),
  kind: z.literal('ReferenceGrant'),
  metadata: ObjectMeta,
  spec: z.object({
    from: z.array(z.object({ ...GroupKind, namespace: z.string().min(1) })).min(1, 'from needs at least one entry'),
    to: z.array(z.object({ ...GroupKind, name: z.string().optional() })).min(1, 'to needs at least one entry'),
  }),
});
export type ReferenceGrant = z.infer<typeof ReferenceGrant>;
