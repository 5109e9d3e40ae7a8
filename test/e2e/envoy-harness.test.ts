import * as grpc from '@grpc/grpc-js';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFakeProvider, type FakeProvider } from '../../examples/demo/fake-provider.js';
import { buildBootstrap, XDS_CLUSTER_NAME } from '../../src/envoy/bootstrap.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

/** A self-contained bootstrap: one listener routing everything to one static cluster. */
function staticBootstrap(adminPort: number, listenerPort: number, upstreamPort: number): JsonObject {
  const address = (port: number): JsonObject => ({ socket_address: { address: '127.0.0.1', port_value: port } });
  return {
    node: { id: 'harness', cluster: 'harness' },
    admin: { address: address(adminPort) },
    static_resources: {
      listeners: [
        {
          name: 'ingress',
          address: address(listenerPort),
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'ingress',
                    route_config: {
                      virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'provider' } }] }],
                    },
                    http_filters: [
                      {
                        name: 'envoy.filters.http.router',
                        typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
                      },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        {
          name: 'provider',
          type: 'STATIC',
          connect_timeout: '1s',
          load_assignment: { cluster_name: 'provider', endpoints: [{ lb_endpoints: [{ endpoint: { address: address(upstreamPort) } }] }] },
        },
      ],
    },
  };
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

function asObject(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
}

describe('Envoy harness with a static bootstrap', () => {
  let provider: FakeProvider;
  let envoy: EnvoyProcess;
  let listenerPort: number;

  beforeAll(async () => {
    provider = await startFakeProvider({ name: 'static-one' });
    const adminPort = await freePort();
    listenerPort = await freePort();
    envoy = await startEnvoy({ bootstrap: staticBootstrap(adminPort, listenerPort, provider.port), adminPort, id: 'harness-static' });
  });
  afterAll(async () => {
    await envoy?.stop();
    await provider?.close();
  });

  it('starts, serves its admin API and activates the static listener', async () => {
    expect(envoy.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const listener = await envoy.waitForListener('ingress');
    expect(listener.port).toBe(listenerPort);
    expect(envoy.logs()).toContain('starting main dispatch loop');
  });

  it('carries a request from the official OpenAI client to the fake provider and back', async () => {
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${listenerPort}/v1`, apiKey: 'sk-through-envoy', maxRetries: 0 });
    const completion = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] });
    expect(completion.choices[0]?.message.content).toBe('answered by static-one');
    const last = provider.received().at(-1);
    expect(last?.path).toBe('/v1/chat/completions');
    expect(last?.headers['authorization']).toBe('Bearer sk-through-envoy');
    expect(last?.headers['x-envoy-expected-rq-timeout-ms']).toBeDefined();
    expect(last?.body).toMatchObject({ model: 'gpt-4o' });
  });

  it('shows the request in /stats and the fake provider in /clusters', async () => {
    const before = (await envoy.stat('cluster.provider.upstream_rq_200')) ?? 0;
    const res = await fetch(`http://127.0.0.1:${listenerPort}/v1/chat/completions`, { method: 'POST', body: '{"model":"m"}' });
    expect(res.status).toBe(200);
    await envoy.waitForStat('cluster.provider.upstream_rq_200', (v) => v >= before + 1);
    const stats = await envoy.stats();
    expect(stats.get('cluster.provider.upstream_rq_200')).toBeGreaterThanOrEqual(before + 1);
    expect(stats.get('cluster.provider.upstream_cx_total')).toBeGreaterThanOrEqual(1);

    const statuses = (await envoy.clusters())['cluster_statuses'];
    const cluster = (Array.isArray(statuses) ? statuses : []).map(asObject).find((c) => c['name'] === 'provider');
    const hosts = Array.isArray(cluster?.['host_statuses']) ? cluster['host_statuses'] : [];
    expect(hosts.map((h) => asObject(asObject(asObject(h)['address'])['socket_address']))).toContainEqual({
      address: '127.0.0.1',
      port_value: provider.port,
    });
  });

  it('reports an upstream failure mode as Envoy sees it (503 from a refusing provider)', async () => {
    await provider.setMode('refuse');
    try {
      const res = await fetch(`http://127.0.0.1:${listenerPort}/v1/chat/completions`, { method: 'POST', body: '{}' });
      expect(res.status).toBe(503);
      await envoy.waitForStat('cluster.provider.upstream_cx_connect_fail', (v) => v >= 1);
    } finally {
      await provider.setMode('ok');
    }
  });

  it('dumps its configuration, including the static cluster', async () => {
    const dump = JSON.stringify(await envoy.configDump({ includeEds: true }));
    expect(dump).toContain('"name":"provider"');
    expect(dump).toContain('ClusterLoadAssignment');
  });
});

describe('Envoy harness lifecycle', () => {
  const envoys: EnvoyProcess[] = [];
  const savedBin = process.env['ENVOY_BIN'];
  afterEach(async () => {
    if (savedBin === undefined) delete process.env['ENVOY_BIN'];
    else process.env['ENVOY_BIN'] = savedBin;
    await Promise.all(envoys.splice(0).map((e) => e.stop()));
  });

  it('stop() ends the process and leaves none behind, and may be called twice', async () => {
    const adminPort = await freePort();
    const envoy = await startEnvoy({ bootstrap: staticBootstrap(adminPort, await freePort(), await freePort()), adminPort });
    envoys.push(envoy);
    expect(processExists(envoy.pid)).toBe(true);
    await envoy.stop();
    expect(envoy.running()).toBe(false);
    expect(processExists(envoy.pid)).toBe(false);
    await envoy.stop();
    expect(envoy.logs()).toContain('caught ENVOY_SIGTERM');
    await expect(fetch(`${envoy.adminUrl}/ready`)).rejects.toThrow();
  });

  it('runs a buildBootstrap() config against an unreachable controller: admin up, xDS cluster present, not connected', async () => {
    const adminPort = await freePort();
    const envoy = await startEnvoy({
      bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: await freePort() }, nodeId: 'lonely', adminPort, delta: true }),
      adminPort,
      id: 'harness-no-xds',
    });
    envoys.push(envoy);
    const statuses = (await envoy.clusters())['cluster_statuses'];
    expect((Array.isArray(statuses) ? statuses : []).map((c) => asObject(c)['name'])).toContain(XDS_CLUSTER_NAME);
    expect(await envoy.stat('control_plane.connected_state')).toBe(0);
    const info = asObject(JSON.parse(await envoy.admin('/server_info')));
    expect(asObject(info['command_line_options'])['concurrency']).toBe(1);
    expect(asObject(info['node'])['id']).toBe('lonely');
  });

  it.each([
    ['SotW', false, 'StreamAggregatedResources'],
    ['delta', true, 'DeltaAggregatedResources'],
  ])('connects a buildBootstrap() Envoy to an ADS endpoint by hostname over HTTP/2 (%s)', async (_label, delta, method) => {
    // A bare gRPC endpoint that records raw requests: enough to prove the bootstrap reaches it.
    const calls: { path: string; bytes: number }[] = [];
    const raw = (b: Buffer): Buffer => b;
    const definition = (name: string): grpc.MethodDefinition<Buffer, Buffer> => ({
      path: `/envoy.service.discovery.v3.AggregatedDiscoveryService/${name}`,
      requestStream: true,
      responseStream: true,
      requestSerialize: raw,
      requestDeserialize: raw,
      responseSerialize: raw,
      responseDeserialize: raw,
    });
    const record: grpc.handleBidiStreamingCall<Buffer, Buffer> = (call) => {
      call.on('data', (b: Buffer) => calls.push({ path: call.getPath(), bytes: b.length }));
      call.on('error', () => undefined);
    };
    const server = new grpc.Server();
    server.addService(
      { sotw: definition('StreamAggregatedResources'), delta: definition('DeltaAggregatedResources') },
      { sotw: record, delta: record },
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    try {
      const adminPort = await freePort();
      const envoy = await startEnvoy({
        bootstrap: buildBootstrap({ xds: { host: 'localhost', port }, nodeId: `probe-${method}`, adminPort, delta }),
        adminPort,
        id: `harness-ads-${method}`,
      });
      envoys.push(envoy);
      await envoy.waitForStat('control_plane.connected_state', (v) => v === 1);
      await waitFor(() => calls.length >= 1, { what: `Envoy's first ${method} request` });
      expect(calls.every((c) => c.path.endsWith(`/${method}`))).toBe(true);
      // The first message carries the node (with Envoy's whole extension list): never empty.
      expect(calls[0]?.bytes).toBeGreaterThan(1000);
    } finally {
      server.forceShutdown();
    }
  });

  it('fails loudly, quoting Envoy log, when the bootstrap is rejected', async () => {
    const adminPort = await freePort();
    const bootstrap = staticBootstrap(adminPort, await freePort(), await freePort());
    (asObject(bootstrap['static_resources'])['clusters'] as JsonObject[])[0]!['type'] = 'NOT_A_TYPE';
    await expect(startEnvoy({ bootstrap, adminPort, id: 'harness-broken' })).rejects.toThrow(
      /Envoy harness-broken failed to start: .*exited during startup \(code 1[\s\S]*NOT_A_TYPE/,
    );
  });

  it('names the missing binary and how to install it', async () => {
    process.env['ENVOY_BIN'] = '/nonexistent/envoy';
    await expect(startEnvoy({ bootstrap: {}, adminPort: 0 })).rejects.toThrow(
      'Envoy binary not found at /nonexistent/envoy: run scripts/ensure-envoy.sh (make envoy)',
    );
  });
});
