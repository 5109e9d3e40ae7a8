import * as grpc from '@grpc/grpc-js';
import { OTLP_TRACE_EXPORT_PATH, decodeTraceExport, type DecodedSpan } from '../../src/observability/otlp.js';

/**
 * An OTLP/gRPC trace receiver (TraceService/Export) for tests: it decodes the protobuf every
 * sender sends (Envoy's tracer, the AI extension's exporter) and keeps the spans and the raw bytes.
 */
export interface OtlpReceiver {
  port: number;
  spans(): DecodedSpan[];
  /** Every Export request as received, undecoded (to search for what must never be sent). */
  raw(): Buffer[];
  stop(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: DecodedSpan[] = [];
  const raw: Buffer[] = [];
  const server = new grpc.Server();
  const service: grpc.ServiceDefinition = {
    Export: {
      path: OTLP_TRACE_EXPORT_PATH,
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      // An empty ExportTraceServiceResponse: full success.
      responseSerialize: () => Buffer.alloc(0),
      responseDeserialize: (b: Buffer) => b,
      originalName: 'export',
    },
  };
  server.addService(service, {
    Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      raw.push(call.request);
      spans.push(...decodeTraceExport(call.request));
      callback(null, Buffer.alloc(0));
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    port,
    spans: () => [...spans],
    raw: () => [...raw],
    stop: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}
