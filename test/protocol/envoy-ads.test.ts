import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildBootstrap } from '../../src/envoy/bootstrap.js';
import { TypeUrl, type JsonObject, type JsonValue, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer, type AckEvent, type ClientEvent, type NackEvent } from '../../src/xds/server.js';
import { httpListener, rdsOverAds } from '../support/envoy-listener.js';
import { requireEnvoyBinary, startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { freePort } from '../support/ports.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * Our ADS server against the real Envoy, over state-of-the-world and delta: Envoy ACKs what we
 * serve and answers HTTP from it; a resource Envoy rejects is NACKed with Envoy's own error text
 * while the last good config keeps serving; the next valid update is ACKed; removals work.
 */

const ROUTES = 'local-routes';
const LISTENER = 'local-http';
const CLUSTER = 'backend';

interface Version {
  body: string;
  /** A route regex; an invalid one is Envoy's to reject (RE2 compiles it at config load). */
  regex?: string;
  connectTimeout?: string;
  withListener?: boolean;
}

function resources(listenerPort: number, v: Version): XdsResources {
  return {
    listeners: v.withListener === false ? [] : [httpListener(LISTENER, listenerPort, 'local', rdsOverAds(ROUTES))],
    routes: [
      {
        '@type': TypeUrl.route,
        name: ROUTES,
        virtual_hosts: [
          {
            name: 'local',
            domains: ['*'],
            routes: [
              { match: { safe_regex: { regex: v.regex ?? '^/backend/.*' } }, route: { cluster: CLUSTER } },
              { match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: v.body } } },
            ],
          },
        ],
      },
    ],
    clusters: [
      {
        '@type': TypeUrl.cluster,
        name: CLUSTER,
        type: 'EDS',
        connect_timeout: v.connectTimeout ?? '1s',
        eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
        // Newer than the bundled protos (src/envoy/proto-additions.ts): Envoy must read it back.
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: { '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', auto_host_sni: true },
        },
      },
    ],
    endpoints: [
      {
        '@type': TypeUrl.endpoint,
        cluster_name: CLUSTER,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 9 } }, hostname: 'backend.test' } }] }],
      },
    ],
    secrets: [],
  };
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The section of /config_dump of one admin type (e.g. `RoutesConfigDump`, not `ScopedRoutesConfigDump`). */
function dumpSection(dump: JsonObject, adminType: string): JsonObject {
  const configs = dump['configs'];
  const typeUrl = `type.googleapis.com/envoy.admin.v3.${adminType}`;
  const found = Array.isArray(configs) ? configs.find((c) => isObject(c) && c['@type'] === typeUrl) : undefined;
  if (!isObject(found)) throw new Error(`config_dump has no ${adminType}`);
  return found;
}

/** Resolves with true when nothing listens on the port any more (a fresh connection is refused). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

function list(value: JsonValue | undefined): JsonObject[] {
  return Array.isArray(value) ? value.filter(isObject) : [];
}

async function get(port: number, path = '/'): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return `${res.status} ${await res.text()}`;
}

describe.each([
  { mode: 'state of the world (GRPC)', delta: false },
  { mode: 'incremental (DELTA_GRPC)', delta: true },
])('ADS server with the real Envoy, $mode', ({ delta }) => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  const acks: AckEvent[] = [];
  const nacks: NackEvent[] = [];
  const connections: string[] = [];
  const record = (what: string) => (event: ClientEvent) => connections.push(`${what} ${event.nodeId} ${event.kind}`);
  const nodeId = `envoy-${delta ? 'delta' : 'sotw'}`;
  let envoy: EnvoyProcess | undefined;
  let listenerPort = 0;

  const acked = (typeUrl: string, timeoutMs = 15_000): Promise<AckEvent> => {
    const version = cache.snapshot(typeUrl)?.version;
    return waitFor(() => acks.find((ack) => ack.typeUrl === typeUrl && ack.version === version), {
      what: `Envoy to ACK ${typeUrl} version ${String(version)}`,
      timeoutMs,
    });
  };

  let startError: unknown;

  beforeAll(async () => {
    try {
      await start();
    } catch (err) {
      startError = err;
    }
  });

  // Every test fails, none is skipped, when Envoy is missing: they prove Envoy takes our xDS.
  beforeEach(() => {
    if (startError !== undefined) throw startError;
  });

  async function start(): Promise<void> {
    requireEnvoyBinary();
    server.on('ack', (event) => acks.push(event));
    server.on('nack', (event) => nacks.push(event));
    server.on('connected', record('connected'));
    server.on('disconnected', record('disconnected'));
    const xdsPort = await server.start({ port: 0, host: '127.0.0.1' });
    listenerPort = await freePort();
    cache.setResources(resources(listenerPort, { body: 'hello v1' }));
    envoy = await startEnvoy({
      bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: xdsPort }, nodeId, adminPort: 0, delta }),
      adminPort: 0,
      id: nodeId,
    });
  }

  afterAll(async () => {
    await envoy?.stop();
    await server.stop();
  });

  const running = (): EnvoyProcess => {
    if (envoy === undefined) throw new Error('Envoy did not start');
    return envoy;
  };

  it('is ACKed by Envoy, shows in /config_dump and serves the direct response', async () => {
    for (const typeUrl of [TypeUrl.cluster, TypeUrl.endpoint, TypeUrl.listener, TypeUrl.route]) await acked(typeUrl);
    const client = server.clients().find((c) => c.nodeId === nodeId);
    expect(client?.kind).toBe(delta ? 'delta' : 'sotw');
    await running().waitForListener(LISTENER);
    expect(await get(listenerPort)).toBe('200 hello v1');

    const dump = await running().configDump();
    const listeners = list(dumpSection(dump, 'ListenersConfigDump')['dynamic_listeners']);
    expect(listeners.map((l) => l['name'])).toContain(LISTENER);
    const routes = list(dumpSection(dump, 'RoutesConfigDump')['dynamic_route_configs']);
    expect(JSON.stringify(routes)).toContain('hello v1');
    const clusters = list(dumpSection(dump, 'ClustersConfigDump')['dynamic_active_clusters']);
    const backend = clusters.find((c) => isObject(c['cluster']) && c['cluster']['name'] === CLUSTER);
    // Envoy decoded the field added to the bundled protos at the number we gave it.
    expect(JSON.stringify(backend)).toContain('"auto_host_sni":true');
  });

  it('records Envoy\'s NACK of a route it cannot compile and keeps serving the last good config', async () => {
    const before = nacks.length;
    cache.setResources(resources(listenerPort, { body: 'hello broken', regex: '^/backend/((' }));
    const rejectedVersion = cache.snapshot(TypeUrl.route)?.version;
    const nack = await waitFor(() => nacks.slice(before).find((n) => n.typeUrl === TypeUrl.route), {
      what: 'Envoy to NACK the route with the invalid regex',
      timeoutMs: 15_000,
    });
    expect(nack.nodeId).toBe(nodeId);
    expect(nack.version).toBe(rejectedVersion);
    // Envoy 1.40 passes RE2's error through as is: "missing ): ^/backend/((".
    expect(nack.message).toContain('missing )');
    expect(nack.message).toContain('^/backend/((');
    expect(await get(listenerPort)).toBe('200 hello v1');

    const status = server.clients().find((c) => c.nodeId === nodeId)?.types.find((t) => t.typeUrl === TypeUrl.route);
    expect(status?.state).toBe('rejected');
    expect(status?.lastNack?.message).toBe(nack.message);
    // No resend loop: the rejected version is not pushed again, so Envoy does not NACK again.
    await sleep(1_000);
    expect(nacks.slice(before)).toHaveLength(1);
  });

  it('ACKs the next valid update, including a changed EDS cluster that must leave warming', async () => {
    cache.setResources(resources(listenerPort, { body: 'hello v2', connectTimeout: '2s' }));
    await acked(TypeUrl.route);
    // Envoy ACKs CDS once the updated cluster has warmed, which needs its assignment again;
    // without the server's resend that takes initial_fetch_timeout (15 s).
    await acked(TypeUrl.cluster, 5_000);
    await waitFor(async () => (await get(listenerPort)) === '200 hello v2', { what: 'Envoy to serve hello v2' });
    const status = server.clients().find((c) => c.nodeId === nodeId)?.types.find((t) => t.typeUrl === TypeUrl.route);
    expect(status?.state).toBe('acked');
    await waitFor(
      async () => {
        const section = dumpSection(await running().configDump(), 'ClustersConfigDump');
        const active = list(section['dynamic_active_clusters']).find((c) => isObject(c['cluster']) && c['cluster']['name'] === CLUSTER);
        return list(section['dynamic_warming_clusters']).length === 0 && isObject(active?.['cluster']) && active['cluster']['connect_timeout'] === '2s';
      },
      { what: `the updated ${CLUSTER} cluster to become active (not stuck warming)`, timeoutMs: 10_000 },
    );
  });

  it('removes a listener that is no longer in the configuration', async () => {
    cache.setResources(resources(listenerPort, { body: 'hello v2', connectTimeout: '2s', withListener: false }));
    await acked(TypeUrl.listener);
    await waitFor(async () => !(await running().listeners()).some((l) => l.name === LISTENER), {
      what: `Envoy to drop listener ${LISTENER}`,
    });
    // Connections already open drain; a new one finds nobody listening.
    await waitFor(() => refused(listenerPort), { what: `port ${listenerPort} to refuse new connections` });
  });

  it('reports the client connected once and disconnected when Envoy stops', async () => {
    const kind = delta ? 'delta' : 'sotw';
    expect(connections).toEqual([`connected ${nodeId} ${kind}`]);
    await running().stop();
    await waitFor(() => connections.includes(`disconnected ${nodeId} ${kind}`), { what: 'the disconnected event' });
    expect(server.clients().some((c) => c.nodeId === nodeId)).toBe(false);
  });
});
