import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import protobuf from 'protobufjs';

/**
 * OTLP traces over gRPC (opentelemetry.proto.collector.trace.v1.TraceService/Export), written
 * for the few messages Switchyard sends: the OpenTelemetry SDK would bring a dozen packages for
 * one batch exporter. Field numbers are those of opentelemetry-proto v1 (trace/v1/trace.proto,
 * common/v1/common.proto, resource/v1/resource.proto, collector/trace/v1/trace_service.proto).
 */
const OTLP_TRACE_SCHEMA = `
syntax = "proto3";
package opentelemetry.proto;
message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
    ArrayValue array_value = 5;
    KeyValueList kvlist_value = 6;
    bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
message KeyValue { string key = 1; AnyValue value = 2; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; }
message Resource { repeated KeyValue attributes = 1; }
message Status { string message = 2; int32 code = 3; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  string name = 5;
  int32 kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  Status status = 15;
  fixed32 flags = 16;
}
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2; }
message ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
`;

export const OTLP_TRACE_EXPORT_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

/** OTLP's SpanKind values. */
export const SpanKind = { internal: 1, server: 2, client: 3 } as const;
/** OTLP's Status.code values. */
export const SpanStatusCode = { unset: 0, ok: 1, error: 2 } as const;

export type AttributeValue = string | number | boolean;

export interface SpanRecord {
  /** 16 bytes, hex. */
  traceId: string;
  /** 8 bytes, hex. */
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, AttributeValue>;
  status?: { code: number; message?: string };
}

let schemaRoot: protobuf.Root | undefined;
function otlpType(name: string): protobuf.Type {
  schemaRoot ??= protobuf.parse(OTLP_TRACE_SCHEMA, { keepCase: true }).root;
  return schemaRoot.lookupType(`opentelemetry.proto.${name}`);
}

function anyValue(v: AttributeValue): Record<string, unknown> {
  if (typeof v === 'string') return { string_value: v };
  if (typeof v === 'boolean') return { bool_value: v };
  return Number.isInteger(v) ? { int_value: v } : { double_value: v };
}

/** One ExportTraceServiceRequest: the spans of one service (resource), one instrumentation scope. */
export function encodeTraceExport(service: { name: string; scope: string; version: string }, spans: readonly SpanRecord[]): Uint8Array {
  const type = otlpType('ExportTraceServiceRequest');
  const message = {
    resource_spans: [
      {
        resource: { attributes: [{ key: 'service.name', value: { string_value: service.name } }] },
        scope_spans: [
          {
            scope: { name: service.scope, version: service.version },
            spans: spans.map((s) => ({
              trace_id: Buffer.from(s.traceId, 'hex'),
              span_id: Buffer.from(s.spanId, 'hex'),
              ...(s.parentSpanId !== undefined ? { parent_span_id: Buffer.from(s.parentSpanId, 'hex') } : {}),
              name: s.name,
              kind: s.kind,
              start_time_unix_nano: s.startNs.toString(),
              end_time_unix_nano: s.endNs.toString(),
              attributes: Object.entries(s.attributes).map(([key, value]) => ({ key, value: anyValue(value) })),
              ...(s.status !== undefined ? { status: s.status } : {}),
            })),
          },
        ],
      },
    ],
  };
  return type.encode(type.fromObject(message)).finish();
}

/** A span as an OTLP receiver reads it back (ids in hex, attributes as plain values). */
export interface DecodedSpan {
  service: string;
  scope: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, AttributeValue>;
  status: { code: number; message: string };
}

interface WireValue {
  string_value?: string;
  bool_value?: boolean;
  int_value?: number | string | { toString(): string };
  double_value?: number;
}
interface WireKeyValue {
  key: string;
  value?: WireValue;
}

function plain(v: WireValue | undefined): AttributeValue {
  if (v === undefined) return '';
  if (v.string_value !== undefined) return v.string_value;
  if (v.bool_value !== undefined) return v.bool_value;
  if (v.int_value !== undefined) return Number(v.int_value.toString());
  return v.double_value ?? '';
}

function attributes(kvs: readonly WireKeyValue[] | undefined): Record<string, AttributeValue> {
  return Object.fromEntries((kvs ?? []).map((kv) => [kv.key, plain(kv.value)]));
}

/** Decodes an ExportTraceServiceRequest (from Envoy or from Switchyard's exporter). */
export function decodeTraceExport(bytes: Uint8Array): DecodedSpan[] {
  const type = otlpType('ExportTraceServiceRequest');
  const hex = (b: Uint8Array | undefined): string => Buffer.from(b ?? new Uint8Array(0)).toString('hex');
  interface WireSpan {
    trace_id?: Uint8Array; span_id?: Uint8Array; parent_span_id?: Uint8Array; name?: string; kind?: number;
    attributes?: WireKeyValue[]; status?: { code?: number; message?: string };
  }
  interface WireRequest {
    resource_spans?: { resource?: { attributes?: WireKeyValue[] }; scope_spans?: { scope?: { name?: string }; spans?: WireSpan[] }[] }[];
  }
  const request = type.toObject(type.decode(bytes), { defaults: false }) as WireRequest;
  const out: DecodedSpan[] = [];
  for (const rs of request.resource_spans ?? []) {
    const service = String(attributes(rs.resource?.attributes)['service.name'] ?? '');
    for (const ss of rs.scope_spans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service,
          scope: ss.scope?.name ?? '',
          traceId: hex(s.trace_id),
          spanId: hex(s.span_id),
          parentSpanId: hex(s.parent_span_id),
          name: s.name ?? '',
          kind: s.kind ?? 0,
          attributes: attributes(s.attributes),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
        });
      }
    }
  }
  return out;
}

export interface OtlpExporterOptions {
  endpoint: { host: string; port: number; tls: boolean };
  service: { name: string; scope: string; version: string };
  logger: Logger;
  /** Spans are sent at least this often while any wait (ms). */
  flushIntervalMs?: number;
  /** Spans kept while the receiver is slow or away; beyond it new spans are dropped (and counted). */
  maxQueue?: number;
  maxBatch?: number;
}

/**
 * Batches spans and sends them with OTLP/gRPC Export. Never blocks or fails a request: a
 * receiver that is down costs the queued spans, logged once per outage, not the traffic.
 */
export class OtlpTraceExporter {
  private readonly client: grpc.Client;
  private queue: SpanRecord[] = [];
  private inFlight: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private failing = false;
  dropped = 0;
  exported = 0;

  constructor(private readonly opts: OtlpExporterOptions) {
    const { host, port, tls } = opts.endpoint;
    const target = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    this.client = new grpc.Client(target, tls ? grpc.credentials.createSsl() : grpc.credentials.createInsecure());
    this.timer = setInterval(() => void this.flush(), opts.flushIntervalMs ?? 1_000);
    this.timer.unref();
  }

  export(span: SpanRecord): void {
    if (this.queue.length >= (this.opts.maxQueue ?? 4_096)) {
      this.dropped++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= (this.opts.maxBatch ?? 512)) void this.flush();
  }

  /** Sends what is queued (one Export at a time); resolves when that is done. */
  async flush(): Promise<void> {
    while (this.inFlight !== undefined) await this.inFlight;
    if (this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.opts.maxBatch ?? 512);
    this.inFlight = this.send(batch).finally(() => {
      this.inFlight = undefined;
    });
    await this.inFlight;
  }

  private send(batch: SpanRecord[]): Promise<void> {
    const bytes = Buffer.from(encodeTraceExport(this.opts.service, batch));
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(
        OTLP_TRACE_EXPORT_PATH,
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
        { deadline: Date.now() + 10_000 },
        (err) => {
          if (err) {
            this.dropped += batch.length;
            if (!this.failing) this.opts.logger.warn({ err: err.message, endpoint: `${this.opts.endpoint.host}:${this.opts.endpoint.port}`, spans: batch.length }, 'otlp: the trace receiver refused or is unreachable; spans are dropped until it answers');
            this.failing = true;
          } else {
            if (this.failing) this.opts.logger.info({ endpoint: `${this.opts.endpoint.host}:${this.opts.endpoint.port}` }, 'otlp: the trace receiver answers again');
            this.failing = false;
            this.exported += batch.length;
          }
          resolve();
        },
      );
    });
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    this.client.close();
  }
}
