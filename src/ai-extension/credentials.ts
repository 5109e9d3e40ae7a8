import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { messageType } from '../envoy/proto.js';
import { TypeUrl } from '../envoy/resources.js';
import { AI_EXTENSION_NODE_CLUSTER, roleUri, type Role } from '../xds/identity.js';

/**
 * Provider keys, fetched from the controller's ADS server as SDS generic secrets (named in each
 * member's metadata, `credential/<namespace>/<secret>`). Only the names an attempt needed are
 * subscribed to, so listener certificates never reach the extension; values stay in memory and
 * are never logged. A changed Secret is pushed by the controller and used by the next attempt.
 */

const ADS_METHOD = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const DISCOVERY_REQUEST = 'envoy.service.discovery.v3.DiscoveryRequest';
const DISCOVERY_RESPONSE = 'envoy.service.discovery.v3.DiscoveryResponse';
const SECRET = 'envoy.extensions.transport_sockets.tls.v3.Secret';


/**
 * Where the controller's ADS server is: a TCP address, plaintext unless `credentials` (TLS, see
 * src/xds/tls.ts), or the private Unix socket of this process's own ADS server (serve).
 * `certificateRole`: the role the client certificate in `credentials` names (src/xds/identity.ts).
 */
export type XdsTarget = { host: string; port: number; credentials?: grpc.ChannelCredentials; certificateRole?: Role } | { socket: string };

/**
 * Why the controller will send no provider key to a client at `xds`, if it will not: it sends
 * them only to a stream authenticated as the AI extension (src/xds/access.ts).
 */
export function keysWithheldReason(xds: XdsTarget): string | undefined {
  if ('socket' in xds) return undefined;
  const fix = `run it with --xds-tls-dir holding a client certificate whose URI SAN is ${roleUri('ai-extension')} (switchyard certs issues one)`;
  if (xds.credentials === undefined) return `the controller gives provider keys only to an AI extension that authenticates, and this one connects over plaintext TCP: ${fix}`;
  if (xds.certificateRole === undefined) return `the controller gives provider keys only to an AI extension that authenticates, and this one has no client certificate naming a role: ${fix}`;
  if (xds.certificateRole !== 'ai-extension') return `the controller gives provider keys only to the ai-extension role, and this client certificate is of role ${xds.certificateRole}: ${fix}`;
  return undefined;
}

/** The target for logs, without credentials. */
export function describeXdsTarget(xds: XdsTarget): string {
  if ('socket' in xds) return `unix:${xds.socket}`;
  return `${xds.host.includes(':') ? `[${xds.host}]` : xds.host}:${xds.port}${xds.credentials ? ' (tls)' : ''}`;
}

/** Default of `maxReconnectMs` (see there); end-to-end tests bound the extension's return by it. */
export const MAX_RECONNECT_MS = 500;

export interface CredentialStoreOptions {
  nodeId: string;
  logger: Logger;
  /** First reconnect delay after the stream breaks; doubles up to `maxReconnectMs`. */
  reconnectMs?: number;
  /**
   * Longest wait between two reconnects while the controller is away (default 500 ms): the
   * extension must be back on its first try within a second of the controller's return, and one
   * small stream to a local server costs nothing to retry that often.
   */
  maxReconnectMs?: number;
  /** A connection that is not up after this long is abandoned and dialled afresh (a dropped SYN must not hang it). */
  connectTimeoutMs?: number;
}

interface DecodedAny {
  type_url?: string;
  value?: Uint8Array;
}

interface DecodedDiscoveryResponse {
  version_info?: string;
  resources?: DecodedAny[];
  type_url?: string;
  nonce?: string;
}

interface DecodedSecret {
  name?: string;
  generic_secret?: { secret?: { inline_string?: string; inline_bytes?: Uint8Array } };
}

export interface CredentialStoreEvents {
  /** Names whose value arrived or changed. */
  updated: [string[]];
  connected: [];
  disconnected: [string];
}

export class CredentialStore extends EventEmitter<CredentialStoreEvents> {
  private readonly values = new Map<string, string>();
  private readonly names = new Set<string>();
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<Buffer, Buffer> | undefined;
  private version = '';
  private nonce = '';
  private sentNode = false;
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private backoffMs: number;
  private streamUp = false;
  private withheld: string | undefined;
  private target: XdsTarget | undefined;
  /** Since when no connection to the controller has been up (the start counts as down). */
  private downSince = Date.now();

  constructor(private readonly options: CredentialStoreOptions) {
    super();
    // Every attempt waiting in resolve() listens for 'updated': a burst of requests is not a leak.
    this.setMaxListeners(0);
    this.backoffMs = this.firstBackoffMs;
  }

  private get firstBackoffMs(): number {
    return this.options.reconnectMs ?? 100;
  }

  /** Whether the ADS stream has answered since it was last opened. */
  get connected(): boolean {
    return this.streamUp;
  }

  /** Why the controller will not send this client any key (keysWithheldReason), once started. */
  get keysWithheld(): string | undefined {
    return this.withheld;
  }

  /**
   * How long the controller has been unreachable, in ms; 0 while a connection is up. Credentials
   * already received stay in use meanwhile.
   */
  disconnectedForMs(now = Date.now()): number {
    return this.downSince === 0 ? 0 : now - this.downSince;
  }

  /** Connects to the controller's ADS server (and keeps reconnecting until stop()). */
  start(xds: XdsTarget): void {
    if (this.target !== undefined) throw new Error('credential store: already started');
    this.target = xds;
    this.withheld = keysWithheldReason(xds);
    if (this.withheld !== undefined) this.options.logger.error({ xds: describeXdsTarget(xds) }, `ai-extension: no provider key will arrive: ${this.withheld}`);
    this.open();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.connectTimer);
    this.call?.cancel();
    this.client?.close();
  }

  /** The key now, if it has arrived. */
  get(name: string): string | undefined {
    return this.values.get(name);
  }

  /** The key, subscribing to it first if needed and waiting up to `timeoutMs` for the controller. */
  async resolve(name: string, timeoutMs: number): Promise<string | undefined> {
    const known = this.values.get(name);
    if (known !== undefined) return known;
    if (!this.names.has(name)) {
      this.names.add(name);
      this.sendRequest();
    }
    return new Promise((resolve) => {
      const done = (value: string | undefined): void => {
        clearTimeout(timer);
        this.off('updated', onUpdate);
        resolve(value);
      };
      const onUpdate = (names: string[]): void => {
        if (names.includes(name)) done(this.values.get(name));
      };
      const timer = setTimeout(() => done(this.values.get(name)), timeoutMs);
      this.on('updated', onUpdate);
    });
  }

  /**
   * A new channel for every connection: grpc-js keeps a broken channel's own reconnect back-off
   * (growing to minutes) and shares subchannels between clients of one target, so reusing either
   * made the extension return 7-26 s after the controller did.
   */
  private dial(xds: XdsTarget): grpc.Client {
    const address = 'socket' in xds ? `unix:${xds.socket}` : `${xds.host.includes(':') ? `[${xds.host}]` : xds.host}:${xds.port}`;
    const credentials = ('socket' in xds ? undefined : xds.credentials) ?? grpc.credentials.createInsecure();
    const maxBackoff = this.options.maxReconnectMs ?? MAX_RECONNECT_MS;
    return new grpc.Client(address, credentials, {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.max_receive_message_length': 16 * 1024 * 1024,
      'grpc.use_local_subchannel_pool': 1,
      'grpc.initial_reconnect_backoff_ms': Math.min(this.firstBackoffMs, maxBackoff),
      'grpc.max_reconnect_backoff_ms': maxBackoff,
    });
  }

  private open(): void {
    if (this.stopped || this.target === undefined) return;
    this.client?.close();
    const client = this.dial(this.target);
    this.client = client;
    const call = client.makeBidiStreamRequest(ADS_METHOD, (b: Buffer) => b, (b: Buffer) => b);
    this.call = call;
    this.version = '';
    this.nonce = '';
    this.sentNode = false;
    call.on('data', (bytes: Buffer) => {
      // A response that does not decode must not take the extension down: drop the stream and reconnect.
      try {
        this.onResponse(bytes);
      } catch (err) {
        this.options.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'ai-extension: undecodable response from the controller');
        call.cancel();
      }
    });
    const broken = (reason: string): void => {
      if (this.call !== call) return;
      this.call = undefined;
      clearTimeout(this.connectTimer);
      const wasUp = this.downSince === 0;
      if (wasUp) this.downSince = Date.now();
      if (this.streamUp) this.emit('disconnected', reason);
      this.streamUp = false;
      if (this.stopped) return;
      // One line per outage, not one per retry.
      if (wasUp) this.options.logger.warn({ reason, retryInMs: this.backoffMs }, 'ai-extension: credential stream to the controller broke; reconnecting, keeping the credentials it sent');
      else this.options.logger.debug({ reason, retryInMs: this.backoffMs }, 'ai-extension: controller still unreachable');
      this.reconnectTimer = setTimeout(() => this.open(), this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxReconnectMs ?? MAX_RECONNECT_MS);
    };
    this.whenReady(client, call);
    call.on('error', (err: Error) => broken(err.message));
    call.on('end', () => broken('the controller ended the stream'));
    // The first request names the node; with no names yet it subscribes to nothing.
    this.sendRequest();
  }

  /** Marks the controller reachable once the channel is up; abandons a connection that never comes up. */
  private whenReady(client: grpc.Client, call: grpc.ClientDuplexStream<Buffer, Buffer>): void {
    const channel = client.getChannel();
    const connectTimeoutMs = this.options.connectTimeoutMs ?? 5_000;
    this.connectTimer = setTimeout(() => {
      if (this.call === call && channel.getConnectivityState(false) !== grpc.connectivityState.READY) call.cancel();
    }, connectTimeoutMs);
    const watch = (state: grpc.connectivityState): void => {
      if (this.call !== call) return;
      if (state === grpc.connectivityState.READY) {
        clearTimeout(this.connectTimer);
        if (this.downSince !== 0) this.options.logger.info({ afterMs: Date.now() - this.downSince }, 'ai-extension: connected to the controller');
        this.downSince = 0;
        this.backoffMs = this.firstBackoffMs;
        return;
      }
      if (state === grpc.connectivityState.SHUTDOWN) return;
      channel.watchConnectivityState(state, Infinity, () => watch(channel.getConnectivityState(false)));
    };
    watch(channel.getConnectivityState(false));
  }

  private sendRequest(): void {
    const call = this.call;
    if (call === undefined) return;
    const type = messageType(DISCOVERY_REQUEST);
    const message = {
      version_info: this.version,
      resource_names: [...this.names].sort(),
      type_url: TypeUrl.secret,
      response_nonce: this.nonce,
      ...(this.sentNode ? {} : { node: { id: this.options.nodeId, cluster: AI_EXTENSION_NODE_CLUSTER, user_agent_name: 'switchyard-ai-extension' } }),
    };
    this.sentNode = true;
    call.write(Buffer.from(type.encode(type.fromObject(message)).finish()));
  }

  private onResponse(bytes: Buffer): void {
    const response = messageType(DISCOVERY_RESPONSE).decode(bytes) as unknown as DecodedDiscoveryResponse;
    if (response.type_url !== TypeUrl.secret) return;
    const secretType = messageType(SECRET);
    const changed: string[] = [];
    for (const any of response.resources ?? []) {
      if (any.type_url !== TypeUrl.secret || any.value === undefined) continue;
      const secret = secretType.decode(any.value) as unknown as DecodedSecret;
      const inline = secret.generic_secret?.secret;
      if (secret.name === undefined || inline === undefined) continue;
      const value = inline.inline_string ?? (inline.inline_bytes ? Buffer.from(inline.inline_bytes).toString('utf8') : undefined);
      if (value === undefined || this.values.get(secret.name) === value) continue;
      this.values.set(secret.name, value);
      changed.push(secret.name);
    }
    this.version = response.version_info ?? '';
    this.nonce = response.nonce ?? '';
    if (!this.streamUp) {
      this.streamUp = true;
      this.emit('connected');
    }
    // ACK: every response is accepted (a secret we cannot use is skipped, not rejected).
    this.sendRequest();
    if (changed.length > 0) {
      this.options.logger.info({ credentials: changed }, 'ai-extension: credentials updated');
      this.emit('updated', changed);
    }
  }
}
