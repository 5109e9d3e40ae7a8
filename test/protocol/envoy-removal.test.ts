import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBootstrap } from '../../src/envoy/bootstrap.js';
import { TypeUrl, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer, type AckEvent, type NackEvent } from '../../src/xds/server.js';
import { httpListener, rdsOverAds } from '../support/envoy-listener.js';
import { startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { freePort } from '../support/ports.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * Make-before-break on removal with the real Envoy: a change that deletes cluster A and moves
 * the route off it must not let Envoy lose A while its routes still name it. The route update is
 * first made one Envoy rejects, so the old route (to A) stays in force for as long as we like:
 * without the hold every request would answer 503 "no cluster" then.
 */

const LISTENER = 'removal-http';
const ROUTES = 'removal-routes';

function upstream(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((_req, res) => res.end(name));
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as AddressInfo).port })));
}

function resources(listenerPort: number, ports: Record<string, number>, clusters: string[], target: string, regex = '^/.*'): XdsResources {
  return {
    listeners: [httpListener(LISTENER, listenerPort, 'removal', rdsOverAds(ROUTES))],
    routes: [
      {
        '@type': TypeUrl.route,
        name: ROUTES,
        virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { safe_regex: { regex } }, route: { cluster: target } }] }],
      },
    ],
    clusters: clusters.map(
      (name): EnvoyResource => ({
        '@type': TypeUrl.cluster,
        name,
        type: 'EDS',
        connect_timeout: '1s',
        eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
      }),
    ),
    endpoints: clusters.map(
      (name): EnvoyResource => ({
        '@type': TypeUrl.endpoint,
        cluster_name: name,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: ports[name] ?? 9 } } } }] }],
      }),
    ),
    secrets: [],
  };
}

describe.each([
  { mode: 'state of the world', delta: false },
  { mode: 'delta', delta: true },
])('cluster removal with the real Envoy, $mode', ({ delta }) => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  const acks: AckEvent[] = [];
  const nacks: NackEvent[] = [];
  const upstreams: Server[] = [];
  const ports: Record<string, number> = {};
  let envoy: EnvoyProcess | undefined;
  let listenerPort = 0;

  beforeAll(async () => {
    server.on('ack', (e) => acks.push(e));
    server.on('nack', (e) => nacks.push(e));
    for (const name of ['a', 'b']) {
      const u = await upstream(name);
      upstreams.push(u.server);
      ports[name] = u.port;
    }
    const xdsPort = await server.start({ port: 0, host: '127.0.0.1' });
    listenerPort = await freePort();
    cache.setResources(resources(listenerPort, ports, ['a', 'b'], 'a'));
    envoy = await startEnvoy({
      bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: xdsPort }, nodeId: `removal-${delta ? 'delta' : 'sotw'}`, adminPort: 0, delta }),
      adminPort: 0,
      id: `removal-${delta ? 'delta' : 'sotw'}`,
    });
  });

  afterAll(async () => {
    await envoy?.stop();
    await server.stop();
    for (const u of upstreams) u.close();
  });

  const get = async (): Promise<string> => {
    const res = await fetch(`http://127.0.0.1:${listenerPort}/chat`);
    return `${res.status} ${await res.text()}`;
  };
  const clusterNames = async (): Promise<string[]> => {
    const body = await envoy!.clusters();
    const statuses = Array.isArray(body['cluster_statuses']) ? body['cluster_statuses'] : [];
    return statuses.map((s) => (typeof s === 'object' && s !== null && !Array.isArray(s) ? String(s['name']) : ''));
  };

  it('keeps serving the old route\'s cluster while Envoy rejects the route update, then removes it after the next route ACK', async () => {
    await waitFor(async () => (await get()) === '200 a', { what: 'Envoy to route to cluster a', timeoutMs: 15_000 });

    // a leaves the configuration; the route that moves off it is one Envoy rejects.
    const before = nacks.length;
    cache.setResources(resources(listenerPort, ports, ['b'], 'b', '^/(('));
    await waitFor(() => nacks.slice(before).find((n) => n.typeUrl === TypeUrl.route), { what: 'Envoy to NACK the route update', timeoutMs: 10_000 });
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      seen.add(await get());
      await sleep(25);
    }
    expect([...seen]).toEqual(['200 a']);
    expect(await clusterNames()).toContain('a');

    // A route Envoy accepts: a goes once that route is ACKed, with no failed request on the way.
    const results: string[] = [];
    let running = true;
    const traffic = (async () => {
      while (running) results.push(await get());
    })();
    cache.setResources(resources(listenerPort, ports, ['b'], 'b'));
    const routeVersion = cache.snapshot(TypeUrl.route)?.version;
    await waitFor(() => acks.find((a) => a.typeUrl === TypeUrl.route && a.version === routeVersion), { what: 'Envoy to ACK the route to b' });
    await waitFor(async () => !(await clusterNames()).includes('a'), { what: 'Envoy to remove cluster a' });
    await waitFor(() => results.at(-1) === '200 b', { what: 'traffic to reach b' });
    running = false;
    await traffic;
    expect(results.filter((r) => !r.startsWith('200 '))).toEqual([]);
    expect(results.length).toBeGreaterThan(0);
  });
});
