/**
 * Fields the real Envoy (1.40) accepts that are newer than the Envoy API snapshot bundled in
 * @grpc/grpc-js-xds's deps/. They are added to the loaded protobufjs types at start, by number,
 * so the strict encoder accepts them and Envoy decodes them. Numbers are those of Envoy's API.
 */
export interface ProtoFieldAddition {
  message: string;
  field: string;
  id: number;
  type: string;
}

export const PROTO_FIELD_ADDITIONS: readonly ProtoFieldAddition[] = [
  // Per-endpoint SNI from the endpoint hostname, checked per attempt (Envoy PR 36903).
  { message: 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', field: 'auto_host_sni', id: 6, type: 'bool' },
  { message: 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', field: 'auto_sni_san_validation', id: 7, type: 'bool' },
  // Replaces the deprecated per_request_buffer_limit_bytes (Envoy 1.40 warns about that one).
  { message: 'envoy.config.route.v3.Route', field: 'request_body_buffer_limit', id: 20, type: 'google.protobuf.UInt64Value' },
  // Response body chunks reach the AI extension while it holds the response headers back, so it
  // can wait for the first content token before anything goes downstream (first-token deadline).
  { message: 'envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor', field: 'send_body_without_waiting_for_header_response', id: 21, type: 'bool' },
];
