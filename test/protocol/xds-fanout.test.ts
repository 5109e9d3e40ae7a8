import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessage, messageType } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { waitFor } from '../support/wait.js';

/**
 * A thousand SotW ADS clients, each on its own HTTP/2 connection as a fleet of Envoys would
 * be, must each receive one change exactly once. How fast is `npm run bench`'s business.
 */

const CLIENTS = 1_000;
const ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

function clusters(timeout: string): XdsResources {
  const list: EnvoyResource[] = Array.from({ length: 50 }, (_, i) => ({
    '@type': TypeUrl.cluster,
    name: `pool-${i}`,
    type: 'EDS',
    connect_timeout: i === 0 ? timeout : '1s',
    eds_cluster_config: { eds_config: { ads: {} } },
  }));
  return { listeners: [], routes: [], clusters: list, endpoints: [], secrets: [] };
}

interface FakeEnvoy {
  readonly client: grpc.Client;
  readonly call: grpc.ClientDuplexStream<Buffer, Buffer>;
  versions: string[];
}

const request = (json: Parameters<typeof encodeMessage>[1]): Buffer =>
  Buffer.from(encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', json));

describe(`xDS fan-out to ${CLIENTS} SotW clients`, () => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  const envoys: FakeEnvoy[] = [];

  beforeAll(async () => {
    cache.setResources(clusters('1s'));
    const port = await server.start({ port: 0, host: '127.0.0.1' });
    for (let i = 0; i < CLIENTS; i++) {
      // A local subchannel pool gives every client its own connection instead of a shared one.
      const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
      const call = client.makeBidiStreamRequest<Buffer, Buffer>(ADS_PATH, (b) => b, (b) => b);
      const envoy: FakeEnvoy = { client, call, versions: [] };
      call.on('data', (bytes: Buffer) => {
        // Like Envoy, the fake reads the envelope; the clusters stay undecoded Any bytes.
        const response = messageType('envoy.service.discovery.v3.DiscoveryResponse').decode(bytes).toJSON();
        const version = String(response['version_info']);
        envoy.versions.push(version);
        call.write(request({ version_info: version, response_nonce: String(response['nonce']), type_url: TypeUrl.cluster }));
      });
      call.on('error', () => undefined);
      call.write(request({ node: { id: `envoy-${i}` }, type_url: TypeUrl.cluster }));
      envoys.push(envoy);
    }
    await waitFor(() => envoys.every((envoy) => envoy.versions.length === 1), {
      what: `${CLIENTS} clients to receive the initial CDS response`,
      timeoutMs: 60_000,
      intervalMs: 100,
    });
    await waitFor(() => server.clients().filter((c) => c.types[0]?.state === 'acked').length === CLIENTS, {
      what: `${CLIENTS} clients to ACK`,
      timeoutMs: 30_000,
      intervalMs: 100,
    });
  }, 120_000);

  afterAll(async () => {
    for (const envoy of envoys) {
      envoy.call.cancel();
      envoy.client.close();
    }
    await server.stop();
  });

  // Speed is measured by `npm run bench`; this proves the fan-out itself: every client, exactly once.
  it('delivers one change exactly once to every one of many concurrent clients', async () => {
    cache.setResources(clusters('2s'));
    const expected = cache.snapshot(TypeUrl.cluster)?.version;
    await waitFor(() => envoys.every((envoy) => envoy.versions.at(-1) === expected), {
      what: `every client to receive version ${String(expected)}`,
      timeoutMs: 10_000,
      intervalMs: 5,
    });
    expect(envoys.every((envoy) => envoy.versions.length === 2)).toBe(true);
  });
});
