import * as http2 from 'node:http2';
import { connect as netConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessage } from '../../src/envoy/proto.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XDS_RECEIVE_BUDGET } from '../../src/xds/h2-transport.js';
import { XdsServer } from '../../src/xds/server.js';
import { pinged, sotwCall, type SotwCall } from '../support/h2-sotw-call.js';
import { waitFor } from '../support/wait.js';
import { grpcFrame, paddedClusters } from '../support/xds-stream.js';

/**
 * The process-wide bound on partial request messages (256 MiB across xDS connections,
 * src/h2/receive-budget.ts) shared fairly: an anonymous client (127.0.0.1) opens ten connections
 * and holds partial messages until the bound is full (its last streams refused, "retry later").
 * Another client (127.0.0.2) then sends its first subscription, 2,000 names, in two reads: the
 * first half must be kept while the second comes. Before, that half was refused ("retry later")
 * for as long as the hostile streams lasted. Now the client holding the most gives way: one of its
 * partial messages is reclaimed (RESOURCE_EXHAUSTED) and the subscription is answered; a new
 * hostile stream asking for more meanwhile is refused, not the newcomer's message reclaimed.
 */

const MiB = 1024 * 1024;
/** CONNECTION_RECEIVE_BYTES in h2-transport.ts. */
const CONNECTION_BOUND = 32 * MiB;
/** What a partial message's buffer is counted for besides its bytes (receive-budget.ts). */
const OVERHEAD = 256;

async function session(port: number, localAddress: string): Promise<http2.ClientHttp2Session> {
  const s = http2.connect(`http://127.0.0.1:${port}`, { createConnection: () => netConnect({ host: '127.0.0.1', port, localAddress }) });
  s.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('error', reject);
  });
  return s;
}

async function send(s: http2.ClientHttp2Session, c: SotwCall, bytes: Buffer): Promise<void> {
  await new Promise<void>((resolve) => c.stream.write(bytes, () => resolve()));
  await pinged(s);
}

/** A stream sent the first `sent` bytes of a message declared 16 MiB - 1; resolves once the server has read them. */
async function partialMessage(s: http2.ClientHttp2Session, sent: number): Promise<SotwCall> {
  const c = sotwCall(s);
  const head = Buffer.alloc(sent, 0x61);
  head[0] = 0;
  head.writeUInt32BE(16 * MiB - 1, 1);
  await send(s, c, head);
  return c;
}

const cdsRequest = (node: string, names: string[]): Buffer => grpcFrame(encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', { node: { id: node }, type_url: TypeUrl.cluster, resource_names: names }));

describe('the xDS receive budget under a many-connection client', () => {
  const lines: string[] = [];
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache, rehearsePushes: false, logger: createLogger({ level: 'warn' }, { write: (line: string) => void lines.push(line) }) });
  let port = 0;

  beforeAll(async () => {
    cache.setResources(paddedClusters(1, 3, 10));
    port = await server.start({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await server.stop();
  });

  it("a client holding the whole shared bound over ten connections gives way to another client's multi-read subscription", async () => {
    const hostile: http2.ClientHttp2Session[] = [];
    const held: SotwCall[] = [];
    const refused: SotwCall[] = [];
    let onConnection = CONNECTION_BOUND;
    /** Partial messages of `sent` bytes (a buffer of `buffer` bytes each) until one is refused for the shared bound. */
    async function fill(sent: number, buffer: number): Promise<void> {
      for (;;) {
        if (onConnection + buffer + OVERHEAD > CONNECTION_BOUND) {
          hostile.push(await session(port, '127.0.0.1'));
          onConnection = 0;
        }
        const c = await partialMessage(hostile[hostile.length - 1] as http2.ClientHttp2Session, sent);
        onConnection += buffer + OVERHEAD;
        // Refused at once (in the read the ping followed), or held.
        await pinged(hostile[hostile.length - 1] as http2.ClientHttp2Session);
        if (c.status() === undefined) {
          held.push(c);
          continue;
        }
        refused.push(c);
        return;
      }
    }
    let good: http2.ClientHttp2Session | undefined;
    try {
      await fill(4 * MiB - 1024, 4 * MiB);
      await fill(MiB - 1024, MiB);
      await fill(16 * 1024 - 100, 16 * 1024);
      expect(hostile.length).toBe(10);
      for (const c of refused) expect(c.status()).toEqual({ code: '8', message: `partial request messages on this server above its limit of ${256 * MiB} bytes; retry later` });
      expect(held.map((c) => c.status())).toEqual(held.map(() => undefined));
      // The bound is full: less than a DATA frame's buffer is left.
      expect(XDS_RECEIVE_BUDGET.limitBytes - XDS_RECEIVE_BUDGET.used).toBeLessThan(16 * 1024 + OVERHEAD);
      expect(XDS_RECEIVE_BUDGET.heldBy('tcp:127.0.0.1')).toBe(XDS_RECEIVE_BUDGET.used);

      // The other client's subscription: its first half read and kept, then the rest.
      good = await session(port, '127.0.0.2');
      const names = ['pool-0-xxxxxxxxxx', ...Array.from({ length: 2000 }, (_, i) => `fleet-cluster-${i}-${'n'.repeat(12)}`)];
      const request = cdsRequest('large-subscription', names);
      expect(request.length).toBeGreaterThan(3 * 16_384);
      const subscription = sotwCall(good);
      const half = request.length >> 1;
      await send(good, subscription, request.subarray(0, half));
      // Either the newcomer is refused (as before) or a hostile stream gives way.
      await waitFor(() => subscription.status() ?? (held.some((c) => c.status() !== undefined) ? true : undefined), { what: 'the subscription refused or a hostile stream told its message was reclaimed' });
      expect(subscription.status()).toBeUndefined();
      expect(XDS_RECEIVE_BUDGET.heldBy('tcp:127.0.0.2')).toBeGreaterThan(half);
      const reclaimed = held.filter((c) => c.status() !== undefined);
      for (const c of reclaimed) {
        expect(c.status()?.code).toBe('8');
        expect(c.status()?.message).toMatch(/above its limit of 268435456 bytes, this client holding the most: its partial message dropped; retry later/u);
      }

      // The hostile client asking for more meanwhile is refused: the newcomer's message is kept.
      const more = await partialMessage(hostile[0] as http2.ClientHttp2Session, 4 * MiB - 1024);
      await waitFor(() => more.status(), { what: 'the new hostile stream to be refused' });
      expect(more.status()?.message).toMatch(/on this server above its limit of 268435456 bytes; retry later/u);
      expect(subscription.status()).toBeUndefined();

      await send(good, subscription, request.subarray(half));
      await waitFor(() => (subscription.responses() === 1 ? true : undefined), { what: 'the subscription to be answered' });
      expect(subscription.status()).toBeUndefined();
      expect(XDS_RECEIVE_BUDGET.heldBy('tcp:127.0.0.2')).toBe(0);

      // Logged at warn once per connection: the peer and the limit, no header values.
      const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => /RESOURCE_EXHAUSTED/u.test(String(l['msg'])));
      expect(warnings.find((w) => w['scope'] === 'reclaimed')).toMatchObject({ peer: 'tcp:127.0.0.1', limitBytes: 256 * MiB });
      expect(warnings.every((w) => w['peer'] === 'tcp:127.0.0.1')).toBe(true);
      expect(JSON.stringify(warnings)).not.toMatch(/application\/grpc|StreamAggregatedResources|large-subscription/u);
    } finally {
      good?.destroy();
      for (const s of hostile) s.destroy();
    }
    await waitFor(() => (XDS_RECEIVE_BUDGET.used === 0 ? true : undefined), { what: 'every partial message to be given back once the connections are gone' });
  }, 120_000);
});
