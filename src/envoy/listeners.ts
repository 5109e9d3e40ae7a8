import type { ListenerIR } from '../ir/model.js';
import { listenerAccessLog } from './access-log.js';
import { aiExtensionReplyMapper } from './ai-extension.js';
import { statefulSessionFilter } from './ai-warmup-routes.js';
import { modelHeaderFilters, modelHeaderRemoval, modelRoutingBufferLimit, unknownModelReply, usesModelRouting } from './model-routing.js';
import type { BodyLimits } from './routes.js';
import { ADS_CONFIG_SOURCE, ANY, statPrefix } from './names.js';
import type { EnvoyOptions } from './options.js';
import { TypeUrl, type EnvoyResource, type JsonObject } from './resources.js';
import { listenerTracing } from './tracing.js';

/** What the listeners need to know about the rest of the configuration. */
export interface ListenerContext {
  /** Some cluster goes through the AI extension, whose failures need a readable local reply. */
  aiExtension: boolean;
  /** Request body limits of AI clusters, by cluster name. */
  bodyLimits?: BodyLimits;
}

function httpConnectionManager(l: ListenerIR, opts: EnvoyOptions, ctx: ListenerContext): JsonObject {
  const accessLog = listenerAccessLog(l, opts);
  const tracing = listenerTracing(opts);
  const byModel = usesModelRouting(l);
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: {
      '@type': ANY.hcm,
      stat_prefix: statPrefix(l.name),
      codec_type: 'AUTO',
      rds: { route_config_name: l.name, config_source: { ...ADS_CONFIG_SOURCE } },
      ...(byModel ? { early_header_mutation_extensions: [modelHeaderRemoval()] } : {}),
      // suppress_envoy_headers: the router would tell each member which Host the previous attempt
      // went to (x-envoy-original-host) and expose timings; x-envoy-attempt-count stays (a route option).
      http_filters: [
        ...(byModel ? modelHeaderFilters() : []),
        // The warm-up routes pick the member of an attempt by a header (src/envoy/ai-warmup-routes.ts).
        ...(ctx.aiExtension ? [statefulSessionFilter()] : []),
        { name: 'envoy.filters.http.router', typed_config: { '@type': ANY.router, suppress_envoy_headers: true } },
      ],
      local_reply_config: { mappers: [...(ctx.aiExtension ? [aiExtensionReplyMapper()] : []), ...(byModel ? [unknownModelReply()] : []), noHealthyUpstreamReply()] },
      ...(accessLog.length > 0 ? { access_log: accessLog } : {}),
      ...(tracing !== undefined ? { tracing } : {}),
    },
  };
}

/** Where a listener binds: its Gateway's own address, or the common listener address. */
export function listenerBindAddress(l: ListenerIR, opts: EnvoyOptions): string {
  return opts.gatewayAddresses?.get(`${l.gateway.namespace}/${l.gateway.name}`) ?? opts.listenerAddress;
}

/**
 * Envoy's own "no healthy upstream" (response flag UH: the cluster has no usable host, e.g. no
 * member's host resolved) says nothing of which Backend or why. This names the cluster, which is
 * "backend/<namespace>/<name>", and where the cause is reported. JSON in OpenAI's error shape,
 * which the SDKs print.
 */
export function noHealthyUpstreamReply(): JsonObject {
  return {
    filter: { response_flag_filter: { flags: ['UH'] } },
    body_format_override: {
      json_format: {
        error: {
          message: 'no healthy upstream in %UPSTREAM_CLUSTER%: Envoy has no usable endpoint for any of its members (host not resolved, ejected, or unhealthy); the Backend\'s Degraded condition names the member and the cause: kubectl describe backend <name> -n <namespace>',
          type: 'no_healthy_upstream',
          code: 'no_healthy_upstream',
        },
      },
    },
  };
}

export function toEnvoyListener(l: ListenerIR, opts: EnvoyOptions, ctx: ListenerContext = { aiExtension: false }): EnvoyResource {
  const listener: EnvoyResource = {
    '@type': TypeUrl.listener,
    name: l.name,
    address: { socket_address: { address: listenerBindAddress(l, opts), port_value: l.port } },
    filter_chains: [],
  };
  const bufferLimit = modelRoutingBufferLimit(l, ctx.bodyLimits);
  if (bufferLimit !== undefined) listener.per_connection_buffer_limit_bytes = bufferLimit;
  if (l.protocol === 'HTTP') {
    listener.filter_chains = [{ filters: [httpConnectionManager(l, opts, ctx)] }];
    return listener;
  }
  listener.listener_filters = [{ name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': ANY.tlsInspector } }];
  listener.filter_chains = l.tls.map((t) => ({
    ...(t.serverNames.length > 0 ? { filter_chain_match: { server_names: [...t.serverNames] } } : {}),
    filters: [httpConnectionManager(l, opts, ctx)],
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': ANY.downstreamTls,
        common_tls_context: {
          alpn_protocols: ['h2', 'http/1.1'],
          tls_certificate_sds_secret_configs: t.certificates.map((name) => ({ name, sds_config: { ...ADS_CONFIG_SOURCE } })),
        },
      },
    },
  }));
  return listener;
}
