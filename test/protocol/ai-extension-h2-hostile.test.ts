import { EventEmitter } from 'node:events';
import * as http2 from 'node:http2';
import { connect, createServer, type Server, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGrpcServer, type BidiCall, type GrpcServerOptions, type RunningGrpcServer } from '../../src/ai-extension/grpc-server.js';
import { H2Connection, H2Error, type H2ConnectionOptions, type H2Stream } from '../../src/h2/h2-connection.js';
import { HpackDecoder, encodeHeaderBlock, type HeaderList } from '../../src/h2/hpack.js';
import { H2_FRAME as T, H2_PREFACE as PREFACE, h2Frame as frame, parseFrames, type H2ReadFrame as Frame } from '../support/h2-frames.js';

/**
 * The extension's own HTTP/2 server (src/h2/h2-connection.ts, hpack.ts) against a
 * hostile client: each guard ends the connection (or the stream) with the code RFC 9113 names,
 * and says so once in the log; and property tests: any split of valid input, any garbage, any
 * header block Node's real HPACK encoder makes.
 */

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

const REQUEST = encodeHeaderBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/test.Echo/Echo'], [':authority', 'x'], ['content-type', 'application/grpc']]);
const START = Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0), frame(T.SETTINGS, 1, 0)]);

function grpcMessage(body: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(body.length, 1);
  return Buffer.concat([prefix, body]);
}

/** A raw TCP client: what the server sent, and when it closed. */
async function rawClient(port: number): Promise<{ socket: Socket; frames: () => Frame[]; closed: Promise<void> }> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  let data = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    data = Buffer.concat([data, chunk]);
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, frames: () => parseFrames(data.subarray(0)), closed };
}

function goaway(frames: Frame[]): { code: number; debug: string } | undefined {
  const f = frames.find((x) => x.type === T.GOAWAY);
  return f === undefined ? undefined : { code: f.payload.readUInt32BE(4), debug: f.payload.subarray(8).toString() };
}

describe('the extension\'s HTTP/2 server against a hostile client', () => {
  let server: RunningGrpcServer;
  const events: Parameters<NonNullable<GrpcServerOptions['onConnectionError']>>[0][] = [];
  let calls = 0;
  beforeAll(async () => {
    server = await startGrpcServer({
      listen: { host: '127.0.0.1', port: 0 },
      maxMessageBytes: 1024 * 1024,
      onConnectionError: (event) => events.push(event),
      peerResets: { burst: 20, perSecond: 10 },
      methods: new Map([
        ['/test.Echo/Echo', {
          kind: 'bidi',
          handle: (call: BidiCall) => {
            calls++;
            call.onMessage((m) => call.write(Buffer.from(m)));
            call.onHalfClose(() => call.end());
          },
        }],
      ]),
    });
  });
  afterAll(() => server.close());

  /** Sends the bytes after the preface and waits for the server to close the connection. */
  async function closedWith(bytes: Buffer): Promise<{ code: number; debug: string; events: typeof events }> {
    const before = events.length;
    const client = await rawClient(server.port);
    client.socket.write(Buffer.concat([START, bytes]));
    await client.closed;
    const sent = goaway(client.frames());
    if (sent === undefined) throw new Error('the server closed the connection without a GOAWAY');
    return { ...sent, events: events.slice(before) };
  }

  /** The server still answers a call from Node's HTTP/2 client. */
  async function stillServes(): Promise<void> {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/test.Echo/Echo', 'content-type': 'application/grpc', te: 'trailers' });
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      const status = await new Promise<string>((resolve, reject) => {
        stream.once('trailers', (t) => resolve(String(t['grpc-status'])));
        stream.once('error', reject);
        stream.end(grpcMessage(Buffer.from('ping')));
      });
      expect(status).toBe('0');
      expect(Buffer.concat(chunks).subarray(5).toString()).toBe('ping');
    } finally {
      session.close();
    }
  }

  it('announces its limits in SETTINGS: header list size, concurrent streams, HPACK table', async () => {
    const client = await rawClient(server.port);
    client.socket.write(START);
    await expect.poll(() => client.frames().length).toBeGreaterThan(0);
    const settings = client.frames()[0]!;
    expect(settings.type).toBe(T.SETTINGS);
    const values = new Map<number, number>();
    for (let at = 0; at < settings.payload.length; at += 6) values.set(settings.payload.readUInt16BE(at), settings.payload.readUInt32BE(at + 2));
    expect(values.get(0x6)).toBe(64 * 1024);
    expect(values.get(0x3)).toBe(1000);
    expect(values.get(0x1)).toBe(4096);
    client.socket.destroy();
  });

  it('ends a CONTINUATION flood (empty frames, no byte limit reached) with ENHANCE_YOUR_CALM, logged once', async () => {
    const flood = Array.from({ length: 200 }, () => frame(T.CONTINUATION, 0, 1));
    const got = await closedWith(Buffer.concat([frame(T.HEADERS, 0, 1, REQUEST.subarray(0, 3)), ...flood]));
    expect(got.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(got.debug).toMatch(/CONTINUATION/u);
    expect(got.events).toEqual([{ connection: expect.stringMatching(/^127\.0\.0\.1:\d+$/u), code: 'ENHANCE_YOUR_CALM', reason: expect.stringMatching(/CONTINUATION/u), by: 'local' }]);
    await stillServes();
  });

  it('ends a header block above 64 KiB (HEADERS and CONTINUATIONs) with ENHANCE_YOUR_CALM', async () => {
    const pieces = Array.from({ length: 4 }, () => frame(T.CONTINUATION, 0, 1, Buffer.alloc(16_384, 0x61)));
    const got = await closedWith(Buffer.concat([frame(T.HEADERS, 0, 1, Buffer.alloc(16_384, 0x61)), ...pieces]));
    expect(got.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(got.debug).toMatch(/header block above 65536 bytes/u);
  });

  it('stops decoding an HPACK bomb (a 4 KiB table entry named 16,000 times) at the header list size, without logging values', async () => {
    // Stream 1 puts x-secret (4,000 bytes) in the dynamic table (literal with incremental
    // indexing); stream 3's block is the request and index 62 (0xbe) 16,000 times: 16 KiB
    // of block, 64 MiB of header list.
    const secret = `Bearer sk-${'s'.repeat(3990)}`;
    const indexed = Buffer.concat([Buffer.from([0x40, 8]), Buffer.from('x-secret'), Buffer.from([0x7f, ((secret.length - 127) & 0x7f) | 0x80, (secret.length - 127) >> 7]), Buffer.from(secret)]);
    const first = frame(T.HEADERS, 0x4 | 0x1, 1, Buffer.concat([REQUEST, indexed]));
    const bomb = frame(T.HEADERS, 0x4, 3, Buffer.concat([REQUEST, Buffer.alloc(16_000, 0xbe)]));
    const got = await closedWith(Buffer.concat([first, bomb]));
    expect(got.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(got.debug).toMatch(/header list above 65536 bytes/u);
    expect(got.events).toHaveLength(1);
    expect(JSON.stringify(got.events)).not.toContain('sk-s');
  });

  it('refuses a dynamic table size update above the 4096 announced with COMPRESSION_ERROR', async () => {
    // 001xxxxx, a 5-bit prefix: 31 + 98 + 31 * 128 = 4,097 (0x3f e2 1f).
    const got = await closedWith(frame(T.HEADERS, 0x4 | 0x1, 1, Buffer.concat([Buffer.from([0x3f, 0xe2, 0x1f]), REQUEST])));
    expect(got.code).toBe(H2Error.COMPRESSION_ERROR);
    expect(got.debug).toMatch(/table size update to 4097, above the 4096 announced/u);
  });

  it('answers a stream opened below the last one, and an even stream id, with PROTOCOL_ERROR', async () => {
    const down = await closedWith(Buffer.concat([frame(T.HEADERS, 0x4, 5, REQUEST), frame(T.HEADERS, 0x4, 3, REQUEST)]));
    expect(down.code).toBe(H2Error.PROTOCOL_ERROR);
    expect(down.debug).toMatch(/HEADERS on stream 3, not above the last stream opened \(5\)/u);
    const even = await closedWith(frame(T.HEADERS, 0x4, 2, REQUEST));
    expect(even.code).toBe(H2Error.PROTOCOL_ERROR);
  });

  it('answers a WINDOW_UPDATE on a stream never opened with PROTOCOL_ERROR (RFC 9113 5.1, idle), and ignores one late on a closed stream', async () => {
    const above = await closedWith(Buffer.concat([frame(T.HEADERS, 0x4 | 0x1, 1, REQUEST), frame(T.WINDOW_UPDATE, 0, 3, u32(1000))]));
    expect(above.code).toBe(H2Error.PROTOCOL_ERROR);
    expect(above.debug).toMatch(/WINDOW_UPDATE on idle stream 3/u);
    expect(above.events).toHaveLength(1);
    const even = await closedWith(frame(T.WINDOW_UPDATE, 0, 2, u32(1000)));
    expect(even.code).toBe(H2Error.PROTOCOL_ERROR);
    expect(even.debug).toMatch(/WINDOW_UPDATE on idle stream 2/u);

    // Stream 1 answered and closed, then its WINDOW_UPDATE: the connection goes on (a PING answered, no GOAWAY).
    const late = await rawClient(server.port);
    late.socket.write(Buffer.concat([START, frame(T.HEADERS, 0x4, 1, REQUEST), frame(T.DATA, 0x1, 1, grpcMessage(Buffer.from('hi')))]));
    await expect.poll(() => late.frames().some((f) => f.type === T.HEADERS && (f.flags & 0x1) !== 0)).toBe(true);
    late.socket.write(Buffer.concat([frame(T.WINDOW_UPDATE, 0, 1, u32(1000)), frame(T.PING, 0, 0, Buffer.alloc(8, 7))]));
    await expect.poll(() => late.frames().some((f) => f.type === T.PING && f.flags === 1)).toBe(true);
    expect(goaway(late.frames())).toBeUndefined();
    late.socket.destroy();
  });

  it('ends a PING flood from a peer that reads nothing with ENHANCE_YOUR_CALM once 1000 answers wait unsent; a reading peer is answered every PING', async () => {
    // A reading peer: 5,000 PINGs in reads of 500 each, every one acknowledged.
    const reader = await rawClient(server.port);
    reader.socket.write(START);
    for (let round = 1; round <= 10; round++) {
      reader.socket.write(Buffer.concat(Array.from({ length: 500 }, () => frame(T.PING, 0, 0, Buffer.alloc(8)))));
      await expect.poll(() => reader.frames().filter((f) => f.type === T.PING && f.flags === 1).length).toBe(500 * round);
    }
    expect(goaway(reader.frames())).toBeUndefined();
    reader.socket.destroy();

    // A peer that reads nothing: PINGs (and a SETTINGS now and then) until the kernel's buffers
    // are full and the server's answers queue; without the bound the server buffers 16 MiB of
    // them and then stops reading, and no GOAWAY ever comes.
    const before = events.length;
    const socket = connect(server.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.pause();
    socket.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const burst = Buffer.concat([...Array.from({ length: 999 }, () => frame(T.PING, 0, 0, Buffer.alloc(8))), frame(T.SETTINGS, 0, 0)]);
    socket.write(START);
    const reported = (): boolean => events.length > before;
    for (let sent = 0; sent < 64 * 1024 * 1024 && !reported(); sent += burst.length) {
      if (!socket.write(burst)) {
        const stuck = await Promise.race([
          new Promise<boolean>((resolve) => socket.once('drain', () => resolve(false))),
          closed.then(() => false),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 2_000)),
        ]);
        if (stuck) break;
      }
    }
    await expect.poll(reported, { timeout: 5_000 }).toBe(true);
    expect(events.slice(before)).toEqual([{ connection: expect.any(String), code: 'ENHANCE_YOUR_CALM', reason: expect.stringMatching(/more than 1000 PING, SETTINGS or RST_STREAM answers unsent/u), by: 'local' }]);
    // What it was sent, read now: acknowledgements, then the GOAWAY.
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.resume();
    await closed;
    const sent = goaway(parseFrames(Buffer.concat(chunks)).filter((f) => f.type === T.GOAWAY));
    expect(sent?.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    await stillServes();
  });

  it('closes a peer resetting streams faster than its bound (rapid reset) with ENHANCE_YOUR_CALM, and not one under it', async () => {
    // The server under test allows a burst of 20, then 10 a second.
    const opensAndResets = (from: number, n: number): Buffer => Buffer.concat(Array.from({ length: n }, (_, i) => {
      const id = from + 2 * i;
      return Buffer.concat([frame(T.HEADERS, 0x4, id, REQUEST), frame(T.RST_STREAM, 0, id, u32(H2Error.CANCEL))]);
    }));
    const calm = await rawClient(server.port);
    calm.socket.write(Buffer.concat([START, opensAndResets(1, 15), frame(T.PING, 0, 0, Buffer.alloc(8))]));
    await expect.poll(() => calm.frames().some((f) => f.type === T.PING && f.flags === 1)).toBe(true);
    expect(goaway(calm.frames())).toBeUndefined();
    calm.socket.destroy();

    const before = calls;
    const got = await closedWith(opensAndResets(1, 100));
    expect(got.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(got.debug).toMatch(/reset by the peer faster than 10 a second/u);
    expect(calls - before).toBeLessThanOrEqual(22);
    expect(got.events).toHaveLength(1);
    await stillServes();
  });

  it('keeps serving other connections while arbitrary bytes after the preface end theirs with a GOAWAY', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 9, maxLength: 300 }), async (bytes) => {
        const before = events.length;
        const client = await rawClient(server.port);
        client.socket.write(Buffer.concat([START, Buffer.from(bytes)]));
        // Either the server ends it (GOAWAY, one log event) or it waits for more: a PING then
        // tells which, and the connection is dropped.
        client.socket.write(frame(T.PING, 0, 0, Buffer.alloc(8)));
        await Promise.race([client.closed, new Promise((resolve) => setTimeout(resolve, 100))]);
        const sent = goaway(client.frames());
        if (sent !== undefined) {
          expect(events.length - before).toBe(1);
          expect(events[before]?.reason.length).toBeGreaterThan(0);
        }
        client.socket.destroy();
      }),
      { numRuns: 60 },
    );
    await stillServes();
  });
});

/** A socket stand-in: reads are emitted by the test, one at a time, at the splits it chooses. */
class FakeSocket extends EventEmitter {
  readonly written: Buffer[] = [];
  ended = false;
  writableLength = 0;
  write(b: Buffer): boolean {
    this.written.push(Buffer.from(b));
    return true;
  }
  cork(): void {}
  uncork(): void {}
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.ended = true;
    this.emit('close');
  }
  pause(): void {}
  resume(): void {}
  isPaused(): boolean {
    return false;
  }
  output(): Frame[] {
    return parseFrames(Buffer.concat(this.written)).slice(1);
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Recorded { streams: { id: number; headers: HeaderList; data: string; ended: boolean }[]; errors: string[] }

/** An H2Connection on a FakeSocket, with an echo handler: each stream answers its bytes' length and ends. */
function fakeConnection(overrides: Partial<H2ConnectionOptions> = {}): { socket: FakeSocket; recorded: Recorded; streams: H2Stream[] } {
  const socket = new FakeSocket();
  const recorded: Recorded = { streams: [], errors: [] };
  const streams: H2Stream[] = [];
  new H2Connection(socket as unknown as Socket, 'fake', {
    streamWindowBytes: 100_000,
    connectionWindowBytes: 1_000_000,
    maxHeaderBlockBytes: 64 * 1024,
    maxHeaderListBytes: 64 * 1024,
    maxConcurrentStreams: 100,
    peerResets: { burst: 1000, perSecond: 1000 },
    onConnectionError: (code, reason) => recorded.errors.push(`${code} ${reason}`),
    onStream: (stream, headers) => {
      streams.push(stream);
      const entry = { id: stream.id, headers, data: '', ended: false };
      recorded.streams.push(entry);
      stream.onData = (chunk) => {
        entry.data += chunk.toString('latin1');
      };
      stream.onEnd = () => {
        entry.ended = true;
        stream.respond(encodeHeaderBlock([[':status', '200']]));
        stream.write(Buffer.from(`${stream.id}:${entry.data.length}`));
        stream.end(encodeHeaderBlock([['grpc-status', '0']]));
      };
    },
    ...overrides,
  });
  return { socket, recorded, streams };
}

describe('flow control, concurrency and reset rules (the connection on a stand-in socket)', () => {
  it('resets a stream sent DATA beyond the window it was offered with FLOW_CONTROL_ERROR; the connection lives on', async () => {
    const { socket } = fakeConnection();
    // 7 x 16,000 bytes on a 100,000-byte stream window, in one read: the WINDOW_UPDATE queued at
    // half of it was not written yet, so the peer could not have used it.
    const data = Array.from({ length: 7 }, () => frame(T.DATA, 0, 1, Buffer.alloc(16_000)));
    socket.emit('data', Buffer.concat([START, frame(T.HEADERS, 0x4, 1, REQUEST), ...data, frame(T.PING, 0, 0, Buffer.alloc(8))]));
    await turn();
    const out = socket.output();
    expect(out.find((f) => f.type === T.RST_STREAM && f.stream === 1)?.payload.readUInt32BE(0)).toBe(H2Error.FLOW_CONTROL_ERROR);
    expect(out.some((f) => f.type === T.PING && f.flags === 1)).toBe(true);
    expect(out.some((f) => f.type === T.GOAWAY)).toBe(false);
  });

  it('ends the connection when DATA passes the connection window, summed over streams', async () => {
    const { socket, recorded } = fakeConnection({ connectionWindowBytes: 150_000 });
    const data = [1, 3, 5].flatMap((id) => [frame(T.HEADERS, 0x4, id, REQUEST), ...Array.from({ length: 4 }, () => frame(T.DATA, 0, id, Buffer.alloc(15_000)))]);
    socket.emit('data', Buffer.concat([START, ...data]));
    await turn();
    const last = socket.output().at(-1);
    expect(last?.type).toBe(T.GOAWAY);
    expect(last?.payload.readUInt32BE(4)).toBe(H2Error.FLOW_CONTROL_ERROR);
    expect(recorded.errors).toEqual([expect.stringMatching(/^3 DATA beyond the connection's flow-control window/u)]);
  });

  it('takes a peer that waits for its WINDOW_UPDATEs, however much it sends', async () => {
    const { socket, recorded } = fakeConnection({ connectionWindowBytes: 150_000 });
    socket.emit('data', Buffer.concat([START, frame(T.HEADERS, 0x4, 1, REQUEST)]));
    for (let i = 0; i < 40; i++) {
      socket.emit('data', Buffer.concat(Array.from({ length: 5 }, () => frame(T.DATA, 0, 1, Buffer.alloc(12_000)))));
      await turn();
    }
    socket.emit('data', frame(T.DATA, 0x1, 1, Buffer.alloc(0)));
    await turn();
    expect(recorded.errors).toEqual([]);
    expect(recorded.streams[0]?.data.length).toBe(40 * 60_000);
    expect(socket.output().some((f) => f.type === T.RST_STREAM)).toBe(false);
  });

  it('refuses a stream past MAX_CONCURRENT_STREAMS with REFUSED_STREAM, and takes one again once a stream closes', async () => {
    const { socket, recorded } = fakeConnection({ maxConcurrentStreams: 2 });
    socket.emit('data', Buffer.concat([START, frame(T.HEADERS, 0x4, 1, REQUEST), frame(T.HEADERS, 0x4, 3, REQUEST), frame(T.HEADERS, 0x4, 5, REQUEST)]));
    await turn();
    expect(recorded.streams.map((s) => s.id)).toEqual([1, 3]);
    expect(socket.output().find((f) => f.type === T.RST_STREAM)).toMatchObject({ stream: 5, payload: u32(H2Error.REFUSED_STREAM) });
    socket.emit('data', frame(T.DATA, 0x1, 1));
    await turn();
    socket.emit('data', frame(T.HEADERS, 0x4, 7, REQUEST));
    await turn();
    expect(recorded.streams.map((s) => s.id)).toEqual([1, 3, 7]);
    expect(recorded.errors).toEqual([]);
  });

  it('takes streams past MAX_CONCURRENT_STREAMS sent before its SETTINGS were acknowledged (RFC 9113 6.5.3: no limit until then), up to 10,000', async () => {
    // Envoy writes a burst of attempts on a connection it just opened before it reads the server's SETTINGS.
    const { socket, recorded } = fakeConnection({ maxConcurrentStreams: 2 });
    const open = (from: number, n: number): Buffer => Buffer.concat(Array.from({ length: n }, (_, i) => frame(T.HEADERS, 0x4, from + 2 * i, REQUEST)));
    socket.emit('data', Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0), open(1, 5)]));
    await turn();
    expect(recorded.streams.map((s) => s.id)).toEqual([1, 3, 5, 7, 9]);
    expect(socket.output().some((f) => f.type === T.RST_STREAM)).toBe(false);
    // Acknowledged: the limit holds for new streams (five open, two allowed).
    socket.emit('data', Buffer.concat([frame(T.SETTINGS, 1, 0), open(11, 1)]));
    await turn();
    expect(socket.output().find((f) => f.type === T.RST_STREAM)).toMatchObject({ stream: 11, payload: u32(H2Error.REFUSED_STREAM) });

    // A peer that never acknowledges: the 10,001st stream open is refused.
    const never = fakeConnection({ maxConcurrentStreams: 2 });
    never.socket.emit('data', Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0), open(1, 10_001)]));
    await turn();
    expect(never.recorded.streams).toHaveLength(10_000);
    expect(never.socket.output().filter((f) => f.type === T.RST_STREAM)).toMatchObject([{ stream: 20_001, payload: u32(H2Error.REFUSED_STREAM) }]);
  });

  it('counts toward the reset guard only streams reset before they were answered (as Envoy resets answered ones)', async () => {
    // Streams 1..39 are answered at once (status and end), 41.. never.
    const { socket, recorded } = fakeConnection({
      peerResets: { burst: 5, perSecond: 1 },
      onStream: (stream) => {
        if (stream.id < 41) stream.end(encodeHeaderBlock([[':status', '200'], ['grpc-status', '0']]));
      },
    });
    // Twenty calls answered in full, each reset by the client afterwards: no alarm.
    socket.emit('data', Buffer.concat([START, ...Array.from({ length: 20 }, (_, i) => frame(T.HEADERS, 0x4, 1 + 2 * i, REQUEST))]));
    await turn();
    expect(socket.output().filter((f) => f.type === T.HEADERS)).toHaveLength(20);
    socket.emit('data', Buffer.concat(Array.from({ length: 20 }, (_, i) => frame(T.RST_STREAM, 0, 1 + 2 * i, u32(H2Error.CANCEL)))));
    await turn();
    expect(recorded.errors).toEqual([]);
    // Six open ones reset: the sixth is one past the burst.
    socket.emit('data', Buffer.concat(Array.from({ length: 6 }, (_, i) => [frame(T.HEADERS, 0x4, 41 + 2 * i, REQUEST), frame(T.RST_STREAM, 0, 41 + 2 * i, u32(H2Error.CANCEL))]).flat()));
    await turn();
    expect(recorded.errors).toEqual([expect.stringMatching(/^11 streams reset by the peer faster than 1 a second/u)]);
  });

  it('ends only its connection, with GOAWAY INTERNAL_ERROR, when a handler throws', async () => {
    const { socket, recorded } = fakeConnection({
      onStream: () => {
        throw new Error('handler bug');
      },
    });
    expect(() => socket.emit('data', Buffer.concat([START, frame(T.HEADERS, 0x4, 1, REQUEST)]))).not.toThrow();
    await turn();
    expect(socket.output().at(-1)?.payload.readUInt32BE(4)).toBe(H2Error.INTERNAL_ERROR);
    expect(recorded.errors).toEqual(['2 internal error: handler bug']);
  });

  it('drops trailers late on a stream it reset, instead of taking them for a stream out of order', async () => {
    const { socket, recorded } = fakeConnection({ maxConcurrentStreams: 1 });
    socket.emit('data', Buffer.concat([START, frame(T.HEADERS, 0x4, 1, REQUEST), frame(T.HEADERS, 0x4, 3, REQUEST)]));
    await turn();
    socket.emit('data', frame(T.HEADERS, 0x4 | 0x1, 3, encodeHeaderBlock([['x-end', '1']])));
    await turn();
    expect(recorded.errors).toEqual([]);
  });
});

describe('property: valid input split into arbitrary reads', () => {
  /** What a client might send: calls (headers, body pieces, padding), PINGs, SETTINGS, WINDOW_UPDATEs. */
  const wire = fc.array(
    fc.record({
      kind: fc.constantFrom('call', 'call', 'ping', 'settings', 'window'),
      pieces: fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 4 }),
      pad: fc.integer({ min: 0, max: 40 }),
      value: fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/gu, '')),
      endInHeaders: fc.boolean(),
    }),
    { minLength: 1, maxLength: 12 },
  ).map((items) => {
    let id = 1;
    const frames: Buffer[] = [START];
    for (const item of items) {
      if (item.kind === 'ping') frames.push(frame(T.PING, 0, 0, Buffer.alloc(8, item.pad)));
      else if (item.kind === 'settings') frames.push(frame(T.SETTINGS, 0, 0, Buffer.from([0, 4, 0, 1, 0, 0])));
      else if (item.kind === 'window') frames.push(frame(T.WINDOW_UPDATE, 0, 0, u32(1 + item.pad)));
      else {
        const block = encodeHeaderBlock([[':method', 'POST'], [':path', '/p'], ['x-v', item.value]]);
        const endHere = item.endInHeaders && item.pieces.length === 0;
        // A header block over two frames when it can be cut.
        if (block.length > 4) frames.push(frame(T.HEADERS, endHere ? 1 : 0, id, block.subarray(0, 4)), frame(T.CONTINUATION, 4, id, block.subarray(4)));
        else frames.push(frame(T.HEADERS, 4 | (endHere ? 1 : 0), id, block));
        item.pieces.forEach((piece, i) => {
          const last = i === item.pieces.length - 1;
          const padded = Buffer.concat([Buffer.from([item.pad]), Buffer.from(piece), Buffer.alloc(item.pad)]);
          frames.push(frame(T.DATA, 0x8 | (last ? 1 : 0), id, padded));
        });
        if (!endHere && item.pieces.length === 0) frames.push(frame(T.DATA, 1, id));
        id += 2;
      }
    }
    return Buffer.concat(frames);
  });

  /** Per stream: headers, body, end; its answer (decoded blocks, DATA); and the connection's own frames. */
  async function run(bytes: Buffer, cuts: number[], yieldBetween: boolean): Promise<unknown> {
    const { socket, recorded } = fakeConnection();
    const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
    let from = 0;
    for (const to of [...points, bytes.length]) {
      if (to > from) socket.emit('data', bytes.subarray(from, to));
      from = Math.max(from, to);
      if (yieldBetween) await Promise.resolve();
    }
    await turn();
    await turn();
    const decoder = new HpackDecoder();
    const answers = new Map<number, { blocks: HeaderList[]; data: string }>();
    const own: string[] = [];
    for (const f of socket.output()) {
      if (f.stream === 0) {
        own.push(`${f.type}/${f.flags}/${f.payload.toString('hex')}`);
        continue;
      }
      const a = answers.get(f.stream) ?? { blocks: [], data: '' };
      answers.set(f.stream, a);
      if (f.type === T.HEADERS) a.blocks.push(decoder.decode(f.payload));
      else if (f.type === T.DATA) a.data += f.payload.toString('latin1');
      else a.data += `|type ${f.type}`;
    }
    return { recorded, answers: [...answers.entries()], own: own.sort() };
  }

  it('gives the same calls and answers however the bytes are cut into reads', async () => {
    await fc.assert(
      fc.asyncProperty(wire, fc.array(fc.nat(), { maxLength: 30 }), fc.boolean(), async (bytes, cuts, yieldBetween) => {
        const whole = await run(bytes, [], false);
        const split = await run(bytes, cuts, yieldBetween);
        expect(split).toEqual(whole);
        expect((whole as { recorded: Recorded }).recorded.errors).toEqual([]);
      }),
      { numRuns: 150 },
    );
  });

  it('never throws out of the socket handler on arbitrary bytes after the preface; an error ends in GOAWAY, reported once', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { minLength: 1, maxLength: 8 }), async (chunks) => {
        const { socket, recorded } = fakeConnection();
        socket.emit('data', START);
        for (const chunk of chunks) expect(() => socket.emit('data', Buffer.from(chunk))).not.toThrow();
        await turn();
        const out = socket.output();
        if (socket.ended) {
          expect(out.at(-1)?.type).toBe(T.GOAWAY);
          expect(recorded.errors).toHaveLength(1);
        } else {
          expect(out.some((f) => f.type === T.GOAWAY)).toBe(false);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('property: HPACK decoding of what Node\'s real encoder (nghttp2) sends', () => {
  let raw: Server;
  let port = 0;
  const blocks: Buffer[] = [];
  let socket: Socket | undefined;
  beforeAll(async () => {
    // A raw TCP server keeps each request's header block (HEADERS and its CONTINUATIONs).
    raw = createServer((s) => {
      socket = s;
      let data = Buffer.alloc(0);
      let pending: Buffer[] | undefined;
      s.on('data', (chunk: Buffer) => {
        data = Buffer.concat([data, chunk]);
        let at = data.subarray(0, 24).toString('latin1').startsWith('PRI * HTTP/2.0') ? 24 : 0;
        while (data.length - at >= 9 && data.length - at >= 9 + data.readUIntBE(at, 3)) {
          const length = data.readUIntBE(at, 3);
          const type = data[at + 3];
          const payload = Buffer.from(data.subarray(at + 9, at + 9 + length));
          if (type === T.HEADERS || type === T.CONTINUATION) {
            pending = type === T.HEADERS ? [payload] : [...(pending ?? []), payload];
            if ((data[at + 4]! & 0x4) !== 0) blocks.push(Buffer.concat(pending));
          }
          at += 9 + length;
        }
        data = data.subarray(at);
      });
      s.write(frame(T.SETTINGS, 0, 0));
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    port = (raw.address() as { port: number }).port;
  });
  afterAll(() => {
    socket?.destroy();
    raw.close();
  });

  it('decodes random names and values (Huffman-friendly, long, never-indexed) equal to what was sent, one table across requests', async () => {
    const name = fc.stringMatching(/^x-[a-z0-9-]{1,30}$/u);
    const value = fc.oneof(
      fc.stringMatching(/^[a-z0-9 ]{0,60}$/u),
      fc.string({ maxLength: 200 }).map((s) => s.replace(/[^\x20-\x7e]/gu, '').trim()),
      fc.integer({ min: 1000, max: 5000 }).map((n) => 'k'.repeat(n)),
      fc.stringMatching(/^[{}<>\\^~|]{0,40}$/u),
    );
    const request = fc.record({
      fields: fc.dictionary(name, value, { minKeys: 1, maxKeys: 10 }),
      sensitive: fc.boolean(),
    });
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    const sent: Record<string, string>[] = [];
    try {
      await fc.assert(
        fc.asyncProperty(request, async ({ fields, sensitive }) => {
          const headers: http2.OutgoingHttpHeaders = { ':method': 'POST', ':path': '/p', ...fields };
          if (sensitive) (headers as Record<symbol, unknown>)[http2.sensitiveHeaders] = Object.keys(fields).slice(0, 2);
          session.request(headers, { endStream: true }).on('error', () => undefined);
          sent.push({ ':method': 'POST', ':path': '/p', ...fields });
          await expect.poll(() => blocks.length).toBe(sent.length);
        }),
        { numRuns: 120 },
      );
    } finally {
      session.destroy();
    }
    const decoder = new HpackDecoder();
    blocks.forEach((block, i) => {
      const got = Object.fromEntries(decoder.decode(block).filter(([n]) => n !== ':scheme' && n !== ':authority'));
      expect(got).toEqual(sent[i]);
    });
  });
});
