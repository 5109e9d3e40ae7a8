import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { createLogger } from '../../src/observability/logger.js';
import { KubeClient, type RawObject } from '../../src/providers/kubernetes/api-client.js';
import { KubernetesProvider, type KubernetesProviderOptions } from '../../src/providers/kubernetes/provider.js';
import type { Snapshot } from '../../src/providers/manifest-files.js';
import type { Inputs } from '../../src/translate/inputs.js';
import {
  createObject,
  compactEtcdIfLocal,
  createTestNamespace,
  deleteObject,
  K8S_SETTLE_MS,
  patchObject,
  randomSuffix,
  removeNamespace,
  testClient,
  testKubeConfig,
  type TestNamespace,
} from '../support/kube-cluster.js';
import { KubeApiProxy } from '../support/kube-proxy.js';
import { kubectlOk } from '../support/kube.js';
import { waitFor } from '../support/wait.js';

/**
 * The Kubernetes provider against the real API server: every kind it reads is seen created,
 * updated and deleted; a burst becomes one snapshot; a dropped connection resumes from its
 * resourceVersion; a resourceVersion the API server no longer has makes it relist; namespace
 * scoping holds. Each test owns its namespaces (random suffix) and removes them. The tests judge
 * what arrived and in which order, never how fast (on a loaded machine everything is late alike):
 * "after" means later in the provider's list of snapshots or the proxy's list of requests, and
 * the time each change took to show is printed for the record.
 */


const SUFFIX = randomSuffix();
const GATEWAY_CLASS = `switchyard-provider-${SUFFIX}`;
const SECRET_VALUE = `sk-provider-test-${randomBytes(8).toString('hex')}`;
const OTHER_SECRET_VALUE = `not-for-switchyard-${randomBytes(8).toString('hex')}`;

let client: KubeClient;
let nsA: TestNamespace;
let nsB: TestNamespace;
const extraNamespaces: string[] = [];
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  client = testClient();
  nsA = await createTestNamespace(client, 'provider-a');
  nsB = await createTestNamespace(client, 'provider-b');
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await deleteObject(client, { kind: 'GatewayClass', metadata: { name: GATEWAY_CLASS } });
  for (const n of extraNamespaces) await removeNamespace(client, n);
  await nsA?.remove();
  await nsB?.remove();
  client?.close();
});

interface Recorded {
  provider: KubernetesProvider;
  first: Snapshot;
  /** Every snapshot handed to onChange, with when it arrived. */
  changes: { at: number; snapshot: Snapshot }[];
  logs: string[];
  latest(): Snapshot;
}

async function startProvider(options: Partial<KubernetesProviderOptions> & { client?: KubeClient }): Promise<Recorded> {
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', name: 'provider-test' }, { write: (line: string) => void logs.push(line) });
  const provider = new KubernetesProvider({ client: options.client ?? client, logger, ...options });
  const first = await provider.start();
  const rec: Recorded = {
    provider,
    first,
    changes: [],
    logs,
    latest: () => rec.changes.at(-1)?.snapshot ?? first,
  };
  provider.onChange((snapshot) => rec.changes.push({ at: Date.now(), snapshot }));
  cleanups.push(() => provider.stop());
  return rec;
}

/** What the tests look at in any input object. */
interface Found {
  metadata: { name: string; namespace: string; labels?: Record<string, string> | undefined };
  spec?: unknown;
  data?: unknown;
  endpoints?: unknown;
}

function objectsOf(inputs: Inputs, kind: string): Found[] {
  const byKind: Record<string, Found[]> = {
    GatewayClass: inputs.gatewayClasses,
    Gateway: inputs.gateways,
    HTTPRoute: inputs.httpRoutes,
    ReferenceGrant: inputs.referenceGrants,
    Backend: inputs.backends,
    Secret: inputs.secrets,
    Service: inputs.services,
    EndpointSlice: inputs.endpointSlices,
    Namespace: inputs.namespaces,
  };
  const list = byKind[kind];
  if (!list) throw new Error(`no inputs list for ${kind}`);
  return list;
}

/** A Secret's Authorization value as the provider kept it (base64 in `data`). */
function authorization(o: Found | undefined): string | undefined {
  const data = o?.data;
  if (typeof data !== 'object' || data === null || !('Authorization' in data) || typeof data.Authorization !== 'string') return undefined;
  return Buffer.from(data.Authorization, 'base64').toString('utf8');
}

function find(s: Snapshot, kind: string, namespace: string, name: string): Found | undefined {
  return objectsOf(s.inputs, kind).find((o) => o.metadata.name === name && o.metadata.namespace === namespace);
}

/** A point in a provider's snapshots: the ones handed out after it, and when it was taken. */
interface Mark {
  index: number;
  at: number;
}

function mark(rec: Recorded): Mark {
  return { index: rec.changes.length, at: Date.now() };
}

/** Waits for a snapshot handed out after `since` that satisfies `ok`; returns how long after `since` it arrived. */
async function snapshotWhere(rec: Recorded, since: Mark, ok: (s: Snapshot) => boolean, what: string, timeoutMs = K8S_SETTLE_MS): Promise<number> {
  const hit = await waitFor(() => rec.changes.slice(since.index).find((c) => ok(c.snapshot)), { what, timeoutMs, intervalMs: 10 });
  return hit.at - since.at;
}

function gateway(ns: string, name: string, port: number, protocol = 'HTTP'): RawObject {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace: ns },
    spec: { gatewayClassName: GATEWAY_CLASS, listeners: [{ name: 'http', protocol, port }] },
  };
}

function service(ns: string, name: string, port = 80): RawObject {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { ports: [{ name: 'http', port, targetPort: 8080 }] } };
}

interface KindCase {
  kind: string;
  manifest(ns: string): RawObject;
  update: RawObject;
  /** True once the snapshot shows the update. */
  updated(o: Found): boolean;
  namespaced: boolean;
}

const NAME = `obj-${SUFFIX}`;
const CASES: KindCase[] = [
  {
    kind: 'GatewayClass',
    namespaced: false,
    manifest: () => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: GATEWAY_CLASS }, spec: { controllerName: 'switchyard.dev/gateway-controller' } }),
    update: { spec: { description: 'updated' } },
    updated: (o) => (o.spec as { description?: string }).description === 'updated',
  },
  {
    kind: 'Gateway',
    namespaced: true,
    manifest: (ns) => gateway(ns, NAME, 8080),
    update: { spec: { listeners: [{ name: 'http', protocol: 'HTTP', port: 9090 }] } },
    updated: (o) => (o.spec as { listeners: { port: number }[] }).listeners[0]?.port === 9090,
  },
  {
    kind: 'HTTPRoute',
    namespaced: true,
    manifest: (ns) => ({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: NAME, namespace: ns },
      spec: { parentRefs: [{ name: NAME }], rules: [{ backendRefs: [{ name: 'svc', port: 80 }] }] },
    }),
    update: { spec: { hostnames: ['chat.example.com'] } },
    updated: (o) => JSON.stringify((o.spec as { hostnames?: string[] }).hostnames) === '["chat.example.com"]',
  },
  {
    kind: 'ReferenceGrant',
    namespaced: true,
    manifest: (ns) => ({
      apiVersion: 'gateway.networking.k8s.io/v1beta1',
      kind: 'ReferenceGrant',
      metadata: { name: NAME, namespace: ns },
      spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'elsewhere' }], to: [{ group: '', kind: 'Service' }] },
    }),
    update: { spec: { to: [{ group: '', kind: 'Service', name: 'only-this' }] } },
    updated: (o) => (o.spec as { to: { name?: string }[] }).to[0]?.name === 'only-this',
  },
  {
    kind: 'Backend',
    namespaced: true,
    manifest: (ns) => ({
      apiVersion: 'switchyard.dev/v1alpha1',
      kind: 'Backend',
      metadata: { name: NAME, namespace: ns },
      spec: { type: 'Static', static: { priorities: [{ hosts: [{ host: '10.0.0.1', port: 8000 }] }] } },
    }),
    update: { spec: { static: { priorities: [{ hosts: [{ host: '10.0.0.1', port: 8001 }] }] } } },
    updated: (o) => JSON.stringify(o.spec).includes('8001'),
  },
  {
    kind: 'Secret',
    namespaced: true,
    manifest: (ns) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: NAME, namespace: ns }, stringData: { Authorization: 'first' } }),
    update: { stringData: { Authorization: 'second' } },
    updated: (o) => authorization(o) === 'second',
  },
  {
    kind: 'Service',
    namespaced: true,
    manifest: (ns) => service(ns, NAME),
    update: { spec: { ports: [{ name: 'http', port: 81, targetPort: 8080 }] } },
    updated: (o) => (o.spec as { ports: { port: number }[] }).ports[0]?.port === 81,
  },
  {
    kind: 'EndpointSlice',
    namespaced: true,
    manifest: (ns) => ({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: NAME, namespace: ns, labels: { 'kubernetes.io/service-name': NAME } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [{ addresses: ['10.1.0.1'], conditions: { ready: true } }],
    }),
    update: { endpoints: [{ addresses: ['10.1.0.2'], conditions: { ready: true } }] },
    updated: (o) => JSON.stringify(o.endpoints).includes('10.1.0.2'),
  },
  {
    kind: 'Namespace',
    namespaced: false,
    manifest: () => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `provider-ns-${SUFFIX}`, labels: { team: 'a' } } }),
    update: { metadata: { labels: { team: 'b' } } },
    updated: (o) => o.metadata.labels?.['team'] === 'b',
  },
];

describe('sees every kind it reads', () => {
  let rec: Recorded;
  const took: string[] = [];
  beforeAll(async () => {
    extraNamespaces.push(`provider-ns-${SUFFIX}`);
    rec = await startProvider({ namespaces: [nsA.name] });
  });
  afterAll(() => {
    if (took.length > 0) process.stdout.write(`provider: change -> snapshot (create/update/delete, ms): ${took.join(', ')}\n`);
  });

  it.each(CASES)('$kind: create, update and delete each show up', async (c) => {
    const manifest = c.manifest(nsA.name);
    const meta = manifest['metadata'] as { name: string };
    const namespace = c.namespaced ? nsA.name : '';
    const present = (s: Snapshot) => find(s, c.kind, namespace, meta.name);

    let since = mark(rec);
    await createObject(client, manifest);
    const created = await snapshotWhere(rec, since, (s) => present(s) !== undefined, `${c.kind} ${meta.name} in a snapshot`);

    since = mark(rec);
    await patchObject(client, manifest, c.update);
    const updated = await snapshotWhere(rec, since, (s) => { const o = present(s); return o !== undefined && c.updated(o); }, `the update of ${c.kind} ${meta.name}`);

    since = mark(rec);
    if (c.kind === 'Namespace') await removeNamespace(client, meta.name);
    else await deleteObject(client, manifest);
    const deleted = await snapshotWhere(rec, since, (s) => present(s) === undefined, `${c.kind} ${meta.name} gone from the snapshot`);
    took.push(`${c.kind} ${created}/${updated}/${deleted}`);
  });

  it('keeps only the Secret keys translation reads, and never logs Secret values', async () => {
    const name = `creds-${SUFFIX}`;
    const since = mark(rec);
    // kubectl apply stores the whole applied object, values included, in an annotation.
    await kubectlOk(['apply', '-f', '-'], stringify({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name, namespace: nsA.name, annotations: { note: OTHER_SECRET_VALUE } },
      stringData: { Authorization: SECRET_VALUE, password: OTHER_SECRET_VALUE },
    }));
    await snapshotWhere(rec, since, (s) => find(s, 'Secret', nsA.name, name) !== undefined, `Secret ${name} in a snapshot`);
    const secret = find(rec.latest(), 'Secret', nsA.name, name);
    expect(Object.keys((secret?.data as Record<string, string> | undefined) ?? {})).toEqual(['Authorization']);
    expect(authorization(secret)).toBe(SECRET_VALUE);
    expect(secret?.metadata).not.toHaveProperty('annotations');
    const log = rec.logs.join('');
    for (const value of [SECRET_VALUE, OTHER_SECRET_VALUE, Buffer.from(SECRET_VALUE).toString('base64'), Buffer.from(OTHER_SECRET_VALUE).toString('base64')]) {
      expect(log).not.toContain(value);
    }
    expect(JSON.stringify(rec.latest())).not.toContain(Buffer.from(OTHER_SECRET_VALUE).toString('base64'));
  });

  it('reports an object that fails validation with its name and field, and keeps serving its last valid version', async () => {
    const name = `invalid-${SUFFIX}`;
    let since = mark(rec);
    await createObject(client, gateway(nsA.name, name, 8080));
    await snapshotWhere(rec, since, (s) => find(s, 'Gateway', nsA.name, name) !== undefined, `Gateway ${name}`);

    // The Gateway API CRD does not check that operator In comes with values; Switchyard does.
    since = mark(rec);
    const selector = { matchExpressions: [{ key: 'team', operator: 'In' }] };
    await patchObject(client, gateway(nsA.name, name, 8080), { spec: { listeners: [{ name: 'http', protocol: 'HTTP', port: 8080, allowedRoutes: { namespaces: { from: 'Selector', selector } } }] } });
    await snapshotWhere(rec, since, (s) => s.inputs.invalid.some((i) => i.name === name), `Gateway ${name} reported invalid`);
    const s = rec.latest();
    const invalid = s.inputs.invalid.find((i) => i.name === name);
    expect(invalid).toMatchObject({ kind: 'Gateway', namespace: nsA.name, name, servingLastGood: true });
    expect(s.problems).toContainEqual(expect.objectContaining({ object: { kind: 'Gateway', namespace: nsA.name, name }, field: 'spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].values' }));
    const served = find(s, 'Gateway', nsA.name, name);
    // The last valid version: the API server's default allowedRoutes, not the refused selector.
    expect((served?.spec as { listeners: { allowedRoutes?: unknown }[] }).listeners[0]?.allowedRoutes).toEqual({ namespaces: { from: 'Same' } });

    since = mark(rec);
    await patchObject(client, gateway(nsA.name, name, 8080), { spec: { listeners: [{ name: 'http', protocol: 'HTTP', port: 8081 }] } });
    await snapshotWhere(rec, since, (x) => !x.inputs.invalid.some((i) => i.name === name) && JSON.stringify(find(x, 'Gateway', nsA.name, name)).includes('8081'), `Gateway ${name} valid again`);
    expect(rec.latest().problems.filter((p) => p.object?.name === name)).toEqual([]);
  });

  it('turns a burst of 20 objects applied at once into at most 2 snapshots', async () => {
    // kubectl sends the 20 objects one request after the other. With the default 75 ms quiet time
    // a loaded machine (kubectl or the API server waiting for a core between two requests) split
    // the burst; a provider of its own with a 1 s quiet time judges coalescing, not kubectl's pace.
    const burstRec = await startProvider({ namespaces: [nsA.name], debounceMs: 1_000, maxDelayMs: 10_000 });
    const docs: RawObject[] = [];
    for (let i = 0; i < 10; i++) {
      docs.push(service(nsA.name, `burst-${i}`));
      docs.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: `burst-${i}`, namespace: nsA.name }, stringData: { Authorization: `k${i}` } });
    }
    const burst = (s: Snapshot): string =>
      JSON.stringify([...s.inputs.services, ...s.inputs.secrets].filter((o) => o.metadata.namespace === nsA.name && o.metadata.name.startsWith('burst-')).map((o) => `${o.kind}/${o.metadata.name}`).sort());
    const since = mark(burstRec);
    await kubectlOk(['apply', '-f', '-'], docs.map((d) => stringify(d)).join('---\n'));
    await snapshotWhere(burstRec, since, (s) => JSON.parse(burst(s)).length === 20, 'all 20 burst objects in a snapshot');
    // Count the snapshots in which the burst's objects changed (other tests' namespaces come and
    // go meanwhile); once all 20 are in, no later snapshot can change them.
    let previous = burst(since.index > 0 ? (burstRec.changes[since.index - 1]?.snapshot ?? burstRec.first) : burstRec.first);
    let states = 0;
    for (const c of burstRec.changes.slice(since.index)) {
      const now = burst(c.snapshot);
      if (now !== previous) states++;
      previous = now;
    }
    expect(states).toBeGreaterThanOrEqual(1);
    expect(states).toBeLessThanOrEqual(2);
  });
});

describe('namespace scoping', () => {
  it('watches only the namespaces it is given, and cluster-scoped kinds always', async () => {
    const name = `scoped-${SUFFIX}`;
    await createObject(client, service(nsB.name, name));
    await createObject(client, service(nsA.name, name));
    const scoped = await startProvider({ namespaces: [nsA.name] });
    const everywhere = await startProvider({});
    for (const rec of [scoped, everywhere]) {
      await waitFor(() => find(rec.latest(), 'Service', nsA.name, name), { what: `Service ${nsA.name}/${name}` });
    }
    expect(find(scoped.latest(), 'Service', nsB.name, name)).toBeUndefined();
    expect(find(everywhere.latest(), 'Service', nsB.name, name)).toBeDefined();
    // Namespaces are cluster-scoped: a scoped provider still reads them (listener namespace selectors need their labels).
    expect(find(scoped.latest(), 'Namespace', '', nsB.name)).toBeDefined();
    const namespacedInformers = scoped.provider.stats().filter((s) => s.kind === 'Service');
    expect(namespacedInformers.map((s) => s.namespace)).toEqual([nsA.name]);

    // A change in the other namespace never reaches the scoped provider: not by the time it has
    // seen a change made after it in its own namespace.
    const sinceScoped = mark(scoped);
    const sinceEverywhere = mark(everywhere);
    await patchObject(client, service(nsB.name, name), { spec: { ports: [{ name: 'http', port: 82, targetPort: 8080 }] } });
    await snapshotWhere(everywhere, sinceEverywhere, (s) => JSON.stringify(find(s, 'Service', nsB.name, name)).includes('82'), 'the change in the unscoped provider');
    await patchObject(client, service(nsA.name, name), { spec: { ports: [{ name: 'http', port: 83, targetPort: 8080 }] } });
    await snapshotWhere(scoped, sinceScoped, (s) => JSON.stringify(find(s, 'Service', nsA.name, name)).includes('83'), 'the later change in its own namespace, in the scoped provider');
    const seenByScoped = scoped.changes.slice(sinceScoped.index);
    expect(seenByScoped.length).toBeGreaterThan(0);
    expect(seenByScoped.every((c) => find(c.snapshot, 'Service', nsB.name, name) === undefined)).toBe(true);
  });
});

describe('through an unreliable connection', () => {
  let proxy: KubeApiProxy;
  beforeAll(async () => {
    proxy = await KubeApiProxy.start(testKubeConfig());
    cleanups.push(() => proxy.close());
  });

  async function proxiedProvider(): Promise<Recorded> {
    const proxied = new KubeClient(proxy.kubeConfig());
    cleanups.push(async () => proxied.close());
    return startProvider({ client: proxied, namespaces: [nsA.name], backoff: { initialMs: 100, maxMs: 1_000 } });
  }

  function serviceInformer(rec: Recorded) {
    const s = rec.provider.stats().find((x) => x.kind === 'Service');
    if (!s) throw new Error('no Service informer');
    return s;
  }

  it('resumes every watch from its resourceVersion after the connection drops, without relisting', async () => {
    const rec = await proxiedProvider();
    const listsBefore = rec.provider.stats().reduce((n, s) => n + s.lists, 0);
    const rvBefore = serviceInformer(rec).resourceVersion;
    expect(rvBefore).not.toBe('');

    const since = mark(rec);
    const servicesWatch = `/namespaces/${nsA.name}/services`;
    const failuresBefore = serviceInformer(rec).failures;
    proxy.refuse(true);
    proxy.dropConnections();
    const name = `while-down-${SUFFIX}`;
    await createObject(client, service(nsA.name, name));
    // The Service informer saw its watch fail and tried again while the connection was down (the
    // proxy closes such connections before any request is read, so only the informer can tell).
    await waitFor(() => serviceInformer(rec).failures >= failuresBefore + 2, { what: 'the Service watch to fail twice while the connection is down', timeoutMs: K8S_SETTLE_MS });
    const reopenedAt = proxy.requests.length;
    proxy.refuse(false);
    await snapshotWhere(rec, since, (s) => find(s, 'Service', nsA.name, name) !== undefined, `Service ${name}, created while the connection was down`);

    const stats = rec.provider.stats();
    expect(stats.reduce((n, s) => n + s.lists, 0)).toBe(listsBefore);
    const afterReopening = proxy.requests.slice(reopenedAt);
    const rewatch = afterReopening.filter((r) => r.watch && !r.refused && r.path.endsWith(servicesWatch));
    expect(rewatch.length).toBeGreaterThan(0);
    expect(rewatch[0]?.resourceVersion).toBe(rvBefore);
    expect(afterReopening.filter((r) => !r.watch)).toEqual([]);
    expect(rec.logs.join('')).toMatch(/watch Service in provider-a-\w+ failed; retrying/);
    await rec.provider.stop();
  });

  it('relists when the API server no longer has the resourceVersion (410 Gone), and sees what changed meanwhile', async () => {
    const compacted = await compactEtcdIfLocal();
    const rec = await proxiedProvider();
    const gone = `deleted-while-down-${SUFFIX}`;
    const since = mark(rec);
    await createObject(client, service(nsA.name, gone));
    await snapshotWhere(rec, since, (s) => find(s, 'Service', nsA.name, gone) !== undefined, `Service ${gone}`);
    const before = serviceInformer(rec);

    proxy.refuse(true);
    proxy.dropConnections();
    await deleteObject(client, service(nsA.name, gone));
    // The Service informer's next watch gets the API server's own answer to a compacted resourceVersion.
    proxy.makeNextWatchesStale(1, { pathSuffix: `/namespaces/${nsA.name}/services`, redirectTo: `/api/v1/namespaces/${nsA.name}/events` });
    const reconnected = mark(rec);
    proxy.refuse(false);
    await snapshotWhere(rec, reconnected, (s) => find(s, 'Service', nsA.name, gone) === undefined, `Service ${gone} gone after the relist`);

    const after = serviceInformer(rec);
    expect(after.relistsAfterGone, compacted ? 'etcd was compacted, yet no 410' : 'this cluster has not compacted etcd yet (it does every 5 minutes): no 410').toBeGreaterThan(before.relistsAfterGone);
    expect(after.lists).toBeGreaterThan(before.lists);
    expect(rec.logs.join('')).toMatch(/resourceVersion is too old; relisting/);
  });
});

describe('a kind whose CRD is not installed', () => {
  it('starts without it, warns, and picks it up once the CRD is installed', async () => {
    const group = `provider-${SUFFIX}.switchyard.test`;
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: `backends.${group}` },
      spec: {
        group,
        scope: 'Namespaced',
        names: { plural: 'backends', singular: 'backend', kind: 'Backend' },
        versions: [{ name: 'v1alpha1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
      },
    };
    const rec = await startProvider({
      namespaces: [nsA.name],
      kinds: [{ kind: 'Backend', apiVersion: `${group}/v1alpha1`, plural: 'backends', namespaced: true, fromCrd: true, whenAbsent: 'install it' }],
      backoff: { initialMs: 100, maxMs: 500 },
    });
    expect(rec.provider.stats()).toMatchObject([{ kind: 'Backend', state: 'absent' }]);
    expect(rec.logs.join('')).toMatch(new RegExp(`Backend \\(${group.replace(/\./g, '\\.')}/v1alpha1\\) is not served by the API server: install it`));

    await client.request({ method: 'POST', path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', body: crd });
    cleanups.push(async () => void (await client.request({ method: 'DELETE', path: `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/backends.${group}` })));
    await waitFor(() => rec.provider.stats()[0]?.state === 'synced', { what: 'the Backend informer to list once the CRD exists', timeoutMs: 15_000 });

    // The object's apiVersion is not switchyard.dev's, so it arrives as a precise problem.
    const since = mark(rec);
    await waitFor(
      async () => {
        await client.request({ method: 'POST', path: `/apis/${group}/v1alpha1/namespaces/${nsA.name}/backends`, body: { apiVersion: `${group}/v1alpha1`, kind: 'Backend', metadata: { name: 'probe' }, spec: {} } });
        return true;
      },
      { what: 'the CRD to accept objects', timeoutMs: 10_000 },
    );
    await snapshotWhere(rec, since, (s) => s.problems.some((p) => p.object?.name === 'probe' && p.field === 'apiVersion'), 'a problem for the probe Backend');
  });
});
