import { DRILL_KEY, type AuthToken, type DrillSpec } from '../api/backend.js';
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

/** Resolves one member's authToken against the Secrets of the Backend's namespace. */
export function resolveCredential(
  token: AuthToken | undefined,
  ctx: { namespace: string; backend: string; member: string; secrets: ReadonlyMap<string, Secret> },
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

/** Shortest drill key accepted: an HMAC key that a guess cannot reach. */
export const MIN_DRILL_KEY_LENGTH = 32;

/**
 * The drill key of a Backend (spec.drill.keySecretRef). A problem only disables drills: the
 * Backend keeps serving, and ResolvedRefs says what to fix.
 */
export function resolveDrillKey(
  drill: DrillSpec,
  ctx: { namespace: string; secrets: ReadonlyMap<string, Secret> },
): { ok: true; credential: CredentialIR } | { ok: false; reason: 'SecretNotFound' | 'SecretKeyMissing'; message: string } {
  const secretName = drill.keySecretRef.name;
  const secret = ctx.secrets.get(`${ctx.namespace}/${secretName}`);
  const field = 'spec.drill.keySecretRef';
  if (!secret) {
    return { ok: false, reason: 'SecretNotFound', message: `${field}: Secret ${ctx.namespace}/${secretName} not found; create it with key "${DRILL_KEY}" (drills are ignored until then; serving is unaffected)` };
  }
  const value = (secretValue(secret, DRILL_KEY) ?? '').trim();
  if (value.length < MIN_DRILL_KEY_LENGTH) {
    return { ok: false, reason: 'SecretKeyMissing', message: `${field}: Secret ${ctx.namespace}/${secretName} has no key "${DRILL_KEY}" of at least ${MIN_DRILL_KEY_LENGTH} characters; set one (e.g. openssl rand -hex 32) (drills are ignored until then; serving is unaffected)` };
  }
  // '#' cannot occur in Kubernetes names, so this never meets a provider key's SDS name.
  return { ok: true, credential: { name: `${credentialName(ctx.namespace, secretName)}#drill`, value } };
}
