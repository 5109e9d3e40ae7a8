import type { ClusterIR, MemberIR } from '../ir/model.js';
import { aiExtensionEnvoyAddress } from './ai-extension.js';
import type { EnvoyOptions } from './options.js';
import type { JsonObject } from './resources.js';

/**
 * Per-member limits in Envoy. An upstream filter cannot fail an attempt so that the router
 * retries it: its local replies go to the client (src/ai-extension/README.md, "Member limits").
 * So a member over its limit is taken out at host selection instead: the cluster health-checks
 * every member against the AI extension (grpc.health.v1 Check, its :authority naming the member
 * and its limits), the extension answers NOT_SERVING while the shared counts are at a limit, and Envoy
 * picks another member of the pool, or the next priority, without calling the limited one.
 */

/**
 * How often each Envoy asks about each member: a member can take requests for up to this long
 * after it reaches its limit (counted as overruns by the extension).
 */
export const MEMBER_LIMITS_CHECK_INTERVAL_MS = 250;

/** The member's limit identity: "r<rpm>.t<tpm>.<base64url of backend/member>" (a valid :authority). */
export function memberLimitsAuthority(m: MemberIR): string {
  const key = Buffer.from(`${m.metadata.backend}/${m.metadata.member}`).toString('base64url');
  return `r${m.metadata.requestsPerMinute ?? 0}.t${m.metadata.tokensPerMinute ?? 0}.${key}`;
}

export function hasMemberLimits(c: ClusterIR): boolean {
  return c.ai !== undefined && c.priorities.some((p) => p.members.some((m) => m.metadata.requestsPerMinute !== undefined || m.metadata.tokensPerMinute !== undefined));
}

/**
 * grpc.health.v1 Health/Check, spoken through an HTTP health check: Envoy 1.40 refuses a gRPC
 * health check on a cluster that is not HTTP/2 ("cluster must support HTTP/2 for gRPC
 * healthchecking"), and provider clusters speak HTTP/1.1. The extension is a gRPC server, so the
 * check is a gRPC call by hand: POST, content-type application/grpc, an empty request message
 * (a 5-byte frame) sent, and the answer's body must hold the SERVING message (00 00000002 0801);
 * NOT_SERVING (0802) fails the check.
 */
export function memberLimitsHealthCheck(): JsonObject {
  const interval = `${MEMBER_LIMITS_CHECK_INTERVAL_MS / 1000}s`;
  return {
    timeout: '1s',
    interval,
    // Idle clusters would be checked once a minute (Envoy's default): a limit would then be
    // noticed a minute late on the first requests after a pause.
    no_traffic_interval: interval,
    unhealthy_threshold: 1,
    healthy_threshold: 1,
    http_health_check: {
      path: '/grpc.health.v1.Health/Check',
      method: 'POST',
      codec_client_type: 'HTTP2',
      request_headers_to_add: [
        { header: { key: 'content-type', value: 'application/grpc' } },
        { header: { key: 'te', value: 'trailers' } },
      ],
      send: { text: '0000000000' },
      receive: [{ text: '00000000020801' }],
    },
  };
}

/**
 * Where Envoy health-checks a member: the extension (never the provider), with the member's
 * limit identity as :authority. Every member of a checked cluster gets one, limited or not.
 */
export function memberLimitsCheckTarget(m: MemberIR, opts: EnvoyOptions): JsonObject {
  // In field-number order, as the assignment around it (toClusterLoadAssignment).
  return {
    hostname: memberLimitsAuthority(m),
    address: aiExtensionEnvoyAddress(opts.aiExtension),
  };
}
