import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import OpenAI from 'openai';
import { startFakeProvider, type FakeProvider } from '../../examples/demo/fake-provider.js';
import type { RunningAiExtension } from '../../src/ai-extension/server.js';
import type { RunningController } from '../../src/app/controller.js';
import { runDrill } from '../../src/cli/drill.js';
import { buildBootstrap } from '../../src/envoy/bootstrap.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import { startControllerWithExtension } from '../support/controller-replica.js';
import { startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { startFakeBedrock, type FakeBedrock } from '../support/fake-bedrock.js';
import { startFakeVertex, type FakeVertex } from '../support/fake-vertex.js';
import { aiBackend } from '../support/gateway-fixture.js';
import { createTestNamespace, randomSuffix, testClient, type TestNamespace } from '../support/kube-cluster.js';
import { kubectlOk } from '../support/kube.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

/**
 * Keys read from Secrets through a real API server, beyond a provider's `Authorization`: a
 * Vertex AI service-account key and Bedrock's AWS keys reach the AI extension (a real Envoy's
 * attempts are answered by the vendor fakes, which check the token and the signature), and
 * `switchyard drill --key-secret NS/NAME` reads the drill key from
 * the Secret the Backend's spec.drill.keySecretRef names, the same Secret the controller (in
 * process, watching this namespace) hands to the AI extension, so a real Envoy fails priority 0
 * over to priority 1 without calling priority 0's provider. A Secret that is not the Backend's,
 * is missing or lacks the key is named in the error, with the fix.
 */

const SUFFIX = randomSuffix();
const CLASS = `switchyard-drill-${SUFFIX}`;
const GATEWAY = 'ai-gateway';
const KEY = 'drill-key-k8s-0123456789abcdef0123456789';
const ROTATED = 'drill-key-k8s-rotated-fedcba9876543210fedcba';
const AWS = { region: 'us-east-1', model: 'anthropic.claude-3-5-haiku-20241022-v1:0', accessKey: 'AKIAK8SBEDROCK0001', secretKey: 'k8s-bedrock-secret-VALUE/+1', sessionToken: 'k8s-bedrock-session-TOKEN' } as const;
const VERTEX = { project: 'switchyard-k8s', region: 'europe-west4', model: 'gemini-2.0-flash' } as const;

let ns: TestNamespace;
let dir: string;
let listenerPort: number;
let p0: FakeProvider;
let p1: FakeProvider;
let vertex: FakeVertex;
let bedrock: FakeBedrock;
let ctl: RunningController;
let extension: RunningAiExtension;
let envoy: EnvoyProcess;
const logLines: string[] = [];

function inNamespace(m: JsonObject): JsonObject {
  const meta = m['metadata'] as JsonObject;
  return { ...m, metadata: { ...meta, namespace: ns.name } };
}

function withDrill(backend: JsonObject, secretName: string): JsonObject {
  return { ...backend, spec: { ...(backend['spec'] as JsonObject), drill: { keySecretRef: { name: secretName } } } };
}

function manifests(): JsonObject[] {
  const pools = [
    [{ name: 'primary', fake: p0, hostname: 'primary.llm.test', secret: 'p0-key' }],
    [{ name: 'secondary', fake: p1, hostname: 'secondary.llm.test', secret: 'p1-key' }],
  ];
  const secret = (name: string, data: Record<string, string>): JsonObject => inNamespace({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, stringData: data });
  return [
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: CLASS }, spec: { controllerName: 'switchyard.dev/gateway-controller' } },
    inNamespace({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: GATEWAY }, spec: { gatewayClassName: CLASS, listeners: [{ name: 'http', protocol: 'HTTP', port: listenerPort }] } }),
    secret('p0-key', { Authorization: 'sk-p0' }),
    secret('p1-key', { Authorization: 'sk-p1' }),
    secret('chat-drill-key', { key: KEY }),
    // A Secret without the drill key's "key" entry.
    secret('keyless-drill-key', { other: KEY }),
    inNamespace(withDrill(aiBackend({ name: 'chat', priorities: pools, outlierDetection: { enabled: false } }), 'chat-drill-key')),
    inNamespace(withDrill(aiBackend({ name: 'missing', priorities: pools, outlierDetection: { enabled: false } }), 'no-such-secret')),
    inNamespace(withDrill(aiBackend({ name: 'keyless', priorities: pools, outlierDetection: { enabled: false } }), 'keyless-drill-key')),
    secret('vertex-sa', { 'key.json': vertex.keyFile }),
    secret('aws-keys', { accessKey: AWS.accessKey, secretKey: AWS.secretKey, sessionToken: AWS.sessionToken }),
    inNamespace({ apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name: 'vertex' }, spec: { type: 'AI', ai: { llm: {
      provider: { vertexai: { model: VERTEX.model, projectId: VERTEX.project, region: VERTEX.region, serviceAccountKey: { secretRef: { name: 'vertex-sa' } } } },
      hostOverride: { host: vertex.host, port: vertex.port, tls: false },
    } } } }),
    inNamespace({ apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name: 'bedrock' }, spec: { type: 'AI', ai: { llm: {
      provider: { bedrock: { model: AWS.model, region: AWS.region, credentials: { secretRef: { name: 'aws-keys' } } } },
      hostOverride: { host: bedrock.host, port: bedrock.port, tls: false },
    } } } }),
    inNamespace({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'chat' },
      spec: {
        parentRefs: [{ name: GATEWAY }],
        rules: [
          { matches: [{ path: { type: 'PathPrefix', value: '/v1' } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: 'chat' }] },
          ...['vertex', 'bedrock'].map((name) => ({
            matches: [{ path: { type: 'PathPrefix', value: `/${name}/v1` } }],
            filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } } }],
            backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name }],
          })),
        ],
      },
    }),
  ];
}

async function apply(file: string, docs: JsonObject[]): Promise<void> {
  const path = join(dir, file);
  writeFileSync(path, docs.map((d) => stringify(d)).join('---\n'));
  await kubectlOk(['apply', '-f', path]);
}

const gatewayUrl = (): string => `http://127.0.0.1:${listenerPort}/v1`;

async function drill(backend: string, keySecret: string, requests = 3): Promise<{ code: number; out: string }> {
  let out = '';
  const code = await runDrill(
    ['--backend', `${ns.name}/${backend}`, '--priority', '0', '--requests', String(requests), '--gateway', gatewayUrl(), '--key-secret', keySecret, '--kubeconfig', inject('kubeconfig')],
    (t) => (out += t),
  );
  return { code, out };
}

async function drillError(backend: string, keySecret: string): Promise<string> {
  return drill(backend, keySecret).then(
    ({ out }) => `no error; the drill printed: ${out}`,
    (err: unknown) => (err instanceof Error ? err.message : String(err)),
  );
}

beforeAll(async () => {
  const api = testClient();
  try {
    ns = await createTestNamespace(api, 'drill');
  } finally {
    api.close();
  }
  dir = mkdtempSync(join(tmpdir(), 'switchyard-k8s-drill-'));
  p0 = await startFakeProvider({ name: 'p0' });
  p1 = await startFakeProvider({ name: 'p1' });
  vertex = await startFakeVertex({ name: 'vertex', project: VERTEX.project, region: VERTEX.region, model: `google/${VERTEX.model}` });
  bedrock = await startFakeBedrock({ name: 'bedrock', ...AWS });
  listenerPort = await freePort();
  const logger = createLogger({ level: 'info', name: 'k8s-drill' }, { write: (line: string) => void logLines.push(line) });
  ({ ctl, extension } = await startControllerWithExtension({ namespaces: [ns.name], identity: `drill-test-${SUFFIX}`, logger }));
  const adminPort = await freePort();
  envoy = await startEnvoy({ bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: ctl.xdsPort }, nodeId: `drill-${SUFFIX}`, adminPort }), adminPort, id: 'k8s-drill' });
  await apply('all.yaml', manifests());
  await envoy.waitForListener(`${ns.name}/${GATEWAY}/${listenerPort}`, 15_000);
  // Steady state: the route serves, from priority 0.
  await waitFor(async () => {
    const res = await fetch(`${gatewayUrl()}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }) });
    await res.arrayBuffer();
    return res.headers.get('x-fake-provider') === 'p0';
  }, { what: 'the HTTPRoute applied with kubectl to be served by priority 0', timeoutMs: 20_000 });
}, 120_000);

afterAll(async () => {
  if (envoy && !envoy.running()) envoy.printLogs(40);
  await envoy?.stop();
  await extension?.stop();
  await ctl?.stop();
  for (const f of [p0, p1]) await f?.close();
  await vertex?.close();
  await bedrock?.close();
  await ns?.remove();
  await kubectlOk(['delete', 'gatewayclass', CLASS, '--ignore-not-found']).catch(() => undefined);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('vendor credentials from Secrets on a real API server', () => {
  it('a Vertex AI member gets tokens for its service-account key, a Bedrock member signs with its AWS keys', async () => {
    const client = (prefix: string): OpenAI => new OpenAI({ baseURL: `http://127.0.0.1:${listenerPort}${prefix}`, apiKey: 'sk-client', maxRetries: 0, timeout: 20_000 });
    const ask = async (prefix: string): Promise<string> =>
      (await client(prefix).chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] })).choices[0]?.message.content ?? '';
    // The route and clusters may reach Envoy a moment after the listener.
    await waitFor(async () => (await ask('/vertex/v1').catch(() => '')) === 'answered by vertex', { what: 'the Vertex AI Backend to answer', timeoutMs: 15_000 });
    expect(vertex.tokenRequests().filter((g) => g.ok)).toHaveLength(1);
    expect(vertex.received().every((r) => r.rejected === undefined)).toBe(true);
    await waitFor(async () => (await ask('/bedrock/v1').catch(() => '')) !== '', { what: 'the Bedrock Backend to answer', timeoutMs: 15_000 });
    expect(bedrock.received().length).toBeGreaterThan(0);
    expect(bedrock.received().every((r) => r.rejected === undefined)).toBe(true);
    for (const l of logLines) {
      expect(l).not.toContain(AWS.secretKey);
      expect(l).not.toContain(AWS.sessionToken);
    }
  });
});

describe('switchyard drill --key-secret NS/NAME on a real API server', () => {
  it('signs with the key read from the Backend\'s Secret: every request fails over to priority 1, priority 0\'s provider gets none', async () => {
    await p0.setMode('ok');
    p0.clear();
    p1.clear();
    const { code, out } = await drill('chat', `${ns.name}/chat-drill-key`);
    expect(out).toMatch(/Summary: 3 requests, 3 failed over, 0 errors/);
    expect(code).toBe(0);
    expect(p0.received()).toHaveLength(0);
    expect(p1.received()).toHaveLength(3);
  });

  it('follows a rotated Secret: the new key drills, the old one (given as a file) is ignored by the extension', async () => {
    await kubectlOk(['-n', ns.name, 'patch', 'secret', 'chat-drill-key', '--type', 'merge', '-p', JSON.stringify({ stringData: { key: ROTATED } })]);
    // The CLI reads the new key at once; the extension gets it from the controller within moments.
    await waitFor(async () => (await drill('chat', `${ns.name}/chat-drill-key`, 1)).code === 0, { what: 'a drill with the rotated key to fail over', timeoutMs: 15_000 });
    const oldKeyFile = join(dir, 'old-key');
    writeFileSync(oldKeyFile, KEY);
    p0.clear();
    let out = '';
    const code = await runDrill(['--backend', `${ns.name}/chat`, '--priority', '0', '--requests', '1', '--gateway', gatewayUrl(), '--key-file', oldKeyFile], (t) => (out += t));
    expect(code).toBe(1);
    expect(out).toContain('the AI extension ignored the drill header');
    expect(p0.received()).toHaveLength(1);
  });

  it('names a Secret that is not the Backend\'s, a missing one and one without the key, each with the fix', async () => {
    expect(await drillError('chat', `${ns.name}/p0-key`)).toBe(
      `--key-secret ${ns.name}/p0-key: Backend ${ns.name}/chat signs drills with Secret ${ns.name}/chat-drill-key (spec.drill.keySecretRef); use --key-secret ${ns.name}/chat-drill-key`,
    );
    expect(await drillError('missing', `${ns.name}/no-such-secret`)).toMatch(
      new RegExp(`^--key-secret ${ns.name}/no-such-secret: no such Secret on https://127\\.0\\.0\\.1:\\d+; create it with key "key"`),
    );
    expect(await drillError('keyless', `${ns.name}/keyless-drill-key`)).toBe(`--key-secret ${ns.name}/keyless-drill-key: the Secret has no key "key"; add it (e.g. openssl rand -hex 32)`);
    expect(await drillError('nowhere', `${ns.name}/chat-drill-key`)).toMatch(new RegExp(`^--backend ${ns.name}/nowhere: no such Backend on https://`));
    // No drill key value in any error or log line.
    for (const l of logLines) {
      expect(l).not.toContain(KEY);
      expect(l).not.toContain(ROTATED);
    }
  });
});
