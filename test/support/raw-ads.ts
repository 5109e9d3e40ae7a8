import * as grpc from '@grpc/grpc-js';
import { decodeMessage, messageType } from '../../src/envoy/proto.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { waitFor } from './wait.js';

/**
 * A hand-driven ADS client for adversarial tests: it sends whatever DiscoveryRequest or
 * DeltaDiscoveryRequest it is told to (encoded with the project's protos), keeps every response
 * as the raw bytes that crossed the wire, and decodes them only for assertions.
 */

const SERVICE = '/envoy.service.discovery.v3.AggregatedDiscoveryService';

export type AdsVariant = 'sotw' | 'delta';

export interface RawAdsTarget {
  /** `host:port` or `unix:/path`. */
  address: string;
  credentials?: grpc.ChannelCredentials;
  /** TLS: the name the server certificate must carry when `address` is an IP. */
  serverName?: string;
}

export class RawAdsClient {
  /** Every response message, as received. */
  readonly raw: Buffer[] = [];
  /** The stream ended with this error (a refused handshake, a reset). */
  failure: Error | undefined;
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<Buffer, Buffer>;

  constructor(
    target: RawAdsTarget,
    readonly variant: AdsVariant,
  ) {
    this.client = new grpc.Client(target.address, target.credentials ?? grpc.credentials.createInsecure(), {
      ...(target.serverName ? { 'grpc.ssl_target_name_override': target.serverName } : {}),
      // Fail fast when the handshake is refused, rather than queueing for a reconnect.
      'grpc.initial_reconnect_backoff_ms': 100,
    });
    const method = this.variant === 'sotw' ? 'StreamAggregatedResources' : 'DeltaAggregatedResources';
    this.call = this.client.makeBidiStreamRequest(`${SERVICE}/${method}`, (b: Buffer) => b, (b: Buffer) => b, new grpc.Metadata(), {});
    this.call.on('data', (bytes: Buffer) => this.raw.push(Buffer.from(bytes)));
    this.call.on('error', (err: Error) => {
      this.failure = err;
    });
    this.call.on('end', () => undefined);
  }

  /** Sends a DiscoveryRequest (sotw) or DeltaDiscoveryRequest (delta) given as proto3 JSON. */
  send(request: JsonObject): void {
    const name = this.variant === 'sotw' ? 'envoy.service.discovery.v3.DiscoveryRequest' : 'envoy.service.discovery.v3.DeltaDiscoveryRequest';
    const type = messageType(name);
    const problem = type.verify(request);
    if (problem !== null) throw new Error(`raw ADS client: bad ${name}: ${problem}`);
    this.call.write(Buffer.from(type.encode(type.fromObject(request)).finish()));
  }

  /** The responses so far, decoded. */
  responses(): JsonObject[] {
    const name = this.variant === 'sotw' ? 'envoy.service.discovery.v3.DiscoveryResponse' : 'envoy.service.discovery.v3.DeltaDiscoveryResponse';
    return this.raw.map((bytes) => decodeMessage(name, bytes));
  }

  /** Names of every resource received so far, of `typeUrl`. */
  namesReceived(typeUrl: string): string[] {
    const names: string[] = [];
    for (const response of this.responses()) {
      if (response['type_url'] !== typeUrl) continue;
      for (const entry of (response['resources'] ?? []) as JsonObject[]) {
        // SotW: the resource itself; delta: a Resource wrapper with name and resource.
        const resource = (this.variant === 'delta' ? entry['resource'] : entry) as JsonObject | undefined;
        names.push(String(this.variant === 'delta' ? entry['name'] : (resource?.['name'] ?? resource?.['cluster_name'])));
      }
    }
    return names;
  }

  /** Waits for a response of `typeUrl`: a barrier, since the server answers a stream in order. */
  async waitForResponse(typeUrl: string, count = 1, timeoutMs = 10_000): Promise<void> {
    await waitFor(
      () => {
        if (this.failure) throw new Error(`the stream failed: ${this.failure.message}`);
        return this.responses().filter((r) => r['type_url'] === typeUrl).length >= count;
      },
      { what: `${count} ${this.variant} response(s) of ${typeUrl}`, timeoutMs, intervalMs: 20 },
    );
  }

  /** Waits until the stream has failed (a refused handshake). */
  async waitForFailure(timeoutMs = 10_000): Promise<Error> {
    return waitFor(() => this.failure, { what: `the ${this.variant} stream to fail`, timeoutMs, intervalMs: 20 });
  }

  /** Every byte received, for scanning. */
  bytes(): Buffer {
    return Buffer.concat(this.raw);
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

/**
 * Whether any recognisable part of `secret` appears in `bytes`: the value itself, its base64,
 * or any 12-byte run of it (a truncated or spliced copy).
 */
export function containsSecret(bytes: Buffer, secret: string): boolean {
  const value = Buffer.from(secret);
  if (bytes.includes(value) || bytes.includes(Buffer.from(value.toString('base64')))) return true;
  const run = Math.min(12, value.length);
  for (let i = 0; i + run <= value.length; i++) if (bytes.includes(value.subarray(i, i + run))) return true;
  return false;
}
