import { afterAll, describe, expect, it } from 'vitest';
import type { JsonObject } from '../../src/envoy/resources.js';
import { withGatewayAddresses } from '../../src/infrastructure/addresses.js';
import {
  bootstrapFiles,
  dataPlaneName,
  dataPlaneObjects,
  parseDataPlaneSettings,
  serviceAddresses,
  type DataPlaneSettings,
} from '../../src/infrastructure/data-plane-objects.js';
import type { GatewayIR } from '../../src/ir/model.js';
import type { GatewayStatus } from '../../src/translate/status.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { kubeletPort } from '../support/kubelet-ports.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const settings = (extra: Record<string, unknown> = {}): DataPlaneSettings =>
  parseDataPlaneSettings({
    namespace: 'switchyard-system',
    xds: { host: 'switchyard.switchyard-system.svc', port: 18000, tlsSecretPrefix: 'switchyard-xds' },
    envoy: { image: 'envoyproxy/envoy:v1.40.0' },
    aiExtension: { image: 'ghcr.io/switchyard-dev/switchyard:0.1.0', port: 18001, metricsPort: 9091 },
    ...extra,
  }, 'test');

const gateway = (extra: Partial<GatewayIR> = {}): GatewayIR => ({
  namespace: 'team-a',
  name: 'edge',
  className: 'switchyard',
  addresses: [],
  infrastructure: { labels: { team: 'a' }, annotations: { 'cost-center': '42' } },
  ...extra,
});

function at(value: unknown, ...path: (string | number)[]): unknown {
  let v = value;
  for (const key of path) v = (v as Record<string | number, unknown> | undefined)?.[key];
  return v;
}

describe('data plane names', () => {
  it('are DNS-1035 labels of at most 63 characters, apart even when truncation makes the prefixes equal', () => {
    const long = 'x'.repeat(80);
    const a = dataPlaneName({ namespace: 'team-a', name: `${long}-1` });
    const b = dataPlaneName({ namespace: 'team-a', name: `${long}-2` });
    for (const n of [a, b, dataPlaneName({ namespace: 'ns', name: 'gw.with.dots' })]) {
      expect(n.length).toBeLessThanOrEqual(63);
      expect(n).toMatch(/^[a-z]([-a-z0-9]*[a-z0-9])?$/);
    }
    expect(a).not.toBe(b);
    expect(dataPlaneName({ namespace: 'a-b', name: 'c' })).not.toBe(dataPlaneName({ namespace: 'a', name: 'b-c' }));
  });
});

describe('dataPlaneObjects', () => {
  it('gives every Gateway\'s AI extension the shared limit store, so a member limit holds across the data planes\' pods', () => {
    const shared = settings({ aiExtension: { image: 'i', port: 18001, metricsPort: 9091, limitsRedis: 'redis://redis.switchyard-system:6379' } });
    for (const g of [gateway(), gateway({ namespace: 'team-b', name: 'other' })]) {
      const containers = at(dataPlaneObjects(g, [80], shared).deployment, 'spec', 'template', 'spec', 'containers') as JsonObject[];
      const ai = containers.find((c) => c['name'] === 'ai-extension');
      expect(at(ai, 'args')).toContain('--limits-redis=redis://redis.switchyard-system:6379');
      expect((at(containers.find((c) => c['name'] === 'envoy'), 'args') as string[]).join(' ')).not.toContain('redis');
    }
    expect(() => settings({ aiExtension: { image: 'i', port: 18001, metricsPort: 9091, limitsRedis: 'http://redis:6379' } }))
      .toThrow(/test: invalid data plane settings: aiExtension\.limitsRedis: redis:\/\/HOST:PORT/);
  });


  it('puts spec.infrastructure labels and annotations on every object and on the pods', () => {
    const o = dataPlaneObjects(gateway(), [80], settings());
    for (const obj of [o.serviceAccount, o.configMap, o.deployment, o.service]) {
      expect(at(obj, 'metadata', 'namespace')).toBe('switchyard-system');
      expect(at(obj, 'metadata', 'labels', 'team')).toBe('a');
      expect(at(obj, 'metadata', 'annotations', 'cost-center')).toBe('42');
      expect(at(obj, 'metadata', 'annotations', 'switchyard.dev/gateway')).toBe('team-a/edge');
    }
    expect(at(o.deployment, 'spec', 'template', 'metadata', 'labels', 'team')).toBe('a');
    expect(at(o.deployment, 'spec', 'template', 'metadata', 'labels', 'gateway.networking.k8s.io/gateway-name')).toBe('edge');
  });

  it('bootstraps Envoy with the Gateway in its node metadata, against the controller, over mTLS', () => {
    const o = dataPlaneObjects(gateway(), [80], settings());
    const files = at(o.configMap, 'data') as Record<string, string>;
    const boot = JSON.parse(files['envoy.json'] ?? '{}') as JsonObject;
    expect(at(boot, 'node', 'metadata')).toEqual({ 'switchyard.dev/gateway': 'team-a/edge', 'switchyard.dev/attempt-facts': '1' });
    expect(at(boot, 'static_resources', 'clusters', 0, 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address'))
      .toEqual({ address: 'switchyard.switchyard-system.svc', port_value: 18000 });
    expect(Object.keys(files).sort()).toEqual(['envoy.json', 'xds-ca.json', 'xds-client-certificate.json']);
    const volumes = at(o.deployment, 'spec', 'template', 'spec', 'volumes');
    expect(volumes).toContainEqual({ name: 'xds-tls', secret: { secretName: 'switchyard-xds-envoy' } });
    expect(volumes).toContainEqual({ name: 'xds-tls-ai-extension', secret: { secretName: 'switchyard-xds-ai-extension' } });
  });

  it('runs the AI extension beside Envoy on loopback, and Envoy\'s readiness probe reads admin /ready on its own port', () => {
    const o = dataPlaneObjects(gateway(), [80, 443, 80], settings());
    const containers = at(o.deployment, 'spec', 'template', 'spec', 'containers') as JsonObject[];
    expect(containers.map((c) => c['name'])).toEqual(['envoy', 'ai-extension']);
    expect(at(containers[1], 'args')).toContain('--host=127.0.0.1');
    // It warms this Envoy's AI members through its admin API (the controller reaches no Envoy).
    expect(at(containers[1], 'args')).toContain('--warmup-envoy-admin=http://127.0.0.1:19000');
    expect((at(containers[1], 'args') as string[]).join(' ')).not.toContain('--otlp-endpoint');
    const traced = dataPlaneObjects(gateway(), [80], settings({ aiExtension: { image: 'i', port: 18001, metricsPort: 9091, otlpEndpoint: 'http://collector:4317' } }));
    expect(at((at(traced.deployment, 'spec', 'template', 'spec', 'containers') as JsonObject[])[1], 'args')).toContain('--otlp-endpoint=http://collector:4317');
    expect(at(containers[0], 'readinessProbe')).toEqual({ httpGet: { path: '/ready', port: 'ready' }, periodSeconds: 5 });
    expect(at(containers[0], 'ports')).toEqual([
      { name: 'listener-80', containerPort: 80, protocol: 'TCP' },
      { name: 'listener-443', containerPort: 443, protocol: 'TCP' },
      { name: 'ready', containerPort: 19001, protocol: 'TCP' },
    ]);
    expect(at(o.service, 'spec', 'ports')).toEqual([
      { name: 'listener-80', port: 80, targetPort: 80, protocol: 'TCP' },
      { name: 'listener-443', port: 443, targetPort: 443, protocol: 'TCP' },
    ]);
    expect((at(containers[1], 'args') as string[]).join(' ')).not.toContain('--limits-redis');
    const without = dataPlaneObjects(gateway(), [80], settings({ aiExtension: undefined, xds: { host: 'x', port: 1 } }));
    expect((at(without.deployment, 'spec', 'template', 'spec', 'containers') as JsonObject[]).map((c) => c['name'])).toEqual(['envoy']);
    expect(at(without.deployment, 'spec', 'template', 'spec', 'volumes')).toEqual([{ name: 'bootstrap', configMap: { name: dataPlaneName(gateway()) } }]);
  });

  it('drains Envoy before the pod stops: the extension\'s preStop runs envoy-drain, Envoy\'s waits on /envoy/drained, the grace period covers both', () => {
    const spec = (o: ReturnType<typeof dataPlaneObjects>): JsonObject => at(o.deployment, 'spec', 'template', 'spec') as JsonObject;
    const byName = (o: ReturnType<typeof dataPlaneObjects>, name: string): JsonObject | undefined => (spec(o)['containers'] as JsonObject[]).find((c) => c['name'] === name);
    const o = dataPlaneObjects(gateway(), [80], settings());
    // Defaults: 5 s of accepting while the Service lets go, 60 s for requests in flight, 15 s margin.
    expect(spec(o)['terminationGracePeriodSeconds']).toBe(80);
    expect(at(byName(o, 'envoy'), 'args')).toEqual(expect.arrayContaining(['--drain-strategy', 'immediate']));
    // The extension's metrics port by number: kubelet looks a name up in Envoy's own ports only.
    expect(at(byName(o, 'envoy'), 'lifecycle')).toEqual({ preStop: { httpGet: { path: '/envoy/drained', port: 9091 } } });
    expect(at(byName(o, 'ai-extension'), 'lifecycle', 'preStop', 'exec', 'command')).toEqual([
      '/usr/local/bin/node', '/app/bin/switchyard.js', 'envoy-drain', '--admin', 'http://127.0.0.1:19000', '--accept-time', '5s', '--drain-time', '60s',
    ]);
    expect(at(byName(o, 'ai-extension'), 'args')).toEqual(expect.arrayContaining(['--drain-envoy-admin=http://127.0.0.1:19000', '--drain-wait=70s']));
    // The port Envoy's preStop calls, resolved as kubelet does, is the extension's metrics port.
    expect(kubeletPort(byName(o, 'envoy') ?? {}, at(byName(o, 'envoy'), 'lifecycle', 'preStop', 'httpGet', 'port'))).toBe(9091);
    expect(at(byName(o, 'ai-extension'), 'args')).toContain('--metrics-port=9091');
    // With the extension there, no drain container.
    expect(byName(o, 'drain')).toBeUndefined();

    const long = dataPlaneObjects(gateway(), [80], settings({ envoy: { image: 'e', adminPort: 19100, drainAcceptSeconds: 10, drainTimeoutSeconds: 600 } }));
    expect(spec(long)['terminationGracePeriodSeconds']).toBe(625);
    expect(at(byName(long, 'ai-extension'), 'lifecycle', 'preStop', 'exec', 'command')).toEqual([
      '/usr/local/bin/node', '/app/bin/switchyard.js', 'envoy-drain', '--admin', 'http://127.0.0.1:19100', '--accept-time', '10s', '--drain-time', '600s',
    ]);
    expect(() => settings({ envoy: { image: 'e', drainTimeoutSeconds: -1 } })).toThrow(/envoy\.drainTimeoutSeconds/);
  });

  it('drains an Envoy without the AI extension too: a drain container (no Secret, no key) runs envoy-drain in its preStop, Envoy waits on its /envoy/drained', () => {
    const spec = (o: ReturnType<typeof dataPlaneObjects>): JsonObject => at(o.deployment, 'spec', 'template', 'spec') as JsonObject;
    const byName = (o: ReturnType<typeof dataPlaneObjects>, name: string): JsonObject | undefined => (spec(o)['containers'] as JsonObject[]).find((c) => c['name'] === name);
    const drainSidecar = { image: 'ghcr.io/switchyard-dev/switchyard:0.1.0', resources: { requests: { cpu: '10m', memory: '64Mi' } } };
    const o = dataPlaneObjects(gateway(), [80], settings({ aiExtension: undefined, drainSidecar, securityContext: { readOnlyRootFilesystem: true } }));
    expect((spec(o)['containers'] as JsonObject[]).map((c) => c['name'])).toEqual(['envoy', 'drain']);
    expect(spec(o)['terminationGracePeriodSeconds']).toBe(80);
    const envoy = byName(o, 'envoy') ?? {};
    const drain = byName(o, 'drain') ?? {};
    expect(at(envoy, 'args')).toEqual(expect.arrayContaining(['--drain-strategy', 'immediate']));
    expect(at(envoy, 'lifecycle')).toEqual({ preStop: { httpGet: { path: '/envoy/drained', port: 19002 } } });
    expect(drain).toEqual({
      name: 'drain',
      image: 'ghcr.io/switchyard-dev/switchyard:0.1.0',
      args: ['drain-sidecar', '--admin=http://127.0.0.1:19000', '--port=19002', '--drain-wait=70s'],
      lifecycle: { preStop: { exec: { command: ['/usr/local/bin/node', '/app/bin/switchyard.js', 'envoy-drain', '--admin', 'http://127.0.0.1:19000', '--accept-time', '5s', '--drain-time', '60s'] } } },
      ports: [{ name: 'drain', containerPort: 19002, protocol: 'TCP' }],
      readinessProbe: { httpGet: { path: '/readyz', port: 'drain' }, periodSeconds: 5 },
      resources: { requests: { cpu: '10m', memory: '64Mi' } },
      securityContext: { readOnlyRootFilesystem: true },
    });
    // kubelet finds both ports it calls: Envoy's hook reaches the drain container's server.
    expect(kubeletPort(envoy, at(envoy, 'lifecycle', 'preStop', 'httpGet', 'port'))).toBe(19002);
    expect(kubeletPort(drain, at(drain, 'readinessProbe', 'httpGet', 'port'))).toBe(19002);
    // Only the envoy certificate is mounted, by Envoy: the drain container gets no Secret.
    expect(at(spec(o), 'volumes')).toEqual([{ name: 'bootstrap', configMap: { name: dataPlaneName(gateway()) } }, { name: 'xds-tls', secret: { secretName: 'switchyard-xds-envoy' } }]);

    const long = dataPlaneObjects(gateway(), [80], settings({ aiExtension: undefined, drainSidecar: { image: 'i', port: 19300 }, envoy: { image: 'e', adminPort: 19100, drainAcceptSeconds: 10, drainTimeoutSeconds: 600 } }));
    expect(spec(long)['terminationGracePeriodSeconds']).toBe(625);
    expect(at(byName(long, 'drain'), 'args')).toEqual(['drain-sidecar', '--admin=http://127.0.0.1:19100', '--port=19300', '--drain-wait=615s']);
    expect(at(byName(long, 'drain'), 'lifecycle', 'preStop', 'exec', 'command')).toEqual([
      '/usr/local/bin/node', '/app/bin/switchyard.js', 'envoy-drain', '--admin', 'http://127.0.0.1:19100', '--accept-time', '10s', '--drain-time', '600s',
    ]);
    expect(at(byName(long, 'envoy'), 'lifecycle', 'preStop', 'httpGet', 'port')).toBe(19300);

    // Turned off (no drainSidecar): Envoy alone, no hook to wait on what is not there.
    const off = dataPlaneObjects(gateway(), [80], settings({ aiExtension: undefined }));
    expect((spec(off)['containers'] as JsonObject[]).map((c) => c['name'])).toEqual(['envoy']);
    expect(at(byName(off, 'envoy'), 'lifecycle')).toBeUndefined();
    // The containers share the pod's ports.
    expect(() => settings({ aiExtension: undefined, drainSidecar: { image: 'i', port: 19001 } }))
      .toThrow(/test: invalid data plane settings: drainSidecar\.port: 19001 is also envoy\.readyPort/);
    expect(() => settings({ aiExtension: { image: 'i', port: 18001, metricsPort: 19000 } })).toThrow(/aiExtension\.metricsPort: 19000 is also envoy\.adminPort/);
    // A Gateway listener on a port a container of the pod takes is named, with the fix.
    expect(dataPlaneObjects(gateway(), [80, 19002], settings({ aiExtension: undefined, drainSidecar })).problems)
      .toEqual(['Gateway team-a/edge: a listener\'s port 19002 is taken in its data plane pod by drainSidecar.port (the controller\'s data plane settings); give the listener (spec.listeners[].port) another port, or move drainSidecar.port']);
    expect(dataPlaneObjects(gateway(), [80, 19002], settings()).problems).toEqual([]);
  });

  it('makes a LoadBalancer Service by default, the type the annotation names otherwise, and says what is wrong with a bad one', () => {
    expect(at(dataPlaneObjects(gateway(), [80], settings()).service, 'spec', 'type')).toBe('LoadBalancer');
    const ip = gateway({ infrastructure: { labels: {}, annotations: { 'switchyard.dev/service-type': 'ClusterIP' } } });
    expect(at(dataPlaneObjects(ip, [80], settings()).service, 'spec', 'type')).toBe('ClusterIP');
    const bad = dataPlaneObjects(gateway({ infrastructure: { labels: {}, annotations: { 'switchyard.dev/service-type': 'Ingress' } } }), [80], settings());
    expect(at(bad.service, 'spec', 'type')).toBe('LoadBalancer');
    expect(bad.problems).toEqual([
      'Gateway team-a/edge: spec.infrastructure.annotations["switchyard.dev/service-type"] is "Ingress"; use one of ClusterIP, NodePort, LoadBalancer; using LoadBalancer',
    ]);
  });

  it('honours spec.addresses as the Service type allows', () => {
    const addresses = [{ type: 'IPAddress', value: '10.96.0.50' }, { type: 'Hostname', value: 'edge.example' }];
    const typed = (t: string): GatewayIR => gateway({ addresses, infrastructure: { labels: {}, annotations: { 'switchyard.dev/service-type': t } } });
    const lb = dataPlaneObjects(typed('LoadBalancer'), [80], settings());
    expect(at(lb.service, 'spec', 'loadBalancerIP')).toBe('10.96.0.50');
    expect(lb.problems.join('\n')).toContain('spec.addresses[1] has type Hostname');
    expect(at(dataPlaneObjects(typed('ClusterIP'), [80], settings()).service, 'spec', 'clusterIP')).toBe('10.96.0.50');
    expect(at(dataPlaneObjects(typed('NodePort'), [80], settings()).service, 'spec', 'externalIPs')).toEqual(['10.96.0.50']);
  });

  it('says that spec.infrastructure.parametersRef is not read, and what to use instead', () => {
    const g = gateway({ infrastructure: { labels: {}, annotations: {}, parametersRef: { group: '', kind: 'ConfigMap', name: 'edge-params' } } });
    expect(dataPlaneObjects(g, [80], settings()).problems).toEqual([
      'Gateway team-a/edge: spec.infrastructure.parametersRef (ConfigMap edge-params) is not read by Switchyard\'s Kubernetes data plane; set the Service type with spec.infrastructure.annotations["switchyard.dev/service-type"] and remove parametersRef',
    ]);
  });

  it('has no Service while the Gateway serves no listener (a Service needs a port)', () => {
    expect(dataPlaneObjects(gateway(), [], settings()).service).toBeUndefined();
  });

  it('refuses settings with a typo, naming the field', () => {
    expect(() => settings({ envoy: { image: 'e', replica: 2 } })).toThrow(/test: invalid data plane settings: envoy: .*replica/);
  });
});

describe('Gateway addresses', () => {
  it('come from the load balancer ingress, else the cluster IP', () => {
    expect(serviceAddresses({ spec: { clusterIP: '10.0.0.7' }, status: { loadBalancer: { ingress: [{ ip: '192.0.2.9' }, { hostname: 'lb.example' }] } } }))
      .toEqual([{ type: 'IPAddress', value: '192.0.2.9' }, { type: 'Hostname', value: 'lb.example' }]);
    expect(serviceAddresses({ spec: { clusterIP: '10.0.0.7' }, status: { loadBalancer: {} } })).toEqual([{ type: 'IPAddress', value: '10.0.0.7' }]);
    expect(serviceAddresses({ spec: { clusterIP: 'None' } })).toEqual([]);
  });

  it('keep a Gateway not Programmed (AddressNotAssigned) until it has one', () => {
    const status: GatewayStatus = {
      kind: 'Gateway', namespace: 'team-a', name: 'edge', listeners: [],
      conditions: [
        { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok' },
        { type: 'Programmed', status: 'True', reason: 'Programmed', message: 'acknowledged by 1 Envoy', observedGeneration: 3 },
      ],
    };
    const [none] = withGatewayAddresses([status], new Map(), 'switchyard-system') as GatewayStatus[];
    expect(none?.conditions[1]).toMatchObject({ type: 'Programmed', status: 'False', reason: 'AddressNotAssigned', observedGeneration: 3 });
    expect(none?.conditions[1]?.message).toContain(`switchyard-system/${dataPlaneName(status)}`);
    expect(none?.addresses).toEqual([]);
    const [some] = withGatewayAddresses([status], new Map([['team-a/edge', [{ type: 'IPAddress' as const, value: '10.0.0.7' }]]]), 'switchyard-system') as GatewayStatus[];
    expect(some?.conditions[1]?.status).toBe('True');
    expect(some?.addresses).toEqual([{ type: 'IPAddress', value: '10.0.0.7' }]);
  });
});

describe('the data plane bootstrap with the real Envoy', () => {
  let envoy: EnvoyProcess | undefined;
  let server: XdsServer | undefined;
  afterAll(async () => {
    await envoy?.stop();
    await server?.stop();
  });

  it('fails the readiness probe until xDS arrived, then answers admin /ready, and exposes nothing else of the admin API', async () => {
    const [xdsPort, adminPort, readyPort] = [await freePort(), await freePort(), await freePort()];
    const s = settings({ xds: { host: '127.0.0.1', port: xdsPort }, envoy: { image: 'e', adminPort, readyPort }, aiExtension: undefined });
    const bootstrap = JSON.parse(bootstrapFiles(gateway(), s)['envoy.json'] ?? '{}') as JsonObject;
    envoy = await startEnvoy({ bootstrap, adminPort, id: 'data-plane-readiness' });
    const ready = async (): Promise<number> => (await fetch(`http://127.0.0.1:${readyPort}/ready`)).status;
    // Envoy opens even static listeners only once initialized (its first CDS and LDS answers).
    expect(await envoy.admin('/ready').catch((err: unknown) => String(err))).toMatch(/503|PRE_INITIALIZING|INITIALIZING/);
    await expect(ready()).rejects.toThrow();

    const cache = new SnapshotCache();
    cache.setResources({ listeners: [], routes: [], clusters: [], endpoints: [], secrets: [] });
    server = new XdsServer({ cache });
    await server.start({ port: xdsPort, host: '127.0.0.1' });
    await waitFor(async () => (await ready().catch(() => 0)) === 200, { what: 'Envoy to become ready once its first xDS answer arrived', timeoutMs: 30_000 });
    expect((await fetch(`http://127.0.0.1:${readyPort}/config_dump`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${readyPort}/ready`, { method: 'POST' })).status).toBe(404);
    const dump = await envoy.configDump();
    expect(JSON.stringify(dump)).toContain('"switchyard.dev/gateway":"team-a/edge"');
  });
});
