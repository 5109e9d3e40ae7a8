import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { H2Connection, type H2Stream } from '../../src/h2/h2-connection.js';
import { encodeHeaderBlock } from '../../src/h2/hpack.js';
import { H2_FRAME as T, H2_PREFACE as PREFACE, h2Frame as frame, parseFrames, type H2ReadFrame } from '../support/h2-frames.js';

/** A socket stand-in that keeps each write apart: how many buffers a response took is what is judged. */
class CountingSocket extends EventEmitter {
  readonly writes: Buffer[] = [];
  writableLength = 0;
  write(b: Buffer, callback?: () => void): boolean {
    this.writes.push(Buffer.from(b));
    callback?.();
    return true;
  }
  cork(): void {}
  uncork(): void {}
  end(): void {}
  destroy(): void {}
  pause(): void {}
  resume(): void {}
  isPaused(): boolean {
    return false;
  }
}

const REQUEST = encodeHeaderBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/test.Echo/Echo'], [':authority', 'x'], ['content-type', 'application/grpc']]);
const WINDOW = 64 * 1024 * 1024;

/** A client's start as Envoy's or gRPC-Go's with a large window: SETTINGS (initial window), the connection window raised, stream 1 opened. */
function clientStart(): Buffer {
  const settings = Buffer.alloc(6);
  settings.writeUInt16BE(0x4, 0);
  settings.writeUInt32BE(WINDOW, 2);
  const increment = Buffer.alloc(4);
  increment.writeUInt32BE(WINDOW - 65_535, 0);
  return Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0, settings), frame(T.SETTINGS, 1, 0), frame(T.WINDOW_UPDATE, 0, 0, increment), frame(T.HEADERS, 0x4, 1, REQUEST)]);
}

/** A connection on a CountingSocket whose client opened stream 1; the stream, once opened. */
function connection(): { socket: CountingSocket; stream: H2Stream } {
  const socket = new CountingSocket();
  let opened: H2Stream | undefined;
  new H2Connection(socket as unknown as Socket, 'fake', {
    streamWindowBytes: 1024 * 1024,
    connectionWindowBytes: 16 * 1024 * 1024,
    maxHeaderBlockBytes: 64 * 1024,
    maxHeaderListBytes: 64 * 1024,
    maxConcurrentStreams: 100,
    peerResets: { burst: 1000, perSecond: 1000 },
    onStream: (stream) => {
      opened = stream;
    },
  });
  socket.emit('data', clientStart());
  if (opened === undefined) throw new Error('stream 1 not opened');
  return { socket, stream: opened };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Writes `chunks` to the stream, lets the connection flush, and returns the socket writes that carried them. */
async function send(c: { socket: CountingSocket; stream: H2Stream }, chunks: readonly Buffer[]): Promise<Buffer[]> {
  await turn();
  const before = c.socket.writes.length;
  c.stream.respond(encodeHeaderBlock([[':status', '200']]));
  for (const chunk of chunks) c.stream.write(chunk);
  c.stream.flush();
  await turn();
  return c.socket.writes.slice(before);
}

function dataFrames(writes: readonly Buffer[]): H2ReadFrame[] {
  return parseFrames(Buffer.concat(writes)).filter((f) => f.type === T.DATA);
}

describe('H2Connection, a large body written whole to many streams (a fleet shares one xDS response)', () => {
  // The same pieces a fleet's streams are given (grpc-framing.ts: a shared response's prefix and
  // body, then its nonce): 600 KB, 37 frames of 16 KiB.
  const prefix = Buffer.from([0, 0, 9, 0x27, 0xc0]);
  const body = Buffer.alloc(600_000 - 5 - 4, 7);
  body.write('first', 0);
  body.write('last', body.length - 4);
  const nonce = Buffer.from('n-01');
  const pieces = [prefix, body, nonce];

  it('frames it once for the streams after the first: the same frames, in one socket write each', async () => {
    const streams = [connection(), connection(), connection()];
    const written: Buffer[][] = [];
    for (const c of streams) written.push(await send(c, pieces));
    const framesOf = written.map(dataFrames);
    const expected = Buffer.concat(pieces);
    for (const frames of framesOf) {
      expect(frames.map((f) => f.payload.length)).toEqual([...Array.from({ length: 36 }, () => 16_384), 600_000 - 36 * 16_384]);
      expect(frames.every((f) => f.stream === 1 && f.flags === 0)).toBe(true);
      expect(Buffer.concat(frames.map((f) => f.payload)).equals(expected)).toBe(true);
    }
    // The first stream's frames are headers and views of the pieces; the later ones a single
    // buffer beside the response headers.
    expect(written[0]?.length).toBeGreaterThan(36);
    expect(written[1]?.length).toBe(2);
    expect(written[2]?.length).toBe(2);
  });

  it('frames other pieces, or the same pieces cut otherwise, on their own', async () => {
    const [a, b] = [connection(), connection()];
    await send(a, pieces);
    // The same bytes in other Buffers: not the shared framing, and still the same frames.
    const copies = pieces.map((piece) => Buffer.from(piece));
    const writes = await send(b, copies);
    expect(writes.length).toBeGreaterThan(36);
    expect(Buffer.concat(dataFrames(writes).map((f) => f.payload)).equals(Buffer.concat(pieces))).toBe(true);
  });
});
