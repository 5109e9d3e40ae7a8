import { METADATA_NAMESPACE } from './names.js';
import type { AccessLogFormat } from '../api/gateway.js';
import type { EnvoyOptions } from './options.js';
import type { JsonObject } from './resources.js';

export { ACCESS_LOG_FORMATS, type AccessLogFormat } from '../api/gateway.js';

/** The facts that say which member answered, by their key in the switchyard.dev namespace. */
const MEMBER_FACTS = ['backend', 'member', 'priority', 'provider', 'model'] as const;
type MemberFact = (typeof MEMBER_FACTS)[number];

/** The picked host's endpoint metadata: a Static or Service member's, or an AI one's in the legacy form. */
const hostFact = (key: MemberFact): string => `%UPSTREAM_METADATA(${METADATA_NAMESPACE}:${key})%`;
/**
 * What the AI extension wrote for the attempt (src/ai-extension/ext-proc-codec.ts,
 * writeAttemptMember), the last attempt's in the end: an AI endpoint's metadata holds these facts
 * only inside its facts string, which a formatter cannot read.
 */
const attemptFact = (key: MemberFact): string => `%DYNAMIC_METADATA(${METADATA_NAMESPACE}:${key})%`;

/**
 * One JSON line per request on Envoy's stdout: what a user needs to tell which member answered
 * after failover and why the others did not. Upstream values (host, metadata, failure reason) are
 * the final attempt's (Envoy 1.40's UPSTREAM_HOSTS_ATTEMPTED also names only the final host).
 * No request header that can carry a key is logged (Authorization, api-key, x-api-key, cookies),
 * and the path is logged without its query, which clients sometimes use for keys (`?key=`).
 */
function accessLogFields(fact: (key: MemberFact) => string): Readonly<Record<string, string>> {
  return {
    start_time: '%START_TIME%',
    method: '%REQ(:METHOD)%',
    // The path before route rewrites (x-envoy-original-path), else the request's as sent upstream:
    // for an AI Backend, the final member's path (the AI extension rewrites it per attempt). No query.
    path: '%PATH(WQ:ORIG_OR_PATH)%',
    authority: '%REQ(:AUTHORITY)%',
    protocol: '%PROTOCOL%',
    response_code: '%RESPONSE_CODE%',
    response_code_details: '%RESPONSE_CODE_DETAILS%',
    response_flags: '%RESPONSE_FLAGS%',
    route_name: '%ROUTE_NAME%',
    upstream_cluster: '%UPSTREAM_CLUSTER%',
    upstream_host: '%UPSTREAM_HOST%',
    attempts: '%UPSTREAM_REQUEST_ATTEMPT_COUNT%',
    ...Object.fromEntries(MEMBER_FACTS.map((key) => [key, fact(key)])),
    upstream_transport_failure_reason: '%UPSTREAM_TRANSPORT_FAILURE_REASON%',
    duration_ms: '%DURATION%',
    response_duration_ms: '%RESPONSE_DURATION%',
    bytes_received: '%BYTES_RECEIVED%',
    bytes_sent: '%BYTES_SENT%',
    request_id: '%REQ(X-REQUEST-ID)%',
    user_agent: '%REQ(USER-AGENT)%',
    downstream_remote_address: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%',
  };
}

/** The line of a request no AI extension named a member for (Static, Service, legacy form, no attempt). */
export const ACCESS_LOG_FIELDS = accessLogFields(hostFact);
/** The line of a request an AI extension named its member for: the same fields, in the same order. */
export const AI_ACCESS_LOG_FIELDS = accessLogFields(attemptFact);

/**
 * Whether the AI extension named a member for the request (in its dynamic metadata). Envoy's
 * access log metadata filter ignores `invert` (seen with Envoy 1.40: both loggers wrote the line),
 * so the opposite filter matches the member's value against null, which a name never is, and
 * logs when the key is absent.
 */
const NAMED_BY_EXTENSION: JsonObject = { filter: METADATA_NAMESPACE, path: [{ key: 'member' }], value: { present_match: true } };
const NOT_NAMED_BY_EXTENSION: JsonObject = { filter: METADATA_NAMESPACE, path: [{ key: 'member' }], value: { null_match: {} } };

const STDOUT_ACCESS_LOG = 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog';

/**
 * The `access_log` of a Gateway listener's HTTP connection manager: its Gateway's choice
 * (annotation), else the command's; empty when turned off. Two loggers, exactly one of which
 * writes each request's line (their filters are each other's opposite): a JSON field takes one
 * formatter, and the member is in the dynamic metadata for an AI request but in the host's
 * metadata for the others.
 */
export function listenerAccessLog(l: { accessLog?: AccessLogFormat }, opts: Pick<EnvoyOptions, 'accessLog'>): JsonObject[] {
  if ((l.accessLog ?? opts.accessLog) === 'off') return [];
  return [
    {
      name: 'envoy.access_loggers.stdout',
      filter: { metadata_filter: { matcher: NAMED_BY_EXTENSION, match_if_key_not_found: false } },
      typed_config: { '@type': STDOUT_ACCESS_LOG, log_format: { json_format: { ...AI_ACCESS_LOG_FIELDS } } },
    },
    {
      name: 'envoy.access_loggers.stdout',
      filter: { metadata_filter: { matcher: NOT_NAMED_BY_EXTENSION, match_if_key_not_found: true } },
      typed_config: { '@type': STDOUT_ACCESS_LOG, log_format: { json_format: { ...ACCESS_LOG_FIELDS } } },
    },
  ];
}
