import type { AuthToken } from '../api/backend.js';
import type { Secret } from '../api/secret.js';
import { secretValue } from '../api/secret.js';
import type { CredentialIR } from '../ir/model.js';

/** The key a credential Secret must hold (DESIGN.md: a bare key or "Bearer <key>"). */
export const CREDENTIAL_KEY = 'Authorization';

export type CredentialResolution =
  | { ok: true; kind: 'SecretRef' | 'Inline'; credential: CredentialIR; secret?: string; warning?: string }
  | { ok: true; kind: 'Passthrough' | 'None' }
  | { ok: false; reason: 'SecretNotFound' | 'SecretKeyMissing'; message: string; secret: string };

export function credentialName(namespace: string, ...parts: string[]): string {
  return ['credential', namespace, ...parts].join('/');
}

function bareKey(value: string): string {
  // "Bearer " alone trims to "Bearer": that is an empty token, not a key named Bearer.
  return value.trim().replace(/^bearer(?:\s+|$)/i, '').trim();
}

/** Where Secrets are looked up: a Map, or a recorder of what translation read (src/translate/index.ts). */
export type SecretLookup = Pick<ReadonlyMap<string, Secret>, 'get'>;

/** Resolves one member's authToken against the Secrets of the Backend's namespace. */
export function resolveCredential(
  token: AuthToken | undefined,
  ctx: { namespace: string; backend: string; member: string; secrets: SecretLookup },
): CredentialResolution {
  if (!token) return { ok: true, kind: 'None' };
  if (token.kind === 'Passthrough') return { ok: true, kind: 'Passthrough' };
  if (token.kind === 'Inline') {
    const value = bareKey(token.inline ?? '');
    return {
      ok: true,
      kind: 'Inline',
      credential: { name: credentialName(ctx.namespace, ctx.backend, ctx.member), value },
      warning: `member ${ctx.member} uses an inline token: move it to a Secret and use authToken.kind: SecretRef`,
    };
  }
  const secretName = token.secretRef?.name ?? '';
  const secret = ctx.secrets.get(`${ctx.namespace}/${secretName}`);
  if (!secret) {
    return {
      ok: false,
      reason: 'SecretNotFound',
      secret: secretName,
      message: `member ${ctx.member}: Secret ${ctx.namespace}/${secretName} not found; create it with key "${CREDENTIAL_KEY}"`,
    };
  }
  const raw = secretValue(secret, CREDENTIAL_KEY);
  const value = raw === undefined ? '' : bareKey(raw);
  if (value === '') {
    return {
      ok: false,
      reason: 'SecretKeyMissing',
      secret: secretName,
      message: `member ${ctx.member}: Secret ${ctx.namespace}/${secretName} has no non-empty key "${CREDENTIAL_KEY}"; add it (a bare key or "Bearer <key>")`,
    };
  }
  return { ok: true, kind: 'SecretRef', secret: secretName, credential: { name: credentialName(ctx.namespace, secretName), value } };
}
