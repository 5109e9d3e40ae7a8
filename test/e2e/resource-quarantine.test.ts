import { generateKeyPairSync } from 'node:crypto';
import { connect } from 'node:tls';
import forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import { redactSecretText } from '../../src/envoy/secrets.js';
import type { NackEvent } from '../../src/xds/server.js';
import { CDS_DETAIL, SDS_DETAIL, SDS_SCHEMA_DETAIL } from '../support/envoy-nack-details.js';
import { aiBackend, clusterName, gatewayManifests, GATEWAY, httpRoute, NAMESPACE, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

/**
 * Defence in depth beyond routes, with the real Envoy: a Cluster and a TLS Secret that Envoy
 * rejects although translation let them through. Translation refuses every shape known to be
 * rejected, so the test rewrites translation output through the runtime's test seam (no input
 * reaches it): the Backend's cluster gets an LB policy Envoy refuses for its cluster type, and the
 * Gateway's certificate becomes a 1024-bit RSA one, which Envoy refuses (it wants 2048 bits or
 * more). That certificate was a real input translation let through; it now refuses it in the
 * Secret (test/golden/gateway-status), so only the seam serves it here. Each culprit is named in its own status with Envoy's reason in a line, Envoy keeps the
 * version it accepted, a new valid Backend added after the NACK answers, and the culprit recovers
 * once its object changes and Envoy accepts it.
 */

const HOST = 'secure.llm.test';
const HOST2 = 'secure2.llm.test';
let gw: GatewayFixture;
let httpsPort = 0;
let httpsPort2 = 0;
/** The certificate of the second HTTPS listener (Secret tls2), written with every change of gateway.yaml. */
let tls2Pair: { cert: string; key: string };
/** Which Secret the test seam makes weak. */
let weakSecret = `certificate/${NAMESPACE}/tls`;
const nacks: NackEvent[] = [];
let badCluster: string | undefined;
let weakCertificate: { cert: string; key: string } | undefined;
/** The certificate's chain emptied: Envoy's schema refuses it and its detail dumps the Secret, key included. */
let emptyChain = false;
const logLines: string[] = [];

function selfSigned(bits: number, commonName: string): { cert: string; key: string } {
  const pair = generateKeyPairSync('rsa', { modulusLength: bits });
  const key = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(pair.publicKey.export({ type: 'spki', format: 'pem' }).toString());
  cert.serialNumber = '0a';
  cert.validity.notBefore = new Date(Date.now() - 3_600_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  const subject = [{ name: 'commonName', value: commonName }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([{ name: 'subjectAltName', altNames: [{ type: 2, value: HOST }] }]);
  cert.sign(forge.pki.privateKeyFromPem(key), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key };
}

function tlsSecret(pair: { cert: string; key: string }, name = 'tls'): Manifest {
  return {
    apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name, namespace: NAMESPACE },
    data: { 'tls.crt': Buffer.from(pair.cert).toString('base64'), 'tls.key': Buffer.from(pair.key).toString('base64') },
  };
}

function gateway(listenerPort: number): Manifest[] {
  const manifests = gatewayManifests(listenerPort);
  const g = manifests.find((m) => m['kind'] === 'Gateway') as { spec: { listeners: Manifest[] } };
  g.spec.listeners.push({ name: 'https', protocol: 'HTTPS', port: httpsPort, hostname: HOST, tls: { mode: 'Terminate', certificateRefs: [{ name: 'tls' }] }, allowedRoutes: { namespaces: { from: 'Same' } } });
  g.spec.listeners.push({ name: 'https2', protocol: 'HTTPS', port: httpsPort2, hostname: HOST2, tls: { mode: 'Terminate', certificateRefs: [{ name: 'tls2' }] }, allowedRoutes: { namespaces: { from: 'Same' } } });
  return [...manifests, tlsSecret(tls2Pair, 'tls2')];
}

/** What the test seam does to translation output: the chosen cluster and the certificate made unacceptable to Envoy. */
function rewrite(xds: XdsResources): XdsResources {
  const clusters = xds.clusters.map((c): EnvoyResource => (c['name'] === badCluster ? { ...c, lb_policy: 'CLUSTER_PROVIDED' } : c));
  const secrets = xds.secrets.map((s): EnvoyResource => {
    if (s['name'] !== weakSecret) return s;
    if (emptyChain) return { ...s, tls_certificate: { ...(s['tls_certificate'] as object), certificate_chain: {} } };
    if (weakCertificate === undefined) return s;
    return { ...s, tls_certificate: { certificate_chain: { inline_string: weakCertificate.cert }, private_key: { inline_string: weakCertificate.key } } };
  });
  return { ...xds, clusters, secrets };
}

/** The subject CN of the certificate Envoy presents on the HTTPS listener. */
function servedCertificate(second = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: second ? httpsPort2 : httpsPort, servername: second ? HOST2 : HOST, rejectUnauthorized: false }, () => {
      const cn = socket.getPeerCertificate().subject?.CN;
      socket.destroy();
      resolve(Array.isArray(cn) ? cn.join(',') : (cn ?? ''));
    });
    socket.once('error', reject);
  });
}

function programmed(kind: string, name: string): { status?: string; reason?: string; message?: string } {
  return gw.condition(kind, name, 'Programmed') ?? {};
}

function listenerProgrammed(section: string): { status?: string; reason?: string; message?: string } {
  const s = gw.status('Gateway', GATEWAY);
  const l = s && 'listeners' in s ? s.listeners.find((x) => x.name === section) : undefined;
  return l?.conditions.find((c) => c.type === 'Programmed') ?? {};
}

let backends: (model: string) => Manifest[];
const routes = (extra: Manifest[] = []): Manifest[] => [httpRoute('chat', [{ path: '/v1', backend: 'chat' }, { path: '/v2', backend: 'beta' }]), ...extra];
const first = selfSigned(2048, 'first');

// The same with an Envoy on state-of-the-world and on incremental xDS: a delta NACK carries only what changed.
describe.each(['sotw', 'delta'] as const)('%s Envoy', (mode) => {
  beforeAll(async () => {
    httpsPort = await freePort();
    httpsPort2 = await freePort();
    tls2Pair = selfSigned(2048, 'b-first');
    weakSecret = `certificate/${NAMESPACE}/tls`;
    nacks.length = 0;
    logLines.length = 0;
    badCluster = undefined;
    weakCertificate = undefined;
    emptyChain = false;
    gw = await startGatewayFixture({
      id: `resource-quarantine-${mode}`,
      delta: mode === 'delta',
      providers: ['p0', 'p1', 'p2'],
      testOnlyRewrite: rewrite,
      logLines,
      manifests: ({ listenerPort, fakes }) => {
        backends = (model: string) => [
          aiBackend({ name: 'chat', llm: true, priorities: [[{ fake: fakes['p0']!, hostname: 'chat.llm.test' }]] }),
          aiBackend({ name: 'beta', llm: true, priorities: [[{ fake: fakes['p1']!, hostname: 'beta.llm.test', model }]] }),
        ];
        return { 'gateway.yaml': [...gateway(listenerPort), tlsSecret(first)], 'backends.yaml': backends('m1'), 'routes.yaml': routes() };
      },
      waitForBackends: ['chat', 'beta'],
    });
    gw.controller.xds.on('nack', (e) => nacks.push(e));
    expect(gw.controller.xds.clients().map((c) => c.kind)).toContain(mode);
  });

  afterAll(async () => {
    await gw?.stop();
  });

  describe('a Cluster Envoy rejects', () => {
    it('is held at the version Envoy accepted and named in its Backend\'s status; a new valid Backend answers; the culprit recovers once fixed', async () => {
      await waitFor(() => programmed('Backend', 'beta').status === 'True', { what: 'Programmed=True on Backend ai/beta', timeoutMs: 10_000 });
      badCluster = clusterName('beta');
      gw.write('backends.yaml', backends('m2'));
      const nack = await waitFor(() => nacks.find((n) => n.typeUrl === TypeUrl.cluster), { what: 'Envoy to NACK the cluster of Backend ai/beta', timeoutMs: 10_000 });
      // Exactly what the unit tests of culprit naming read.
      expect(nack.message).toBe(CDS_DETAIL);
      await waitFor(() => programmed('Backend', 'beta').reason === 'Rejected', { what: `Programmed=False/Rejected on Backend ai/beta (now ${JSON.stringify(programmed('Backend', 'beta'))})`, timeoutMs: 10_000 });
      const culprit = programmed('Backend', 'beta');
      expect(culprit.status).toBe('False');
      expect(culprit.message).toContain(`cluster ${clusterName('beta')}`);
      expect(culprit.message).toContain('cluster provided LB specified but cluster');
      expect(culprit.message).not.toContain('Error adding/updating');
      expect(culprit.message).toContain('the version it last accepted is served');
      expect(culprit.message).not.toContain('\n');
      // The other Backend's cluster was served on: once Envoy ACKs the set without the culprit, it is programmed.
      await waitFor(() => programmed('Backend', 'chat').status === 'True', { what: `Programmed=True on Backend ai/chat (now ${JSON.stringify(programmed('Backend', 'chat'))})`, timeoutMs: 10_000 });
      // Envoy still holds the cluster it accepted: beta answers.
      expect((await gw.chat('/v2')).answeredBy).toBe('p1');

      // A new Backend and route after the NACK reach Envoy and answer; the culprit stays named.
      const fakes = gw.fakes;
      gw.write('backends.yaml', [...backends('m2'), aiBackend({ name: 'gamma', llm: true, priorities: [[{ fake: fakes['p2']!, hostname: 'gamma.llm.test' }]] })]);
      gw.write('routes.yaml', routes([httpRoute('gamma', [{ path: '/v3', backend: 'gamma' }])]));
      await waitFor(async () => (await gw.chat('/v3').catch(() => ({ answeredBy: null }))).answeredBy === 'p2', { what: '/v3 (a new Backend after the NACK) to be answered by p2', timeoutMs: 10_000 });
      await waitFor(() => programmed('Backend', 'gamma').status === 'True', { what: 'Programmed=True on the new Backend ai/gamma', timeoutMs: 10_000 });
      expect(programmed('Backend', 'beta')).toMatchObject({ status: 'False', reason: 'Rejected' });
      // The rejected content is not pushed again and again.
      expect(nacks.filter((n) => n.typeUrl === TypeUrl.cluster)).toHaveLength(1);

      // The fix: the Backend changes and its cluster is one Envoy accepts.
      badCluster = undefined;
      gw.write('backends.yaml', [...backends('m3'), aiBackend({ name: 'gamma', llm: true, priorities: [[{ fake: fakes['p2']!, hostname: 'gamma.llm.test' }]] })]);
      await waitFor(() => programmed('Backend', 'beta').status === 'True', { what: `Programmed=True on the fixed Backend ai/beta (now ${JSON.stringify(programmed('Backend', 'beta'))})`, timeoutMs: 10_000 });
      await waitFor(async () => (await gw.chat('/v2')).answeredBy === 'p1' && (fakes['p1']!.received().at(-1)?.body as { model?: string } | undefined)?.model === 'm3', { what: 'beta to answer with its fixed model m3', timeoutMs: 10_000 });
    });
  });

  describe('a Secret Envoy rejects', () => {
    it('keeps the certificate Envoy accepted, names the Gateway listener with Envoy\'s reason, lets other changes through, and recovers once fixed', async () => {
      await waitFor(async () => (await servedCertificate().catch(() => '')) === 'first', { what: 'the HTTPS listener to present certificate "first"', timeoutMs: 10_000 });
      await waitFor(() => programmed('Gateway', GATEWAY).status === 'True', { what: 'Programmed=True on the Gateway', timeoutMs: 10_000 });
      const before = nacks.length;
      weakCertificate = selfSigned(1024, 'weak');
      gw.write('gateway.yaml', [...gateway(gw.listenerPort), tlsSecret(selfSigned(2048, 'second'))]);
      const nack = await waitFor(() => nacks.slice(before).find((n) => n.typeUrl === TypeUrl.secret), { what: 'Envoy to NACK the certificate', timeoutMs: 10_000 });
      expect(nack.message).toBe(SDS_DETAIL);
      await waitFor(() => programmed('Gateway', GATEWAY).reason === 'Rejected', { what: `Programmed=False/Rejected on the Gateway (now ${JSON.stringify(programmed('Gateway', GATEWAY))})`, timeoutMs: 10_000 });
      expect(programmed('Gateway', GATEWAY).message).toContain(`secret certificate/${NAMESPACE}/tls`);
      expect(programmed('Gateway', GATEWAY).message).toContain('only RSA certificates with 2048-bit or larger keys are supported');
      expect(programmed('Gateway', GATEWAY).message).not.toContain('PRIVATE KEY');
      expect(listenerProgrammed('https')).toMatchObject({ status: 'False', reason: 'Rejected' });
      expect(listenerProgrammed('http')).toMatchObject({ status: 'True' });
      expect(await servedCertificate()).toBe('first');

      // Another change goes through while the certificate is held.
      gw.write('routes.yaml', routes([httpRoute('gamma', [{ path: '/v3', backend: 'gamma' }]), httpRoute('late', [{ path: '/v4', backend: 'chat' }])]));
      await waitFor(async () => (await gw.chat('/v4').catch(() => ({ answeredBy: null }))).answeredBy === 'p0', { what: '/v4 (a route added after the NACK) to be answered by p0', timeoutMs: 10_000 });
      expect(programmed('Gateway', GATEWAY)).toMatchObject({ status: 'False', reason: 'Rejected' });

      // The fix: a certificate Envoy accepts.
      weakCertificate = undefined;
      gw.write('gateway.yaml', [...gateway(gw.listenerPort), tlsSecret(selfSigned(2048, 'third'))]);
      await waitFor(async () => (await servedCertificate().catch(() => '')) === 'third', { what: 'the HTTPS listener to present the fixed certificate "third"', timeoutMs: 10_000 });
      await waitFor(() => programmed('Gateway', GATEWAY).status === 'True', { what: `Programmed=True on the Gateway again (now ${JSON.stringify(programmed('Gateway', GATEWAY))})`, timeoutMs: 10_000 });
      expect(listenerProgrammed('https')).toMatchObject({ status: 'True' });
    });

    it('a Secret whose NACK quotes its private key: the key reaches no log, no client record and no status', async () => {
      const before = nacks.length;
      const fourth = selfSigned(2048, 'fourth');
      const keyLine = fourth.key.split('\n')[1] ?? '';
      expect(keyLine.length).toBeGreaterThan(20);
      emptyChain = true;
      gw.write('gateway.yaml', [...gateway(gw.listenerPort), tlsSecret(fourth)]);
      const nack = await waitFor(() => nacks.slice(before).find((n) => n.typeUrl === TypeUrl.secret), { what: 'Envoy to NACK the certificate with an empty chain', timeoutMs: 10_000 });
      expect(nack.message).toContain('[redacted]');
      // Envoy's dump before the reason starts with a marker protobuf varies; the rest is what the unit tests read.
      expect(nack.message.slice(nack.message.indexOf('\n'))).toBe(redactSecretText(SDS_SCHEMA_DETAIL).slice(SDS_SCHEMA_DETAIL.indexOf('\n')));
      await waitFor(() => programmed('Gateway', GATEWAY).reason === 'Rejected', { what: `Programmed=False/Rejected on the Gateway (now ${JSON.stringify(programmed('Gateway', GATEWAY))})`, timeoutMs: 10_000 });
      expect(programmed('Gateway', GATEWAY).message).toContain('reason: is required');
      const everywhere = [
        ...logLines,
        JSON.stringify(gw.controller.xds.clients()),
        JSON.stringify(gw.controller.statuses()),
        await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/statusz`)).text(),
      ].join('\n');
      expect(everywhere).toContain('Proto constraint validation failed');
      expect(everywhere).not.toContain(keyLine);
      expect(await servedCertificate()).toBe('third');

      emptyChain = false;
      gw.write('gateway.yaml', [...gateway(gw.listenerPort), tlsSecret(selfSigned(2048, 'fifth'))]);
      await waitFor(async () => (await servedCertificate().catch(() => '')) === 'fifth', { what: 'the HTTPS listener to present certificate "fifth"', timeoutMs: 10_000 });
      await waitFor(() => programmed('Gateway', GATEWAY).status === 'True', { what: 'Programmed=True on the Gateway again', timeoutMs: 10_000 });
    });

    it('when Envoy names neither of two changed certificates, each is let in alone: the good one is served, the bad one named', async () => {
      await waitFor(async () => (await servedCertificate(true).catch(() => '')) === 'b-first', { what: 'the second HTTPS listener to present certificate "b-first"', timeoutMs: 10_000 });
      const before = nacks.length;
      weakSecret = `certificate/${NAMESPACE}/tls2`;
      weakCertificate = selfSigned(1024, 'b-weak');
      tls2Pair = selfSigned(2048, 'b-second');
      gw.write('gateway.yaml', [...gateway(gw.listenerPort), tlsSecret(selfSigned(2048, 'sixth'))]);
      await waitFor(() => programmed('Gateway', GATEWAY).message?.includes(`secret certificate/${NAMESPACE}/tls2:`) === true, { what: `the Gateway to name Secret tls2 (now ${JSON.stringify(programmed('Gateway', GATEWAY))})`, timeoutMs: 15_000 });
      await waitFor(async () => (await servedCertificate().catch(() => '')) === 'sixth', { what: 'the first HTTPS listener to present "sixth", changed together with the bad one', timeoutMs: 10_000 });
      const secretNacks = nacks.slice(before).filter((n) => n.typeUrl === TypeUrl.secret);
      expect(secretNacks.every((n) => n.message === SDS_DETAIL)).toBe(true);
      // The first rejection carried both changed certificates and named neither: a search, not a guess.
      expect(secretNacks[0]?.resources.map((r) => r.name).sort()).toEqual([`certificate/${NAMESPACE}/tls`, `certificate/${NAMESPACE}/tls2`]);
      expect(programmed('Gateway', GATEWAY)).toMatchObject({ status: 'False', reason: 'Rejected' });
      expect(programmed('Gateway', GATEWAY).message).toContain('only RSA certificates with 2048-bit or larger keys are supported');
      expect(listenerProgrammed('https2')).toMatchObject({ status: 'False', reason: 'Rejected' });
      await waitFor(() => listenerProgrammed('https').status === 'True', { what: `Programmed=True on listener https (now ${JSON.stringify(listenerProgrammed('https'))})`, timeoutMs: 10_000 });
      expect(await servedCertificate(true)).toBe('b-first');

      weakCertificate = undefined;
      tls2Pair = selfSigned(2048, 'b-third');
      gw.write('gateway.yaml', [...gateway(gw.listenerPort), tlsSecret(selfSigned(2048, 'sixth'))]);
      await waitFor(async () => (await servedCertificate(true).catch(() => '')) === 'b-third', { what: 'the second HTTPS listener to present the fixed "b-third"', timeoutMs: 10_000 });
      await waitFor(() => programmed('Gateway', GATEWAY).status === 'True', { what: `Programmed=True on the Gateway again (now ${JSON.stringify(programmed('Gateway', GATEWAY))})`, timeoutMs: 10_000 });
    });
  });
});
