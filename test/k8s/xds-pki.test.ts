import { X509Certificate } from 'node:crypto';
import { connect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAiExtension } from '../../src/ai-extension/server.js';
import { ensurePki, pkiNames, secretStore, startManagedXdsTls } from '../../src/app/xds-pki.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import type { KubeClient, RawObject } from '../../src/providers/kubernetes/api-client.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { roleOfSubjectAltName } from '../../src/xds/identity.js';
import { XdsServer } from '../../src/xds/server.js';
import { xdsServerCredentials } from '../../src/xds/tls.js';
import { createObject, createTestNamespace, testClient, type TestNamespace } from '../support/kube-cluster.js';
import { waitFor } from '../support/wait.js';

/**
 * The controller's own xDS PKI in real Secrets (controller --xds-tls-secrets): created when
 * missing, left alone when current, renewed in the last third of a leaf's lifetime, shared by
 * replicas that start together, and usable as is by the AI extension and Envoy.
 */

const DAY = 24 * 60 * 60 * 1000;
const PREFIX = 'sy-xds';
const DNS = ['localhost'];
const logger = createLogger({ level: 'silent' });

let client: KubeClient;
let ns: TestNamespace;

beforeAll(async () => {
  client = testClient();
  ns = await createTestNamespace(client, 'xds-pki');
});
afterAll(async () => {
  await ns?.remove();
});

async function secret(name: string): Promise<{ type: string; labels: Record<string, string>; data: Record<string, string> }> {
  const object = (await client.request({ path: `/api/v1/namespaces/${ns.name}/secrets/${name}` })) as { type: string; metadata: { labels: Record<string, string> }; data: Record<string, string> };
  const data = Object.fromEntries(Object.entries(object.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
  return { type: object.type, labels: object.metadata.labels, data };
}

describe('xDS certificates the controller keeps in Secrets', () => {
  const names = pkiNames(PREFIX);

  it('creates the CA and one kubernetes.io/tls Secret per role when none exist, from replicas starting at once', async () => {
    const now = new Date();
    // Two replicas at once: one creates, the other meets a conflict, reads again and agrees.
    const [a, b] = await Promise.all([
      ensurePki({ store: secretStore(client, ns.name), names, controllerDnsNames: DNS, now, logger }),
      ensurePki({ store: secretStore(client, ns.name), names, controllerDnsNames: DNS, now, logger }),
    ]);
    expect(a.ca.cert).toBe(b.ca.cert);
    expect(a.leaves.controller.cert).toBe(b.leaves.controller.cert);
    const ca = await secret(names.ca);
    expect(ca.type).toBe('Opaque');
    expect(ca.labels['switchyard.dev/managed-by']).toBe('switchyard');
    for (const role of ['controller', 'envoy', 'ai-extension'] as const) {
      const leaf = await secret(names.leaf[role]);
      expect(leaf.type).toBe('kubernetes.io/tls');
      expect(Object.keys(leaf.data).sort()).toEqual(['ca.crt', 'tls.crt', 'tls.key']);
      expect(leaf.data['ca.crt']).toBe(ca.data['ca.crt']);
      const cert = new X509Certificate(leaf.data['tls.crt'] ?? '');
      expect(roleOfSubjectAltName(cert.subjectAltName)).toBe(role);
      expect(cert.verify(new X509Certificate(ca.data['ca.crt'] ?? '').publicKey)).toBe(true);
    }
    expect(new X509Certificate((await secret(names.leaf.controller)).data['tls.crt'] ?? '').checkHost('localhost')).toBe('localhost');
  });

  it('writes nothing while the certificates are current, and renews the leaves (not the CA) in the last third of their lifetime', async () => {
    const store = secretStore(client, ns.name);
    const before = await secret(names.leaf.envoy);
    const quiet = await ensurePki({ store, names, controllerDnsNames: DNS, now: new Date(), logger });
    expect(quiet.written).toEqual([]);
    const later = await ensurePki({ store, names, controllerDnsNames: DNS, now: new Date(Date.now() + 61 * DAY), logger });
    expect(later.written.sort()).toEqual([names.leaf['ai-extension'], names.leaf.controller, names.leaf.envoy].sort());
    const after = await secret(names.leaf.envoy);
    expect(after.data['tls.crt']).not.toBe(before.data['tls.crt']);
    expect(after.data['ca.crt']).toBe(before.data['ca.crt']);
  });

  it('refuses to take over a Secret of that name that it did not create, naming it and the fix', async () => {
    const other = await createTestNamespace(client, 'xds-pki-foreign');
    try {
      const foreign: RawObject = { apiVersion: 'v1', kind: 'Secret', metadata: { name: names.ca, namespace: other.name }, stringData: { 'ca.crt': 'mine' } };
      await createObject(client, foreign);
      await expect(ensurePki({ store: secretStore(client, other.name), names, controllerDnsNames: DNS, now: new Date(), logger })).rejects.toThrow(
        `Secret ${other.name}/${names.ca} exists but was not created by Switchyard`,
      );
    } finally {
      await other.remove();
    }
  });

  it('serves xDS with the controller certificate from memory: the extension mounting its Secret gets keys, Envoy\'s Secret does not', async () => {
    const managed = await startManagedXdsTls({ client, namespace: ns.name, prefix: PREFIX, dnsNames: DNS, logger });
    const cache = new SnapshotCache();
    cache.setResources({ listeners: [], routes: [], clusters: [], endpoints: [], secrets: [{ '@type': TypeUrl.secret, name: 'credential/ai/k', generic_secret: { secret: { inline_string: 'sk-from-managed-pki' } } }] });
    const server = new XdsServer({ cache });
    const port = await server.start({ port: 0, host: '127.0.0.1', credentials: xdsServerCredentials(managed.tls) });
    const credentialsOf = async (role: 'ai-extension' | 'envoy'): Promise<grpc.ChannelCredentials> => {
      const { data } = await secret(pkiNames(PREFIX).leaf[role]);
      return grpc.credentials.createSsl(Buffer.from(data['ca.crt'] ?? ''), Buffer.from(data['tls.key'] ?? ''), Buffer.from(data['tls.crt'] ?? ''));
    };
    const extensions = await Promise.all(
      (['ai-extension', 'envoy'] as const).map(async (role) =>
        startAiExtension({ port: 0, host: '127.0.0.1', logger, nodeId: role, credentialWaitMs: 100, xds: { host: 'localhost', port, credentials: await credentialsOf(role), certificateRole: role } }),
      ),
    );
    try {
      const [extension, envoy] = extensions;
      expect(await extension?.credentials.resolve('credential/ai/k', 10_000)).toBe('sk-from-managed-pki');
      expect(await envoy?.credentials.resolve('credential/ai/k', 2_000)).toBeUndefined();
    } finally {
      await Promise.all(extensions.map((e) => e.stop()));
      await server.stop();
      managed.stop();
    }
  });

  it('renews while serving: the next handshake presents the renewed controller certificate', async () => {
    let clock = new Date();
    const managed = await startManagedXdsTls({ client, namespace: ns.name, prefix: PREFIX, dnsNames: DNS, logger, checkEveryMs: 100, now: () => clock });
    const server = new XdsServer({ cache: new SnapshotCache() });
    const port = await server.start({ port: 0, host: '127.0.0.1', credentials: xdsServerCredentials(managed.tls) });
    const presented = (): Promise<string> =>
      new Promise((resolve, reject) => {
        // Only the certificate is looked at: the renewed one is dated by the test's clock.
        const socket = connect({ host: '127.0.0.1', port, ALPNProtocols: ['h2'], rejectUnauthorized: false }, () => {
          resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? '');
          socket.destroy();
        });
        socket.on('error', reject);
      });
    try {
      const stored = async (): Promise<string> => new X509Certificate((await secret(pkiNames(PREFIX).leaf.controller)).data['tls.crt'] ?? '').fingerprint256;
      expect(await presented()).toBe(await stored());
      const before = await stored();
      clock = new Date(Date.now() + 61 * DAY);
      const renewed = await waitFor(async () => {
        const now = await stored();
        return now !== before ? now : undefined;
      }, { what: 'the controller Secret to be renewed' });
      await waitFor(async () => (await presented()) === renewed, { what: 'the server to present the renewed certificate' });
    } finally {
      await server.stop();
      managed.stop();
    }
  });
});
