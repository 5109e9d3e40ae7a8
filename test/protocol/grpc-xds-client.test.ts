import * as grpc from '@grpc/grpc-js';
import { register as registerXdsResolver } from '@grpc/grpc-js-xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl, type JsonObject, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer, type AckEvent, type ClientEvent } from '../../src/xds/server.js';
import { startEchoBackend, who, type EchoBackend } from '../support/grpc-backend.js';
import { waitFor } from '../support/wait.js';

/**
 * Our ADS server against gRPC's own xDS client (@grpc/grpc-js-xds, SotW only): a channel to
 * `xds:///echo.test` must resolve through LDS → RDS → CDS → EDS served by us, reach priority 0,
 * and fail over to priority 1 when priority 0's backend dies.
 */

const LISTENER = 'echo.test';
const NODE_ID = 'grpc-client-1';

function xdsResources(p0: EchoBackend, p1: EchoBackend): XdsResources {
  const locality = (priority: number, backend: EchoBackend): JsonObject => ({
    priority,
    locality: { zone: `p${priority}` },
    load_balancing_weight: 1,
    lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: backend.port } } } }],
  });
  return {
    listeners: [
      {
        '@type': TypeUrl.listener,
        name: LISTENER,
        api_listener: {
          api_listener: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
            rds: { route_config_name: 'echo-routes', config_source: { ads: {}, resource_api_version: 'V3' } },
            http_filters: [{ name: 'router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
          },
        },
      },
    ],
    routes: [
      {
        '@type': TypeUrl.route,
        name: 'echo-routes',
        virtual_hosts: [{ name: 'echo', domains: ['*'], routes: [{ match: { prefix: '' }, route: { cluster: 'echo' } }] }],
      },
    ],
    clusters: [
      {
        '@type': TypeUrl.cluster,
        name: 'echo',
        type: 'EDS',
        eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
        lb_policy: 'ROUND_ROBIN',
      },
    ],
    endpoints: [{ '@type': TypeUrl.endpoint, cluster_name: 'echo', endpoints: [locality(0, p0), locality(1, p1)] }],
    secrets: [],
  };
}

describe('ADS server with the @grpc/grpc-js-xds client', () => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  const acks: AckEvent[] = [];
  const connected: ClientEvent[] = [];
  let p0: EchoBackend;
  let p1: EchoBackend;
  let client: grpc.Client | undefined;

  beforeAll(async () => {
    server.on('ack', (event) => acks.push(event));
    server.on('connected', (event) => connected.push(event));
    const port = await server.start({ port: 0, host: '127.0.0.1' });
    [p0, p1] = await Promise.all([startEchoBackend('priority-0'), startEchoBackend('priority-1')]);
    cache.setResources(xdsResources(p0, p1));
    // The library reads its bootstrap once per process; this file owns the process (vitest worker).
    process.env['GRPC_XDS_BOOTSTRAP_CONFIG'] = JSON.stringify({
      xds_servers: [{ server_uri: `127.0.0.1:${port}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: NODE_ID, locality: {} },
    });
    registerXdsResolver();
    client = new grpc.Client(`xds:///${LISTENER}`, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await Promise.all([p0?.stop(), p1?.stop()]);
    await server.stop();
  });

  it('resolves the listener through LDS, RDS, CDS and EDS and calls priority 0', async () => {
    const answer = await waitFor(async () => (client === undefined ? undefined : await who(client)), {
      what: `a call through xds:///${LISTENER}`,
      timeoutMs: 15_000,
      intervalMs: 200,
    });
    expect(answer).toBe('priority-0');
    expect(connected).toEqual([expect.objectContaining({ nodeId: NODE_ID, kind: 'sotw' })]);
    // Every type the client asked for was ACKed at the version we sent.
    for (const typeUrl of [TypeUrl.listener, TypeUrl.route, TypeUrl.cluster, TypeUrl.endpoint]) {
      expect(acks.some((ack) => ack.typeUrl === typeUrl && ack.version === cache.snapshot(typeUrl)?.version)).toBe(true);
    }
    const [state] = server.clients();
    expect(state?.nodeId).toBe(NODE_ID);
    expect(state?.types.every((type) => type.state === 'acked')).toBe(true);
  });

  it('fails over to priority 1 when priority 0 stops answering', async () => {
    if (client === undefined) throw new Error('client not created');
    const grpcClient = client;
    await p0.stop();
    const answer = await waitFor(
      async () => {
        const name = await who(grpcClient, 1_000);
        return name === 'priority-1' ? name : undefined;
      },
      { what: 'calls to reach priority 1 after priority 0 stopped', timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(answer).toBe('priority-1');
    // Once failed over, calls stay there.
    for (let i = 0; i < 5; i++) expect(await who(grpcClient)).toBe('priority-1');
    expect(p1.calls()).toBeGreaterThanOrEqual(6);
  });

  it('delivers an endpoint change to the client: priority 0 moves to a new backend', async () => {
    if (client === undefined) throw new Error('client not created');
    const grpcClient = client;
    const revived = await startEchoBackend('priority-0-new');
    try {
      const ackCount = acks.length;
      cache.setResources(xdsResources(revived, p1));
      const answer = await waitFor(
        async () => {
          const name = await who(grpcClient, 1_000);
          return name === 'priority-0-new' ? name : undefined;
        },
        { what: 'calls to return to the new priority-0 backend', timeoutMs: 20_000, intervalMs: 100 },
      );
      expect(answer).toBe('priority-0-new');
      expect(acks.slice(ackCount).map((ack) => ack.typeUrl)).toEqual([TypeUrl.endpoint]);
    } finally {
      await revived.stop();
    }
  });
});
