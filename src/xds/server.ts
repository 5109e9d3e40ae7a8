import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { GATEWAY_NODE_METADATA, gatewayKeyProblem } from '../envoy/bootstrap.js';
import { redactSecretText } from '../envoy/secrets.js';
import { TypeUrl, type TypeUrlValue } from '../envoy/resources.js';
import { AckLedger, type FleetTypeState } from './ack-ledger.js';
import { AttemptFormViews, needsLegacyAttemptFacts } from './attempt-forms.js';
import { SHARED_VIEW, SnapshotCache, type CachedResource, type CacheChange, type CacheView } from './cache.js';
import { ClientRecord, type ClientSnapshot, type StreamHooks, type StreamKind } from './client-state.js';
import { DeltaStream } from './delta.js';
import { ENVOY_SOCKET_IDENTITY, UNIX_SOCKET_IDENTITY, identityOfTcpCall, type StreamIdentity, type TransportAuth } from './identity.js';
import type { GrpcService } from './lrs.js';
import { H2Call, H2GrpcConnections, plaintextServer, secureContextOptions, tlsAuth, tlsServer, type H2Method } from './h2-transport.js';
import { serverTlsOf, watchServerCertificates, type XdsServerTls } from './tls.js';
import { directCall, framedBatch, joined, sharedFraming, type DirectCall, type FramedMessage } from './grpc-framing.js';
import { FANOUT_SLICE_MS, FIRST_PUSH_SLICE_MS, LEAD_HOLD_MS, LEAD_WRITE_BYTES, LeadWrite, PacedFanOut, SlicedWork, type PendingChanges } from './push-pacer.js';
import { DELTA_CLIENT, SOTW_CLIENT, rehearsePushes, type RehearsalResult } from './push-rehearsal.js';
import { SharedResponseBodies, SotwStream } from './sotw.js';
import {
  decodeDeltaDiscoveryRequest,
  decodeDiscoveryRequest,
  deltaReplyAt,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
  type NodeInfo,
  type WireMessage,
} from './wire.js';

export interface ClientEvent {
  readonly streamId: number;
  readonly nodeId: string;
  readonly nodeCluster: string;
  readonly kind: StreamKind;
}

export interface SentEvent {
  readonly streamId: number;
  readonly nodeId: string;
  readonly typeUrl: string;
  readonly version: string;
}

export interface AckEvent extends SentEvent {
  readonly kind: StreamKind;
  /** What the acknowledged (or rejected) response carried: SotW, the client's whole set; delta, the resources it updated. */
  readonly resources: readonly CachedResource[];
}

export interface NackEvent extends AckEvent {
  readonly code: number;
  /** Envoy's error_detail.message, with the secret values it may quote redacted (redactSecretText). */
  readonly message: string;
}

export interface XdsServerEvents {
  connected: [ClientEvent];
  disconnected: [ClientEvent];
  /** A response went out on a stream (one per response, SotW or delta). */
  sent: [SentEvent];
  ack: [AckEvent];
  nack: [NackEvent];
  /** The fleet's ACK state (fleet()) changed. */
  fleet: [];
  /**
   * The views that must be served the legacy attempt facts form (legacyAttemptFactsViews())
   * changed. Emitted while the stream that changed it is being selected, before its first
   * response: a listener that serves those views their form at once (cache.setResources) gets
   * that stream its first response in the right form.
   */
  attemptForms: [ReadonlySet<string>];
}

export interface XdsServerOptions {
  cache: SnapshotCache;
  logger?: Logger;
  /** More services on the same port and credentials (load reporting, src/xds/lrs.ts). */
  services?: readonly GrpcService[];
  /**
   * Rehearse the push of an edit once streams are connected and the server has been idle for
   * REHEARSAL_IDLE_MS (push-rehearsal.ts), in each protocol (SotW, delta) a stream came with: on a
   * private server and cache, nothing sent to a real stream. Default true.
   */
  rehearsePushes?: boolean;
  /**
   * A write of at least `minBytes` in a change's first slice holds the rest of the fan-out until it
   * has left, `maxHoldMs` at most (push-pacer.ts LeadWrite). Defaults LEAD_WRITE_BYTES, LEAD_HOLD_MS.
   */
  leadWrite?: { minBytes?: number; maxHoldMs?: number };
  /**
   * HTTP/2 keepalive of the xDS transport (h2-transport.ts): a PING every `timeMs`, the
   * connection ended when one is unanswered after `timeoutMs`. Defaults 30 s and 20 s.
   */
  keepalive?: { timeMs: number; timeoutMs: number };
  /**
   * `h2` (default): Switchyard's own gRPC over HTTP/2 (h2-transport.ts); `grpc-js`: grpc-js's
   * server, kept selectable for one release (env SWITCHYARD_XDS_TRANSPORT=grpc-js).
   */
  transport?: XdsTransport;
}

export type XdsTransport = 'h2' | 'grpc-js';

/** The transport the environment asks for: SWITCHYARD_XDS_TRANSPORT=grpc-js, else h2. */
export function xdsTransportFromEnv(env: NodeJS.ProcessEnv = process.env): XdsTransport {
  const value = env['SWITCHYARD_XDS_TRANSPORT'];
  if (value === undefined || value === '' || value === 'h2') return 'h2';
  if (value === 'grpc-js') return 'grpc-js';
  throw new Error(`SWITCHYARD_XDS_TRANSPORT takes h2 (the default) or grpc-js, got "${value}"`);
}

/** A bound listener of the server, whatever its transport: close() ends its connections (their calls ended first). */
interface Endpoint {
  close(): Promise<void>;
}

/** How long stop() lets a connection finish reading its last frames before cutting it. */
const CLOSE_GRACE_MS = 1_000;

/** The transport facts of a plaintext connection: anonymous on TCP (identity.ts). */
const PLAINTEXT_AUTH = {};

/** How long the server is to have read no request, and pushed nothing, before it rehearses a push. */
export const REHEARSAL_IDLE_MS = 100;
/** The event loop's utilization over those REHEARSAL_IDLE_MS under which the process counts as idle. */
const REHEARSAL_IDLE_UTILIZATION = 0.5;

/** The rehearsal's stand-in clients: Envoys on plaintext, as the streams whose pushes it rehearses mostly are. */
const REHEARSAL_IDENTITY: StreamIdentity = { role: 'envoy', via: 'plaintext' };

/**
 * The call of a rehearsal stream (push-rehearsal.ts): what the server's stream bookkeeping reads
 * of a grpc-js call; its responses go through the DirectCall it is opened with.
 */
class DetachedCall extends EventEmitter {
  destroyed = false;
  writableEnded = false;

  end(): void {
    if (this.writableEnded) return;
    this.writableEnded = true;
    this.emit('close');
  }

  destroy(): void {
    this.destroyed = true;
    this.emit('close');
  }

  write(): boolean {
    throw new Error('a rehearsal stream writes through the transport it was opened with');
  }
}

const SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService';

/**
 * A request that could not be read: the stream is closed with INVALID_ARGUMENT and this reason
 * (grpc-js would otherwise answer INTERNAL, which says the fault is ours).
 */
interface UndecodableRequest {
  readonly undecodable: string;
}

function decodeOrReason<T extends { readonly typeUrl: string }>(decode: (bytes: Buffer) => T, what: string): (bytes: Buffer) => T | UndecodableRequest {
  const recent = new RecentRequests<T>();
  return (bytes) => {
    const known = recent.get(bytes);
    if (known !== undefined) return known;
    let request: T;
    try {
      request = decode(bytes);
    } catch (err) {
      return { undecodable: `${what} could not be decoded (${err instanceof Error ? err.message : String(err)}); send a serialized envoy.service.discovery.v3.${what}` };
    }
    // On an aggregated stream the type URL is what the request is about (xDS protocol, ADS).
    if (request.typeUrl === '') return { undecodable: `${what} has no type_url; on an ADS stream every request names the resource type it is for` };
    recent.set(bytes, request);
    return request;
  };
}

/**
 * The last large requests decoded, by their bytes. A fleet that connects asks for the same
 * assignments in the same bytes on every stream: a thousand names cost about a millisecond to
 * decode and then to put in a stream's subscription (every name a new string, hashed anew), and
 * the same request object, with the same strings, is decoded once and hashed once instead.
 * Decoded requests are read only, so streams may share one.
 */
export class RecentRequests<T> {
  private readonly entries: { bytes: Buffer; request: T }[] = [];

  get(bytes: Buffer): T | undefined {
    if (bytes.length < SHARED_DECODE_MIN_BYTES) return undefined;
    for (const entry of this.entries) if (entry.bytes.length === bytes.length && entry.bytes.equals(bytes)) return entry.request;
    return undefined;
  }

  set(bytes: Buffer, request: T): void {
    if (bytes.length < SHARED_DECODE_MIN_BYTES) return;
    // A copy of its own (allocUnsafeSlow: Buffer.from would copy into Node's shared 64 KiB pool):
    // the request's bytes are a view of the socket read they came in, which a kept view would
    // hold, 64 KiB or more, for as long as the entry lives.
    const copy = Buffer.allocUnsafeSlow(bytes.length);
    bytes.copy(copy);
    this.entries.unshift({ bytes: copy, request });
    if (this.entries.length > SHARED_DECODES_KEPT) this.entries.pop();
  }
}

/** Below this, decoding costs less than looking for an equal request. */
const SHARED_DECODE_MIN_BYTES = 1024;
const SHARED_DECODES_KEPT = 8;

/** A delta ACK read in place (grpc-framing.ts DecodeAt); one without a type URL is left to decodeOrReason, which refuses it. */
function deltaAckAt(data: Buffer, start: number, end: number): DeltaDiscoveryRequest | undefined {
  const request = deltaReplyAt(data, start, end);
  return request !== undefined && request.typeUrl !== '' ? request : undefined;
}

function isUndecodable(request: object): request is UndecodableRequest {
  return 'undecodable' in request;
}

/** Responses are pre-encoded Buffers; requests are decoded into small typed records. */
const adsService: grpc.ServiceDefinition = {
  StreamAggregatedResources: {
    path: `${SERVICE}/StreamAggregatedResources`,
    requestStream: true,
    responseStream: true,
    requestSerialize: (): Buffer => {
      throw new Error('the ADS server never sends requests');
    },
    requestDeserialize: decodeOrReason(decodeDiscoveryRequest, 'DiscoveryRequest'),
    responseSerialize: (message: Buffer): Buffer => message,
    responseDeserialize: (bytes: Buffer): Buffer => bytes,
    originalName: 'streamAggregatedResources',
  },
  DeltaAggregatedResources: {
    path: `${SERVICE}/DeltaAggregatedResources`,
    requestStream: true,
    responseStream: true,
    requestSerialize: (): Buffer => {
      throw new Error('the ADS server never sends requests');
    },
    requestDeserialize: decodeOrReason(decodeDeltaDiscoveryRequest, 'DeltaDiscoveryRequest'),
    responseSerialize: (message: Buffer): Buffer => message,
    responseDeserialize: (bytes: Buffer): Buffer => bytes,
    originalName: 'deltaAggregatedResources',
  },
};

/** A framed message when grpc-js was taught to write those (grpc-framing.ts), else the message's bytes. */
type Outgoing = FramedMessage | Buffer;
type SotwCall = grpc.ServerDuplexStream<DiscoveryRequest | UndecodableRequest, Outgoing>;
type DeltaCall = grpc.ServerDuplexStream<DeltaDiscoveryRequest | UndecodableRequest, Outgoing>;

/**
 * A response write for an AdsStream: `flushed` once grpc-js has handed it to HTTP/2 (within the
 * client's flow-control window); false when the call's buffer is full (written directly, there
 * is no such buffer: the one response per type in flight is the limit, directCall).
 */
function writerFor(call: SotwCall | DeltaCall, direct: DirectCall | undefined, lead: LeadWrite): (messages: readonly WireMessage[], flushed: () => void) => boolean {
  const done = (flushed: () => void) => (err: Error | null | undefined) => {
    if (err === null || err === undefined) flushed();
  };
  // A response shared by many streams is framed once and the same pieces go to each, the
  // responses of one push in one write (grpc-framing.ts).
  if (direct !== undefined) {
    return (messages, flushed) => {
      // What the call's object stream would refuse: nothing more goes out on a call that ended.
      if (call.destroyed || call.writableEnded) return true;
      const message = framedBatch(messages);
      direct.write(message, lead.track(message.byteLength, flushed));
      return true;
    };
  }
  if (sharedFraming()) {
    return (messages, flushed) => {
      const message = framedBatch(messages);
      return call.write(message, done(lead.track(message.byteLength, flushed)));
    };
  }
  return (messages, flushed) => {
    let bytes = 0;
    for (let i = 0; i < messages.length; i++) bytes += (messages[i] as WireMessage).byteLength;
    for (let i = 0; i < messages.length - 1; i++) call.write(joined(messages[i] as WireMessage));
    return call.write(joined(messages[messages.length - 1] as WireMessage), done(lead.track(bytes, flushed)));
  };
}

interface LiveStream {
  readonly record: ClientRecord;
  readonly protocol: SotwStream | DeltaStream;
  readonly call: SotwCall | DeltaCall;
  /** The stream's logger (its bindings name the stream). */
  readonly logger: Logger;
  /** Set at the stream's first request. */
  view: CacheView | undefined;
  /** What changed for it while it waits for its turn in a fan-out (fanOutQueue). */
  pending?: readonly TypeUrlValue[] | undefined;
}

/**
 * Pushes a change to one stream of a fan-out (PacedFanOut). One function for every server, not a
 * closure per server: the fan-out's loop then calls one target whichever server runs it (the push
 * rehearsal's private server first, push-rehearsal.ts), and V8 keeps the loop's compiled code.
 */
function pushChange(stream: LiveStream, changed: readonly TypeUrlValue[]): void {
  try {
    stream.protocol.onCacheChange(changed);
  } catch (err) {
    stream.logger.error({ err }, 'xds: failed to push a change; closing the stream');
    stream.call.destroy(err instanceof Error ? err : new Error(String(err)));
  }
}

/** A fan-out's waiting changes kept on the streams themselves: no table of a thousand streams per change. */
const PENDING_ON_STREAM: PendingChanges<LiveStream, TypeUrlValue> = {
  get: (stream) => stream.pending,
  set: (stream, changed) => {
    stream.pending = changed;
  },
};

/**
 * The aggregated discovery service (SotW and delta) over the snapshot cache. It knows streams,
 * nonces and ACK/NACK; it never translates. Emits connected/disconnected/ack/nack events.
 */
export class XdsServer extends EventEmitter<XdsServerEvents> {
  private readonly cache: SnapshotCache;
  private readonly logger: Logger;
  private readonly bodies = new SharedResponseBodies();
  /** Pushes of a change to many streams run in slices, so that ACKs, new streams and keepalives are served in between. */
  private readonly fanOutQueue = new PacedFanOut<LiveStream, TypeUrlValue>(pushChange, FANOUT_SLICE_MS, undefined, PENDING_ON_STREAM);
  /** A change's first large response holds the rest of its fan-out until it has left (push-pacer.ts). */
  private readonly leadWrite: LeadWrite;
  /**
   * Requests are handled in slices too: a thousand streams whose first requests arrive in one
   * read would otherwise each select and answer a whole configuration in one stretch of the loop.
   * While a change is being pushed they wait: the push reaches every stream first.
   */
  private readonly requestQueue = new SlicedWork(undefined, undefined, () => this.fanOutQueue.busy);
  /** The fleet's ACK state per view version, for status (ack-ledger.ts). */
  private readonly ledger = new AckLedger();
  private readonly streams = new Map<number, LiveStream>();
  /** Streams by the view they are served from: a change reaches only the streams of the views it changed. */
  private readonly viewers = new Map<CacheView, Set<LiveStream>>();
  /** Problems of views already logged (unknown Gateways, listeners left out of the shared view): once each. */
  private readonly loggedViewProblems = new Set<string>();
  /** Views with an Envoy connected of the release before the member facts string (attempt-forms.ts). */
  private readonly attemptForms = new AttemptFormViews();
  /** Streams of older Envoys held back until their view is served the legacy form (attemptFormsServed). */
  private readonly waitingForForm = new Set<LiveStream>();
  /** The legacy form could not be served: older Envoys are no longer held for it. */
  private formGivenUp = false;
  private readonly unwatch: () => void;
  private readonly services: readonly GrpcService[];
  private server: Endpoint | undefined;
  private unix: { server: Endpoint; dir: string | undefined; path: string } | undefined;
  private envoySocket: { server: Endpoint; path: string } | undefined;
  /** The transport of every listener: the options', else the environment's (xdsTransportFromEnv). */
  private readonly transport: XdsTransport;
  private readonly keepalive: { timeMs: number; timeoutMs: number } | undefined;
  private nextStreamId = 0;
  /** Requests read so far, counted as they arrive: a rehearsal waits while this moves. */
  private requestsRead = 0;
  /** The push rehearsal (push-rehearsal.ts): not wanted, waiting for a stream, armed (waiting for idleness), running or done. */
  private rehearsal: 'off' | 'waiting' | 'armed' | 'running' | 'done';
  /** Protocols real streams came with, not rehearsed yet; and those rehearsed. */
  private readonly unrehearsed = new Set<StreamKind>();
  private readonly rehearsed = new Set<StreamKind>();
  private rehearsalTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(options: XdsServerOptions) {
    super();
    this.cache = options.cache;
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.services = options.services ?? [];
    this.rehearsal = options.rehearsePushes === false ? 'off' : 'waiting';
    this.transport = options.transport ?? xdsTransportFromEnv();
    this.keepalive = options.keepalive;
    this.leadWrite = new LeadWrite(this.fanOutQueue, options.leadWrite?.minBytes ?? LEAD_WRITE_BYTES, options.leadWrite?.maxHoldMs ?? LEAD_HOLD_MS, (heldMs, expired, bytes) => {
      if (this.logger.isLevelEnabled('debug')) this.logger.debug({ heldMs: Math.round(heldMs * 10) / 10, expired, bytes }, expired ? "xds: a change's first response had not left in time; the fan-out goes on" : "xds: a change's first response has left; the fan-out goes on");
    });
    this.unwatch = this.cache.watch((change) => this.fanOut(change));
  }

  /**
   * Binds the server and returns the port (useful with port 0). `credentials`: TLS or mTLS
   * (src/xds/tls.ts xdsServerCredentials); plaintext without. Credentials made otherwise are
   * served by grpc-js.
   */
  async start({ port, host = '0.0.0.0', credentials }: { port: number; host?: string; credentials?: grpc.ServerCredentials }): Promise<number> {
    if (this.server !== undefined) throw new Error('xds server: already started');
    const tls = credentials === undefined ? undefined : serverTlsOf(credentials);
    const started = this.transport === 'grpc-js' || (credentials !== undefined && tls === undefined) ? await this.startGrpcJs(port, host, credentials) : await this.startH2(port, host, tls);
    this.server = started.endpoint;
    this.logger.info({ address: host, port: started.port, tls: credentials !== undefined, transport: started.transport }, 'xds: server listening');
    return started.port;
  }

  /**
   * The TCP listener on the server's own transport (h2-transport.ts). A TCP stream is who its
   * verified client certificate says, or anonymous (identity.ts); renewed certificates
   * (tls.source) apply to the connections that come after.
   */
  private async startH2(port: number, host: string, tls: XdsServerTls | undefined): Promise<{ endpoint: Endpoint; port: number; transport: XdsTransport }> {
    const connections = new H2GrpcConnections({
      methods: this.h2Methods((call) => identityOfTcpCall(call.getAuthContext())),
      auth: tls === undefined ? () => PLAINTEXT_AUTH : tlsAuth,
      logger: this.logger,
      keepalive: this.keepalive,
    });
    let listener: NetServer;
    let unwatch: (() => void) | undefined;
    if (tls === undefined) listener = plaintextServer(connections);
    else {
      const secure = tlsServer(connections, tls, this.logger);
      unwatch = watchServerCertificates(tls, (context) => secure.setSecureContext(secureContextOptions(context)));
      listener = secure;
    }
    let bound: number;
    try {
      bound = await listen(listener, { host, port, backlog: ACCEPT_BACKLOG });
    } catch (err) {
      unwatch?.();
      throw err;
    }
    listener.on('error', (err) => this.logger.error({ err }, 'xds: TCP listener failed'));
    const endpoint: Endpoint = {
      close: async () => {
        unwatch?.();
        listener.close();
        await connections.close(CLOSE_GRACE_MS);
      },
    };
    return { endpoint, port: bound, transport: 'h2' };
  }

  /** The TCP listener served by grpc-js (SWITCHYARD_XDS_TRANSPORT=grpc-js, or credentials not made by tls.ts). */
  private async startGrpcJs(port: number, host: string, credentials: grpc.ServerCredentials | undefined): Promise<{ endpoint: Endpoint; port: number; transport: XdsTransport }> {
    // A TCP stream is who its verified client certificate says, or anonymous (identity.ts).
    const server = this.grpcServer((call) => identityOfTcpCall(call.getAuthContext()));
    // grpc-js listens with Node's default accept queue (511): a fleet of a thousand Envoys that
    // connects at once (a restart, a rollout) overflows it, the kernel drops the handshakes past
    // it and those Envoys wait for TCP's SYN retransmissions (1, 3, 7, 15 s) while serve idles.
    // So the listener is ours, with the deepest queue the kernel allows (net.core.somaxconn caps
    // it), and grpc-js serves the sockets it accepts (TLS included: the injector's server wraps them).
    const injector = server.createConnectionInjector(credentials ?? grpc.ServerCredentials.createInsecure());
    // The accepted sockets, so that stop() can end them: grpc-js's shutdown does not always reach
    // connections handed to it by an injector, and an open one keeps the process alive.
    const sockets = new Set<Socket>();
    const listener = createServer({ noDelay: true }, (socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      // A peer's reset once its HTTP/2 session is gone (or before it exists) would otherwise be an
      // uncaught 'error' event and end the process: a client hanging up is no fault of ours.
      socket.on('error', (err) => this.logger.debug({ err }, 'xds: connection ended by an error'));
      injector.injectConnection(socket);
    });
    let bound: number;
    try {
      bound = await listen(listener, { host, port, backlog: ACCEPT_BACKLOG });
    } catch (err) {
      injector.destroy();
      server.forceShutdown();
      throw err;
    }
    listener.on('error', (err) => this.logger.error({ err }, 'xds: TCP listener failed'));
    const endpoint: Endpoint = {
      close: async () => {
        // No new connections; those accepted end with their gRPC server.
        listener.close();
        await shutdown(server);
        injector.destroy();
        // Ended, so a peer that reads sees a clean close; one that stops reading is cut after a grace.
        for (const socket of sockets) {
          socket.end();
          setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
        }
      },
    };
    return { endpoint, port: bound, transport: 'grpc-js' };
  }

  /**
   * Also serves, in plaintext, on a Unix socket for the AI extension in this process, and
   * returns its path (the same one on every call). Every stream on it has the ai-extension
   * identity, so it receives provider keys: the socket lives in a directory only this user can
   * enter (mkdtemp, mode 0700), removed by stop(). A listener of its own: which listener
   * accepted a call is then a fact, not something read off the peer address.
   */
  async privateSocket(): Promise<string> {
    if (this.unix !== undefined) return this.unix.path;
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-xds-'));
    try {
      return await this.listenUnix(join(dir, 'ads.sock'), dir);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * privateSocket() at a path the caller chose, in a directory the caller keeps private and
   * removes (a test whose AI extension outlives a controller restart). `ownDir`: removed by stop().
   */
  async listenUnix(path: string, ownDir?: string): Promise<string> {
    if (this.server === undefined) throw new Error('xds server: start() it first');
    if (this.unix !== undefined) throw new Error(`xds server: already listening on ${this.unix.path}`);
    const server = await this.listenOnSocket(path, UNIX_SOCKET_IDENTITY);
    this.unix = { server, dir: ownDir, path };
    this.logger.debug({ path }, 'xds: also listening on a private Unix socket (ai-extension identity)');
    return path;
  }

  /**
   * Also serves, in plaintext, on a Unix socket for the Envoys this process runs (the Host
   * infrastructure): every stream on it has the envoy identity, so it never receives a provider
   * key, unlike the private socket's. The caller keeps its directory private; stop() removes it.
   */
  async listenEnvoySocket(path: string): Promise<string> {
    if (this.server === undefined) throw new Error('xds server: start() it first');
    if (this.envoySocket !== undefined) throw new Error(`xds server: already listening for Envoys on ${this.envoySocket.path}`);
    // One left by a process that was killed: the caller's lock says no live one owns it.
    rmSync(path, { force: true });
    const server = await this.listenOnSocket(path, ENVOY_SOCKET_IDENTITY);
    this.envoySocket = { server, path };
    this.logger.debug({ path }, 'xds: also listening on a Unix socket for the Envoys this process runs (envoy identity)');
    return path;
  }

  /** A plaintext listener on a Unix socket whose every stream has `identity`. */
  private async listenOnSocket(path: string, identity: StreamIdentity): Promise<Endpoint> {
    if (this.transport === 'grpc-js') {
      const server = this.grpcServer(() => identity);
      try {
        await new Promise<number>((resolve, reject) => {
          server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (err, boundPort) => (err ? reject(err) : resolve(boundPort)));
        });
      } catch (err) {
        server.forceShutdown();
        throw err;
      }
      return { close: () => shutdown(server) };
    }
    const connections = new H2GrpcConnections({ methods: this.h2Methods(() => identity), auth: () => PLAINTEXT_AUTH, logger: this.logger, keepalive: this.keepalive });
    const listener = plaintextServer(connections);
    await listen(listener, { path });
    listener.on('error', (err) => this.logger.error({ err, path }, 'xds: Unix socket listener failed'));
    return {
      close: async () => {
        listener.close();
        await connections.close(CLOSE_GRACE_MS);
      },
    };
  }

  /** Ends every stream and closes the server; the cache stays usable. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.rehearsalTimer);
    this.unwatch();
    const servers = [this.server, this.unix?.server, this.envoySocket?.server].filter((server) => server !== undefined);
    const socketDir = this.unix?.dir;
    const envoySocket = this.envoySocket?.path;
    this.envoySocket = undefined;
    this.server = undefined;
    this.unix = undefined;
    for (const stream of this.streams.values()) stream.call.end();
    await Promise.all(servers.map((server) => server.close()));
    if (envoySocket !== undefined) rmSync(envoySocket, { force: true });
    if (socketDir !== undefined) rmSync(socketDir, { recursive: true, force: true });
  }

  /**
   * Per view some Envoy was served from, per type it asked for: whether the view's current
   * version was ACKed, and the NACKs standing. Costs views × types, whatever the fleet's size.
   */
  fleet(): Map<string, Map<string, FleetTypeState>> {
    const out = new Map<string, Map<string, FleetTypeState>>();
    for (const [key, types] of this.ledger.views()) {
      const view = this.cache.view(key === SHARED_VIEW ? undefined : key);
      const states = new Map<string, FleetTypeState>();
      for (const typeUrl of types.keys()) {
        const state = this.ledger.state(key, typeUrl, view.snapshot(typeUrl)?.version);
        if (state !== undefined) states.set(typeUrl, state);
      }
      out.set(key, states);
    }
    return out;
  }

  /** Grows whenever fleet() would answer differently because of an ACK or NACK. */
  get fleetChanges(): number {
    return this.ledger.changes;
  }

  /** Every connected stream that named its node: what it was sent, ACKed and NACKed, per type. */
  clients(): ClientSnapshot[] {
    return [...this.streams.values()].filter((stream) => stream.record.identified).map((stream) => stream.record.snapshot());
  }

  private grpcServer(identify: (call: { getAuthContext(): TransportAuth }) => StreamIdentity): grpc.Server {
    const server = new grpc.Server({
      // Notice dead Envoys behind NATs; Envoy answers HTTP/2 pings. A ping waits behind the
      // responses queued before it (a thousand Clusters are megabytes) and a busy client reads
      // them first: a short timeout cuts live clients exactly when configuration is moving.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 20_000,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      // Channelz (gRPC's introspection service, which Switchyard does not serve) would look up
      // each connection's peer address, keep a trace of it and stamp the time of every message:
      // a cost per connection and per message that nothing reads.
      'grpc.enable_channelz': 0,
    });
    server.addService(adsService, {
      StreamAggregatedResources: (call: SotwCall) => this.openSotw(call, identify(call)),
      DeltaAggregatedResources: (call: DeltaCall) => this.openDelta(call, identify(call)),
    });
    for (const service of this.services) server.addService(service.definition, service.implementation);
    return server;
  }

  /** The ADS methods (and `services`) on the server's own transport; `identify` decides each stream's identity. */
  private h2Methods(identify: (call: H2Call) => StreamIdentity): Map<string, H2Method> {
    const methods = new Map<string, H2Method>();
    methods.set(adsService.StreamAggregatedResources!.path, {
      decode: adsService.StreamAggregatedResources!.requestDeserialize,
      open: (call) => this.openSotw(call as unknown as SotwCall, identify(call)),
    });
    methods.set(adsService.DeltaAggregatedResources!.path, {
      decode: adsService.DeltaAggregatedResources!.requestDeserialize,
      decodeAt: deltaAckAt,
      open: (call) => this.openDelta(call as unknown as DeltaCall, identify(call)),
    });
    for (const service of this.services) {
      for (const [name, definition] of Object.entries(service.definition)) {
        const handler = service.implementation[name];
        if (typeof handler !== 'function') continue;
        methods.set(definition.path, {
          decode: definition.requestDeserialize,
          open: (call) => (handler as (call: unknown) => void)(call),
        });
      }
    }
    return methods;
  }

  /** `transport`: how a rehearsal stream (a DetachedCall) writes, as in openDelta. Returns how the stream is handed requests. */
  private openSotw(call: SotwCall, identity: StreamIdentity, transport?: DirectCall): (request: DiscoveryRequest | UndecodableRequest) => void {
    const record = new ClientRecord(++this.nextStreamId, 'sotw');
    const logger = streamLogger(this.logger, { stream: record.streamId, kind: 'sotw', role: identity.role, via: identity.via });
    // `protocol` is set by the time a request arrives (only once the handler returns).
    const receive = this.receiverFor<DiscoveryRequest>(record, call, logger, () => protocol);
    const direct = transport ?? (call instanceof H2Call ? call : directCall(call, receive));
    const protocol: SotwStream = new SotwStream({
      cache: this.cache,
      identity,
      bodies: this.bodies,
      hooks: this.hooksFor(record, logger),
      send: writerFor(call, direct, this.leadWrite),
      logger,
    });
    this.track({ record, protocol, call, logger, view: undefined, pending: undefined }, logger);
    // Requests of the own transport's calls are handed on directly, not as events.
    if (call instanceof H2Call) call.receive = receive as (request: unknown) => void;
    else call.on('data', receive);
    if (transport === undefined) this.rehearsalWanted('sotw');
    return receive;
  }

  /** `transport`: how a rehearsal stream (a DetachedCall) writes; a gRPC call is written directly when grpc-js allows. Returns how the stream is handed requests. */
  private openDelta(call: DeltaCall, identity: StreamIdentity, transport?: DirectCall): (request: DeltaDiscoveryRequest | UndecodableRequest) => void {
    const record = new ClientRecord(++this.nextStreamId, 'delta');
    const logger = streamLogger(this.logger, { stream: record.streamId, kind: 'delta', role: identity.role, via: identity.via });
    // `protocol` is set by the time a request arrives (only once the handler returns).
    const receive = this.receiverFor<DeltaDiscoveryRequest>(record, call, logger, () => protocol);
    const direct = transport ?? (call instanceof H2Call ? call : directCall(call, receive, deltaAckAt));
    const protocol: DeltaStream = new DeltaStream({
      cache: this.cache,
      identity,
      hooks: this.hooksFor(record, logger),
      send: writerFor(call, direct, this.leadWrite),
      logger,
    });
    this.track({ record, protocol, call, logger, view: undefined, pending: undefined }, logger);
    // Requests of the own transport's calls are handed on directly, not as events.
    if (call instanceof H2Call) call.receive = receive as (request: unknown) => void;
    else call.on('data', receive);
    if (transport === undefined) this.rehearsalWanted('delta');
    return receive;
  }

  /** Where the push rehearsal stands (armRehearsal); for tests. */
  get pushRehearsal(): 'off' | 'waiting' | 'armed' | 'running' | 'done' {
    return this.rehearsal;
  }

  /** Protocols rehearsed so far (rehearsePushes); for tests. */
  get rehearsedProtocols(): ReadonlySet<StreamKind> {
    return this.rehearsed;
  }

  /**
   * A real stream of `kind` came: its protocol's push is rehearsed unless it was already (a
   * fleet that speaks SotW runs none of the delta stream's code, and the other way round).
   */
  private rehearsalWanted(kind: StreamKind): void {
    if (this.rehearsal === 'off' || this.rehearsed.has(kind) || this.unrehearsed.has(kind)) return;
    this.unrehearsed.add(kind);
    if (this.rehearsal === 'waiting' || this.rehearsal === 'done') this.armRehearsal();
  }

  /**
   * Rehearses a push once the server has read no request and pushed nothing for
   * REHEARSAL_IDLE_MS (a fleet that connects keeps it waiting until it has).
   */
  private armRehearsal(): void {
    this.rehearsal = 'armed';
    let seen = this.requestsRead;
    let loop = performance.eventLoopUtilization();
    const check = (): void => {
      if (this.rehearsal !== 'armed' || this.stopped) return;
      const now = performance.eventLoopUtilization();
      // The process's other work counts too: a stream that connects while serve loads its
      // configuration (an Envoy already up) must not have the rehearsal compete with the start.
      const busyLoop = performance.eventLoopUtilization(now, loop).utilization >= REHEARSAL_IDLE_UTILIZATION;
      loop = now;
      if (busyLoop || this.requestsRead !== seen || this.fanOutQueue.busy || this.requestQueue.waiting > 0) {
        seen = this.requestsRead;
        this.rehearsalTimer = setTimeout(check, REHEARSAL_IDLE_MS).unref();
        return;
      }
      void this.rehearseWanted();
    };
    this.rehearsalTimer = setTimeout(check, REHEARSAL_IDLE_MS).unref();
  }

  /** Rehearses the protocols whose streams came since the last rehearsal, one after the other; arms again if more came meanwhile. */
  private async rehearseWanted(): Promise<void> {
    for (const kind of [...this.unrehearsed]) {
      if (this.stopped) return;
      await this.rehearsePushes(undefined, kind);
    }
    if (this.unrehearsed.size > 0 && !this.stopped) this.armRehearsal();
  }

  /**
   * Rehearses the push of an edit to `protocol` streams on a private server and cache
   * (push-rehearsal.ts): the same code the first real edit then runs compiled. Run by the server
   * itself, once per protocol its streams speak (armRehearsal); `sizes` for tests.
   */
  async rehearsePushes(sizes?: { streams?: number; edits?: number }, protocol: StreamKind = 'delta'): Promise<RehearsalResult> {
    this.rehearsal = 'running';
    this.unrehearsed.delete(protocol);
    const started = performance.now();
    const cpu = process.cpuUsage();
    const cache = new SnapshotCache();
    const stage = new XdsServer({ cache, rehearsePushes: false });
    let seen = this.requestsRead;
    const common = {
      cache,
      busy: () => {
        const read = this.requestsRead !== seen;
        seen = this.requestsRead;
        return read || this.fanOutQueue.busy || this.requestQueue.waiting > 0;
      },
      settled: () => !stage.fanOutQueue.busy && stage.requestQueue.waiting === 0,
      cancelled: () => this.stopped,
    };
    const result =
      protocol === 'sotw'
        ? await rehearsePushes({ ...common, client: SOTW_CLIENT, open: (transport) => stage.openSotw(new DetachedCall() as unknown as SotwCall, REHEARSAL_IDENTITY, transport) }, sizes)
        : await rehearsePushes({ ...common, client: DELTA_CLIENT, open: (transport) => stage.openDelta(new DetachedCall() as unknown as DeltaCall, REHEARSAL_IDENTITY, transport) }, sizes);
    this.rehearsed.add(protocol);
    this.rehearsal = 'done';
    const used = process.cpuUsage(cpu);
    // The process's CPU over the rehearsal's time, real work in its waits included: an upper bound of its own.
    this.logger.debug(
      { protocol, ...result, ms: Math.round(performance.now() - started), processCpuMs: Math.round((used.user + used.system) / 1000) },
      'xds: the push of an edit rehearsed on a private server (the first real edit runs compiled code)',
    );
    return result;
  }

  /**
   * What a stream does with each request: queued, then handed to its protocol (or refused when
   * undecodable). One function each for the stream's life: a request (every ACK) allocates no
   * closure on its way in.
   */
  private receiverFor<Request extends object>(
    record: ClientRecord,
    call: SotwCall | DeltaCall,
    logger: Logger,
    protocol: () => { onRequest(request: Request): void },
  ): (request: Request | UndecodableRequest) => void {
    const serve = (request: Request | UndecodableRequest): void => {
      if (!this.streams.has(record.streamId)) return;
      try {
        if (isUndecodable(request)) this.refuse(call, logger, request);
        else protocol().onRequest(request);
      } catch (err) {
        this.failed(call, logger, err);
      }
    };
    return (request) => {
      this.requestsRead++;
      this.requestQueue.add(serve, request);
    };
  }

  private track(stream: LiveStream, logger: Logger): void {
    const { record, call } = stream;
    this.streams.set(record.streamId, stream);
    let closed = false;
    const close = (reason: string): void => {
      if (closed) return;
      closed = true;
      this.streams.delete(record.streamId);
      this.fanOutQueue.forget(stream);
      const view = stream.view;
      const viewers = view === undefined ? undefined : this.viewers.get(view);
      if (view !== undefined && viewers !== undefined && viewers.delete(stream) && viewers.size === 0) this.viewers.delete(view);
      this.waitingForForm.delete(stream);
      if (view !== undefined && this.attemptForms.remove(view.key, record.streamId)) this.emit('attemptForms', this.attemptForms.legacy);
      logger.debug({ node: record.nodeId, reason }, 'xds: stream closed');
      if (record.identified) this.emit('disconnected', clientEvent(record));
    };
    call.on('end', () => {
      close('client ended the stream');
      call.end();
    });
    call.on('cancelled', () => close('cancelled'));
    call.on('drain', () => this.guard(call, logger, () => stream.protocol.resume()));
    call.on('error', (err: Error) => close(`error: ${err.message}`));
    call.on('close', () => close('closed'));
  }

  /** Ends the stream with INVALID_ARGUMENT: a client that sends what it cannot mean gets told, not ignored. */
  private refuse(call: SotwCall | DeltaCall, logger: Logger, request: UndecodableRequest): void {
    logger.warn({ reason: request.undecodable }, 'xds: undecodable request; closing the stream');
    const status: Partial<grpc.StatusObject> = { code: grpc.status.INVALID_ARGUMENT, details: request.undecodable };
    // grpc-js sends an 'error' emitted on a server call as the call's status.
    call.emit('error', status);
  }

  /** A bug in one stream's handling must not take the process down: fail that stream only. */
  private guard(call: SotwCall | DeltaCall, logger: Logger, handle: () => void): void {
    try {
      handle();
    } catch (err) {
      this.failed(call, logger, err);
    }
  }

  private failed(call: SotwCall | DeltaCall, logger: Logger, err: unknown): void {
    logger.error({ err }, 'xds: failed to handle a request; closing the stream');
    call.destroy(err instanceof Error ? err : new Error(String(err)));
  }

  /**
   * Calls `listener` once the change being fanned out (if any) has been pushed to every stream it
   * is waiting for and those writes have left for the sockets (PacedFanOut.whenSent): work that is not on the Envoys'
   * path waits for it rather than holding the last streams' bytes back.
   */
  whenPushesSent(listener: () => void): void {
    this.fanOutQueue.whenSent(listener);
  }

  /** A change is still waiting to be pushed to some streams (its first slice did not reach them all). */
  get pushing(): boolean {
    return this.fanOutQueue.busy;
  }

  /** The longest time, in ms, fanning a change out or answering requests held the event loop in one go (push-pacer.ts). */
  get longestPushSliceMs(): number {
    return Math.max(this.fanOutQueue.longestSliceMs, this.requestQueue.longestSliceMs);
  }

  private hooksFor(record: ClientRecord, logger: Logger): StreamHooks {
    let view: CacheView | undefined;
    let legacyFacts = false;
    /** The view still serves `viewVersion` of the type: an ACK of an older one says nothing about what is served now. */
    const current = (typeUrl: string, viewVersion: string): string | undefined => (view !== undefined && view.snapshot(typeUrl)?.version === viewVersion ? view.key : undefined);
    return {
      identify: (node: NodeInfo) => {
        record.nodeId = node.id;
        record.nodeCluster = node.cluster;
        record.gateway = node.gateway;
        record.identified = true;
        legacyFacts = needsLegacyAttemptFacts(node);
        // Debug: the application logs each connection already ("Envoy connected"); a second line
        // per stream was about 8% of serve's CPU while a fleet of a thousand connected.
        logger.debug({ node: node.id, cluster: node.cluster, gateway: node.gateway, userAgent: node.userAgent }, 'xds: client connected');
        this.emit('connected', clientEvent(record));
      },
      selected: (selected: CacheView) => {
        view = selected;
        // Tracked before its first request is read.
        const stream = this.streams.get(record.streamId);
        if (stream === undefined) return;
        let viewers = this.viewers.get(selected);
        if (viewers === undefined) {
          viewers = new Set();
          this.viewers.set(selected, viewers);
        }
        viewers.add(stream);
        stream.view = selected;
        this.logViewProblems(selected);
        if (legacyFacts) {
          logger.info({ node: record.nodeId, view: selected.key || 'shared' }, 'xds: this Envoy does not say it reads the member facts string (an older release): its data plane is served the per-key form while it is connected');
          if (this.attemptForms.add(selected.key, record.streamId)) this.emit('attemptForms', this.attemptForms.legacy);
        }
      },
      // An older Envoy gets nothing until its data plane is served the form it reads: a facts
      // string would fail its every AI attempt, and the form is built off this stream's path.
      waiting: () => {
        if (!legacyFacts || view === undefined || view.legacy || this.formGivenUp) return false;
        const stream = this.streams.get(record.streamId);
        if (stream !== undefined) this.waitingForForm.add(stream);
        return true;
      },
      // sent, acked and holds run once per stream per push: no closure, and no log record built for a level that is off.
      sent: (typeUrl, version) => {
        record.recordSent(typeUrl, version);
        if (view !== undefined && this.ledger.sent(view.key, typeUrl, record.nodeId, version)) this.emit('fleet');
        this.emit('sent', { streamId: record.streamId, nodeId: record.nodeId, typeUrl, version });
      },
      acked: (typeUrl, version, viewVersion, resources) => {
        record.recordAck(typeUrl, version);
        const key = current(typeUrl, viewVersion);
        if (key !== undefined && this.ledger.ack(key, typeUrl, viewVersion, record.nodeId)) this.emit('fleet');
        if (this.logger.isLevelEnabled('debug')) logger.debug({ node: record.nodeId, typeUrl, version }, 'xds: ACK');
        this.emit('ack', { streamId: record.streamId, nodeId: record.nodeId, kind: record.kind, typeUrl, version, resources });
      },
      holds: (typeUrl, viewVersion) => {
        const key = current(typeUrl, viewVersion);
        if (key !== undefined && this.ledger.ack(key, typeUrl, viewVersion, record.nodeId)) this.emit('fleet');
      },
      nacked: (typeUrl, version, viewVersion, detail, resources) => {
        // Kept, logged, put in the ledger and handed on only without the secret values Envoy may quote.
        const message = redactSecretText(detail.message);
        record.recordNack(typeUrl, { version, code: detail.code, message, at: new Date() });
        const key = current(typeUrl, viewVersion);
        if (key !== undefined && this.ledger.nack(key, typeUrl, viewVersion, record.nodeId, message, version)) this.emit('fleet');
        logger.warn({ node: record.nodeId, typeUrl, version, error: message }, 'xds: NACK');
        this.emit('nack', { streamId: record.streamId, nodeId: record.nodeId, kind: record.kind, typeUrl, version, code: detail.code, message, resources });
      },
    };
  }

  /** The views (Gateway "namespace/name", or SHARED_VIEW) that must be served the legacy attempt facts form now. */
  legacyAttemptFactsViews(): ReadonlySet<string> {
    return this.attemptForms.legacy;
  }

  /**
   * The cache now serves the legacy form to some views: their older Envoys, held back until then
   * (StreamHooks.waiting), are pushed what they asked for. `giveUp`: the form cannot be served;
   * every held Envoy is pushed the configuration as it is.
   */
  attemptFormsServed(giveUp = false): void {
    this.formGivenUp = giveUp;
    for (const stream of this.waitingForForm) {
      if (!giveUp && stream.view?.legacy !== true) continue;
      this.waitingForForm.delete(stream);
      this.guard(stream.call, this.logger, () => stream.protocol.retry());
    }
  }

  /** Pushes each changed view's changed types to the streams of that view, and to no other. */
  private fanOut(change: CacheChange): void {
    this.bodies.invalidate([...new Set([...change.changed, ...[...change.views.values()].flat()])]);
    for (const [view, changed] of change.views) {
      const viewers = this.viewers.get(view);
      const connected = (nodeId: string): boolean => [...(viewers ?? [])].some((stream) => stream.record.nodeId === nodeId);
      for (const typeUrl of changed) this.ledger.moved(view.key, typeUrl, view.snapshot(typeUrl)?.version ?? '', connected);
      if (viewers === undefined) continue;
      this.logViewProblems(view);
      // forEach: run once per change, in the interpreter, a for-of made an iterator result per stream.
      viewers.forEach((stream) => this.fanOutQueue.add(stream, changed));
    }
    this.leadWrite.runFirstSlice(this.firstSlice);
  }

  /** One function for the server's life: a change allocates no closure for its first slice. */
  private readonly firstSlice = (): void => this.fanOutQueue.run(FIRST_PUSH_SLICE_MS);

  /** Says once why a view served to some Envoy is empty or lacks listeners. */
  private logViewProblems(view: CacheView): void {
    // Before the first configuration (an Envoy that connected while it was read) every view is
    // empty and no Gateway known yet: the first push says what is wrong, if anything.
    if (this.cache.snapshot(TypeUrl.cluster) === undefined) return;
    if (view.key !== SHARED_VIEW && !view.known) {
      const problem = gatewayKeyProblem(view.key) ?? `Gateway ${view.key} is not in the configuration (or not of a Switchyard GatewayClass)`;
      const text = `an Envoy names Gateway "${view.key}" in node.metadata["${GATEWAY_NODE_METADATA}"]: ${problem}; it gets no listeners until that Gateway exists`;
      if (!this.loggedViewProblems.has(text)) {
        this.loggedViewProblems.add(text);
        this.logger.warn({ gateway: view.key }, text);
      }
    }
    for (const text of view.problems) {
      if (this.loggedViewProblems.has(text)) continue;
      this.loggedViewProblems.add(text);
      this.logger.warn({ view: 'shared' }, text);
    }
  }
}

/**
 * The accept queue asked of the kernel for the TCP listener: a whole fleet connecting at once fits
 * (Linux caps it at net.core.somaxconn, 4096 by default since 5.4).
 */
const ACCEPT_BACKLOG = 65_535;

function listen(server: NetServer, options: { host?: string; port?: number; path?: string; backlog?: number }): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : (options.port ?? 0));
    });
  });
}

function shutdown(server: grpc.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 2_000);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const LOG_LEVELS: ReadonlySet<string> = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);

function ignore(): void {}

/**
 * A stream's child logger, made when the stream first logs at an enabled level: pino serializes a
 * child's bindings when the child is made, each through the redaction of every wildcard path
 * (observability/logger.ts), and that was about 8% of serve's CPU while a fleet of a thousand
 * connected, for streams that mostly log only at debug.
 */
function streamLogger(parent: Logger, bindings: Record<string, unknown>): Logger {
  let child: Logger | undefined;
  const isLevelEnabled = (level: string): boolean => parent.isLevelEnabled(level);
  return new Proxy(parent, {
    get(_target, property) {
      // Asked before each debug line on a hot path: answered by the parent, without making the child.
      if (property === 'isLevelEnabled') return isLevelEnabled;
      if (child === undefined && typeof property === 'string' && LOG_LEVELS.has(property) && !parent.isLevelEnabled(property)) return ignore;
      child ??= parent.child(bindings);
      const value: unknown = Reflect.get(child, property, child);
      return typeof value === 'function' ? value.bind(child) : value;
    },
  });
}

function clientEvent(record: ClientRecord): ClientEvent {
  return { streamId: record.streamId, nodeId: record.nodeId, nodeCluster: record.nodeCluster, kind: record.kind };
}
