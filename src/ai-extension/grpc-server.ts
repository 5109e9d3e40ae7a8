import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

/**
 * The AI extension's gRPC services served straight on node:http2 (gRPC over HTTP/2: 5-byte
 * length prefix per message, `content-type: application/grpc`, status in the trailers).
 *
 * Why not grpc-js: Envoy opens one ext_proc stream per attempt and exchanges five messages each
 * way on it; grpc-js's per-call and per-message machinery (interceptors, metadata and status
 * objects, a serialized copy of every message) was most of the extension's CPU per attempt
 * (src/ai-extension/README.md, "Cost per attempt"). Only what Envoy uses is served: bidi and
 * unary calls, identity encoding, no deadlines (Envoy's own timers bound every call).
 */

/** gRPC status codes used here (grpc/doc/statuscodes.md). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  INTERNAL: 13,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
} as const;

/** One bidirectional call, as its handler sees it. */
export interface BidiCall {
  /** A request header (gRPC metadata), first value. */
  header(name: string): string | undefined;
  /** Each request message, in order; the Buffer may be a view of a larger read. */
  onMessage(listener: (message: Buffer) => void): void;
  /** The client half-closed: no more messages. */
  onHalfClose(listener: () => void): void;
  /** The call is over for any reason (ended, reset by the client, connection gone): each listener once. */
  onClose(listener: () => void): void;
  /** Sends one message; false once the call is closed (the message is dropped). */
  write(message: Buffer): boolean;
  /** Ends the call with a status (OK when absent). */
  end(status?: number, message?: string): void;
  /**
   * Sends what was written so far now, with the rest of the read being handled, instead of in
   * the immediate that write() queues: for the caller that knows no other answer of this read is
   * coming (see write).
   */
  flush(): void;
  readonly closed: boolean;
  /**
   * The HTTP/2 connection the call came on: its client end (`address:port`) over TCP, a
   * connection number of this process (`unix-<pid>-<n>`) over a Unix socket, where the client end
   * has no address. Each Envoy worker thread reaches the extension over connections of its own,
   * so it tells the workers apart.
   */
  readonly connection: string;
}

export type GrpcMethod =
  | { kind: 'bidi'; handle(call: BidiCall): void }
  /** `authority` is the request's :authority (Envoy's health checks name a member there). */
  | { kind: 'unary'; handle(request: Buffer, authority: string): Promise<Buffer> };

export interface GrpcServerOptions {
  /** TCP (`port` 0 picks a free one), or a Unix socket at `socket` (its path must be free). */
  listen: { host: string; port: number } | { socket: string };
  /** By full path: `/package.Service/Method`. */
  methods: ReadonlyMap<string, GrpcMethod>;
  /** Larger messages end their call with RESOURCE_EXHAUSTED. */
  maxMessageBytes: number;
  /** A handler failure that could not be answered otherwise. */
  onError?: (err: unknown) => void;
}

export interface RunningGrpcServer {
  /** The TCP port; 0 on a Unix socket. */
  port: number;
  /** Drops every connection (in-flight calls fail on the client's side) and stops listening. */
  close(): Promise<void>;
}

/** BidiCall.connection of each connection, named once as it opens. */
const connectionNames = new WeakMap<http2.Http2Session, string>();
/** Connections over Unix sockets this process accepted (on any of its servers). */
let unixConnections = 0;

function connectionName(session: http2.ServerHttp2Session): string {
  const socket = session.socket;
  // A Unix socket's client end has no address (Envoy's pipe connections are unnamed): the pid
  // keeps the name apart from those of an extension that ran before on the same socket.
  return socket.remotePort !== undefined ? `${socket.remoteAddress ?? ''}:${socket.remotePort}` : `unix-${process.pid}-${++unixConnections}`;
}

const PREFIX = 5;
/** Flow-control windows offered to Envoy: a large request body goes in one flight. */
const STREAM_WINDOW_BYTES = 16 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES = 64 * 1024 * 1024;

export async function startGrpcServer(opts: GrpcServerOptions): Promise<RunningGrpcServer> {
  const server = http2.createServer({
    // Node's default (10 MB per session) would refuse streams while a large request body is
    // buffered; the message size limit below is what bounds a call.
    maxSessionMemory: Number.MAX_SAFE_INTEGER,
    // Envoy ends every ext_proc stream with RST_STREAM (one per attempt); nghttp2's rapid-reset
    // guard (1000 at once, then 33 a second) would answer 500 attempts a second with GOAWAY. The
    // guard stays, above what Envoy sends at the load the extension is built for.
    streamResetBurst: 10_000,
    streamResetRate: 5_000,
    // HTTP/2's default window (64 KiB) made Envoy stop after each 64 KiB of a request body and
    // wait for a WINDOW_UPDATE: a round trip per 64 KiB on the request's path. Every message is
    // read as it comes and kept whole anyway (bounded by maxMessageBytes), so the window bounds
    // nothing worth a wait.
    settings: { initialWindowSize: STREAM_WINDOW_BYTES },
  } as http2.ServerOptions);
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    connectionNames.set(session, connectionName(session));
    // The connection's own window is only raised by a WINDOW_UPDATE, not by the settings.
    session.once('localSettings', () => session.setLocalWindowSize(CONNECTION_WINDOW_BYTES));
    session.once('close', () => sessions.delete(session));
    // A connection that fails is the client's problem; its calls see onClose.
    session.on('error', () => undefined);
  });
  server.on('stream', (stream, headers) => {
    // A reset or a broken connection is reported through 'close'; the error itself is not news.
    stream.on('error', () => undefined);
    const path = headers[':path'];
    const method = typeof path === 'string' ? opts.methods.get(path) : undefined;
    const contentType = headers['content-type'];
    if (typeof contentType !== 'string' || !contentType.startsWith('application/grpc')) {
      // gRPC over HTTP/2: a request that is not gRPC is answered with an HTTP status.
      respondEnd(stream, { ':status': 415 });
      return;
    }
    if (method === undefined) {
      trailersOnly(stream, GrpcStatus.UNIMPLEMENTED, `unknown method ${String(path)}: this server serves ${[...opts.methods.keys()].join(', ')}`);
      return;
    }
    const encoding = headers['grpc-encoding'];
    if (method.kind === 'bidi') serveBidi(stream, headers, method, opts, encoding);
    else serveUnary(stream, headers, method, opts);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const listening = (): void => {
      server.off('error', reject);
      resolve();
    };
    if ('socket' in opts.listen) server.listen(opts.listen.socket, listening);
    else server.listen(opts.listen.port, opts.listen.host, listening);
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? (address as AddressInfo).port : 0;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy();
      }),
  };
}

function respondEnd(stream: http2.ServerHttp2Stream, headers: http2.OutgoingHttpHeaders): void {
  if (stream.destroyed || stream.headersSent) return;
  stream.respond(headers, { endStream: true });
}

/** A call that fails before any answer: status in the response headers (gRPC "Trailers-Only"). */
function trailersOnly(stream: http2.ServerHttp2Stream, status: number, message: string): void {
  respondEnd(stream, { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(status), 'grpc-message': encodeGrpcMessage(message) });
}

/** grpc-message: bytes outside printable ASCII, and '%', are percent-encoded (gRPC over HTTP/2, "Responses"). */
function encodeGrpcMessage(message: string): string {
  return message.replace(/[^\x20-\x24\x26-\x7e]+/gu, (run) => [...Buffer.from(run)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

const RESPONSE_HEADERS = { ':status': 200, 'content-type': 'application/grpc' } as const;

/**
 * Splits a byte stream into gRPC messages. A message that lies inside one read is a view of it;
 * one spread over several reads is assembled once.
 */
class MessageReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Prefix and message length of the message being assembled, once its prefix is in. */
  private expected: number | undefined;

  constructor(
    private readonly maxMessageBytes: number,
    private readonly onMessage: (message: Buffer) => void,
  ) {}

  /** Why the stream breaks the rules (the call must end), else undefined. */
  push(chunk: Buffer): { status: number; message: string } | undefined {
    let data = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.expected === undefined) {
        if (this.pendingBytes < PREFIX) return undefined;
        const broken = this.checkPrefix(Buffer.concat(this.pending, PREFIX), 0);
        if (typeof broken !== 'number') return broken;
        this.expected = PREFIX + broken;
      }
      if (this.pendingBytes < this.expected) return undefined;
      data = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
      this.expected = undefined;
    }
    let at = 0;
    while (data.length - at >= PREFIX) {
      const length = this.checkPrefix(data, at);
      if (typeof length !== 'number') return length;
      if (data.length - at < PREFIX + length) {
        this.expected = PREFIX + length;
        break;
      }
      this.onMessage(data.subarray(at + PREFIX, at + PREFIX + length));
      at += PREFIX + length;
    }
    if (at < data.length) {
      this.pending = [data.subarray(at)];
      this.pendingBytes = data.length - at;
    }
    return undefined;
  }

  get midMessage(): boolean {
    return this.pendingBytes > 0;
  }

  /** The message length the prefix at `at` declares, or why it is refused. */
  private checkPrefix(data: Buffer, at: number): number | { status: number; message: string } {
    if (data[at] !== 0) return { status: GrpcStatus.INTERNAL, message: 'compressed gRPC messages are not accepted (no grpc-encoding was offered)' };
    const length = data.readUInt32BE(at + 1);
    if (length > this.maxMessageBytes) {
      return { status: GrpcStatus.RESOURCE_EXHAUSTED, message: `received a message of ${length} bytes, larger than the limit of ${this.maxMessageBytes} bytes` };
    }
    return length;
  }
}

function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(PREFIX + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, PREFIX);
  return out;
}

/** Past this size a message is written after its prefix as it is, not copied behind it. */
const COPY_LIMIT = 16 * 1024;

/**
 * Writes messages with their prefixes; false when the stream's buffer is full. Small ones go in one
 * buffer and one write: a phase's answers (two or three of a few hundred bytes) went through
 * the stream's write queue one by one, corked, then out in a writev of as many buffers.
 */
function writeFramed(stream: http2.ServerHttp2Stream, messages: readonly Buffer[], bytes: number, end: boolean): boolean {
  if (messages.length === 1 && (messages[0] as Buffer).length <= COPY_LIMIT) {
    const one = frame(messages[0] as Buffer);
    if (end) {
      stream.end(one);
      return true;
    }
    return stream.write(one);
  }
  if (messages.every((m) => m.length <= COPY_LIMIT)) {
    const out = Buffer.allocUnsafe(bytes + PREFIX * messages.length);
    let at = 0;
    for (const m of messages) {
      out[at] = 0;
      out.writeUInt32BE(m.length, at + 1);
      m.copy(out, at + PREFIX);
      at += PREFIX + m.length;
    }
    if (end) {
      stream.end(out);
      return true;
    }
    return stream.write(out);
  }
  // A request body on its way to the provider can be megabytes: written behind its prefix, uncopied.
  stream.cork();
  let room = true;
  for (const m of messages) {
    if (m.length <= COPY_LIMIT) {
      room = stream.write(frame(m));
      continue;
    }
    const prefix = Buffer.allocUnsafe(PREFIX);
    prefix[0] = 0;
    prefix.writeUInt32BE(m.length, 1);
    stream.write(prefix);
    room = stream.write(m);
  }
  // A Writable's end() uncorks it.
  if (end) stream.end();
  else stream.uncork();
  return room;
}

function serveBidi(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, method: Extract<GrpcMethod, { kind: 'bidi' }>, opts: GrpcServerOptions, encoding: string | string[] | undefined): void {
  let closed = false;
  const closeListeners: (() => void)[] = [];
  let halfCloseListener: (() => void) | undefined;
  let messageListener: ((m: Buffer) => void) | undefined;
  let trailers: http2.OutgoingHttpHeaders | undefined;
  /** Set when the call ends before the client is done sending: what it still sends is unwanted. */
  let resetAfterTrailers = false;
  const markClosed = (): void => {
    if (closed) return;
    closed = true;
    for (const listener of closeListeners) listener();
  };
  stream.once('close', markClosed);
  if (encoding !== undefined && encoding !== 'identity') {
    trailersOnly(stream, GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${String(encoding)} is not supported; send identity`);
    return;
  }
  // The response headers go with the first answer (or the status), not in a write of their own
  // that would wake Envoy once more per attempt.
  const respondOnce = (): void => {
    if (!stream.headersSent && !stream.destroyed) stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
  };
  stream.once('wantTrailers', () => {
    stream.sendTrailers(trailers ?? { 'grpc-status': '0' });
    // RST_STREAM NO_ERROR after the trailers have gone, never before: a reset drops what is still
    // queued, and 'wantTrailers' is emitted from inside nghttp2's send loop.
    if (resetAfterTrailers) setImmediate(() => stream.close(http2.constants.NGHTTP2_NO_ERROR));
  });
  /** The immediate that will send what was written, while one is queued. */
  let queuedFlush: NodeJS.Immediate | undefined;
  /** Messages written and not yet handed to the stream, and their bytes. */
  let unsent: Buffer[] = [];
  let unsentBytes = 0;
  /** Hands what was written to the stream (`end`: and ends it), with the response headers before the first. */
  const send = (end: boolean): void => {
    if (queuedFlush !== undefined) clearImmediate(queuedFlush);
    queuedFlush = undefined;
    const messages = unsent;
    const bytes = unsentBytes;
    unsent = [];
    unsentBytes = 0;
    // Reset by the client, or the connection gone: nothing can be sent any more.
    if (stream.destroyed) return;
    respondOnce();
    if (messages.length === 0) {
      if (end) stream.end();
      return;
    }
    // Envoy sends its next message only after this answer, so a full buffer means a slow
    // reader: stop reading its messages until it catches up.
    if (!writeFramed(stream, messages, bytes, end) && !end) {
      stream.pause();
      stream.once('drain', () => stream.resume());
    }
  };
  const end = (status: number = GrpcStatus.OK, message?: string): void => {
    if (closed || stream.writableEnded) return;
    trailers = message === undefined ? { 'grpc-status': String(status) } : { 'grpc-status': String(status), 'grpc-message': encodeGrpcMessage(message) };
    // What was written goes with the status.
    send(true);
  };
  const reader = new MessageReader(opts.maxMessageBytes, (m) => messageListener?.(m));
  const flush = (): void => {
    if (queuedFlush === undefined) return;
    send(false);
  };
  const connection = (stream.session !== undefined ? connectionNames.get(stream.session) : undefined) ?? '';
  const call: BidiCall = {
    connection,
    header(name) {
      const value = headers[name];
      return Array.isArray(value) ? value[0] : value;
    },
    onMessage(listener) {
      messageListener = listener;
    },
    onHalfClose(listener) {
      halfCloseListener = listener;
    },
    onClose(listener) {
      closeListeners.push(listener);
    },
    write(message) {
      if (closed || stream.writableEnded) return false;
      if (queuedFlush === undefined) {
        // Envoy sends a phase's messages together (request headers, body, end; response headers,
        // chunk, end), and Node hands each DATA frame to the stream as an event of its own.
        // Written at once, the first answer went out alone and the others only once Node had
        // written it (a Writable queues writes while one is in flight): two socket writes per
        // phase, Envoy woken twice, its answers 0.1-0.7 ms apart (strace of
        // bench/ai-extension.ts). They are kept until an immediate, which runs after every event
        // of the read, so the phase's answers leave in one write. That immediate is late, though:
        // Node's HTTP/2 session sends what a stream hands it from a native immediate of its own
        // (MaybeScheduleWrite, node_http2.cc), and one queued while JavaScript immediates run
        // waits for the next turn of the event loop. Handed over during the read (flush, end), the
        // answers go out first thing in this turn's check phase.
        queuedFlush = setImmediate(flush);
      }
      unsent.push(message);
      unsentBytes += message.length;
      return true;
    },
    end,
    flush,
    get closed() {
      return closed;
    },
  };
  method.handle(call);
  stream.on('data', (chunk: Buffer) => {
    if (closed) return;
    const broken = reader.push(chunk);
    if (broken !== undefined) {
      // Stop the client's upload: its remaining bytes would only be read to be thrown away.
      resetAfterTrailers = true;
      end(broken.status, broken.message);
    }
  });
  stream.once('end', () => {
    if (closed) return;
    if (reader.midMessage) {
      end(GrpcStatus.INTERNAL, 'the request ended in the middle of a message');
      return;
    }
    halfCloseListener?.();
  });
}

function serveUnary(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, method: Extract<GrpcMethod, { kind: 'unary' }>, opts: GrpcServerOptions): void {
  const messages: Buffer[] = [];
  const reader = new MessageReader(opts.maxMessageBytes, (m) => messages.push(m));
  let failed = false;
  stream.on('data', (chunk: Buffer) => {
    if (failed) return;
    const broken = reader.push(chunk);
    if (broken !== undefined) {
      failed = true;
      trailersOnly(stream, broken.status, broken.message);
    }
  });
  stream.once('end', () => {
    if (failed) return;
    const request = messages[0];
    if (messages.length !== 1 || request === undefined || reader.midMessage) {
      trailersOnly(stream, GrpcStatus.INTERNAL, `a unary call takes exactly one message; received ${messages.length}${reader.midMessage ? ' and part of another' : ''}`);
      return;
    }
    const authority = headers[':authority'] ?? headers['host'] ?? '';
    method.handle(request, authority).then(
      (response) => {
        if (stream.destroyed) return;
        stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(frame(response));
      },
      (err: unknown) => {
        opts.onError?.(err);
        trailersOnly(stream, GrpcStatus.INTERNAL, err instanceof Error ? err.message : String(err));
      },
    );
  });
}
