import * as http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessage } from '../../src/envoy/proto.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import * as transport from '../../src/xds/h2-transport.js';
import { XdsServer } from '../../src/xds/server.js';
import { pinged, sotwCall, type SotwCall } from '../support/h2-sotw-call.js';
import { waitFor } from '../support/wait.js';
import { grpcFrame, paddedClusters } from '../support/xds-stream.js';

/**
 * A client that opens streams and sends each a large gRPC message one part at a time, never
 * finishing it: flow control gives the windows back as DATA arrives, so before the receive
 * budget (src/h2/receive-budget.ts) the server kept every byte (1,000 streams x 16 MiB per
 * connection). Now one connection holds at most 32 MiB of partial messages: the stream asking for
 * more gets RESOURCE_EXHAUSTED, and past 10 such refusals the connection is ended with GOAWAY
 * ENHANCE_YOUR_CALM. A well-behaved client on another connection is served all along, its
 * subscription of 2,000 names (tens of KB, several DATA frames) included.
 */

const MiB = 1024 * 1024;
/** Each hostile stream: a message declared one byte short of 16 MiB, of which this much is sent (within the 1 MiB stream window). */
const SENT_PER_STREAM = MiB - 1024;
/** CONNECTION_RECEIVE_BYTES in h2-transport.ts. */
const CONNECTION_BOUND = 32 * MiB;

async function session(port: number): Promise<http2.ClientHttp2Session> {
  const s = http2.connect(`http://127.0.0.1:${port}`);
  s.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('error', reject);
  });
  return s;
}

/** Opens a stream and sends it the first SENT_PER_STREAM bytes of a message declared 16 MiB - 1; resolves once the server has read them. */
async function partialMessage(s: http2.ClientHttp2Session): Promise<SotwCall> {
  const c = sotwCall(s);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(16 * MiB - 1, 1);
  await new Promise<void>((resolve) => c.stream.write(Buffer.concat([prefix, Buffer.alloc(SENT_PER_STREAM - 5, 0x61)]), () => resolve()));
  await pinged(s);
  return c;
}

const cdsRequest = (node: string, names: string[] = []): Buffer => grpcFrame(encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', { node: { id: node }, type_url: TypeUrl.cluster, resource_names: names }));

describe('the xDS transport bounds what partial request messages hold', () => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache, rehearsePushes: false });
  let port = 0;
  let generation = 1;
  let good: http2.ClientHttp2Session;
  let goodCall: SotwCall;

  /** A change pushed reaches the good client: the server still serves it. */
  async function stillServes(): Promise<void> {
    const before = goodCall.responses();
    cache.setResources(paddedClusters(++generation, 3, 10));
    goodCall.stream.write(cdsRequest('good'));
    await waitFor(() => goodCall.responses() > before, { what: 'the well-behaved client to be pushed the change' });
  }

  beforeAll(async () => {
    cache.setResources(paddedClusters(generation, 3, 10));
    port = await server.start({ port: 0, host: '127.0.0.1' });
    good = await session(port);
    goodCall = sotwCall(good);
    goodCall.stream.write(cdsRequest('good'));
    await waitFor(() => goodCall.responses() === 1, { what: 'the well-behaved client to get its first response' });
  });

  afterAll(async () => {
    good.destroy();
    await server.stop();
  });

  it('streams past 32 MiB of partial messages on a connection get RESOURCE_EXHAUSTED, then GOAWAY ENHANCE_YOUR_CALM; another client is served throughout', async () => {
    const hostile = await session(port);
    let goaway: number | undefined;
    hostile.on('goaway', (code) => (goaway = code));
    const arrayBuffersBefore = process.memoryUsage().arrayBuffers;
    try {
      // 31 streams of ~1 MiB each (a buffer of 1 MiB each, counted) fit the connection's bound.
      const held: SotwCall[] = [];
      for (let i = 0; i < 31; i++) held.push(await partialMessage(hostile));
      expect(held.map((c) => c.status())).toEqual(Array(31).fill(undefined));
      // The 32nd to the 41st: each refused, the connection kept (10 refusals).
      const refused: SotwCall[] = [];
      for (let i = 0; i < 10; i++) {
        const c = await partialMessage(hostile);
        await waitFor(() => c.status() ?? undefined, { what: `stream ${32 + i} to be refused` });
        refused.push(c);
      }
      for (const c of refused) {
        expect(c.status()?.code).toBe('8');
        expect(c.status()?.message).toMatch(/partial request messages on this connection above its limit of 33554432 bytes/u);
      }
      const budget = (transport as { XDS_RECEIVE_BUDGET?: { used: number } }).XDS_RECEIVE_BUDGET;
      console.log(`held: budget ${budget?.used} bytes, arrayBuffers +${process.memoryUsage().arrayBuffers - arrayBuffersBefore} bytes`);
      expect(budget?.used).toBeGreaterThan(30 * MiB);
      expect(budget?.used).toBeLessThanOrEqual(CONNECTION_BOUND);
      expect(held.map((c) => c.status())).toEqual(Array(31).fill(undefined));
      expect(goaway).toBeUndefined();

      // During the attack, another connection's first subscription of 2,000 names (several DATA frames) is served.
      const other = await session(port);
      try {
        const names = ['pool-0-xxxxxxxxxx', ...Array.from({ length: 2000 }, (_, i) => `fleet-cluster-${i}-${'n'.repeat(12)}`)];
        const request = cdsRequest('large-subscription', names);
        expect(request.length).toBeGreaterThan(3 * 16_384);
        const c = sotwCall(other);
        c.stream.write(request);
        await waitFor(() => c.responses() === 1, { what: 'the 2,000-name subscription to be answered' });
        expect(c.status()).toBeUndefined();
      } finally {
        other.destroy();
      }
      await stillServes();

      // The 11th refusal: the connection is ended, and what it held given back.
      await partialMessage(hostile).catch(() => undefined);
      await waitFor(() => goaway ?? undefined, { what: 'GOAWAY to the hostile client' });
      expect(goaway).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      await waitFor(() => (budget?.used === 0 ? true : undefined), { what: 'the partial messages to be given back' });
    } finally {
      hostile.destroy();
    }
    await stillServes();
  }, 60_000);

  it('a message sent in many small DATA frames is assembled and served', async () => {
    const s = await session(port);
    try {
      const c = sotwCall(s);
      const names = Array.from({ length: 3000 }, (_, i) => `pool-${i}-xxxxxxxxxx`);
      const request = cdsRequest('small-frames', names);
      // One write per 100 bytes: node:http2 sends each as its own DATA frame.
      for (let at = 0; at < request.length; at += 100) c.stream.write(request.subarray(at, at + 100));
      await waitFor(() => c.responses() === 1, { what: 'the response to the request sent in small frames' });
      expect(c.status()).toBeUndefined();
    } finally {
      s.destroy();
    }
  });
});
