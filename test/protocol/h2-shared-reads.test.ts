import { connect as connectTcp, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startGrpcServer, type BidiCall } from '../../src/ai-extension/grpc-server.js';
import { encodeHeaderBlock } from '../../src/h2/hpack.js';
import { createLogger } from '../../src/observability/logger.js';
import { H2GrpcConnections, plaintextServer, type H2Call, type H2Method } from '../../src/xds/h2-transport.js';
import { H2_FRAME as T, H2_PREFACE, h2Frame, parseFrames } from '../support/h2-frames.js';
import { waitFor } from '../support/wait.js';
import { grpcFrame } from '../support/xds-stream.js';

/**
 * The xDS listener's sockets read into one buffer for the process (src/h2/shared-reads.ts): the
 * reads of every connection land in the same memory, and what outlives a read (a partial frame,
 * a message spread over reads) is a copy, intact after other connections' reads overwrote it.
 */

const PATH = '/test.Echo/Collect';
const HEADERS = encodeHeaderBlock([[':method', 'POST'], [':scheme', 'http'], [':path', PATH], [':authority', 'xds'], ['content-type', 'application/grpc'], ['te', 'trailers']]);
const START = Buffer.concat([H2_PREFACE, h2Frame(T.SETTINGS, 0, 0), h2Frame(T.SETTINGS, 1, 0)]);
const END_HEADERS = 0x4;

interface Received {
  /** By connection: each message's bytes, copied as it was handed on. */
  readonly messages: Buffer[][];
  /** The memory each message was handed on in, where it lay in the read. */
  readonly memory: ArrayBufferLike[];
}

async function listen(): Promise<{ server: Server; port: number; received: Received }> {
  const received: Received = { messages: [], memory: [] };
  let calls = 0;
  const method: H2Method = {
    // A message whole in one read is read where it lies; its bytes copied here to compare later.
    decodeAt: (data, start, end) => {
      received.memory.push(data.buffer);
      return { bytes: Buffer.from(data.subarray(start, end)) };
    },
    // A message spread over reads: handed on in a buffer of its own, kept as it is.
    decode: (bytes) => ({ bytes, kept: true }),
    open: (call: H2Call) => {
      const mine: Buffer[] = [];
      received.messages[calls++] = mine;
      call.receive = (request) => mine.push((request as { bytes: Buffer }).bytes);
    },
  };
  const connections = new H2GrpcConnections({ methods: new Map([[PATH, method]]), auth: () => ({}), logger: createLogger({ level: 'silent' }) });
  const server = plaintextServer(connections);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { server, port: address.port, received };
}

/** Clients of the test running: destroyed after it, passed or failed, so the listener can close. */
const clients: Socket[] = [];

async function client(port: number): Promise<{ socket: Socket; pingAcks: () => number }> {
  const socket = connectTcp(port, '127.0.0.1');
  clients.push(socket);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  return { socket, pingAcks: () => parseFrames(Buffer.concat(chunks)).filter((f) => f.type === T.PING && (f.flags & 1) === 1).length };
}

const ping = (n: number): Buffer => h2Frame(T.PING, 0, 0, Buffer.alloc(8, n));

let server: Server | undefined;
afterEach(async () => {
  for (const socket of clients.splice(0)) socket.destroy();
  await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  server = undefined;
});

describe('xDS listener reads into one shared buffer', () => {
  it('reads of two connections land in the same memory (no buffer allocated per read)', async () => {
    const listening = await listen();
    server = listening.server;
    const a = await client(listening.port);
    const b = await client(listening.port);
    a.socket.write(Buffer.concat([START, h2Frame(T.HEADERS, END_HEADERS, 1, HEADERS), h2Frame(T.DATA, 0, 1, grpcFrame(Buffer.from('from a')))]));
    await waitFor(() => listening.received.memory.length === 1, { what: 'the message of A' });
    b.socket.write(Buffer.concat([START, h2Frame(T.HEADERS, END_HEADERS, 1, HEADERS), h2Frame(T.DATA, 0, 1, grpcFrame(Buffer.from('from b')))]));
    await waitFor(() => listening.received.memory.length === 2, { what: 'the message of B' });
    expect(listening.received.messages.map((m) => m.map((x) => x.toString()))).toEqual([['from a'], ['from b']]);
    // Before: every read in its own ArrayBuffer, libuv's 64 KiB reallocated to the bytes read.
    expect(listening.received.memory[1]).toBe(listening.received.memory[0]);
    a.socket.destroy();
    b.socket.destroy();
  });

  it('a partial frame and a message spread over reads survive another connection reading in between', async () => {
    const listening = await listen();
    server = listening.server;
    const a = await client(listening.port);
    const b = await client(listening.port);
    const long = Buffer.alloc(3000, 'x');
    long.write('head', 0);
    long.write('tail', long.length - 4);
    const message = grpcFrame(long);
    const firstHalf = h2Frame(T.DATA, 0, 1, message.subarray(0, 1000));
    const secondHalf = h2Frame(T.DATA, 0, 1, message.subarray(1000));
    // Read 1 of A: the stream, half the message, a PING (its answer says the read was taken), the
    // first 20 bytes of the next frame.
    a.socket.write(Buffer.concat([START, h2Frame(T.HEADERS, END_HEADERS, 1, HEADERS), firstHalf, ping(1), secondHalf.subarray(0, 20)]));
    await waitFor(() => a.pingAcks() === 1, { what: 'the PING of A answered' });
    // B's read overwrites the shared buffer with other bytes of the same length and more.
    b.socket.write(Buffer.concat([START, h2Frame(T.HEADERS, END_HEADERS, 1, HEADERS), h2Frame(T.DATA, 0, 1, grpcFrame(Buffer.alloc(4000, 'B')))]));
    await waitFor(() => listening.received.messages[1]?.length === 1, { what: 'the message of the second call' });
    a.socket.write(secondHalf.subarray(20));
    await waitFor(() => listening.received.messages[0]?.length === 1, { what: 'the message of the first call' });
    expect(listening.received.messages[0]?.[0]?.equals(long)).toBe(true);
    expect(listening.received.messages[1]?.[0]?.equals(Buffer.alloc(4000, 'B'))).toBe(true);
    a.socket.destroy();
    b.socket.destroy();
  });

  it('a preface split over reads is kept while another connection reads', async () => {
    const listening = await listen();
    server = listening.server;
    const a = await client(listening.port);
    const b = await client(listening.port);
    a.socket.write(START.subarray(0, 10));
    // B's whole call, then A's: A's first bytes must still be a preface.
    b.socket.write(Buffer.concat([START, ping(2), h2Frame(T.HEADERS, END_HEADERS, 1, HEADERS), h2Frame(T.DATA, 0, 1, grpcFrame(Buffer.from('PRI * HT garbage')))]));
    await waitFor(() => listening.received.messages[0]?.length === 1, { what: 'the message of the first call' });
    a.socket.write(Buffer.concat([START.subarray(10), ping(3), h2Frame(T.HEADERS, END_HEADERS, 1, HEADERS), h2Frame(T.DATA, 0, 1, grpcFrame(Buffer.from('from a')))]));
    await waitFor(() => listening.received.messages[1]?.length === 1, { what: 'the message of the second call' });
    expect(a.pingAcks()).toBe(1);
    expect(listening.received.messages[1]?.[0]?.toString()).toBe('from a');
    a.socket.destroy();
    b.socket.destroy();
  });

  it('the listener closes once its connections have (each counted down as it closes)', async () => {
    const listening = await listen();
    const a = await client(listening.port);
    a.socket.write(Buffer.concat([START, ping(4)]));
    await waitFor(() => a.pingAcks() === 1, { what: 'the PING of A answered' });
    let closed = false;
    listening.server.close(() => {
      closed = true;
    });
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);
    a.socket.destroy();
    await waitFor(() => closed, { what: 'the listener closed' });
  });
});

describe('ext_proc server reads into the shared buffer', () => {
  it('a message a handler keeps is intact after another connection read into the same place', async () => {
    const kept: Buffer[][] = [];
    const running = await startGrpcServer({
      listen: { host: '127.0.0.1', port: 0 },
      maxMessageBytes: 1 << 20,
      methods: new Map([
        [
          PATH,
          {
            kind: 'bidi',
            // As the exchange keeps request and response bodies across messages.
            handle: (call: BidiCall) => {
              const mine: Buffer[] = [];
              kept.push(mine);
              call.onMessage((message) => mine.push(message));
            },
          },
        ],
      ]),
    });
    try {
      const a = await client(running.port);
      const b = await client(running.port);
      const call = (fill: string): Buffer => Buffer.concat([START, h2Frame(T.HEADERS, END_HEADERS, 1, HEADERS), h2Frame(T.DATA, 0, 1, grpcFrame(Buffer.alloc(2000, fill)))]);
      // Reads of the same length: B's message lands where A's lay.
      a.socket.write(call('a'));
      await waitFor(() => kept[0]?.length === 1, { what: 'the message of A' });
      b.socket.write(call('b'));
      await waitFor(() => kept[1]?.length === 1, { what: 'the message of B' });
      expect(kept[0]?.[0]?.equals(Buffer.alloc(2000, 'a'))).toBe(true);
      expect(kept[1]?.[0]?.equals(Buffer.alloc(2000, 'b'))).toBe(true);
    } finally {
      for (const socket of clients.splice(0)) socket.destroy();
      await running.close();
    }
  });
});
