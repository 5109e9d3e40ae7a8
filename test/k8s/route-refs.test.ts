import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startFakeProvider, type FakeProvider } from '../../examples/demo/fake-provider.js';
import type { RunningAiExtension } from '../../src/ai-extension/server.js';
import { CONTROLLER_NAME } from '../../src/api/gateway.js';
import type { RunningController } from '../../src/app/controller.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import type { KubeClient } from '../../src/providers/kubernetes/api-client.js';
import { removeTestObjects, startControllerWithExtension, startEnvoyFor, waitForHosts } from '../support/controller-replica.js';
import type { EnvoyProcess } from '../support/envoy.js';
import { aiBackend } from '../support/gateway-fixture.js';
import { createTestNamespace, randomSuffix, testClient, type TestNamespace } from '../support/kube-cluster.js';
import { kubectlOk } from '../support/kube.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

/**
 * HTTPRoute backendRefs that cannot be used, on the real API server: `switchyard controller`
 * (in-process, watching this test's two namespaces) writes ResolvedRefs=False with the Gateway
 * API reason on the route's parent status and a Warning Event on the route, both read back with
 * kubectl. A cross-namespace ref is refused until a ReferenceGrant in the target namespace allows
 * it; then a real Envoy sends the route's traffic there.
 *
 * `routes` namespace: Gateway, HTTPRoutes `missing` (Backend that does not exist), `cross`
 * (Backend `shared` in the `models` namespace) and `odd` (a kind we do not serve).
 */

const SUFFIX = randomSuffix();
const CLASS = `switchyard-route-refs-${SUFFIX}`;
const GATEWAY = 'gw';
const GW_API = 'gateway.networking.k8s.io';

type Manifest = JsonObject;

let client: KubeClient;
let routesNs: TestNamespace;
let modelsNs: TestNamespace;
let dir: string;
let listenerPort: number;
let shared: FakeProvider;
let extension: RunningAiExtension;
let ctl: RunningController;
let envoy: EnvoyProcess;
const logLines: string[] = [];

function route(name: string, path: string, backendRef: Manifest): Manifest {
  return {
    apiVersion: `${GW_API}/v1`,
    kind: 'HTTPRoute',
    metadata: { name, namespace: routesNs.name },
    spec: {
      parentRefs: [{ name: GATEWAY }],
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: path } }],
          filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } } }],
          backendRefs: [backendRef],
        },
      ],
    },
  };
}

/** A ReferenceGrant in `namespace` letting HTTPRoutes of the routes namespace refer to Backends there. */
function grant(name: string, namespace: string, toKind = 'Backend', toGroup = 'switchyard.dev'): Manifest {
  return {
    apiVersion: `${GW_API}/v1beta1`,
    kind: 'ReferenceGrant',
    metadata: { name, namespace },
    spec: { from: [{ group: GW_API, kind: 'HTTPRoute', namespace: routesNs.name }], to: [{ group: toGroup, kind: toKind }] },
  };
}

async function apply(file: string, docs: Manifest[]): Promise<void> {
  const path = join(dir, file);
  writeFileSync(path, docs.map((d) => stringify(d)).join('---\n'));
  await kubectlOk(['apply', '-f', path]);
}

interface ConditionJson {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
  observedGeneration?: number;
}

interface ParentJson {
  parentRef?: { name?: string };
  controllerName?: string;
  conditions?: ConditionJson[];
}

/** Our entry in the HTTPRoute's status.parents, as `kubectl get -o json` shows it. */
async function ourParent(name: string): Promise<ParentJson | undefined> {
  const obj = JSON.parse(await kubectlOk(['get', 'httproute', name, '-n', routesNs.name, '-o', 'json'])) as { status?: { parents?: ParentJson[] } };
  return obj.status?.parents?.find((p) => p.controllerName === CONTROLLER_NAME);
}

async function resolvedRefs(name: string): Promise<ConditionJson> {
  return (await ourParent(name))?.conditions?.find((c) => c.type === 'ResolvedRefs') ?? {};
}

async function waitForResolvedRefs(name: string, want: { status: string; reason: string }): Promise<ConditionJson> {
  let last: ConditionJson = {};
  await waitFor(
    async () => {
      last = await resolvedRefs(name);
      return last.status === want.status && last.reason === want.reason;
    },
    { what: `ResolvedRefs=${want.status}/${want.reason} on HTTPRoute ${routesNs.name}/${name}, read with kubectl (last: ${JSON.stringify(last)})`, timeoutMs: 10_000, intervalMs: 200 },
  );
  return last;
}

interface EventJson {
  type?: string;
  reason?: string;
  message?: string;
  involvedObject?: { kind?: string; name?: string; namespace?: string; apiVersion?: string };
}

/** Warning Events on one HTTPRoute of the routes namespace, as kubectl lists them. */
async function warnings(name: string): Promise<EventJson[]> {
  const out = await kubectlOk(['get', 'events', '-n', routesNs.name, '--field-selector', `involvedObject.kind=HTTPRoute,involvedObject.name=${name},type=Warning`, '-o', 'json']);
  return (JSON.parse(out) as { items?: EventJson[] }).items ?? [];
}

async function waitForWarning(name: string, reason: string): Promise<EventJson> {
  return waitFor(async () => (await warnings(name)).find((e) => e.reason === reason), { what: `a Warning Event ${reason} on HTTPRoute ${routesNs.name}/${name}`, timeoutMs: 10_000, intervalMs: 200 });
}

async function chat(prefix: string): Promise<{ status: number; answeredBy: string | null; body: string }> {
  // Each route here has its own prefix and rewrites it to /v1.
  const res = await fetch(`http://127.0.0.1:${listenerPort}${prefix}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-client' },
    body: JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] }),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, answeredBy: res.headers.get('x-fake-provider'), body: await res.text() };
}

beforeAll(async () => {
  client = testClient();
  routesNs = await createTestNamespace(client, 'route-refs');
  modelsNs = await createTestNamespace(client, 'route-refs-models');
  dir = mkdtempSync(join(tmpdir(), 'switchyard-k8s-route-refs-'));
  shared = await startFakeProvider({ name: 'shared' });
  listenerPort = await freePort();
  const logger = createLogger({ level: 'info', name: 'k8s-route-refs' }, { write: (line: string) => void logLines.push(line) });
  ({ ctl, extension } = await startControllerWithExtension({ namespaces: [routesNs.name, modelsNs.name], identity: `route-refs-${SUFFIX}`, logger }));
  envoy = await startEnvoyFor(ctl.xdsPort, `route-refs-${SUFFIX}`, { loadReporting: false });

  const backend = aiBackend({ name: 'shared', llm: true, priorities: [[{ fake: shared, hostname: 'shared.llm.test' }]] });
  await apply('gateway.yaml', [
    { apiVersion: `${GW_API}/v1`, kind: 'GatewayClass', metadata: { name: CLASS }, spec: { controllerName: CONTROLLER_NAME } },
    {
      apiVersion: `${GW_API}/v1`,
      kind: 'Gateway',
      metadata: { name: GATEWAY, namespace: routesNs.name },
      spec: { gatewayClassName: CLASS, listeners: [{ name: 'http', protocol: 'HTTP', port: listenerPort }] },
    },
  ]);
  await apply('backend.yaml', [{ ...backend, metadata: { name: 'shared', namespace: modelsNs.name } }]);
  await apply('routes.yaml', [
    route('missing', '/missing/v1', { group: 'switchyard.dev', kind: 'Backend', name: 'nope' }),
    route('cross', '/cross/v1', { group: 'switchyard.dev', kind: 'Backend', name: 'shared', namespace: modelsNs.name }),
    route('odd', '/odd/v1', { group: 'storage.example.com', kind: 'Bucket', name: 'models' }),
  ]);
  await envoy.waitForListener(`${routesNs.name}/${GATEWAY}/${listenerPort}`, 10_000);
  await waitFor(() => ctl.isLeader(), { what: 'the controller to hold the Lease', timeoutMs: 10_000 });
}, 120_000);

afterAll(async () => {
  if (envoy && !envoy.running()) envoy.printLogs(40);
  await envoy?.stop();
  await extension?.stop();
  await ctl?.stop();
  await shared?.close();
  if (client) {
    if (routesNs) await removeTestObjects(client, routesNs.name, CLASS);
    if (modelsNs) await removeTestObjects(client, modelsNs.name);
    client.close();
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('an HTTPRoute whose backendRef names a Backend that does not exist', () => {
  it('has ResolvedRefs=False/BackendNotFound on its parent status and a Warning Event, and answers 500 naming the Backend', async () => {
    const resolved = await waitForResolvedRefs('missing', { status: 'False', reason: 'BackendNotFound' });
    expect(resolved.message).toContain(`Backend ${routesNs.name}/nope not found`);
    expect(resolved.observedGeneration).toBe(1);
    const parent = await ourParent('missing');
    expect(parent?.parentRef?.name).toBe(GATEWAY);
    // The route is attached; only its reference is broken.
    expect(parent?.conditions?.find((c) => c.type === 'Accepted')).toMatchObject({ status: 'True', reason: 'Accepted' });

    const event = await waitForWarning('missing', 'BackendNotFound');
    expect(event.message).toContain(`Backend ${routesNs.name}/nope not found`);
    expect(event.involvedObject).toMatchObject({ kind: 'HTTPRoute', name: 'missing', namespace: routesNs.name });

    const answer = await waitFor(async () => {
      const a = await chat('/missing/v1');
      return a.status === 500 ? a : false;
    }, { what: 'the missing route to answer 500' });
    expect(answer.body).toContain(`backendRef Backend ${routesNs.name}/nope not found`);
  });
});

describe('an HTTPRoute whose backendRef has a kind Switchyard does not serve', () => {
  it('has ResolvedRefs=False/InvalidKind and a Warning Event', async () => {
    const resolved = await waitForResolvedRefs('odd', { status: 'False', reason: 'InvalidKind' });
    expect(resolved.message).toContain('kind "Bucket" is not supported');
    const event = await waitForWarning('odd', 'InvalidKind');
    expect(event.message).toContain('storage.example.com');
    expect((await chat('/odd/v1')).status).toBe(500);
  });
});

describe('a cross-namespace backendRef', () => {
  it('is refused (RefNotPermitted) without a ReferenceGrant, and no request reaches the Backend', async () => {
    const resolved = await waitForResolvedRefs('cross', { status: 'False', reason: 'RefNotPermitted' });
    expect(resolved.message).toContain(`Backend ${modelsNs.name}/shared is in another namespace and no ReferenceGrant in ${modelsNs.name} allows it`);
    const event = await waitForWarning('cross', 'RefNotPermitted');
    expect(event.message).toContain(`${modelsNs.name}/shared`);
    // The Backend itself is fine and served as a cluster; the route just may not use it.
    await waitForHosts(envoy, `backend/${modelsNs.name}/shared`, [[shared.port, 0]], 'the Backend in the models namespace');
    const answer = await chat('/cross/v1');
    expect(answer.status).toBe(500);
    expect(answer.body).toContain('no ReferenceGrant');
    expect(shared.received()).toHaveLength(0);
  });

  it('stays refused with grants that do not cover it: one in the route\'s own namespace, one for Services only', async () => {
    await apply('wrong-grants.yaml', [grant('wrong-side', routesNs.name), grant('services-only', modelsNs.name, 'Service', '')]);
    // The provider hands a snapshot to translation synchronously: once it holds both grants, they were translated.
    await waitFor(() => ['services-only', 'wrong-side'].every((n) => ctl.provider.current()?.inputs.referenceGrants.some((g) => g.metadata.name === n)), {
      what: 'the controller to see both ReferenceGrants',
      timeoutMs: 10_000,
    });
    const inMemory = ctl.statuses().find((s) => s.kind === 'HTTPRoute' && s.name === 'cross' && s.namespace === routesNs.name);
    const parent = inMemory && 'parents' in inMemory ? inMemory.parents[0] : undefined;
    expect(parent?.conditions.find((c) => c.type === 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'RefNotPermitted' });
    expect(await resolvedRefs('cross')).toMatchObject({ status: 'False', reason: 'RefNotPermitted' });
    expect((await chat('/cross/v1')).status).toBe(500);
    expect(shared.received()).toHaveLength(0);
  });

  it('resolves once a ReferenceGrant (v1beta1) in the target namespace allows it, and traffic flows to that Backend', async () => {
    await apply('grant.yaml', [grant('routes-to-backends', modelsNs.name)]);
    await waitForResolvedRefs('cross', { status: 'True', reason: 'ResolvedRefs' });
    await waitFor(async () => (await chat('/cross/v1')).answeredBy === 'shared', { what: 'the cross-namespace route to be answered by the shared Backend', timeoutMs: 10_000, intervalMs: 100 });
    const answer = await chat('/cross/v1');
    expect(answer).toMatchObject({ status: 200, answeredBy: 'shared' });
    expect(shared.received().at(-1)).toMatchObject({ path: '/v1/chat/completions', host: 'shared.llm.test' });
    // The routes that are still broken stay broken.
    expect(await resolvedRefs('missing')).toMatchObject({ status: 'False', reason: 'BackendNotFound' });
    expect(await resolvedRefs('odd')).toMatchObject({ status: 'False', reason: 'InvalidKind' });
  });

  it('is refused again when the ReferenceGrant is deleted', async () => {
    await kubectlOk(['delete', 'referencegrant', 'routes-to-backends', '-n', modelsNs.name]);
    await waitForResolvedRefs('cross', { status: 'False', reason: 'RefNotPermitted' });
    await waitFor(async () => (await chat('/cross/v1')).status === 500, { what: 'the cross-namespace route to answer 500 again', timeoutMs: 10_000, intervalMs: 100 });
    const served = shared.received().length;
    expect((await chat('/cross/v1')).status).toBe(500);
    expect(shared.received()).toHaveLength(served);
  });
});

