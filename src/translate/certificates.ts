import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { secretValue, type Secret } from '../api/secret.js';

/** A listener certificate Envoy will accept: the PEM text as the Secret holds it. */
export interface ServingCertificate {
  certificateChain: string;
  privateKey: string;
}

export type CertificateCheck = { ok: true; certificate: ServingCertificate } | { ok: false; message: string };

const TLS_SECRET_TYPE = 'kubernetes.io/tls';
const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Checks what Envoy checks when it loads a serving certificate, so a bad Secret is reported on
 * its listener instead of being NACKed by Envoy (which keeps its previous certificate, or none,
 * and says so only in its own log). Messages name the Secret and the key, never a value.
 */
export function checkServingCertificate(secret: Secret): CertificateCheck {
  const where = `Secret ${secret.metadata.namespace}/${secret.metadata.name}`;
  // File-mode Secrets may omit the type; the API server defaults it to Opaque, which is refused.
  if (secret.type !== undefined && secret.type !== TLS_SECRET_TYPE) {
    return { ok: false, message: `${where} has type ${secret.type}; a certificateRef needs a Secret of type ${TLS_SECRET_TYPE} (kubectl create secret tls)` };
  }
  const chain = secretValue(secret, 'tls.crt');
  const keyPem = secretValue(secret, 'tls.key');
  const missing = [chain ? undefined : 'tls.crt', keyPem ? undefined : 'tls.key'].filter((k) => k !== undefined);
  if (missing.length > 0 || !chain || !keyPem) {
    return { ok: false, message: `${where} lacks ${missing.join(' and ')}; put the PEM certificate chain in tls.crt and its private key in tls.key` };
  }
  const blocks = chain.match(CERTIFICATE_BLOCK) ?? [];
  if (blocks.length === 0) {
    return { ok: false, message: `${where}: tls.crt holds no PEM certificate (-----BEGIN CERTIFICATE-----); put the PEM certificate chain there, leaf first` };
  }
  const certificates: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      certificates.push(new X509Certificate(block));
    } catch {
      return { ok: false, message: `${where}: certificate ${i + 1} of ${blocks.length} in tls.crt is not a valid X.509 certificate; replace tls.crt` };
    }
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyPem, format: 'pem' });
  } catch {
    return { ok: false, message: `${where}: tls.key is not an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1); replace tls.key` };
  }
  const leaf = certificates[0];
  if (!leaf || !leaf.checkPrivateKey(key)) {
    return { ok: false, message: `${where}: tls.key is not the private key of the first certificate in tls.crt; put the matching key (or put the leaf certificate first)` };
  }
  const unservable = unservableKey(leaf);
  if (unservable !== undefined) return { ok: false, message: `${where}: ${unservable}` };
  return { ok: true, certificate: { certificateChain: chain, privateKey: keyPem } };
}

/** Curves Envoy serves ECDSA certificates on (its TLS context: "only P-256, P-384 or P-521 ECDSA certificates are supported"). */
const ENVOY_CURVES: Readonly<Record<string, string>> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };
const MIN_RSA_BITS = 2048;

/**
 * Envoy refuses to serve a leaf whose key is an RSA key under 2048 bits or an ECDSA key on
 * another curve than P-256, P-384 or P-521; Node parses both without a word.
 */
function unservableKey(leaf: X509Certificate): string | undefined {
  const key = leaf.publicKey;
  const details = key.asymmetricKeyDetails;
  if ((key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') && details?.modulusLength !== undefined && details.modulusLength < MIN_RSA_BITS) {
    return `the first certificate in tls.crt has a ${details.modulusLength}-bit RSA key and Envoy serves only RSA keys of ${MIN_RSA_BITS} bits or more; issue the certificate with a key of ${MIN_RSA_BITS} bits or more`;
  }
  if (key.asymmetricKeyType === 'ec' && details?.namedCurve !== undefined && ENVOY_CURVES[details.namedCurve] === undefined) {
    return `the first certificate in tls.crt has an ECDSA key on curve ${details.namedCurve} and Envoy serves only P-256, P-384 or P-521; issue the certificate with a key on one of those curves`;
  }
  return undefined;
}
