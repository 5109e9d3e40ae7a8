import { BACKEND_API_VERSION } from '../../api/backend.js';
import type { KnownKind } from '../../api/manifest.js';

/** One resource the provider lists and watches. */
export interface WatchedKind {
  kind: KnownKind;
  /** "v1" for the core group, else "<group>/<version>". */
  apiVersion: string;
  /** Lower-case plural in the API path. */
  plural: string;
  namespaced: boolean;
  /**
   * Served by a CRD that may not be installed (yet): a 404 is a warning and an empty list, and the
   * informer keeps retrying, so installing the CRD later needs no restart.
   */
  fromCrd: boolean;
  /** What an absent CRD means for the user. */
  whenAbsent?: string;
}

const GATEWAY_API = 'gateway.networking.k8s.io';
const GATEWAY_API_HINT = 'install the Gateway API CRDs (experimental channel)';

export const WATCHED_KINDS: readonly WatchedKind[] = [
  { kind: 'GatewayClass', apiVersion: `${GATEWAY_API}/v1`, plural: 'gatewayclasses', namespaced: false, fromCrd: true, whenAbsent: GATEWAY_API_HINT },
  { kind: 'Gateway', apiVersion: `${GATEWAY_API}/v1`, plural: 'gateways', namespaced: true, fromCrd: true, whenAbsent: GATEWAY_API_HINT },
  { kind: 'HTTPRoute', apiVersion: `${GATEWAY_API}/v1`, plural: 'httproutes', namespaced: true, fromCrd: true, whenAbsent: GATEWAY_API_HINT },
  { kind: 'ReferenceGrant', apiVersion: `${GATEWAY_API}/v1beta1`, plural: 'referencegrants', namespaced: true, fromCrd: true, whenAbsent: GATEWAY_API_HINT },
  {
    kind: 'Backend',
    apiVersion: BACKEND_API_VERSION,
    plural: 'backends',
    namespaced: true,
    fromCrd: true,
    whenAbsent: 'install the Backend CRD (crds/ or the Helm chart); HTTPRoutes to Backends answer 500 until then',
  },
  { kind: 'Secret', apiVersion: 'v1', plural: 'secrets', namespaced: true, fromCrd: false },
  { kind: 'Service', apiVersion: 'v1', plural: 'services', namespaced: true, fromCrd: false },
  { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', plural: 'endpointslices', namespaced: true, fromCrd: false },
  { kind: 'Namespace', apiVersion: 'v1', plural: 'namespaces', namespaced: false, fromCrd: false },
];

/** The collection path of a kind, in one namespace or across all of them. */
export function collectionPath(k: WatchedKind, namespace: string | undefined): string {
  const prefix = k.apiVersion === 'v1' ? '/api/v1' : `/apis/${k.apiVersion}`;
  return k.namespaced && namespace ? `${prefix}/namespaces/${encodeURIComponent(namespace)}/${k.plural}` : `${prefix}/${k.plural}`;
}
