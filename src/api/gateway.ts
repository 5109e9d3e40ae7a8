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

export const GatewayListener = z.object({
  name: z.string().min(1).max(253),
  hostname: z.string().min(1).optional(),
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(['HTTP', 'HTTPS'], { message: 'Switchyard serves HTTP and HTTPS listeners' }),
  tls: z
    .object({
      mode: z.enum(['Terminate', 'Passthrough']).optional(),
      certificateRefs: z.array(SecretObjectReference).optional(),
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
      kinds: z.array(z.object({ group: z.string().optional(), kind: z.string() })).optional(),
    })
    .optional(),
});
export type GatewayListener = z.infer<typeof GatewayListener>;

export const Gateway = z.object({
  apiVersion: GatewayApiVersion,
  kind: z.literal('Gateway'),
  metadata: ObjectMeta,
  spec: z.object({
    gatewayClassName: z.string().min(1),
    listeners: z.array(GatewayListener).min(1, 'a Gateway needs at least one listener').max(64),
  }),
});
export type Gateway = z.infer<typeof Gateway>;
