import { z } from 'zod';
import { ObjectMeta } from './meta.js';

const Port = z.number().int().min(1, 'a port is 1-65535').max(65535, 'a port is 1-65535');

export const ServicePort = z.object({
  name: z.string().optional(),
  protocol: z.enum(['TCP', 'UDP', 'SCTP']).optional(),
  appProtocol: z.string().optional(),
  port: Port,
  /** A number, or the name of a container port (then EndpointSlices carry the number). */
  targetPort: z.union([Port, z.string().min(1)]).optional(),
});
export type ServicePort = z.infer<typeof ServicePort>;

/** A core Service, read for its ports: its endpoints come from EndpointSlices. */
export const Service = z.object({
  apiVersion: z.literal('v1', { message: 'apiVersion is v1' }),
  kind: z.literal('Service'),
  metadata: ObjectMeta,
  spec: z
    .object({
      type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']).optional(),
      ports: z.array(ServicePort).optional(),
      externalName: z.string().optional(),
    })
    .default({}),
});
export type Service = z.infer<typeof Service>;

/** The Service port a backendRef's `port` names, if the Service exposes it over TCP. */
export function servicePort(service: Service, port: number): ServicePort | undefined {
  return service.spec.ports?.find((p) => p.port === port && (p.protocol ?? 'TCP') === 'TCP');
}
