import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { APIError } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { startFakeProvider, type FakeProvider } from '../../examples/demo/fake-provider.js';
import type { RunningAiExtension } from '../../src/ai-extension/server.js';
import type { RunningController } from '../../src/app/controller.js';
import { buildBootstrap } from '../../src/envoy/bootstrap.js';
import type { JsonObject, JsonValue } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import { startControllerWithExtension } from '../support/controller-replica.js';
import { startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { aiBackend, attempts } from '../support/gateway-fixture.js';
import { createTestNamespace, K8S_SETTLE_MS, randomSuffix, testClient, type TestNamespace } from '../support/kube-cluster.js';
import { kubectlOk } from '../support/kube.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

/**
 * The whole path on a real API server: `switchyard controller` (in-process, watching this test's
 * namespace) serving a real Envoy, with every object applied by the real kubectl. Failover
 * behaves as in file mode; Secrets and EndpointSlices changed with kubectl reach Envoy; a core
 * Service gets its endpoints from an EndpointSlice written by hand (no kube-controller-manager
 * runs next to the test API server); the leader writes status the user reads with kubectl.
 */

const SUFFIX = randomSuffix();
const CLASS = `switchyard-controller-${SUFFIX}`;
const GATEWAY = 'ai-gateway';
const HOSTS = { p0: 'primary.llm.test', p1: 'secondary.llm.test' } as const;

type Manifest = JsonObject;

let ns: TestNamespace;
let dir: string;
let listenerPort: number;
let p0: FakeProvider;
let p1: FakeProvider;
let svc: FakeProvider;
let ctl: RunningController;
let extension: RunningAiExtension;
let envoy: EnvoyProcess;
const logLines: string[] = [];

function inNamespace(m: Manifest): Manifest {
  const meta = m['metadata'];
  return { ...m, metadata: { ...(typeof meta === 'object' && meta !== null && !Array.isArray(meta) ? meta : {}), namespace: ns.name } };
}

function manifests(): Record<string, Manifest[]> {
  return {
    'gateway.yaml': [
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: CLASS }, spec: { controllerName: 'switchyard.dev/gateway-controller' } },
      inNamespace({
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'Gateway',
        metadata: { name: GATEWAY },
        spec: { gatewayClassName: CLASS, listeners: [{ name: 'http', protocol: 'HTTP', port: listenerPort }] },
      }),
    ],
    'secrets.yaml': [secret('p0-key', 'Bearer sk-p0'), secret('p1-key', 'sk-p1')],
    'backend.yaml': [
      inNamespace(
        aiBackend({
          name: 'chat',
          priorities: [
            [{ name: 'primary', fake: p0, hostname: HOSTS.p0, secret: 'p0-key' }],
            [{ name: 'secondary', fake: p1, hostname: HOSTS.p1, secret: 'p1-key' }],
          ],
          outlierDetection: { enabled: false },
        }),
      ),
    ],
    'service.yaml': [
      inNamespace({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'llm-svc' }, spec: { ports: [{ name: 'http', port: 80, targetPort: 8080 }] } }),
      endpointSlice(true),
    ],
    'route.yaml': [
      inNamespace({
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'chat' },
        spec: {
          parentRefs: [{ name: GATEWAY }],
          rules: [
            { matches: [{ path: { type: 'PathPrefix', value: '/v1' } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: 'chat' }] },
            {
              matches: [{ path: { type: 'PathPrefix', value: '/svc/v1' } }],
              filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } } }],
              backendRefs: [{ name: 'llm-svc', port: 80 }],
            },
          ],
        },
      }),
    ],
  };
}

function secret(name: string, authorization: string): Manifest {
  return inNamespace({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: { Authorization: authorization } });
}

/**
 * An address of this machine that an EndpointSlice accepts (the API server refuses loopback and
 * link-local endpoints), standing in for a pod IP.
 */
function podLikeAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    const found = list?.find((a) => a.family === 'IPv4' && !a.internal && !a.address.startsWith('169.254.'));
    if (found) return found.address;
  }
  throw new Error('this test needs a non-loopback IPv4 address on this machine: EndpointSlices refuse loopback endpoints');
}

/** The EndpointSlice kube-controller-manager would write for llm-svc: the fake provider `svc` as its one endpoint. */
function endpointSlice(ready: boolean): Manifest {
  return inNamespace({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'llm-svc-manual', labels: { 'kubernetes.io/service-name': 'llm-svc' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: svc.port, protocol: 'TCP' }],
    endpoints: [{ addresses: [svc.host], conditions: { ready, serving: ready, terminating: false } }],
  });
}

/** `kubectl apply -f FILE`, with the manifests written to FILE first. */
async function apply(file: string, docs: Manifest[]): Promise<void> {
  const path = join(dir, file);
  writeFileSync(path, docs.map((d) => stringify(d)).join('---\n'));
  await kubectlOk(['apply', '-f', path]);
}

function asObject(v: JsonValue | undefined): JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v : {};
}

/** (port, priority) of every host Envoy has in a cluster, sorted by port. */
async function hosts(cluster: string): Promise<[number, number][]> {
  const body = await envoy.clusters();
  const statuses = Array.isArray(body['cluster_statuses']) ? body['cluster_statuses'].map(asObject) : [];
  const c = statuses.find((s) => s['name'] === cluster);
  const list = Array.isArray(c?.['host_statuses']) ? c['host_statuses'].map(asObject) : [];
  return list
    .map((h): [number, number] => {
      const port = asObject(asObject(h['address'])['socket_address'])['port_value'];
      const priority = h['priority'];
      return [typeof port === 'number' ? port : 0, typeof priority === 'number' ? priority : 0];
    })
    .sort(([a], [b]) => a - b);
}

async function waitForHosts(cluster: string, expected: [number, number][], what: string): Promise<void> {
  const want = JSON.stringify([...expected].sort(([a], [b]) => a - b));
  await waitFor(async () => JSON.stringify(await hosts(cluster)) === want, { what: `${what}: Envoy cluster ${cluster} with hosts (port, priority) ${want}`, timeoutMs: 10_000, intervalMs: 20 });
}

function client(prefix: string): OpenAI {
  return new OpenAI({ baseURL: `http://127.0.0.1:${listenerPort}${prefix}`, apiKey: 'sk-client', maxRetries: 0, timeout: 20_000 });
}

async function chat(prefix = '/v1'): Promise<{ content: string; answeredBy: string | null }> {
  const { data, response } = await client(prefix)
    .chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] })
    .withResponse();
  return { content: data.choices[0]?.message.content ?? '', answeredBy: response.headers.get('x-fake-provider') };
}

async function chatFailure(prefix: string): Promise<{ status: number | undefined; message: string }> {
  try {
    const answer = await chat(prefix);
    throw new Error(`expected the request to fail, but ${answer.answeredBy ?? 'someone'} answered`);
  } catch (err) {
    if (!(err instanceof APIError)) throw err;
    return { status: err.status, message: err.message };
  }
}

/** A condition as `kubectl get` shows it on the object's status. */
async function condition(kind: string, name: string, type: string): Promise<{ status?: string; reason?: string; message?: string }> {
  const out = await kubectlOk(['get', kind, name, '-n', ns.name, '-o', 'json']);
  const obj: unknown = JSON.parse(out);
  const conditions = typeof obj === 'object' && obj !== null && 'status' in obj && typeof obj.status === 'object' && obj.status !== null && 'conditions' in obj.status && Array.isArray(obj.status.conditions) ? obj.status.conditions : [];
  const found: unknown = conditions.find((c: unknown) => typeof c === 'object' && c !== null && 'type' in c && c.type === type);
  return typeof found === 'object' && found !== null ? (found as { status?: string; reason?: string; message?: string }) : {};
}

beforeAll(async () => {
  const api = testClient();
  try {
    ns = await createTestNamespace(api, 'controller');
  } finally {
    api.close();
  }
  dir = mkdtempSync(join(tmpdir(), 'switchyard-k8s-controller-'));
  p0 = await startFakeProvider({ name: 'p0' });
  p1 = await startFakeProvider({ name: 'p1' });
  svc = await startFakeProvider({ name: 'svc', host: podLikeAddress() });
  listenerPort = await freePort();
  const logger = createLogger({ level: 'info', name: 'k8s-controller' }, { write: (line: string) => void logLines.push(line) });
  // As in the chart: the AI extension runs next to Envoy and takes credentials from the controller over ADS.
  ({ ctl, extension } = await startControllerWithExtension({ namespaces: [ns.name], identity: `controller-test-${SUFFIX}`, logger }));
  const adminPort = await freePort();
  envoy = await startEnvoy({ bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: ctl.xdsPort }, nodeId: `controller-${SUFFIX}`, adminPort }), adminPort, id: 'k8s-controller' });

  // Everything the gateway serves arrives through kubectl, after Envoy connected to an empty controller.
  for (const [file, docs] of Object.entries(manifests())) await apply(file, docs);
  await envoy.waitForListener(`${ns.name}/${GATEWAY}/${listenerPort}`, 10_000);
  await waitForHosts(`backend/${ns.name}/chat`, [[p0.port, 0], [p1.port, 1]], 'the Backend applied with kubectl');
  // Each file was its own change: the route may reach Envoy after the listener and the clusters.
  await waitFor(async () => (await chat()).answeredBy === 'p0', { what: 'the HTTPRoute applied with kubectl to serve /v1' });
  await waitFor(async () => (await chat('/svc/v1')).answeredBy === 'svc', { what: 'the HTTPRoute applied with kubectl to serve /svc/v1' });
}, 120_000);

afterAll(async () => {
  if (envoy && !envoy.running()) envoy.printLogs(40);
  await envoy?.stop();
  await extension?.stop();
  await ctl?.stop();
  for (const f of [p0, p1, svc]) await f?.close();
  const api = testClient();
  await ns?.remove();
  await kubectlOk(['delete', 'gatewayclass', CLASS, '--ignore-not-found']).catch(() => undefined);
  api.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  for (const f of [p0, p1, svc]) {
    await f.setMode('ok');
    f.clear();
  }
});

describe('failover driven by kubectl', () => {
  it('answers from priority 1 when priority 0 returns 503, trying priority 0 exactly once per request', async () => {
    await p0.setMode({ kind: 'status', status: 503 });
    const retriesBefore = (await envoy.stat(`cluster.backend/${ns.name}/chat.upstream_rq_retry`)) ?? 0;
    const requests = 5;
    for (let i = 0; i < requests; i++) {
      const answer = await chat();
      expect(answer).toMatchObject({ content: 'answered by p1', answeredBy: 'p1' });
    }
    expect(attempts(p0.received())).toEqual(Array<number>(requests).fill(1));
    expect(attempts(p1.received())).toEqual(Array<number>(requests).fill(2));
    expect(p0.received()[0]?.host).toBe(HOSTS.p0);
    expect(p1.received()[0]?.host).toBe(HOSTS.p1);
    // Each attempt carries its own member's key, from the Secrets applied with kubectl (the client's key never leaves).
    expect(p0.received()[0]?.headers['authorization']).toBe('Bearer sk-p0');
    expect(p1.received()[0]?.headers['authorization']).toBe('Bearer sk-p1');
    expect(await envoy.stat(`cluster.backend/${ns.name}/chat.upstream_rq_retry`)).toBe(retriesBefore + requests);
  });

  it('drops the member whose Secret is deleted with kubectl, keeps serving from the other, and takes it back when the Secret returns', async () => {
    await kubectlOk(['delete', 'secret', 'p0-key', '-n', ns.name]);
    // p1 is now the only pool, served at Envoy priority 0.
    await waitForHosts(`backend/${ns.name}/chat`, [[p1.port, 0]], 'p0 removed after its Secret was deleted');
    const answer = await chat();
    expect(answer.answeredBy).toBe('p1');
    expect(attempts(p1.received())).toEqual([1]);
    expect(p0.received()).toHaveLength(0);
    await waitFor(async () => (await condition('backends.switchyard.dev', 'chat', 'ResolvedRefs')).reason === 'SecretNotFound', { what: 'ResolvedRefs=False/SecretNotFound on Backend chat, read with kubectl', timeoutMs: K8S_SETTLE_MS });
    expect(await condition('backends.switchyard.dev', 'chat', 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'SecretNotFound' });

    // What a user reads: the printer columns of `kubectl get` (by short name and by category too)
    // and the per-member state in `kubectl describe`.
    await waitFor(async () => /\bAI\s+True\s+False\s+True\s+1\s+1\b/.test(await kubectlOk(['get', 'backends.switchyard.dev', 'chat', '-n', ns.name])), { what: 'kubectl get backends to show AI True False True 1 1', timeoutMs: K8S_SETTLE_MS });
    const table = await kubectlOk(['get', 'sybe', 'chat', '-n', ns.name]);
    expect(table.split('\n')[0]).toMatch(/^NAME\s+TYPE\s+ACCEPTED\s+RESOLVEDREFS\s+PROGRAMMED\s+PRIORITIES\s+USABLE\s+DEGRADED\s+AGE$/);
    expect(table.split('\n')[1]).toMatch(/^chat\s+AI\s+True\s+False\s+True\s+1\s+1\s+(?:Unknown|False|True)\s+\S+$/);
    expect(await kubectlOk(['get', 'switchyard', '-n', ns.name, '-o', 'name'])).toContain('backend.switchyard.dev/chat');
    const described = await kubectlOk(['describe', 'backends.switchyard.dev', 'chat', '-n', ns.name]);
    expect(described).toContain('SecretNotFound');
    expect(described).toMatch(/Secret \S+\/p0-key not found/);
    expect(described).toMatch(/Usable:\s+false/);

    await apply('secrets.yaml', [secret('p0-key', 'Bearer sk-p0')]);
    await waitForHosts(`backend/${ns.name}/chat`, [[p0.port, 0], [p1.port, 1]], 'p0 back after its Secret was re-created');
    expect((await chat()).answeredBy).toBe('p0');
    await waitFor(async () => (await condition('backends.switchyard.dev', 'chat', 'ResolvedRefs')).status === 'True', { what: 'ResolvedRefs=True on Backend chat again', timeoutMs: K8S_SETTLE_MS });
  });
});

describe('a core Service backendRef', () => {
  const cluster = () => `service/${ns.name}/llm-svc/80`;

  it('sends traffic to the endpoint of an EndpointSlice written by hand, keeping the client Host header', async () => {
    expect(svc.host).not.toBe('127.0.0.1');
    await waitForHosts(cluster(), [[svc.port, 0]], 'the EndpointSlice endpoint');
    const answer = await chat('/svc/v1');
    expect(answer).toMatchObject({ content: 'answered by svc', answeredBy: 'svc' });
    const [received] = svc.received();
    expect(received?.path).toBe('/v1/chat/completions');
    // The client's Host as sent, port included (Gateway API; hostnames match without it), not the
    // endpoint's address.
    expect(received?.host).toBe(`127.0.0.1:${listenerPort}`);
    // No retries for a Service unless the route asks for them.
    expect(attempts(svc.received())).toEqual([1]);
  });

  it('answers 503 while the endpoint is not ready, and serves again once it is', async () => {
    await apply('service.yaml', [endpointSlice(false)]);
    await waitForHosts(cluster(), [], 'no endpoints while not ready');
    const failure = await chatFailure('/svc/v1');
    expect(failure.status).toBe(503);
    expect(failure.message).toMatch(/no healthy upstream/);
    expect(svc.received()).toHaveLength(0);

    await apply('service.yaml', [endpointSlice(true)]);
    await waitForHosts(cluster(), [[svc.port, 0]], 'the endpoint back once ready');
    expect((await chat('/svc/v1')).answeredBy).toBe('svc');
  });
});

describe('status', () => {
  it('is written by the replica holding the Lease and read back with kubectl', async () => {
    await waitFor(() => ctl.isLeader(), { what: 'the controller to hold the Lease', timeoutMs: 10_000 });
    await waitFor(async () => (await condition('backends.switchyard.dev', 'chat', 'Programmed')).status === 'True', { what: 'Programmed=True on Backend chat', timeoutMs: 10_000 });
    expect(await condition('backends.switchyard.dev', 'chat', 'Accepted')).toMatchObject({ status: 'True' });
    expect(await condition('gateway', GATEWAY, 'Programmed')).toMatchObject({ status: 'True' });
    const lease = JSON.parse(await kubectlOk(['get', 'lease', '-n', ns.name, '-o', 'json'])) as { items: { spec?: { holderIdentity?: string } }[] };
    expect(lease.items.map((l) => l.spec?.holderIdentity)).toContain(`controller-test-${SUFFIX}`);
  });
});

describe('the switchyard controller command', () => {
  it('starts against the API server from --kubeconfig, serves, and exits 0 on SIGTERM', async () => {
    // Standby on the Lease ctl holds: without leader election it would write status over ctl's.
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'controller', '--kubeconfig', inject('kubeconfig'), '--namespaces', ns.name, '--xds-port', '0', '--xds-host', '127.0.0.1', '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--lease-namespace', ns.name],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, KUBECONFIG: '/nonexistent/kubeconfig' } },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor(() => stderr.includes('"msg":"switchyard serving"'), { what: `the controller command to serve (stderr so far: ${stderr.slice(-500)})`, timeoutMs: 30_000 });
      const serving = stderr.split('\n').find((l) => l.includes('"msg":"switchyard serving"')) ?? '';
      expect(JSON.parse(serving)).toMatchObject({ kubeconfig: inject('kubeconfig'), namespaces: ns.name });
      // What this namespace holds was translated: the Gateway's listener and (at least) the Backend and the Service port.
      const translated = stderr.split('\n').find((l) => l.includes('"msg":"configuration translated"')) ?? '{}';
      const counts = JSON.parse(translated) as { listeners?: number; clusters?: number };
      expect(counts.listeners, translated).toBe(1);
      expect(counts.clusters, translated).toBeGreaterThanOrEqual(2);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
