import * as grpc from '@grpc/grpc-js';
import { encodeMessage, messageType } from '../../src/envoy/proto.js';

/**
 * Raw gRPC ADS streams as a fleet of Envoys opens them, for tests that drive the real XdsServer
 * with many clients: bytes in and out, each client on its own HTTP/2 connection.
 */

const PATHS = {
  sotw: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
  delta: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
} as const;

type RequestJson = Parameters<typeof encodeMessage>[1];

export interface AdsConnection {
  readonly client: grpc.Client;
  readonly call: grpc.ClientDuplexStream<Buffer, Buffer>;
}

export function openAdsStream(port: number, variant: keyof typeof PATHS = 'sotw'): AdsConnection {
  // A local subchannel pool gives every client its own connection instead of a shared one.
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const call = client.makeBidiStreamRequest<Buffer, Buffer>(PATHS[variant], (b) => b, (b) => b);
  return { client, call };
}

/** Cancels the stream and closes its connection. */
export function closeAdsStream(c: AdsConnection): void {
  c.call.cancel();
  c.client.close();
}

export const sotwRequest = (json: RequestJson): Buffer => Buffer.from(encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', json));
export const deltaRequest = (json: RequestJson): Buffer => Buffer.from(encodeMessage('envoy.service.discovery.v3.DeltaDiscoveryRequest', json));

/** The response's envelope as JSON; like Envoy, the resources stay undecoded Any bytes. */
export const sotwResponse = (bytes: Buffer): Record<string, unknown> => messageType('envoy.service.discovery.v3.DiscoveryResponse').decode(bytes).toJSON();
export const deltaResponse = (bytes: Buffer): Record<string, unknown> => messageType('envoy.service.discovery.v3.DeltaDiscoveryResponse').decode(bytes).toJSON();
