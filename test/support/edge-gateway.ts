/**
 * The GatewayClass and the Gateway `ai/edge` (one HTTP listener on 10080) that the in-process
 * pipeline tests put in front of their Backends and routes.
 */
export const EDGE_GATEWAY: readonly Record<string, unknown>[] = [
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'switchyard' }, spec: { controllerName: 'switchyard.dev/gateway-controller' } },
  { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'ai' }, spec: { gatewayClassName: 'switchyard', listeners: [{ name: 'http', protocol: 'HTTP', port: 10080 }] } },
];
