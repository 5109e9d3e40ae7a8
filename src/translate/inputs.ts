import type { Backend } from '../api/backend.js';
import type { Gateway, GatewayClass } from '../api/gateway.js';
import type { HTTPRoute } from '../api/httproute.js';
import type { Problem } from '../api/manifest.js';
import type { Secret } from '../api/secret.js';

/** A ReferenceGrant (gateway.networking.k8s.io/v1beta1), reduced to what reference checks need. */
export interface ReferenceGrant {
  metadata: { namespace: string; name: string };
  spec: {
    from: { group: string; kind: string; namespace: string }[];
    to: { group: string; kind: string; name?: string }[];
  };
}

/** An object whose current version failed validation. */
export interface InvalidObject {
  kind: string;
  namespace: string;
  name: string;
  generation?: number;
  problems: Problem[];
  /** True when an earlier valid version of the object is still in the inputs and keeps being served. */
  servingLastGood: boolean;
}

/** Everything translation reads: a consistent snapshot collected by a provider. */
export interface Inputs {
  gatewayClasses: GatewayClass[];
  gateways: Gateway[];
  httpRoutes: HTTPRoute[];
  backends: Backend[];
  secrets: Secret[];
  referenceGrants: ReferenceGrant[];
  invalid: InvalidObject[];
}

export function emptyInputs(): Inputs {
  return { gatewayClasses: [], gateways: [], httpRoutes: [], backends: [], secrets: [], referenceGrants: [], invalid: [] };
}
