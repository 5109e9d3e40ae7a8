import { BACKEND_GROUP } from '../api/backend.js';
import { GATEWAY_GROUP } from '../api/gateway.js';

/** The kinds whose status Switchyard writes, and where the API server keeps them. */
export type StatusKind = 'Backend' | 'Gateway' | 'GatewayClass' | 'HTTPRoute';

export interface KindResource {
  kind: StatusKind;
  group: string;
  version: string;
  plural: string;
  namespaced: boolean;
}

export const STATUS_KINDS: Readonly<Record<StatusKind, KindResource>> = {
  Backend: { kind: 'Backend', group: BACKEND_GROUP, version: 'v1alpha1', plural: 'backends', namespaced: true },
  Gateway: { kind: 'Gateway', group: GATEWAY_GROUP, version: 'v1', plural: 'gateways', namespaced: true },
  GatewayClass: { kind: 'GatewayClass', group: GATEWAY_GROUP, version: 'v1', plural: 'gatewayclasses', namespaced: false },
  HTTPRoute: { kind: 'HTTPRoute', group: GATEWAY_GROUP, version: 'v1', plural: 'httproutes', namespaced: true },
};

export function isStatusKind(kind: string): kind is StatusKind {
  return Object.hasOwn(STATUS_KINDS, kind);
}

export function apiVersionOf(r: KindResource): string {
  return `${r.group}/${r.version}`;
}

/** One object whose status is written; `namespace` is '' for cluster-scoped kinds. */
export interface ObjectRef {
  kind: StatusKind;
  namespace: string;
  name: string;
}

export function refKey(ref: { kind: string; namespace: string; name: string }): string {
  return `${ref.kind}/${ref.namespace}/${ref.name}`;
}

export function describeRef(ref: { kind: string; namespace: string; name: string }): string {
  return ref.namespace ? `${ref.kind} ${ref.namespace}/${ref.name}` : `${ref.kind} ${ref.name}`;
}
