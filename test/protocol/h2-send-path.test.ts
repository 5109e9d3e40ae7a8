import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { H2Connection, type H2Stream } from '../../src/h2/h2-connection.js';
import { encodeHeaderBlock } from '../../src/h2/hpack.js';
import { H2_FRAME as T, H2_PREFACE as PREFACE, h2Frame as frame, parseFrames } from '../support/h2-frames.js';

/**
 * What the HTTP/2 connection hands its socket when a fan-out writes one payload to many streams
 * (an xDS push: the same response bytes to every Envoy, each on a connection of its own, stream
 * 1): one DATA frame built once and written to every socket, no write callback where the socket
 * takes the bytes at once, and a stream's `onSent` still run only once the socket has taken them.
 */

const REQUEST = encodeHeaderBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/test.Push/Push'], [':authority', 'x'], ['content-type', 'application/grpc']]);
const START = Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0), frame(T.SETTINGS, 1, 0)]);

interface Write {
  bytes: Buffer;
  withCallback: boolean;
}

/**
 * A socket stand-in that records each write as given (the Buffer object itself). With `holding`,
 * it keeps what it is written (writableLength) until release(), as a kernel buffer that is full.
 */
class RecordingSocket extends EventEmitter {
  readonly writes: Write[] = [];
  writableLength = 0;
  holding = false;
  private readonly callbacks: ((err?: Error | null) => void)[] = [];
  write(bytes: Buffer, callback?: (err?: Error | null) => void): boolean {
    this.writes.push({ bytes, withCallback: callback !== undefined });
    if (this.holding) {
      this.writableLength += bytes.length;
      if (callback !== undefined) this.callbacks.push(callback);
    } else if (callback !== undefined) process.nextTick(callback);
    return true;
  }
  /** The held bytes leave: their write callbacks run, as Node runs them when a pending write completes. */
  release(): void {
    this.holding = false;
    this.writableLength = 0;
    for (const callback of this.callbacks.splice(0)) callback(null);
  }
  cork(): void {}
  uncork(): void {}
  end(): void {}
  destroy(): void {
    this.emit('close');
  }
  pause(): void {}
  resume(): void {}
  isPaused(): boolean {
    return false;
  }
  /** DATA frames written so far, with the Buffer each was part of. */
  dataWrites(): { write: Write; stream: number; payload: Buffer }[] {
    return this.writes.flatMap((write) => parseFrames(write.bytes).filter((f) => f.type === T.DATA).map((f) => ({ write, stream: f.stream, payload: f.payload })));
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A connection on a RecordingSocket whose client opened stream `id`; the server's stream, with its headers sent. */
async function openStream(id = 1): Promise<{ socket: RecordingSocket; stream: H2Stream }> {
  const socket = new RecordingSocket();
  let opened: H2Stream | undefined;
  new H2Connection(socket as unknown as Socket, 'recording', {
    streamWindowBytes: 1 << 20,
    connectionWindowBytes: 1 << 24,
    maxHeaderBlockBytes: 64 * 1024,
    maxHeaderListBytes: 64 * 1024,
    maxConcurrentStreams: 100,
    peerResets: { burst: 1000, perSecond: 1000 },
    onStream: (stream) => {
      opened = stream;
      stream.respond(encodeHeaderBlock([[':status', '200']]));
      stream.flush();
    },
  });
  socket.emit('data', Buffer.concat([START, frame(T.HEADERS, 0x4, id, REQUEST)]));
  await turn();
  if (opened === undefined) throw new Error('no stream opened');
  return { socket, stream: opened };
}

describe('the HTTP/2 send path of a fan-out', () => {
  it('writes one payload to the streams of many connections as one DATA frame built once, framed anew for another stream id', async () => {
    const payload = Buffer.from('the same response for every stream');
    const fleet = await Promise.all([openStream(1), openStream(1), openStream(1), openStream(3)]);
    for (const { socket, stream } of fleet) {
      socket.writes.length = 0;
      stream.write(payload);
      stream.flush();
    }
    await turn();
    const written = fleet.map(({ socket }) => socket.dataWrites());
    for (const [i, data] of written.entries()) {
      expect(data).toHaveLength(1);
      expect(data[0]?.stream).toBe(i < 3 ? 1 : 3);
      expect(data[0]?.payload.equals(payload)).toBe(true);
    }
    // The streams of id 1 were handed the very same Buffer: no copy of the payload per stream.
    expect(written[1]?.[0]?.write.bytes).toBe(written[0]?.[0]?.write.bytes);
    expect(written[2]?.[0]?.write.bytes).toBe(written[0]?.[0]?.write.bytes);
    expect(written[3]?.[0]?.write.bytes).not.toBe(written[0]?.[0]?.write.bytes);
  });

  it('writes without a callback to a socket that takes everything at once, and runs onSent before the next turn', async () => {
    const { socket, stream } = await openStream();
    socket.writes.length = 0;
    const order: string[] = [];
    stream.write(Buffer.from('one response'), () => order.push('sent'));
    stream.flush();
    await Promise.resolve();
    order.push('promise job');
    await turn();
    // The response headers and the DATA, under one cork.
    expect(socket.dataWrites()).toHaveLength(1);
    expect(socket.writes.map((w) => w.withCallback)).toEqual(socket.writes.map(() => false));
    expect(order).toEqual(['sent', 'promise job']);
  });

  it('runs onSent only once a socket that kept part of the write has written it', async () => {
    const { socket, stream } = await openStream();
    socket.writes.length = 0;
    socket.holding = true;
    let sent = 0;
    stream.write(Buffer.from('a response the kernel could not take at once'), () => sent++);
    stream.flush();
    await turn();
    await turn();
    expect(socket.dataWrites()).toHaveLength(1);
    expect(sent).toBe(0);
    socket.release();
    expect(sent).toBe(1);
    // The next write, to a socket that takes it at once, reports at once, and the first not again.
    stream.write(Buffer.from('the next one'), () => sent++);
    stream.flush();
    await turn();
    expect(sent).toBe(2);
  });

  it('a socket still holding earlier bytes: the next write carries the callback, and onSent waits for it', async () => {
    const { socket, stream } = await openStream();
    socket.holding = true;
    stream.write(Buffer.from('first'));
    stream.flush();
    await turn();
    socket.holding = true;
    socket.writes.length = 0;
    let sent = 0;
    stream.write(Buffer.from('second'), () => sent++);
    stream.flush();
    await turn();
    expect(socket.writes.at(-1)?.withCallback).toBe(true);
    expect(sent).toBe(0);
    socket.release();
    expect(sent).toBe(1);
  });
});
