import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessage, messageType } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { waitFor } from '../support/wait.js';
import { grpcFrame, paddedClusters } from '../support/xds-stream.js';

/**
 * Slow and broken clients against the real server over real HTTP/2. A client that stops reading
 * (flow control closes its window) must cost the server one pending response per type, not one
 * per change, and must get the newest version once it reads again. A client that sends bytes
 * that are no request must be told so with INVALID_ARGUMENT.
 */

const SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService';
const SOTW_PATH = `${SERVICE}/StreamAggregatedResources`;
const DELTA_PATH = `${SERVICE}/DeltaAggregatedResources`;
const CHANGES = 10;

/** Enough Clusters that one response exceeds the client's 64 KiB HTTP/2 window many times over. */
const clusters = (generation: number): XdsResources => paddedClusters(generation, 1500, 40);


/**
 * A real XdsServer on a free loopback port for the enclosing describe block (started before its
 * tests, stopped after), its cache holding the first generation of clusters.
 */
function serverOnLoopback(): { cache: SnapshotCache; server: XdsServer; port: () => number } {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  let port = 0;
  beforeAll(async () => {
    cache.setResources(clusters(1));
    port = await server.start({ port: 0, host: '127.0.0.1' });
  });
  afterAll(async () => {
    await server.stop();
  });
  return { cache, server, port: () => port };
}

/** Splits a gRPC response byte stream into messages. */
class FrameReader {
  private pending = Buffer.alloc(0);

  push(chunk: Buffer): Buffer[] {
    this.pending = Buffer.concat([this.pending, chunk]);
    const messages: Buffer[] = [];
    while (this.pending.length >= 5) {
      const length = this.pending.readUInt32BE(1);
      if (this.pending.length < 5 + length) break;
      messages.push(this.pending.subarray(5, 5 + length));
      this.pending = this.pending.subarray(5 + length);
    }
    return messages;
  }
}

/**
 * An ADS client on raw HTTP/2 that sends its first request and then does not read: its stream
 * window fills and the server's writes stay in flight, as with an Envoy stuck on a slow link.
 */
class StalledClient {
  readonly versions: string[] = [];
  private readonly session: http2.ClientHttp2Session;
  private readonly stream: http2.ClientHttp2Stream;

  constructor(port: number, path: string, requestType: string, responseType: string, request: Parameters<typeof encodeMessage>[1]) {
    this.session = http2.connect(`http://127.0.0.1:${port}`);
    this.stream = this.session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    this.stream.pause();
    this.stream.write(grpcFrame(encodeMessage(requestType, request)));
    this.responseType = responseType;
  }

  private readonly responseType: string;

  /** Reads from now on, recording the version of every response. */
  read(versionField: string): void {
    const frames = new FrameReader();
    this.stream.on('data', (chunk: Buffer) => {
      for (const message of frames.push(chunk)) {
        const json = messageType(this.responseType).decode(message).toJSON();
        this.versions.push(String(json[versionField] ?? ''));
      }
    });
    this.stream.resume();
  }

  close(): void {
    this.stream.close();
    this.session.close();
  }
}

describe('a client that stops reading', () => {
  const { cache, server, port } = serverOnLoopback();

  const cases = [
    {
      variant: 'SotW',
      path: SOTW_PATH,
      requestType: 'envoy.service.discovery.v3.DiscoveryRequest',
      responseType: 'envoy.service.discovery.v3.DiscoveryResponse',
      versionField: 'version_info',
      request: (node: string) => ({ node: { id: node }, type_url: TypeUrl.cluster }),
    },
    {
      variant: 'delta',
      path: DELTA_PATH,
      requestType: 'envoy.service.discovery.v3.DeltaDiscoveryRequest',
      responseType: 'envoy.service.discovery.v3.DeltaDiscoveryResponse',
      versionField: 'system_version_info',
      request: (node: string) => ({ node: { id: node }, type_url: TypeUrl.cluster }),
    },
  ];

  for (const c of cases) {
    it(`${c.variant}: holds one pending response per type, skips the versions it could not take, and sends the newest on resume`, async () => {
      const node = `stalled-${c.variant}`;
      const first = cache.snapshot(TypeUrl.cluster)?.version;
      const client = new StalledClient(port(), c.path, c.requestType, c.responseType, c.request(node));
      try {
        await waitFor(() => server.clients().find((s) => s.nodeId === node)?.types.find((t) => t.typeUrl === TypeUrl.cluster)?.sentVersion, {
          what: `the first CDS response to ${node}`,
        });
        const generation = c.variant === 'SotW' ? 100 : 200;
        for (let i = 1; i <= CHANGES; i++) cache.setResources(clusters(generation + i));
        const newest = cache.snapshot(TypeUrl.cluster)?.version;
        const sent = server.clients().find((s) => s.nodeId === node)?.types.find((t) => t.typeUrl === TypeUrl.cluster)?.sentVersion;
        // Nothing was written after the first response: the stream only knows CDS is due.
        expect(sent).toBe(first);
        client.read(c.versionField);
        await waitFor(() => client.versions.at(-1) === newest, { what: `${node} to receive the newest version ${String(newest)} (received ${client.versions.join(', ')})` });
        expect(client.versions).toEqual([first, newest]);
      } finally {
        client.close();
      }
    });
  }
});

describe('a request that is not a request', () => {
  const { port } = serverOnLoopback();

  const garbage = [
    // Not protobuf at all: a field tag with an invalid wire type.
    { what: 'invalid protobuf', bytes: Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x07]), reason: /could not be decoded/ },
    // Valid protobuf (one unknown field 99) but no type_url: nothing an ADS stream can answer.
    { what: 'a message without type_url', bytes: Buffer.from([0x98, 0x06, 0x01]), reason: /no type_url/ },
  ];

  for (const path of [SOTW_PATH, DELTA_PATH]) {
    for (const g of garbage) {
      it(`${path.endsWith('Delta', SERVICE.length + 1 + 5) ? 'delta' : 'SotW'}: ${g.what} closes the stream with INVALID_ARGUMENT and says why`, async () => {
        const client = new grpc.Client(`127.0.0.1:${port()}`, grpc.credentials.createInsecure());
        try {
          const call = client.makeBidiStreamRequest<Buffer, Buffer>(path, (b) => b, (b) => b);
          const closed = new Promise<grpc.ServiceError>((resolve) => call.on('error', resolve));
          call.on('data', () => undefined);
          call.write(g.bytes);
          const error = await Promise.race([closed, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5_000))]);
          expect(error, 'the server left the stream open').toBeDefined();
          expect(grpc.status[error?.code ?? 0]).toBe('INVALID_ARGUMENT');
          expect(error?.details).toMatch(g.reason);
        } finally {
          client.close();
        }
      });
    }
  }
});
