import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { roleOfSubjectAltName, type Role } from './identity.js';

/**
 * xDS over TLS: a directory laid out like a Kubernetes `kubernetes.io/tls` Secret (tls.crt,
 * tls.key, ca.crt), read once at start. On the server (`serve`, `controller`), tls.crt/tls.key
 * are its certificate and ca.crt, when present, makes client certificates required and verified
 * against it (mTLS). On a client (`ai-extension`), ca.crt verifies the controller and
 * tls.crt/tls.key, when present, are the client certificate.
 */

export const CERT_FILE = 'tls.crt';
export const KEY_FILE = 'tls.key';
export const CA_FILE = 'ca.crt';

/** A missing, unreadable or malformed file, named with the flag that pointed at it. */
export class XdsTlsError extends Error {}

export interface XdsServerTls {
  /** Where the files are, or what else the certificates come from (for logs and errors). */
  dir: string;
  cert: Buffer;
  key: Buffer;
  /** Present: clients must present a certificate signed by it. */
  ca?: Buffer;
  /**
   * With `ca`: where renewed certificates come from while serving. readXdsServerTls: the files
   * in `dir`, read again every minute (a Kubernetes Secret volume is updated in place); absent:
   * `cert`, `key` and `ca` as they are.
   */
  source?: grpc.experimental.CertificateProvider;
}

/** How often certificate files are read again: a renewed Secret reaches a pod within a minute or two anyway. */
const REFRESH_MS = 60_000;

/** Certificates held in memory and replaced by set(): the controller's own, when it manages the Secrets. */
export class MemoryCertificateProvider implements grpc.experimental.CertificateProvider {
  private ca: grpc.experimental.CaCertificateUpdate | null = null;
  private identity: grpc.experimental.IdentityCertificateUpdate | null = null;
  private readonly caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();
  private readonly identityListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();

  set({ cert, key, ca }: { cert: Buffer; key: Buffer; ca: Buffer }): void {
    this.ca = { caCertificate: ca };
    this.identity = { certificate: cert, privateKey: key };
    for (const listener of this.caListeners) listener(this.ca);
    for (const listener of this.identityListeners) listener(this.identity);
  }

  // grpc-js registers the watcher that wants the update only after adding the listener: a
  // synchronous first update would reach nobody, so it is delivered on the next tick.
  addCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    queueMicrotask(() => {
      if (this.ca && this.caListeners.has(listener)) listener(this.ca);
    });
  }

  removeCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.identity && this.identityListeners.has(listener)) listener(this.identity);
    });
  }

  removeIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener);
  }
}

export interface XdsClientTls {
  dir: string;
  ca: Buffer;
  /** The client certificate and key, both or neither. */
  cert?: Buffer;
  key?: Buffer;
}

/** The server side: tls.crt and tls.key required, ca.crt optional (present = mTLS). */
export function readXdsServerTls(dir: string, flag = '--xds-tls-dir'): XdsServerTls {
  const files = new TlsDir(dir, flag);
  const cert = files.read(CERT_FILE, "the xDS server's certificate chain");
  const key = files.read(KEY_FILE, "the xDS server's private key");
  files.keyPair(cert, key);
  const ca = files.readOptional(CA_FILE, 'the CA that signs client certificates');
  if (ca) files.certificate(CA_FILE, ca);
  return { dir, cert, key, ...(ca ? { ca, source: filesOf(dir) } : {}) };
}

/** The client side: ca.crt required, tls.crt and tls.key optional but only together. */
export function readXdsClientTls(dir: string, flag = '--xds-tls-dir'): XdsClientTls {
  const files = new TlsDir(dir, flag);
  const ca = files.read(CA_FILE, "the CA that signed the controller's certificate");
  files.certificate(CA_FILE, ca);
  const cert = files.readOptional(CERT_FILE, 'the client certificate chain');
  const key = files.readOptional(KEY_FILE, "the client certificate's private key");
  if ((cert === undefined) !== (key === undefined)) {
    const missing = cert === undefined ? CERT_FILE : KEY_FILE;
    throw new XdsTlsError(`${flag}: ${join(dir, missing)} is missing: a client certificate needs both ${CERT_FILE} and ${KEY_FILE}`);
  }
  if (cert && key) files.keyPair(cert, key);
  return { dir, ca, ...(cert && key ? { cert, key } : {}) };
}

/** The role the client certificate names in its URI SAN (identity.ts), if it has one. */
export function clientCertificateRole(tls: XdsClientTls): Role | undefined {
  if (tls.cert === undefined) return undefined;
  return roleOfSubjectAltName(new X509Certificate(tls.cert).subjectAltName);
}

export function xdsServerCredentials(tls: XdsServerTls): grpc.ServerCredentials {
  let credentials: grpc.ServerCredentials;
  if (tls.ca === undefined) credentials = grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false);
  else {
    const source = tls.source ?? fixed(tls.cert, tls.key, tls.ca);
    credentials = grpc.experimental.createCertificateProviderServerCredentials(source, source, true);
  }
  credentialsTls.set(credentials, tls);
  return credentials;
}

/** What each credentials object of xdsServerCredentials was made from: the xDS server's own transport serves TLS from it. */
const credentialsTls = new WeakMap<grpc.ServerCredentials, XdsServerTls>();

/** The TLS settings `credentials` were made from by xdsServerCredentials; undefined for credentials made otherwise. */
export function serverTlsOf(credentials: grpc.ServerCredentials): XdsServerTls | undefined {
  return credentialsTls.get(credentials);
}

/** A server's certificate, key and (mTLS) CA as they stand. */
export interface ServerCertificates {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca?: Buffer | undefined;
}

/**
 * Calls `apply` with each renewal of `tls`'s certificates from its source (files read again
 * every minute, or a MemoryCertificateProvider's set()), once both the identity and the CA are
 * known; returns how to stop. Without a source, nothing is renewed.
 */
export function watchServerCertificates(tls: XdsServerTls, apply: (certificates: ServerCertificates) => void): () => void {
  const source = tls.source;
  if (source === undefined) return () => undefined;
  let current: { cert: Buffer; key: Buffer; ca: Buffer | undefined } = { cert: tls.cert, key: tls.key, ca: tls.ca };
  let stopped = false;
  const update = (next: Partial<typeof current>): void => {
    if (stopped) return;
    const merged = { ...current, ...next };
    if (merged.cert.equals(current.cert) && merged.key.equals(current.key) && sameBuffer(merged.ca, current.ca)) return;
    current = merged;
    apply(current);
  };
  const onCa: grpc.experimental.CaCertificateUpdateListener = (update_) => {
    if (update_ !== null) update({ ca: update_.caCertificate });
  };
  const onIdentity: grpc.experimental.IdentityCertificateUpdateListener = (update_) => {
    if (update_ !== null) update({ cert: update_.certificate, key: update_.privateKey });
  };
  source.addCaCertificateListener(onCa);
  source.addIdentityCertificateListener(onIdentity);
  return () => {
    stopped = true;
    source.removeCaCertificateListener(onCa);
    source.removeIdentityCertificateListener(onIdentity);
  };
}

function sameBuffer(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
}

/** With a client certificate, its files (and ca.crt) are read again every minute, so a renewed one is used. */
export function xdsChannelCredentials(tls: XdsClientTls): grpc.ChannelCredentials {
  if (tls.cert === undefined) return grpc.credentials.createSsl(tls.ca);
  const files = filesOf(tls.dir);
  return grpc.experimental.createCertificateProviderChannelCredentials(files, files);
}

function fixed(cert: Buffer, key: Buffer, ca: Buffer): grpc.experimental.CertificateProvider {
  const provider = new MemoryCertificateProvider();
  provider.set({ cert, key, ca });
  return provider;
}

function filesOf(dir: string): grpc.experimental.CertificateProvider {
  return new grpc.experimental.FileWatcherCertificateProvider({
    certificateFile: join(dir, CERT_FILE),
    privateKeyFile: join(dir, KEY_FILE),
    caCertificateFile: join(dir, CA_FILE),
    refreshIntervalMs: REFRESH_MS,
  });
}

/** How the xDS server is served, for logs: "mtls", "tls" or "plaintext". */
export function xdsTlsMode(tls: XdsServerTls | undefined): 'mtls' | 'tls' | 'plaintext' {
  if (tls === undefined) return 'plaintext';
  return tls.ca ? 'mtls' : 'tls';
}

class TlsDir {
  constructor(
    private readonly dir: string,
    private readonly flag: string,
  ) {}

  read(file: string, what: string): Buffer {
    const path = join(this.dir, file);
    try {
      return readFileSync(path);
    } catch (err) {
      throw new XdsTlsError(`${this.flag}: cannot read ${path} (${what}): ${reason(err)}`);
    }
  }

  readOptional(file: string, what: string): Buffer | undefined {
    const path = join(this.dir, file);
    try {
      return readFileSync(path);
    } catch (err) {
      if (isCode(err, 'ENOENT')) return undefined;
      throw new XdsTlsError(`${this.flag}: cannot read ${path} (${what}): ${reason(err)}`);
    }
  }

  certificate(file: string, pem: Buffer): X509Certificate {
    try {
      return new X509Certificate(pem);
    } catch (err) {
      throw new XdsTlsError(`${this.flag}: ${join(this.dir, file)} is not a PEM certificate: ${reason(err)}`);
    }
  }

  keyPair(certPem: Buffer, keyPem: Buffer): void {
    const cert = this.certificate(CERT_FILE, certPem);
    let key: KeyObject;
    try {
      key = createPrivateKey(keyPem);
    } catch (err) {
      throw new XdsTlsError(`${this.flag}: ${join(this.dir, KEY_FILE)} is not a PEM private key: ${reason(err)}`);
    }
    if (!cert.checkPrivateKey(key)) {
      throw new XdsTlsError(`${this.flag}: ${join(this.dir, KEY_FILE)} is not the private key of ${join(this.dir, CERT_FILE)}`);
    }
  }
}

function isCode(err: unknown, code: string): boolean {
  return err instanceof Error && 'code' in err && err.code === code;
}

function reason(err: unknown): string {
  if (isCode(err, 'ENOENT')) return 'no such file';
  if (isCode(err, 'EACCES')) return 'permission denied';
  if (isCode(err, 'EISDIR')) return 'is a directory';
  return err instanceof Error ? err.message : String(err);
}
