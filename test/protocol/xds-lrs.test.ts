import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { messageType } from '../../src/envoy/proto.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { loadReportingService, type LoadReport } from '../../src/xds/lrs.js';
import { XdsServer } from '../../src/xds/server.js';
import { waitFor } from '../support/wait.js';

/**
 * The LRS service on the xDS server's port, spoken to by a real gRPC client: the answer that asks
 * for every cluster per endpoint, the reports handed on with the stream's node, and the streams
 * that are refused with a reason.
 */

const REQUEST = 'envoy.service.load_stats.v3.LoadStatsRequest';
const RESPONSE = 'envoy.service.load_stats.v3.LoadStatsResponse';

let server: XdsServer;
let port = 0;
const reports: LoadReport[] = [];

beforeAll(async () => {
  server = new XdsServer({ cache: new SnapshotCache(), services: [loadReportingService({ intervalMs: 1_500, onReport: (r) => reports.push(r) })] });
  port = await server.start({ port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await server?.stop();
});

function encode(message: object): Buffer {
  const type = messageType(REQUEST);
  return Buffer.from(type.encode(type.fromObject(message)).finish());
}

function open(): { call: grpc.ClientDuplexStream<Buffer, Buffer>; client: grpc.Client } {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = client.makeBidiStreamRequest<Buffer, Buffer>(
    '/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats',
    (b) => b,
    (b) => b,
  );
  return { call, client };
}

function ended(call: grpc.ClientDuplexStream<Buffer, Buffer>): Promise<grpc.ServiceError> {
  return new Promise((resolve) => call.on('error', (err: grpc.ServiceError) => resolve(err)));
}

it('asks for every cluster per endpoint at the configured interval and hands on reports with the node id', async () => {
  const { call, client } = open();
  const responses: Record<string, unknown>[] = [];
  call.on('data', (b: Buffer) => {
    const type = messageType(RESPONSE);
    responses.push(type.toObject(type.decode(b), { longs: Number, defaults: false }));
  });
  call.write(encode({ node: { id: 'edge-7' } }));
  await waitFor(() => responses.length === 1, { what: 'the LoadStatsResponse' });
  expect(responses[0]).toEqual({ send_all_clusters: true, report_endpoint_granularity: true, load_reporting_interval: { seconds: 1, nanos: 500_000_000 } });

  call.write(
    encode({
      cluster_stats: [
        {
          cluster_name: 'backend/ai/chat',
          load_report_interval: { seconds: 1, nanos: 500_000_000 },
          upstream_locality_stats: [
            {
              locality: { sub_zone: 'priority-1' },
              priority: 1,
              total_successful_requests: 4,
              total_error_requests: 2,
              total_issued_requests: 6,
              upstream_endpoint_stats: [{ address: { socket_address: { address: '10.0.0.2', port_value: 443 } }, total_successful_requests: 4, total_error_requests: 2, total_issued_requests: 6 }],
            },
          ],
        },
      ],
    }),
  );
  await waitFor(() => reports.length === 1, { what: 'the report to be handed on' });
  expect(reports[0]).toEqual({
    nodeId: 'edge-7',
    clusters: [
      {
        cluster: 'backend/ai/chat',
        intervalMs: 1_500,
        dropped: 0,
        localities: [{ priority: 1, subZone: 'priority-1', succeeded: 4, failed: 2, issued: 6, endpoints: [{ address: '10.0.0.2:443', succeeded: 4, failed: 2, issued: 6 }] }],
      },
    ],
  });
  expect(responses).toHaveLength(1);
  call.end();
  client.close();
});

it('refuses a stream whose first report names no node, with INVALID_ARGUMENT and the reason', async () => {
  const { call, client } = open();
  const error = ended(call);
  call.write(encode({ cluster_stats: [] }));
  const err = await error;
  expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
  expect(err.details).toContain('node.id');
  client.close();
});

it('refuses bytes that are not a LoadStatsRequest, naming the message it expects', async () => {
  const { call, client } = open();
  const error = ended(call);
  call.write(Buffer.from([0x0a, 0xff, 0xff, 0xff]));
  const err = await error;
  expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
  expect(err.details).toContain('envoy.service.load_stats.v3.LoadStatsRequest');
  client.close();
});
