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

/** A message type newer than the bundled snapshot, created before the fields that use it. */
export interface ProtoMessageAddition {
  /** Full name, package included. */
  message: string;
  fields: { field: string; id: number; type: string }[];
}

export const PROTO_MESSAGE_ADDITIONS: readonly ProtoMessageAddition[] = [
  // An answer the extension makes up in place of the upstream's (failover drills): Envoy's
  // upstream filter chain hands it to the router like an upstream response, so the route's
  // retry policy applies to it (an immediate_response is a local reply and is never retried).
  { message: 'envoy.service.ext_proc.v3.StreamedImmediateResponse', fields: [{ field: 'headers_response', id: 1, type: 'HttpHeaders' }] },
  // The answer to a request body chunk in full-duplex mode (src/ai-extension/README.md).
  { message: 'envoy.service.ext_proc.v3.StreamedBodyResponse', fields: [{ field: 'body', id: 1, type: 'bytes' }, { field: 'end_of_stream', id: 2, type: 'bool' }] },
];

/** An enum value newer than the bundled snapshot. */
export interface ProtoEnumValueAddition {
  /** Full name of the enum, package included. */
  enum: string;
  value: string;
  id: number;
}

export const PROTO_ENUM_VALUE_ADDITIONS: readonly ProtoEnumValueAddition[] = [
  // The request body goes to the AI extension with the headers, not after their answer.
  { enum: 'envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.BodySendMode', value: 'FULL_DUPLEX_STREAMED', id: 4 },
];

export const PROTO_FIELD_ADDITIONS: readonly ProtoFieldAddition[] = [
  // Per-endpoint SNI from the endpoint hostname, checked per attempt (Envoy PR 36903).
  { message: 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', field: 'auto_host_sni', id: 6, type: 'bool' },
  { message: 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', field: 'auto_sni_san_validation', id: 7, type: 'bool' },
  // Replaces the deprecated per_request_buffer_limit_bytes (Envoy 1.40 warns about that one).
  { message: 'envoy.config.route.v3.Route', field: 'request_body_buffer_limit', id: 20, type: 'google.protobuf.UInt64Value' },
  // Response body chunks reach the AI extension while it holds the response headers back, so it
  // can wait for the first content token before anything goes downstream (first-token deadline).
  { message: 'envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor', field: 'send_body_without_waiting_for_header_response', id: 21, type: 'bool' },
  // With the request body in full duplex, Envoy removes content-length unless this is set; the
  // extension sets the length of the body it sends (src/ai-extension/README.md).
  { message: 'envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor', field: 'allow_content_length_header', id: 26, type: 'bool' },
  { message: 'envoy.service.ext_proc.v3.ProcessingResponse', field: 'streamed_immediate_response', id: 11, type: 'StreamedImmediateResponse' },
  // A span tag from access log command operators (Envoy 1.37+, in the `type` oneof): the member
  // tags read the dynamic metadata or the host's, whichever has the fact (src/envoy/tracing.ts).
  { message: 'envoy.type.tracing.v3.CustomTag', field: 'value', id: 6, type: 'string' },
  { message: 'envoy.service.ext_proc.v3.BodyMutation', field: 'streamed_response', id: 3, type: 'StreamedBodyResponse' },
];
