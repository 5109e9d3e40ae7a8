import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A throwaway PKI made with the openssl CLI at test time: a CA and certificates it signs, each
 * written as a directory laid out like a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt).
 */

export interface Pki {
  root: string;
  /** The CA certificate file. */
  caFile: string;
  /**
   * Issues a certificate (ECDSA P-256, one day) into `<root>/<name>/{tls.crt,tls.key,ca.crt}`.
   * `san`: e.g. `['IP:127.0.0.1', 'DNS:localhost']`; `usage`: extended key usages.
   */
  issue(name: string, opts: { san?: string[]; usage: ('serverAuth' | 'clientAuth')[]; withCa?: boolean }): string;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function createPki(label: string): Pki {
  const root = mkdtempSync(join(tmpdir(), `switchyard-pki-${label}-`));
  const caKey = join(root, 'ca.key');
  const caFile = join(root, 'ca.crt');
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', caKey], root);
  openssl(
    ['req', '-x509', '-new', '-key', caKey, '-out', caFile, '-days', '1', '-subj', `/CN=switchyard test CA ${label}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    root,
  );
  let serial = 1;
  return {
    root,
    caFile,
    issue(name, { san = [], usage, withCa = true }) {
      const dir = join(root, name);
      mkdirSync(dir);
      const key = join(dir, 'tls.key');
      const csr = join(dir, 'tls.csr');
      const ext = join(dir, 'ext.cnf');
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(dir, 'tls.ec.key')], dir);
      // PKCS#8, as cert-manager and most tools write it.
      openssl(['pkcs8', '-topk8', '-nocrypt', '-in', join(dir, 'tls.ec.key'), '-out', key], dir);
      rmSync(join(dir, 'tls.ec.key'));
      openssl(['req', '-new', '-key', key, '-out', csr, '-subj', `/CN=${name}`], dir);
      writeFileSync(
        ext,
        [
          'basicConstraints=critical,CA:FALSE',
          'keyUsage=critical,digitalSignature',
          `extendedKeyUsage=${usage.join(',')}`,
          ...(san.length > 0 ? [`subjectAltName=${san.join(',')}`] : []),
        ].join('\n'),
      );
      openssl(['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-set_serial', String(++serial), '-days', '1', '-out', join(dir, 'tls.crt'), '-extfile', ext], dir);
      rmSync(csr);
      rmSync(ext);
      if (withCa) copyFileSync(caFile, join(dir, 'ca.crt'));
      return dir;
    },
    remove() {
      rmSync(root, { recursive: true, force: true });
    },
  };
}
