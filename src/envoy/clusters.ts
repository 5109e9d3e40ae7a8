import { toEnvoyDuration } from '../api/duration.js';
import type { ClusterIR, MemberIR, OutlierPlan } from '../ir/model.js';
import { plainMetadata } from '../ir/common-member.js';
import { aiExtensionFilters, type AttemptFactsForm } from './ai-extension.js';
import { ATTEMPT_FACTS_KEY, encodeAttemptFacts } from './attempt-facts.js';
import { hasMemberLimits, memberLimitsCheckTarget, memberLimitsHealthCheck } from './member-limits.js';
import { ADS_CONFIG_SOURCE, ANY, METADATA_NAMESPACE, TRANSPORT_SOCKET_MATCH } from './names.js';
import type { EnvoyOptions } from './options.js';
import { encodeOnce } from './proto.js';
import { TypeUrl, deepFrozen, type EnvoyResource, type JsonObject } from './resources.js';

/**
 * The endpoint metadata of a member. A Static member's is its IR metadata as it is. An AI
 * member's is every fact of the attempt in one string (src/envoy/attempt-facts.ts), and nothing
 * else: the access log and the trace tags read the member that answered (backend, member,
 * priority, provider, model) from the dynamic metadata the extension writes per attempt
 * (src/envoy/access-log.ts). Each fact also as a key of its own was a quarter of the encoded
 * ClusterLoadAssignments at 10,000 Backends.
 */
function memberFacts(m: MemberIR, ai: AttemptFactsForm | undefined): JsonObject {
  // The IR's own object, not a copy: the IR is never edited once built, and a copy per member was
  // a tenth of the endpoints' memory at 10,000 Backends.
  if (ai === undefined) return plainMetadata(m) as unknown as JsonObject;
  if (ai === 'legacy') return legacyMemberFacts(m);
  return { [ATTEMPT_FACTS_KEY]: encodeAttemptFacts(m.metadata) };
}

/**
 * An AI member's endpoint metadata as the release before the facts string wrote it (one key per
 * fact, the aliases as one JSON string): what that release's extension reads; and the facts
 * string too, which that extension never asks for. A data plane changes form by a Cluster and
 * its ClusterLoadAssignment, which Envoy applies apart (an EDS cluster's new endpoints can reach
 * the cluster being replaced, and a replacing one can warm with the assignment it had): Envoy 1.40
 * under load answered "attempt missing" 503s as a data plane flipped (test/e2e/ai-version-skew.test.ts).
 * With both here, and both attributes in the legacy filter, either filter reads either endpoint.
 */
function legacyMemberFacts(m: MemberIR): JsonObject {
  const attempt = encodeAttemptFacts(m.metadata);
  const metadata = plainMetadata(m);
  if (!('modelAliases' in metadata)) return { ...(metadata as unknown as JsonObject), [ATTEMPT_FACTS_KEY]: attempt };
  const { modelAliases, ...facts } = metadata;
  return { ...facts, ...(modelAliases ? { modelAliases: JSON.stringify(modelAliases) } : {}), [ATTEMPT_FACTS_KEY]: attempt } as JsonObject;
}

const TLS_MATCH: JsonObject = deepFrozen({ tls: true });

function lbEndpoint(m: MemberIR, ai: AttemptFactsForm | undefined, limitsCheck: EnvoyOptions | undefined): JsonObject {
  const metadata: JsonObject = { [METADATA_NAMESPACE]: memberFacts(m, ai) };
  if (m.tls) metadata[TRANSPORT_SOCKET_MATCH] = TLS_MATCH;
  // Keys in field-number order, here and in toClusterLoadAssignment: the encoder writes fields in
  // the order it meets them and sorts a message's fields when they come out of order, which was
  // 80,000 sorts and two fifths of the CPU of encoding 10,000 Backends' assignments (issue 9).
  return {
    endpoint: {
      address: { socket_address: { address: m.address, port_value: m.port } },
      ...(limitsCheck !== undefined ? { health_check_config: memberLimitsCheckTarget(m, limitsCheck) } : {}),
      // Envoy rewrites Host (auto_host_rewrite) and SNI (auto_host_sni) from this per attempt.
      hostname: m.hostname,
    },
    metadata: { filter_metadata: metadata },
    load_balancing_weight: m.weight,
  };
}

/** One locality object per priority level, shared by every cluster (levels are few). */
const LOCALITIES: JsonObject[] = [];

function localityOf(level: number): JsonObject {
  return (LOCALITIES[level] ??= deepFrozen({ sub_zone: `priority-${level}` }));
}

/**
 * `opts` is needed when a member has limits: their health checks go to the AI extension. `form`:
 * how an AI member's facts are written (AttemptFactsForm).
 */
export function toClusterLoadAssignment(c: ClusterIR, opts?: EnvoyOptions, form: AttemptFactsForm = 'packed'): EnvoyResource {
  const limitsCheck = hasMemberLimits(c) ? opts : undefined;
  if (hasMemberLimits(c) && opts === undefined) throw new Error(`cluster ${c.name}: members with limits need the AI extension's address`);
  return {
    '@type': TypeUrl.endpoint,
    cluster_name: c.name,
    endpoints: c.priorities.map((p) => ({
      locality: localityOf(p.level),
      lb_endpoints: p.members.map((m) => lbEndpoint(m, c.ai !== undefined ? form : undefined, limitsCheck)),
      priority: p.level,
    })),
  };
}

function outlierDetection(o: OutlierPlan): JsonObject {
  const out: JsonObject = {
    consecutive_5xx: o.consecutive5xx,
    consecutive_gateway_failure: o.consecutiveGatewayFailure,
    enforcing_consecutive_5xx: 100,
    // Envoy enforces gateway-failure ejection at 0% unless told otherwise.
    enforcing_consecutive_gateway_failure: 100,
    enforcing_success_rate: 0,
    interval: toEnvoyDuration(o.intervalMs),
    base_ejection_time: toEnvoyDuration(o.baseEjectionMs),
    max_ejection_percent: o.maxEjectionPercent,
    split_external_local_origin_errors: o.splitExternalLocalOriginErrors,
  };
  if (o.consecutiveLocalOriginFailure !== undefined) {
    out.consecutive_local_origin_failure = o.consecutiveLocalOriginFailure;
    out.enforcing_consecutive_local_origin_failure = 100;
  }
  if (o.maxEjectionMs !== undefined) out.max_ejection_time = toEnvoyDuration(o.maxEjectionMs);
  return out;
}

function upstreamTls(c: ClusterIR, opts: EnvoyOptions): JsonObject {
  const tls: JsonObject = { '@type': ANY.upstreamTls, common_tls_context: {} };
  if (!c.tls?.insecureSkipVerify) {
    tls.common_tls_context = { validation_context: { trusted_ca: { filename: opts.trustedCaFile } } };
  }
  if (c.tls?.sniOverride) {
    tls.sni = c.tls.sniOverride;
  } else {
    // auto_sni on the cluster is fixed before host selection; auto_host_sni follows each attempt's host.
    tls.auto_host_sni = true;
  }
  // Without a SAN check a trusted chain for any name passes; this checks the SNI actually sent, fixed or per host.
  if (!c.tls?.insecureSkipVerify) tls.auto_sni_san_validation = true;
  return tls;
}

/**
 * The upstream filters of every AI cluster: the same for all of them, so one object serves all.
 * Built per cluster it was three quarters of a cluster's JSON (10,000 AI Backends: about 30 MiB
 * kept while the configuration is served). Frozen: a resource is never edited after it is
 * built, and a shared part edited in place would change every cluster at once.
 */
function aiClusterProtocolOptions(form: AttemptFactsForm): JsonObject {
  return deepFrozen({
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': ANY.httpProtocolOptions,
      // What a cluster without these options speaks; only the filters are added.
      explicit_http_config: { http_protocol_options: {} },
      http_filters: [...aiExtensionFilters(form), { name: 'envoy.filters.http.upstream_codec', typed_config: { '@type': ANY.upstreamCodec } }],
    },
  });
}

const AI_CLUSTER_PROTOCOL_OPTIONS: Readonly<Record<AttemptFactsForm, JsonObject>> = {
  packed: aiClusterProtocolOptions('packed'),
  legacy: aiClusterProtocolOptions('legacy'),
};

// Most of an AI cluster's bytes (600 of 900): encoded once and copied into every AI cluster,
// where encoding them again for each was half the CPU of encoding 10,000 AI clusters (issue 9).
encodeOnce(
  'google.protobuf.Any',
  Object.values(AI_CLUSTER_PROTOCOL_OPTIONS).map((options) => options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'] as JsonObject),
);

// Parts equal in every cluster that has them, shared like AI_CLUSTER_PROTOCOL_OPTIONS.
const EDS_CLUSTER_CONFIG: JsonObject = deepFrozen({ eds_config: { ...ADS_CONFIG_SOURCE } });
const RETRY_CIRCUIT_BREAKERS: JsonObject = deepFrozen({ thresholds: [{ priority: 'DEFAULT', max_retries: 1024 }] });
const NO_MERGE_WINDOW: JsonObject = deepFrozen({ update_merge_window: '0s' });
const AI_PRECONNECT_POLICY: JsonObject = deepFrozen({ per_upstream_preconnect_ratio: 2 });

/** `form`: how an AI cluster's members' facts reach the extension (AttemptFactsForm). */
export function toEnvoyCluster(c: ClusterIR, opts: EnvoyOptions, form: AttemptFactsForm = 'packed'): EnvoyResource {
  const cluster: EnvoyResource = {
    '@type': TypeUrl.cluster,
    name: c.name,
    connect_timeout: toEnvoyDuration(c.connectTimeoutMs),
    lb_policy: 'ROUND_ROBIN',
    metadata: { filter_metadata: { [METADATA_NAMESPACE]: { [c.backend.kind === 'Service' ? 'service' : 'backend']: `${c.backend.namespace}/${c.backend.name}` } } },
  };
  if (c.discovery === 'eds') {
    cluster.type = 'EDS';
    cluster.eds_cluster_config = EDS_CLUSTER_CONFIG;
  } else {
    cluster.type = 'STRICT_DNS';
    cluster.dns_lookup_family = 'V4_PREFERRED';
    cluster.load_assignment = toClusterLoadAssignment(c, opts, form);
    delete (cluster.load_assignment as JsonObject)['@type'];
  }
  if (c.backend.kind !== 'Service') {
    // Envoy allows 3 retries in flight per cluster by default: with a pool down, the 4th
    // concurrent request would not fail over (upstream_rq_retry_overflow). A request retries one
    // attempt at a time, so its requests limit (Envoy's default, 1024) bounds retries already.
    cluster.circuit_breakers = RETRY_CIRCUIT_BREAKERS;
  }
  if (c.outlierDetection) {
    cluster.outlier_detection = outlierDetection(c.outlierDetection);
    // Envoy batches host-set changes for 1 s by default; an ejection that follows an un-ejection
    // inside that window reaches the workers late and a still-failing pool takes more attempts.
    cluster.common_lb_config = NO_MERGE_WINDOW;
  }
  if (c.ai) {
    // Upstream filters run once per attempt, after the host is picked: the extension adapts each
    // attempt to its member (src/ai-extension/README.md).
    cluster.typed_extension_protocol_options = AI_CLUSTER_PROTOCOL_OPTIONS[form];
    // The extension may stand in an answer only while the member has a connection ready (Envoy
    // 1.40 crashes otherwise), and a stand-in closes its HTTP/1.1 connection: each attempt opens
    // a spare one, so the member's next attempt finds it ready (src/ai-extension/README.md).
    cluster.preconnect_policy = AI_PRECONNECT_POLICY;
  }
  if (hasMemberLimits(c)) {
    // A member at its limit fails this check and Envoy stops picking it (src/envoy/member-limits.ts).
    cluster.health_checks = [memberLimitsHealthCheck()];
    // A member back under its limit (a new minute) would wait for the batched update otherwise:
    // seen with Envoy 1.40, the healthy flag was in /clusters while workers still skipped it.
    cluster.common_lb_config = NO_MERGE_WINDOW;
  }
  if (c.tls) {
    cluster.transport_socket_matches = [
      { name: 'tls', match: { tls: true }, transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: upstreamTls(c, opts) } },
    ];
  }
  return cluster;
}
