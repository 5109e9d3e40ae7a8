import { connect, type Socket } from 'node:net';
import * as http2 from 'node:http2';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessage, messageType } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { waitFor } from '../support/wait.js';
import { grpcFrame, paddedClusters } from '../support/xds-stream.js';
import { H2_PREFACE, h2Frame } from '../support/h2-frames.js';

/**
 * Envoy's default HTTP/2 windows are 256 MiB per stream and connection: the server may send that
 * much before the client reads a byte. Clients with such windows that stop reading (an Envoy
 * stuck, or a hostile peer) must not make the server buffer what it sends them, change after
 * change, nor slow the clients that read. Responses are encoded once and the same bytes written
 * to every stream, and a stream holds at most one response per type in the transport: what such
 * clients cost is bounded by the kernel's socket buffers, not by windows × changes.
 */

const SOTW_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const STALLED = 40;
const CHANGES = 5;
/** Envoy's initial_stream_window_size and initial_connection_window_size default. */
const ENVOY_WINDOW = 256 * 1024 * 1024;
const MB = 1024 * 1024;
/** The size of one CDS response of clusters(), in MB. */
const RESPONSE_MB = 1.3;

/** About 1.3 MB of Clusters: past any socket buffer, so most of each response stays with the sender. */
const clusters = (generation: number): XdsResources => paddedClusters(generation, 10000, 60);



/** HPACK literal header fields without indexing or Huffman: enough for names and values under 127 bytes. */
function hpack(headers: readonly (readonly [string, string])[]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of headers) {
    parts.push(Buffer.from([0x00, name.length]), Buffer.from(name, 'latin1'), Buffer.from([value.length]), Buffer.from(value, 'latin1'));
  }
  return Buffer.concat(parts);
}

/**
 * An ADS client on raw TCP that grants Envoy's 256 MiB windows, sends its CDS request and never
 * reads again: what the server sends waits in socket buffers, or with the server.
 */
function stalledClient(port: number, node: string): Socket {
  const settings = Buffer.alloc(6);
  settings.writeUInt16BE(0x4, 0); // SETTINGS_INITIAL_WINDOW_SIZE
  settings.writeUInt32BE(ENVOY_WINDOW, 2);
  const connectionWindow = Buffer.alloc(4);
  connectionWindow.writeUInt32BE(ENVOY_WINDOW - 65_535, 0);
  const headers = hpack([[':method', 'POST'], [':scheme', 'http'], [':path', SOTW_PATH], [':authority', 'xds'], ['content-type', 'application/grpc'], ['te', 'trailers']]);
  const request = grpcFrame(encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', { node: { id: node }, type_url: TypeUrl.cluster }));
  const socket = connect({ host: '127.0.0.1', port }, () => {
    socket.write(Buffer.concat([
      H2_PREFACE,
      h2Frame(0x4, 0, 0, settings),
      h2Frame(0x8, 0, 0, connectionWindow),
      h2Frame(0x1, 0x4, 1, headers), // HEADERS, END_HEADERS
      h2Frame(0x0, 0, 1, request), // DATA
    ]));
    socket.pause();
  });
  socket.on('error', () => undefined);
  return socket;
}

/** What the server process holds outside its JS heap objects: Buffers, and the heap itself. */
function heldBytes(): number {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

// A real collection before each reading, so garbage not yet collected is not counted as held.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function collect(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  gc();
}

describe(`${STALLED} clients with Envoy's 256 MiB windows that never read`, () => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  let port = 0;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    cache.setResources(clusters(1));
    port = await server.start({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await server.stop();
  });

  it(`cost the server a bounded amount over ${CHANGES} changes, and a client that reads gets every change at once`, async () => {
    for (let i = 0; i < STALLED; i++) sockets.push(stalledClient(port, `stalled-${i}`));
    await waitFor(() => server.clients().filter((c) => c.nodeId.startsWith('stalled-') && c.types.some((t) => t.sentVersion !== undefined)).length === STALLED, {
      what: `every stalled client to be sent its first CDS response`,
      timeoutMs: 30_000,
    });

    // A client that reads, with the same windows, on the same server.
    const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: ENVOY_WINDOW } });
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', reject);
    });
    session.setLocalWindowSize(ENVOY_WINDOW);
    let before = 0;
    const stream = session.request({ ':method': 'POST', ':path': SOTW_PATH, 'content-type': 'application/grpc', te: 'trailers' });
    const versions: string[] = [];
    let pending = Buffer.alloc(0);
    stream.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        const length = pending.readUInt32BE(1);
        versions.push(String(messageType('envoy.service.discovery.v3.DiscoveryResponse').decode(pending.subarray(5, 5 + length)).toJSON()['version_info'] ?? ''));
        pending = pending.subarray(5 + length);
      }
    });
    stream.write(grpcFrame(encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', { node: { id: 'reader' }, type_url: TypeUrl.cluster })));
    try {
      await waitFor(() => versions.length === 1, { what: 'the reading client to get its first response' });
      for (let i = 2; i <= CHANGES + 1; i++) {
        const started = performance.now();
        cache.setResources(clusters(i));
        const version = cache.snapshot(TypeUrl.cluster)?.version ?? '';
        // Ack what arrived so the next change is pushed to this client.
        await waitFor(() => versions.at(-1) === version, { what: `the reading client to get change ${i} (${version}); it has ${versions.join(', ')}` });
        expect(performance.now() - started, `change ${i} reached the reading client only after`).toBeLessThan(5_000);
        // Measured from once every connection is set up and has been sent a change: what the
        // next changes cost is what a slow fleet would keep adding.
        if (i === 2) {
          await collect();
          before = heldBytes();
        }
      }
      await collect();
      const grown = heldBytes() - before;
      // Buffered per stalled client and change, the last CHANGES - 1 changes would add
      // STALLED × 1.3 MB (52 MB) each.
      expect(grown / MB, `heap + Buffers grew by ${(grown / MB).toFixed(1)} MB`).toBeLessThan((STALLED * RESPONSE_MB) / 2);
    } finally {
      stream.close();
      session.close();
    }
  }, 120_000);
});
