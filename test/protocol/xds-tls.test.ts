import { copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAiExtension, type RunningAiExtension } from '../../src/ai-extension/server.js';
import { serve, type RunningServe } from '../../src/app/serve.js';
import { buildBootstrap } from '../../src/envoy/bootstrap.js';
import { TypeUrl, type JsonObject, type XdsResources } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer, type AckEvent, type ClientEvent } from '../../src/xds/server.js';
import { roleUri } from '../../src/xds/identity.js';
import { clientCertificateRole, readXdsClientTls, readXdsServerTls, xdsChannelCredentials, xdsServerCredentials } from '../../src/xds/tls.js';
import { main } from '../../src/cli/main.js';
import { createPki, type Pki } from '../support/certs.js';
import { httpListener } from '../support/envoy-listener.js';
import { startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { openAiKeyConfigDir } from '../support/gateway-fixture.js';
import { freePort, LOOPBACK_SERVE_PORTS } from '../support/ports.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * xDS over mTLS with certificates made by openssl at test time: the real Envoy connects with a
 * client certificate and ACKs; an Envoy without one gets no configuration; the AI extension's
 * xDS client receives a credential over TLS with its ai-extension certificate and is refused
 * without it; `serve` with TLS still feeds its in-process extension. (What other identities
 * get: test/protocol/xds-adversary.test.ts.)
 */

const LISTENER = 'tls-http';
const CREDENTIAL = 'credential/ai/openai-key';
const KEY = 'sk-tls-test-key-0001';

let pki: Pki;
let serverDir: string;
let envoyDir: string;
let extensionDir: string;

beforeAll(() => {
  pki = createPki('xds');
  serverDir = pki.issue('controller', { san: ['IP:127.0.0.1', 'DNS:localhost'], usage: ['serverAuth'] });
  envoyDir = pki.issue('envoy', { san: [`URI:${roleUri('envoy')}`], usage: ['clientAuth'] });
  extensionDir = pki.issue('ai-extension', { san: [`URI:${roleUri('ai-extension')}`], usage: ['clientAuth'] });
});
afterAll(() => pki?.remove());

function resources(listenerPort: number): XdsResources {
  return {
    listeners: [
      httpListener(LISTENER, listenerPort, 'tls', {
        route_config: {
          name: 'tls-routes',
          virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'over mtls' } } }] }],
        },
      }),
    ],
    routes: [],
    clusters: [],
    endpoints: [],
    secrets: [{ '@type': TypeUrl.secret, name: CREDENTIAL, generic_secret: { secret: { inline_string: KEY } } }],
  };
}

function envoyTls(dir: string): { caFile: string; certFile: string; keyFile: string } {
  return { caFile: join(dir, 'ca.crt'), certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') };
}

describe('ADS server over mTLS', () => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  const acks: AckEvent[] = [];
  const connected: ClientEvent[] = [];
  let xdsPort: number;
  let listenerPort: number;
  const envoys: EnvoyProcess[] = [];
  const extensions: RunningAiExtension[] = [];

  beforeAll(async () => {
    server.on('ack', (e) => acks.push(e));
    server.on('connected', (e) => connected.push(e));
    xdsPort = await server.start({ port: 0, host: '127.0.0.1', credentials: xdsServerCredentials(readXdsServerTls(serverDir)) });
    listenerPort = await freePort();
    cache.setResources(resources(listenerPort));
  });
  afterAll(async () => {
    await Promise.all(envoys.map((e) => e.stop()));
    await Promise.all(extensions.map((e) => e.stop()));
    await server.stop();
  });

  it('serves a real Envoy that presents a client certificate: it connects, ACKs and serves the listener', async () => {
    const envoy = await startEnvoy({
      id: 'xds-mtls',
      adminPort: 0,
      bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: xdsPort }, nodeId: 'xds-mtls', adminPort: 0, xdsTls: envoyTls(envoyDir) }),
    });
    envoys.push(envoy);
    try {
      await waitFor(() => acks.find((a) => a.nodeId === 'xds-mtls' && a.typeUrl === TypeUrl.listener && a.version === cache.snapshot(TypeUrl.listener)?.version), {
        what: 'Envoy to ACK the listener over mTLS',
        timeoutMs: 15_000,
      });
      await envoy.waitForListener(LISTENER);
      const res = await fetch(`http://127.0.0.1:${listenerPort}/`);
      expect(`${res.status} ${await res.text()}`).toBe('200 over mtls');
      expect(await envoy.stat('control_plane.connected_state')).toBe(1);
      // The xDS connection really was TLS.
      expect(await envoy.stat('cluster.switchyard-xds.ssl.handshake')).toBeGreaterThanOrEqual(1);
    } catch (err) {
      envoy.printLogs();
      throw err;
    }
  });

  it('gives an Envoy without a client certificate no configuration', async () => {
    const bootstrap = buildBootstrap({ xds: { host: '127.0.0.1', port: xdsPort }, nodeId: 'xds-no-cert', adminPort: 0, xdsTls: envoyTls(envoyDir) });
    const cluster = ((bootstrap['static_resources'] as JsonObject)['clusters'] as JsonObject[])[0] as JsonObject;
    const context = ((cluster['transport_socket'] as JsonObject)['typed_config'] as JsonObject)['common_tls_context'] as JsonObject;
    delete context['tls_certificates'];
    const envoy = await startEnvoy({ id: 'xds-no-cert', adminPort: 0, bootstrap });
    envoys.push(envoy);
    // It tries (several connections), and each one is refused.
    await envoy.waitForStat('cluster.switchyard-xds.upstream_cx_total', (n) => n >= 2, 15_000);
    await sleep(1_000);
    expect(connected.filter((c) => c.nodeId === 'xds-no-cert')).toEqual([]);
    expect(acks.filter((a) => a.nodeId === 'xds-no-cert')).toEqual([]);
    expect(await envoy.stat('control_plane.connected_state')).toBe(0);
    expect(await envoy.listeners()).toEqual([]);
  });

  it("verifies the controller's name: SNI and SAN by hostname, and refuses a certificate that names another host", async () => {
    const byName = await startEnvoy({
      id: 'xds-mtls-localhost',
      adminPort: 0,
      bootstrap: buildBootstrap({ xds: { host: 'localhost', port: xdsPort }, nodeId: 'xds-mtls-localhost', adminPort: 0, xdsTls: envoyTls(envoyDir) }),
    });
    envoys.push(byName);
    await waitFor(() => acks.find((a) => a.nodeId === 'xds-mtls-localhost' && a.typeUrl === TypeUrl.listener), { what: 'Envoy dialing localhost to ACK', timeoutMs: 15_000 });

    // Another controller whose certificate (same CA) names some other host only.
    const elsewhere = pki.issue('elsewhere', { san: ['DNS:elsewhere.example'], usage: ['serverAuth'] });
    const other = new XdsServer({ cache });
    const otherConnected: ClientEvent[] = [];
    other.on('connected', (e) => otherConnected.push(e));
    const otherPort = await other.start({ port: 0, host: '127.0.0.1', credentials: xdsServerCredentials(readXdsServerTls(elsewhere)) });
    try {
      const fooled = await startEnvoy({
        id: 'xds-wrong-name',
        adminPort: 0,
        bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: otherPort }, nodeId: 'xds-wrong-name', adminPort: 0, xdsTls: envoyTls(envoyDir) }),
      });
      envoys.push(fooled);
      await fooled.waitForStat('cluster.switchyard-xds.ssl.fail_verify_san', (n) => n >= 1, 15_000);
      expect(otherConnected).toEqual([]);
      expect(await fooled.listeners()).toEqual([]);
    } finally {
      await other.stop();
    }
  });

  it("gives the AI extension's xDS client a credential over TLS with its client certificate", async () => {
    const extension = await startAiExtension({
      port: 0,
      host: '127.0.0.1',
      logger: createLogger({ level: 'silent' }),
      xds: { host: '127.0.0.1', port: xdsPort, credentials: xdsChannelCredentials(readXdsClientTls(extensionDir)) },
      nodeId: 'ai-extension-tls',
    });
    extensions.push(extension);
    expect(await extension.credentials.resolve(CREDENTIAL, 10_000)).toBe(KEY);
    expect(extension.credentials.connected).toBe(true);
    expect(connected.some((c) => c.nodeId === 'ai-extension-tls')).toBe(true);
  });

  it("makes the AI extension's xDS client refuse a controller whose certificate names another host", async () => {
    const elsewhere = pki.issue('elsewhere-for-extension', { san: ['DNS:elsewhere.example'], usage: ['serverAuth'] });
    const other = new XdsServer({ cache });
    const otherConnected: ClientEvent[] = [];
    other.on('connected', (e) => otherConnected.push(e));
    const otherPort = await other.start({ port: 0, host: '127.0.0.1', credentials: xdsServerCredentials(readXdsServerTls(elsewhere)) });
    const extension = await startAiExtension({
      port: 0,
      host: '127.0.0.1',
      logger: createLogger({ level: 'silent' }),
      xds: { host: '127.0.0.1', port: otherPort, credentials: xdsChannelCredentials(readXdsClientTls(extensionDir)) },
      nodeId: 'ai-extension-wrong-host',
    });
    try {
      expect(await extension.credentials.resolve(CREDENTIAL, 2_000)).toBeUndefined();
      expect(otherConnected).toEqual([]);
    } finally {
      await extension.stop();
      await other.stop();
    }
  });

  it("refuses the AI extension's xDS client without a client certificate, and over plaintext", async () => {
    // Only ca.crt: it verifies the controller but has nothing to show.
    const caOnly = mkdtempSync(join(tmpdir(), 'switchyard-ca-only-'));
    try {
      copyFileSync(pki.caFile, join(caOnly, 'ca.crt'));
      const noCert = await startAiExtension({
        port: 0,
        host: '127.0.0.1',
        logger: createLogger({ level: 'silent' }),
        xds: { host: '127.0.0.1', port: xdsPort, credentials: xdsChannelCredentials(readXdsClientTls(caOnly)) },
        nodeId: 'ai-extension-no-cert',
        credentialWaitMs: 100,
      });
      extensions.push(noCert);
      const plain = await startAiExtension({
        port: 0,
        host: '127.0.0.1',
        logger: createLogger({ level: 'silent' }),
        xds: { host: '127.0.0.1', port: xdsPort },
        nodeId: 'ai-extension-plaintext',
      });
      extensions.push(plain);
      const [a, b] = await Promise.all([noCert.credentials.resolve(CREDENTIAL, 3_000), plain.credentials.resolve(CREDENTIAL, 3_000)]);
      expect(a).toBeUndefined();
      expect(b).toBeUndefined();
      expect(noCert.credentials.connected).toBe(false);
      expect(plain.credentials.connected).toBe(false);
      expect(connected.filter((c) => c.nodeId === 'ai-extension-no-cert' || c.nodeId === 'ai-extension-plaintext')).toEqual([]);
    } finally {
      rmSync(caOnly, { recursive: true, force: true });
    }
  });
});

describe('certificates from `switchyard certs`, as Switchyard issues them', () => {
  it('serve Envoy (which gets its listener, no key) and the AI extension (which gets the key), each by its own certificate', async () => {
    const out = mkdtempSync(join(tmpdir(), 'switchyard-certs-'));
    const cache = new SnapshotCache();
    const server = new XdsServer({ cache });
    const acks: AckEvent[] = [];
    server.on('ack', (e) => acks.push(e));
    let envoy: EnvoyProcess | undefined;
    const extensions: RunningAiExtension[] = [];
    try {
      expect(await main(['certs', '--out', out, '--dns', 'localhost'])).toBe(0);
      const port = await server.start({ port: 0, host: '127.0.0.1', credentials: xdsServerCredentials(readXdsServerTls(join(out, 'controller'))) });
      const listenerPort = await freePort();
      cache.setResources(resources(listenerPort));
      envoy = await startEnvoy({
        id: 'xds-issued-certs',
        adminPort: 0,
        bootstrap: buildBootstrap({ xds: { host: 'localhost', port }, nodeId: 'xds-issued-certs', adminPort: 0, xdsTls: envoyTls(join(out, 'envoy')) }),
      });
      await waitFor(() => acks.find((a) => a.nodeId === 'xds-issued-certs' && a.typeUrl === TypeUrl.listener), { what: 'Envoy with its issued certificate to ACK', timeoutMs: 15_000 });
      await envoy.waitForListener(LISTENER);
      const viaCert = async (dir: string, nodeId: string): Promise<RunningAiExtension> => {
        const tls = readXdsClientTls(dir);
        const role = clientCertificateRole(tls);
        const extension = await startAiExtension({
          port: 0,
          host: '127.0.0.1',
          logger: createLogger({ level: 'silent' }),
          xds: { host: 'localhost', port, credentials: xdsChannelCredentials(tls), ...(role ? { certificateRole: role } : {}) },
          nodeId,
          credentialWaitMs: 100,
        });
        extensions.push(extension);
        return extension;
      };
      const extension = await viaCert(join(out, 'ai-extension'), 'issued-ai-extension');
      expect(extension.credentials.keysWithheld).toBeUndefined();
      expect(await extension.credentials.resolve(CREDENTIAL, 10_000)).toBe(KEY);
      // The extension's code with Envoy's certificate: no key, and it says why.
      const impostor = await viaCert(join(out, 'envoy'), 'issued-envoy-as-extension');
      expect(impostor.credentials.keysWithheld).toMatch(/of role envoy/);
      expect(await impostor.credentials.resolve(CREDENTIAL, 2_000)).toBeUndefined();
    } finally {
      await Promise.all(extensions.map((e) => e.stop()));
      await envoy?.stop();
      await server.stop();
      rmSync(out, { recursive: true, force: true });
    }
  });
});

describe('serve with --xds-tls-dir', () => {
  let running: RunningServe | undefined;
  let configDir: string;

  beforeAll(async () => {
    configDir = await openAiKeyConfigDir('switchyard-serve-tls-', KEY);
    running = await serve({
      config: configDir,
      ...LOOPBACK_SERVE_PORTS,
      xdsTls: readXdsServerTls(serverDir),
      envoy: {},
      logger: createLogger({ level: 'silent' }),
      aiExtension: { port: 0 },
    });
  });
  afterAll(async () => {
    await running?.stop();
    rmSync(configDir, { recursive: true, force: true });
  });

  it('feeds its in-process AI extension over a private Unix socket, while the TCP port requires mTLS', async () => {
    const r = running;
    if (r === undefined || r.aiExtension === undefined) throw new Error('serve did not start its extension');
    expect(r.cache.snapshot(TypeUrl.secret)?.resources.has(CREDENTIAL) ?? false).toBe(true);
    expect(await r.aiExtension.credentials.resolve(CREDENTIAL, 10_000)).toBe(KEY);
    const outsider = await startAiExtension({ port: 0, host: '127.0.0.1', logger: createLogger({ level: 'silent' }), xds: { host: '127.0.0.1', port: r.xdsPort }, nodeId: 'outsider' });
    try {
      expect(await outsider.credentials.resolve(CREDENTIAL, 2_000)).toBeUndefined();
    } finally {
      await outsider.stop();
    }
  });

  it('removes the socket directory when it stops', async () => {
    const before = readdirSync(tmpdir()).filter((n) => n.startsWith('switchyard-xds-'));
    await running?.stop();
    running = undefined;
    const after = readdirSync(tmpdir()).filter((n) => n.startsWith('switchyard-xds-'));
    expect(after.length).toBe(before.length - 1);
  });
});
