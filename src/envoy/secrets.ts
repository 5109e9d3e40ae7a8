import type { CertificateIR, CredentialIR } from '../ir/model.js';
import { TypeUrl, type EnvoyResource, type XdsResources } from './resources.js';

export const REDACTED = '[redacted]';

export function toCertificateSecret(c: CertificateIR): EnvoyResource {
  return {
    '@type': TypeUrl.secret,
    name: c.name,
    tls_certificate: { certificate_chain: { inline_string: c.certificateChain }, private_key: { inline_string: c.privateKey } },
  };
}

/** Credentials travel as SDS generic secrets: only a subscriber that names them receives them. */
export function toCredentialSecret(c: CredentialIR): EnvoyResource {
  return { '@type': TypeUrl.secret, name: c.name, generic_secret: { secret: { inline_string: c.value } } };
}

/** The same resources with every secret value replaced, for printing and debugging. */
export function redactSecrets(xds: XdsResources): XdsResources {
  return {
    ...xds,
    secrets: xds.secrets.map((s) => {
      // Spread first: an encoded stand-in (encoded.ts) is a Proxy, which structuredClone refuses.
      const copy = structuredClone({ ...s });
      const tls = copy.tls_certificate as { private_key?: { inline_string?: string } } | undefined;
      if (tls?.private_key) tls.private_key = { inline_string: REDACTED };
      const generic = copy.generic_secret as { secret?: { inline_string?: string } } | undefined;
      if (generic?.secret) generic.secret = { inline_string: REDACTED };
      return copy;
    }),
  };
}

// Envoy cuts its detail near 4 KB: a value may lack its closing quote.
const DUMPED_VALUE = /\b(inline_string|inline_bytes)(\s*:\s*)"(?:[^"\\]|\\.)*(?:"|$)/g;
const PEM_BLOCK = /-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(?:-----END [A-Z0-9 ]+-----|$)/g;

/**
 * Envoy's error_detail with secret values taken out. A Secret that fails Envoy's schema is
 * NACKed with a text dump of the whole resource, private key and credential included
 * ("private_key { inline_string: ... }"), and that text reaches logs, /statusz and status.
 */
export function redactSecretText(text: string): string {
  return text.replace(DUMPED_VALUE, `$1$2"${REDACTED}"`).replace(PEM_BLOCK, REDACTED);
}
