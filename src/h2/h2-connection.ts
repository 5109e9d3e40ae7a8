import type { Socket } from 'node:net';
import { HeaderListTooLarge, HpackDecoder, HpackError, type HeaderList } from './hpack.js';
import { routeSharedReads } from './shared-reads.js';

/**
 * The server end of one HTTP/2 connection (RFC 9113), written for the AI extension's gRPC
 * service (Envoy opens an ext_proc stream per attempt and exchanges a few small messages on it),
 * and since serves the xDS server's ADS and LRS streams too (src/xds/h2-transport.ts: server
 * PINGs for keepalive, GOAWAY on shutdown, a callback once a stream's DATA has left).
 *
 * Why not node:http2: per stream it builds a headers object, a Duplex stream and its events,
 * nextTicks and native callbacks; for a five-message call that was about a third of the
 * extension's time per attempt (src/ai-extension/README.md, "Cost per attempt"). Here a socket
 * read is split into frames in one pass, each stream is a small object with three callbacks, and
 * what the streams were given leaves in one socket write (see flushSoon).
 *
 * What it does not do: server push, priorities (PRIORITY is read and ignored), TLS itself (a
 * caller that serves TLS hands it node:tls's socket), h2c upgrade from HTTP/1.1, extended CONNECT.
 */

/** Written behind a write that left data in the socket's buffer: its callback runs once that data has left. */
const NOTHING = Buffer.alloc(0);
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER = 9;

const enum FrameType {
  DATA = 0x0,
  HEADERS = 0x1,
  PRIORITY = 0x2,
  RST_STREAM = 0x3,
  SETTINGS = 0x4,
  PUSH_PROMISE = 0x5,
  PING = 0x6,
  GOAWAY = 0x7,
  WINDOW_UPDATE = 0x8,
  CONTINUATION = 0x9,
}

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

export const H2Error = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  REFUSED_STREAM: 0x7,
  ENHANCE_YOUR_CALM: 0xb,
} as const;

/** The name of an error code, for logs (RFC 9113 7). */
export function h2ErrorName(code: number): string {
  for (const [name, value] of Object.entries(H2Error)) if (value === code) return name;
  return `0x${code.toString(16)}`;
}

const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

/** The protocol's defaults, until the peer's SETTINGS say otherwise. */
const DEFAULT_WINDOW = 65_535;
const DEFAULT_MAX_FRAME = 16_384;
const MAX_WINDOW = 2 ** 31 - 1;
/** Unsent bytes queued on the socket past which the connection stops reading. */
const PAUSE_ABOVE_BYTES = 16 * 1024 * 1024;
/** This end's HPACK table (SETTINGS_HEADER_TABLE_SIZE, the protocol's default, announced anyway). */
const HEADER_TABLE_BYTES = 4096;
/**
 * CONTINUATION frames one header block may span. Envoy (nghttp2) sends a block in one frame up
 * to 16 KiB; a flood of empty CONTINUATIONs (CVE-2024-27316 class) grows no byte count.
 */
const MAX_CONTINUATIONS = 32;
/** Streams this end reset whose late frames are ignored (RFC 9113 5.1, "closed"), newest kept. */
const REMEMBERED_RESETS = 1024;
/**
 * Answers the peer's frames call for (PING and SETTINGS acknowledged, streams refused or reset for
 * its faults) that may wait unsent behind a socket the peer does not read; one more ends the
 * connection with ENHANCE_YOUR_CALM. The count Envoy and nghttp2 use for the same flood
 * (max_outbound_control_frames, max_outbound_ack): a client that reads sees each read's answers
 * leave with that read, and Envoy sends a PING every 15 s and SETTINGS once.
 */
const MAX_UNSENT_CONTROL_ANSWERS = 1000;
/**
 * Streams open at once before the peer has acknowledged this end's SETTINGS. Until then it may
 * count on the protocol's initial value, no limit (RFC 9113 6.5.3): Envoy 1.40 puts a burst of
 * attempts on a connection it has just opened before it reads the server's SETTINGS, and answers
 * each stream refused then with a failed ext_proc stream, a 503 to the client
 * (test/e2e/ai-extension-streams.test.ts). Bounded still: a peer that never acknowledges gets no
 * more than this.
 */
const MAX_STREAMS_BEFORE_SETTINGS_ACK = 10_000;

export interface H2ConnectionOptions {
  /** Receive window offered per stream (SETTINGS_INITIAL_WINDOW_SIZE). */
  streamWindowBytes: number;
  /** Receive window of the connection, raised to at start. */
  connectionWindowBytes: number;
  /** A header block (HEADERS and its CONTINUATIONs) larger than this ends the connection. */
  maxHeaderBlockBytes: number;
  /**
   * Decoded header list (RFC 9113 6.5.2: names, values and 32 per field) larger than this ends the
   * connection: a small block can name a dynamic-table entry thousands of times (an HPACK bomb).
   * Announced as SETTINGS_MAX_HEADER_LIST_SIZE.
   */
  maxHeaderListBytes: number;
  /** Streams open at once (SETTINGS_MAX_CONCURRENT_STREAMS); one more is refused (REFUSED_STREAM). */
  maxConcurrentStreams: number;
  /**
   * Rapid-reset guard (CVE-2023-44487): resets by the peer of streams not yet answered, as a
   * token bucket of `burst` refilled at `perSecond`; past it, GOAWAY ENHANCE_YOUR_CALM.
   */
  peerResets: { burst: number; perSecond: number };
  /** Clock for the reset guard (ms). */
  now?: () => number;
  /** The connection ended with an error of either side: once per connection, no header values. */
  onConnectionError?(code: number, reason: string, by: 'local' | 'peer'): void;
  /** A new stream with its request headers. */
  onStream(stream: H2Stream, headers: HeaderList): void;
  /** The peer acknowledged a PING this end sent (ping()). */
  onPingAck?(): void;
}

/** A connection error: the connection ends with GOAWAY carrying the code. */
class ConnectionError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** One request stream, as the server sees it. */
export class H2Stream {
  /**
   * A DATA payload: a view of the read, which may be the process's one read buffer
   * (shared-reads.ts), overwritten by the next read: copy what must outlive the call.
   */
  onData: ((chunk: Buffer) => void) | undefined;
  /** The client ended its side (END_STREAM). */
  onEnd: (() => void) | undefined;
  /** Over for any reason: both sides ended, reset either way, connection gone. Once. */
  onClose: (() => void) | undefined;

  remoteEnded = false;
  /** END_STREAM handed to the connection (or reset). */
  localEnded = false;
  closed = false;
  /** The peer's window for this stream (what may still be sent). */
  sendWindow: number;

  /** What is not yet handed to the connection's output: headers, DATA, the end. */
  private responseBlock: Buffer | undefined;
  /**
   * Called once every DATA byte written so far has left for the socket (write's `onSent`): the
   * first `sentCallbackCount` slots, overwritten, never emptied (an array emptied gives its storage
   * back, allocated again at the next write of every stream of a fan-out).
   */
  private readonly sentCallbacks: ((() => void) | undefined)[] = [];
  private sentCallbackCount = 0;
  /** Queued in the connection's list of streams to drain (H2Connection.markDirty). */
  dirty = false;
  private headersSent = false;
  /** DATA not yet framed: the first `unsentCount` slots, overwritten, never emptied (see sentCallbacks). */
  private readonly unsent: (Buffer | undefined)[] = [];
  private unsentCount = 0;
  private unsentBytes = 0;
  private trailerBlock: Buffer | undefined;
  private ending = false;
  private resetAfterEnd = false;
  /** Bytes of DATA received since the last WINDOW_UPDATE for this stream. */
  receivedSinceUpdate = 0;
  /** What the peer may still send on this stream, by the WINDOW_UPDATEs written so far. */
  receiveWindow: number;

  constructor(
    readonly id: number,
    private readonly connection: H2Connection,
    sendWindow: number,
    receiveWindow: number,
  ) {
    this.sendWindow = sendWindow;
    this.receiveWindow = receiveWindow;
  }

  /** The connection's name (BidiCall.connection). */
  get connectionName(): string {
    return this.connection.name;
  }

  /** The response headers (an HPACK block), sent before the first DATA or the end. */
  respond(block: Buffer): void {
    if (this.responseBlock === undefined && !this.headersSent) this.responseBlock = block;
  }

  /**
   * Queues DATA; sent when the connection flushes (after an end() or flush(), else in an
   * immediate). `onSent`: called once this DATA, within the peer's flow-control windows, has been
   * taken by the socket with nothing left in its buffer (H2Connection.afterWrite); never when the
   * stream closes first.
   */
  write(data: Buffer, onSent?: () => void): void {
    if (this.localEnded || this.ending || this.closed) return;
    this.unsent[this.unsentCount++] = data;
    this.unsentBytes += data.length;
    if (onSent !== undefined) this.sentCallbacks[this.sentCallbackCount++] = onSent;
    this.connection.markDirty(this);
  }

  /** DATA queued and not yet framed (held by a send window, or waiting for the next flush). */
  get queuedBytes(): number {
    return this.unsentBytes;
  }

  /**
   * Ends the response: with trailers (an HPACK block) when given, else with the last DATA frame.
   * With nothing written before and `trailers` given alone, the response headers carry the end.
   * `thenReset`: RST_STREAM NO_ERROR right behind, for a client that is still sending.
   */
  end(trailers?: Buffer, thenReset = false): void {
    if (this.localEnded || this.ending || this.closed) return;
    this.ending = true;
    this.trailerBlock = trailers;
    this.resetAfterEnd = thenReset;
    this.connection.markDirty(this);
    // Nothing more comes on this stream: what it was given leaves before any immediate.
    this.connection.flushSoon();
  }

  /** Sends what is queued in a promise job (see H2Connection.flushSoon), not in an immediate. */
  flush(): void {
    this.connection.flushSoon();
  }

  /** RST_STREAM with the code; the stream is closed at once. */
  reset(code: number): void {
    if (this.closed) return;
    this.connection.resetStream(this, code);
  }

  /** Ends the whole connection for a fault of the peer: GOAWAY with the code (ENHANCE_YOUR_CALM for a limit kept being passed). */
  abort(code: number, reason: string): void {
    this.connection.abort(code, reason);
  }

  /** Appends this stream's frames to the connection's output, as far as the send windows allow. */
  drainInto(out: H2Connection): void {
    if (this.closed) return;
    if (!this.headersSent && this.responseBlock !== undefined) {
      const endsHere = this.ending && this.unsentBytes === 0 && this.trailerBlock === undefined;
      out.pushHeaders(this.id, this.responseBlock, endsHere);
      this.headersSent = true;
      this.responseBlock = undefined;
      if (endsHere) {
        this.finishLocal();
        return;
      }
    }
    if (this.unsentBytes > 0) {
      const sent = out.pushData(this, this.unsent, this.unsentCount, this.unsentBytes, this.ending && this.trailerBlock === undefined);
      if (sent < this.unsentBytes) {
        this.dropSent(sent);
        return;
      }
      this.unsent.fill(undefined, 0, this.unsentCount);
      this.unsentCount = 0;
      this.unsentBytes = 0;
      if (this.sentCallbackCount > 0) {
        out.afterWrite(this.sentCallbacks, this.sentCallbackCount);
        this.sentCallbacks.fill(undefined, 0, this.sentCallbackCount);
        this.sentCallbackCount = 0;
      }
      if (this.ending && this.trailerBlock === undefined) {
        this.finishLocal();
        return;
      }
    }
    if (!this.ending) return;
    // With no response headers before it, the block is a whole response (gRPC Trailers-Only).
    if (this.trailerBlock !== undefined) out.pushHeaders(this.id, this.trailerBlock, true);
    else out.pushEmptyEnd(this.id);
    this.headersSent = true;
    this.finishLocal();
  }

  private dropSent(bytes: number): void {
    const unsent = this.unsent;
    let left = bytes;
    let whole = 0;
    while (left > 0) {
      const chunk = unsent[whole] as Buffer;
      if (chunk.length > left) {
        unsent[whole] = chunk.subarray(left);
        break;
      }
      left -= chunk.length;
      whole++;
    }
    if (whole > 0) {
      for (let i = whole; i < this.unsentCount; i++) unsent[i - whole] = unsent[i];
      unsent.fill(undefined, this.unsentCount - whole, this.unsentCount);
      this.unsentCount -= whole;
    }
    this.unsentBytes -= bytes;
  }

  private finishLocal(): void {
    this.localEnded = true;
    this.ending = false;
    if (this.resetAfterEnd && !this.remoteEnded) {
      this.connection.resetStream(this, H2Error.NO_ERROR);
      return;
    }
    if (this.remoteEnded) this.connection.closeStream(this);
  }
}

export class H2Connection {
  private readonly streams = new Map<number, H2Stream>();
  private readonly decoder: HpackDecoder;
  private buffered: Buffer | undefined;
  private prefaceSeen = false;
  private lastStreamId = 0;
  /** A header block being received: its stream, flags of the HEADERS frame, fragments. */
  private headerBlock: { streamId: number; endStream: boolean; fragments: Buffer[]; bytes: number; continuations: number } | undefined;
  /** The peer's settings that bound what this end sends. */
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  private connectionSendWindow = DEFAULT_WINDOW;
  private receivedSinceUpdate = 0;
  /**
   * What the peer may still send on the connection. A WINDOW_UPDATE counts once written to the
   * socket (pendingGrants until then): the peer cannot have used one it was not sent.
   */
  private receiveWindow = DEFAULT_WINDOW;
  private readonly pendingGrants: { stream: H2Stream | undefined; increment: number }[] = [];
  /**
   * Frames to write, the first `outCount` slots: overwritten, never emptied (an array emptied
   * gives its storage back, allocated again at the next write of every connection of a fan-out).
   */
  private readonly out: (Buffer | undefined)[] = [];
  private outCount = 0;
  /**
   * Streams with frames to drain at the next flush: the first `dirtyCount` slots (H2Stream.dirty
   * marks them; a stream closed meanwhile is skipped). Slots are overwritten, never emptied: a
   * Set cleared, or an array emptied, per flush allocated its storage again on every connection
   * of a fan-out.
   */
  private readonly dirty: (H2Stream | undefined)[] = [];
  private dirtyCount = 0;
  /** Streams with DATA held back by a send window. */
  private readonly blocked = new Set<H2Stream>();
  private flushQueued: NodeJS.Immediate | undefined;
  private flushJobQueued = false;
  private goingAway = false;
  /**
   * Called once the socket has taken everything written so far (afterWrite): the first
   * `sentWaiterCount`, slots overwritten. Two arrays in turn: waiters run from one (and may have
   * more written) while the other takes the new.
   */
  private sentWaiters: ((() => void) | undefined)[] = [];
  private spareWaiters: ((() => void) | undefined)[] = [];
  private sentWaiterCount = 0;
  private runningWaiters = false;
  /** flushSoon's promise job: one function for the connection's life, not a closure per call. */
  private readonly flushJob = (): void => {
    this.flushJobQueued = false;
    this.flush();
  };
  private dead = false;
  /** SETTINGS of this end acknowledged: until then the peer may use the default stream window. */
  private settingsAcked = false;
  private errorReported = false;
  private readonly recentlyReset = new Set<number>();
  /** Control answers queued since the socket last had nothing buffered (MAX_UNSENT_CONTROL_ANSWERS). */
  private unsentControlAnswers = 0;
  private resetTokens: number;
  private resetTokensAt: number;
  private readonly now: () => number;
  /** node:tls's socket: writeOut() keeps the write callback for it. */
  private readonly encrypted: boolean;

  constructor(
    private readonly socket: Socket,
    readonly name: string,
    private readonly opts: H2ConnectionOptions,
  ) {
    this.decoder = new HpackDecoder(HEADER_TABLE_BYTES, opts.maxHeaderListBytes);
    this.now = opts.now ?? Date.now;
    this.encrypted = (socket as Socket & { encrypted?: boolean }).encrypted === true;
    this.resetTokens = opts.peerResets.burst;
    this.resetTokensAt = this.now();
    // The server's connection preface: its SETTINGS, then the connection window raised.
    const entries: [number, number][] = [
      [SETTINGS_INITIAL_WINDOW_SIZE, opts.streamWindowBytes],
      [SETTINGS_MAX_HEADER_LIST_SIZE, opts.maxHeaderListBytes],
      [SETTINGS_HEADER_TABLE_SIZE, HEADER_TABLE_BYTES],
      [SETTINGS_MAX_CONCURRENT_STREAMS, opts.maxConcurrentStreams],
    ];
    const settings = Buffer.alloc(FRAME_HEADER + 6 * entries.length);
    writeFrameHeader(settings, 0, 6 * entries.length, FrameType.SETTINGS, 0, 0);
    entries.forEach(([id, value], i) => {
      settings.writeUInt16BE(id, FRAME_HEADER + 6 * i);
      settings.writeUInt32BE(value, FRAME_HEADER + 6 * i + 2);
    });
    this.queue(settings);
    if (opts.connectionWindowBytes > DEFAULT_WINDOW) this.grant(undefined, opts.connectionWindowBytes - DEFAULT_WINDOW);
    this.writeOut();
    // A socket reading into the process's one read buffer (shared-reads.ts): what is kept of a
    // read past onRead is copied (partial frames, header fragments; DATA is the stream's to copy).
    if (!routeSharedReads(socket, (bytes, length) => this.onRead(bytes, length))) socket.on('data', (chunk: Buffer) => this.onRead(chunk, chunk.length));
    socket.on('close', () => this.onSocketGone());
    socket.on('drain', () => {
      this.unsentControlAnswers = 0;
    });
    socket.on('error', () => undefined);
  }

  /** Sends a PING (RFC 9113 6.7); the peer's acknowledgement calls onPingAck. */
  ping(): void {
    if (this.dead) return;
    const frame = Buffer.alloc(FRAME_HEADER + 8);
    writeFrameHeader(frame, 0, 8, FrameType.PING, 0, 0);
    this.queue(frame);
    this.flushSoon();
  }

  /**
   * GOAWAY NO_ERROR naming the last stream opened (RFC 9113 6.8): the peer opens no more streams
   * here; those open go on until they end.
   */
  goAway(): void {
    if (this.dead || this.goingAway) return;
    this.goingAway = true;
    // What the streams were given (their statuses, when the caller ended them) leads.
    this.flush();
    const frame = Buffer.alloc(FRAME_HEADER + 8);
    writeFrameHeader(frame, 0, 8, FrameType.GOAWAY, 0, 0);
    frame.writeUInt32BE(this.lastStreamId, 9);
    frame.writeUInt32BE(H2Error.NO_ERROR, 13);
    this.queue(frame);
    this.flushSoon();
  }

  /** Sends what is queued, then ends the socket's writing side (the peer sees a clean close). */
  end(): void {
    if (this.dead) return;
    this.flush();
    this.socket.end();
  }

  /** Streams open. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Callbacks run once the socket holds nothing unsent (at once when it already does, after the write in progress). */
  afterWrite(callbacks: readonly ((() => void) | undefined)[], count = callbacks.length): void {
    for (let i = 0; i < count; i++) this.sentWaiters[this.sentWaiterCount++] = callbacks[i] as () => void;
  }


  /** GOAWAY with the code (a fault of the peer), then the connection ends; reported as onConnectionError 'local'. */
  abort(code: number, reason: string): void {
    this.fail(code, reason);
  }

  /** Ends every stream and the connection at once. */
  destroy(): void {
    this.socket.destroy();
    this.onSocketGone();
  }

  markDirty(stream: H2Stream): void {
    if (!stream.dirty) {
      stream.dirty = true;
      this.dirty[this.dirtyCount++] = stream;
    }
    this.queueFlush();
  }

  /**
   * What is written goes out in an immediate, so that answers given together (a phase's, and
   * those of every stream a read or a turn of the event loop brought) leave in one write.
   */
  private queueFlush(): void {
    // A flush already queued as a promise job (flushSoon) runs first and takes what is dirty by then.
    if (this.flushQueued === undefined && !this.flushJobQueued && !this.dead) this.flushQueued = setImmediate(() => this.flush());
  }

  /**
   * Flush in a promise job: after the jobs queued so far (other streams' handlers answering the
   * same read), before any immediate. Node's own HTTP/2 sent from a native immediate, which runs
   * ahead of every JavaScript one; an immediate here would wait behind those queued before it
   * (serve's sliced work, other answers' bookkeeping).
   */
  flushSoon(): void {
    if (this.flushJobQueued || this.dead) return;
    this.flushJobQueued = true;
    queueMicrotask(this.flushJob);
  }

  resetStream(stream: H2Stream, code: number): void {
    if (stream.closed) return;
    const frame = Buffer.alloc(FRAME_HEADER + 4);
    writeFrameHeader(frame, 0, 4, FrameType.RST_STREAM, 0, stream.id);
    frame.writeUInt32BE(code, 9);
    this.queue(frame);
    this.rememberReset(stream.id);
    this.closeStream(stream);
    this.queueFlush();
  }

  closeStream(stream: H2Stream): void {
    if (stream.closed) return;
    stream.closed = true;
    this.streams.delete(stream.id);
    stream.dirty = false;
    this.blocked.delete(stream);
    const listener = stream.onClose;
    stream.onClose = undefined;
    stream.onData = undefined;
    stream.onEnd = undefined;
    listener?.();
  }

  pushHeaders(streamId: number, block: Buffer, endStream: boolean): void {
    // Header blocks sent here are a few dozen bytes: one frame, never CONTINUATION.
    const frame = Buffer.allocUnsafe(FRAME_HEADER + block.length);
    writeFrameHeader(frame, 0, block.length, FrameType.HEADERS, FLAG_END_HEADERS | (endStream ? FLAG_END_STREAM : 0), streamId);
    block.copy(frame, FRAME_HEADER);
    this.queue(frame);
  }

  pushEmptyEnd(streamId: number): void {
    const frame = Buffer.alloc(FRAME_HEADER);
    writeFrameHeader(frame, 0, 0, FrameType.DATA, FLAG_END_STREAM, streamId);
    this.queue(frame);
  }

  /**
   * DATA frames of the chunks, within the send windows and the peer's frame size; the last
   * flagged END_STREAM when `endStream` and all of it fits. Returns the bytes taken.
   */
  pushData(stream: H2Stream, chunks: readonly (Buffer | undefined)[], count: number, bytes: number, endStream: boolean): number {
    const room = Math.max(0, Math.min(bytes, stream.sendWindow, this.connectionSendWindow));
    if (room === 0) {
      this.blocked.add(stream);
      return 0;
    }
    stream.sendWindow -= room;
    this.connectionSendWindow -= room;
    const all = room === bytes;
    const flags = all && endStream ? FLAG_END_STREAM : 0;
    // One message whole in one frame (an xDS push: every stream is written the same payload).
    if (count === 1 && all && bytes <= this.peerMaxFrame) {
      const frame = dataFrameOf(chunks[0] as Buffer, flags, stream.id);
      if (frame !== undefined) {
        this.queue(frame);
        if (this.blocked.size > 0) this.blocked.delete(stream);
        return room;
      }
    }
    // A large body whole, as another stream was written it (a fleet's shared SotW response).
    if (all && bytes >= SHARED_FRAMING_MIN_BYTES) {
      const framed = sharedFraming(chunks, count, bytes, stream.id, this.peerMaxFrame, endStream);
      if (framed !== undefined) {
        this.queue(framed);
        if (this.blocked.size > 0) this.blocked.delete(stream);
        return room;
      }
    }
    let chunkIndex = 0;
    let chunkAt = 0;
    let left = room;
    while (left > 0) {
      const size = Math.min(left, this.peerMaxFrame);
      left -= size;
      const last = left === 0;
      const header = Buffer.allocUnsafe(FRAME_HEADER);
      writeFrameHeader(header, 0, size, FrameType.DATA, last && all && endStream ? FLAG_END_STREAM : 0, stream.id);
      // Small payloads are copied behind their frame header (one buffer); large ones go as views.
      const parts: Buffer[] = [];
      let need = size;
      while (need > 0) {
        const chunk = chunks[chunkIndex] as Buffer;
        const take = Math.min(need, chunk.length - chunkAt);
        parts.push(take === chunk.length ? chunk : chunk.subarray(chunkAt, chunkAt + take));
        need -= take;
        chunkAt += take;
        if (chunkAt === chunk.length) {
          chunkIndex++;
          chunkAt = 0;
        }
      }
      if (size <= COPY_BELOW_BYTES) this.queue(Buffer.concat([header, ...parts], FRAME_HEADER + size));
      else {
        this.queue(header);
        for (let i = 0; i < parts.length; i++) this.queue(parts[i] as Buffer);
      }
    }
    if (!all) this.blocked.add(stream);
    else this.blocked.delete(stream);
    return room;
  }

  /** A socket read: `chunk[0, length)`. */
  private onRead(chunk: Buffer, length: number): void {
    if (this.dead) return;
    try {
      this.handleBytes(chunk, length);
    } catch (err) {
      if (err instanceof ConnectionError) this.fail(err.code, err.message);
      else if (err instanceof HeaderListTooLarge) this.fail(H2Error.ENHANCE_YOUR_CALM, err.message);
      else if (err instanceof HpackError) this.fail(H2Error.COMPRESSION_ERROR, err.message);
      // A fault of this end (a handler's included): this connection ends, the process and the
      // other connections keep serving.
      else this.fail(H2Error.INTERNAL_ERROR, `internal error: ${err instanceof Error ? err.message : String(err)}`);
    }
    // The connection's own frames (SETTINGS and PING acknowledged, WINDOW_UPDATE); the handlers
    // answer in promise jobs after the read, and their flush() or end() sends.
    if (this.outCount > 0 || this.dirtyCount > 0) this.queueFlush();
  }

  private handleBytes(chunk: Buffer, chunkLength: number): void {
    let data = chunk;
    let end = chunkLength;
    if (this.buffered !== undefined) {
      data = Buffer.concat([this.buffered, chunk.subarray(0, chunkLength)]);
      end = data.length;
      this.buffered = undefined;
    }
    let at = 0;
    if (!this.prefaceSeen) {
      if (end < PREFACE.length) {
        if (!PREFACE.subarray(0, end).equals(data.subarray(0, end))) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'not an HTTP/2 connection preface');
        this.buffered = Buffer.from(data.subarray(0, end));
        return;
      }
      if (!PREFACE.equals(data.subarray(0, PREFACE.length))) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'not an HTTP/2 connection preface');
      this.prefaceSeen = true;
      at = PREFACE.length;
    }
    while (end - at >= FRAME_HEADER) {
      const length = (data[at]! << 16) | (data[at + 1]! << 8) | data[at + 2]!;
      if (length > DEFAULT_MAX_FRAME) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `a frame of ${length} bytes, above SETTINGS_MAX_FRAME_SIZE`);
      if (end - at < FRAME_HEADER + length) break;
      const type = data[at + 3]!;
      const flags = data[at + 4]!;
      const streamId = data.readUInt32BE(at + 5) & 0x7fffffff;
      const payload = data.subarray(at + FRAME_HEADER, at + FRAME_HEADER + length);
      at += FRAME_HEADER + length;
      this.handleFrame(type, flags, streamId, payload);
      if (this.dead) return;
    }
    // Kept past this read: a copy (the read may be the shared buffer, or a view would hold it all).
    if (at < end) this.buffered = Buffer.from(data.subarray(at, end));
  }

  private handleFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.headerBlock !== undefined && type !== FrameType.CONTINUATION) {
      throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a header block was interrupted by another frame');
    }
    switch (type) {
      case FrameType.DATA:
        this.onData(flags, streamId, payload);
        return;
      case FrameType.HEADERS:
        this.onHeaders(flags, streamId, payload);
        return;
      case FrameType.CONTINUATION:
        this.onContinuation(flags, streamId, payload);
        return;
      case FrameType.RST_STREAM: {
        if (streamId === 0 || payload.length !== 4) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a malformed RST_STREAM');
        if (streamId > this.lastStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
        const stream = this.streams.get(streamId);
        if (stream === undefined) return;
        if (!stream.localEnded) this.takeResetToken();
        this.closeStream(stream);
        return;
      }
      case FrameType.SETTINGS:
        this.onSettings(flags, streamId, payload);
        return;
      case FrameType.PING:
        if (streamId !== 0 || payload.length !== 8) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a malformed PING');
        if ((flags & FLAG_ACK) === 0) {
          const frame = Buffer.allocUnsafe(FRAME_HEADER + 8);
          writeFrameHeader(frame, 0, 8, FrameType.PING, FLAG_ACK, 0);
          payload.copy(frame, FRAME_HEADER);
          this.queue(frame);
          this.countControlAnswer();
        } else this.opts.onPingAck?.();
        return;
      case FrameType.GOAWAY: {
        if (streamId !== 0 || payload.length < 8) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a malformed GOAWAY');
        // The peer opens no more streams; those open finish, then it closes the connection.
        this.goingAway = true;
        const code = payload.readUInt32BE(4);
        if (code !== H2Error.NO_ERROR) {
          // Its debug data is not logged: it is the peer's text, and may echo what it was sent.
          this.reportError(code, `the peer sent GOAWAY ${h2ErrorName(code)}`, 'peer');
        }
        return;
      }
      case FrameType.WINDOW_UPDATE:
        this.onWindowUpdate(streamId, payload);
        return;
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a client may not send PUSH_PROMISE');
      case FrameType.PRIORITY:
        if (payload.length !== 5) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a malformed PRIORITY');
        return;
      default:
        // RFC 9113 4.1: frames of unknown types are ignored.
        return;
    }
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
    // Flow control counts the whole payload, padding included. Each WINDOW_UPDATE gives back
    // exactly what was received since the last: what the peer may send is the window less that.
    // Given back as DATA arrives, whatever the stream kept of it: what the gRPC servers keep of
    // partial messages is bounded by src/h2/receive-budget.ts instead.
    this.receivedSinceUpdate += payload.length;
    this.receiveWindow -= payload.length;
    if (this.receiveWindow < 0) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, `DATA beyond the connection's flow-control window (${-this.receiveWindow} bytes over)`);
    if (this.receivedSinceUpdate >= this.opts.connectionWindowBytes / 2) {
      this.grant(undefined, this.receivedSinceUpdate);
      this.receivedSinceUpdate = 0;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (streamId > this.lastStreamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
      // A stream this end closed (reset, or ended and forgotten): its late DATA is dropped.
      return;
    }
    if (stream.remoteEnded) {
      this.resetForPeer(stream, H2Error.STREAM_CLOSED);
      return;
    }
    const body = unpad(flags, payload);
    stream.receivedSinceUpdate += payload.length;
    stream.receiveWindow -= payload.length;
    if (stream.receiveWindow < 0) {
      // A stream error (RFC 9113 6.9.1); the bytes still counted against the connection above.
      this.resetForPeer(stream, H2Error.FLOW_CONTROL_ERROR);
      return;
    }
    if (stream.receivedSinceUpdate >= this.opts.streamWindowBytes / 2 && (flags & FLAG_END_STREAM) === 0) {
      this.grant(stream, stream.receivedSinceUpdate);
      stream.receivedSinceUpdate = 0;
    }
    if (body.length > 0) stream.onData?.(body);
    if ((flags & FLAG_END_STREAM) !== 0) this.endRemote(stream);
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0 || (streamId & 1) === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `HEADERS on stream ${streamId}, not a client stream`);
    let fragment = unpad(flags, payload);
    if ((flags & FLAG_PRIORITY) !== 0) {
      if (fragment.length < 5) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a HEADERS frame too short for its priority');
      fragment = fragment.subarray(5);
    }
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if ((flags & FLAG_END_HEADERS) !== 0) {
      this.onHeaderBlock(streamId, endStream, fragment);
      return;
    }
    this.headerBlock = { streamId, endStream, fragments: [Buffer.from(fragment)], bytes: fragment.length, continuations: 0 };
    this.checkHeaderBlockSize(fragment.length);
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const block = this.headerBlock;
    if (block === undefined || block.streamId !== streamId) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'CONTINUATION without a header block to continue');
    block.fragments.push(Buffer.from(payload));
    block.bytes += payload.length;
    this.checkHeaderBlockSize(block.bytes);
    if (++block.continuations > MAX_CONTINUATIONS) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, `a header block in more than ${MAX_CONTINUATIONS} CONTINUATION frames`);
    if ((flags & FLAG_END_HEADERS) === 0) return;
    this.headerBlock = undefined;
    this.onHeaderBlock(streamId, block.endStream, Buffer.concat(block.fragments, block.bytes));
  }

  private checkHeaderBlockSize(bytes: number): void {
    if (bytes > this.opts.maxHeaderBlockBytes) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, `a header block above ${this.opts.maxHeaderBlockBytes} bytes`);
  }

  private onHeaderBlock(streamId: number, endStream: boolean, block: Buffer): void {
    // Decoded even for a stream that is gone: the block updates the connection's HPACK table.
    const headers = this.decoder.decode(block);
    const existing = this.streams.get(streamId);
    if (existing !== undefined) {
      // Trailers: they carry nothing gRPC needs, only the end of the client's side.
      if (!endStream || existing.remoteEnded) {
        this.resetForPeer(existing, H2Error.PROTOCOL_ERROR);
        return;
      }
      this.endRemote(existing);
      return;
    }
    if (streamId <= this.lastStreamId) {
      // Trailers late on a stream this end reset are dropped (RFC 9113 5.1, "closed"); any other
      // HEADERS at or below the last stream opened is a new stream out of order (5.1.1), or
      // frames on a stream both sides closed (5.1).
      if (this.recentlyReset.has(streamId)) return;
      throw new ConnectionError(H2Error.PROTOCOL_ERROR, `HEADERS on stream ${streamId}, not above the last stream opened (${this.lastStreamId})`);
    }
    this.lastStreamId = streamId;
    // Not expected after a GOAWAY from the peer; refused rather than served half-way. And no more
    // streams than announced: a refused stream is safe to retry (RFC 9113 8.7), though Envoy's
    // ext_proc does not retry it (see MAX_STREAMS_BEFORE_SETTINGS_ACK).
    if (this.goingAway || this.streams.size >= this.streamLimit()) {
      const stream = new H2Stream(streamId, this, this.peerInitialWindow, this.initialReceiveWindow());
      this.streams.set(streamId, stream);
      this.resetForPeer(stream, H2Error.REFUSED_STREAM);
      return;
    }
    const stream = new H2Stream(streamId, this, this.peerInitialWindow, this.initialReceiveWindow());
    this.streams.set(streamId, stream);
    this.opts.onStream(stream, headers);
    if (endStream && !stream.closed) this.endRemote(stream);
  }

  private endRemote(stream: H2Stream): void {
    if (stream.remoteEnded) return;
    stream.remoteEnded = true;
    stream.onEnd?.();
    if (stream.localEnded) this.closeStream(stream);
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS on a stream');
    if ((flags & FLAG_ACK) !== 0) {
      if (payload.length !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a SETTINGS acknowledgement with a payload');
      this.settingsAcked = true;
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a SETTINGS payload not a multiple of 6');
    for (let at = 0; at < payload.length; at += 6) {
      const id = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (id === SETTINGS_INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const stream of this.streams.values()) stream.sendWindow += delta;
        if (delta > 0) this.unblock();
      } else if (id === SETTINGS_MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > 16_777_215) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE out of range');
        this.peerMaxFrame = value;
      }
      // HEADER_TABLE_SIZE bounds the peer's decoder table, which this end's blocks never use;
      // ENABLE_PUSH, MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE bound nothing this end sends.
    }
    const ack = Buffer.alloc(FRAME_HEADER);
    writeFrameHeader(ack, 0, 0, FrameType.SETTINGS, FLAG_ACK, 0);
    this.queue(ack);
    this.countControlAnswer();
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a malformed WINDOW_UPDATE');
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'a WINDOW_UPDATE of 0');
      this.connectionSendWindow += increment;
      if (this.connectionSendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'the connection window above 2^31-1');
      this.unblock();
      return;
    }
    // RFC 9113 5.1: on an idle stream (never opened: above the last the client opened, or a
    // server stream this end never pushes) a frame other than HEADERS or PRIORITY is a
    // connection error. A closed stream's late WINDOW_UPDATE is ignored (6.9).
    if (streamId > this.lastStreamId || (streamId & 1) === 0) throw new ConnectionError(H2Error.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${streamId}`);
    const stream = this.streams.get(streamId);
    if (stream === undefined) return;
    if (increment === 0) {
      this.resetForPeer(stream, H2Error.PROTOCOL_ERROR);
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) {
      this.resetForPeer(stream, H2Error.FLOW_CONTROL_ERROR);
      return;
    }
    if (this.blocked.has(stream)) this.markDirty(stream);
  }

  /** SETTINGS_MAX_CONCURRENT_STREAMS, once the peer has acknowledged it (see MAX_STREAMS_BEFORE_SETTINGS_ACK). */
  private streamLimit(): number {
    return this.settingsAcked ? this.opts.maxConcurrentStreams : Math.max(this.opts.maxConcurrentStreams, MAX_STREAMS_BEFORE_SETTINGS_ACK);
  }

  /** Until the peer has this end's SETTINGS it may count on the default window (RFC 9113 6.9.2). */
  private initialReceiveWindow(): number {
    return this.settingsAcked ? this.opts.streamWindowBytes : Math.max(this.opts.streamWindowBytes, DEFAULT_WINDOW);
  }

  /** RST_STREAM for a fault of the peer (or a stream refused): an answer its frames called for. */
  private resetForPeer(stream: H2Stream, code: number): void {
    this.resetStream(stream, code);
    this.countControlAnswer();
  }

  /**
   * One answer queued that the peer's frames called for. They leave with the read that brought
   * them (flush), and the count starts over whenever the socket has nothing buffered: only a
   * peer that sends without reading what it is sent reaches the bound.
   */
  private countControlAnswer(): void {
    if (++this.unsentControlAnswers > MAX_UNSENT_CONTROL_ANSWERS) {
      throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, `more than ${MAX_UNSENT_CONTROL_ANSWERS} PING, SETTINGS or RST_STREAM answers unsent: the peer does not read them`);
    }
  }

  private grant(stream: H2Stream | undefined, increment: number): void {
    this.queue(windowUpdate(stream?.id ?? 0, increment));
    this.pendingGrants.push({ stream, increment });
  }

  private reportError(code: number, reason: string, by: 'local' | 'peer'): void {
    if (this.errorReported) return;
    this.errorReported = true;
    this.opts.onConnectionError?.(code, reason, by);
  }

  private rememberReset(streamId: number): void {
    this.recentlyReset.add(streamId);
    if (this.recentlyReset.size > REMEMBERED_RESETS) this.recentlyReset.delete(this.recentlyReset.values().next().value as number);
  }

  /** One reset by the peer of a stream not yet answered; too many too fast end the connection. */
  private takeResetToken(): void {
    const { burst, perSecond } = this.opts.peerResets;
    const now = this.now();
    this.resetTokens = Math.min(burst, this.resetTokens + ((now - this.resetTokensAt) * perSecond) / 1000);
    this.resetTokensAt = now;
    if (this.resetTokens < 1) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, `streams reset by the peer faster than ${perSecond} a second (burst ${burst})`);
    this.resetTokens -= 1;
  }

  private unblock(): void {
    for (const stream of this.blocked) this.markDirty(stream);
  }

  /** Hands every stream's queued frames and the connection's own to the socket in one write. */
  private flush(): void {
    if (this.flushQueued !== undefined) {
      clearImmediate(this.flushQueued);
      this.flushQueued = undefined;
    }
    if (this.dead) return;
    // Indexed to the count at each step: a stream drained may mark another (none does today).
    for (let i = 0; i < this.dirtyCount; i++) {
      const stream = this.dirty[i] as H2Stream;
      this.dirty[i] = undefined;
      if (!stream.dirty) continue;
      stream.dirty = false;
      stream.drainInto(this);
    }
    this.dirtyCount = 0;
    this.writeOut();
  }

  private writeOut(): void {
    const count = this.outCount;
    if (count === 0) return;
    const out = this.out;
    // A plain socket with nothing buffered is written without a callback: one costs Node an
    // object and a tick per write (Writable's afterWriteTick), once per stream per push. The
    // waiters then run at once when the kernel took it all, the usual case, else behind an empty
    // write queued after it. A TLS socket keeps the callback on its last write, as before (an
    // empty write through node:tls costs more than the callback saves).
    const sent = this.sentWaiterCount > 0 && (this.encrypted || this.socket.writableLength > 0) ? sentOnce(this.takeSentWaiters()) : undefined;
    if (count === 1) this.socket.write(out[0] as Buffer, sent);
    else {
      this.socket.cork();
      const last = count - 1;
      for (let i = 0; i < last; i++) this.socket.write(out[i] as Buffer);
      this.socket.write(out[last] as Buffer, sent);
      this.socket.uncork();
    }
    // Frames queued while the socket wrote (none: its errors come in later ticks) go next time.
    const queued = this.outCount - count;
    for (let i = 0; i < queued; i++) out[i] = out[count + i];
    out.fill(undefined, queued, this.outCount);
    this.outCount = queued;
    if (queued > 0) this.queueFlush();
    if (sent !== undefined) {
      if (this.socket.writableLength === 0) sent();
    } else if (this.sentWaiterCount > 0) {
      if (this.socket.writableLength === 0) this.runSentWaiters();
      else this.socket.write(NOTHING, sentOnce(this.takeSentWaiters()));
    }
    // All of it taken by the kernel: the answers queued so far have left.
    if (this.socket.writableLength === 0) this.unsentControlAnswers = 0;
    if (this.pendingGrants.length > 0) {
      for (const { stream, increment } of this.pendingGrants.splice(0)) {
        if (stream === undefined) this.receiveWindow += increment;
        else stream.receiveWindow += increment;
      }
    }
    // A client that does not read what it is sent (its windows are large: Envoy offers 256 MiB)
    // is sent no more answers to keep: its next messages wait in the kernel until it catches up.
    if (this.socket.writableLength > PAUSE_ABOVE_BYTES && !this.socket.isPaused()) {
      this.socket.pause();
      this.socket.once('drain', () => this.socket.resume());
    }
  }

  private queue(frame: Buffer): void {
    this.out[this.outCount++] = frame;
  }

  /** Runs the waiters of what was written so far, which has all left for the kernel. */
  private runSentWaiters(): void {
    if (this.runningWaiters) {
      // A waiter wrote and its write left at once: rare, so a copy.
      const taken = this.takeSentWaiters();
      for (let i = 0; i < taken.length; i++) (taken[i] as () => void)();
      return;
    }
    const waiters = this.sentWaiters;
    const count = this.sentWaiterCount;
    this.sentWaiters = this.spareWaiters;
    this.sentWaiterCount = 0;
    this.runningWaiters = true;
    try {
      for (let i = 0; i < count; i++) (waiters[i] as () => void)();
    } finally {
      waiters.fill(undefined, 0, count);
      this.spareWaiters = waiters;
      this.runningWaiters = false;
    }
  }

  private takeSentWaiters(): (() => void)[] {
    const taken = this.sentWaiters.slice(0, this.sentWaiterCount) as (() => void)[];
    this.sentWaiters.fill(undefined, 0, this.sentWaiterCount);
    this.sentWaiterCount = 0;
    return taken;
  }

  private fail(code: number, message: string): void {
    if (this.dead) return;
    this.reportError(code, message, 'local');
    const debug = Buffer.from(message.slice(0, 200), 'utf8');
    const frame = Buffer.alloc(FRAME_HEADER + 8 + debug.length);
    writeFrameHeader(frame, 0, 8 + debug.length, FrameType.GOAWAY, 0, 0);
    frame.writeUInt32BE(this.lastStreamId, 9);
    frame.writeUInt32BE(code, 13);
    debug.copy(frame, 17);
    this.queue(frame);
    this.writeOut();
    this.socket.end();
    this.onSocketGone();
  }

  private onSocketGone(): void {
    if (this.dead) return;
    this.dead = true;
    if (this.flushQueued !== undefined) clearImmediate(this.flushQueued);
    this.flushQueued = undefined;
    for (const stream of [...this.streams.values()]) this.closeStream(stream);
  }
}

/**
 * DATA frames of the last payloads framed whole. A fan-out writes one payload (a shared response,
 * grpc-framing.ts) to a thousand streams, nearly all of id 1 (a connection per ADS stream): its
 * frame is built once, where each stream copied it behind a header of its own (a thousand
 * Buffer.concat per push, and a new 8 KiB pool every few streams). A payload framed for another
 * stream id or other flags is framed anew. The last few are kept (a few frames of at most the
 * peer's frame size); a payload above COPY_BELOW_BYTES is copied into a frame only when seen a
 * second time (the first stream is written header and payload apart, as ever).
 */
const DATA_FRAMES_KEPT = 4;
const COPY_BELOW_BYTES = 4096;
const framedPayloads: (Buffer | undefined)[] = new Array<Buffer | undefined>(DATA_FRAMES_KEPT).fill(undefined);
const dataFrames: (Buffer | undefined)[] = new Array<Buffer | undefined>(DATA_FRAMES_KEPT).fill(undefined);
let dataFramesNext = 0;

/** `payload` as one DATA frame; undefined for a large payload seen the first time (see framedPayloads). */
function dataFrameOf(payload: Buffer, flags: number, streamId: number): Buffer | undefined {
  let seen = false;
  for (let i = 0; i < DATA_FRAMES_KEPT; i++) {
    if (framedPayloads[i] !== payload) continue;
    seen = true;
    const frame = dataFrames[i];
    if (frame !== undefined && frame[4] === flags && frame.readUInt32BE(5) === streamId) return frame;
  }
  const copy = seen || payload.length <= COPY_BELOW_BYTES;
  let frame: Buffer | undefined;
  if (copy) {
    frame = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
    writeFrameHeader(frame, 0, payload.length, FrameType.DATA, flags, streamId);
    payload.copy(frame, FRAME_HEADER);
  }
  framedPayloads[dataFramesNext] = payload;
  dataFrames[dataFramesNext] = frame;
  dataFramesNext = (dataFramesNext + 1) % DATA_FRAMES_KEPT;
  return frame;
}

/**
 * A body at least this large, written whole to a second stream as it was to a first, is framed
 * once into one Buffer that every such stream writes (sharedFraming).
 */
const SHARED_FRAMING_MIN_BYTES = 256 * 1024;

/** How a run of chunks was last framed whole, keyed by its first chunk. */
interface Framing {
  readonly chunks: readonly Buffer[];
  readonly bytes: number;
  readonly streamId: number;
  readonly maxFrame: number;
  readonly endStream: boolean;
  /** Made at the second stream that writes the same chunks the same way. */
  framed: Buffer | undefined;
}

const framings = new WeakMap<Buffer, Framing>();

/**
 * The DATA frames of `chunks`, whole, as one Buffer, when the very same chunks were framed the
 * same way for another stream before; else undefined (and noted), and the caller frames them
 * itself. A response a fleet shares (the xDS server's SotW bodies: 9.4 MB of Clusters at 10,000
 * Backends, to each of 100 streams, each the first stream of its connection) was framed into a
 * header and a view per 16 KiB frame for every stream, and each of those 1,150 buffers made a
 * socket write of its own (Writable's entry, callback and bookkeeping) before the one writev: in
 * a profile of 8 such edits, about 820 ms of serve's 7,700 ms busy on its main thread, the
 * kernel's copy not counted. Now the fleet's framing is one copy of the body, and each stream's
 * write is one buffer. A first stream keeps the uncopied frames: a body written once is not copied.
 */
function sharedFraming(chunks: readonly (Buffer | undefined)[], count: number, bytes: number, streamId: number, maxFrame: number, endStream: boolean): Buffer | undefined {
  const first = chunks[0] as Buffer;
  const known = framings.get(first);
  if (known !== undefined && known.bytes === bytes && known.streamId === streamId && known.maxFrame === maxFrame && known.endStream === endStream && sameChunks(known.chunks, chunks, count)) {
    known.framed ??= frameWhole(known.chunks, bytes, streamId, maxFrame, endStream);
    return known.framed;
  }
  // A copy of the first `count` slots: the stream's own array is reused for its next write.
  framings.set(first, { chunks: chunks.slice(0, count) as Buffer[], bytes, streamId, maxFrame, endStream, framed: undefined });
  return undefined;
}

function sameChunks(known: readonly Buffer[], chunks: readonly (Buffer | undefined)[], count: number): boolean {
  if (known.length !== count) return false;
  for (let i = 0; i < count; i++) if (known[i] !== chunks[i]) return false;
  return true;
}

/** `chunks` as DATA frames of at most `maxFrame` bytes, in one Buffer; the last flagged END_STREAM when `endStream`. */
function frameWhole(chunks: readonly Buffer[], bytes: number, streamId: number, maxFrame: number, endStream: boolean): Buffer {
  const frames = Math.ceil(bytes / maxFrame);
  // Not from Node's shared pool (too large for it anyway): it lives as long as the sockets hold it.
  const out = Buffer.allocUnsafeSlow(bytes + frames * FRAME_HEADER);
  let at = 0;
  let chunkIndex = 0;
  let chunkAt = 0;
  let left = bytes;
  while (left > 0) {
    const size = Math.min(left, maxFrame);
    left -= size;
    writeFrameHeader(out, at, size, FrameType.DATA, left === 0 && endStream ? FLAG_END_STREAM : 0, streamId);
    at += FRAME_HEADER;
    let need = size;
    while (need > 0) {
      const chunk = chunks[chunkIndex] as Buffer;
      const take = Math.min(need, chunk.length - chunkAt);
      chunk.copy(out, at, chunkAt, chunkAt + take);
      at += take;
      need -= take;
      chunkAt += take;
      if (chunkAt === chunk.length) {
        chunkIndex++;
        chunkAt = 0;
      }
    }
  }
  return out;
}

/** The callbacks, run once: by the write's completion or at once, whichever comes first; never after a failed write. */
function sentOnce(callbacks: readonly (() => void)[]): (err?: Error | null) => void {
  let ran = false;
  return (err) => {
    if (ran) return;
    ran = true;
    if (err !== null && err !== undefined) return;
    for (let i = 0; i < callbacks.length; i++) (callbacks[i] as () => void)();
  };
}

function writeFrameHeader(buf: Buffer, at: number, length: number, type: number, flags: number, streamId: number): void {
  buf[at] = (length >>> 16) & 0xff;
  buf[at + 1] = (length >>> 8) & 0xff;
  buf[at + 2] = length & 0xff;
  buf[at + 3] = type;
  buf[at + 4] = flags;
  buf.writeUInt32BE(streamId, at + 5);
}

function windowUpdate(streamId: number, increment: number): Buffer {
  const frame = Buffer.alloc(FRAME_HEADER + 4);
  writeFrameHeader(frame, 0, 4, FrameType.WINDOW_UPDATE, 0, streamId);
  frame.writeUInt32BE(increment, 9);
  return frame;
}

/** The payload without its padding (PADDED flag: a length byte first, that many bytes last). */
function unpad(flags: number, payload: Buffer): Buffer {
  if ((flags & FLAG_PADDED) === 0) return payload;
  if (payload.length < 1) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'a padded frame without its pad length');
  const pad = payload[0] as number;
  if (pad >= payload.length) throw new ConnectionError(H2Error.PROTOCOL_ERROR, 'padding longer than the frame');
  return payload.subarray(1, payload.length - pad);
}
