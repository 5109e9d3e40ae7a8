import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { closeAdsStream, openAdsStream, sotwRequest as request, sotwResponse, type AdsConnection } from '../support/ads-client.js';
import { waitFor } from '../support/wait.js';
import { cluster } from '../support/xds-stream.js';

/**
 * A thousand SotW ADS clients, each on its own HTTP/2 connection as a fleet of Envoys would
 * be, must each receive one change exactly once. How fast is `npm run bench`'s business.
 */

const CLIENTS = 1_000;

function clusters(timeout: string): XdsResources {
  const list = Array.from({ length: 50 }, (_, i) => cluster(`pool-${i}`, i === 0 ? timeout : '1s'));
  return { listeners: [], routes: [], clusters: list, endpoints: [], secrets: [] };
}

interface FakeEnvoy extends AdsConnection {
  versions: string[];
}

describe(`xDS fan-out to ${CLIENTS} SotW clients`, () => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  const envoys: FakeEnvoy[] = [];

  beforeAll(async () => {
    cache.setResources(clusters('1s'));
    const port = await server.start({ port: 0, host: '127.0.0.1' });
    for (let i = 0; i < CLIENTS; i++) {
      const { client, call } = openAdsStream(port);
      const envoy: FakeEnvoy = { client, call, versions: [] };
      call.on('data', (bytes: Buffer) => {
        const response = sotwResponse(bytes);
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
    envoys.forEach(closeAdsStream);
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
