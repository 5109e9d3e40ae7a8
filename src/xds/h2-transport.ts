import { EventEmitter } from 'node:events';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { redactSecretText } from '../envoy/secrets.js';
import { H2Connection, H2Error, h2ErrorName, type H2Stream } from '../h2/h2-connection.js';
import { GrpcCode, grpcTrailers, trailersOnlyBlock } from '../h2/grpc-status.js';
import { encodeHeaderBlock, type HeaderList } from '../h2/hpack.js';
import { withSharedReads } from '../h2/shared-reads.js';
import { GrpcMessageReader, type MessageSink, type ReadRefusal, type ReaderTexts, type RequestEncoding } from '../h2/grpc-messages.js';
import { ConnectionReceiveBudget, receivePeerOf, SharedReceiveBudget, type BudgetScope } from '../h2/receive-budget.js';
import type { FramedMessage } from './grpc-framing.js';
import type { TransportAuth } from './identity.js';

/**
 * The xDS server's gRPC transport: gRPC over HTTP/2 on src/h2/h2-connection.ts, the HTTP/2
 * server end the AI extension serves Envoy's ext_proc on, with its hostile-peer guards (rapid
 * reset, CONTINUATION flood, HPACK bomb, control-frame flood).
 *
 * Why not grpc-js over node:http2 (issue 9, 50 Backends x 1,000 delta streams): per edit every
 * stream reads two ACKs and is written two responses (CDS, then the EDS resend Envoy 1.40 needs
 * after a CDS update). Through grpc-js and Node's HTTP/2, each ACK cost a stream object's events,
 * a per-read ArrayBuffer and a native callback (about 3 us each), and each response a native
 * write per stream; serve's main thread is the path a push waits on. Here a socket read is split
 * into frames in one pass, an ACK is decoded where it lies in the read (DecodeAt), and what a
 * push gives a connection's stream leaves in one socket write.
 *
 * gRPC rules kept from grpc-js's server: messages up to MAX_RECEIVE_BYTES (RESOURCE_EXHAUSTED
 * past it; and past the bounds on partial messages, receive-budget.ts), identity, gzip and deflate
 * request encodings (a compressed message without one is an error; messages read by
 * src/h2/grpc-messages.ts), status and grpc-message (percent-encoded, secret text redacted) in the
 * trailers, UNIMPLEMENTED for a method not served, keepalive PINGs (KEEPALIVE_*), GOAWAY and a graceful
 * end on close().
 */

export { GrpcCode };

/** grpc.max_receive_message_length as the grpc-js server was given it. */
export const MAX_RECEIVE_BYTES = 16 * 1024 * 1024;
/** Keepalive, as grpc-js was configured: a PING every 30 s, its answer awaited 20 s (see Keepalive). */
export const KEEPALIVE_TIME_MS = 30_000;
export const KEEPALIVE_TIMEOUT_MS = 20_000;

const PREFIX = 5;
/** This server's words for a request that breaks the framing rules (grpc-js's server's, as clients saw them). */
const READER_TEXTS: ReaderTexts = {
  badFlag: (flag) => (flag === 1 ? 'a compressed message on a call without grpc-encoding (send grpc-encoding gzip or deflate, or messages uncompressed)' : `a message with the compressed flag ${String(flag)}`),
  tooLarge: (length, limit) => `Received message larger than max (${length} vs. ${limit})`,
};
/**
 * Receive windows. Requests are small but for a fleet's first subscriptions (a thousand names,
 * tens of KB) and load reports; a message is read as it comes and bounded by MAX_RECEIVE_BYTES,
 * and what partial messages hold by CONNECTION_RECEIVE_BYTES and XDS_RECEIVE_BUDGET (the windows
 * are given back as DATA arrives, so they bound nothing kept).
 */
const STREAM_WINDOW_BYTES = 1024 * 1024;
const CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;
const MAX_HEADER_BLOCK_BYTES = 64 * 1024;
const MAX_HEADER_LIST_BYTES = 64 * 1024;
/** Envoy opens one ADS stream per connection (and LRS maybe beside it); grpc-js announced no limit. */
const MAX_CONCURRENT_STREAMS = 1000;
/**
 * Partial request messages (begun, not yet whole) one connection may hold (receive-budget.ts):
 * two messages of MAX_RECEIVE_BYTES. Envoy's are whole in a read or a few (a fleet's first
 * subscription is tens of KB, an LRS report about as much); a client opening 1,000 streams each
 * one byte short of 16 MiB held ~16 GB before this bound.
 */
const CONNECTION_RECEIVE_BYTES = 2 * MAX_RECEIVE_BYTES;
/** The same across the process's xDS connections (every listener), shared. */
export const XDS_RECEIVE_BUDGET = new SharedReceiveBudget(256 * 1024 * 1024);
/** The warning logged at a connection's first stream refused or reclaimed for the receive budget. */
const BUDGET_WARNINGS: Record<BudgetScope, string> = {
  connection: 'xds: a stream refused (RESOURCE_EXHAUSTED): partial request messages on this connection above its limit',
  process: "xds: a stream refused (RESOURCE_EXHAUSTED): partial request messages across connections above the server's limit",
  reclaimed: "xds: a stream's partial request message reclaimed (RESOURCE_EXHAUSTED): partial request messages across connections above the server's limit, this client holding the most",
};
/** Resets by the peer of streams not yet answered before GOAWAY ENHANCE_YOUR_CALM (nghttp2's default guard). */
const PEER_RESETS = { burst: 1000, perSecond: 33 };

const RESPONSE_HEADERS = encodeHeaderBlock([
  [':status', '200'],
  ['content-type', 'application/grpc'],
  ['grpc-accept-encoding', 'identity,deflate,gzip'],
]);
function trailers(code: number, details: string): Buffer {
  return grpcTrailers(code, code === GrpcCode.OK && details === '' ? undefined : redactSecretText(details));
}

/** A call that fails before any answer: status in the response headers (gRPC "Trailers-Only"). */
function trailersOnly(stream: H2Stream, code: number, details: string, thenReset = false): void {
  stream.end(trailersOnlyBlock(code, redactSecretText(details)), thenReset);
}

function headerValue(headers: HeaderList, name: string): string | undefined {
  for (const [n, v] of headers) if (n === name) return v;
  return undefined;
}

/** Reads the message from `start` to `end` of `data` in place when it is of a kind it knows, else undefined; never throws. */
export type DecodeAt<Request> = (data: Buffer, start: number, end: number) => Request | undefined;

/** How a method's messages are read and its calls opened. */
export interface H2Method {
  /** Never throws: a message it cannot read is a value the handler refuses. */
  readonly decode: (bytes: Buffer) => unknown;
  readonly decodeAt?: DecodeAt<unknown> | undefined;
  readonly open: (call: H2Call) => void;
}

/** A gRPC status as grpc-js takes it in a server call's 'error' event. */
interface StatusLike {
  readonly code?: unknown;
  readonly details?: unknown;
}

/**
 * One server call, shaped as what the xDS server and the LRS handler use of a grpc-js server
 * duplex call (events 'data', 'end', 'cancelled', 'error', 'close'; write, end, destroy; an
 * 'error' emitted on it ends it with that status), and written directly (DirectCall): a framed
 * message's pieces go to the HTTP/2 stream as they are, `flushed` once the socket took them.
 */
export class H2Call extends EventEmitter {
  destroyed = false;
  writableEnded = false;
  /** Requests not yet handed on: none, they are handed on as read (server.ts's directCall idle check). */
  readonly readableLength = 0;
  /** Where requests go; without it, 'data' events. */
  receive: ((request: unknown) => void) | undefined;

  private headersSent = false;
  private statusSent = false;
  private gone = false;
  /** Splits the request bytes into messages (grpc-messages.ts). */
  private readonly reader: GrpcMessageReader;
  /** Each whole message, decoded and handed on; an ACK read where it lies (DecodeAt), no Buffer made for it. */
  private readonly sink: MessageSink = (data, start, end) => {
    const request = this.method.decodeAt?.(data, start, end);
    this.deliver(request !== undefined ? request : this.method.decode(data.subarray(start, end)));
    return !this.statusSent && !this.gone;
  };

  constructor(
    private readonly stream: H2Stream,
    private readonly auth: TransportAuth,
    private readonly method: H2Method,
    encoding: RequestEncoding,
    maxMessageBytes: number,
    /** What partial messages of this call's connection may hold; none: unbounded (tests). */
    budget?: ConnectionReceiveBudget,
  ) {
    super();
    this.reader = new GrpcMessageReader(maxMessageBytes, encoding, READER_TEXTS, this.sink, budget, (refusal) => this.refuse(refusal));
    // As grpc-js's server streams: an 'error' emitted on the call is its status.
    this.on('error', (err: unknown) => {
      const status = err as StatusLike;
      const code = typeof status.code === 'number' ? status.code : GrpcCode.UNKNOWN;
      const details = typeof status.details === 'string' ? status.details : err instanceof Error ? err.message : 'Unknown error';
      this.sendStatus(code, details);
    });
    stream.onData = (chunk) => this.onData(chunk);
    stream.onEnd = () => {
      if (this.gone) return;
      if (this.reader.midMessage) {
        this.sendStatus(GrpcCode.INTERNAL, 'the request ended in the middle of a message');
        return;
      }
      this.emit('end');
    };
    stream.onClose = () => this.onClose();
  }

  getAuthContext(): TransportAuth {
    return this.auth;
  }

  /** The connection's name (client address:port, or a Unix connection's number). */
  getPeer(): string {
    return this.stream.connectionName;
  }

  /**
   * Sends one message: a framed one (grpc-framing.ts) as its pieces, uncopied; a Buffer with its
   * prefix. `flushed` once the socket has taken it within the client's windows. Always true: the
   * caller's own limit (one response per type in flight) bounds what waits.
   */
  write(message: FramedMessage | Buffer, flushed?: (() => void) | ((err?: Error | null) => void)): boolean {
    if (this.statusSent || this.gone) return true;
    // Flushed in a promise job, asked first: the headers and writes below then queue no immediate of their own.
    this.stream.flush();
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(RESPONSE_HEADERS);
    }
    const done = flushed as (() => void) | undefined;
    if (Buffer.isBuffer(message)) {
      const framed = Buffer.allocUnsafe(PREFIX + message.length);
      framed[0] = 0;
      framed.writeUInt32BE(message.length, 1);
      message.copy(framed, PREFIX);
      this.stream.write(framed, done);
    } else {
      const pieces = message.pieces;
      const last = pieces.length - 1;
      for (let i = 0; i < last; i++) this.stream.write(pieces[i] as Buffer);
      this.stream.write(pieces[last] as Buffer, done);
    }
    return true;
  }

  /** Ends the call with OK. */
  end(): void {
    this.sendStatus(GrpcCode.OK, '');
  }

  /** Ends the call with INTERNAL (a fault of this end), as grpc-js does for a destroyed call. */
  destroy(err?: Error): void {
    if (this.destroyed) return;
    this.sendStatus(GrpcCode.INTERNAL, err === undefined ? 'the server ended the call' : 'Internal server error');
    this.destroyed = true;
  }

  /** Ends the call with the status; once. A client still sending is reset after it (its bytes would be read for nothing). */
  sendStatus(code: number, details: string): void {
    if (this.statusSent || this.gone) return;
    this.statusSent = true;
    this.writableEnded = true;
    this.reader.drop();
    const stillSending = !this.stream.remoteEnded && code !== GrpcCode.OK;
    if (!this.headersSent) {
      this.headersSent = true;
      if (code === GrpcCode.OK) {
        this.stream.respond(RESPONSE_HEADERS);
        this.stream.end(grpcTrailers(GrpcCode.OK, undefined));
      } else trailersOnly(this.stream, code, details, stillSending);
      return;
    }
    this.stream.end(trailers(code, details), stillSending);
  }

  private onClose(): void {
    if (this.gone) return;
    this.gone = true;
    this.reader.drop();
    // Reset by the client or the connection gone before the status went out: grpc-js's 'cancelled'.
    if (!this.statusSent) {
      this.statusSent = true;
      this.emit('cancelled');
    }
    this.destroyed = true;
    this.emit('close');
  }

  private onData(chunk: Buffer): void {
    if (this.statusSent || this.gone) return;
    const refused = this.reader.push(chunk);
    if (refused !== undefined) this.refuse(refused);
  }

  /** Ends the call for what its requests broke; the connection too when it keeps breaking the receive budget. */
  private refuse(refusal: ReadRefusal): void {
    this.sendStatus(refusal.code, refusal.message);
    if (refusal.calm !== undefined) this.stream.abort(H2Error.ENHANCE_YOUR_CALM, refusal.calm);
  }

  private deliver(request: unknown): void {
    if (this.receive !== undefined) this.receive(request);
    else this.emit('data', request);
  }
}

export interface H2ListenerOptions {
  /** By full path: `/package.Service/Method`. */
  readonly methods: ReadonlyMap<string, H2Method>;
  /** The transport facts of a connection's calls (identity.ts decides from them). */
  readonly auth: (socket: Socket) => TransportAuth;
  readonly logger: Logger;
  readonly keepalive?: { timeMs: number; timeoutMs: number } | undefined;
  readonly maxMessageBytes?: number | undefined;
  readonly peerResets?: { burst: number; perSecond: number } | undefined;
  /** Bounds on partial request messages (tests lower them): per connection, and shared across connections. */
  readonly receiveBudget?: { connectionBytes: number; shared: SharedReceiveBudget } | undefined;
}

/** Connections over Unix sockets accepted by this process. */
let unixConnections = 0;

function connectionName(socket: Socket): string {
  return socket.remotePort !== undefined ? `${socket.remoteAddress ?? ''}:${socket.remotePort}` : `unix-${process.pid}-${++unixConnections}`;
}

/**
 * A listener's HTTP/2 connections, gRPC calls on them routed by path. The listening socket is the
 * caller's (net or tls server): `accept` takes each connection.
 */
export class H2GrpcConnections {
  private readonly connections = new Map<H2Connection, Socket>();
  private closing = false;

  constructor(private readonly opts: H2ListenerOptions) {}

  get size(): number {
    return this.connections.size;
  }

  accept(socket: Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const auth = this.opts.auth(socket);
    const maxMessageBytes = this.opts.maxMessageBytes ?? MAX_RECEIVE_BYTES;
    const name = connectionName(socket);
    // Set below, before the connection reads anything: its PING answers go to it.
    let keepalive: Keepalive | undefined;
    const { connectionBytes, shared } = this.opts.receiveBudget ?? { connectionBytes: CONNECTION_RECEIVE_BYTES, shared: XDS_RECEIVE_BUDGET };
    const peer = receivePeerOf(socket, name, auth.sslPeerCertificate === undefined ? undefined : (auth.sslPeerCertificate.subjectaltname ?? ''));
    const budget = new ConnectionReceiveBudget(connectionBytes, shared, (scope, limitBytes) => this.opts.logger.warn({ connection: name, peer: peer.key, scope, limitBytes }, BUDGET_WARNINGS[scope]), peer);
    const connection = new H2Connection(socket, name, {
      streamWindowBytes: STREAM_WINDOW_BYTES,
      connectionWindowBytes: CONNECTION_WINDOW_BYTES,
      maxHeaderBlockBytes: MAX_HEADER_BLOCK_BYTES,
      maxHeaderListBytes: MAX_HEADER_LIST_BYTES,
      maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
      peerResets: this.opts.peerResets ?? PEER_RESETS,
      onStream: (stream, headers) => this.serve(stream, headers, auth, maxMessageBytes, budget),
      onPingAck: () => keepalive?.answered(),
      onConnectionError: (code, reason, by) => this.opts.logger.debug({ connection: name, code: h2ErrorName(code), reason, by }, by === 'local' ? 'xds: HTTP/2 connection ended for a fault of the peer' : 'xds: HTTP/2 connection ended by the peer'),
    });
    const { timeMs, timeoutMs } = this.opts.keepalive ?? { timeMs: KEEPALIVE_TIME_MS, timeoutMs: KEEPALIVE_TIMEOUT_MS };
    keepalive = new Keepalive(connection, socket, timeMs, timeoutMs, () => {
      this.opts.logger.debug({ connection: name }, 'xds: keepalive PING unanswered; closing the connection');
      connection.destroy();
    });
    this.connections.set(connection, socket);
    // A peer's reset is no fault of ours, nor a reason to end the process.
    socket.on('error', (err) => this.opts.logger.debug({ err, connection: name }, 'xds: connection ended by an error'));
    socket.once('close', () => {
      keepalive?.stop();
      this.connections.delete(connection);
    });
  }

  /**
   * GOAWAY to every connection; each then ends once its calls have (the caller ends them first),
   * or is cut after `graceMs`. Resolves when every connection is gone.
   */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    const gone: Promise<void>[] = [];
    for (const [connection, socket] of this.connections) {
      connection.goAway();
      gone.push(
        new Promise<void>((resolve) => {
          if (socket.destroyed) {
            resolve();
            return;
          }
          socket.once('close', () => resolve());
          const cut = setTimeout(() => connection.destroy(), graceMs);
          cut.unref();
          socket.once('close', () => clearTimeout(cut));
          // What is queued (trailers, the GOAWAY) leaves, then the writing side ends: a peer that reads sees a clean close.
          queueMicrotask(() => connection.end());
        }),
      );
    }
    await Promise.all(gone);
  }

  private serve(stream: H2Stream, headers: HeaderList, auth: TransportAuth, maxMessageBytes: number, budget: ConnectionReceiveBudget): void {
    const contentType = headerValue(headers, 'content-type');
    if (contentType === undefined || !contentType.startsWith('application/grpc')) {
      // gRPC over HTTP/2: a request that is not gRPC is answered with an HTTP status.
      stream.end(encodeHeaderBlock([[':status', '415']]), !stream.remoteEnded);
      return;
    }
    const path = headerValue(headers, ':path');
    const method = path === undefined ? undefined : this.opts.methods.get(path);
    if (method === undefined) {
      trailersOnly(stream, GrpcCode.UNIMPLEMENTED, `unknown method ${String(path)}`, !stream.remoteEnded);
      return;
    }
    const encoding = headerValue(headers, 'grpc-encoding') ?? 'identity';
    if (encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'deflate') {
      trailersOnly(stream, GrpcCode.UNIMPLEMENTED, `grpc-encoding ${encoding} is not supported; send identity, gzip or deflate`, !stream.remoteEnded);
      return;
    }
    const call = new H2Call(stream, auth, method, encoding, maxMessageBytes, budget);
    method.open(call);
  }
}

/**
 * A PING every `timeMs`; one unanswered after `timeoutMs` ends the connection. A PING waits in
 * the socket's buffer behind the responses queued before it (a thousand Clusters are megabytes)
 * and a busy client reads those first: while the socket keeps draining, the PING's wait is
 * extended, so a live client reading a large response is not cut; one that reads nothing is.
 */
class Keepalive {
  private timer: NodeJS.Timeout | undefined;
  private waiting = false;
  private drainedAt = 0;
  private stopped = false;

  constructor(
    private readonly connection: H2Connection,
    private readonly socket: Socket,
    private readonly timeMs: number,
    private readonly timeoutMs: number,
    private readonly dead: () => void,
  ) {
    this.schedule();
  }

  answered(): void {
    if (!this.waiting || this.stopped) return;
    this.waiting = false;
    clearTimeout(this.timer);
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    this.timer = setTimeout(() => this.ping(), this.timeMs);
    this.timer.unref();
  }

  private ping(): void {
    if (this.stopped) return;
    this.waiting = true;
    this.connection.ping();
    this.drainedAt = this.taken();
    this.timer = setTimeout(() => this.check(), this.timeoutMs);
    this.timer.unref();
  }

  private check(): void {
    if (this.stopped || !this.waiting) return;
    const taken = this.taken();
    if (taken > this.drainedAt && this.socket.writableLength > 0) {
      this.drainedAt = taken;
      this.timer = setTimeout(() => this.check(), this.timeoutMs);
      this.timer.unref();
      return;
    }
    this.dead();
  }

  /** Bytes the socket has handed to the kernel. */
  private taken(): number {
    return this.socket.bytesWritten - this.socket.writableLength;
  }
}

/**
 * A plaintext listener (TCP or a Unix socket). Its sockets read into the process's one read
 * buffer (shared-reads.ts): what a request keeps past its read is strings and numbers (wire.ts,
 * lrs.ts), or a copy (RecentRequests, a partial message).
 */
export function plaintextServer(connections: H2GrpcConnections): NetServer {
  return createNetServer({ noDelay: true, pauseOnConnect: true }, (socket) => connections.accept(withSharedReads(socket)));
}

/** Transport facts of a TLS connection: its client certificate only when the handshake verified it. */
export function tlsAuth(socket: Socket): TransportAuth {
  const tls = socket as TLSSocket;
  if (tls.authorized !== true) return { transportSecurityType: 'ssl' };
  const certificate = tls.getPeerCertificate();
  return { transportSecurityType: 'ssl', ...(certificate !== null && Object.keys(certificate).length > 0 ? { sslPeerCertificate: { subjectaltname: certificate.subjectaltname } } : {}) };
}

export function tlsServer(connections: H2GrpcConnections, context: { cert: Buffer; key: Buffer; ca?: Buffer | undefined }, logger: Logger): TlsServer {
  const server = createTlsServer(
    {
      ...secureContextOptions(context),
      ALPNProtocols: ['h2'],
      // Checked here, used by tlsAuth: a certificate grants a role only when the handshake verified it.
      requestCert: context.ca !== undefined,
      rejectUnauthorized: context.ca !== undefined,
    },
    (socket) => {
      // ALPN h2 or none (a gRPC client that offers none still speaks HTTP/2 with prior knowledge).
      if (socket.alpnProtocol !== false && socket.alpnProtocol !== 'h2') {
        socket.destroy();
        return;
      }
      connections.accept(socket);
    },
  );
  server.on('tlsClientError', (err) => logger.debug({ err }, 'xds: TLS handshake failed'));
  return server;
}

export function secureContextOptions(context: { cert: Buffer; key: Buffer; ca?: Buffer | undefined }): { cert: Buffer; key: Buffer; ca?: Buffer } {
  return { cert: context.cert, key: context.key, ...(context.ca !== undefined ? { ca: context.ca } : {}) };
}

export { H2Error };
