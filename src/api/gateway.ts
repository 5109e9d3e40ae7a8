import { z } from 'zod';
import { ObjectMeta, ObjectName } from './meta.js';
import { LabelSelector } from './namespace.js';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';
export const CONTROLLER_NAME = 'switchyard.dev/gateway-controller';

const GatewayApiVersion = z.enum(['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'], {
  message: 'apiVersion is gateway.networking.k8s.io/v1',
});

export const GatewayClass = z.object({
  apiVersion: GatewayApiVersion,
  kind: z.literal('GatewayClass'),
  metadata: ObjectMeta.extend({ namespace: z.string().default('') }),
  spec: z.object({ controllerName: z.string().min(1), description: z.string().optional() }),
});
export type GatewayClass = z.infer<typeof GatewayClass>;

export const SecretObjectReference = z.object({
  group: z.string().optional(),
  kind: z.string().optional(),
  name: ObjectName,
  namespace: z.string().optional(),
});

/** Listener protocols Switchyard serves; any other (TLS, TCP, UDP, a domain-prefixed one) is reported per listener. */
export const SERVED_PROTOCOLS = ['HTTP', 'HTTPS'] as const;
export type ServedProtocol = (typeof SERVED_PROTOCOLS)[number];

export function isServedProtocol(protocol: string): protocol is ServedProtocol {
  return (SERVED_PROTOCOLS as readonly string[]).includes(protocol);
}

export const RouteGroupKind = z.object({ group: z.string().optional(), kind: z.string().min(1) });
export type RouteGroupKind = z.infer<typeof RouteGroupKind>;

export const GatewayListener = z.object({
  name: z.string().min(1).max(253),
  hostname: z.string().min(1).optional(),
  port: z.number().int().min(1).max(65535),
  // The CRD admits any protocol name (TLS, TCP, UDP, "example.com/x"); a listener Switchyard
  // does not serve is reported in its own status while the Gateway's other listeners keep serving.
  protocol: z.string().min(1).max(255),
  tls: z
    .object({
      mode: z.enum(['Terminate', 'Passthrough']).optional(),
      certificateRefs: z.array(SecretObjectReference).optional(),
      options: z.record(z.string(), z.string()).optional(),
    })
    .optional(),
  allowedRoutes: z
    .object({
      namespaces: z
        .object({
          from: z.enum(['All', 'Same', 'Selector']).optional(),
          selector: LabelSelector.optional(),
        })
        .optional(),
      kinds: z.array(RouteGroupKind).optional(),
    })
    .optional(),
});
export type GatewayListener = z.infer<typeof GatewayListener>;

/** spec.addresses: what the infrastructure provider is asked to give the Gateway. */
export const GatewaySpecAddress = z.object({
  type: z.string().min(1).max(253).optional(),
  value: z.string().max(253).optional(),
});
export type GatewaySpecAddress = z.infer<typeof GatewaySpecAddress>;

/**
 * Gateway metadata.annotations["switchyard.dev/access-log"]: `json` or `off` for this Gateway's
 * listeners, over the command's --access-log. An annotation, like switchyard.dev/service-type:
 * Gateway API has no field for it, and a GatewayClass-wide parametersRef would not be per Gateway.
 */
export const ACCESS_LOG_ANNOTATION = 'switchyard.dev/access-log';
export const ACCESS_LOG_FORMATS = ['json', 'off'] as const;
export type AccessLogFormat = (typeof ACCESS_LOG_FORMATS)[number];

/** spec.infrastructure: labels and annotations for the resources created for the Gateway. */
export const GatewayInfrastructure = z.object({
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  parametersRef: z.object({ group: z.string(), kind: z.string().min(1), name: z.string().min(1) }).optional(),
});
export type GatewayInfrastructure = z.infer<typeof GatewayInfrastructure>;

export const Gateway = z.object({
  apiVersion: GatewayApiVersion,
  kind: z.literal('Gateway'),
  metadata: ObjectMeta,
  spec: z.object({
    gatewayClassName: z.string().min(1),
    listeners: z.array(GatewayListener).min(1, 'a Gateway needs at least one listener').max(64),
    addresses: z.array(GatewaySpecAddress).max(16).optional(),
    infrastructure: GatewayInfrastructure.optional(),
  }),
});
export type Gateway = z.infer<typeof Gateway>;
