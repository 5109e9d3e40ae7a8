import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { controller, type RunningController } from '../../src/app/controller.js';
import { dataPlaneName, parseDataPlaneSettings } from '../../src/infrastructure/data-plane-objects.js';
import { createLogger } from '../../src/observability/logger.js';
import { isNotFound, type KubeClient, type RawObject } from '../../src/providers/kubernetes/api-client.js';
import { createObject, createTestNamespace, deleteObject, patchObject, randomSuffix, testClient, type TestNamespace } from '../support/kube-cluster.js';
import { startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { kubeletPort } from '../support/kubelet-ports.js';
import { freePort, LOOPBACK_SERVE_PORTS } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

/**
 * The Kubernetes infrastructure provider against the real API server: `switchyard controller`
 * in-process, leader of its Lease, creating a data plane per Gateway in its own namespace. No
 * kubelet runs, so the pods never start: the objects are what is tested.
 */

const SUFFIX = randomSuffix();
const CLASS = `switchyard-infra-${SUFFIX}`;
const GATEWAY = 'edge';

let client: KubeClient;
let gwNs: TestNamespace;
let cpNs: TestNamespace;
let ctl: RunningController;
let follower: RunningController;
let followerNs: TestNamespace;
const logLines: string[] = [];
let envoy: EnvoyProcess | undefined;
/** Listener ports, the leader's xDS port, and the admin and readiness ports of the Envoy run here. */
const port = { p1: 0, p2: 0, xds: 0, admin: 0, ready: 0 };

type Json = Record<string, unknown>;
const rec = (v: unknown): Json => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : {});
function at(value: unknown, ...path: (string | number)[]): unknown {
  let v = value;
  for (const key of path) v = (Array.isArray(v) && typeof key === 'number' ? v[key] : rec(v)[String(key)]);
  return v;
}

const gateway = (listeners: { name: string; port: number }[]): RawObject => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  metadata: { name: GATEWAY, namespace: gwNs.name },
  spec: {
    gatewayClassName: CLASS,
    infrastructure: { labels: { team: 'payments' }, annotations: { 'example.com/owner': 'alice' } },
    listeners: listeners.map((l) => ({ ...l, protocol: 'HTTP' })),
  },
});

const dpName = (): string => dataPlaneName({ namespace: gwNs.name, name: GATEWAY });
const paths = (): Record<string, string> => ({
  ServiceAccount: `/api/v1/namespaces/${cpNs.name}/serviceaccounts/${dpName()}`,
  ConfigMap: `/api/v1/namespaces/${cpNs.name}/configmaps/${dpName()}`,
  Service: `/api/v1/namespaces/${cpNs.name}/services/${dpName()}`,
  Deployment: `/apis/apps/v1/namespaces/${cpNs.name}/deployments/${dpName()}`,
});

async function get(path: string): Promise<Json | undefined> {
  try {
    return rec(await client.request({ path }));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

async function gatewayStatus(): Promise<Json> {
  return rec(at(await get(`/apis/gateway.networking.k8s.io/v1/namespaces/${gwNs.name}/gateways/${GATEWAY}`), 'status'));
}

beforeAll(async () => {
  client = testClient();
  for (const k of Object.keys(port) as (keyof typeof port)[]) port[k] = await freePort();
  gwNs = await createTestNamespace(client, 'infra-gw');
  cpNs = await createTestNamespace(client, 'infra-cp');
  followerNs = await createTestNamespace(client, 'infra-follower');
  await createObject(client, { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: CLASS }, spec: { controllerName: 'switchyard.dev/gateway-controller' } });
  const logger = createLogger({ level: 'info', name: 'infra' }, { write: (line: string) => void logLines.push(line) });
  const start = (identity: string, dataPlaneNamespace: string): Promise<RunningController> => controller({
    kubeconfig: inject('kubeconfig'),
    namespaces: [gwNs.name],
    xdsPort: identity === 'infra-test' ? port.xds : 0,
    xdsHost: '127.0.0.1',
    metricsPort: 0,
    metricsHost: '127.0.0.1',
    envoy: { listenerAddress: '127.0.0.1' },
    logger: identity === 'infra-test' ? logger : createLogger({ level: 'warn', name: identity }, { write: () => undefined }),
    leaderElection: { namespace: cpNs.name, identity, leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 500 },
    dataPlane: parseDataPlaneSettings({
      namespace: dataPlaneNamespace,
      // Plaintext to this in-process controller, so the test can run the bootstrap with a real Envoy
      // (the certificate Secrets and their mounts are in test/unit/infrastructure-objects.test.ts).
      xds: { host: '127.0.0.1', port: port.xds },
      envoy: { image: 'envoyproxy/envoy:v1.40.0', adminPort: port.admin, readyPort: port.ready },
      aiExtension: { image: 'ghcr.io/switchyard-dev/switchyard:test', port: 18001, metricsPort: 9091, limitsRedis: 'redis://redis.limits.svc:6379' },
    }, 'test'),
  });
  ctl = await start('infra-test', cpNs.name);
  await waitFor(() => ctl.isLeader(), { what: 'the controller to lead', timeoutMs: 15_000 });
  // A second replica of the same Lease, told to put data planes elsewhere: it must create none.
  follower = await start('infra-follower', followerNs.name);
}, 60_000);

afterAll(async () => {
  await envoy?.stop();
  await follower?.stop();
  await ctl?.stop();
  await deleteObject(client, { kind: 'GatewayClass', metadata: { name: CLASS } });
  await gwNs?.remove();
  await cpNs?.remove();
  await followerNs?.remove();
  client?.close();
});

describe('a data plane per Gateway', () => {
  it('creates the ServiceAccount, bootstrap ConfigMap, Deployment and Service with spec.infrastructure labels and annotations', async () => {
    await createObject(client, gateway([{ name: 'http', port: port.p1 }]));
    const objects = await waitFor(async () => {
      const all = await Promise.all(Object.entries(paths()).map(async ([kind, path]) => [kind, await get(path)] as const));
      return all.every(([, o]) => o !== undefined) ? Object.fromEntries(all) : undefined;
    }, { what: 'the four data plane objects', timeoutMs: 20_000 });
    for (const [kind, o] of Object.entries(objects)) {
      expect(at(o, 'metadata', 'labels', 'team'), kind).toBe('payments');
      expect(at(o, 'metadata', 'annotations', 'example.com/owner'), kind).toBe('alice');
      expect(at(o, 'metadata', 'annotations', 'switchyard.dev/gateway'), kind).toBe(`${gwNs.name}/${GATEWAY}`);
    }
    const bootstrap = JSON.parse(String(at(objects['ConfigMap'], 'data', 'envoy.json'))) as Json;
    expect(at(bootstrap, 'node', 'metadata')).toEqual({ 'switchyard.dev/gateway': `${gwNs.name}/${GATEWAY}`, 'switchyard.dev/attempt-facts': '1' });
    const pod = at(objects['Deployment'], 'spec', 'template', 'spec');
    expect(at(pod, 'serviceAccountName')).toBe(dpName());
    expect((at(pod, 'containers') as Json[]).map((c) => c['name'])).toEqual(['envoy', 'ai-extension']);
    // Member limits count across every data plane's pods only if each extension reaches the same store.
    expect(at((at(pod, 'containers') as Json[])[1], 'args')).toContain('--limits-redis=redis://redis.limits.svc:6379');
    expect(at(pod, 'volumes')).toContainEqual({ name: 'bootstrap', configMap: { name: dpName(), defaultMode: 420 } });
    // The drain before SIGTERM, as the API server keeps it (kubelet reads these): Envoy waits on
    // the extension's /envoy/drained while the extension's preStop drains it; the grace period covers both.
    expect(at(pod, 'terminationGracePeriodSeconds')).toBe(80);
    const hook = at((at(pod, 'containers') as Json[])[0], 'lifecycle', 'preStop', 'httpGet');
    expect(hook).toMatchObject({ path: '/envoy/drained' });
    // kubelet resolves the hook's port in Envoy's own container: it must be the extension's metrics port by number.
    expect(kubeletPort((at(pod, 'containers') as Json[])[0] ?? {}, at(hook, 'port'))).toBe(9091);
    expect(at((at(pod, 'containers') as Json[])[1], 'lifecycle', 'preStop', 'exec', 'command')).toEqual(['/usr/local/bin/node', '/app/bin/switchyard.js', 'envoy-drain', '--admin', `http://127.0.0.1:${port.admin}`, '--accept-time', '5s', '--drain-time', '60s']);
    expect(at(objects['Service'], 'spec', 'type')).toBe('LoadBalancer');
    expect((at(objects['Service'], 'spec', 'ports') as Json[]).map((p) => p['port'])).toEqual([port.p1]);
  });

  it('is the leader\'s work only: a replica that does not hold the Lease creates nothing', async () => {
    await waitFor(() => follower.statuses().some((st) => st.kind === 'Gateway' && st.name === GATEWAY && st.namespace === gwNs.name), { what: 'the follower to have translated the Gateway' });
    expect(follower.isLeader()).toBe(false);
    await follower.infrastructure?.idle();
    for (const kind of ['deployments', 'services', 'serviceaccounts', 'configmaps']) {
      const group = kind === 'deployments' ? '/apis/apps/v1' : '/api/v1';
      const list = await client.request({ path: `${group}/namespaces/${followerNs.name}/${kind}`, query: { labelSelector: 'app.kubernetes.io/managed-by=switchyard' } });
      expect(at(list, 'items'), kind).toEqual([]);
    }
  });

  it('puts back a Service deleted by hand', async () => {
    const before = String(at(await get(paths()['Service'] ?? ''), 'metadata', 'uid'));
    await client.request({ method: 'DELETE', path: paths()['Service'] ?? '' });
    await waitFor(async () => {
      const uid = at(await get(paths()['Service'] ?? ''), 'metadata', 'uid');
      return typeof uid === 'string' && uid !== before;
    }, { what: 'the Service to be created again', timeoutMs: 15_000 });
  });

  it('writes the Service\'s cluster IP to Gateway status.addresses, then its load balancer IP once it has one', async () => {
    const clusterIP = String(at(await get(paths()['Service'] ?? ''), 'spec', 'clusterIP'));
    expect(clusterIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    await waitFor(async () => JSON.stringify(at(await gatewayStatus(), 'addresses')) === JSON.stringify([{ type: 'IPAddress', value: clusterIP }]), { what: 'status.addresses = the cluster IP', timeoutMs: 15_000 });
    // It has an address; what it waits for now is an Envoy (no kubelet runs the pods here).
    const programmed = (at(await gatewayStatus(), 'conditions') as Json[]).find((c) => c['type'] === 'Programmed');
    expect(programmed).toMatchObject({ status: 'False', reason: 'Pending' });
    // No cloud controller here: the load balancer is what a user (or a test) writes to the Service status.
    await client.request({
      method: 'PATCH',
      path: `${paths()['Service'] ?? ''}/status`,
      body: { status: { loadBalancer: { ingress: [{ ip: '192.0.2.10' }] } } },
      contentType: 'application/merge-patch+json',
    });
    await waitFor(async () => JSON.stringify(at(await gatewayStatus(), 'addresses')) === JSON.stringify([{ type: 'IPAddress', value: '192.0.2.10' }]), { what: 'status.addresses = the load balancer IP', timeoutMs: 15_000 });
  });

  it('follows listener edits in the Service ports, keeping what a user added to the Service', async () => {
    await client.request({ method: 'PATCH', path: paths()['Service'] ?? '', body: { metadata: { annotations: { 'user.example/note': 'keep me' } } }, contentType: 'application/merge-patch+json' });
    await patchObject(client, gateway([]), { spec: { listeners: [{ name: 'http', port: port.p1, protocol: 'HTTP' }, { name: 'alt', port: port.p2, protocol: 'HTTP' }] } });
    const service = await waitFor(async () => {
      const s = await get(paths()['Service'] ?? '');
      return JSON.stringify((at(s, 'spec', 'ports') as Json[] | undefined)?.map((p) => p['port'])) === JSON.stringify([port.p1, port.p2].sort((a, b) => a - b)) ? s : undefined;
    }, { what: 'the Service to expose both listener ports', timeoutMs: 15_000 });
    expect(at(service, 'metadata', 'annotations', 'user.example/note')).toBe('keep me');
    const deployment = await get(paths()['Deployment'] ?? '');
    expect((at(deployment, 'spec', 'template', 'spec', 'containers', 0, 'ports') as Json[]).map((p) => p['containerPort'])).toEqual([...[port.p1, port.p2].sort((a, b) => a - b), port.ready]);
  });

  it('bootstraps a real Envoy that gets this Gateway\'s listeners, turns ready, and makes the Gateway Programmed', async (ctx) => {
    ctx.onTestFailed(() => {
      envoy?.printLogs(40);
      process.stderr.write(`controller log (last 30):\n${logLines.slice(-30).join('')}\n`);
    });
    const bootstrap = JSON.parse(String(at(await get(paths()['ConfigMap'] ?? ''), 'data', 'envoy.json'))) as Record<string, never>;
    envoy = await startEnvoy({ bootstrap, adminPort: port.admin, id: 'k8s-data-plane', extraArgs: ['--service-node', 'data-plane-pod-1'] });
    const listeners = await waitFor(async () => {
      const l = await envoy?.listeners();
      return l && l.filter((x) => x.port === port.p1 || x.port === port.p2).length === 2 ? l : undefined;
    }, { what: 'Envoy to get both listeners of the Gateway', timeoutMs: 20_000 });
    expect(listeners.map((l) => l.name).sort()).toEqual(expect.arrayContaining(['switchyard-readiness']));
    // The pod name (--service-node) is its node id; the bootstrap's node metadata chose its Gateway.
    expect(ctl.xds.clients().filter((c) => c.nodeId === 'data-plane-pod-1').map((c) => c.gateway)).toEqual([`${gwNs.name}/${GATEWAY}`]);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port.ready}/ready`).then((r) => r.status, () => 0)) === 200, { what: 'the readiness probe to pass', timeoutMs: 20_000 });
    await waitFor(async () => {
      const c = (at(await gatewayStatus(), 'conditions') as Json[] | undefined)?.find((x) => x['type'] === 'Programmed');
      return c?.['status'] === 'True';
    }, { what: 'the Gateway to be Programmed', timeoutMs: 20_000 });
    expect(at(await gatewayStatus(), 'addresses')).toEqual([{ type: 'IPAddress', value: '192.0.2.10' }]);
  });

  it('deletes every object of the data plane with its Gateway', async () => {
    await deleteObject(client, gateway([]));
    await waitFor(async () => {
      const all = await Promise.all(Object.values(paths()).map((p) => get(p)));
      return all.every((o) => o === undefined);
    }, { what: 'the data plane objects to be deleted', timeoutMs: 20_000 });
    expect(logLines.filter((l) => l.includes('data plane object deleted')).length).toBe(4);
  });
});

describe('a data plane per Gateway without the AI extension', () => {
  let plainGwNs: TestNamespace;
  let plainCpNs: TestNamespace;
  let plain: RunningController | undefined;
  const drainPort = 19102;

  beforeAll(async () => {
    plainGwNs = await createTestNamespace(client, 'infra-plain-gw');
    plainCpNs = await createTestNamespace(client, 'infra-plain-cp');
    plain = await controller({
      kubeconfig: inject('kubeconfig'),
      namespaces: [plainGwNs.name],
      ...LOOPBACK_SERVE_PORTS,
      envoy: { listenerAddress: '127.0.0.1' },
      logger: createLogger({ level: 'warn', name: 'infra-plain' }, { write: () => undefined }),
      leaderElection: { namespace: plainCpNs.name, identity: 'infra-plain', leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 500 },
      // What the chart hands the controller with aiExtension.enabled=false (and xDS over mTLS).
      dataPlane: parseDataPlaneSettings({
        namespace: plainCpNs.name,
        xds: { host: '127.0.0.1', port: port.xds, tlsSecretPrefix: 'sy-xds' },
        envoy: { image: 'envoyproxy/envoy:v1.40.0', adminPort: port.admin, readyPort: port.ready },
        drainSidecar: { image: 'ghcr.io/switchyard-dev/switchyard:test', imagePullPolicy: 'IfNotPresent', port: drainPort, resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '128Mi' } } },
        securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
      }, 'test'),
    });
    const running = plain;
    await waitFor(() => running.isLeader(), { what: 'the second controller to lead its own Lease', timeoutMs: 15_000 });
  }, 60_000);

  afterAll(async () => {
    await plain?.stop();
    await plainGwNs?.remove();
    await plainCpNs?.remove();
  });

  it('drains too: beside Envoy, a drain container (no Secret) runs envoy-drain in its preStop, and Envoy\'s preStop reaches its /envoy/drained as kubelet resolves it', async () => {
    await createObject(client, { ...gateway([{ name: 'http', port: port.p1 }]), metadata: { name: GATEWAY, namespace: plainGwNs.name } });
    const name = dataPlaneName({ namespace: plainGwNs.name, name: GATEWAY });
    const deployment = await waitFor(() => get(`/apis/apps/v1/namespaces/${plainCpNs.name}/deployments/${name}`), { what: 'the data plane Deployment', timeoutMs: 20_000 });
    // As the API server keeps it (defaults filled in): what kubelet would run.
    const pod = at(deployment, 'spec', 'template', 'spec');
    const containers = at(pod, 'containers') as Json[];
    expect(containers.map((c) => c['name'])).toEqual(['envoy', 'drain']);
    const [envoySpec, drainSpec] = containers;
    expect(at(pod, 'terminationGracePeriodSeconds')).toBe(80);
    const hook = at(envoySpec, 'lifecycle', 'preStop', 'httpGet');
    expect(hook).toMatchObject({ path: '/envoy/drained' });
    expect(kubeletPort(envoySpec ?? {}, at(hook, 'port'))).toBe(drainPort);
    expect(at(drainSpec, 'ports')).toEqual([{ name: 'drain', containerPort: drainPort, protocol: 'TCP' }]);
    expect(at(drainSpec, 'args')).toEqual(['drain-sidecar', `--admin=http://127.0.0.1:${port.admin}`, `--port=${drainPort}`, '--drain-wait=70s']);
    expect(at(drainSpec, 'lifecycle', 'preStop', 'exec', 'command')).toEqual(['/usr/local/bin/node', '/app/bin/switchyard.js', 'envoy-drain', '--admin', `http://127.0.0.1:${port.admin}`, '--accept-time', '5s', '--drain-time', '60s']);
    expect(kubeletPort(drainSpec ?? {}, at(drainSpec, 'readinessProbe', 'httpGet', 'port'))).toBe(drainPort);
    expect(at(drainSpec, 'resources')).toEqual({ requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '128Mi' } });
    expect(at(drainSpec, 'securityContext')).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    // It mounts nothing: the pod's one Secret is Envoy's own certificate, and no token is mounted.
    expect(at(drainSpec, 'volumeMounts')).toBeUndefined();
    expect((at(pod, 'volumes') as Json[]).filter((v) => v['secret'] !== undefined).map((v) => at(v, 'secret', 'secretName'))).toEqual(['sy-xds-envoy']);
    expect(at(pod, 'automountServiceAccountToken')).toBe(false);
  });
});
