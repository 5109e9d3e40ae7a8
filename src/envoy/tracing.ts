import { isIP } from 'node:net';
import { ANY, METADATA_NAMESPACE } from './names.js';
import type { EnvoyOptions } from './options.js';
import { TypeUrl, type EnvoyResource, type JsonObject } from './resources.js';

/**
 * OpenTelemetry tracing of every Gateway listener: Envoy's own tracer (one server span per
 * request, one client span per attempt) exporting OTLP over gRPC to the collector named by
 * `--otlp-endpoint`, through a cluster of its own. Envoy propagates W3C `traceparent`, so the
 * AI extension's per-attempt spans join the same trace (src/ai-extension/tracing.ts).
 */

export const OTLP_CLUSTER = 'switchyard/otlp';

/** Where OTLP/gRPC goes: a collector (or any OTLP receiver) address. */
export interface OtlpEndpoint {
  host: string;
  port: number;
  tls: boolean;
}

/** The service name Envoy's spans carry (resource attribute service.name). */
export const ENVOY_SERVICE_NAME = 'switchyard-gateway';

/**
 * `http://host:port` (plaintext) or `https://host:port` (TLS, verified against the trusted CA
 * bundle); the port defaults to OTLP/gRPC's 4317. An error string names the flag and the fix.
 */
export function parseOtlpEndpoint(value: string, flag = '--otlp-endpoint'): OtlpEndpoint | { error: string } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { error: `${flag} "${value}" is not a URL; give the OTLP/gRPC receiver as http://HOST:4317 (or https://...)` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { error: `${flag} "${value}": the scheme must be http or https (OTLP over gRPC), not ${url.protocol.replace(/:$/, '')}` };
  }
  if (url.pathname !== '/' && url.pathname !== '') {
    return { error: `${flag} "${value}": OTLP/gRPC takes no path; give only http://HOST:PORT` };
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port: url.port === '' ? 4317 : Number(url.port), tls: url.protocol === 'https:' };
}

/** The endpoint as --otlp-endpoint takes it (to hand it to another process). */
export function otlpUrl(e: OtlpEndpoint): string {
  return `${e.tls ? 'https' : 'http'}://${e.host.includes(':') ? `[${e.host}]` : e.host}:${e.port}`;
}

/** HttpConnectionManager.tracing of every Gateway listener when tracing is configured. */
export function listenerTracing(opts: Pick<EnvoyOptions, 'otlp'>): JsonObject | undefined {
  if (opts.otlp === undefined) return undefined;
  return {
    provider: {
      name: 'envoy.tracers.opentelemetry',
      typed_config: {
        '@type': ANY.openTelemetryTracer,
        // envoy_grpc sends the cluster name as :authority by default; a "/" in it is refused by
        // some gRPC servers (Node's among them).
        grpc_service: { envoy_grpc: { cluster_name: OTLP_CLUSTER, authority: opts.otlp.host } },
        service_name: ENVOY_SERVICE_NAME,
      },
    },
    // One span per attempt besides the request's: a failover shows as sibling attempt spans,
    // and the traceparent each attempt carries names its own span.
    spawn_upstream_span: true,
    // The member that gave the client its answer: an AI request's as its extension named it in
    // the dynamic metadata (the last attempt's), any other's from the final host's endpoint
    // metadata (src/envoy/access-log.ts). A tag takes one source, and a second tag of the same
    // name is ignored (seen with Envoy 1.40), so one value reads both: a fact absent from one is
    // the empty string, and a tag whose value is empty is not set.
    custom_tags: FINAL_MEMBER_TAGS.map(([tag, key]) => ({
      tag,
      value: `%DYNAMIC_METADATA(${METADATA_NAMESPACE}:${key})%%UPSTREAM_METADATA(${METADATA_NAMESPACE}:${key})%`,
    })),
  };
}

/** Tags of every Envoy span from the picked member's facts (translate/backends.ts). */
const FINAL_MEMBER_TAGS: readonly (readonly [string, string])[] = [
  ['switchyard.backend', 'backend'],
  ['switchyard.member', 'member'],
  ['switchyard.priority', 'priority'],
  ['switchyard.provider', 'provider'],
  ['gen_ai.request.model', 'model'],
];

/** The cluster through which Envoy reaches the OTLP receiver (gRPC, so HTTP/2). */
export function otlpCluster(endpoint: OtlpEndpoint, opts: Pick<EnvoyOptions, 'trustedCaFile'>): EnvoyResource {
  const isAddress = isIP(endpoint.host) !== 0;
  return {
    '@type': TypeUrl.cluster,
    name: OTLP_CLUSTER,
    type: isAddress ? 'STATIC' : 'STRICT_DNS',
    ...(isAddress ? {} : { dns_lookup_family: 'V4_PREFERRED' }),
    connect_timeout: '2s',
    load_assignment: {
      cluster_name: OTLP_CLUSTER,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: endpoint.host, port_value: endpoint.port } } } }] }],
    },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': ANY.httpProtocolOptions,
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
    ...(endpoint.tls
      ? {
          transport_socket: {
            name: 'envoy.transport_sockets.tls',
            typed_config: {
              '@type': ANY.upstreamTls,
              ...(isAddress ? {} : { sni: endpoint.host }),
              common_tls_context: {
                alpn_protocols: ['h2'],
                validation_context: {
                  trusted_ca: { filename: opts.trustedCaFile },
                  ...(isAddress ? {} : { match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: endpoint.host } }] }),
                },
              },
            },
          },
        }
      : {}),
  };
}
