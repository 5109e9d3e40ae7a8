import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { framed, framedBatch, sharedFraming, type FramedMessage } from '../../src/xds/grpc-framing.js';
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
