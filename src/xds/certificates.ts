import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import forge from 'node-forge';
import { roleUri, type Role } from './identity.js';

/**
 * The xDS PKI Switchyard issues for itself: a CA and one leaf certificate per role (controller,
 * envoy, ai-extension), each naming its role in a URI SAN (identity.ts); the controller's also
 * names its Service (DNS SANs), since Envoy and the extension dial it by that name. RSA-2048
 * keys from node:crypto, certificates built and signed with node-forge (Node cannot sign
 * certificates itself; forge signs RSA only). Pure: no I/O; time comes from the caller.
 */

export const CA_LIFETIME_DAYS = 3650;
export const LEAF_LIFETIME_DAYS = 90;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Certificates are valid from a little before they are issued: clocks between nodes drift. */
const BACKDATE_MS = 5 * 60 * 1000;

export interface KeyPair {
  /** PEM certificate. */
  cert: string;
  /** PEM private key (PKCS#8). */
  key: string;
}

export interface IssueOptions {
  now: Date;
  /** Lifetime in days (defaults: CA_LIFETIME_DAYS, LEAF_LIFETIME_DAYS). */
  days?: number;
}

export function issueCa({ now, days = CA_LIFETIME_DAYS }: IssueOptions): KeyPair {
  const { publicKey, privateKey } = newKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serialNumber();
  setValidity(cert, now, days);
  const subject = [{ name: 'commonName', value: 'Switchyard xDS CA' }, { name: 'organizationName', value: 'switchyard.dev' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true, pathLenConstraint: 0 },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(privateKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: toPkcs8(privateKey) };
}

export interface LeafOptions extends IssueOptions {
  ca: KeyPair;
  role: Role;
  /** DNS names it serves under (the controller's Service names). */
  dnsNames?: readonly string[];
}

export function issueLeaf({ ca, role, dnsNames = [], now, days = LEAF_LIFETIME_DAYS }: LeafOptions): KeyPair {
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const caKey = forge.pki.privateKeyFromPem(ca.key);
  const { publicKey, privateKey } = newKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serialNumber();
  setValidity(cert, now, days);
  cert.setSubject([{ name: 'commonName', value: `switchyard ${role}` }, { name: 'organizationName', value: 'switchyard.dev' }]);
  cert.setIssuer(caCert.subject.attributes);
  // The controller is the xDS server and, towards other replicas, may be a client; the others are clients only.
  const serverAuth = role === 'controller';
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', clientAuth: true, serverAuth },
    { name: 'subjectAltName', altNames: [{ type: 6, value: roleUri(role) }, ...dnsNames.map((value) => ({ type: 2, value }))] },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: toPkcs8(privateKey) };
}

/**
 * Whether `certPem` must be (re-)issued at `now`: unreadable, not yet or no longer valid, within
 * the last third of its lifetime, or (with `expect`) not signed by `expect.ca` or not naming
 * exactly that role and those DNS names.
 */
export function needsIssue(certPem: string | undefined, now: Date, expect?: { ca: string; role: Role; dnsNames?: readonly string[] }): boolean {
  if (certPem === undefined || certPem === '') return true;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return true;
  }
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (!(from <= now.getTime() && now.getTime() < to)) return true;
  if (to - now.getTime() < (to - from) / 3) return true;
  if (expect === undefined) return false;
  try {
    if (!cert.verify(new X509Certificate(expect.ca).publicKey)) return true;
  } catch {
    return true;
  }
  const wanted = [`URI:${roleUri(expect.role)}`, ...(expect.dnsNames ?? []).map((name) => `DNS:${name}`)].sort().join(', ');
  const actual = (cert.subjectAltName ?? '').split(', ').sort().join(', ');
  return wanted !== actual;
}

/** When `certPem` enters the last third of its lifetime (the time to re-issue it). */
export function renewalTime(certPem: string): Date {
  const cert = new X509Certificate(certPem);
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  return new Date(to - (to - from) / 3);
}

function newKeys(): { publicKey: forge.pki.rsa.PublicKey; privateKey: forge.pki.rsa.PrivateKey } {
  const pair = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { publicKey: forge.pki.publicKeyFromPem(pair.publicKey), privateKey: forge.pki.privateKeyFromPem(pair.privateKey) };
}

function toPkcs8(key: forge.pki.rsa.PrivateKey): string {
  return forge.pki.privateKeyInfoToPem(forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(key)));
}

/** A positive 128-bit serial (RFC 5280: at most 20 octets, positive). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

function setValidity(cert: forge.pki.Certificate, now: Date, days: number): void {
  cert.validity.notBefore = new Date(now.getTime() - BACKDATE_MS);
  cert.validity.notAfter = new Date(now.getTime() + days * DAY_MS);
}
