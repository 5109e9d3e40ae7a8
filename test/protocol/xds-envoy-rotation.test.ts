import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildBootstrap, xdsTlsSdsFiles, type XdsTlsFiles } from '../../src/envoy/bootstrap.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { issueCa, issueLeaf, type KeyPair } from '../../src/xds/certificates.js';
import { XdsServer, type AckEvent } from '../../src/xds/server.js';
import { xdsServerCredentials } from '../../src/xds/tls.js';
import { startEnvoy } from '../support/envoy.js';
import { waitFor } from '../support/wait.js';

/**
 * Envoy's xDS client certificate in a directory the kubelet updates (a Secret volume: files are
 * links through `..data`, which is swapped to a new directory): with the bootstrap's file-based
 * SDS (XdsTlsFiles.sdsDir, what the chart sets), Envoy uses a renewed certificate from the next
 * connection on, without a restart.
 */

const root = mkdtempSync(join(tmpdir(), 'switchyard-rotation-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function kubeletWrite(dir: string, files: Record<string, string>, generation: number): void {
  mkdirSync(join(dir, `..gen_${generation}`), { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, `..gen_${generation}`, name), content);
  symlinkSync(`..gen_${generation}`, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  if (generation === 1) for (const name of Object.keys(files)) symlinkSync(join('..data', name), join(dir, name));
}

const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber.toLowerCase().replace(/^0+/, '');

describe('Envoy with its xDS client certificate in a Secret volume', () => {
  it('presents a renewed certificate on its next connection, without a restart', async () => {
    const now = new Date();
    const ca = issueCa({ now });
    const serverLeaf = issueLeaf({ ca, role: 'controller', dnsNames: ['localhost'], now });
    const first = issueLeaf({ ca, role: 'envoy', now });
    const dir = join(root, 'xds-tls');
    const sdsDir = join(root, 'envoy');
    mkdirSync(sdsDir);
    kubeletWrite(dir, { 'tls.crt': first.cert, 'tls.key': first.key, 'ca.crt': ca.cert }, 1);
    const files: XdsTlsFiles = { caFile: join(dir, 'ca.crt'), certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key'), sdsDir };
    for (const [name, content] of Object.entries(xdsTlsSdsFiles(files))) writeFileSync(join(sdsDir, name), JSON.stringify(content));

    const cache = new SnapshotCache();
    cache.setResources({ listeners: [], routes: [], clusters: [], endpoints: [], secrets: [] });
    const tls = { dir: 'memory', cert: Buffer.from(serverLeaf.cert), key: Buffer.from(serverLeaf.key), ca: Buffer.from(ca.cert) };
    const start = async (port: number): Promise<{ server: XdsServer; port: number; acks: AckEvent[] }> => {
      const server = new XdsServer({ cache });
      const acks: AckEvent[] = [];
      server.on('ack', (e) => acks.push(e));
      return { server, acks, port: await server.start({ port, host: '127.0.0.1', credentials: xdsServerCredentials(tls) }) };
    };
    let controller = await start(0);
    const envoy = await startEnvoy({ id: 'rotation', adminPort: 0, bootstrap: buildBootstrap({ xds: { host: 'localhost', port: controller.port }, nodeId: 'rotation', adminPort: 0, xdsTls: files }) });
    const presents = async (leaf: KeyPair): Promise<boolean> => {
      const certs = JSON.parse(await envoy.admin('/certs')) as { certificates?: { cert_chain?: { serial_number?: string }[] }[] };
      return (certs.certificates ?? []).some((c) => (c.cert_chain ?? []).some((x) => (x.serial_number ?? '').toLowerCase().replace(/^0+/, '') === serialOf(leaf.cert)));
    };
    try {
      await waitFor(() => controller.acks.find((a) => a.typeUrl === TypeUrl.cluster), { what: 'Envoy to ACK over mTLS with its first certificate', timeoutMs: 15_000 });
      expect(await presents(first)).toBe(true);

      const second = issueLeaf({ ca, role: 'envoy', now });
      kubeletWrite(dir, { 'tls.crt': second.cert, 'tls.key': second.key, 'ca.crt': ca.cert }, 2);
      await waitFor(() => presents(second), { what: 'Envoy to load the renewed certificate', timeoutMs: 15_000 });
      // The next connection (a controller restart) is made with it.
      await controller.server.stop();
      controller = await start(controller.port);
      await waitFor(() => controller.acks.find((a) => a.typeUrl === TypeUrl.cluster), { what: 'Envoy to reconnect with the renewed certificate', timeoutMs: 30_000 });
      expect(await presents(first)).toBe(false);
    } catch (err) {
      envoy.printLogs(40);
      throw err;
    } finally {
      await envoy.stop();
      await controller.server.stop();
    }
  });
});
