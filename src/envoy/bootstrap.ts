import { isIP } from 'node:net';
import { posix } from 'node:path';
import { REGEX_PROGRAM_SIZE_LIMIT } from '../api/httproute.js';
import { ATTEMPT_FACTS_FORMAT } from './attempt-facts.js';
import type { JsonObject } from './resources.js';

/** The static cluster through which Envoy reaches Switchyard's ADS server. */
export const XDS_CLUSTER_NAME = 'switchyard-xds';

export interface BootstrapOptions {
  /**
   * Where Switchyard's xDS server listens, as seen from Envoy: an address, or a Unix socket on
   * Envoy's host (what `serve` gives the Envoys it runs: no port to expose, no TLS to set up).
   */
  xds: { host: string; port: number } | { socket: string };
  /** Envoy's node id; the xDS server keys per-node state (ACK/NACK, Programmed) by it. */
  nodeId: string;
  /** Envoy's node cluster (the fleet this Envoy belongs to). */
  nodeCluster?: string;
  adminPort: number;
  /** Loopback by default: the admin API can stop Envoy and dump its config. */
  adminHost?: string;
  /**
   * The Gateway ("namespace/name") this Envoy serves: it then receives only that Gateway's
   * listeners, routes, clusters and certificates. Without it, it serves every Gateway.
   */
  gateway?: string;
  /** Incremental (delta) xDS instead of state-of-the-world. */
  delta?: boolean;
  /**
   * Reach the controller over TLS: files as Envoy sees them. The controller is verified with
   * `caFile` and must be named by `xds.host`; `certFile`/`keyFile` are Envoy's client certificate.
   */
  xdsTls?: XdsTlsFiles;
  /**
   * Report per-endpoint load to the controller over LRS (default true): what Backend status
   * reports as each member's requests and errors, and its Degraded condition.
   */
  loadReporting?: boolean;
  /**
   * A file where Envoy writes one JSON line per outlier ejection and un-ejection (a member's
   * cool-down), on Envoy's filesystem; followed by src/observability/outlier-events.ts.
   */
  outlierEventLog?: string;
}

export interface XdsTlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  /**
   * Where the two files of xdsTlsSdsFiles() are, as Envoy sees them: Envoy then reads the
   * certificate and CA through them (file-based SDS) and reads them again when their directory
   * changes, so a renewed certificate (a Kubernetes Secret volume swaps its `..data` link) is
   * used from the next connection on. Absent: read once, at start.
   */
  sdsDir?: string;
}

export const DEFAULT_NODE_CLUSTER = 'switchyard';

/** Node metadata key naming the Gateway an Envoy serves; the xDS server selects its view by it. */
export const GATEWAY_NODE_METADATA = 'switchyard.dev/gateway';

/**
 * Node metadata key by which an Envoy says its AI extension reads the member facts string, and in
 * which format (ATTEMPT_FACTS_FORMAT). Every bootstrap of this release carries it; the xDS
 * server serves a data plane the facts string only while every Envoy connected for it does, and
 * the previous release's per-key form otherwise (src/ai-extension/README.md, "Version skew").
 */
export const ATTEMPT_FACTS_NODE_METADATA = 'switchyard.dev/attempt-facts';

/** "namespace/name" with both parts non-empty, or an error message that says what is wrong. */
export function gatewayKeyProblem(key: string): string | undefined {
  const parts = key.split('/');
  if (parts.length === 2 && parts.every((p) => p !== '')) return undefined;
  return `a Gateway is named "namespace/name", got "${key}"`;
}

/**
 * The Envoy v3 bootstrap (proto3 JSON) that connects a stock Envoy to Switchyard: every
 * Listener and Cluster arrives over one ADS stream; only the route to the controller is static.
 */
export function buildBootstrap(opts: BootstrapOptions): JsonObject {
  if (opts.nodeId === '') throw new Error('bootstrap: nodeId must not be empty (Envoy rejects an empty node.id with ADS)');
  if ('port' in opts.xds) assertPort('xds.port', opts.xds.port);
  else if (opts.xds.socket === '') throw new Error('bootstrap: xds.socket must be a Unix socket path');
  assertPort('adminPort', opts.adminPort, true);
  const gatewayProblem = opts.gateway === undefined ? undefined : gatewayKeyProblem(opts.gateway);
  if (gatewayProblem !== undefined) throw new Error(`bootstrap: gateway: ${gatewayProblem}`);

  const adsSource = { ads: {}, resource_api_version: 'V3' };
  return {
    node: {
      id: opts.nodeId,
      cluster: opts.nodeCluster ?? DEFAULT_NODE_CLUSTER,
      metadata: { ...(opts.gateway !== undefined ? { [GATEWAY_NODE_METADATA]: opts.gateway } : {}), [ATTEMPT_FACTS_NODE_METADATA]: ATTEMPT_FACTS_FORMAT },
    },
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
    ...(opts.loadReporting === false && opts.outlierEventLog === undefined
      ? {}
      : {
          cluster_manager: {
            ...(opts.loadReporting === false
              ? {}
              : {
                  load_stats_config: {
                    api_type: 'GRPC',
                    transport_api_version: 'V3',
                    grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER_NAME } }],
                    set_node_on_first_message_only: true,
                  },
                }),
            ...(opts.outlierEventLog !== undefined ? { outlier_detection: { event_log_path: opts.outlierEventLog } } : {}),
          },
        }),
    static_resources: {
      clusters: ['socket' in opts.xds ? xdsSocketCluster(opts.xds.socket) : xdsCluster(opts.xds.host, opts.xds.port, opts.xdsTls)],
    },
    // Without an admin layer Envoy warns at start and /runtime_modify is refused; tests use it.
    layered_runtime: {
      layers: [
        // The translator refuses regexes above this RE2 program size; Envoy's default (100) is
        // lower than a 64-character token pattern needs. See REGEX_PROGRAM_SIZE_LIMIT.
        { name: 'static', static_layer: { 're2.max_program_size.error_level': REGEX_PROGRAM_SIZE_LIMIT, [EXT_PROC_GRACEFUL_CLOSE]: true } },
        { name: 'admin', admin_layer: {} },
      ],
    },
  };
}

/**
 * Envoy ends each ext_proc stream by half-closing it and waiting for the extension's status,
 * instead of resetting it (RST_STREAM INTERNAL_ERROR, one per attempt): Node turns every reset
 * into an Error with a stack, and its HTTP/2 server counts resets against its rapid-reset guard.
 * Envoy 1.40 crashed twice in CI with it on: a stand-in answered before Envoy's connection to the
 * member was ready, which crashes Envoy with the flag off too and which the extension no longer
 * gives (src/ai-extension/README.md, "Standing in for the upstream").
 */
export const EXT_PROC_GRACEFUL_CLOSE = 'envoy.reloadable_features.ext_proc_graceful_grpc_close';

/** A Unix socket on this host: no keepalive needed (a dead server closes it), no TLS (the directory's mode guards it). */
function xdsSocketCluster(path: string): JsonObject {
  return {
    name: XDS_CLUSTER_NAME,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: { cluster_name: XDS_CLUSTER_NAME, endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path } } } }] }] },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicit_http_config: { http2_protocol_options: {} },
      },
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

function xdsTransportSocket(host: string, isAddress: boolean, tls: XdsTlsFiles): JsonObject {
  // As a gRPC client does: the certificate must name the address Envoy dials.
  const names = { match_typed_subject_alt_names: [{ san_type: isAddress ? 'IP_ADDRESS' : 'DNS', matcher: { exact: host } }] };
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
      // SNI carries a name, never an address.
      ...(isAddress ? {} : { sni: host }),
      common_tls_context: tls.sdsDir === undefined ? {
        tls_certificates: [{ certificate_chain: { filename: tls.certFile }, private_key: { filename: tls.keyFile } }],
        validation_context: { trusted_ca: { filename: tls.caFile }, ...names },
      } : {
        tls_certificate_sds_secret_configs: [{ name: XDS_CLIENT_SECRET, sds_config: fileSource(tls.sdsDir, XDS_CLIENT_SECRET) }],
        combined_validation_context: {
          default_validation_context: names,
          validation_context_sds_secret_config: { name: XDS_CA_SECRET, sds_config: fileSource(tls.sdsDir, XDS_CA_SECRET) },
        },
      },
    },
  };
}

const XDS_CLIENT_SECRET = 'xds-client-certificate';
const XDS_CA_SECRET = 'xds-ca';

function fileSource(dir: string, secret: string): JsonObject {
  return { path_config_source: { path: posix.join(dir, `${secret}.json`) }, resource_api_version: 'V3' };
}

/**
 * The files of XdsTlsFiles.sdsDir, by file name: one SDS Secret each (Envoy wants exactly one
 * resource per file), naming the certificate files and the directory whose changes make Envoy
 * read them again (Envoy 1.40 watches file-based certificates only when SDS delivers them).
 */
export function xdsTlsSdsFiles(tls: XdsTlsFiles): Record<string, JsonObject> {
  const secret = (body: JsonObject): JsonObject => ({ resources: [{ '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret', ...body }] });
  return {
    [`${XDS_CLIENT_SECRET}.json`]: secret({
      name: XDS_CLIENT_SECRET,
      tls_certificate: { certificate_chain: { filename: tls.certFile }, private_key: { filename: tls.keyFile }, watched_directory: { path: posix.dirname(tls.certFile) } },
    }),
    [`${XDS_CA_SECRET}.json`]: secret({ name: XDS_CA_SECRET, validation_context: { trusted_ca: { filename: tls.caFile }, watched_directory: { path: posix.dirname(tls.caFile) } } }),
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
