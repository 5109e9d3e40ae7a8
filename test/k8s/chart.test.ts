import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { createNamespace, kubectl, kubectlOk } from '../support/kube.js';

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
    { name: 'watch-namespaces-xds-tls', set: ['--set', 'watchNamespaces={team-a,team-b}', '--set', 'xds.tls.enabled=true', '--set', 'xds.tls.secretName=xds-tls', '--set', 'envoy.enabled=false'] },
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
    const r = await helm(['install', release, CHART, '-n', ns.name, '--set', 'envoy.service.type=ClusterIP', '--set', `watchNamespaces={${teamA.name},${ns.name}}`]);
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
    expect(await kubectlOk(['get', 'crd', 'backends.switchyard.dev', '-o', 'jsonpath={.status.conditions[?(@.type=="Established")].status}'])).toBe('True');
    const probes = JSON.parse(await kubectlOk(['get', 'deployment', `${release}-switchyard`, '-n', ns.name, '-o', 'jsonpath={.spec.template.spec.containers[0]}']));
    expect(probes.livenessProbe.httpGet.path).toBe('/healthz');
    expect(probes.readinessProbe.httpGet.path).toBe('/readyz');
    expect(probes.args).toContain('controller');
  });

  it('grants the service account what the controller needs', async () => {
    for (const [verb, resource, where] of [
      ['list', 'backends.switchyard.dev', teamA.name], ['watch', 'backends.switchyard.dev', teamA.name],
      ['patch', 'backends.switchyard.dev/status', teamA.name], ['update', 'httproutes.gateway.networking.k8s.io/status', teamA.name],
      ['update', 'gateways.gateway.networking.k8s.io/status', teamA.name], ['list', 'secrets', teamA.name], ['list', 'endpointslices.discovery.k8s.io', teamA.name],
      ['list', 'referencegrants.gateway.networking.k8s.io', teamA.name], ['create', 'events', teamA.name], ['list', 'services', ns.name],
      ['update', 'leases.coordination.k8s.io', ns.name], ['create', 'leases.coordination.k8s.io', ns.name],
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
      ['list', 'configmaps', ns.name], ['patch', 'backends.switchyard.dev/status', teamB.name],
    ] as const) {
      expect(`${verb} ${resource} -n ${where}: ${await can(verb, resource, '-n', where)}`).toBe(`${verb} ${resource} -n ${where}: no`);
    }
    expect(await can('create', 'customresourcedefinitions.apiextensions.k8s.io')).toBe('no');
    expect(await can('delete', 'gatewayclasses.gateway.networking.k8s.io')).toBe('no');
  });
});
