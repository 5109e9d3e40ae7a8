import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serve, type RunningServe } from '../../src/app/serve.js';
import { runDrill } from '../../src/cli/drill.js';
import { quietLogger } from './status-fakes.js';
import { REPO_ROOT as ROOT, runSwitchyard as cli } from '../support/cli-run.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';

/** `switchyard translate` exit codes and `switchyard status`, run as a user runs them. */

/** The examples, plus a route to a Backend that does not exist and a Backend member whose Secret is missing. */
const BROKEN = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lost, namespace: ai}
spec:
  parentRefs: [{name: ai-gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /lost}}]
    backendRefs: [{group: switchyard.dev, kind: Backend, name: nowhere}]
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: half, namespace: ai}
spec:
  type: AI
  ai:
    multipool:
      priorities:
      - pool:
        - name: keyless
          provider:
            openai: {model: gpt-4o, authToken: {kind: SecretRef, secretRef: {name: no-such-secret}}}
      - pool:
        - name: fine
          provider:
            openaiCompatible: {host: fine.llm.demo, port: 80, model: m, authToken: {kind: SecretRef, secretRef: {name: primary-key}}}
`;

let dir = '';
let good = '';
let broken = '';
let running: RunningServe | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'switchyard-cli-status-'));
  good = join(dir, 'good');
  broken = join(dir, 'broken');
  cpSync(join(ROOT, 'examples'), good, { recursive: true, filter: (src) => !src.includes('/demo') });
  cpSync(good, broken, { recursive: true });
  writeFileSync(join(broken, 'broken.yaml'), BROKEN);
  running = await serve({ config: broken, ...LOOPBACK_SERVE_PORTS, envoy: {}, logger: quietLogger, aiExtension: false });
});

afterAll(async () => {
  await running?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('switchyard translate exit codes', () => {
  it('exits 0 when every object is fine', async () => {
    const r = await cli(['translate', '-f', good]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('exits 1 and names every object with a False condition; --allow-problems exits 0', async () => {
    const [strict, allowed] = await Promise.all([cli(['translate', '-f', broken]), cli(['translate', '-f', broken, '--allow-problems'])]);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toMatch(/^not ok: HTTPRoute ai\/lost ResolvedRefs=False\(BackendNotFound\)/m);
    expect(strict.stderr).toMatch(/^not ok: Backend ai\/half ResolvedRefs=False\(SecretNotFound\)/m);
    expect(strict.stderr).toContain('switchyard translate: 2 objects with a False condition; exit 1 (--allow-problems to exit 0)\n');
    // The report is printed all the same.
    expect(JSON.parse(strict.stdout)).toHaveProperty('statuses');
    expect(allowed.code).toBe(0);
    expect(allowed.stderr).toContain('(--allow-problems: exit 0)');
  });

  it('counts configuration problems (an unreadable document) too', async () => {
    const withProblem = join(dir, 'problem');
    cpSync(good, withProblem, { recursive: true });
    writeFileSync(join(withProblem, 'bad.yaml'), 'kind: [\n');
    const r = await cli(['translate', '-f', withProblem]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^problem: .*bad\.yaml/m);
    expect(r.stderr).toContain('switchyard translate: 1 configuration problem; exit 1');
  });
});

describe('switchyard status', () => {
  it('shows Gateways, HTTPRoutes and Backends from a file, with each member usable or why not', async () => {
    const r = await cli(['status', '-f', broken]);
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^KIND +NAME +STATUS$/);
    expect(r.stdout).not.toContain('GatewayClass');
    expect(r.stdout).toMatch(/^Gateway +ai\/ai-gateway +Accepted=True/m);
    expect(r.stdout).toMatch(/^HTTPRoute +ai\/lost *$/m);
    expect(r.stdout).toMatch(/^ +parent ai-gateway +Accepted=True ResolvedRefs=False\(BackendNotFound\)$/m);
    expect(r.stdout).toMatch(/^Backend +ai\/half +Accepted=True ResolvedRefs=False\(SecretNotFound\).* members 1\/2 usable, 1\/2 priorities served$/m);
    expect(r.stdout).toMatch(/^ +priority 0 +not served: no usable member$/m);
    expect(r.stdout).toMatch(/^ +keyless \(openai\) +out: SecretNotFound: .*no-such-secret/m);
    expect(r.stdout).toMatch(/^ +fine \(openaiCompatible\) +usable$/m);
  });

  it('exits 0 on a healthy configuration', async () => {
    const r = await cli(['status', '-f', good]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Backend +ai\/chat +Accepted=True ResolvedRefs=True/m);
  });

  it('reads a running serve\'s /statusz with --from, as a table and as JSON', async () => {
    const from = `http://127.0.0.1:${running?.metricsPort}`;
    const [table, json] = await Promise.all([cli(['status', '--from', from]), cli(['status', '--from', from, '-o', 'json'])]);
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(/^ +keyless \(openai\) +out: SecretNotFound/m);
    expect(table.stdout).toMatch(/^ +parent ai-gateway +Accepted=True ResolvedRefs=False\(BackendNotFound\)$/m);
    const parsed = JSON.parse(json.stdout) as { source: string; statuses: { kind: string; name: string; usableMembers?: number }[] };
    expect(parsed.source).toBe(`${from}/statusz`);
    expect(parsed.statuses.find((s) => s.kind === 'Backend' && s.name === 'half')?.usableMembers).toBe(1);
    expect(parsed.statuses.map((s) => s.kind)).not.toContain('GatewayClass');
  });

  it('names the address and the flag when nothing answers at --from', async () => {
    const r = await cli(['status', '--from', 'http://127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^switchyard: --from http:\/\/127\.0\.0\.1:1: cannot read http:\/\/127\.0\.0\.1:1\/statusz: .*is serve or controller running with --metrics-port 1\?\n$/);
  });

  it('names the kubeconfig it cannot use; with no source at all, says which sources there are', async () => {
    const [missing, none] = await Promise.all([
      cli(['status', '--kubeconfig', join(dir, 'no-kubeconfig')]),
      // No KUBECONFIG, no cluster, an empty home: nothing to guess from.
      cli(['status'], { env: { PATH: process.env['PATH'] ?? '', HOME: dir } }),
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`switchyard: kubeconfig ${join(dir, 'no-kubeconfig')} (from --kubeconfig) does not exist: check the path, or leave --kubeconfig out to use $KUBECONFIG, the in-cluster service account or ~/.kube/config\n`);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no Kubernetes configuration: pass --kubeconfig PATH');
    expect(none.stderr).toContain('; or read a file with -f PATH, or a running serve with --from http://HOST:METRICS_PORT');
  });

  it('refuses two sources and an unknown output format', async () => {
    const [two, format] = await Promise.all([cli(['status', '-f', good, '--from', 'http://127.0.0.1:1']), cli(['status', '-f', good, '-o', 'wide'])]);
    expect(two.code).toBe(2);
    expect(two.stderr).toContain('give one of -f PATH, --from URL, --kubeconfig PATH');
    expect(format.code).toBe(2);
    expect(format.stderr).toContain('-o must be table, json or yaml, got "wide"');
  });
});

describe('switchyard drill --from', () => {
  it('names the address and the flag when nothing answers, as status does (one reader of /statusz)', async () => {
    // --from is checked before the key is read: the key file need not exist.
    const drill = runDrill(['--backend', 'ai/chat', '--priority', '0', '--gateway', 'http://127.0.0.1:1/v1', '--key-file', join(dir, 'no-key'), '--from', 'http://127.0.0.1:1'], () => undefined);
    await expect(drill).rejects.toThrow(/^--from http:\/\/127\.0\.0\.1:1: cannot read http:\/\/127\.0\.0\.1:1\/statusz: .*is serve or controller running with --metrics-port 1\?$/);
  });
});
