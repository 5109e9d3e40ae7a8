import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A throwaway certificate authority and one server certificate for the fake providers that speak
 * TLS (openai, azureopenai, anthropic members are TLS whatever port a hostOverride points at).
 * Envoy trusts `caFile` (EnvoyOptions.trustedCaFile) and checks the SAN against each member's
 * hostname, as it would with the real providers. Made with the openssl command line.
 */
export interface FakeTls {
  /** PEM of the CA, for Envoy's trusted_ca. */
  caFile: string;
  cert: string;
  key: string;
  /** Removes the files. */
  remove(): void;
}

export function createFakeTls(hostnames: readonly string[]): FakeTls {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-fake-tls-'));
  const path = (name: string): string => join(dir, name);
  const openssl = (...args: string[]): void => {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=switchyard fake provider CA', '-keyout', path('ca.key'), '-out', path('ca.pem'));
  writeFileSync(path('san.ext'), `subjectAltName=${hostnames.map((h) => `DNS:${h}`).join(',')}\nbasicConstraints=CA:FALSE\n`);
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', `/CN=${hostnames[0] ?? 'localhost'}`, '-keyout', path('server.key'), '-out', path('server.csr'));
  openssl('x509', '-req', '-in', path('server.csr'), '-CA', path('ca.pem'), '-CAkey', path('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', path('san.ext'), '-out', path('server.pem'));
  return {
    caFile: path('ca.pem'),
    cert: readFileSync(path('server.pem'), 'utf8'),
    key: readFileSync(path('server.key'), 'utf8'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
