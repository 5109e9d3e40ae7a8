import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { messageType } from '../envoy/proto.js';

/**
 * The load reporting service (LRS, envoy.service.load_stats.v3): each Envoy opens one stream,
 * names its node, and from then on reports, every `load_reporting_interval`, what it sent to each
 * cluster's endpoints since its previous report. This module only reads the reports; what they
 * mean for a Backend is decided in src/status/fleet-health.ts.
 */

/** What one endpoint (one resolved address of a member) did during one report interval. */
export interface EndpointLoad {
  /** `ip:port` as Envoy resolved it. */
  readonly address: string;
  readonly succeeded: number;
  /** 5xx answers and failed attempts (connect failure, reset, timeout) charged to the endpoint. */
  readonly failed: number;
  readonly issued: number;
}

export interface LocalityLoad {
  /** Envoy priority level (our priority pools, src/envoy/clusters.ts). */
  readonly priority: number;
  readonly subZone: string;
  readonly succeeded: number;
  readonly failed: number;
  readonly issued: number;
  readonly endpoints: readonly EndpointLoad[];
}

export interface ClusterLoad {
  readonly cluster: string;
  /** The interval Envoy measured; the figures above are counts over it. */
  readonly intervalMs: number;
  readonly dropped: number;
  readonly localities: readonly LocalityLoad[];
}

export interface LoadReport {
  /**
   * The reporting Envoy's node id. Keyed by it, not trusted beyond it: with mTLS the stream's
   * peer identity should be checked against it before the report counts (not done here yet).
   */
  readonly nodeId: string;
  readonly clusters: readonly ClusterLoad[];
}

export interface LoadReportingOptions {
  /** How often each Envoy reports; shorter makes health follow faster, at a small cost per Envoy. */
  intervalMs: number;
  onReport: (report: LoadReport) => void;
  logger?: Logger;
}

const SERVICE = '/envoy.service.load_stats.v3.LoadReportingService';
const REQUEST = 'envoy.service.load_stats.v3.LoadStatsRequest';
const RESPONSE = 'envoy.service.load_stats.v3.LoadStatsResponse';

type Fields = { [key: string]: unknown };
type LrsCall = grpc.ServerDuplexStream<Fields, Buffer>;

function isFields(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function list(value: unknown): Fields[] {
  return Array.isArray(value) ? value.filter(isFields) : [];
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** uint64 counters arrive as strings (longs: String); a report interval never overflows a double. */
function count(value: unknown): number {
  const n = typeof value === 'string' ? Number(value) : typeof value === 'number' ? value : 0;
  return Number.isFinite(n) && n > 0 ? n : 0;
}

function durationMs(value: unknown): number {
  if (!isFields(value)) return 0;
  return count(value['seconds']) * 1000 + Math.round(count(value['nanos']) / 1e6);
}

function address(value: unknown): string {
  const socket = isFields(value) ? value['socket_address'] : undefined;
  if (!isFields(socket)) return '';
  const host = text(socket['address']);
  const port = count(socket['port_value']);
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Decodes a LoadStatsRequest into the figures status needs; unknown fields are ignored. */
export function decodeLoadStatsRequest(bytes: Uint8Array): { nodeId: string | undefined; clusters: ClusterLoad[] } {
  const type = messageType(REQUEST);
  const message = type.toObject(type.decode(bytes), { longs: String, enums: String, defaults: false });
  const node = message['node'];
  const clusters = list(message['cluster_stats']).map((c): ClusterLoad => ({
    cluster: text(c['cluster_name']),
    intervalMs: durationMs(c['load_report_interval']),
    dropped: count(c['total_dropped_requests']),
    localities: list(c['upstream_locality_stats']).map((l): LocalityLoad => ({
      priority: count(l['priority']),
      subZone: isFields(l['locality']) ? text(l['locality']['sub_zone']) : '',
      succeeded: count(l['total_successful_requests']),
      failed: count(l['total_error_requests']),
      issued: count(l['total_issued_requests']),
      endpoints: list(l['upstream_endpoint_stats']).map((e): EndpointLoad => ({
        address: address(e['address']),
        succeeded: count(e['total_successful_requests']),
        failed: count(e['total_error_requests']),
        issued: count(e['total_issued_requests']),
      })),
    })),
  }));
  return { nodeId: isFields(node) ? text(node['id']) : undefined, clusters };
}

/** The one response each stream gets: report every cluster, per endpoint, at this interval. */
export function encodeLoadStatsResponse(intervalMs: number): Buffer {
  const type = messageType(RESPONSE);
  const message = type.fromObject({
    send_all_clusters: true,
    report_endpoint_granularity: true,
    load_reporting_interval: { seconds: Math.floor(intervalMs / 1000), nanos: (intervalMs % 1000) * 1e6 },
  });
  return Buffer.from(type.encode(message).finish());
}

/** A gRPC service definition and implementation, to add to the xDS server's gRPC server. */
export interface GrpcService {
  readonly definition: grpc.ServiceDefinition;
  readonly implementation: grpc.UntypedServiceImplementation;
}

/** LRS as a gRPC service; each report is handed to `onReport` with the stream's node id. */
export function loadReportingService(opts: LoadReportingOptions): GrpcService {
  if (!Number.isInteger(opts.intervalMs) || opts.intervalMs < 100) throw new Error(`load reporting: intervalMs must be an integer of at least 100, got ${String(opts.intervalMs)}`);
  const logger = opts.logger ?? pino({ level: 'silent' });
  const response = encodeLoadStatsResponse(opts.intervalMs);
  const definition: grpc.ServiceDefinition = {
    StreamLoadStats: {
      path: `${SERVICE}/StreamLoadStats`,
      requestStream: true,
      responseStream: true,
      requestSerialize: (): Buffer => {
        throw new Error('the LRS server never sends requests');
      },
      // Decoded in the handler, so that an unreadable report fails its stream with a reason.
      requestDeserialize: (bytes: Buffer): Buffer => bytes,
      responseSerialize: (message: Buffer): Buffer => message,
      responseDeserialize: (bytes: Buffer): Buffer => bytes,
      originalName: 'streamLoadStats',
    },
  };
  const open = (call: grpc.ServerDuplexStream<Buffer, Buffer>): void => {
    let nodeId: string | undefined;
    call.on('data', (bytes: Buffer) => {
      let decoded: ReturnType<typeof decodeLoadStatsRequest>;
      try {
        decoded = decodeLoadStatsRequest(bytes);
      } catch (err) {
        const details = `LoadStatsRequest could not be decoded (${err instanceof Error ? err.message : String(err)}); send a serialized envoy.service.load_stats.v3.LoadStatsRequest`;
        logger.warn({ node: nodeId, reason: details }, 'lrs: undecodable report; closing the stream');
        call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details } satisfies Partial<grpc.StatusObject>);
        return;
      }
      if (nodeId === undefined) {
        // Envoy names its node in the first message of the stream only.
        if (decoded.nodeId === undefined || decoded.nodeId === '') {
          call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'the first LoadStatsRequest of a stream must carry node.id' } satisfies Partial<grpc.StatusObject>);
          return;
        }
        nodeId = decoded.nodeId;
        logger.debug({ node: nodeId }, 'lrs: Envoy reports load');
        call.write(response);
      }
      if (decoded.clusters.length > 0) {
        try {
          opts.onReport({ nodeId, clusters: decoded.clusters });
        } catch (err) {
          logger.error({ err, node: nodeId }, 'lrs: failed to record a report');
        }
      }
    });
    call.on('end', () => call.end());
    call.on('error', () => undefined);
  };
  return { definition, implementation: { StreamLoadStats: open } };
}
