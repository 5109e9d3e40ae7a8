import { TypeUrl } from '../envoy/resources.js';
import type { StreamIdentity } from './identity.js';

/** Provider credentials are SDS secrets under this prefix (src/translate/credentials.ts names them). */
export const CREDENTIAL_PREFIX = 'credential/';

/**
 * What a stream may receive, by the identity it authenticated with (identity.ts). The only
 * rule that withholds anything: provider keys go to the AI extension alone; an Envoy never
 * needs them, and one that asks (a hand-written SDS reference, `*`) must not get them.
 *
 * Everything else, listener certificates (SDS TLS secrets) included, goes to any stream, also
 * an anonymous plaintext one: a user-run Envoy of `serve` without `--xds-tls-dir` connects that
 * way and needs them. Serving xDS over mTLS (the chart's default) keeps anonymous streams out.
 */
/** Whether mayReceive can refuse anything of `typeUrl`: for other types a push need not ask per resource. */
export function mayWithhold(typeUrl: string): boolean {
  return typeUrl === TypeUrl.secret;
}

export function mayReceive(identity: StreamIdentity, typeUrl: string, name: string): boolean {
  if (typeUrl !== TypeUrl.secret || !name.startsWith(CREDENTIAL_PREFIX)) return true;
  return identity.role === 'ai-extension';
}
