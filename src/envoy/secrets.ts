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
      const copy = structuredClone(s);
      const tls = copy.tls_certificate as { private_key?: { inline_string?: string } } | undefined;
      if (tls?.private_key) tls.private_key = { inline_string: REDACTED };
      const generic = copy.generic_secret as { secret?: { inline_string?: string } } | undefined;
      if (generic?.secret) generic.secret = { inline_string: REDACTED };
      return copy;
    }),
  };
}
