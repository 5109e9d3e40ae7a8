import * as grpc from '@grpc/grpc-js';
import { Duplex, Readable, type Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { directCall, framed, framedBatch, sharedFraming, type FramedMessage } from '../../src/xds/grpc-framing.js';
import { wireBytes, type WireMessage } from '../../src/xds/wire.js';

/** A message of `count` pieces of `size` bytes each, every piece filled with its own byte. */
function piecesMessage(count: number, size: number): WireMessage {
  const pieces = Array.from({ length: count }, (_, i) => Buffer.alloc(size, i % 251));
  return { pieces, byteLength: count * size };
}

const PATH = '/test.Pieces/Stream';

/** A real grpc-js server whose stream writes `writes` (a message, framed, or a batch of them in one write), and a real client that reads the messages back. */
async function roundTrip(writes: readonly (WireMessage | readonly WireMessage[])[]): Promise<Buffer[]> {
  const messages = writes.flat();
  expect(sharedFraming()).toBe(true);
  const server = new grpc.Server();
  const service: grpc.ServiceDefinition = {
    Stream: {
      path: PATH,
      requestStream: true,
      responseStream: true,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    },
  };
  server.addService(service, {
    Stream: (call: grpc.ServerDuplexStream<Buffer, FramedMessage>) => {
      call.once('data', () => {
        for (const write of writes) call.write(Array.isArray(write) ? framedBatch(write) : framed(write as WireMessage));
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  try {
    const call = client.makeBidiStreamRequest<Buffer, Buffer>(PATH, (b) => b, (b) => b);
    const received: Buffer[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (b: Buffer) => {
        received.push(b);
        if (received.length === messages.length) resolve();
      });
      call.on('error', reject);
    });
    call.write(Buffer.from('go'));
    await done;
    call.cancel();
    return received;
  } finally {
    client.close();
    server.forceShutdown();
  }
}

describe('shared gRPC framing', () => {
  it('frames a message once, with the gRPC length prefix, and hands back the same pieces for it every time', () => {
    const message = piecesMessage(40, 1_000);
    const frame = framed(message);
    const bytes = Buffer.concat(frame.pieces as Buffer[]);
    expect(bytes.subarray(0, 5)).toEqual(Buffer.from([0, 0, 0, 40_000 >> 8, 40_000 & 0xff]));
    expect(bytes.subarray(5)).toEqual(wireBytes(message));
    // The message's own pieces, not copies of them.
    expect(frame.pieces.slice(1)).toEqual(message.pieces);
    expect(frame.pieces[1]).toBe(message.pieces[0]);
    expect(framed(message)).toBe(frame);
    expect(framed(piecesMessage(40, 1_000))).not.toBe(frame);
  });

  it('joins a small message into one piece: one write per stream', () => {
    const frame = framed(piecesMessage(3, 10));
    expect(frame.pieces).toHaveLength(1);
    expect(frame.byteLength).toBe(35);
  });

  it('frames a batch as its messages\' frames in order, once for the same messages, joined when small, in pieces when large', () => {
    const cds = piecesMessage(3, 100);
    const eds = piecesMessage(2, 50);
    const batch = framedBatch([cds, eds]);
    expect(Buffer.concat(batch.pieces as Buffer[])).toEqual(Buffer.concat([...framed(cds).pieces, ...framed(eds).pieces] as Buffer[]));
    expect(batch.byteLength).toBe(cds.byteLength + eds.byteLength + 10);
    expect(batch.pieces).toHaveLength(1);
    // The fleet's streams get the same object, so the same bytes; another pairing is its own batch.
    expect(framedBatch([cds, eds])).toBe(batch);
    expect(framedBatch([cds, piecesMessage(2, 50)])).not.toBe(batch);
    expect(framedBatch([eds, cds])).not.toBe(batch);
    expect(framedBatch([cds])).toBe(framed(cds));
    // Large: the messages' own pieces behind their prefixes, nothing copied.
    const large = piecesMessage(40, 1_000);
    const big = framedBatch([large, eds]);
    expect(big.pieces).toEqual([...framed(large).pieces, ...framed(eds).pieces]);
    expect(big.pieces[1]).toBe(large.pieces[0]);
  });

  it('delivers a batch through a real grpc-js server and client as its separate messages, byte for byte and in order', async () => {
    const batches = [[piecesMessage(3, 100), piecesMessage(2, 50)], [piecesMessage(300, 700), piecesMessage(1, 10), piecesMessage(2, 40_000)]];
    const received = await roundTrip(batches);
    const messages = batches.flat();
    expect(received.map((b) => b.length)).toEqual(messages.map((m) => m.byteLength));
    received.forEach((bytes, i) => expect(Buffer.compare(bytes, wireBytes(messages[i] as WireMessage))).toBe(0));
  });

  it('delivers messages written in pieces through a real grpc-js server and client, byte for byte and in order', async () => {
    const messages = [piecesMessage(300, 700), piecesMessage(2, 5), piecesMessage(1, 3_000_000), piecesMessage(1_000, 64)];
    const received = await roundTrip(messages);
    expect(received.map((b) => b.length)).toEqual(messages.map((m) => m.byteLength));
    received.forEach((bytes, i) => expect(Buffer.compare(bytes, wireBytes(messages[i] as WireMessage))).toBe(0));
  });
});

/** Above this a request is answered with a reply of three pieces this long. */
const LARGE = 40_000;

/** grpc-js's WriteFlags.NoCompress. */
const NO_COMPRESS = 2 as unknown as BufferEncoding;

describe('direct reads and writes of a grpc-js server call', () => {
  /**
   * A real grpc-js server whose handler reads its call directly (directCall) and echoes each
   * request's length back through the direct write; a real client sends `requests`, some
   * compressed and some larger than one HTTP/2 DATA frame, which take grpc-js's own way.
   */
  async function echo(
    requests: readonly Buffer[],
    compressEvery = 0,
    corkEvery = 0,
  ): Promise<{ received: Buffer[]; echoed: number[]; viaObjectStream: number; direct: boolean; smallFramesViaNode: number; writesViaNode: number; flushed: number[] }> {
    // DATA frames of a small request that went through Node's Readable on a server HTTP/2 stream.
    let smallFramesViaNode = 0;
    const push = Readable.prototype.push;
    Readable.prototype.push = function (this: Readable, chunk: unknown, encoding?: BufferEncoding): boolean {
      if (this.constructor.name === 'ServerHttp2Stream' && Buffer.isBuffer(chunk) && chunk.length < 1_000) smallFramesViaNode++;
      return push.call(this, chunk, encoding);
    };
    // Writes made through the Writable of a server HTTP/2 stream (a Duplex: Duplex.prototype has Writable's methods as its own).
    let writesViaNode = 0;
    const write = Duplex.prototype.write;
    Duplex.prototype.write = function (this: Duplex, ...args: unknown[]): boolean {
      if (this.constructor.name === 'ServerHttp2Stream') writesViaNode++;
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    };
    // The replies reported flushed, by request index, in the order reported.
    const flushed: number[] = [];
    const server = new grpc.Server();
    const received: Buffer[] = [];
    let viaObjectStream = 0;
    let direct = false;
    const done = new Promise<void>((resolve) => {
      server.addService(
        { Stream: { path: PATH, requestStream: true, responseStream: true, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => Buffer.from(b), responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b } },
        {
          Stream: (call: grpc.ServerDuplexStream<Buffer, FramedMessage | Buffer>) => {
            const receive = (request: Buffer): void => {
              received.push(request);
              // A large request is answered in pieces (written corked), a small one in one.
              const reply: WireMessage = request.length > LARGE ? piecesMessage(3, LARGE) : { pieces: [Buffer.from(String(request.length))], byteLength: String(request.length).length };
              const index = received.length - 1;
              // Corked, the stream's Writable holds this reply and the next ones written in the same tick: those go Node's way, in order.
              const stream = (call as unknown as { call: { stream: Writable } }).call.stream;
              if (corkEvery > 0 && index % corkEvery === 0) {
                stream.cork();
                process.nextTick(() => stream.uncork());
              }
              if (writer !== undefined) writer.write(framed(reply), () => flushed.push(index));
              else call.write(framed(reply));
              if (received.length === requests.length) resolve();
            };
            const writer = directCall(call, receive);
            direct = writer !== undefined;
            call.on('data', (request: Buffer) => {
              viaObjectStream++;
              receive(request);
            });
          },
        },
      );
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    // gzip for every request but those written with grpc-js's NoCompress flag.
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), compressEvery > 0 ? { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip } : {});
    try {
      const call = client.makeBidiStreamRequest<Buffer, Buffer>(PATH, (b) => b, (b) => b);
      const echoed: number[] = [];
      const replies = new Promise<void>((resolve, reject) => {
        call.on('data', (b: Buffer) => {
          if (b.length === 3 * LARGE) expect(b).toEqual(wireBytes(piecesMessage(3, LARGE)));
          echoed.push(b.length === 3 * LARGE ? -b.length : Number(b.toString()));
          if (echoed.length === requests.length) resolve();
        });
        call.on('error', reject);
      });
      // grpc-js reads a client write's "encoding" argument as its WriteFlags.
      requests.forEach((request, i) => (compressEvery > 0 && i % compressEvery !== 0 ? call.write(request, NO_COMPRESS) : call.write(request)));
      await Promise.all([done, replies]);
      call.cancel();
      return { received, echoed, viaObjectStream, direct, smallFramesViaNode, writesViaNode, flushed };
    } finally {
      Readable.prototype.push = push;
      Duplex.prototype.write = write;
      client.close();
      server.forceShutdown();
    }
  }

  it('hands every request on in the order sent, the short way where it can, grpc-js\'s way for large ones, and writes replies back', async () => {
    const requests = Array.from({ length: 60 }, (_, i) => Buffer.alloc(i % 10 === 5 ? 100_000 : 20 + i, i));
    const { received, echoed, viaObjectStream, direct, smallFramesViaNode } = await echo(requests);
    expect(direct).toBe(true);
    // A small request's frame is read as Node reads it, before the stream's Readable machinery
    // (but for the first, before grpc-js reads the call, and those behind a large one in grpc-js's queue).
    expect(smallFramesViaNode).toBeLessThan(requests.length / 4);
    expect(received.map((b) => b.toString('hex'))).toEqual(requests.map((b) => b.toString('hex')));
    expect(echoed).toEqual(requests.map((b) => (b.length > LARGE ? -3 * LARGE : b.length)));
    // Messages over one DATA frame (16 KiB) go through grpc-js; most go the short way.
    expect(viaObjectStream).toBeGreaterThanOrEqual(6);
    expect(viaObjectStream).toBeLessThan(requests.length / 2);
  });

  it('writes replies to the HTTP/2 stream\'s native handle, past its Writable, each reported flushed once and in order', async () => {
    // Node 24.22's native write convention (grpc-framing.ts, rawWritesChecked): the project's pinned
    // Node (scripts/ensure-node.sh) has it; another version writes through the Writable, and fails here.
    const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
    expect(major === 24 && minor >= 22, `Node ${process.versions.node}: run the tests on the pinned Node (.toolchain/bin)`).toBe(true);
    const requests = Array.from({ length: 40 }, (_, i) => Buffer.alloc(i % 10 === 5 ? 100_000 : 20 + i, i));
    const { echoed, writesViaNode, flushed } = await echo(requests);
    // Large replies (three pieces) arrive byte for byte too: written as one native writev.
    expect(echoed).toEqual(requests.map((b) => (b.length > LARGE ? -3 * LARGE : b.length)));
    expect(writesViaNode).toBe(0);
    await waitUntil(() => flushed.length === requests.length);
    expect(flushed).toEqual(requests.map((_, i) => i));
  });

  it('writes through the stream\'s Writable while it holds something, and keeps the order', async () => {
    const requests = Array.from({ length: 40 }, (_, i) => Buffer.alloc(i % 10 === 5 ? 100_000 : 20 + i, i));
    const { echoed, writesViaNode, flushed } = await echo(requests, 0, 3);
    expect(echoed).toEqual(requests.map((b) => (b.length > LARGE ? -3 * LARGE : b.length)));
    // At least the corked ones went Node's way.
    expect(writesViaNode).toBeGreaterThanOrEqual(requests.length / 3);
    await waitUntil(() => flushed.length === requests.length);
    expect(flushed).toEqual(requests.map((_, i) => i));
  });

  it('keeps the order when compressed requests go through grpc-js in between', async () => {
    const requests = Array.from({ length: 40 }, (_, i) => Buffer.alloc(30 + i, i));
    const { received, echoed, viaObjectStream, smallFramesViaNode } = await echo(requests, 4);
    // The gzipped ones (and those behind them until grpc-js's queue is empty) went Node's way.
    expect(smallFramesViaNode).toBeGreaterThanOrEqual(10);
    expect(received.map((b) => b.toString('hex'))).toEqual(requests.map((b) => b.toString('hex')));
    expect(echoed).toEqual(requests.map((b) => b.length));
    // Every fourth request is gzipped: those at least went through grpc-js.
    expect(viaObjectStream).toBeGreaterThanOrEqual(10);
    expect(viaObjectStream).toBeLessThan(requests.length);
  });
});

/** Resolves once `done()` holds, polled on the event loop (a write's flush is reported after its bytes left). */
async function waitUntil(done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((resolve) => setImmediate(resolve));
  expect(done()).toBe(true);
}
