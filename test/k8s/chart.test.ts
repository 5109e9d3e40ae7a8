import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { pkiNames } from '../../src/app/xds-pki.js';
import { CONTROLLER_NAME } from '../../src/api/gateway.js';
import { buildBootstrap, xdsTlsSdsFiles } from '../../src/envoy/bootstrap.js';
import { readinessResources } from '../../src/envoy/readiness.js';
import { createAiExtensionMetrics } from '../../src/ai-extension/metrics.js';
import { dataPlaneObjects, parseDataPlaneSettings } from '../../src/infrastructure/data-plane-objects.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { createNamespace, kubectl, kubectlOk } from '../support/kube.js';
import { kubeletPort } from '../support/kubelet-ports.js';

const root = path.resolve(import.meta.dirname, '../..');
const CHART = path.join(root, 'deploy/switchyard');
const GOLDEN = path.join(root, 'test/golden/chart');

function helm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const bin = process.env.HELM ?? path.join(root, '.k8s/bin/helm');
  return new Promise((resolve, reject) => {
    execFile(bin, [...args, '--kubeconfig', inject('kubeconfig')], { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(err);
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
  });
}

describe('helm chart deploy/switchyard', () => {
  it('passes helm lint (strict)', async () => {
    const r = await helm(['lint', '--strict', CHART]);
    expect(r.stdout + r.stderr).toContain('0 chart(s) failed');
    expect(r.code).toBe(0);
  });

  it.each([
    { name: 'default', set: [] as string[] },
    { name: 'watch-namespaces', set: ['--set', 'watchNamespaces={team-a,team-b}', '--set', 'envoy.provision=false'] },
    { name: 'fixed-envoy', set: ['--set', 'envoy.provision=false', '--set', 'envoy.fixed.enabled=true'] },
    { name: 'plaintext-xds', set: ['--set', 'xds.tls.enabled=false', '--set', 'aiExtension.enabled=false'] },
    { name: 'observability', set: ['--set', 'metrics.serviceMonitor.enabled=true', '--set', 'metrics.dashboard.enabled=true', '--set', 'tracing.otlpEndpoint=http://otel-collector.observability:4317', '--set', 'envoy.fixed.enabled=true'] },
  ])('renders the $name golden (UPDATE_GOLDEN=1 rewrites it)', async ({ name, set }) => {
    const r = await helm(['template', 'switchyard', CHART, '-n', 'switchyard-system', ...set]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const file = path.join(GOLDEN, `${name}.yaml`);
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, r.stdout);
    expect(existsSync(file), `missing ${path.relative(root, file)}: run UPDATE_GOLDEN=1 once and review it`).toBe(true);
    expect(r.stdout, `helm template drifted from ${path.relative(root, file)}: run UPDATE_GOLDEN=1 and review the diff`).toBe(readFileSync(file, 'utf8'));
  });
});

interface Container {
  name: string;
  args?: string[];
  ports?: { name: string; containerPort: number }[];
  livenessProbe?: { httpGet?: { path: string; port: string } };
  readinessProbe?: { httpGet?: { path: string; port: string } };
  volumeMounts?: { name: string; mountPath: string }[];
  lifecycle?: unknown;
}
interface Rendered {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  data?: Record<string, string>;
  spec?: { template?: { spec?: { containers: Container[]; volumes?: { name: string; secret?: { secretName: string } }[]; terminationGracePeriodSeconds?: number } } };
}

async function render(...set: string[]): Promise<Rendered[]> {
  const r = await helm(['template', 'sy', CHART, '-n', 'edge', ...set]);
  if (r.code !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as Rendered).filter((d) => d !== null);
}

function pod(docs: Rendered[], name: string): { containers: Container[]; volumes: { name: string; secret?: { secretName: string } }[] } {
  const spec = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === name)?.spec?.template?.spec;
  if (!spec) throw new Error(`no Deployment ${name}`);
  return { containers: spec.containers, volumes: spec.volumes ?? [] };
}

const container = (p: { containers: Container[] }, name: string): Container => {
  const c = p.containers.find((x) => x.name === name);
  if (!c) throw new Error(`no container ${name} in ${p.containers.map((x) => x.name).join(', ')}`);
  return c;
};

describe('the AI extension and xDS TLS in the chart', () => {
  it('runs the AI extension next to Envoy, on loopback, and tells the controller where Envoy reaches it', async () => {
    const docs = await render('--set', 'envoy.fixed.enabled=true', '--set', 'aiExtension.port=18101', '--set', 'aiExtension.metricsPort=9191');
    const envoy = pod(docs, 'sy-switchyard-envoy');
    expect(envoy.containers.map((c) => c.name)).toEqual(['envoy', 'ai-extension']);
    const ext = container(envoy, 'ai-extension');
    // The controller's Service name and xDS port, where its credentials come from; the Envoy admin API it warms through.
    expect(ext.args).toEqual(['ai-extension', '--xds=sy-switchyard.edge.svc:18000', '--host=127.0.0.1', '--port=18101', '--metrics-port=9191', '--log-level=info', '--xds-tls-dir=/etc/switchyard/xds-tls', '--warmup-envoy-admin=http://127.0.0.1:19000', '--drain-envoy-admin=http://127.0.0.1:19000', '--drain-wait=70s']);
    expect(ext.ports).toEqual([{ name: 'ai-metrics', containerPort: 9191, protocol: 'TCP' }]);
    expect(ext.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'ai-metrics' });
    expect(ext.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'ai-metrics' });
    const ctl = container(pod(docs, 'sy-switchyard'), 'controller');
    expect(ctl.args).toEqual(expect.arrayContaining(['--ai-extension-address=127.0.0.1', '--ai-extension-port=18101']));
  });

  it('leaves the AI extension and the controller flags out when aiExtension.enabled=false (the drain container takes its place)', async () => {
    const docs = await render('--set', 'envoy.fixed.enabled=true', '--set', 'aiExtension.enabled=false');
    expect(pod(docs, 'sy-switchyard-envoy').containers.map((c) => c.name)).toEqual(['envoy', 'drain']);
    expect(container(pod(docs, 'sy-switchyard'), 'controller').args?.join(' ')).not.toContain('--ai-extension');
  });

  it('by default, has the controller issue the xDS certificates and mounts each component its own, where the code reads it', async () => {
    const docs = await render('--set', 'envoy.fixed.enabled=true');
    const dir = '/etc/switchyard/xds-tls';
    const ctlPod = pod(docs, 'sy-switchyard');
    const envoyPod = pod(docs, 'sy-switchyard-envoy');
    // The controller mounts no certificate: it issues the Secrets and serves its own certificate from memory.
    const ctl = container(ctlPod, 'controller');
    expect(ctlPod.volumes).toEqual([{ name: 'data-plane', configMap: { name: 'sy-switchyard-data-plane' } }]);
    expect(ctl.args).toEqual(expect.arrayContaining(['--xds-tls-secrets=sy-switchyard-xds', '--xds-tls-dns=sy-switchyard.edge.svc,sy-switchyard.edge.svc.cluster.local,sy-switchyard.edge,sy-switchyard']));
    expect(ctl.args?.join(' ')).not.toContain('--xds-tls-dir');
    expect(envoyPod.volumes).toEqual(expect.arrayContaining([
      { name: 'xds-tls', secret: { secretName: 'sy-switchyard-xds-envoy' } },
      { name: 'xds-tls-ai-extension', secret: { secretName: 'sy-switchyard-xds-ai-extension' } },
    ]));
    expect(container(envoyPod, 'envoy').volumeMounts).toContainEqual({ name: 'xds-tls', mountPath: dir, readOnly: true });
    expect(container(envoyPod, 'ai-extension').volumeMounts).toEqual([{ name: 'xds-tls-ai-extension', mountPath: dir, readOnly: true }]);
    expect(container(envoyPod, 'ai-extension').args).toContain(`--xds-tls-dir=${dir}`);
    // Envoy's bootstrap reaches the controller over TLS exactly as buildBootstrap (switchyard bootstrap) writes it.
    const files = { caFile: `${dir}/ca.crt`, certFile: `${dir}/tls.crt`, keyFile: `${dir}/tls.key`, sdsDir: '/etc/envoy' };
    const configMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'sy-switchyard-envoy');
    const bootstrap = parseYaml(configMap?.data?.['envoy.yaml'] ?? '') as { static_resources: { clusters: { name: string; transport_socket?: unknown }[] } };
    const expected = buildBootstrap({
      xds: { host: 'sy-switchyard.edge.svc', port: 18000 },
      nodeId: 'n',
      adminPort: 19000,
      xdsTls: files,
    }) as unknown as typeof bootstrap;
    const xdsCluster = bootstrap.static_resources.clusters.find((c) => c.name === 'switchyard-xds');
    expect(xdsCluster?.transport_socket).toEqual(expected.static_resources.clusters[0]?.transport_socket);
    // The RE2 program size limit the translator admits regexes up to (REGEX_PROGRAM_SIZE_LIMIT).
    expect((bootstrap as unknown as { layered_runtime?: unknown }).layered_runtime).toEqual((expected as unknown as { layered_runtime?: unknown }).layered_runtime);
    // The file-based SDS Secrets through which Envoy reads a renewed certificate (test/protocol/xds-envoy-rotation.test.ts).
    for (const [name, content] of Object.entries(xdsTlsSdsFiles(files))) expect(JSON.parse(configMap?.data?.[name] ?? '{}'), name).toEqual(content);
    // The Secrets' names are the ones the controller writes (src/app/xds-pki.ts pkiNames).
    const names = pkiNames('sy-switchyard-xds');
    const role = docs.find((d) => d.kind === 'Role' && d.metadata.name === 'sy-switchyard-xds-pki') as unknown as { rules: { verbs: string[]; resourceNames?: string[] }[] };
    expect(role.rules).toEqual([
      { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
      { apiGroups: [''], resources: ['secrets'], resourceNames: [names.ca, ...Object.values(names.leaf)], verbs: ['get', 'update'] },
    ]);
  });

  it('refuses to render the AI extension over plaintext xDS, where it would get no key', async () => {
    const r = await helm(['template', 'sy', CHART, '-n', 'edge', '--set', 'xds.tls.enabled=false']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('aiExtension.enabled needs xds.tls.enabled');
    const docs = await render('--set', 'xds.tls.enabled=false', '--set', 'aiExtension.enabled=false', '--set', 'envoy.fixed.enabled=true');
    expect(docs.some((d) => d.metadata.name === 'sy-switchyard-xds-pki')).toBe(false);
    expect(pod(docs, 'sy-switchyard-envoy').volumes.map((v) => v.name)).toEqual(['bootstrap']);
  });
});

describe('per-Gateway data planes in the chart', () => {
  it('tells the controller, in settings its own parser accepts, to create Envoys that reach it as the fixed one does', async () => {
    const docs = await render();
    expect(docs.some((d) => d.kind === 'Deployment' && d.metadata.name === 'sy-switchyard-envoy')).toBe(false);
    const configMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'sy-switchyard-data-plane');
    const settings = parseDataPlaneSettings(JSON.parse(configMap?.data?.['settings.json'] ?? 'null'), 'chart');
    expect(settings.namespace).toBe('edge');
    expect(settings.xds).toEqual({ host: 'sy-switchyard.edge.svc', port: 18000, tlsSecretPrefix: 'sy-switchyard-xds' });
    expect(Object.values(pkiNames(settings.xds.tlsSecretPrefix ?? '').leaf)).toEqual(expect.arrayContaining([`${settings.xds.tlsSecretPrefix}-envoy`, `${settings.xds.tlsSecretPrefix}-ai-extension`]));
    expect(settings.aiExtension).toMatchObject({ image: 'ghcr.io/switchyard-dev/switchyard:0.1.0', port: 18001, metricsPort: 9091 });
    const ctl = container(pod(docs, 'sy-switchyard'), 'controller');
    expect(ctl.args).toContain('--data-plane=/etc/switchyard/data-plane/settings.json');
    expect(ctl.volumeMounts).toEqual([{ name: 'data-plane', mountPath: '/etc/switchyard/data-plane', readOnly: true }]);
    const gc = docs.find((d) => d.kind === 'GatewayClass') as unknown as { metadata: { name: string }; spec: { controllerName: string } };
    expect(gc.metadata.name).toBe('switchyard');
    expect(gc.spec.controllerName).toBe(CONTROLLER_NAME);
  });

  it('drains the fixed Envoy before its pod stops exactly as a per-Gateway data plane, with envoy.drain\'s times', async () => {
    const docs = await render('--set', 'envoy.fixed.enabled=true', '--set', 'envoy.drain.acceptSeconds=8', '--set', 'envoy.drain.timeoutSeconds=300');
    const settings = parseDataPlaneSettings(JSON.parse(docs.find((d) => d.metadata.name === 'sy-switchyard-data-plane')?.data?.['settings.json'] ?? 'null'), 'chart');
    expect(settings.envoy).toMatchObject({ drainAcceptSeconds: 8, drainTimeoutSeconds: 300 });
    const provisioned = dataPlaneObjects({ namespace: 'team-a', name: 'edge', className: 'switchyard', addresses: [] }, [80], settings).deployment as unknown as Rendered;
    const fixed = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'sy-switchyard-envoy');
    const drainParts = (d: Rendered | undefined): unknown => {
      const spec = d?.spec?.template?.spec;
      const envoy = spec?.containers.find((c) => c.name === 'envoy');
      const ext = spec?.containers.find((c) => c.name === 'ai-extension');
      return {
        grace: spec?.terminationGracePeriodSeconds,
        envoyArgs: envoy?.args?.slice(envoy.args.indexOf('--drain-strategy')),
        envoyHook: envoy?.lifecycle,
        extensionHook: ext?.lifecycle,
        extensionArgs: ext?.args?.filter((a) => a.startsWith('--drain-')),
      };
    };
    expect(drainParts(fixed)).toEqual(drainParts(provisioned));
    expect(drainParts(fixed)).toEqual({
      grace: 323,
      envoyArgs: ['--drain-strategy', 'immediate'],
      // By number: kubelet looks a hook's port name up in Envoy's own ports, where ai-metrics is not.
      envoyHook: { preStop: { httpGet: { path: '/envoy/drained', port: 9091 } } },
      extensionHook: { preStop: { exec: { command: ['/usr/local/bin/node', '/app/bin/switchyard.js', 'envoy-drain', '--admin', 'http://127.0.0.1:19000', '--accept-time', '8s', '--drain-time', '300s'] } } },
      extensionArgs: ['--drain-envoy-admin=http://127.0.0.1:19000', '--drain-wait=313s'],
    });
  });

  it('drains an Envoy without the AI extension too, the fixed one exactly as a per-Gateway data plane: a drain container with no Secret', async () => {
    const docs = await render('--set', 'envoy.fixed.enabled=true', '--set', 'aiExtension.enabled=false', '--set', 'xds.tls.enabled=false', '--set', 'envoy.drain.acceptSeconds=8', '--set', 'envoy.drain.timeoutSeconds=300', '--set', 'envoy.drain.sidecar.port=19102');
    const settings = parseDataPlaneSettings(JSON.parse(docs.find((d) => d.metadata.name === 'sy-switchyard-data-plane')?.data?.['settings.json'] ?? 'null'), 'chart');
    expect(settings.aiExtension).toBeUndefined();
    expect(settings.drainSidecar).toEqual({ image: 'ghcr.io/switchyard-dev/switchyard:0.1.0', imagePullPolicy: 'IfNotPresent', port: 19102, resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '128Mi' } } });
    const provisioned = dataPlaneObjects({ namespace: 'team-a', name: 'edge', className: 'switchyard', addresses: [] }, [80], settings).deployment as unknown as Rendered;
    const fixed = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'sy-switchyard-envoy');
    const drainParts = (d: Rendered | undefined): unknown => {
      const spec = d?.spec?.template?.spec;
      const envoy = spec?.containers.find((c) => c.name === 'envoy');
      return { grace: spec?.terminationGracePeriodSeconds, envoyArgs: envoy?.args?.slice(envoy.args.indexOf('--drain-strategy')), envoyHook: envoy?.lifecycle, drain: spec?.containers.find((c) => c.name === 'drain') };
    };
    expect(drainParts(fixed)).toEqual(drainParts(provisioned));
    expect(drainParts(fixed)).toEqual({
      grace: 323,
      envoyArgs: ['--drain-strategy', 'immediate'],
      envoyHook: { preStop: { httpGet: { path: '/envoy/drained', port: 19102 } } },
      drain: {
        name: 'drain',
        image: 'ghcr.io/switchyard-dev/switchyard:0.1.0',
        imagePullPolicy: 'IfNotPresent',
        args: ['drain-sidecar', '--admin=http://127.0.0.1:19000', '--port=19102', '--drain-wait=313s'],
        lifecycle: { preStop: { exec: { command: ['/usr/local/bin/node', '/app/bin/switchyard.js', 'envoy-drain', '--admin', 'http://127.0.0.1:19000', '--accept-time', '8s', '--drain-time', '300s'] } } },
        ports: [{ name: 'drain', containerPort: 19102, protocol: 'TCP' }],
        readinessProbe: { httpGet: { path: '/readyz', port: 'drain' }, periodSeconds: 5 },
        resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '128Mi' } },
        securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
      },
    });
    const fixedPod = pod(docs, 'sy-switchyard-envoy');
    expect(kubeletPort(container(fixedPod, 'envoy'), (container(fixedPod, 'envoy').lifecycle as { preStop: { httpGet: { port: unknown } } }).preStop.httpGet.port)).toBe(19102);
    expect(fixedPod.volumes.every((v) => v.secret === undefined)).toBe(true);
  });

  it('turns the drain container off with envoy.drain.sidecar.enabled=false: Envoy alone, with no hook, in the fixed pod and in settings', async () => {
    const docs = await render('--set', 'envoy.fixed.enabled=true', '--set', 'aiExtension.enabled=false', '--set', 'envoy.drain.sidecar.enabled=false');
    const envoyPod = pod(docs, 'sy-switchyard-envoy');
    expect(envoyPod.containers.map((c) => c.name)).toEqual(['envoy']);
    expect(container(envoyPod, 'envoy').lifecycle).toBeUndefined();
    const settings = parseDataPlaneSettings(JSON.parse(docs.find((d) => d.metadata.name === 'sy-switchyard-data-plane')?.data?.['settings.json'] ?? 'null'), 'chart');
    expect(settings.drainSidecar).toBeUndefined();
    // With the AI extension the setting changes nothing: the extension drains.
    const withExtension = await render('--set', 'envoy.fixed.enabled=true', '--set', 'envoy.drain.sidecar.enabled=false');
    expect(pod(withExtension, 'sy-switchyard-envoy').containers.map((c) => c.name)).toEqual(['envoy', 'ai-extension']);
    expect(container(pod(withExtension, 'sy-switchyard-envoy'), 'envoy').lifecycle).toEqual({ preStop: { httpGet: { path: '/envoy/drained', port: 9091 } } });
  });

  it('hands aiExtension.limitsRedis to the AI extension of every per-Gateway data plane, as to the fixed Envoy\'s', async () => {
    const url = 'redis://redis.edge.svc:6379';
    const docs = await render('--set', `aiExtension.limitsRedis=${url}`, '--set', 'envoy.fixed.enabled=true');
    const configMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'sy-switchyard-data-plane');
    const settings = parseDataPlaneSettings(JSON.parse(configMap?.data?.['settings.json'] ?? 'null'), 'chart');
    expect(settings.aiExtension?.limitsRedis).toBe(url);
    expect(container(pod(docs, 'sy-switchyard-envoy'), 'ai-extension').args).toContain(`--limits-redis=${url}`);
    const unset = await render();
    const plain = parseDataPlaneSettings(JSON.parse(unset.find((d) => d.metadata.name === 'sy-switchyard-data-plane')?.data?.['settings.json'] ?? 'null'), 'chart');
    expect(plain.aiExtension?.limitsRedis).toBeUndefined();
  });

  it('turns off with envoy.provision=false: no settings, no flag, no Role for data planes', async () => {
    const docs = await render('--set', 'envoy.provision=false');
    expect(docs.some((d) => d.metadata.name === 'sy-switchyard-data-plane')).toBe(false);
    expect(container(pod(docs, 'sy-switchyard'), 'controller').args?.join(' ')).not.toContain('--data-plane');
  });

  it('gives the fixed Envoy a readiness probe on admin /ready through its readiness port, not a listener port', async () => {
    const docs = await render('--set', 'envoy.fixed.enabled=true');
    const envoy = container(pod(docs, 'sy-switchyard-envoy'), 'envoy');
    expect(envoy.readinessProbe?.httpGet).toEqual({ path: '/ready', port: 'ready' });
    expect(envoy.ports).toContainEqual({ name: 'ready', containerPort: 19001, protocol: 'TCP' });
    const configMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'sy-switchyard-envoy');
    const bootstrap = parseYaml(configMap?.data?.['envoy.yaml'] ?? '') as { static_resources: { listeners: unknown[]; clusters: { name: string }[] } };
    const ready = readinessResources(19000, 19001);
    expect(bootstrap.static_resources.listeners).toEqual([ready.listener]);
    expect(bootstrap.static_resources.clusters.find((c) => c.name === 'switchyard-admin')).toEqual(ready.cluster);
  });

  it('refuses a mistyped or wrongly typed value (values.schema.json) and pod ports that collide', async () => {
    for (const [set, message] of [
      ['envoy.provison=false', "additional properties 'provison' not allowed"],
      ['replicas=two', 'got string, want integer'],
      ['envoy.fixed.service.type=Ingress', 'envoy/fixed/service/type'],
      ['aiExtension.port=19001', 'must differ'],
    ] as const) {
      const r = await helm(['template', 'sy', CHART, '-n', 'edge', '--set', set]);
      expect(r.code, set).not.toBe(0);
      expect(r.stderr, set).toContain(message);
    }
    // The drain container's port counts where it runs: in a pod without the AI extension.
    const r = await helm(['template', 'sy', CHART, '-n', 'edge', '--set', 'aiExtension.enabled=false', '--set', 'envoy.drain.sidecar.port=19000']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('envoy.drain.sidecar.port) share one pod and must differ');
    expect((await helm(['template', 'sy', CHART, '-n', 'edge', '--set', 'envoy.drain.sidecar.port=19000'])).code).toBe(0);
    const typo = await helm(['template', 'sy', CHART, '-n', 'edge', '--set', 'envoy.drain.sidecar.enable=false']);
    expect(typo.stderr).toContain("additional properties 'enable' not allowed");
  });
});

describe('helm install into the real API server', () => {
  let ns: { name: string; remove(): Promise<void> };
  let teamA: { name: string; remove(): Promise<void> };
  let teamB: { name: string; remove(): Promise<void> };
  const release = `sy${Date.now().toString(36)}`;
  const sa = () => `system:serviceaccount:${ns.name}:${release}-switchyard`;
  /** `kubectl auth can-i` as the chart's service account; "x/status" asks about the status subresource. */
  const can = async (verb: string, resource: string, ...rest: string[]) => {
    const [kind, sub] = resource.split('/');
    const args = ['auth', 'can-i', '--as', sa(), verb, kind ?? resource, ...(sub ? [`--subresource=${sub}`] : []), ...rest];
    return (await kubectl(args)).stdout.trim();
  };

  beforeAll(async () => {
    ns = await createNamespace('chart');
    teamA = await createNamespace('team-a');
    teamB = await createNamespace('team-b');
    const r = await helm(['install', release, CHART, '-n', ns.name, '--set', 'envoy.fixed.enabled=true', '--set', 'envoy.fixed.service.type=ClusterIP', '--set', `gatewayClass.name=${release}`, '--set', `watchNamespaces={${teamA.name},${ns.name}}`]);
    if (r.code !== 0) throw new Error(`helm install failed: ${r.stderr}`);
  });
  afterAll(async () => {
    await helm(['uninstall', release, '-n', ns.name]);
    await Promise.all([ns?.remove(), teamA?.remove(), teamB?.remove()]);
  });

  it('creates the controller and Envoy Deployments, their Services and the Backend CRD', async () => {
    const names = (await kubectlOk(['get', 'deployments,services,serviceaccounts,configmaps', '-n', ns.name, '-o', 'name'])).split('\n');
    expect(names).toEqual(expect.arrayContaining([
      `deployment.apps/${release}-switchyard`, `deployment.apps/${release}-switchyard-envoy`,
      `service/${release}-switchyard`, `service/${release}-switchyard-envoy`,
      `serviceaccount/${release}-switchyard`, `configmap/${release}-switchyard-envoy`,
    ]));
    // The xDS port serves provider keys to the AI extension: only the chart's Envoy pods may reach it.
    const policy = JSON.parse(await kubectlOk(['get', 'networkpolicy', `${release}-switchyard`, '-n', ns.name, '-o', 'json']));
    expect(policy.spec.podSelector.matchLabels['app.kubernetes.io/component']).toBe('controller');
    const xdsRule = policy.spec.ingress.find((r: { ports: { port: string }[] }) => r.ports.some((p) => p.port === 'xds'));
    expect(xdsRule.from).toEqual([
      { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'switchyard', 'app.kubernetes.io/instance': release, 'app.kubernetes.io/component': 'envoy' } } },
      { podSelector: { matchLabels: { 'app.kubernetes.io/managed-by': 'switchyard', 'app.kubernetes.io/component': 'data-plane' } } },
    ]);
    expect(await kubectlOk(['get', 'gatewayclass', release, '-o', 'jsonpath={.spec.controllerName}'])).toBe('switchyard.dev/gateway-controller');
    expect(await kubectlOk(['get', 'crd', 'backends.switchyard.dev', '-o', 'jsonpath={.status.conditions[?(@.type=="Established")].status}'])).toBe('True');
    const probes = JSON.parse(await kubectlOk(['get', 'deployment', `${release}-switchyard`, '-n', ns.name, '-o', 'jsonpath={.spec.template.spec.containers[0]}']));
    expect(probes.livenessProbe.httpGet.path).toBe('/healthz');
    expect(probes.readinessProbe.httpGet.path).toBe('/readyz');
    expect(probes.args).toContain('controller');
    const envoyPod = JSON.parse(await kubectlOk(['get', 'deployment', `${release}-switchyard-envoy`, '-n', ns.name, '-o', 'jsonpath={.spec.template.spec}'])) as { containers: Container[] };
    expect(envoyPod.containers.map((c) => c.name)).toEqual(['envoy', 'ai-extension']);
    expect(container(envoyPod, 'ai-extension').args).toContain(`--xds=${release}-switchyard.${ns.name}.svc:18000`);
  });

  it('accepts the plaintext variant (no certificates, no AI extension) in a server-side dry run', async () => {
    // Another release name: the objects are new, so the API server validates them whole.
    const other = `${release}plain`;
    const r = await helm(['template', other, CHART, '-n', ns.name, '--set', 'envoy.fixed.enabled=true', '--set', 'envoy.fixed.service.type=ClusterIP', '--set', `gatewayClass.name=${other}`, '--set', 'xds.tls.enabled=false', '--set', 'aiExtension.enabled=false']);
    expect(r.code, r.stderr).toBe(0);
    const applied = await kubectl(['apply', '--dry-run=server', '-n', ns.name, '-f', '-'], r.stdout);
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    expect(applied.stdout).toContain(`deployment.apps/${other}-switchyard-envoy created (server dry run)`);
    expect(applied.stdout).toContain(`deployment.apps/${other}-switchyard created (server dry run)`);
  });

  it('lets the controller create and renew its four xDS certificate Secrets, and no other Secret', async () => {
    const prefix = `${release}-switchyard-xds`;
    const named = async (verb: string, name: string) => (await kubectl(['auth', 'can-i', '--as', sa(), verb, `secrets/${name}`, '-n', ns.name])).stdout.trim();
    expect(await can('create', 'secrets', '-n', ns.name)).toBe('yes');
    for (const name of [`${prefix}-ca`, `${prefix}-controller`, `${prefix}-envoy`, `${prefix}-ai-extension`]) {
      expect(`get ${name}: ${await named('get', name)}`).toBe(`get ${name}: yes`);
      expect(`update ${name}: ${await named('update', name)}`).toBe(`update ${name}: yes`);
      expect(`delete ${name}: ${await named('delete', name)}`).toBe(`delete ${name}: no`);
    }
    expect(await named('update', 'someone-elses-secret')).toBe('no');
    expect(await can('update', 'secrets', '-n', ns.name)).toBe('no');
    expect(await can('create', 'secrets', '-n', teamB.name)).toBe('no');
  });

  it('grants the service account what the controller needs', async () => {
    for (const [verb, resource, where] of [
      ['list', 'backends.switchyard.dev', teamA.name], ['watch', 'backends.switchyard.dev', teamA.name],
      ['patch', 'backends.switchyard.dev/status', teamA.name], ['update', 'httproutes.gateway.networking.k8s.io/status', teamA.name],
      ['update', 'gateways.gateway.networking.k8s.io/status', teamA.name], ['list', 'secrets', teamA.name], ['list', 'endpointslices.discovery.k8s.io', teamA.name],
      ['list', 'referencegrants.gateway.networking.k8s.io', teamA.name], ['create', 'events', teamA.name], ['list', 'services', ns.name],
      ['update', 'leases.coordination.k8s.io', ns.name], ['create', 'leases.coordination.k8s.io', ns.name],
      // Each replica's share of its Envoys' state, read by the others (src/app/replica-share.ts).
      ...(['get', 'list', 'watch', 'create', 'patch'] as const).map((v) => [v, 'configmaps', ns.name] as const),
      // The data planes, in the release namespace (src/infrastructure/kubernetes.ts).
      ...(['deployments.apps', 'services', 'serviceaccounts', 'configmaps'] as const).flatMap((r) =>
        (['get', 'list', 'watch', 'create', 'patch', 'delete'] as const).map((v) => [v, r, ns.name] as const)),
    ] as const) {
      expect(`${verb} ${resource} -n ${where}: ${await can(verb, resource, '-n', where)}`).toBe(`${verb} ${resource} -n ${where}: yes`);
    }
    expect(await can('list', 'gatewayclasses.gateway.networking.k8s.io')).toBe('yes');
    expect(await can('patch', 'gatewayclasses.gateway.networking.k8s.io/status')).toBe('yes');
    expect(await can('list', 'namespaces')).toBe('yes');
  });

  it('grants nothing else', async () => {
    for (const [verb, resource, where] of [
      ['list', 'secrets', teamB.name], ['list', 'backends.switchyard.dev', teamB.name], // not a watched namespace
      ['create', 'secrets', teamA.name], ['update', 'secrets', teamA.name], ['delete', 'backends.switchyard.dev', teamA.name],
      ['update', 'backends.switchyard.dev', teamA.name], ['create', 'httproutes.gateway.networking.k8s.io', teamA.name],
      ['list', 'pods', teamA.name], ['create', 'leases.coordination.k8s.io', teamA.name], ['delete', 'leases.coordination.k8s.io', ns.name],
      ['list', 'configmaps', teamA.name], ['patch', 'backends.switchyard.dev/status', teamB.name],
      // Data planes only in the release namespace; pods are the Deployment controller's.
      ['create', 'deployments.apps', teamA.name], ['patch', 'services', teamA.name], ['create', 'serviceaccounts', teamA.name],
      ['create', 'pods', ns.name], ['delete', 'pods', ns.name], ['update', 'deployments.apps', ns.name], ['create', 'roles.rbac.authorization.k8s.io', ns.name],
    ] as const) {
      expect(`${verb} ${resource} -n ${where}: ${await can(verb, resource, '-n', where)}`).toBe(`${verb} ${resource} -n ${where}: no`);
    }
    expect(await can('create', 'customresourcedefinitions.apiextensions.k8s.io')).toBe('no');
    expect(await can('delete', 'gatewayclasses.gateway.networking.k8s.io')).toBe('no');
  });
});

describe('monitoring and tracing in the chart', () => {
  const MONITORING = ['--set', 'metrics.serviceMonitor.enabled=true', '--set', 'metrics.dashboard.enabled=true', '--set', 'envoy.fixed.enabled=true'];

  it('has no ServiceMonitor, PodMonitor, dashboard or OTLP endpoint by default', async () => {
    const docs = await render('--set', 'envoy.fixed.enabled=true');
    expect(docs.filter((d) => ['ServiceMonitor', 'PodMonitor'].includes(d.kind) || d.metadata.name.endsWith('-dashboard'))).toEqual([]);
    for (const d of docs) expect(JSON.stringify(d)).not.toContain('--otlp-endpoint');
  });

  it('scrapes the controller Service by its labels and port name, and the AI extension beside each Envoy', async () => {
    const docs = await render(...MONITORING, '--set', 'metrics.serviceMonitor.labels.release=prom');
    const monitor = docs.find((d) => d.kind === 'ServiceMonitor') as unknown as { metadata: { labels: Record<string, string> }; spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] } };
    const service = docs.find((d) => d.kind === 'Service' && d.metadata.name === 'sy-switchyard') as unknown as { metadata: { labels: Record<string, string> }; spec: { ports: { name: string }[] } };
    expect(monitor.metadata.labels['release']).toBe('prom');
    for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels)) expect(service.metadata.labels[k], k).toBe(v);
    expect(service.spec.ports.map((p) => p.name)).toContain(monitor.spec.endpoints[0]?.port);
    const podMonitor = docs.find((d) => d.kind === 'PodMonitor') as unknown as { spec: { podMetricsEndpoints: { port: string }[] } };
    const ext = container(pod(docs, 'sy-switchyard-envoy'), 'ai-extension');
    expect(ext.ports?.map((p) => p.name)).toContain(podMonitor.spec.podMetricsEndpoints[0]?.port);
  });

  it('ships a Grafana dashboard whose queries name only series Switchyard exports', async () => {
    const docs = await render(...MONITORING);
    const cm = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'sy-switchyard-dashboard');
    expect(cm?.metadata.labels?.['grafana_dashboard']).toBe('1');
    const dashboard = JSON.parse(cm?.data?.['switchyard.json'] ?? '{}') as { uid: string; panels: { targets: { expr: string }[] }[] };
    expect(dashboard.uid).toBe('switchyard-ai');
    const exported = new Set<string>();
    for (const registry of [createMetrics({ processMetrics: false }).registry, createAiExtensionMetrics().registry]) {
      for (const m of registry.getMetricsAsArray()) for (const suffix of ['', '_total', '_bucket', '_sum', '_count']) exported.add(`${m.name}${suffix}`);
    }
    const used = dashboard.panels.flatMap((p) => p.targets.flatMap((t) => t.expr.match(/switchyard_[a-z_]+/g) ?? []));
    expect(used.length).toBeGreaterThan(10);
    expect(used.filter((name) => !exported.has(name))).toEqual([]);
    for (const name of ['switchyard_ai_time_to_first_token_seconds_bucket', 'switchyard_ai_request_duration_seconds_bucket', 'switchyard_ai_request_tokens_bucket']) expect(used).toContain(name);
  });

  it('gives the controller and every AI extension the OTLP endpoint, in settings the controller parses', async () => {
    const endpoint = 'http://otel-collector.observability:4317';
    const docs = await render('--set', `tracing.otlpEndpoint=${endpoint}`, '--set', 'envoy.fixed.enabled=true');
    expect(container(pod(docs, 'sy-switchyard'), 'controller').args).toContain(`--otlp-endpoint=${endpoint}`);
    expect(container(pod(docs, 'sy-switchyard-envoy'), 'ai-extension').args).toContain(`--otlp-endpoint=${endpoint}`);
    const configMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'sy-switchyard-data-plane');
    const settings = parseDataPlaneSettings(JSON.parse(configMap?.data?.['settings.json'] ?? 'null'), 'chart');
    expect(settings.aiExtension?.otlpEndpoint).toBe(endpoint);
  });

  it('refuses an OTLP endpoint that is not an http(s) URL', async () => {
    const r = await helm(['template', 'sy', CHART, '-n', 'edge', '--set', 'tracing.otlpEndpoint=otel-collector:4317']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('tracing/otlpEndpoint');
  });
});
