import { createServer, type AddressInfo, type Socket } from 'node:net';
import { H2Connection, H2Error, h2ErrorName, type H2Stream } from '../h2/h2-connection.js';
import { isSharedRead, withSharedReads } from '../h2/shared-reads.js';
import { GrpcMessageReader, type ReadRefusal, type ReaderTexts } from '../h2/grpc-messages.js';
import { ConnectionReceiveBudget, receivePeerOf, SharedReceiveBudget, type BudgetScope } from '../h2/receive-budget.js';
import { GrpcCode as GrpcStatus, grpcTrailers, trailersOnlyBlock } from '../h2/grpc-status.js';
import { encodeHeaderBlock, type HeaderList } from '../h2/hpack.js';

/**
 * The AI extension's gRPC services served on its own HTTP/2 server (h2-connection.ts; gRPC over
 * HTTP/2: 5-byte length prefix per message, `content-type: application/grpc`, status in the
 * trailers).
 *
 * Why not grpc-js: Envoy opens one ext_proc stream per attempt and exchanges five messages each
 * way on it; grpc-js's per-call and per-message machinery (interceptors, metadata and status
 * objects, a serialized copy of every message) was most of the extension's CPU per attempt
 * (src/ai-extension/README.md, "Cost per attempt"). Nor node:http2, since ext18: its stream
 * objects and events per call were the next third. Only what Envoy uses is served: bidi and
 * unary calls, identity encoding, no deadlines (Envoy's own timers bound every call).
 */

/** The gRPC status codes, under the name this server's callers know them by. */
export { GrpcStatus };

/** One bidirectional call, as its handler sees it. */
export interface BidiCall {
  /** A request header (gRPC metadata), first value. */
  header(name: string): string | undefined;
  /** Each request message, in order: a buffer of its own (never the shared read buffer), the listener may keep it. */
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
  /**
   * An HTTP/2 connection ended with an error, sent (`by: 'local'`, a GOAWAY to a peer that broke
   * the protocol or a limit) or received: once per connection. `reason` names the rule, never a
   * header value (they may carry credentials).
   */
  onConnectionError?: (event: { connection: string; code: string; reason: string; by: 'local' | 'peer' }) => void;
  /**
   * A stream refused for the bound on partial request messages (src/h2/receive-budget.ts), or its
   * message reclaimed for another client's: the first of each connection, with the client it is
   * counted for (`peer`), the bound passed and its limit.
   */
  onReceiveRefused?: (event: { connection: string; peer: string; scope: BudgetScope; limitBytes: number }) => void;
  /** Bounds on partial request messages (tests lower them); default 2 x maxMessageBytes a connection, EXT_PROC_RECEIVE_BUDGET across. */
  receiveBudget?: { connectionBytes: number; shared: SharedReceiveBudget };
  /** The rapid-reset guard (tests lower it); see PEER_RESETS. */
  peerResets?: { burst: number; perSecond: number };
}

export interface RunningGrpcServer {
  /** The TCP port; 0 on a Unix socket. */
  port: number;
  /** Drops every connection (in-flight calls fail on the client's side) and stops listening. */
  close(): Promise<void>;
}

/** Connections over Unix sockets this process accepted (on any of its servers). */
let unixConnections = 0;

function connectionName(socket: Socket): string {
  // A Unix socket's client end has no address (Envoy's pipe connections are unnamed): the pid
  // keeps the name apart from those of an extension that ran before on the same socket.
  return socket.remotePort !== undefined ? `${socket.remoteAddress ?? ''}:${socket.remotePort}` : `unix-${process.pid}-${++unixConnections}`;
}

const PREFIX = 5;
/**
 * Flow-control windows offered to Envoy: a large request body goes in one flight. HTTP/2's
 * default window (64 KiB) made Envoy stop after each 64 KiB of a request body and wait for a
 * WINDOW_UPDATE: a round trip per 64 KiB on the request's path. Every message is read as it comes
 * and kept whole anyway (bounded by maxMessageBytes, and partial ones by EXT_PROC_RECEIVE_BUDGET),
 * so the window bounds nothing worth a wait.
 */
const STREAM_WINDOW_BYTES = 16 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES = 64 * 1024 * 1024;
/**
 * Partial request messages (begun, not yet whole) held across this process's ext_proc
 * connections (receive-budget.ts); per connection the bound is two messages of maxMessageBytes.
 * Envoy's request bodies come whole in one flight (the windows above), so its partial messages
 * last a read or a few.
 */
export const EXT_PROC_RECEIVE_BUDGET = new SharedReceiveBudget(512 * 1024 * 1024);
/** Envoy's ext_proc headers are a few hundred bytes; nghttp2's own default bound is 64 KiB. */
const MAX_HEADER_BLOCK_BYTES = 64 * 1024;
/** The same bound once decoded (SETTINGS_MAX_HEADER_LIST_SIZE): a few hundred bytes are used. */
const MAX_HEADER_LIST_BYTES = 64 * 1024;
/**
 * Streams open at once per connection. Envoy keeps one ext_proc stream per attempt in flight
 * (a streamed answer's for its whole length) and opens another connection past the peer's
 * SETTINGS_MAX_CONCURRENT_STREAMS once it has read them (a burst before that is taken: see
 * h2-connection.ts, MAX_STREAMS_BEFORE_SETTINGS_ACK); node:http2 announced no limit.
 */
const MAX_CONCURRENT_STREAMS = 1000;
/**
 * Resets by the client of streams not yet answered, before GOAWAY ENHANCE_YOUR_CALM: the values
 * serve gave node:http2's guard before ext18 (nghttp2's own, 1000 then 33 a second, cut Envoys
 * bootstrapped without `ext_proc_graceful_grpc_close`, which reset every ext_proc stream).
 */
const PEER_RESETS = { burst: 10_000, perSecond: 5_000 };

/** The first value of a header (names arrive lower-case in HTTP/2). */
function headerValue(headers: HeaderList, name: string): string | undefined {
  for (const [n, v] of headers) if (n === name) return v;
  return undefined;
}

export async function startGrpcServer(opts: GrpcServerOptions): Promise<RunningGrpcServer> {
  const connections = new Set<H2Connection>();
  const shared = opts.receiveBudget?.shared ?? EXT_PROC_RECEIVE_BUDGET;
  // Its sockets read into the process's one read buffer (shared-reads.ts): a message handed on
  // out of it is copied (serveBidi), since the exchange keeps request and response bodies.
  const server = createServer({ noDelay: true, pauseOnConnect: true }, (accepted) => {
    const socket = withSharedReads(accepted);
    const name = connectionName(socket);
    const peer = receivePeerOf(socket, name, undefined);
    const budget = new ConnectionReceiveBudget(opts.receiveBudget?.connectionBytes ?? 2 * opts.maxMessageBytes, shared, (scope, limitBytes) => opts.onReceiveRefused?.({ connection: name, peer: peer.key, scope, limitBytes }), peer);
    const connection = new H2Connection(socket, name, {
      streamWindowBytes: STREAM_WINDOW_BYTES,
      connectionWindowBytes: CONNECTION_WINDOW_BYTES,
      maxHeaderBlockBytes: MAX_HEADER_BLOCK_BYTES,
      maxHeaderListBytes: MAX_HEADER_LIST_BYTES,
      maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
      peerResets: opts.peerResets ?? PEER_RESETS,
      onStream: (stream, headers) => serveStream(stream, headers, opts, budget),
      onConnectionError: (code, reason, by) => opts.onConnectionError?.({ connection: connection.name, code: h2ErrorName(code), reason, by }),
    });
    connections.add(connection);
    socket.once('close', () => connections.delete(connection));
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
        for (const connection of connections) connection.destroy();
      }),
  };
}

function serveStream(stream: H2Stream, headers: HeaderList, opts: GrpcServerOptions, budget: ConnectionReceiveBudget): void {
  const path = headerValue(headers, ':path');
  const method = path !== undefined ? opts.methods.get(path) : undefined;
  const contentType = headerValue(headers, 'content-type');
  if (contentType === undefined || !contentType.startsWith('application/grpc')) {
    // gRPC over HTTP/2: a request that is not gRPC is answered with an HTTP status.
    stream.end(encodeHeaderBlock([[':status', '415']]));
    return;
  }
  if (method === undefined) {
    trailersOnly(stream, GrpcStatus.UNIMPLEMENTED, `unknown method ${String(path)}: this server serves ${[...opts.methods.keys()].join(', ')}`);
    return;
  }
  const encoding = headerValue(headers, 'grpc-encoding');
  if (method.kind === 'bidi') serveBidi(stream, headers, method, opts, encoding, budget);
  else serveUnary(stream, headers, method, opts, budget);
}

/** A call that fails before any answer: status in the response headers (gRPC "Trailers-Only"). */
function trailersOnly(stream: H2Stream, status: number, message: string, thenReset = false): void {
  stream.end(trailersOnlyBlock(status, message), thenReset);
}

const RESPONSE_HEADERS = encodeHeaderBlock([[':status', '200'], ['content-type', 'application/grpc']]);
/** This server's words for a request that breaks the framing rules (src/h2/grpc-messages.ts reads them). */
const READER_TEXTS: ReaderTexts = {
  badFlag: () => 'compressed gRPC messages are not accepted (no grpc-encoding was offered)',
  tooLarge: (length, limit) => `received a message of ${length} bytes, larger than the limit of ${limit} bytes`,
};

/** Writes messages with their prefixes: small ones copied into one buffer, large ones behind their prefix, uncopied. */
function writeFramed(stream: H2Stream, messages: readonly Buffer[], bytes: number): void {
  let small = 0;
  for (const m of messages) if (m.length <= COPY_LIMIT) small += PREFIX + m.length;
  if (small === bytes + PREFIX * messages.length) {
    const out = Buffer.allocUnsafe(small);
    let at = 0;
    for (const m of messages) {
      out[at] = 0;
      out.writeUInt32BE(m.length, at + 1);
      m.copy(out, at + PREFIX);
      at += PREFIX + m.length;
    }
    stream.write(out);
    return;
  }
  // A request body on its way to the provider can be megabytes.
  for (const m of messages) {
    const prefix = Buffer.allocUnsafe(PREFIX);
    prefix[0] = 0;
    prefix.writeUInt32BE(m.length, 1);
    stream.write(prefix);
    stream.write(m);
  }
}

/** Past this size a message is written after its prefix as it is, not copied behind it. */
const COPY_LIMIT = 16 * 1024;

function serveBidi(stream: H2Stream, headers: HeaderList, method: Extract<GrpcMethod, { kind: 'bidi' }>, opts: GrpcServerOptions, encoding: string | undefined, budget: ConnectionReceiveBudget): void {
  let closed = false;
  const closeListeners: (() => void)[] = [];
  let halfCloseListener: (() => void) | undefined;
  let messageListener: ((m: Buffer) => void) | undefined;
  let ended = false;
  // Each message a view of its own buffer (a message spread over reads, or a copy of one that
  // lay in the shared read buffer): the exchange keeps views of it (bodies, raw header values).
  const reader = new GrpcMessageReader(
    opts.maxMessageBytes,
    'identity',
    READER_TEXTS,
    (data, start, end) => {
      messageListener?.(isSharedRead(data) ? Buffer.from(data.subarray(start, end)) : data.subarray(start, end));
      return !closed && !ended;
    },
    budget,
    (refusal) => refuse(refusal),
  );
  const markClosed = (): void => {
    if (closed) return;
    closed = true;
    reader.drop();
    for (const listener of closeListeners) listener();
  };
  stream.onClose = markClosed;
  if (encoding !== undefined && encoding !== 'identity') {
    trailersOnly(stream, GrpcStatus.UNIMPLEMENTED, `grpc-encoding ${encoding} is not supported; send identity`);
    return;
  }
  // The response headers go with the first answer (or the status), in the same write.
  stream.respond(RESPONSE_HEADERS);
  /** Messages written and not yet handed to the stream, and their bytes. */
  let unsent: Buffer[] = [];
  let unsentBytes = 0;
  const send = (): void => {
    if (unsent.length === 0) return;
    const messages = unsent;
    const bytes = unsentBytes;
    unsent = [];
    unsentBytes = 0;
    writeFramed(stream, messages, bytes);
  };
  // Stop the client's upload: its remaining bytes would only be read to be thrown away.
  const refuse = (refusal: ReadRefusal): void => {
    end(refusal.code, refusal.message, true);
    if (refusal.calm !== undefined) stream.abort(H2Error.ENHANCE_YOUR_CALM, refusal.calm);
  };
  const end = (status: number = GrpcStatus.OK, message?: string, thenReset = false): void => {
    if (closed || ended) return;
    ended = true;
    reader.drop();
    // What was written goes with the status.
    send();
    stream.end(grpcTrailers(status, message), thenReset);
  };
  const call: BidiCall = {
    connection: stream.connectionName,
    header(name) {
      return headerValue(headers, name);
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
      if (closed || ended) return false;
      // Handed to the stream at once; the connection sends what its streams were given in one
      // write: in a promise job after the caller's end() or flush() (Envoy waits for those
      // answers), else in an immediate (h2-connection.ts, flushSoon).
      unsent.push(message);
      unsentBytes += message.length;
      send();
      return true;
    },
    end,
    flush() {
      stream.flush();
    },
    get closed() {
      return closed;
    },
  };
  method.handle(call);
  stream.onData = (chunk: Buffer) => {
    if (closed || ended) return;
    const refused = reader.push(chunk);
    if (refused !== undefined) refuse(refused);
  };
  stream.onEnd = () => {
    if (closed || ended) return;
    if (reader.midMessage) {
      end(GrpcStatus.INTERNAL, 'the request ended in the middle of a message');
      return;
    }
    halfCloseListener?.();
  };
}

function serveUnary(stream: H2Stream, headers: HeaderList, method: Extract<GrpcMethod, { kind: 'unary' }>, opts: GrpcServerOptions, budget: ConnectionReceiveBudget): void {
  const messages: Buffer[] = [];
  let failed = false;
  const refuse = (refusal: ReadRefusal): void => {
    failed = true;
    reader.drop();
    trailersOnly(stream, refusal.code, refusal.message, true);
    if (refusal.calm !== undefined) stream.abort(H2Error.ENHANCE_YOUR_CALM, refusal.calm);
  };
  const reader = new GrpcMessageReader(
    opts.maxMessageBytes,
    'identity',
    READER_TEXTS,
    (data, start, end) => {
      // Kept past the read: copied. A second message stops the reading (refused below).
      messages.push(Buffer.from(data.subarray(start, end)));
      return messages.length === 1;
    },
    budget,
    refuse,
  );
  stream.onClose = () => reader.drop();
  stream.onData = (chunk: Buffer) => {
    if (failed) return;
    const refused = reader.push(chunk);
    if (refused !== undefined) {
      refuse(refused);
      return;
    }
    // Kept until the call ends: a second message is refused at once, not kept with the others.
    if (messages.length > 1) {
      failed = true;
      reader.drop();
      trailersOnly(stream, GrpcStatus.INTERNAL, 'a unary call takes exactly one message; received more', true);
    }
  };
  stream.onEnd = () => {
    if (failed) return;
    const request = messages[0];
    if (messages.length !== 1 || request === undefined || reader.midMessage) {
      trailersOnly(stream, GrpcStatus.INTERNAL, `a unary call takes exactly one message; received ${messages.length}${reader.midMessage ? ' and part of another' : ''}`);
      return;
    }
    const authority = headerValue(headers, ':authority') ?? headerValue(headers, 'host') ?? '';
    method.handle(request, authority).then(
      (response) => {
        if (stream.closed) return;
        stream.respond(RESPONSE_HEADERS);
        writeFramed(stream, [response], response.length);
        stream.end(grpcTrailers(GrpcStatus.OK, undefined));
      },
      (err: unknown) => {
        opts.onError?.(err);
        trailersOnly(stream, GrpcStatus.INTERNAL, err instanceof Error ? err.message : String(err));
      },
    );
  };
}
