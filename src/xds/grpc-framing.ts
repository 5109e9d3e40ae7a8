import { createRequire } from 'node:module';
import type { WireMessage } from './wire.js';

/**
 * One gRPC frame per shared response, written as is to every stream, in pieces.
 *
 * grpc-js frames each message it sends into a new Buffer (5-byte prefix + a copy of the body,
 * BaseServerInterceptingCall.serializeMessage), so a response shared by a thousand streams
 * would still cost a thousand copies, held until each client has read its own: at 10,000
 * Backends, 15 MB per client (issue 9). And a response assembled once into one Buffer still
 * costs a copy of every resource per change: at 10,000 Backends 20 MB of fresh memory per edit,
 * enough to make V8 collect the whole heap each time (external memory drives its full GCs).
 * So a message framed here is a list of shared pieces (the gRPC prefix, the response's pieces,
 * wire.ts), and grpc-js, taught to recognize it, writes the pieces to the HTTP/2 stream one
 * after the other (corked: one writev), without copying them. Node's HTTP/2 writes a Buffer
 * without copying it.
 *
 * The same hook reads and writes ADS calls the short way (directCall): requests past grpc-js's
 * per-message queue, promise and object stream, responses past the call's object stream.
 * Every use of grpc-js internals is in this module and checked before it is relied on.
 */

/** On a framed message: it already holds the gRPC length prefix. Global, so every copy of this module agrees. */
const FRAMED = Symbol.for('switchyard.dev/grpc-framed-message');
const INSTALLED = Symbol.for('switchyard.dev/grpc-framing-installed');
/** On a grpc-js call read directly (directCall): where its requests go. */
const DIRECT_READER = Symbol.for('switchyard.dev/grpc-direct-reader');

/** A gRPC length-prefixed message as pieces, recognized by the patched grpc-js (sharedFraming). */
export interface FramedMessage {
  readonly [FRAMED]: true;
  /** The 5-byte gRPC prefix, then the message's pieces. */
  readonly pieces: readonly Buffer[];
  readonly byteLength: number;
}

/** What grpc-js's BaseServerInterceptingCall has that the patch uses; checked before each use. */
interface ServerCall {
  stream?: { write?: unknown; cork?: unknown; uncork?: unknown };
  maybeSendMetadata?: unknown;
}

type Serialize = (this: ServerCall, value: unknown) => Buffer;
type HandleDataFrame = (this: ReadingCall, data: Buffer) => void;
interface CallPrototype {
  serializeMessage?: Serialize;
  handleDataFrame?: HandleDataFrame;
  maybeSendMetadata?: unknown;
  [INSTALLED]?: true;
}

interface PieceStream {
  write(chunk: Buffer, callback: (err?: Error | null) => void): boolean;
  cork(): void;
  uncork(): void;
}

let active: boolean | undefined;

/**
 * Teaches grpc-js to write framed messages as they are, once per process. False when this
 * grpc-js has no such hook (another major version): messages are then sent as one Buffer,
 * copied per stream as grpc-js does by default.
 */
export function sharedFraming(): boolean {
  if (active !== undefined) return active;
  try {
    const require = createRequire(import.meta.url);
    const internals = require('@grpc/grpc-js/build/src/server-interceptors.js') as { BaseServerInterceptingCall?: { prototype: CallPrototype } };
    const proto = internals.BaseServerInterceptingCall?.prototype;
    const original = proto?.serializeMessage;
    if (proto === undefined || typeof original !== 'function') {
      active = false;
      return active;
    }
    if (proto[INSTALLED] !== true) {
      proto.serializeMessage = function serializeMessage(this: ServerCall, value: unknown): Buffer {
        if (isFramed(value)) return writeLeading(this, value);
        return original.call(this, value);
      };
      const handle = proto.handleDataFrame;
      if (typeof handle === 'function') {
        proto.handleDataFrame = function handleDataFrame(this: ReadingCall, data: Buffer): void {
          if (!readDirectly(this, data)) handle.call(this, data);
        };
      }
      proto[INSTALLED] = true;
    }
    active = true;
  } catch {
    active = false;
  }
  return active;
}

/**
 * What grpc-js's BaseServerInterceptingCall has that direct reads and writes use; checked per
 * call by directCall() before it marks the call, so the patch only ever sees calls that have it.
 */
interface ReadingCall {
  [DIRECT_READER]?: DirectReader;
  readonly readQueue: readonly unknown[];
  readonly decoder: { readonly readState: number };
  readonly maxReceiveMessageSize: number;
  readonly handler: { deserialize(bytes: Buffer): unknown };
  readonly callEventTracker?: { addMessageReceived(): void } | null;
  readonly maxSendMessageSize: number;
  readonly stream: PieceStream;
  checkCancelled(): boolean;
  maybeSendMetadata(): void;
  sendStatus(status: { code: number; details: string; metadata: null }): void;
  sendMessage(message: unknown, callback: () => void): void;
}

interface DirectReader {
  readonly receive: (request: unknown) => void;
  readonly idle: () => boolean;
  readonly decodeAt: DecodeAt<unknown> | undefined;
}

/**
 * Reads the message of `data` from `start` to `end` in place, when it is of a kind it knows (an
 * ACK); undefined for anything else, which the call's deserializer then reads. It must give what
 * the deserializer would, and never throw.
 */
export type DecodeAt<Request> = (data: Buffer, start: number, end: number) => Request | undefined;

/** grpc-js's DecoderState.NO_DATA: no partial message held. */
const DECODER_IDLE = 0;
/** grpc.status.INTERNAL, as grpc-js answers a request it cannot deserialize. */
const INTERNAL = 13;

/**
 * A request read the short way. grpc-js reads each message of a server call through a queue, a
 * promise (for decompression) and the call's object stream, pausing and resuming the HTTP/2
 * stream around it: at a thousand streams ACKing each push, that machinery cost more than the
 * ACKs' handling (issue 9). A DATA frame of whole, uncompressed messages, on a call whose
 * earlier messages have all been handed on, is read here: each message deserialized and handed
 * to the call's reader at once, in order. Anything else (a compressed message, a message split
 * across frames, one over the size limit, messages still queued) goes grpc-js's own way, which
 * also keeps its errors.
 */
function readDirectly(call: ReadingCall, data: Buffer): boolean {
  const reader = call[DIRECT_READER];
  if (reader === undefined || call.readQueue.length > 0 || call.decoder.readState !== DECODER_IDLE || !reader.idle()) return false;
  if (!wholeMessages(data, call.maxReceiveMessageSize)) return false;
  if (call.checkCancelled()) return true;
  // Checked whole above, so read again without a list: a frame is one ACK nearly always.
  for (let at = 0; at < data.length; ) {
    const start = at + 5;
    const end = start + data.readUInt32BE(at + 1);
    // An ACK is read where it lies: no Buffer made for each.
    let request = reader.decodeAt?.(data, start, end);
    if (request === undefined) {
      try {
        request = call.handler.deserialize(data.subarray(start, end));
      } catch {
        call.sendStatus({ code: INTERNAL, details: 'Error deserializing request', metadata: null });
        return true;
      }
    }
    at = end;
    call.callEventTracker?.addMessageReceived();
    reader.receive(request);
  }
  return true;
}

/** Whether `data` holds only whole, uncompressed gRPC messages within `max` bytes each (-1: no limit), at least one. */
function wholeMessages(data: Buffer, max: number): boolean {
  let at = 0;
  while (at < data.length) {
    if (data.length - at < 5 || data[at] !== 0) return false;
    const length = data.readUInt32BE(at + 1);
    if ((max !== -1 && length > max) || at + 5 + length > data.length) return false;
    at += 5 + length;
  }
  return at > 0;
}

/** A server call's direct way out (directCall). */
export interface DirectCall {
  /**
   * Writes a framed message to the call's HTTP/2 stream as grpc-js's sendMessage does (headers
   * first), past the call's object stream and grpc-js's per-message wrapping; `flushed` once
   * HTTP/2 has taken it.
   */
  write(message: FramedMessage, flushed: () => void): void;
}

/**
 * Reads and writes `call` (a grpc-js server duplex call) the short way when this grpc-js allows:
 * its requests, deserialized, go to `receive` in order (while the call's own object stream
 * still holds requests not yet handed on, those go first and the next ones take grpc-js's way
 * too). Undefined when grpc-js does not look as expected: the call then works as grpc-js does
 * by default.
 *
 * Writing past the call's object stream loses nothing it gave: it is a buffer of up to 16
 * messages, and an ADS stream never has more than one response per type in flight.
 */
export function directCall<Request>(call: { readonly readableLength: number }, receive: (request: Request) => void, decodeAt?: DecodeAt<Request>): DirectCall | undefined {
  if (!sharedFraming()) return undefined;
  const base = (call as { call?: unknown }).call;
  if (!isReadingCall(base)) return undefined;
  // The call's deserializer made the request: it is a Request.
  base[DIRECT_READER] = { receive: receive as (request: unknown) => void, idle: () => call.readableLength === 0, decodeAt };
  readBeforeStream(base);
  // The write callback for `flushed`: a stream passes the same function with every write, so one
  // is made per stream, not per write.
  let lastFlushed: (() => void) | undefined;
  let written: (err?: Error | null) => void = ignore;
  const raw = rawWriter(base);
  return {
    write: (message, flushed) => {
      // A limit on what is sent (none is set by default): grpc-js's own way checks it and says so.
      if (base.maxSendMessageSize !== -1) {
        base.sendMessage(message, flushed);
        return;
      }
      if (base.checkCancelled()) return;
      // The response headers lead, as grpc-js's sendMessage sends them.
      base.maybeSendMetadata();
      if (raw?.(message.pieces, flushed) === true) return;
      const last = writeLeadingPieces(base.stream, message.pieces);
      if (flushed !== lastFlushed) {
        lastFlushed = flushed;
        written = (err) => {
          // grpc-js's answer to a failed write, as in its sendMessage.
          if (err !== null && err !== undefined) base.sendStatus({ code: INTERNAL, details: 'Internal server error', metadata: null });
          else flushed();
        };
      }
      base.stream.write(last, written);
    },
  };
}

/**
 * What the native handle of a Node HTTP/2 stream has that rawWriter() uses: StreamBase's writes,
 * as Node 24.22's stream_base_commons calls them (no request object passed in; a number when the
 * write finished at once, else the request, whose `oncomplete` the write's end calls).
 */
interface NativeStream {
  writeBuffer(req: null, data: Buffer): number | NativeWrite;
  writev(req: null, chunks: readonly Buffer[], allBuffers: true): number | NativeWrite;
}

interface NativeWrite {
  oncomplete?: (this: NativeWrite, status: number) => void;
  /** Kept alive until the write is done, as Node keeps what it writes. */
  buffer?: unknown;
  /** Set when the write ended before `oncomplete` was there. */
  writeStatus?: number | null;
  [RAW_DONE]?: (status: number) => void;
}

/** On a native write made by rawWriter(): what its end calls. */
const RAW_DONE = Symbol('switchyard.dev/raw-write-done');

/** What a Node HTTP/2 stream has that rawWriter() checks before each write. */
interface WritableHttp2Stream {
  readonly writableLength: number;
  readonly writableCorked: number;
  readonly writableEnded: boolean;
  readonly destroyed: boolean;
  readonly headersSent: boolean;
  readonly pending: boolean;
}

/**
 * The Node versions whose HTTP/2 streams rawWriter() has been checked against: the native write
 * calling convention (writeBuffer(null, data) returning a number or the request) and what
 * Http2Stream's own write does around it (lib/internal/http2/core.js, kWriteGeneric: a stream
 * timeout refreshed, which grpc-js never sets; write-queue sizes for bufferSize and a session
 * timeout, neither used). An older Node takes a request made in JS, and a wrong guess would abort
 * the process, so any other version writes the usual way.
 */
function rawWritesChecked(version: string): boolean {
  const [major, minor] = version.split('.').map(Number) as [number, number];
  return major === 24 && minor >= 22;
}

/** The symbol under which Node keeps an Http2Stream's native handle, once found. */
let handleKey: symbol | null | undefined;

function nativeHandleKey(stream: object): symbol | undefined {
  if (handleKey === undefined) {
    handleKey = rawWritesChecked(process.versions.node) ? (Object.getOwnPropertySymbols(stream).find((key) => key.description === 'kHandle') ?? null) : null;
  }
  return handleKey ?? undefined;
}

/**
 * Writes a framed message's pieces straight to the native handle of `call`'s HTTP/2 stream, past
 * the stream's Writable machinery: per write, Node's Http2Stream queues a process.nextTick (its
 * end-of-stream check), makes a closure, and on completion runs four layers of callbacks (the
 * request's, the stream's, the Writable's and its after-write tick) before `flushed`. At 50
 * Backends x 1,000 delta streams that machinery was about 30% of the push's JavaScript (V8 profile:
 * 17.5 -> 12.1 ms per edit without it) and serve's CPU per edit until idle fell about a tenth
 * (schedstat, issue 9). The
 * native queue is the one Http2Stream writes to itself, so order with grpc-js's own writes is
 * kept as long as none waits in the Writable: only while the stream's Writable holds nothing,
 * is neither corked nor ended, and its response headers are out; otherwise (or on a Node not
 * checked, rawWritesChecked) false, and the caller writes the usual way. `flushed` is called
 * once the bytes have left for the socket, as the Writable's callback would be; a failed write
 * ends the call as grpc-js does.
 */
function rawWriter(call: ReadingCall): ((pieces: readonly Buffer[], flushed: () => void) => boolean) | undefined {
  const stream = call.stream as unknown as WritableHttp2Stream & Record<symbol, unknown>;
  const key = nativeHandleKey(stream);
  if (key === undefined || !isNativeStream(stream[key])) return undefined;
  let lastFlushed: (() => void) | undefined;
  let done: (status: number) => void = ignore;
  return (pieces, flushed) => {
    if (stream.writableLength !== 0 || stream.writableCorked !== 0 || stream.writableEnded || stream.destroyed || !stream.headersSent || stream.pending) return false;
    const handle = stream[key];
    if (!isNativeStream(handle)) return false;
    if (flushed !== lastFlushed) {
      lastFlushed = flushed;
      done = (status) => {
        // grpc-js's answer to a failed write, as in its sendMessage.
        if (status < 0) call.sendStatus({ code: INTERNAL, details: 'Internal server error', metadata: null });
        else flushed();
      };
    }
    const result = pieces.length === 1 ? handle.writeBuffer(null, pieces[0] as Buffer) : handle.writev(null, pieces, true);
    if (typeof result === 'number') {
      done(result);
      return true;
    }
    result.buffer = pieces.length === 1 ? pieces[0] : pieces;
    result[RAW_DONE] = done;
    result.oncomplete = rawWriteDone;
    const status = result.writeStatus;
    if (status !== null && status !== undefined) {
      result.writeStatus = null;
      rawWriteDone.call(result, status);
    }
    return true;
  };
}

/** A native write's end: one function for every write. */
function rawWriteDone(this: NativeWrite, status: number): void {
  const done = this[RAW_DONE];
  this[RAW_DONE] = undefined;
  this.buffer = undefined;
  done?.(status);
}

function isNativeStream(value: unknown): value is NativeStream {
  const handle = value as Partial<Record<keyof NativeStream, unknown>> | undefined;
  return typeof handle === 'object' && handle !== null && typeof handle.writeBuffer === 'function' && typeof handle.writev === 'function';
}

/** What a Node HTTP/2 stream has that readBeforeStream() uses; checked before it is relied on. */
interface PushedStream {
  push(chunk: unknown, encoding?: BufferEncoding): boolean;
  readonly readableFlowing: boolean | null;
  readonly readableLength: number;
  listenerCount(event: string): number;
}

/**
 * Hands the DATA frames of `call`'s HTTP/2 stream to readDirectly() as Node reads them, before
 * they enter the stream's Readable machinery (Readable.push, its 'data' event, grpc-js's
 * listener): that machinery also queued a process.nextTick per frame (maybeReadMore), about a
 * fifth of what serve allocated per change at a thousand streams, each ACKing twice (issue 9).
 * Only while the stream flows with nothing buffered and grpc-js is its one reader: then Node
 * would emit the frame to grpc-js at once, and grpc-js's own handler would take the same
 * direct way. Anything else (a paused stream, a frame readDirectly leaves to grpc-js, the end)
 * goes through Node's push as before. A frame taken here tells Node to keep reading, as its
 * push would have: HTTP/2 flow control is unchanged.
 */
function readBeforeStream(call: ReadingCall): void {
  const stream = call.stream as Partial<Record<keyof PushedStream, unknown>>;
  if (typeof stream.push !== 'function' || typeof stream.listenerCount !== 'function' || typeof stream.readableLength !== 'number' || !('readableFlowing' in stream)) return;
  const h2 = stream as unknown as PushedStream;
  const push = h2.push;
  h2.push = function pushDirectly(this: PushedStream, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (Buffer.isBuffer(chunk) && h2.readableFlowing === true && h2.readableLength === 0 && h2.listenerCount('data') === 1 && readDirectly(call, chunk)) return true;
    return push.call(this, chunk, encoding);
  };
}

function isReadingCall(value: unknown): value is ReadingCall {
  if (typeof value !== 'object' || value === null) return false;
  const call = value as Partial<Record<keyof ReadingCall, unknown>>;
  const decoder = call.decoder as { readState?: unknown } | undefined;
  const handler = call.handler as { deserialize?: unknown } | undefined;
  return (
    Array.isArray(call.readQueue) &&
    typeof decoder?.readState === 'number' &&
    typeof call.maxReceiveMessageSize === 'number' &&
    typeof handler?.deserialize === 'function' &&
    typeof call.checkCancelled === 'function' &&
    typeof call.sendStatus === 'function' &&
    typeof call.sendMessage === 'function' &&
    typeof call.maybeSendMetadata === 'function' &&
    typeof call.maxSendMessageSize === 'number' &&
    isPieceStream(call.stream) &&
    // Only calls of the patched class take the direct way in.
    (Object.getPrototypeOf(value) as CallPrototype | null)?.[INSTALLED] === true
  );
}

function isFramed(value: unknown): value is FramedMessage {
  return typeof value === 'object' && value !== null && (value as { [FRAMED]?: unknown })[FRAMED] === true;
}

/**
 * Called by grpc-js's sendMessage, which then checks the size of what this returns and writes
 * it to the HTTP/2 stream with the message's callback: so every piece but the last is written
 * here first (after the response headers, which must lead), and the last is returned. A call
 * that does not look as expected gets the pieces joined into one Buffer instead.
 */
function writeLeading(call: ServerCall, message: FramedMessage): Buffer {
  const { pieces } = message;
  const stream = call.stream;
  if (pieces.length === 1) return pieces[0] as Buffer;
  if (!isPieceStream(stream) || typeof call.maybeSendMetadata !== 'function') return Buffer.concat(pieces as Buffer[], message.byteLength);
  (call.maybeSendMetadata as () => void).call(call);
  return writeLeadingPieces(stream, pieces);
}

/**
 * Writes every piece but the last to `stream`, corked until the last one (written by the caller
 * right after this returns) is queued too: one writev. A failed write fails the last one too,
 * whose callback turns it into the call's status. Returns the last piece.
 */
function writeLeadingPieces(stream: PieceStream, pieces: readonly Buffer[]): Buffer {
  if (pieces.length > 1) {
    stream.cork();
    process.nextTick(() => stream.uncork());
    for (let i = 0; i < pieces.length - 1; i++) stream.write(pieces[i] as Buffer, ignore);
  }
  return pieces[pieces.length - 1] as Buffer;
}

function isPieceStream(value: unknown): value is PieceStream {
  const stream = value as Partial<Record<keyof PieceStream, unknown>> | undefined;
  return typeof stream === 'object' && stream !== null && typeof stream.write === 'function' && typeof stream.cork === 'function' && typeof stream.uncork === 'function';
}

function ignore(): void {}

/** A message this small is framed into one Buffer: one write per stream beats a few. */
const JOIN_BELOW_BYTES = 16 * 1024;

const framedOnce = new WeakMap<WireMessage, FramedMessage>();

/**
 * `message` as one gRPC frame (uncompressed, length-prefixed: gRPC over HTTP/2,
 * "Length-Prefixed-Message"), the same object for the same message for as long as it lives.
 */
export function framed(message: WireMessage): FramedMessage {
  let frame = framedOnce.get(message);
  if (frame === undefined) {
    const prefix = Buffer.allocUnsafe(5);
    prefix.writeUInt8(0, 0);
    prefix.writeUInt32BE(message.byteLength, 1);
    const byteLength = message.byteLength + 5;
    const pieces = byteLength < JOIN_BELOW_BYTES ? [Buffer.concat([prefix, ...message.pieces], byteLength)] : [prefix, ...message.pieces];
    frame = { [FRAMED]: true, pieces, byteLength };
    framedOnce.set(message, frame);
  }
  return frame;
}

/** Batches kept per first message: the one the fleet shares, and a few for streams that pair it otherwise. */
const BATCHES_PER_MESSAGE = 4;

const batchesOnce = new WeakMap<WireMessage, { rest: readonly WireMessage[]; frame: FramedMessage }[]>();
const NO_BATCHES: readonly { rest: readonly WireMessage[]; frame: FramedMessage }[] = [];

/**
 * `messages` as consecutive gRPC frames in one FramedMessage, written to a stream in one go: a
 * client that is sent a CDS update and the assignments it then waits for gets them in one
 * HTTP/2 write (one socket write, one write callback), not one each. The same messages in the
 * same order give the same object, so a batch shared by a fleet is assembled, and a small one
 * joined, once.
 */
export function framedBatch(messages: readonly WireMessage[]): FramedMessage {
  const first = messages[0];
  if (first === undefined) throw new Error('framedBatch: no messages');
  if (messages.length === 1) return framed(first);
  const known = batchesOnce.get(first) ?? NO_BATCHES;
  // Indexed: once per stream per push, where an iterator would be made each time.
  for (let i = 0; i < known.length; i++) {
    const batch = known[i] as { rest: readonly WireMessage[]; frame: FramedMessage };
    if (sameRest(batch.rest, messages)) return batch.frame;
  }
  const frames = messages.map(framed);
  const byteLength = frames.reduce((sum, frame) => sum + frame.byteLength, 0);
  const pieces = frames.flatMap((frame) => frame.pieces);
  const frame: FramedMessage = { [FRAMED]: true, pieces: byteLength < JOIN_BELOW_BYTES ? [Buffer.concat(pieces as Buffer[], byteLength)] : pieces, byteLength };
  batchesOnce.set(first, [{ rest: messages.slice(1), frame }, ...known.slice(0, BATCHES_PER_MESSAGE - 1)]);
  return frame;
}

function sameRest(rest: readonly WireMessage[], messages: readonly WireMessage[]): boolean {
  if (rest.length !== messages.length - 1) return false;
  for (let i = 0; i < rest.length; i++) if (rest[i] !== messages[i + 1]) return false;
  return true;
}

/** A framed message as one Buffer, for a grpc-js without the hook (copied once per message, then per stream by grpc-js). */
export function joined(message: WireMessage): Buffer {
  let bytes = joinedOnce.get(message);
  if (bytes === undefined) {
    bytes = message.pieces.length === 1 ? (message.pieces[0] as Buffer) : Buffer.concat(message.pieces as Buffer[], message.byteLength);
    joinedOnce.set(message, bytes);
  }
  return bytes;
}

const joinedOnce = new WeakMap<WireMessage, Buffer>();
