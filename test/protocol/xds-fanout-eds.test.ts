import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { closeAdsStream, openAdsStream, sotwRequest as request, sotwResponse, type AdsConnection } from '../support/ads-client.js';
import { waitFor } from '../support/wait.js';
import { assignment, cluster } from '../support/xds-stream.js';

/**
 * Many SotW streams x many EDS clusters, subscribed as Envoy is (CDS wildcard, then EDS by name
 * for every cluster): one cluster edit makes the server re-send that cluster's assignment
 * (Envoy keeps an updated EDS cluster warming until it gets it again). Issue 9 measured 1,000
 * Backends x 1,000 clients never converging: each stream was re-sent every assignment, in a
 * copy of its own. This proves the re-send is the one assignment, in the same bytes for every
 * stream, and that every stream converges.
 */

const CLIENTS = 200;
const CLUSTERS = 200;
const EDS_NAMES = Array.from({ length: CLUSTERS }, (_, i) => `pool-${i}`);

function configuration(timeoutOfFirst: string): XdsResources {
  const clusters = EDS_NAMES.map((name, i) => cluster(name, i === 0 ? timeoutOfFirst : '1s'));
  const endpoints = EDS_NAMES.map((name) => assignment(name, 8080));
  return { listeners: [], routes: [], clusters, endpoints, secrets: [] };
}

interface Received {
  readonly typeUrl: string;
  readonly version: string;
  readonly nonce: string;
  readonly resources: number;
  readonly bytes: Buffer;
}

interface FakeEnvoy extends AdsConnection {
  readonly received: Received[];
  errors: number;
}


describe(`SotW: ${CLIENTS} streams x ${CLUSTERS} EDS clusters, one cluster edited`, () => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  const envoys: FakeEnvoy[] = [];

  beforeAll(async () => {
    cache.setResources(configuration('1s'));
    const port = await server.start({ port: 0, host: '127.0.0.1' });
    for (let i = 0; i < CLIENTS; i++) {
      const { client, call } = openAdsStream(port);
      const envoy: FakeEnvoy = { client, call, received: [], errors: 0 };
      call.on('data', (bytes: Buffer) => {
        const response = sotwResponse(bytes);
        const typeUrl = String(response['type_url']);
        const version = String(response['version_info']);
        const nonce = String(response['nonce']);
        const resources = Array.isArray(response['resources']) ? response['resources'].length : 0;
        envoy.received.push({ typeUrl, version, nonce, resources, bytes });
        // ACK as Envoy does, repeating the subscription; CDS first, then EDS for every cluster.
        const names = typeUrl === TypeUrl.endpoint ? EDS_NAMES : [];
        call.write(request({ version_info: version, response_nonce: nonce, type_url: typeUrl, resource_names: names }));
        if (typeUrl === TypeUrl.cluster && !envoy.received.some((r) => r.typeUrl === TypeUrl.endpoint)) {
          call.write(request({ type_url: TypeUrl.endpoint, resource_names: EDS_NAMES }));
        }
      });
      call.on('error', () => {
        envoy.errors++;
      });
      call.write(request({ node: { id: `envoy-${i}` }, type_url: TypeUrl.cluster }));
      envoys.push(envoy);
    }
    await waitFor(() => server.clients().filter((c) => c.types.length === 2 && c.types.every((t) => t.state === 'acked')).length === CLIENTS, {
      what: `${CLIENTS} clients to ACK their clusters and assignments`,
      timeoutMs: 60_000,
      intervalMs: 50,
    });
  }, 120_000);

  afterAll(async () => {
    envoys.forEach(closeAdsStream);
    await server.stop();
  });

  it('re-sends only the edited cluster assignment, in the same bytes to every stream, and every stream converges', async () => {
    const before = envoys.map((envoy) => envoy.received.length);
    const edsVersion = cache.snapshot(TypeUrl.endpoint)?.version;
    cache.setResources(configuration('2s'));
    const cdsVersion = cache.snapshot(TypeUrl.cluster)?.version;
    const after = (envoy: FakeEnvoy, index: number): Received[] => envoy.received.slice(before[index]);
    await waitFor(() => envoys.every((envoy, i) => after(envoy, i).some((r) => r.typeUrl === TypeUrl.endpoint)), {
      what: 'every stream to receive the edited cluster and its assignment again',
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    await waitFor(() => server.clients().filter((c) => c.types.every((t) => t.state === 'acked')).length === CLIENTS, { what: 'every stream to ACK', timeoutMs: 30_000 });
    const resent = envoys.map((envoy, i) => after(envoy, i));
    for (const responses of resent) {
      expect(responses.map((r) => r.typeUrl)).toEqual([TypeUrl.cluster, TypeUrl.endpoint]);
      expect(responses[0]?.version).toBe(cdsVersion);
      // The assignments did not change: the client's EDS version stays what it ACKed.
      expect(responses[1]?.version).toBe(edsVersion);
      expect(responses[1]?.resources).toBe(1);
    }
    const first = resent[0]?.[1]?.bytes;
    expect(first).toBeDefined();
    expect(resent.every((responses) => responses[1]?.bytes.equals(first as Buffer))).toBe(true);
    expect(envoys.reduce((sum, envoy) => sum + envoy.errors, 0)).toBe(0);
  }, 60_000);
});
