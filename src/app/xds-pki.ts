import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isNotFound, KubeApiError, type KubeClient } from '../providers/kubernetes/api-client.js';
import { issueCa, issueLeaf, needsIssue, type KeyPair } from '../xds/certificates.js';
import { ROLES, type Role } from '../xds/identity.js';
import { CA_FILE, CERT_FILE, KEY_FILE, MemoryCertificateProvider, type XdsServerTls } from '../xds/tls.js';

/**
 * Keeps the xDS PKI (src/xds/certificates.ts) in a store: a CA entry (ca.crt, ca.key) and one
 * entry per role laid out like a kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt). Missing
 * entries are created, a leaf is re-issued within the last third of its lifetime or when the
 * CA, role or Service names changed, and a new CA re-issues every leaf (the leaves' ca.crt then
 * also holds the previous CA while it is valid, so peers that still hold old files verify).
 * Stores: a directory (`switchyard certs --out`) and Kubernetes Secrets (the controller).
 */

export type Entry = Record<string, string>;

export interface PkiStore {
  /** The entry, or undefined when it does not exist. */
  read(name: string): Promise<Entry | undefined>;
  /**
   * Writes the entry. `previous` is what read() returned (undefined: create). Rejects with
   * PkiConflict when someone else wrote it in between (another controller replica).
   */
  write(name: string, entry: Entry, previous: Entry | undefined): Promise<void>;
}

export class PkiConflict extends Error {}

export interface PkiNames {
  ca: string;
  leaf: Record<Role, string>;
}

export interface EnsureOptions {
  store: PkiStore;
  names: PkiNames;
  /** DNS names of the controller's certificate (its Service names). */
  controllerDnsNames: readonly string[];
  now: Date;
  logger?: Logger;
}

export interface PkiState {
  ca: KeyPair;
  leaves: Record<Role, KeyPair & { caBundle: string }>;
  /** Entries written by this call. */
  written: string[];
}

/** Brings the store up to date (see above); on a write conflict, reads again and retries. */
export async function ensurePki(opts: EnsureOptions): Promise<PkiState> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await ensureOnce(opts);
    } catch (err) {
      if (!(err instanceof PkiConflict) || attempt >= 5) throw err;
      opts.logger?.info({ attempt, reason: err.message }, 'xds-pki: another writer updated the certificates; reading them again');
    }
  }
}

async function ensureOnce({ store, names, controllerDnsNames, now, logger }: EnsureOptions): Promise<PkiState> {
  const written: string[] = [];
  const caEntry = await store.read(names.ca);
  let ca: KeyPair;
  let previousCa: string | undefined;
  const storedCa = caEntry?.[CA_FILE];
  const storedCaKey = caEntry?.['ca.key'];
  if (storedCa === undefined || storedCaKey === undefined || needsIssue(storedCa, now)) {
    ca = issueCa({ now });
    previousCa = storedCa !== undefined && stillValid(storedCa, now) ? storedCa : undefined;
    await store.write(names.ca, { [CA_FILE]: ca.cert, 'ca.key': ca.key, ...(previousCa ? { 'previous.crt': previousCa } : {}) }, caEntry);
    written.push(names.ca);
    logger?.info({ entry: names.ca, rotated: storedCa !== undefined }, 'xds-pki: issued the xDS CA');
  } else {
    ca = { cert: storedCa, key: storedCaKey };
    const previous = caEntry?.['previous.crt'];
    previousCa = previous !== undefined && stillValid(previous, now) ? previous : undefined;
  }
  const caBundle = previousCa ? `${ca.cert.trimEnd()}\n${previousCa.trimEnd()}\n` : ca.cert;
  const leaves = {} as Record<Role, KeyPair & { caBundle: string }>;
  for (const role of ROLES) {
    const name = names.leaf[role];
    const entry = await store.read(name);
    const dnsNames = role === 'controller' ? controllerDnsNames : [];
    const cert = entry?.[CERT_FILE];
    const key = entry?.[KEY_FILE];
    const stale = cert === undefined || key === undefined || needsIssue(cert, now, { ca: ca.cert, role, dnsNames });
    // A current leaf is still rewritten when its CA bundle changed (a previous CA expired).
    if (stale || entry?.[CA_FILE] !== caBundle) {
      const leaf = stale || cert === undefined || key === undefined ? issueLeaf({ ca, role, dnsNames, now }) : { cert, key };
      await store.write(name, { [CERT_FILE]: leaf.cert, [KEY_FILE]: leaf.key, [CA_FILE]: caBundle }, entry);
      written.push(name);
      logger?.info({ entry: name, role, issued: stale, renewed: cert !== undefined && stale }, 'xds-pki: wrote the certificate of a role');
      leaves[role] = { ...leaf, caBundle };
    } else {
      leaves[role] = { cert, key, caBundle };
    }
  }
  return { ca, leaves, written };
}

function stillValid(pem: string, now: Date): boolean {
  try {
    return now.getTime() < Date.parse(new X509Certificate(pem).validTo);
  } catch {
    return false;
  }
}

/**
 * A directory per entry (`<root>/<name>/<file>`), files written mode 0600 by rename. Conflicts
 * are not detected: one `switchyard certs` at a time.
 */
export function directoryStore(root: string): PkiStore {
  return {
    async read(name) {
      const dir = join(root, name);
      const entry: Entry = {};
      for (const file of [CA_FILE, 'ca.key', 'previous.crt', CERT_FILE, KEY_FILE]) {
        try {
          entry[file] = readFileSync(join(dir, file), 'utf8');
        } catch (err) {
          if (!(err instanceof Error && 'code' in err && err.code === 'ENOENT')) throw err;
        }
      }
      return Object.keys(entry).length === 0 ? undefined : entry;
    },
    async write(name, entry) {
      const dir = join(root, name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      for (const [file, content] of Object.entries(entry)) {
        const path = join(dir, file);
        writeFileSync(`${path}.tmp`, content, { mode: 0o600 });
        chmodSync(`${path}.tmp`, 0o600);
        renameSync(`${path}.tmp`, path);
      }
    },
  };
}

const MANAGED_BY = 'switchyard.dev/managed-by';

/**
 * Secrets in `namespace`: the CA as an Opaque Secret, the leaves as kubernetes.io/tls. Writes
 * carry the resourceVersion read, so two replicas never overwrite each other (409 = PkiConflict).
 * A Secret of that name that Switchyard did not create is left alone, with an error naming it.
 */
export function secretStore(client: KubeClient, namespace: string, labels: Record<string, string> = {}): PkiStore {
  const versions = new Map<string, string>();
  const path = (name?: string): string => `/api/v1/namespaces/${namespace}/secrets${name ? `/${name}` : ''}`;
  return {
    async read(name) {
      let secret: unknown;
      try {
        secret = await client.request({ path: path(name) });
      } catch (err) {
        if (isNotFound(err)) {
          versions.delete(name);
          return undefined;
        }
        throw err;
      }
      const object = (secret ?? {}) as { metadata?: { resourceVersion?: string; labels?: Record<string, string> }; data?: Record<string, string> };
      if (object.metadata?.labels?.[MANAGED_BY] !== 'switchyard') {
        throw new Error(`Secret ${namespace}/${name} exists but was not created by Switchyard (no label ${MANAGED_BY}=switchyard): delete it, or let Switchyard manage it by adding that label`);
      }
      versions.set(name, object.metadata.resourceVersion ?? '');
      const entry: Entry = {};
      for (const [file, value] of Object.entries(object.data ?? {})) entry[file] = Buffer.from(value, 'base64').toString('utf8');
      return entry;
    },
    async write(name, entry, previous) {
      const isCa = !(CERT_FILE in entry);
      const body = {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: {
          name,
          namespace,
          labels: { ...labels, [MANAGED_BY]: 'switchyard' },
          ...(previous !== undefined ? { resourceVersion: versions.get(name) ?? '' } : {}),
        },
        type: isCa ? 'Opaque' : 'kubernetes.io/tls',
        data: Object.fromEntries(Object.entries(entry).map(([file, value]) => [file, Buffer.from(value).toString('base64')])),
      };
      try {
        await client.request(previous === undefined ? { method: 'POST', path: path(), body } : { method: 'PUT', path: path(name), body });
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 409) throw new PkiConflict(`Secret ${namespace}/${name}: ${err.message}`);
        throw err;
      }
    },
  };
}

/** The entry names for a prefix: `<prefix>-ca`, `<prefix>-controller`, `<prefix>-envoy`, `<prefix>-ai-extension` (no prefix: `ca`, ...). */
export function pkiNames(prefix: string): PkiNames {
  const name = (suffix: string): string => (prefix === '' ? suffix : `${prefix}-${suffix}`);
  return { ca: name('ca'), leaf: { controller: name('controller'), envoy: name('envoy'), 'ai-extension': name('ai-extension') } };
}

export interface ManagedXdsTlsOptions {
  client: KubeClient;
  /** Where the Secrets live: the controller's own namespace. */
  namespace: string;
  /** Secret names: pkiNames(prefix). */
  prefix: string;
  /** The controller's Service names, which Envoy and the extension dial. */
  dnsNames: readonly string[];
  logger: Logger;
  /** How often the Secrets are checked for renewal; default one hour. */
  checkEveryMs?: number;
  now?: () => Date;
}

export interface ManagedXdsTls {
  /** The controller's own certificate, served from memory (it mounts no Secret) and replaced on renewal. */
  tls: XdsServerTls;
  stop(): void;
}

/**
 * `controller --xds-tls-secrets PREFIX`: the controller creates and renews the xDS Secrets
 * itself (no manual step, no install hook), and serves with its own certificate from memory.
 * Every replica checks; the API server's resourceVersion keeps them from overwriting each other.
 */
export async function startManagedXdsTls(opts: ManagedXdsTlsOptions): Promise<ManagedXdsTls> {
  const now = opts.now ?? (() => new Date());
  const store = secretStore(opts.client, opts.namespace, { 'app.kubernetes.io/name': 'switchyard', 'app.kubernetes.io/component': 'xds-pki' });
  const names = pkiNames(opts.prefix);
  const logger = opts.logger.child({ component: 'xds-pki' });
  const ensure = (): Promise<PkiState> => ensurePki({ store, names, controllerDnsNames: opts.dnsNames, now: now(), logger });
  const first = await ensure();
  const source = new MemoryCertificateProvider();
  const apply = (state: PkiState): void => {
    const own = state.leaves.controller;
    source.set({ cert: Buffer.from(own.cert), key: Buffer.from(own.key), ca: Buffer.from(own.caBundle) });
  };
  apply(first);
  const timer = setInterval(() => {
    ensure().then(
      (state) => {
        if (state.written.length > 0) apply(state);
      },
      (err: unknown) => logger.error({ err: err instanceof Error ? err.message : String(err), namespace: opts.namespace }, 'xds-pki: could not check or renew the xDS certificates; retrying at the next check'),
    );
  }, opts.checkEveryMs ?? 60 * 60 * 1000);
  timer.unref();
  const own = first.leaves.controller;
  return {
    tls: { dir: `Secret ${opts.namespace}/${names.leaf.controller}`, cert: Buffer.from(own.cert), key: Buffer.from(own.key), ca: Buffer.from(own.caBundle), source },
    stop: () => clearInterval(timer),
  };
}
