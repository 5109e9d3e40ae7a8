import { connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { deltaRequest, deltaResponse, sotwRequest, sotwResponse } from '../support/ads-client.js';
import { waitFor } from '../support/wait.js';
import { assignment, cluster } from '../support/xds-stream.js';

/**
 * What one cluster edit costs a client in transport writes. An updated EDS cluster is followed
 * by its assignment (Envoy waits for it, subscription.ts): both responses of that push must
 * reach the client in one HTTP/2 DATA frame, one socket write, not one each (issue 9: at 1,000
 * delta streams, the second write per stream was a fifth of the push). Read with a raw HTTP/2
 * client, which sees the DATA frames as they crossed the wire.
 */

const PATHS = {
  sotw: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
  delta: '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources',
} as const;
type Variant = keyof typeof PATHS;

const NAMES = ['pool-0', 'pool-1', 'pool-2'];

function configuration(generation: number): XdsResources {
  const clusters = NAMES.map((name, i) => cluster(name, i === 1 ? `${generation + 1}s` : '1s'));
  return { listeners: [], routes: [], clusters, endpoints: NAMES.map((name) => assignment(name)), secrets: [] };
}

interface Message {
  readonly typeUrl: string;
  readonly nonce: string;
  readonly version: string;
  /** Which DATA frame ('data' event) the message's last byte came in. */
  readonly chunk: number;
}

/** One ADS stream over its own HTTP/2 connection, ACKing every response, keeping which DATA frame carried each. */
class RawHttp2Ads {
  readonly messages: Message[] = [];
  private readonly session: ClientHttp2Session;
  private readonly stream: ClientHttp2Stream;
  private pending = Buffer.alloc(0);
  private chunks = 0;
  /** SotW: the names last asked for per type, repeated in every ACK as Envoy does. */
  private readonly subscribed = new Map<string, string[]>();

  constructor(
    port: number,
    private readonly variant: Variant,
  ) {
    this.session = connect(`http://127.0.0.1:${port}`);
    this.session.on('error', () => undefined);
    this.stream = this.session.request({ ':method': 'POST', ':path': PATHS[variant], 'content-type': 'application/grpc', te: 'trailers' });
    this.stream.on('error', () => undefined);
    this.stream.on('data', (chunk: Buffer) => this.read(chunk));
  }

  subscribe(typeUrl: string, names: string[], node?: string): void {
    this.subscribed.set(typeUrl, names);
    if (this.variant === 'delta') this.write(deltaRequest({ ...(node ? { node: { id: node } } : {}), type_url: typeUrl, resource_names_subscribe: names }));
    else this.write(sotwRequest({ ...(node ? { node: { id: node } } : {}), type_url: typeUrl, resource_names: names }));
  }

  close(): void {
    this.stream.close();
    this.session.close();
  }

  private write(message: Buffer): void {
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(message.length, 1);
    this.stream.write(Buffer.concat([prefix, message]));
  }

  private read(chunk: Buffer): void {
    const index = this.chunks++;
    this.pending = Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 5 && this.pending.length >= 5 + this.pending.readUInt32BE(1)) {
      const length = this.pending.readUInt32BE(1);
      const body = this.pending.subarray(5, 5 + length);
      this.pending = this.pending.subarray(5 + length);
      const response = this.variant === 'delta' ? deltaResponse(body) : sotwResponse(body);
      const typeUrl = String(response['type_url']);
      const nonce = String(response['nonce']);
      const version = String(response['version_info'] ?? response['system_version_info'] ?? '');
      this.messages.push({ typeUrl, nonce, version, chunk: index });
      if (this.variant === 'delta') this.write(deltaRequest({ type_url: typeUrl, response_nonce: nonce }));
      else this.write(sotwRequest({ type_url: typeUrl, response_nonce: nonce, version_info: version, resource_names: this.subscribed.get(typeUrl) ?? [] }));
    }
  }
}

describe.each(['delta', 'sotw'] as const)('%s: the responses of one push leave in one write', (variant) => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  let client: RawHttp2Ads;

  beforeAll(async () => {
    cache.setResources(configuration(0));
    const port = await server.start({ port: 0, host: '127.0.0.1' });
    client = new RawHttp2Ads(port, variant);
    client.subscribe(TypeUrl.cluster, [], 'envoy-0');
    client.subscribe(TypeUrl.endpoint, NAMES);
    await waitFor(() => server.clients()[0]?.types.length === 2 && server.clients()[0]?.types.every((t) => t.state === 'acked'), { what: 'the client to ACK its clusters and assignments' });
  });

  afterAll(async () => {
    client.close();
    await server.stop();
  });

  it('sends an updated EDS cluster and its assignment in the same DATA frame, cluster first, and the client ACKs both', async () => {
    for (let generation = 1; generation <= 3; generation++) {
      const before = client.messages.length;
      cache.setResources(configuration(generation));
      const pushed = await waitFor(
        () => {
          const since = client.messages.slice(before);
          return since.some((m) => m.typeUrl === TypeUrl.endpoint) && since.some((m) => m.typeUrl === TypeUrl.cluster) ? since : undefined;
        },
        { what: `the cluster update of generation ${generation} and its assignment` },
      );
      expect(pushed.map((m) => m.typeUrl)).toEqual([TypeUrl.cluster, TypeUrl.endpoint]);
      expect(pushed[0]?.chunk).toBe(pushed[1]?.chunk);
      await waitFor(() => server.clients()[0]?.types.every((t) => t.state === 'acked' && t.sentVersion === t.ackedVersion), { what: 'both responses to be ACKed' });
    }
  });
});
