/**
 * Gateway API features Switchyard implements, named as in sigs.k8s.io/gateway-api v1.4.1
 * `pkg/features`, published in GatewayClass status.supportedFeatures (which the API wants sorted
 * by name, ascending). The conformance suite runs the tests of exactly these features, so a name
 * belongs here only when the behaviour behind it is implemented.
 *
 * Left out on purpose: GatewayHTTPListenerIsolation, GatewayStaticAddresses,
 * GatewayInfrastructurePropagation, GatewayAddressEmpty (data-plane provisioning), RequestMirror
 * and its variants, CORS, BackendProtocolH2C and BackendProtocolWebSocket, every GRPCRoute,
 * TLSRoute, UDPRoute, Mesh and BackendTLSPolicy feature.
 */
const FEATURES = [
  'Gateway',
  'GatewayPort8080',
  'HTTPRoute',
  'HTTPRouteBackendRequestHeaderModification',
  'HTTPRouteBackendTimeout',
  'HTTPRouteDestinationPortMatching',
  'HTTPRouteHostRewrite',
  'HTTPRouteMethodMatching',
  'HTTPRouteNamedRouteRule',
  'HTTPRouteParentRefPort',
  'HTTPRoutePathRedirect',
  'HTTPRoutePathRewrite',
  'HTTPRoutePortRedirect',
  'HTTPRouteQueryParamMatching',
  'HTTPRouteRequestTimeout',
  'HTTPRouteResponseHeaderModification',
  'HTTPRouteSchemeRedirect',
  'ReferenceGrant',
] as const;

export type FeatureName = (typeof FEATURES)[number];

/** Sorted in code-unit order, as Kubernetes compares the names. */
export const SUPPORTED_FEATURES: readonly FeatureName[] = [...FEATURES].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
