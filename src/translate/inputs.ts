import type { Backend } from '../api/backend.js';
import type { EndpointSlice } from '../api/endpointslice.js';
import type { Gateway, GatewayClass } from '../api/gateway.js';
import type { HTTPRoute } from '../api/httproute.js';
import type { KnownObject, Problem } from '../api/manifest.js';
import type { Namespace } from '../api/namespace.js';
import type { Secret } from '../api/secret.js';
import type { Service } from '../api/service.js';

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

/** An object served without the fields its schema does not know (Gateway API forward compatibility). */
export interface UnknownFields {
  kind: string;
  namespace: string;
  name: string;
  /** Field paths, e.g. spec.rules[0].backendRef. */
  fields: string[];
}

/** Everything translation reads: a consistent snapshot collected by a provider. */
export interface Inputs {
  gatewayClasses: GatewayClass[];
  gateways: Gateway[];
  httpRoutes: HTTPRoute[];
  backends: Backend[];
  secrets: Secret[];
  referenceGrants: ReferenceGrant[];
  /** Core Services that backendRefs may name; their endpoints come from `endpointSlices`. */
  services: Service[];
  endpointSlices: EndpointSlice[];
  /** Namespaces, for their labels (listener `allowedRoutes.namespaces.from: Selector`). */
  namespaces: Namespace[];
  invalid: InvalidObject[];
  /** Served objects that carried fields Switchyard ignores; translation turns them into Warning Events. */
  unknownFields?: UnknownFields[];
}

/** Notes the unknown fields of a served object, if any (from parseManifest's warnings). */
export function noteUnknownFields(inputs: Inputs, id: { kind: string; namespace: string; name: string }, warnings: readonly Problem[]): void {
  if (warnings.length === 0) return;
  const fields = warnings.map((w) => w.field).filter((f) => f !== '');
  if (fields.length === 0) return;
  (inputs.unknownFields ??= []).push({ kind: id.kind, namespace: id.namespace, name: id.name, fields });
}

export function emptyInputs(): Inputs {
  return {
    gatewayClasses: [],
    gateways: [],
    httpRoutes: [],
    backends: [],
    secrets: [],
    referenceGrants: [],
    services: [],
    endpointSlices: [],
    namespaces: [],
    invalid: [],
  };
}

/** Files a validated object under its kind. */
export function addToInputs(inputs: Inputs, o: KnownObject): void {
  switch (o.kind) {
    case 'GatewayClass':
      inputs.gatewayClasses.push(o.value);
      return;
    case 'Gateway':
      inputs.gateways.push(o.value);
      return;
    case 'HTTPRoute':
      inputs.httpRoutes.push(o.value);
      return;
    case 'Backend':
      inputs.backends.push(o.value);
      return;
    case 'Secret':
      inputs.secrets.push(o.value);
      return;
    case 'ReferenceGrant':
      inputs.referenceGrants.push(o.value);
      return;
    case 'Service':
      inputs.services.push(o.value);
      return;
    case 'EndpointSlice':
      inputs.endpointSlices.push(o.value);
      return;
    case 'Namespace':
      inputs.namespaces.push(o.value);
      return;
  }
}
