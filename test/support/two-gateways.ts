import { runPipeline, type PipelineResult } from '../../src/pipeline.js';
import type { EnvoyOptions } from '../../src/envoy/options.js';
import { snapshotOf } from '../golden/render.js';

/**
 * Two Gateways of one class on the same port in different namespaces (as the Gateway API
 * conformance suite's base manifests have them): a/edge (older) and b/edge, each with an
 * HTTPRoute to a Static Backend of its own namespace.
 */
export interface TwoGateways {
  port: number;
  /** Where each Backend's only member listens. */
  upstreamA: { host: string; port: number };
  upstreamB: { host: string; port: number };
  /** Path prefix of each route (change it to edit that route). */
  pathA?: string;
  pathB?: string;
  /** Add a third Gateway, c/edge, on the same port (no route). */
  withC?: boolean;
}

function gateway(ns: string, created: string, port: number): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: ${ns}, creationTimestamp: "${created}"}
spec:
  gatewayClassName: switchyard
  listeners:
  - {name: http, protocol: HTTP, port: ${port}}
`;
}

function routeAndBackend(ns: string, path: string, upstream: { host: string; port: number }): string {
  return `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: ${ns}}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {type: PathPrefix, value: ${path}}}]
    backendRefs: [{group: switchyard.dev, kind: Backend, name: pool}]
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: pool, namespace: ${ns}}
spec:
  type: Static
  static:
    priorities:
    - hosts: [{host: ${upstream.host}, port: ${upstream.port}}]
`;
}

export function twoGatewaysYaml(o: TwoGateways): string {
  return [
    'apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: switchyard}\nspec: {controllerName: switchyard.dev/gateway-controller}\n',
    gateway('a', '2025-01-01T00:00:00Z', o.port),
    gateway('b', '2025-02-01T00:00:00Z', o.port),
    ...(o.withC === true ? [gateway('c', '2025-03-01T00:00:00Z', o.port)] : []),
    routeAndBackend('a', o.pathA ?? '/', o.upstreamA),
    routeAndBackend('b', o.pathB ?? '/', o.upstreamB),
  ].join('---\n');
}

export function twoGateways(o: TwoGateways, envoy: Partial<EnvoyOptions> = {}): PipelineResult {
  return runPipeline(snapshotOf([{ name: 'two-gateways.yaml', text: twoGatewaysYaml(o) }]).inputs, envoy);
}
