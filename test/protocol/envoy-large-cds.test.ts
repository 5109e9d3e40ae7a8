import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildBootstrap } from '../../src/envoy/bootstrap.js';
import { TypeUrl, type EnvoyResource, type JsonObject, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer, type AckEvent, type NackEvent } from '../../src/xds/server.js';
import { requireEnvoyBinary, startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { waitFor } from '../support/wait.js';

/**
 * A CDS response of a few megabytes goes out as shared pieces (runs of encoded Clusters, wire.ts,
 * written one after the other by grpc-framing.ts): the real Envoy reads it as the one message it
 * is, ACKs it and runs every Cluster; an edit of one Cluster, written from the same runs but one,
 * is read and applied too; so is a removal.
 */

const CLUSTERS = 2_000;

function clusterOf(i: number, timeout = '1s'): EnvoyResource {
  return {
    '@type': TypeUrl.cluster,
    name: `pool-${i}`,
    type: 'STATIC',
    connect_timeout: timeout,
    load_assignment: {
      cluster_name: `pool-${i}`,
      endpoints: [
        {
          lb_endpoints: Array.from({ length: 8 }, (_, k) => ({ endpoint: { address: { socket_address: { address: `10.${i % 250}.${k}.1`, port_value: 8000 + k } } } })),
        },
      ],
    },
  };
}

function config(clusters: EnvoyResource[]): XdsResources {
  return { listeners: [], routes: [], clusters, endpoints: [], secrets: [] };
}

describe.each([
  { mode: 'state of the world (GRPC)', delta: false },
  { mode: 'incremental (DELTA_GRPC)', delta: true },
])('a CDS response of megabytes, in pieces, to the real Envoy, $mode', ({ delta }) => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  const acks: AckEvent[] = [];
  const nacks: NackEvent[] = [];
  let envoy: EnvoyProcess | undefined;
  let startError: unknown;
  let clusters = Array.from({ length: CLUSTERS }, (_, i) => clusterOf(i));

  const acked = (): Promise<AckEvent> => {
    const version = cache.snapshot(TypeUrl.cluster)?.version;
    return waitFor(() => acks.find((ack) => ack.typeUrl === TypeUrl.cluster && ack.version === version), { what: `Envoy to ACK CDS version ${String(version)}`, timeoutMs: 60_000 });
  };

  const running = (): EnvoyProcess => {
    if (envoy === undefined) throw new Error('Envoy did not start');
    return envoy;
  };

  /** The connect timeout Envoy runs `name` with, from /config_dump. */
  async function timeoutOf(name: string): Promise<string | undefined> {
    const dump = await running().configDump();
    const configs = (dump['configs'] ?? []) as JsonObject[];
    const section = configs.find((c) => String(c['@type']).endsWith('ClustersConfigDump'));
    const dynamic = (section?.['dynamic_active_clusters'] ?? []) as JsonObject[];
    const found = dynamic.map((c) => c['cluster'] as JsonObject).find((c) => c['name'] === name);
    return found === undefined ? undefined : String(found['connect_timeout']);
  }

  beforeAll(async () => {
    try {
      requireEnvoyBinary();
      server.on('ack', (event) => acks.push(event));
      server.on('nack', (event) => nacks.push(event));
      const xdsPort = await server.start({ port: 0, host: '127.0.0.1' });
      cache.setResources(config(clusters));
      const nodeId = `envoy-large-${delta ? 'delta' : 'sotw'}`;
      envoy = await startEnvoy({ bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: xdsPort }, nodeId, adminPort: 0, delta }), adminPort: 0, id: nodeId });
    } catch (err) {
      startError = err;
    }
  }, 120_000);

  // Every test fails, none is skipped, when Envoy is missing.
  beforeEach(() => {
    if (startError !== undefined) throw startError;
  });

  afterAll(async () => {
    await envoy?.stop();
    await server.stop();
  });

  it('is ACKed, and Envoy runs every Cluster', async () => {
    await acked();
    await running().waitForStat('cluster_manager.active_clusters', (n) => n >= CLUSTERS, 60_000);
    expect(await timeoutOf('pool-1234')).toBe('1s');
    expect(nacks).toEqual([]);
  }, 90_000);

  it('takes an edit of one Cluster, and a removal', async () => {
    const active = await running().stat('cluster_manager.active_clusters');
    clusters = clusters.map((c, i) => (i === 1_234 ? clusterOf(i, '7s') : c));
    cache.setResources(config(clusters));
    await acked();
    await waitFor(async () => (await timeoutOf('pool-1234')) === '7s', { what: 'Envoy to run the edited Cluster', timeoutMs: 30_000 });
    clusters = clusters.filter((_, i) => i !== 42);
    cache.setResources(config(clusters));
    await acked();
    await running().waitForStat('cluster_manager.active_clusters', (n) => n === (active ?? 0) - 1, 30_000);
    expect(nacks).toEqual([]);
  }, 90_000);
});
