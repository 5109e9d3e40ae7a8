import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadKubeConfig } from '../../src/providers/kubernetes/kubeconfig.js';

const dir = mkdtempSync(join(tmpdir(), 'switchyard-kubeconfig-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function kubeconfig(name: string, server: string): string {
  const file = join(dir, name);
  writeFileSync(file, `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "${server}", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`);
  return file;
}

describe('loadKubeConfig', () => {
  const flag = kubeconfig('flag.yaml', 'https://flag.example:6443');
  const env = kubeconfig('env.yaml', 'https://env.example:6443');
  const home = join(dir, 'home');
  mkdirSync(join(home, '.kube'), { recursive: true });
  renameSync(kubeconfig('home.yaml', 'https://home.example:6443'), join(home, '.kube', 'config'));

  it('takes --kubeconfig first', () => {
    const r = loadKubeConfig({ kubeconfig: flag, env: { KUBECONFIG: env, KUBERNETES_SERVICE_HOST: '10.0.0.1' }, home });
    expect(r).toMatchObject({ source: flag, server: 'https://flag.example:6443' });
  });

  it('then $KUBECONFIG, before the in-cluster service account', () => {
    expect(loadKubeConfig({ env: { KUBECONFIG: env, KUBERNETES_SERVICE_HOST: '10.0.0.1' }, home }).server).toBe('https://env.example:6443');
  });

  it('then the in-cluster service account when KUBERNETES_SERVICE_HOST is set', () => {
    // The client library reads the host and port from the process environment.
    const saved = { host: process.env['KUBERNETES_SERVICE_HOST'], port: process.env['KUBERNETES_SERVICE_PORT'] };
    process.env['KUBERNETES_SERVICE_HOST'] = '10.96.0.1';
    process.env['KUBERNETES_SERVICE_PORT'] = '443';
    try {
      expect(loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1' }, home })).toMatchObject({ source: 'in-cluster service account', server: 'https://10.96.0.1:443' });
    } finally {
      for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('then ~/.kube/config', () => {
    expect(loadKubeConfig({ env: {}, home })).toMatchObject({ source: join(home, '.kube', 'config'), server: 'https://home.example:6443' });
  });

  it('says what to do when there is nothing to load', () => {
    expect(() => loadKubeConfig({ env: {}, home: join(dir, 'nobody') })).toThrow(/no Kubernetes configuration: pass --kubeconfig PATH, set KUBECONFIG/);
    expect(() => loadKubeConfig({ kubeconfig: join(dir, 'missing.yaml'), env: {} })).toThrow(/kubeconfig .*missing\.yaml \(from --kubeconfig\) does not exist: check the path/);
    expect(() => loadKubeConfig({ env: { KUBECONFIG: join(dir, 'missing.yaml') }, home })).toThrow(/KUBECONFIG names .*missing\.yaml, and none of them exists/);
  });
});
