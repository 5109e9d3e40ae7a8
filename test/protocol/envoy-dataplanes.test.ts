import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildBootstrap } from '../../src/envoy/bootstrap.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { requireEnvoyBinary, startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { freePort } from '../support/ports.js';
import { twoGateways } from '../support/two-gateways.js';
import { waitFor } from '../support/wait.js';

/**
 * A data plane per Gateway with the real Envoy: Gateways a/edge and b/edge both listen on one
 * port number. One Envoy bootstrapped with --gateway a/edge (SotW) and one with --gateway b/edge
 * (delta) bind that port on their own loopback addresses (gatewayAddresses) and each serves
 * only its own Gateway's routes and clusters. An Envoy that names no Gateway gets the shared
 * view: every Gateway, less the younger Gateway's listener on the contested port.
 */

const ADDRESS_A = '127.0.0.2';
const ADDRESS_B = '127.0.0.3';
const SHARED_ADDRESS = '127.0.0.4';

function upstream(body: string): Promise<Server> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}

async function get(address: string, port: number): Promise<string> {
  const res = await fetch(`http://${address}:${port}/`);
  return `${res.status} ${await res.text()}`;
}

async function clusterNames(envoy: EnvoyProcess): Promise<string[]> {
  const statuses = (await envoy.clusters())['cluster_statuses'];
  return (Array.isArray(statuses) ? statuses : []).map((c) => String((c as JsonObject)['name'])).filter((name) => name !== 'switchyard-xds').sort();
}

describe('a data plane per Gateway, with the real Envoy', () => {
  const perGateway = { cache: new SnapshotCache(), server: undefined as XdsServer | undefined };
  const shared = { cache: new SnapshotCache(), server: undefined as XdsServer | undefined };
  const upstreams: Server[] = [];
  const envoys: EnvoyProcess[] = [];
  let port = 0;
  let envoyA: EnvoyProcess | undefined;
  let envoyB: EnvoyProcess | undefined;
  let envoyShared: EnvoyProcess | undefined;
  let startError: unknown;

  beforeAll(async () => {
    try {
      requireEnvoyBinary();
      const a = await upstream('from a');
      const b = await upstream('from b');
      upstreams.push(a, b);
      port = await freePort();
      const fixture = { port, upstreamA: { host: '127.0.0.1', port: portOf(a) }, upstreamB: { host: '127.0.0.1', port: portOf(b) } };

      // Each Gateway on its own address, as the Host infrastructure runs them.
      const own = twoGateways(fixture, { gatewayAddresses: new Map([['a/edge', ADDRESS_A], ['b/edge', ADDRESS_B]]) });
      perGateway.cache.setResources(own.xds, own.planes);
      perGateway.server = new XdsServer({ cache: perGateway.cache });
      const xdsPort = await perGateway.server.start({ port: 0, host: '127.0.0.1' });
      const boot = (nodeId: string, gateway: string, delta: boolean): JsonObject =>
        buildBootstrap({ xds: { host: '127.0.0.1', port: xdsPort }, nodeId, adminPort: 0, gateway, delta });
      envoyA = await startEnvoy({ bootstrap: boot('envoy-a', 'a/edge', false), adminPort: 0, id: 'dataplane-a' });
      envoys.push(envoyA);
      envoyB = await startEnvoy({ bootstrap: boot('envoy-b', 'b/edge', true), adminPort: 0, id: 'dataplane-b' });
      envoys.push(envoyB);

      // One Envoy for every Gateway, both Gateways on the same address: a port clash to resolve.
      const all = twoGateways(fixture, { listenerAddress: SHARED_ADDRESS });
      shared.cache.setResources(all.xds, all.planes);
      shared.server = new XdsServer({ cache: shared.cache });
      const sharedPort = await shared.server.start({ port: 0, host: '127.0.0.1' });
      envoyShared = await startEnvoy({
        bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: sharedPort }, nodeId: 'envoy-shared', adminPort: 0 }),
        adminPort: 0,
        id: 'dataplane-shared',
      });
      envoys.push(envoyShared);
    } catch (err) {
      startError = err;
    }
  });

  beforeEach(() => {
    if (startError !== undefined) throw startError;
  });

  afterAll(async () => {
    for (const envoy of envoys) await envoy.stop();
    await perGateway.server?.stop();
    await shared.server?.stop();
    for (const u of upstreams) u.close();
  });

  it('serves each Gateway from its own Envoy on its own address, with only its own listener and cluster', async () => {
    const a = envoyA as EnvoyProcess;
    const b = envoyB as EnvoyProcess;
    await a.waitForListener(`a/edge/${port}`, 15_000);
    await b.waitForListener(`b/edge/${port}`, 15_000);
    expect(await waitFor(async () => (await get(ADDRESS_A, port)) === '200 from a' && 'ok', { what: 'Envoy a to answer from Backend a/pool', timeoutMs: 15_000 })).toBe('ok');
    expect(await waitFor(async () => (await get(ADDRESS_B, port)) === '200 from b' && 'ok', { what: 'Envoy b to answer from Backend b/pool', timeoutMs: 15_000 })).toBe('ok');
    expect((await a.listeners()).map((l) => `${l.name} ${l.address}:${l.port}`)).toEqual([`a/edge/${port} ${ADDRESS_A}:${port}`]);
    expect((await b.listeners()).map((l) => `${l.name} ${l.address}:${l.port}`)).toEqual([`b/edge/${port} ${ADDRESS_B}:${port}`]);
    expect(await clusterNames(a)).toEqual(['backend/a/pool']);
    expect(await clusterNames(b)).toEqual(['backend/b/pool']);
    const clients = perGateway.server?.clients() ?? [];
    expect(new Map(clients.map((c) => [c.nodeId, `${c.gateway ?? ''} ${c.kind}`]))).toEqual(new Map([['envoy-a', 'a/edge sotw'], ['envoy-b', 'b/edge delta']]));
  });

  it('gives an Envoy that names no Gateway the shared view: the older Gateway keeps the contested port', async () => {
    const envoy = envoyShared as EnvoyProcess;
    await envoy.waitForListener(`a/edge/${port}`, 15_000);
    expect(await waitFor(async () => (await get(SHARED_ADDRESS, port)) === '200 from a' && 'ok', { what: 'the shared Envoy to answer from Backend a/pool', timeoutMs: 15_000 })).toBe('ok');
    expect((await envoy.listeners()).map((l) => l.name)).toEqual([`a/edge/${port}`]);
    expect(await clusterNames(envoy)).toEqual(['backend/a/pool', 'backend/b/pool']);
    expect(shared.cache.view(undefined).problems.join('\n')).toContain(`listener b/edge/${port} is left out`);
  });
});
