import { isIP } from 'node:net';
import { REGEX_PROGRAM_SIZE_LIMIT } from '../api/httproute.js';
import type { JsonObject } from './resources.js';

/** The static cluster through which Envoy reaches Switchyard's ADS server. */
export const XDS_CLUSTER_NAME = 'switchyard-xds';

export interface BootstrapOptions {
  /** Where Switchyard's xDS server listens, as seen from Envoy. */
  xds: { host: string; port: number };
  /** Envoy's node id; the xDS server keys per-node state (ACK/NACK, Programmed) by it. */
  nodeId: string;
  /** Envoy's node cluster (the fleet this Envoy belongs to). */
  nodeCluster?: string;
  adminPort: number;
  /** Loopback by default: the admin API can stop Envoy and dump its config. */
  adminHost?: string;
  /** Incremental (delta) xDS instead of state-of-the-world. */
  delta?: boolean;
  /**
   * Reach the controller over TLS: files as Envoy sees them. The controller is verified with
   * `caFile` and must be named by `xds.host`; `certFile`/`keyFile` are Envoy's client certificate.
   */
  xdsTls?: { caFile: string; certFile: string; keyFile: string };
  /**
   * Report per-endpoint load to the controller over LRS (default true): what Backend status
   * reports as each member's requests and errors, and its Degraded condition.
   */
  loadReporting?: boolean;
}

export const DEFAULT_NODE_CLUSTER = 'switchyard';

/**
 * The Envoy v3 bootstrap (proto3 JSON) that connects a stock Envoy to Switchyard: every
 * Listener and Cluster arrives over one ADS stream; only the route to the controller is static.
 */
export function buildBootstrap(opts: BootstrapOptions): JsonObject {
  if (opts.nodeId === '') throw new Error('bootstrap: nodeId must not be empty (Envoy rejects an empty node.id with ADS)');
  assertPort('xds.port', opts.xds.port);
  assertPort('adminPort', opts.adminPort, true);

  const adsSource = { ads: {}, resource_api_version: 'V3' };
  return {
    node: { id: opts.nodeId, cluster: opts.nodeCluster ?? DEFAULT_NODE_CLUSTER },
    admin: {
      address: socketAddress(opts.adminHost ?? '127.0.0.1', opts.adminPort),
    },
    dynamic_resources: {
      ads_config: {
        api_type: opts.delta === true ? 'DELTA_GRPC' : 'GRPC',
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER_NAME } }],
        // The server remembers the node per stream, so later requests need not repeat it.
        set_node_on_first_message_only: true,
      },
      lds_config: adsSource,
      cds_config: adsSource,
    },
    ...(opts.loadReporting === false
      ? {}
      : {
          cluster_manager: {
            load_stats_config: {
              api_type: 'GRPC',
              transport_api_version: 'V3',
              grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER_NAME } }],
              set_node_on_first_message_only: true,
            },
          },
        }),
    static_resources: {
      clusters: [xdsCluster(opts.xds.host, opts.xds.port, opts.xdsTls)],
    },
    // Without an admin layer Envoy warns at start and /runtime_modify is refused; tests use it.
    layered_runtime: {
      layers: [
        // The translator refuses regexes above this RE2 program size; Envoy's default (100) is
        // lower than a 64-character token pattern needs. See REGEX_PROGRAM_SIZE_LIMIT.
        { name: 'static', static_layer: { 're2.max_program_size.error_level': REGEX_PROGRAM_SIZE_LIMIT } },
        { name: 'admin', admin_layer: {} },
      ],
    },
  };
}

function xdsCluster(host: string, port: number, tls: BootstrapOptions['xdsTls']): JsonObject {
  const isAddress = isIP(host) !== 0;
  return {
    name: XDS_CLUSTER_NAME,
    // A hostname (a Kubernetes Service) must be re-resolved when the controller moves.
    type: isAddress ? 'STATIC' : 'STRICT_DNS',
    ...(isAddress ? {} : { dns_lookup_family: 'V4_PREFERRED' }),
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: XDS_CLUSTER_NAME,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(host, port) } }] }],
    },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: {
          http2_protocol_options: {
            // An idle ADS stream behind a NAT or a dead controller pod is otherwise never noticed.
            connection_keepalive: { interval: '30s', timeout: '5s' },
          },
        },
      },
    },
    upstream_connection_options: {
      tcp_keepalive: { keepalive_time: 30, keepalive_interval: 5, keepalive_probes: 3 },
    },
    ...(tls ? { transport_socket: xdsTransportSocket(host, isAddress, tls) } : {}),
  };
}

function xdsTransportSocket(host: string, isAddress: boolean, tls: NonNullable<BootstrapOptions['xdsTls']>): JsonObject {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
      // SNI carries a name, never an address.
      ...(isAddress ? {} : { sni: host }),
      common_tls_context: {
        tls_certificates: [{ certificate_chain: { filename: tls.certFile }, private_key: { filename: tls.keyFile } }],
        validation_context: {
          trusted_ca: { filename: tls.caFile },
          // As a gRPC client does: the certificate must name the address Envoy dials.
          match_typed_subject_alt_names: [{ san_type: isAddress ? 'IP_ADDRESS' : 'DNS', matcher: { exact: host } }],
        },
      },
    },
  };
}

function socketAddress(host: string, port: number): JsonObject {
  return { socket_address: { address: host, port_value: port } };
}

function assertPort(field: string, port: number, allowZero = false): void {
  const min = allowZero ? 0 : 1;
  if (!Number.isInteger(port) || port < min || port > 65535) {
    throw new Error(`bootstrap: ${field} must be an integer port in ${min}..65535, got ${String(port)}`);
  }
}
