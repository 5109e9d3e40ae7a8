import { METADATA_NAMESPACE } from './names.js';
import type { AccessLogFormat } from '../api/gateway.js';
import type { EnvoyOptions } from './options.js';
import type { JsonObject } from './resources.js';

export { ACCESS_LOG_FORMATS, type AccessLogFormat } from '../api/gateway.js';

const member = (key: string): string => `%UPSTREAM_METADATA(${METADATA_NAMESPACE}:${key})%`;

/**
 * One JSON line per request on Envoy's stdout: what a user needs to tell which member answered
 * after failover and why the others did not. Upstream values (host, metadata, failure reason) are
 * the final attempt's (Envoy 1.40's UPSTREAM_HOSTS_ATTEMPTED also names only the final host).
 * No request header that can carry a key is logged (Authorization, api-key, x-api-key, cookies),
 * and the path is logged without its query, which clients sometimes use for keys (`?key=`).
 */
export const ACCESS_LOG_FIELDS: Readonly<Record<string, string>> = {
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
  backend: member('backend'),
  member: member('member'),
  priority: member('priority'),
  provider: member('provider'),
  model: member('model'),
  upstream_transport_failure_reason: '%UPSTREAM_TRANSPORT_FAILURE_REASON%',
  duration_ms: '%DURATION%',
  response_duration_ms: '%RESPONSE_DURATION%',
  bytes_received: '%BYTES_RECEIVED%',
  bytes_sent: '%BYTES_SENT%',
  request_id: '%REQ(X-REQUEST-ID)%',
  user_agent: '%REQ(USER-AGENT)%',
  downstream_remote_address: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%',
};

const STDOUT_ACCESS_LOG = 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog';

/**
 * The `access_log` of a Gateway listener's HTTP connection manager: its Gateway's choice
 * (annotation), else the command's; empty when turned off.
 */
export function listenerAccessLog(l: { accessLog?: AccessLogFormat }, opts: Pick<EnvoyOptions, 'accessLog'>): JsonObject[] {
  if ((l.accessLog ?? opts.accessLog) === 'off') return [];
  return [
    {
      name: 'envoy.access_loggers.stdout',
      typed_config: { '@type': STDOUT_ACCESS_LOG, log_format: { json_format: { ...ACCESS_LOG_FIELDS } } },
    },
  ];
}
