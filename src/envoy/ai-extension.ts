import { isIP } from 'node:net';
import { ATTEMPT_FACTS_KEY, type AttemptFacts } from './attempt-facts.js';
import { DEFAULT_AI_REQUEST_BODY_LIMIT } from '../ir/model.js';
import { ANY, METADATA_NAMESPACE } from './names.js';
import type { AiExtensionAddress, EnvoyOptions } from './options.js';
import { TypeUrl, type EnvoyResource, type JsonObject } from './resources.js';

/**
 * The Envoy side of the AI extension: an upstream ext_proc filter on every AI cluster, the
 * cluster that reaches the extension, and the local reply a client gets when it is down. Why
 * each knob is set is in src/ai-extension/README.md (what Envoy 1.40 was seen to do).
 */

export const AI_EXTENSION_CLUSTER = 'switchyard/ai-extension';

/**
 * The CEL expression Envoy evaluates against the host picked for each attempt: the member's facts
 * string (src/envoy/attempt-facts.ts). One expression for every fact: each expression costs Envoy
 * an evaluation and a Struct entry keyed by its text on every attempt, and a whole metadata map
 * would arrive as the string "CelMap value".
 */
export const ATTEMPT_FACTS_ATTRIBUTE = `xds.upstream_host_metadata.filter_metadata['${METADATA_NAMESPACE}'].${ATTEMPT_FACTS_KEY}`;

/**
 * The member facts of the release before the facts string, one endpoint metadata key (and one
 * CEL attribute) each, in that release's order. Served only to a data plane that still has an
 * Envoy of that release (AttemptFactsForm 'legacy'). Frozen: never add to it.
 */
export const LEGACY_ATTEMPT_KEYS = [
  'backend', 'member', 'priority', 'provider', 'model', 'path', 'hostname',
  'authHeader', 'authKind', 'credential', 'apiVersion', 'deployment', 'firstTokenTimeoutMs', 'fallbacks', 'modelAliases', 'drillKey',
  'requestsPerMinute', 'tokensPerMinute',
] as const satisfies readonly (keyof AttemptFacts)[];
export type LegacyAttemptKey = (typeof LEGACY_ATTEMPT_KEYS)[number];

/** The CEL expression of one legacy fact. */
export function legacyAttemptAttribute(key: LegacyAttemptKey): string {
  return `xds.upstream_host_metadata.filter_metadata['${METADATA_NAMESPACE}'].${key}`;
}

/**
 * How an AI member's facts reach the extension: 'packed', one facts string (this release), or
 * 'legacy', one metadata key and CEL attribute per fact, which an extension of the release
 * before needs. Decided per data plane outside the Envoy stage (from what its Envoys say they
 * read, src/xds/attempt-forms.ts); an input of the stage like its other options.
 */
export type AttemptFactsForm = 'packed' | 'legacy';

/**
 * Present in an attempt's attributes only when Envoy's connection pool had a connection ready for
 * the picked host as the attempt began (set in the upstream request's onPoolReady). Without one,
 * the upstream filters run while the connection is still being made, and a stand-in answer then
 * crashes Envoy 1.40 (src/ai-extension/README.md, "Standing in for the upstream").
 */
export const CONNECTION_READY_ATTRIBUTE = 'upstream.cx_pool_ready_duration';

/** Where Envoy puts the evaluated request_attributes in ProcessingRequest.attributes. */
export const EXT_PROC_ATTRIBUTES = 'envoy.filters.http.ext_proc';

/** How long Envoy waits for each answer of the extension before failing the attempt. */
const MESSAGE_TIMEOUT = '2s';
/**
 * Longest wait the extension may ask for (override_message_timeout) while it holds an answer's
 * headers back until the first content token: the longest firstTokenTimeout plus a margin.
 */
export const MAX_FIRST_TOKEN_TIMEOUT_MS = 30 * 60_000;
const MAX_MESSAGE_TIMEOUT = '1860s';
export { ABANDONED_HEADER, SERVICE_ACCOUNT_INDEX, SERVICE_ACCOUNT_SUFFIX } from '../ir/model.js';
/** Below nghttp2's stream-reset burst (1000) with a wide margin; see aiExtensionCluster. */
const MAX_STREAMS_PER_CONNECTION = 500;

/** Response code details of a failed ext_proc stream start with this (Envoy 1.40). */
const EXT_PROC_ERROR_DETAILS = 'ext_proc_error';

export const AI_EXTENSION_UNAVAILABLE =
  'Switchyard AI extension is unavailable: the request was not sent to any provider. Check that `switchyard ai-extension` (or `switchyard serve`) is running and reachable from Envoy.';

/**
 * The largest request body the buffer ahead of the extension takes; above it Envoy answers 413
 * itself. Twice the AI routes' body limit, so a body just over that limit still reaches the
 * extension, which answers its 413 in OpenAI's error shape; and within the extension's gRPC
 * message limit (64 MiB), since the body goes to it in one message.
 */
export const REQUEST_BODY_BUFFER_BYTES = 2 * DEFAULT_AI_REQUEST_BODY_LIMIT;

/**
 * The upstream filters of an AI cluster before envoy.filters.http.upstream_codec. In the packed
 * form a buffer comes first: an HTTP/1.1 client's body reaches Envoy as its data and then its end,
 * which the ext_proc filter (full duplex) sends as two messages; buffered, the body reaches it
 * whole and goes in one message flagged end_of_stream, one message less per attempt (and the
 * extension, which answers the request headers only once the whole body is in, waits no longer:
 * the headers come to it with the body). The legacy form stays byte for byte the release before's.
 */
export function aiExtensionFilters(form: AttemptFactsForm = 'packed'): JsonObject[] {
  return form === 'packed' ? [requestBodyBuffer(), aiExtensionFilter(form)] : [aiExtensionFilter(form)];
}

function requestBodyBuffer(): JsonObject {
  return { name: 'envoy.filters.http.buffer', typed_config: { '@type': ANY.buffer, max_request_bytes: REQUEST_BODY_BUFFER_BYTES } };
}

/** Only our namespace: nothing else the extension might send becomes dynamic metadata. */
const ATTEMPT_MEMBER_METADATA: JsonObject = { receiving_namespaces: { untyped: [METADATA_NAMESPACE] } };

/** The upstream ext_proc filter of an AI cluster (goes before envoy.filters.http.upstream_codec). */
export function aiExtensionFilter(form: AttemptFactsForm = 'packed'): JsonObject {
  return {
    name: 'envoy.filters.http.ext_proc',
    typed_config: {
      '@type': ANY.extProc,
      // envoy_grpc sends the cluster name as :authority by default, and Node's HTTP/2 server resets
      // a stream whose :authority holds a "/" (PROTOCOL_ERROR).
      grpc_service: { envoy_grpc: { cluster_name: AI_EXTENSION_CLUSTER, authority: 'switchyard-ai-extension' } },
      // Without the extension no attempt carries a credential: fail rather than call a provider.
      failure_mode_allow: false,
      processing_mode: {
        request_header_mode: 'SEND',
        // The body is sent along with the headers instead of after their answer: one round trip
        // less on every request. The extension answers the headers once the body is in.
        request_body_mode: 'FULL_DUPLEX_STREAMED',
        // Envoy 1.40 requires it with a full-duplex request body.
        request_trailer_mode: 'SEND',
        response_header_mode: 'SEND',
        // Chunk by chunk: streamed answers (SSE) must never wait for the whole body.
        response_body_mode: 'STREAMED',
        response_trailer_mode: 'SKIP',
      },
      // The legacy form asks for the facts string too (last, after the previous release's list,
      // which an older extension reads by name): while a data plane changes form, Envoy can
      // pair this filter with endpoints of the other form for a moment (legacyMemberFacts,
      // src/envoy/clusters.ts), and the facts string is what both forms' endpoints carry.
      request_attributes: form === 'packed' ? [ATTEMPT_FACTS_ATTRIBUTE, CONNECTION_READY_ATTRIBUTE] : [...LEGACY_ATTEMPT_KEYS.map(legacyAttemptAttribute), CONNECTION_READY_ATTRIBUTE, ATTEMPT_FACTS_ATTRIBUTE],
      // The extension names each attempt's member in the request's dynamic metadata, where the
      // access log and the request span read it (src/envoy/access-log.ts): the endpoint carries
      // these facts once, in its facts string. The legacy form has none (the previous release's
      // filter but for the facts string); its endpoints still carry them as keys of their own.
      ...(form === 'packed' ? { metadata_options: ATTEMPT_MEMBER_METADATA } : {}),
      // :authority follows the member; ext_proc ignores changes to it otherwise.
      mutation_rules: { allow_all_routing: true },
      message_timeout: MESSAGE_TIMEOUT,
      max_message_timeout: MAX_MESSAGE_TIMEOUT,
      // Body chunks reach the extension while it holds the headers back (first-token deadline).
      send_body_without_waiting_for_header_response: true,
      // Full duplex drops content-length otherwise, and the provider would get the body chunked:
      // the extension sets the length of the body it sends, in its answer to the headers.
      allow_content_length_header: true,
      stat_prefix: 'switchyard_ai',
    },
  };
}

/** The cluster through which Envoy reaches the extension (gRPC, so HTTP/2). */
export function aiExtensionCluster(opts: EnvoyOptions): EnvoyResource {
  const target = opts.aiExtension;
  const byName = 'host' in target && isIP(target.host) === 0;
  return {
    '@type': TypeUrl.cluster,
    name: AI_EXTENSION_CLUSTER,
    type: byName ? 'STRICT_DNS' : 'STATIC',
    ...(byName ? { dns_lookup_family: 'V4_PREFERRED' } : {}),
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: AI_EXTENSION_CLUSTER,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: aiExtensionEnvoyAddress(target) } }] }],
    },
    // Every attempt in flight on an AI cluster holds one stream: the default 1024 would cap them.
    circuit_breakers: { thresholds: [{ priority: 'DEFAULT', max_requests: 1_000_000, max_pending_requests: 1_000_000, max_connections: 1_000 }] },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': ANY.httpProtocolOptions,
        explicit_http_config: { http2_protocol_options: { connection_keepalive: { interval: '15s', timeout: '5s' } } },
        // Envoy ends every ext_proc stream with RST_STREAM, and Node's HTTP/2 server (nghttp2's
        // rapid-reset guard: a burst of 1000, then 33 a second) drops a connection that sends
        // more: at 100 attempts a second the extension cut Envoy off every ~15 s, failing the
        // attempts in flight. A fresh connection every 500 streams stays far below the burst.
        common_http_protocol_options: { max_requests_per_connection: MAX_STREAMS_PER_CONNECTION },
      },
    },
  };
}

/** The extension's address as an Envoy core.v3.Address: a `pipe` for a Unix socket. */
export function aiExtensionEnvoyAddress(target: AiExtensionAddress): JsonObject {
  return 'socket' in target ? { pipe: { path: target.socket } } : { socket_address: { address: target.host, port_value: target.port } };
}

/**
 * A failed extension stream ends in a local reply from the upstream filter; this maps it to a 503
 * whose body (OpenAI's error shape, which OpenAI SDKs print) says what is wrong.
 */
export function aiExtensionReplyMapper(): JsonObject {
  return {
    filter: {
      extension_filter: {
        name: 'envoy.access_loggers.extension_filters.cel',
        typed_config: { '@type': ANY.celFilter, expression: `response.code_details.startsWith('${EXT_PROC_ERROR_DETAILS}')` },
      },
    },
    status_code: 503,
    body: { inline_string: AI_EXTENSION_UNAVAILABLE },
    body_format_override: {
      json_format: { error: { message: '%LOCAL_REPLY_BODY%', type: 'ai_extension_unavailable', code: 'ai_extension_unavailable' } },
    },
  };
}
