import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { readXdsClientTls, readXdsServerTls, XdsTlsError } from '../../src/xds/tls.js';
import { createPki, type Pki } from '../support/certs.js';

/** --xds-tls-dir: what each command reads, and a clear error naming the file and the flag. */

let pki: Pki;
let good: string;
let other: string;
let scratch: string;

beforeAll(() => {
  pki = createPki('files');
  good = pki.issue('server', { san: ['DNS:localhost'], usage: ['serverAuth', 'clientAuth'] });
  other = pki.issue('other', { usage: ['clientAuth'] });
  scratch = mkdtempSync(join(tmpdir(), 'switchyard-tls-files-'));
});
afterAll(() => {
  pki?.remove();
  rmSync(scratch, { recursive: true, force: true });
});
afterEach(() => vi.restoreAllMocks());

let n = 0;
/** A directory with the chosen files of `good` (or given contents). */
function dir(files: Record<string, string | Buffer | 'dir'>): string {
  const d = join(scratch, `d${++n}`);
  mkdirSync(d);
  for (const [name, content] of Object.entries(files)) {
    if (content === 'dir') mkdirSync(join(d, name));
    else writeFileSync(join(d, name), content);
  }
  return d;
}
const file = (d: string, name: string): Buffer => readFileSync(join(d, name));

describe('readXdsServerTls', () => {
  it('reads tls.crt and tls.key, and ca.crt when present (mTLS)', () => {
    const withCa = readXdsServerTls(good);
    expect(withCa.ca?.equals(file(good, 'ca.crt'))).toBe(true);
    const d = dir({ 'tls.crt': file(good, 'tls.crt'), 'tls.key': file(good, 'tls.key') });
    const tlsOnly = readXdsServerTls(d);
    expect(tlsOnly.cert.equals(file(good, 'tls.crt'))).toBe(true);
    expect(tlsOnly.ca).toBeUndefined();
  });

  it('names the missing or unreadable file and the flag', () => {
    expect(() => readXdsServerTls('/nonexistent/xds-tls')).toThrow('--xds-tls-dir: cannot read /nonexistent/xds-tls/tls.crt');
    const noKey = dir({ 'tls.crt': file(good, 'tls.crt') });
    expect(() => readXdsServerTls(noKey)).toThrow(`--xds-tls-dir: cannot read ${join(noKey, 'tls.key')} (the xDS server's private key): no such file`);
    const keyIsDir = dir({ 'tls.crt': file(good, 'tls.crt'), 'tls.key': 'dir' });
    expect(() => readXdsServerTls(keyIsDir)).toThrow(`cannot read ${join(keyIsDir, 'tls.key')}`);
    const caIsDir = dir({ 'tls.crt': file(good, 'tls.crt'), 'tls.key': file(good, 'tls.key'), 'ca.crt': 'dir' });
    expect(() => readXdsServerTls(caIsDir)).toThrow(`cannot read ${join(caIsDir, 'ca.crt')}`);
    expect(() => readXdsServerTls(noKey)).toThrow(XdsTlsError);
  });

  it('refuses files that are not PEM, and a key that is not the certificate’s', () => {
    const notPem = dir({ 'tls.crt': 'hello', 'tls.key': file(good, 'tls.key') });
    expect(() => readXdsServerTls(notPem)).toThrow(`${join(notPem, 'tls.crt')} is not a PEM certificate`);
    const badKey = dir({ 'tls.crt': file(good, 'tls.crt'), 'tls.key': 'hello' });
    expect(() => readXdsServerTls(badKey)).toThrow(`${join(badKey, 'tls.key')} is not a PEM private key`);
    const mismatch = dir({ 'tls.crt': file(good, 'tls.crt'), 'tls.key': file(other, 'tls.key') });
    expect(() => readXdsServerTls(mismatch)).toThrow(`${join(mismatch, 'tls.key')} is not the private key of ${join(mismatch, 'tls.crt')}`);
    const badCa = dir({ 'tls.crt': file(good, 'tls.crt'), 'tls.key': file(good, 'tls.key'), 'ca.crt': 'nope' });
    expect(() => readXdsServerTls(badCa)).toThrow(`${join(badCa, 'ca.crt')} is not a PEM certificate`);
  });
});

describe('readXdsClientTls', () => {
  it('needs ca.crt; tls.crt and tls.key are optional but only together', () => {
    expect(readXdsClientTls(good).cert?.equals(file(good, 'tls.crt'))).toBe(true);
    const caOnly = dir({ 'ca.crt': file(good, 'ca.crt') });
    expect(readXdsClientTls(caOnly).cert).toBeUndefined();
    const noCa = dir({ 'tls.crt': file(good, 'tls.crt'), 'tls.key': file(good, 'tls.key') });
    expect(() => readXdsClientTls(noCa)).toThrow(`--xds-tls-dir: cannot read ${join(noCa, 'ca.crt')} (the CA that signed the controller's certificate): no such file`);
    const certOnly = dir({ 'ca.crt': file(good, 'ca.crt'), 'tls.crt': file(good, 'tls.crt') });
    expect(() => readXdsClientTls(certOnly)).toThrow(`--xds-tls-dir: ${join(certOnly, 'tls.key')} is missing: a client certificate needs both tls.crt and tls.key`);
  });
});

async function run(args: string[]): Promise<{ result: number | Error; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array): boolean => {
    stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  });
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array): boolean => {
    stderr += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  });
  try {
    return { result: await main(args), stdout, stderr };
  } catch (err) {
    return { result: err instanceof Error ? err : new Error(String(err)), stdout, stderr };
  }
}

describe('--xds-tls-dir on the commands', () => {
  it('serve and controller fail at start, naming the file and the flag, before touching anything else', async () => {
    const noKey = dir({ 'tls.crt': file(good, 'tls.crt') });
    const serve = await run(['serve', '--config', '/nonexistent/config', '--xds-tls-dir', noKey, '--log-level', 'silent']);
    // A run-time failure: exit code 1, one line on stderr.
    expect(serve.result).toBe(1);
    expect(serve.stderr).toContain(`--xds-tls-dir: cannot read ${join(noKey, 'tls.key')}`);
    // The kubeconfig does not exist either: the TLS files are checked first.
    const ctl = await run(['controller', '--kubeconfig', '/nonexistent/kubeconfig', '--xds-tls-dir', noKey, '--log-level', 'silent']);
    expect(ctl.result).toBe(1);
    expect(ctl.stderr).toContain(`--xds-tls-dir: cannot read ${join(noKey, 'tls.key')}`);
  });

  it('ai-extension fails at start without ca.crt', async () => {
    const noCa = dir({ 'tls.crt': file(good, 'tls.crt'), 'tls.key': file(good, 'tls.key') });
    const r = await run(['ai-extension', '--xds', '127.0.0.1:18000', '--xds-tls-dir', noCa, '--port', '0', '--metrics-port', '0', '--log-level', 'silent']);
    expect(r.result).toBe(1);
    expect(r.stderr).toContain(`--xds-tls-dir: cannot read ${join(noCa, 'ca.crt')}`);
  });

  it('bootstrap writes the paths as Envoy sees them, without reading them', async () => {
    const r = await run(['bootstrap', '--xds', 'switchyard.switchyard-system.svc:18000', '--node-id', 'gw', '--xds-tls-dir', '/etc/switchyard/xds-tls/']);
    expect(r.result).toBe(0);
    const cluster = ((JSON.parse(r.stdout) as { static_resources: { clusters: JsonObject[] } }).static_resources.clusters[0] ?? {}) as JsonObject;
    expect(cluster['transport_socket']).toEqual({
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        sni: 'switchyard.switchyard-system.svc',
        common_tls_context: {
          tls_certificates: [{ certificate_chain: { filename: '/etc/switchyard/xds-tls/tls.crt' }, private_key: { filename: '/etc/switchyard/xds-tls/tls.key' } }],
          validation_context: {
            trusted_ca: { filename: '/etc/switchyard/xds-tls/ca.crt' },
            match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: 'switchyard.switchyard-system.svc' } }],
          },
        },
      },
    });
    const plain = await run(['bootstrap', '--xds', '127.0.0.1:18000', '--node-id', 'gw']);
    expect(plain.stdout).not.toContain('transport_socket');
  });

  it('is in the usage of serve, controller, ai-extension and bootstrap', async () => {
    const r = await run(['help']);
    for (const command of ['serve', 'controller', 'ai-extension', 'bootstrap']) {
      const block = r.stdout.slice(r.stdout.indexOf(`switchyard ${command}`));
      // The synopsis: up to the description, indented by six spaces.
      expect(block.slice(0, block.search(/\n {6}\S/)), command).toContain('[--xds-tls-dir DIR]');
    }
  });
});
