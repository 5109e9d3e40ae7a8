import { z } from 'zod';
import { ObjectMeta } from './meta.js';

/** Label that ties an EndpointSlice to its Service (set by the EndpointSlice controller, or by hand). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export const EndpointConditions = z.object({
  ready: z.boolean().nullish(),
  serving: z.boolean().nullish(),
  terminating: z.boolean().nullish(),
});

export const Endpoint = z.object({
  addresses: z.array(z.string().min(1)).min(1, 'an endpoint needs at least one address'),
  conditions: EndpointConditions.optional(),
  hostname: z.string().optional(),
  nodeName: z.string().optional(),
  zone: z.string().optional(),
  targetRef: z.object({ kind: z.string().optional(), namespace: z.string().optional(), name: z.string().optional() }).optional(),
});
export type Endpoint = z.infer<typeof Endpoint>;

export const EndpointPort = z.object({
  name: z.string().nullish(),
  protocol: z.enum(['TCP', 'UDP', 'SCTP']).nullish(),
  port: z.number().int().min(1).max(65535).nullish(),
  appProtocol: z.string().nullish(),
});
export type EndpointPort = z.infer<typeof EndpointPort>;

/** discovery.k8s.io/v1 EndpointSlice. `endpoints` and `ports` may be null in what the API server sends. */
export const EndpointSlice = z.object({
  apiVersion: z.literal('discovery.k8s.io/v1', { message: 'apiVersion is discovery.k8s.io/v1' }),
  kind: z.literal('EndpointSlice'),
  metadata: ObjectMeta,
  addressType: z.enum(['IPv4', 'IPv6', 'FQDN']),
  endpoints: z.array(Endpoint).nullish().transform((e) => e ?? []),
  ports: z.array(EndpointPort).nullish().transform((p) => p ?? []),
});
export type EndpointSlice = z.infer<typeof EndpointSlice>;

/**
 * Whether traffic may go to an endpoint: ready (an unset `ready` means ready, per the API), or
 * serving and not terminating.
 */
export function endpointUsable(e: Endpoint): boolean {
  const c = e.conditions;
  if (c?.ready !== false) return true;
  return c.serving === true && c.terminating !== true;
}
