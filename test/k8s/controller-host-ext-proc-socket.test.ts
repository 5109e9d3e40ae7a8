import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startFakeProvider, type FakeProvider } from '../../examples/demo/fake-provider.js';
import { AI_EXTENSION_CLUSTER } from '../../src/envoy/ai-extension.js';
import { DEFAULT_AI_EXTENSION_ADDRESS } from '../../src/envoy/options.js';
import type { KubeClient, RawObject } from '../../src/providers/kubernetes/api-client.js';
import { chatCompletion, type ChatAnswer } from '../support/chat.js';
import { requireEnvoyBinary } from '../support/envoy.js';
import { expectExtProcOnSocketOnly, listeningTcpPorts } from '../support/ext-proc-probe.js';
import { GATEWAY, aiBackend, httpRoute, secret } from '../support/gateway-fixture.js';
import { createObject, createTestNamespace, deleteObject, randomSuffix, testClient, type TestNamespace } from '../support/kube-cluster.js';
import { freePort } from '../support/ports.js';
import { processesMentioning, stopChild } from '../support/processes.js';
import { StopWaiting, waitFor } from '../support/wait.js';

/**
 * Issue 7 for `switchyard controller --infrastructure host` (Envoys run on this machine, their
 * configuration from a real API server): the AI extension's ext_proc answers, which carry provider
 * keys, are reachable over a Unix socket in the controller's 0700 state directory only, as with
 * serve. The real CLI (controller, and the extension as a user runs it with the line the controller
 * logs), the real Envoy 1.40: no TCP port of either answers an ext_proc call, the socket does,
 * Envoy's extension cluster is a pipe, and AI requests fail over with the key through it.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TIMEOUT_MS = 180_000;
const KEY = 'sk-controller-ext-proc-socket-0001';
const CLASS = `switchyard-host-sock-${randomSuffix()}`;

function cli(args: string[], log: string): ChildProcess {
  const out = openSync(log, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, stdio: ['ignore', out, out] });
  closeSync(out);
  return child;
}

/** Puts a fixture manifest (written for namespace "ai") into the test's namespace. */
function into(namespace: string, manifest: RawObject): RawObject {
  return { ...manifest, metadata: { ...(manifest['metadata'] as object), namespace } };
}

describe('controller --infrastructure host: the AI extension on a Unix socket in the state directory, no ext_proc on TCP', () => {
  let client: KubeClient;
  let ns: TestNamespace;
  let dir: string;
  let stateDir: string;
  let controllerLog: string;
  let extensionLog: string;
  let metricsPort: number;
  let xdsPort: number;
  let listenerPort: number;
  let address: string;
  let controllerProcess: ChildProcess | undefined;
  let extensionProcess: ChildProcess | undefined;
  const fakes: FakeProvider[] = [];
  const gatewayClass: RawObject = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: CLASS }, spec: { controllerName: 'switchyard.dev/gateway-controller' } };

  const tail = (file: string): string => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-30).join('\n') : '');
  const chat = (): Promise<ChatAnswer> => chatCompletion(`http://${address}:${listenerPort}/chat/v1/chat/completions`);

  beforeAll(async () => {
    client = testClient();
    ns = await createTestNamespace(client, 'host-sock');
    dir = mkdtempSync(join(tmpdir(), 'switchyard-ctl-sock-'));
    stateDir = join(dir, 'state');
    controllerLog = join(dir, 'controller.log');
    extensionLog = join(dir, 'extension.log');
    metricsPort = await freePort();
    xdsPort = await freePort();
    listenerPort = await freePort();
    // A loopback address of its own (the Host infrastructure binds each Gateway's Envoy to one).
    address = `127.0.${100 + Math.floor(Math.random() * 100)}.${1 + Math.floor(Math.random() * 250)}`;
    fakes.push(await startFakeProvider({ name: 'primary', mode: { kind: 'status', status: 503 } }), await startFakeProvider({ name: 'fallback' }));
    await createObject(client, gatewayClass);
    const docs: RawObject[] = [
      {
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'Gateway',
        metadata: { name: GATEWAY, namespace: ns.name },
        spec: {
          gatewayClassName: CLASS,
          addresses: [{ type: 'IPAddress', value: address }],
          listeners: [{ name: 'http', protocol: 'HTTP', port: listenerPort, allowedRoutes: { namespaces: { from: 'Same' } } }],
        },
      },
      into(ns.name, secret('chat-key', `Bearer ${KEY}`)),
      into(ns.name, aiBackend({
        name: 'chat',
        priorities: [
          [{ fake: fakes[0]!, hostname: 'primary.test', name: 'primary', secret: 'chat-key' }],
          [{ fake: fakes[1]!, hostname: 'fallback.test', name: 'fallback', secret: 'chat-key' }],
        ],
      })),
      into(ns.name, httpRoute('chat', [{ path: '/chat/v1', rewritePrefix: '/v1', backend: 'chat' }])),
    ];
    for (const d of docs) await createObject(client, d);

    controllerProcess = cli([
      'controller', '--kubeconfig', inject('kubeconfig'), '--namespaces', ns.name, '--no-leader-election',
      '--xds-port', String(xdsPort), '--xds-host', '127.0.0.1', '--metrics-port', String(metricsPort), '--metrics-host', '127.0.0.1',
      '--infrastructure', 'host', '--envoy-path', requireEnvoyBinary(), '--envoy-concurrency', '1', '--state-dir', stateDir,
    ], controllerLog);
    // The controller logs how to run the extension; a user copies that line.
    const line = await waitFor(() => {
      if (controllerProcess?.exitCode !== null) throw new StopWaiting(`controller exited:\n${tail(controllerLog)}`);
      return /run it as this user: switchyard (ai-extension [^"]*)"/.exec(tail(controllerLog))?.[1];
    }, { what: 'the controller to say how to run the AI extension', timeoutMs: 60_000, intervalMs: 200 });
    expect(line).toBe(`ai-extension --xds-socket ${join(stateDir, 'ads.sock')} --listen-socket ${join(stateDir, 'ext-proc.sock')} --warmup-envoys-dir ${join(stateDir, 'envoy')}`);
    extensionProcess = cli([...line.split(' '), '--metrics-port', '0', '--metrics-host', '127.0.0.1'], extensionLog);
    await waitFor(async () => {
      if (extensionProcess?.exitCode !== null) throw new StopWaiting(`the extension exited:\n${tail(extensionLog)}`);
      try {
        const answer = await chat();
        return answer.status === 200 ? answer : undefined;
      } catch {
        return undefined;
      }
    }, { what: `the AI route served through the controller's Envoy (controller log:\n${tail(controllerLog)})`, timeoutMs: 90_000, intervalMs: 300 });
  }, TIMEOUT_MS);

  afterAll(async () => {
    await stopChild(extensionProcess);
    await stopChild(controllerProcess, 30_000);
    // Whatever a failed test left behind: the Envoys and the extension name the state directory.
    for (const pid of processesMentioning(stateDir)) process.kill(pid, 'SIGKILL');
    for (const f of fakes) await f.close();
    await ns.remove();
    await deleteObject(client, gatewayClass);
    rmSync(dir, { recursive: true, force: true });
  }, TIMEOUT_MS);

  it('serves ext_proc on a socket in the 0700 state directory only: no TCP port of the controller or the extension answers an ext_proc call', async () => {
    const extensionPorts = listeningTcpPorts(extensionProcess?.pid ?? 0);
    const controllerPorts = listeningTcpPorts(controllerProcess?.pid ?? 0);
    // The extension holds its /metrics only; the controller its xDS and metrics ports.
    expect(extensionPorts).toHaveLength(1);
    expect(controllerPorts.sort((a, b) => a - b)).toEqual([xdsPort, metricsPort].sort((a, b) => a - b));
    expect([...extensionPorts, ...controllerPorts]).not.toContain(DEFAULT_AI_EXTENSION_ADDRESS.port);
    // The positive control over the socket in the state directory, then every one of those ports.
    await expectExtProcOnSocketOnly(join(stateDir, 'ext-proc.sock'), [...extensionPorts, ...controllerPorts]);
  }, TIMEOUT_MS);

  it('configures the Envoy it runs with a pipe to that socket as the extension cluster, no TCP address', async () => {
    const statusz = (await (await fetch(`http://127.0.0.1:${metricsPort}/statusz`)).json()) as { dataPlanes?: { gateway: string; adminUrl?: string }[] };
    const adminUrl = statusz.dataPlanes?.find((p) => p.gateway === `${ns.name}/${GATEWAY}`)?.adminUrl;
    expect(adminUrl, JSON.stringify(statusz.dataPlanes)).toBeDefined();
    const clusters = (await (await fetch(`${adminUrl ?? ''}/clusters?format=json`)).json()) as { cluster_statuses?: { name: string; host_statuses?: { address?: unknown }[] }[] };
    const ext = clusters.cluster_statuses?.find((c) => c.name === AI_EXTENSION_CLUSTER);
    expect(ext?.host_statuses?.map((h) => h.address)).toEqual([{ pipe: { path: join(stateDir, 'ext-proc.sock') } }]);
  }, TIMEOUT_MS);

  it('AI requests through the real Envoy reach the extension over the pipe and fail over to the next priority with the key', async () => {
    const before = fakes[0]!.received().length;
    const answer = await chat();
    expect(answer, answer.body).toMatchObject({ status: 200, answeredBy: 'fallback' });
    expect(fakes[0]!.received().length).toBeGreaterThan(before);
    const seen = fakes[1]!.received().at(-1);
    expect(seen?.headers['authorization']).toBe(`Bearer ${KEY}`);
    expect(seen?.host).toBe('fallback.test');
  }, TIMEOUT_MS);
});
