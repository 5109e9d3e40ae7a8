import { randomBytes } from 'node:crypto';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAiExtension } from '../../src/ai-extension/server.js';
import { serve, type RunningServe } from '../../src/app/serve.js';
import { TypeUrl, type JsonObject, type XdsResources } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { AI_EXTENSION_NODE_CLUSTER, roleUri } from '../../src/xds/identity.js';
import { XdsServer, type ClientEvent } from '../../src/xds/server.js';
import { readXdsServerTls, xdsServerCredentials } from '../../src/xds/tls.js';
import { createPki, type Pki } from '../support/certs.js';
import { httpListener } from '../support/envoy-listener.js';
import { openAiKeyConfigDir } from '../support/gateway-fixture.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';
import { RawAdsClient, containsSecret, type RawAdsTarget } from '../support/raw-ads.js';
import { cluster } from '../support/xds-stream.js';

/**
 * Hostile xDS clients against the real XdsServer, whose cache holds real provider keys: forged
 * node ids, SotW wildcard (empty names and "*"), named requests, delta subscribe "*", named,
 * unsubscribe and resubscribe, initial versions that claim a credential, unknown and lookalike
 * type URLs; over plaintext TCP, TLS without a client certificate, and mTLS with Envoy's own
 * certificate, a CA-signed one without a role, one naming two roles, the controller's, and
 * one from another CA. Every byte each receives is scanned for the keys: zero bytes of them
 * may appear. The AI extension's identities (the private Unix socket, its mTLS certificate)
 * get them through the same requests, so the scan is not vacuous.
 */

const KEY = `sk-adversary-${randomBytes(16).toString('hex')}`;
const OTHER_KEY = `sk-adversary-other-${randomBytes(16).toString('hex')}`;
const CREDENTIAL = 'credential/ai/openai-key';
const OTHER_CREDENTIAL = 'credential/team/anthropic-key';
const CERTIFICATE = 'certificate/ai/listener-tls';
const LISTENER = 'adversary-http';

const SDS = TypeUrl.secret;
const LDS = TypeUrl.listener;
const FORGED_NODE = { id: 'ai-extension/forged', cluster: AI_EXTENSION_NODE_CLUSTER, user_agent_name: 'switchyard-ai-extension' };

/** Type URLs Switchyard does not serve, some one character away from SDS. */
const UNKNOWN_TYPES = [
  `${SDS} `,
  SDS.toLowerCase(),
  'type.googleapis.com/envoy.api.v2.auth.Secret',
  'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.GenericSecret',
  'type.googleapis.com/google.protobuf.Any',
  'envoy.extensions.transport_sockets.tls.v3.Secret',
];

function resources(): XdsResources {
  return {
    listeners: [httpListener(LISTENER, 10_000, 'adv', { route_config: { name: 'r', virtual_hosts: [] } })],
    routes: [],
    clusters: [cluster('c')],
    endpoints: [],
    secrets: [
      { '@type': SDS, name: CREDENTIAL, generic_secret: { secret: { inline_string: KEY } } },
      { '@type': SDS, name: OTHER_CREDENTIAL, generic_secret: { secret: { inline_string: OTHER_KEY } } },
      { '@type': SDS, name: CERTIFICATE, tls_certificate: { certificate_chain: { inline_string: 'listener-chain-pem' }, private_key: { inline_string: 'listener-key-pem' } } },
    ],
  };
}

/** One adversarial conversation: what it sends, and the barrier after which everything it triggered has arrived. */
interface Script {
  name: string;
  variant: 'sotw' | 'delta';
  run(client: RawAdsClient): Promise<void>;
  /** The script asks for the listener certificate too: an adversary gets it, proof the stream was served. */
  servesCertificate: boolean;
  /** The server ends the stream instead (a request it cannot take): nothing at all is received. */
  refused?: true;
}

/** The server answers a stream in order: once the LDS answer to a later request is in, every earlier answer is too. */
async function barrier(client: RawAdsClient): Promise<void> {
  client.send(client.variant === 'sotw' ? { type_url: LDS, resource_names: [] } : { type_url: LDS });
  await client.waitForResponse(LDS);
}

/** One SDS request, its answer, then the barrier: whatever the request triggered has arrived. */
async function askSds(client: RawAdsClient, request: JsonObject): Promise<void> {
  client.send(request);
  await client.waitForResponse(SDS);
  await barrier(client);
}

function lastNonce(client: RawAdsClient, typeUrl: string): { nonce: string; version: string } {
  const last = client.responses().filter((r) => r['type_url'] === typeUrl).at(-1);
  return { nonce: String(last?.['nonce'] ?? ''), version: String(last?.['version_info'] ?? last?.['system_version_info'] ?? '') };
}

const SCRIPTS: Script[] = [
  {
    name: 'SotW, named, node claiming to be the AI extension',
    variant: 'sotw',
    servesCertificate: true,
    run: (c) => askSds(c, { node: FORGED_NODE, type_url: SDS, resource_names: [CREDENTIAL, OTHER_CREDENTIAL, CERTIFICATE] }),
  },
  {
    name: 'SotW, wildcard "*" for SDS',
    variant: 'sotw',
    servesCertificate: true,
    run: (c) => askSds(c, { node: FORGED_NODE, type_url: SDS, resource_names: ['*'] }),
  },
  {
    name: 'SotW, empty names for SDS (no legacy wildcard there), then "*" with a name',
    variant: 'sotw',
    servesCertificate: true,
    async run(c) {
      c.send({ node: FORGED_NODE, type_url: SDS, resource_names: [] });
      await barrier(c);
      c.send({ type_url: SDS, resource_names: ['*', CREDENTIAL] });
      await c.waitForResponse(SDS);
    },
  },
  {
    name: 'SotW, credential alone, then the certificate, ACK naming the credential, unsubscribe all, resubscribe with "*"',
    variant: 'sotw',
    servesCertificate: true,
    async run(c) {
      c.send({ node: FORGED_NODE, type_url: SDS, resource_names: [CREDENTIAL] });
      c.send({ type_url: SDS, resource_names: [CREDENTIAL, CERTIFICATE] });
      await c.waitForResponse(SDS);
      const ack = lastNonce(c, SDS);
      c.send({ type_url: SDS, resource_names: [CREDENTIAL, CERTIFICATE], version_info: ack.version, response_nonce: ack.nonce });
      c.send({ type_url: SDS, resource_names: [], version_info: ack.version, response_nonce: ack.nonce });
      c.send({ type_url: SDS, resource_names: ['*', CREDENTIAL, OTHER_CREDENTIAL] });
      await c.waitForResponse(SDS, 2);
      await barrier(c);
    },
  },
  {
    name: 'SotW, unknown and lookalike type URLs naming the credential, and CDS naming it',
    variant: 'sotw',
    servesCertificate: false,
    async run(c) {
      c.send({ node: FORGED_NODE, type_url: UNKNOWN_TYPES[0] ?? '', resource_names: [CREDENTIAL, '*'] });
      for (const typeUrl of UNKNOWN_TYPES.slice(1)) c.send({ type_url: typeUrl, resource_names: [CREDENTIAL, '*'] });
      c.send({ type_url: TypeUrl.cluster, resource_names: [CREDENTIAL] });
      await barrier(c);
    },
  },
  {
    name: 'SotW, no type URL at all, naming the credential',
    variant: 'sotw',
    servesCertificate: false,
    refused: true,
    async run(c) {
      c.send({ node: FORGED_NODE, type_url: '', resource_names: [CREDENTIAL, '*'] });
      await c.waitForFailure();
    },
  },
  {
    name: 'delta, no type URL at all, subscribing to the credential',
    variant: 'delta',
    servesCertificate: false,
    refused: true,
    async run(c) {
      c.send({ node: FORGED_NODE, type_url: '', resource_names_subscribe: [CREDENTIAL, '*'] });
      await c.waitForFailure();
    },
  },
  {
    name: 'delta, subscribe "*" for SDS',
    variant: 'delta',
    servesCertificate: true,
    run: (c) => askSds(c, { node: FORGED_NODE, type_url: SDS, resource_names_subscribe: ['*'] }),
  },
  {
    name: 'delta, subscribe by name',
    variant: 'delta',
    servesCertificate: true,
    run: (c) => askSds(c, { node: FORGED_NODE, type_url: SDS, resource_names_subscribe: [CREDENTIAL, OTHER_CREDENTIAL, CERTIFICATE] }),
  },
  {
    name: 'delta, subscribe, ACK, unsubscribe, resubscribe by name and "*"',
    variant: 'delta',
    servesCertificate: true,
    async run(c) {
      c.send({ node: FORGED_NODE, type_url: SDS, resource_names_subscribe: [CREDENTIAL] });
      c.send({ type_url: SDS, resource_names_subscribe: [CERTIFICATE] });
      await c.waitForResponse(SDS);
      c.send({ type_url: SDS, response_nonce: lastNonce(c, SDS).nonce });
      c.send({ type_url: SDS, resource_names_unsubscribe: [CREDENTIAL, CERTIFICATE] });
      c.send({ type_url: SDS, resource_names_subscribe: [CREDENTIAL, CERTIFICATE, '*'] });
      await c.waitForResponse(SDS, 2);
      c.send({ type_url: SDS, resource_names_unsubscribe: ['*'] });
      c.send({ type_url: SDS, resource_names_subscribe: ['*', OTHER_CREDENTIAL] });
      await barrier(c);
    },
  },
  {
    name: 'delta, initial versions claiming the credentials at a stale version',
    variant: 'delta',
    servesCertificate: true,
    run: (c) => askSds(c, { node: FORGED_NODE, type_url: SDS, resource_names_subscribe: ['*', CREDENTIAL], initial_resource_versions: { [CREDENTIAL]: 'stale', [OTHER_CREDENTIAL]: 'x', [CERTIFICATE]: 'stale' } }),
  },
  {
    name: 'delta, unknown and lookalike type URLs subscribing to the credential',
    variant: 'delta',
    servesCertificate: false,
    async run(c) {
      c.send({ node: FORGED_NODE, type_url: UNKNOWN_TYPES[0] ?? '', resource_names_subscribe: [CREDENTIAL, '*'] });
      for (const typeUrl of UNKNOWN_TYPES.slice(1)) c.send({ type_url: typeUrl, resource_names_subscribe: [CREDENTIAL, '*'] });
      await barrier(c);
    },
  },
];

let pki: Pki;
let otherCa: Pki;
const certs: Record<string, string> = {};
const logLines: string[] = [];
const logger = createLogger({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });
const cache = new SnapshotCache();
const plain = new XdsServer({ cache, logger: logger.child({ server: 'plain' }) });
const mtls = new XdsServer({ cache, logger: logger.child({ server: 'mtls' }) });
const tlsOnly = new XdsServer({ cache, logger: logger.child({ server: 'tls' }) });
const connected: ClientEvent[] = [];
let ports: { plain: number; mtls: number; tlsOnly: number };
let socket: string;
let envoySocketDir: string;
let envoySocket: string;
const clients: RawAdsClient[] = [];

beforeAll(async () => {
  pki = createPki('adversary');
  otherCa = createPki('adversary-other');
  certs['server'] = pki.issue('server', { san: ['IP:127.0.0.1'], usage: ['serverAuth'] });
  certs['envoy'] = pki.issue('envoy', { san: [`URI:${roleUri('envoy')}`], usage: ['clientAuth'] });
  certs['controller'] = pki.issue('controller', { san: [`URI:${roleUri('controller')}`, 'DNS:switchyard.switchyard-system.svc'], usage: ['serverAuth', 'clientAuth'] });
  certs['no-role'] = pki.issue('ai-extension', { san: ['DNS:switchyard-ai-extension', 'URI:spiffe://switchyard.dev/ai-extension'], usage: ['clientAuth'] });
  certs['two-roles'] = pki.issue('two-roles', { san: [`URI:${roleUri('envoy')}`, `URI:${roleUri('ai-extension')}`], usage: ['clientAuth'] });
  certs['ai-extension'] = pki.issue('real-ai-extension', { san: [`URI:${roleUri('ai-extension')}`], usage: ['clientAuth'] });
  // Another CA's certificate claiming the ai-extension role.
  certs['other-ca'] = otherCa.issue('impostor', { san: [`URI:${roleUri('ai-extension')}`], usage: ['clientAuth'], withCa: false });
  cache.setResources(resources());
  for (const server of [plain, mtls, tlsOnly]) server.on('connected', (e) => connected.push(e));
  const serverTls = readXdsServerTls(certs['server'] ?? '');
  const { ca: _ca, ...withoutCa } = serverTls;
  ports = {
    plain: await plain.start({ port: 0, host: '127.0.0.1' }),
    mtls: await mtls.start({ port: 0, host: '127.0.0.1', credentials: xdsServerCredentials(serverTls) }),
    tlsOnly: await tlsOnly.start({ port: 0, host: '127.0.0.1', credentials: xdsServerCredentials(withoutCa) }),
  };
  socket = await plain.privateSocket();
  envoySocketDir = mkdtempSync(join(tmpdir(), 'switchyard-envoy-socket-'));
  envoySocket = await plain.listenEnvoySocket(join(envoySocketDir, 'envoy.sock'));
});

afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all([plain.stop(), mtls.stop(), tlsOnly.stop()]);
  pki?.remove();
  otherCa?.remove();
  rmSync(envoySocketDir, { recursive: true, force: true });
});

function caPem(): Buffer {
  return readFileSync(pki.caFile);
}

function clientCert(name: string): grpc.ChannelCredentials {
  const dir = certs[name];
  if (dir === undefined) throw new Error(`no test certificate ${name}`);
  return grpc.credentials.createSsl(caPem(), readFileSync(join(dir, 'tls.key')), readFileSync(join(dir, 'tls.crt')));
}

type Target = () => RawAdsTarget;

const ADVERSARIES: [string, Target][] = [
  ['plaintext TCP', () => ({ address: `127.0.0.1:${ports.plain}` })],
  ['TLS without a client certificate', () => ({ address: `127.0.0.1:${ports.tlsOnly}`, credentials: grpc.credentials.createSsl(caPem()) })],
  ["mTLS with Envoy's own certificate", () => ({ address: `127.0.0.1:${ports.mtls}`, credentials: clientCert('envoy') })],
  ["mTLS with the controller's certificate", () => ({ address: `127.0.0.1:${ports.mtls}`, credentials: clientCert('controller') })],
  ['mTLS with a CA-signed certificate without a role (CN and DNS name "ai-extension")', () => ({ address: `127.0.0.1:${ports.mtls}`, credentials: clientCert('no-role') })],
  ['mTLS with a certificate naming two roles', () => ({ address: `127.0.0.1:${ports.mtls}`, credentials: clientCert('two-roles') })],
  // serve's own Envoys (infrastructure host) dial this socket: same user, never the extension.
  ['the Unix socket of the Envoys serve runs', () => ({ address: `unix:${envoySocket}` })],
];

const EXTENSION_IDENTITIES: [string, Target][] = [
  ['the private Unix socket', () => ({ address: `unix:${socket}` })],
  ['mTLS with the ai-extension certificate', () => ({ address: `127.0.0.1:${ports.mtls}`, credentials: clientCert('ai-extension') })],
];

function open(target: Target, variant: 'sotw' | 'delta'): RawAdsClient {
  const client = new RawAdsClient(target(), variant);
  clients.push(client);
  return client;
}

describe.each(ADVERSARIES)('an adversary over %s', (_label, target) => {
  it.each(SCRIPTS.map((s) => [s.name, s] as const))('%s: receives zero bytes of any key', async (_name, script) => {
    const client = open(target, script.variant);
    await script.run(client);
    const bytes = client.bytes();
    if (script.refused) expect(client.failure?.message).toContain('INVALID_ARGUMENT');
    else expect(bytes.length).toBeGreaterThan(0);
    expect(containsSecret(bytes, KEY), 'bytes of the key were received').toBe(false);
    expect(containsSecret(bytes, OTHER_KEY), 'bytes of the other key were received').toBe(false);
    const secrets = client.namesReceived(SDS);
    expect(secrets.filter((n) => n.startsWith('credential/'))).toEqual([]);
    // The stream was served: the listener certificate it asked for arrived.
    if (script.servesCertificate) expect(secrets).toContain(CERTIFICATE);
    client.close();
  });
});

describe.each(EXTENSION_IDENTITIES)('the AI extension over %s', (_label, target) => {
  it.each(SCRIPTS.filter((s) => s.servesCertificate && !s.refused).map((s) => [s.name, s] as const))('%s: receives the keys', async (_name, script) => {
    const client = open(target, script.variant);
    await script.run(client);
    expect(containsSecret(client.bytes(), KEY)).toBe(true);
    expect(client.namesReceived(SDS)).toContain(CREDENTIAL);
    client.close();
  });
});

describe('handshakes that must fail', () => {
  it.each([
    ['a certificate from another CA claiming the ai-extension role', () => {
      const dir = certs['other-ca'] ?? '';
      return grpc.credentials.createSsl(caPem(), readFileSync(join(dir, 'tls.key')), readFileSync(join(dir, 'tls.crt')));
    }],
    ['no client certificate', () => grpc.credentials.createSsl(caPem())],
  ] as const)('refuses %s on the mTLS port: no stream, no byte', async (_label, credentials) => {
    const before = connected.length;
    for (const variant of ['sotw', 'delta'] as const) {
      const client = open(() => ({ address: `127.0.0.1:${ports.mtls}`, credentials: credentials() }), variant);
      client.send({ node: FORGED_NODE, type_url: SDS, ...(variant === 'sotw' ? { resource_names: ['*', CREDENTIAL] } : { resource_names_subscribe: ['*', CREDENTIAL] }) });
      const failure = await client.waitForFailure();
      expect(failure.message).toMatch(/UNAVAILABLE|handshake|certificate|socket/i);
      expect(client.raw).toEqual([]);
      client.close();
    }
    expect(connected.slice(before)).toEqual([]);
  });
});

describe('what the server logged', () => {
  it('never a key, and each withheld credential once per stream, naming the stream identity', () => {
    const text = logLines.join('\n');
    expect(containsSecret(Buffer.from(text), KEY)).toBe(false);
    expect(containsSecret(Buffer.from(text), OTHER_KEY)).toBe(false);
    const refusals = logLines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((r) => typeof r['msg'] === 'string' && r['msg'].startsWith('xds: withheld a provider credential'));
    expect(refusals.length).toBeGreaterThan(0);
    expect(new Set(refusals.map((r) => r['role']))).toEqual(new Set(['anonymous', 'envoy', 'controller']));
    const perStreamAndName = new Map<string, number>();
    for (const r of refusals) {
      const key = `${String(r['server'])}/${String(r['stream'])}/${String(r['resource'])}`;
      perStreamAndName.set(key, (perStreamAndName.get(key) ?? 0) + 1);
    }
    expect([...perStreamAndName.values()].every((n) => n === 1)).toBe(true);
  });
});

describe('serve without --xds-tls-dir', () => {
  let running: RunningServe | undefined;
  let configDir: string;

  beforeAll(async () => {
    configDir = await openAiKeyConfigDir('switchyard-serve-adversary-', KEY);
    running = await serve({
      config: configDir,
      ...LOOPBACK_SERVE_PORTS,
      envoy: {},
      logger: createLogger({ level: 'silent' }),
      aiExtension: { port: 0 },
    });
  });
  afterAll(async () => {
    await running?.stop();
    rmSync(configDir, { recursive: true, force: true });
  });

  it('gives its in-process extension the key over the private socket, and a forged client on the plaintext port none', async () => {
    const r = running;
    if (r === undefined || r.aiExtension === undefined) throw new Error('serve did not start its extension');
    expect(await r.aiExtension.credentials.resolve(CREDENTIAL, 10_000)).toBe(KEY);
    const sotw = open(() => ({ address: `127.0.0.1:${r.xdsPort}` }), 'sotw');
    await askSds(sotw, { node: FORGED_NODE, type_url: SDS, resource_names: ['*', CREDENTIAL] });
    const delta = open(() => ({ address: `127.0.0.1:${r.xdsPort}` }), 'delta');
    await askSds(delta, { node: FORGED_NODE, type_url: SDS, resource_names_subscribe: ['*', CREDENTIAL] });
    for (const client of [sotw, delta]) {
      expect(containsSecret(client.bytes(), KEY), client.variant).toBe(false);
      expect(client.namesReceived(SDS), client.variant).toEqual([]);
      client.close();
    }
  });

  it('leaves a standalone extension on the plaintext port without keys, and it says why', async () => {
    const r = running;
    if (r === undefined) throw new Error('serve did not start');
    const lines: string[] = [];
    const standalone = await startAiExtension({
      port: 0,
      host: '127.0.0.1',
      logger: createLogger({ level: 'info' }, { write: (line: string) => void lines.push(line) }),
      xds: { host: '127.0.0.1', port: r.xdsPort },
      credentialWaitMs: 200,
    });
    try {
      expect(standalone.credentials.keysWithheld).toMatch(/plaintext TCP.*--xds-tls-dir.*spiffe:\/\/switchyard\.dev\/role\/ai-extension/);
      expect(lines.join('\n')).toContain('ai-extension: no provider key will arrive');
      expect(await standalone.credentials.resolve(CREDENTIAL, 1_000)).toBeUndefined();
    } finally {
      await standalone.stop();
    }
  });
});
