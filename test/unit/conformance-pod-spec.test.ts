import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { mountScript } from '../conformance/pod-process.js';
import { commandFor, containerEnv, imageRepository, UnsupportedPod, volumeFiles, type KeyLookup, type Pod } from '../conformance/pod-spec.js';

// The conformance node agent turns pod specs into local processes; these are the parts a wrong
// reading of the Pod API would break without any root privileges or cluster involved.

const ECHO = 'gcr.io/k8s-staging-gateway-api/echo-basic:v20240412-v1.0.0-394-g40c666fd';
const facts = { podIp: '192.0.2.7', hostIp: '192.0.2.1', nodeName: 'n1' };

function pod(container: Partial<Pod['spec']['containers'][number]>, extra: Partial<Pod['spec']> = {}): Pod {
  return {
    metadata: { name: 'infra-backend-v1-abc', namespace: 'gateway-conformance-infra', uid: 'u-1', labels: { app: 'infra-backend-v1' } },
    spec: { containers: [{ name: 'c', image: ECHO, ...container }], ...extra },
  };
}

const store: Record<string, Record<string, Buffer>> = {
  'Secret/tls': { 'tls.crt': Buffer.from('CERT'), 'tls.key': Buffer.from('KEY') },
  'ConfigMap/coredns': { Corefile: Buffer.from('.:53 {}') },
};
const lookup: KeyLookup = async (kind, name) => store[`${kind}/${name}`];

describe('conformance node: pod spec', () => {
  it('maps the suite images to local binaries by repository, ignoring the tag', () => {
    expect(imageRepository(ECHO)).toBe('gcr.io/k8s-staging-gateway-api/echo-basic');
    expect(imageRepository('registry.k8s.io/coredns/coredns:v1.12.2')).toBe('registry.k8s.io/coredns/coredns');
    expect(imageRepository('localhost:5000/x@sha256:abc')).toBe('localhost:5000/x');
    expect(commandFor(pod({ args: ['-conf', '/root/Corefile'] }), 0, '/b')).toEqual({ file: '/b/echo-basic', args: ['-conf', '/root/Corefile'] });
  });

  it('refuses any other image, naming the pod, the field and the image', () => {
    expect(() => commandFor(pod({ image: 'nginx:1.27' }), 0, '/b')).toThrow(UnsupportedPod);
    expect(() => commandFor(pod({ image: 'nginx:1.27' }), 0, '/b')).toThrow(/gateway-conformance-infra\/infra-backend-v1-abc spec\.containers\[0\]\.image: nginx:1\.27/);
    expect(() => commandFor(pod({ command: ['/bin/sh'] }), 0, '/b')).toThrow(/spec\.containers\[0\]\.command/);
  });

  it('resolves env like the kubelet: fieldRef, secret keys, $(VAR) expansion, HOSTNAME', async () => {
    const env = await containerEnv(
      pod({
        env: [
          { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
          { name: 'NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
          { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
          { name: 'APP', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } },
          { name: 'KEY', valueFrom: { secretKeyRef: { name: 'tls', key: 'tls.key' } } },
          { name: 'URL', value: 'http://$(IP):3000/$$(IP)' },
        ],
      }),
      0,
      facts,
      lookup,
    );
    expect(env).toEqual({
      HOSTNAME: 'infra-backend-v1-abc',
      POD_NAME: 'infra-backend-v1-abc',
      NAMESPACE: 'gateway-conformance-infra',
      IP: '192.0.2.7',
      APP: 'infra-backend-v1',
      KEY: 'KEY',
      URL: 'http://192.0.2.7:3000/$(IP)',
    });
  });

  it('refuses an unknown fieldRef instead of starting without the variable', async () => {
    await expect(containerEnv(pod({ env: [{ name: 'X', valueFrom: { fieldRef: { fieldPath: 'spec.priority' } } }] }), 0, facts, lookup)).rejects.toThrow(
      /env\[0\]\.valueFrom\.fieldRef\.fieldPath: spec\.priority/,
    );
  });

  it('writes secret volume items at their paths with the default mode', async () => {
    const files = await volumeFiles(pod({}), { name: 'v', secret: { secretName: 'tls', defaultMode: 0o400, items: [{ key: 'tls.crt', path: 'crt' }, { key: 'tls.key', path: 'key' }] } }, lookup);
    expect(files.map((f) => [f.path, f.content.toString(), f.mode])).toEqual([
      ['crt', 'CERT', 0o400],
      ['key', 'KEY', 0o400],
    ]);
    await expect(volumeFiles(pod({}), { name: 'v', secret: { secretName: 'missing' } }, lookup)).rejects.toThrow(/Secret gateway-conformance-infra\/missing not found/);
  });
});

describe('conformance node: mount script', () => {
  it('binds over an existing path and overlays the nearest existing parent of a missing one', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sy-mounts-'));
    const script = mountScript(
      [
        { source: '/state/v/conf', target: dir },
        { source: "/state/v/it's", target: path.join(dir, 'missing', 'deeper') },
      ],
      '/state/scratch',
    );
    expect(script).toContain(`mount --bind '/state/v/conf' '${dir}'`);
    expect(script).toContain(`lowerdir=${dir},upperdir=/state/scratch/overlay-1/upper`);
    expect(script).toContain(`mount --bind '/state/v/it'\\''s' '${dir}/missing/deeper'`);
    // The binary is opened before any mount can hide it.
    expect(script.indexOf('exec 3<"$1"')).toBeLessThan(script.indexOf('mount '));
    expect(script.trimEnd().endsWith('exec /proc/self/fd/3 "$@"')).toBe(true);
    // The script is valid sh.
    const file = path.join(dir, 'start.sh');
    writeFileSync(file, script);
    execFileSync('sh', ['-n', file]);
  });
});
