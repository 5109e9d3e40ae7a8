import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import type { TypeUrlValue } from '../envoy/resources.js';
import type { SnapshotCache } from './cache.js';
import { ClientRecord, type ClientSnapshot, type StreamHooks, type StreamKind } from './client-state.js';
import { DeltaStream } from './delta.js';
import type { GrpcService } from './lrs.js';
import { SharedResponseBodies, SotwStream } from './sotw.js';
import {
  decodeDeltaDiscoveryRequest,
  decodeDiscoveryRequest,
  type DeltaDiscoveryRequest,
  type DiscoveryRequest,
  type NodeInfo,
} from './wire.js';

export interface ClientEvent {
  readonly streamId: number;
  readonly nodeId: string;
  readonly nodeCluster: string;
  readonly kind: StreamKind;
}

export interface AckEvent {
  readonly streamId: number;
  readonly nodeId: string;
  readonly typeUrl: string;
  readonly version: string;
}

export interface NackEvent extends AckEvent {
  readonly code: number;
  /** Envoy's error_detail.message, verbatim. */
  readonly message: string;
}

export interface XdsServerEvents {
  connected: [ClientEvent];
  disconnected: [ClientEvent];
  ack: [AckEvent];
  nack: [NackEvent];
}

export interface XdsServerOptions {
  cache: SnapshotCache;
  logger?: Logger;
  /** More services on the same port and credentials (load reporting, src/xds/lrs.ts). */
  services?: readonly GrpcService[];
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
  return (bytes) => {
    let request: T;
    try {
      request = decode(bytes);
    } catch (err) {
      return { undecodable: `${what} could not be decoded (${err instanceof Error ? err.message : String(err)}); send a serialized envoy.service.discovery.v3.${what}` };
    }
    // On an aggregated stream the type URL is what the request is about (xDS protocol, ADS).
    if (request.typeUrl === '') return { undecodable: `${what} has no type_url; on an ADS stream every request names the resource type it is for` };
    return request;
  };
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

type SotwCall = grpc.ServerDuplexStream<DiscoveryRequest | UndecodableRequest, Buffer>;
type DeltaCall = grpc.ServerDuplexStream<DeltaDiscoveryRequest | UndecodableRequest, Buffer>;

/**
 * A response write for an AdsStream: `flushed` once grpc-js has handed it to HTTP/2 (within the
 * client's flow-control window); false when the call's buffer is full.
 */
function writerFor(call: SotwCall | DeltaCall): (message: Buffer, flushed: () => void) => boolean {
  return (message, flushed) =>
    call.write(message, (err: Error | null | undefined) => {
      if (err === null || err === undefined) flushed();
    });
}

interface LiveStream {
  readonly record: ClientRecord;
  readonly protocol: SotwStream | DeltaStream;
  readonly call: SotwCall | DeltaCall;
}

/**
 * The aggregated discovery service (SotW and delta) over the snapshot cache. It knows streams,
 * nonces and ACK/NACK; it never translates. Emits connected/disconnected/ack/nack events.
 */
export class XdsServer extends EventEmitter<XdsServerEvents> {
  private readonly cache: SnapshotCache;
  private readonly logger: Logger;
  private readonly bodies = new SharedResponseBodies();
  private readonly streams = new Map<number, LiveStream>();
  private readonly unwatch: () => void;
  private readonly services: readonly GrpcService[];
  private server: grpc.Server | undefined;
  private nextStreamId = 0;

  constructor(options: XdsServerOptions) {
    super();
    this.cache = options.cache;
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.services = options.services ?? [];
    this.unwatch = this.cache.watch((change) => this.fanOut(change.changed));
  }

  /**
   * Binds the server and returns the port (useful with port 0). `credentials`: TLS or mTLS
   * (src/xds/tls.ts); plaintext without.
   */
  async start({ port, host = '0.0.0.0', credentials }: { port: number; host?: string; credentials?: grpc.ServerCredentials }): Promise<number> {
    if (this.server !== undefined) throw new Error('xds server: already started');
    const server = new grpc.Server({
      // Notice dead Envoys behind NATs; Envoy answers HTTP/2 pings.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
    });
    server.addService(adsService, {
      StreamAggregatedResources: (call: SotwCall) => this.openSotw(call),
      DeltaAggregatedResources: (call: DeltaCall) => this.openDelta(call),
    });
    for (const service of this.services) server.addService(service.definition, service.implementation);
    const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    const bound = await new Promise<number>((resolve, reject) => {
      server.bindAsync(address, credentials ?? grpc.ServerCredentials.createInsecure(), (err, boundPort) => (err ? reject(err) : resolve(boundPort)));
    });
    this.server = server;
    this.logger.info({ address: host, port: bound, tls: credentials !== undefined }, 'xds: server listening');
    return bound;
  }

  /**
   * Also serves, in plaintext, on a Unix socket: for a client in this process (the in-process
   * AI extension) when the TCP port requires TLS. The caller keeps `path` in a directory only
   * this user can enter.
   */
  async listenUnix(path: string): Promise<void> {
    const server = this.server;
    if (server === undefined) throw new Error('xds server: start() it first');
    await new Promise<number>((resolve, reject) => {
      server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (err, boundPort) => (err ? reject(err) : resolve(boundPort)));
    });
    this.logger.debug({ path }, 'xds: also listening on a Unix socket');
  }

  /** Ends every stream and closes the server; the cache stays usable. */
  async stop(): Promise<void> {
    this.unwatch();
    const server = this.server;
    this.server = undefined;
    for (const stream of this.streams.values()) stream.call.end();
    if (server === undefined) return;
    await new Promise<void>((resolve) => {
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

  /** Every connected stream that named its node: what it was sent, ACKed and NACKed, per type. */
  clients(): ClientSnapshot[] {
    return [...this.streams.values()].filter((stream) => stream.record.identified).map((stream) => stream.record.snapshot());
  }

  private openSotw(call: SotwCall): void {
    const record = new ClientRecord(++this.nextStreamId, 'sotw');
    const logger = this.logger.child({ stream: record.streamId, kind: 'sotw' });
    const protocol = new SotwStream({
      cache: this.cache,
      bodies: this.bodies,
      hooks: this.hooksFor(record, logger),
      send: writerFor(call),
      logger,
    });
    this.track({ record, protocol, call }, logger);
    call.on('data', (request: DiscoveryRequest | UndecodableRequest) => this.guard(call, logger, () => (isUndecodable(request) ? this.refuse(call, logger, request) : protocol.onRequest(request))));
  }

  private openDelta(call: DeltaCall): void {
    const record = new ClientRecord(++this.nextStreamId, 'delta');
    const logger = this.logger.child({ stream: record.streamId, kind: 'delta' });
    const protocol = new DeltaStream({
      cache: this.cache,
      hooks: this.hooksFor(record, logger),
      send: writerFor(call),
      logger,
    });
    this.track({ record, protocol, call }, logger);
    call.on('data', (request: DeltaDiscoveryRequest | UndecodableRequest) => this.guard(call, logger, () => (isUndecodable(request) ? this.refuse(call, logger, request) : protocol.onRequest(request))));
  }

  private track(stream: LiveStream, logger: Logger): void {
    const { record, call } = stream;
    this.streams.set(record.streamId, stream);
    let closed = false;
    const close = (reason: string): void => {
      if (closed) return;
      closed = true;
      this.streams.delete(record.streamId);
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
      logger.error({ err }, 'xds: failed to handle a request; closing the stream');
      call.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private hooksFor(record: ClientRecord, logger: Logger): StreamHooks {
    return {
      identify: (node: NodeInfo) => {
        record.nodeId = node.id;
        record.nodeCluster = node.cluster;
        record.identified = true;
        logger.info({ node: node.id, cluster: node.cluster, userAgent: node.userAgent }, 'xds: client connected');
        this.emit('connected', clientEvent(record));
      },
      sent: (typeUrl, version) => record.recordSent(typeUrl, version),
      acked: (typeUrl, version) => {
        record.recordAck(typeUrl, version);
        logger.debug({ node: record.nodeId, typeUrl, version }, 'xds: ACK');
        this.emit('ack', { streamId: record.streamId, nodeId: record.nodeId, typeUrl, version });
      },
      nacked: (typeUrl, version, detail) => {
        record.recordNack(typeUrl, { version, code: detail.code, message: detail.message, at: new Date() });
        logger.warn({ node: record.nodeId, typeUrl, version, error: detail.message }, 'xds: NACK');
        this.emit('nack', { streamId: record.streamId, nodeId: record.nodeId, typeUrl, version, code: detail.code, message: detail.message });
      },
    };
  }

  private fanOut(changed: readonly TypeUrlValue[]): void {
    this.bodies.invalidate(changed);
    for (const stream of this.streams.values()) {
      try {
        stream.protocol.onCacheChange(changed);
      } catch (err) {
        this.logger.error({ err, stream: stream.record.streamId }, 'xds: failed to push a change; closing the stream');
        stream.call.destroy(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }
}

function clientEvent(record: ClientRecord): ClientEvent {
  return { streamId: record.streamId, nodeId: record.nodeId, nodeCluster: record.nodeCluster, kind: record.kind };
}
