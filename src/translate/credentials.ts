import { AWS_ACCESS_KEY, AWS_SECRET_KEY, AWS_SESSION_TOKEN, SERVICE_ACCOUNT_KEY, DRILL_KEY, type AuthToken, type DrillSpec } from '../api/backend.js';
import type { VendorCredential, VendorCredentialKind } from '../api/providers.js';
import type { Secret } from '../api/secret.js';
import { secretValue } from '../api/secret.js';
import { SERVICE_ACCOUNT_INDEX, SERVICE_ACCOUNT_SUFFIX, type CredentialIR } from '../ir/model.js';

/** The key a credential Secret must hold (DESIGN.md: a bare key or "Bearer <key>"). */
export const CREDENTIAL_KEY = 'Authorization';

export type CredentialResolution =
  | { ok: true; kind: 'SecretRef' | 'Inline'; credential: CredentialIR; secret?: string; warning?: string }
  | { ok: true; kind: 'Passthrough' | 'None' }
  | { ok: false; reason: 'SecretNotFound' | 'SecretKeyMissing'; message: string; secret: string };

export function credentialName(namespace: string, ...parts: string[]): string {
  return ['credential', namespace, ...parts].join('/');
}

/**
 * A Secret's key: the SDS name of the credential read from the Secret ("credential/namespace/name"),
 * so that credential's name, in the IR, the endpoint metadata and the Envoy stage, is that string
 * too, where a "namespace/name" key beside it cost 2.3 MiB at 10,000 Backends. Flat, not a
 * concatenation, which keeps its pieces beside the text it is flattened to when first hashed.
 * An equal key made lately is handed back (RECENT_KEYS), so that Backends sharing a Secret (one
 * provider key for all) share one string. It was internalized (V8's string table) instead:
 * 2.4 microseconds a lookup, 0.14 CPU-s of the first translation of 10,000 Backends (issue 9),
 * for a string each member's credential holds once anyway.
 */
export function secretKey(namespace: string, name: string): string {
  const key = credentialName(namespace, name);
  let h = key.length;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  const slot = (h ^ (h >>> 15)) & (RECENT_KEYS.length - 1);
  const recent = RECENT_KEYS[slot];
  if (recent === key) return recent;
  RECENT_KEYS[slot] = key;
  return key;
}

/** Keys secretKey made lately, by a hash of their characters: a few KB, whatever the configuration. */
const RECENT_KEYS: (string | undefined)[] = new Array<string | undefined>(1024).fill(undefined);

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
  const key = secretKey(ctx.namespace, secretName);
  const secret = ctx.secrets.get(key);
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
  // The credential's name is the Secret's key (secretKey): the same string, held once.
  return { ok: true, kind: 'SecretRef', secret: secretName, credential: { name: key, value } };
}

/**
 * Every key translation reads from a credential or drill Secret: what a provider that keeps only
 * some keys of a Secret in memory (the Kubernetes one) must keep.
 */
export const CREDENTIAL_SECRET_KEYS: readonly string[] = [CREDENTIAL_KEY, SERVICE_ACCOUNT_KEY, AWS_ACCESS_KEY, AWS_SECRET_KEY, AWS_SESSION_TOKEN, DRILL_KEY];

/** The Secret keys each vendor credential is read from: [key, required]. */
const VENDOR_KEYS: Record<VendorCredentialKind, readonly (readonly [string, boolean])[]> = {
  ServiceAccountKey: [[SERVICE_ACCOUNT_KEY, true]],
  AwsKeys: [[AWS_ACCESS_KEY, true], [AWS_SECRET_KEY, true], [AWS_SESSION_TOKEN, false]],
};

/**
 * SDS name of a vendor credential. A ":" cannot occur in a Kubernetes name, so it never meets the
 * name of a plain key from the same Secret or of an inline token.
 */
export function vendorCredentialName(namespace: string, secret: string, kind: VendorCredentialKind): string {
  return `${credentialName(namespace, secret)}${kind === 'AwsKeys' ? ':aws' : SERVICE_ACCOUNT_SUFFIX}`;
}

/**
 * Resolves a credential made of several keys of one Secret. The value handed to the extension is
 * a JSON object of those keys (what each vendor module reads), never shown anywhere else.
 */
export function resolveVendorCredential(
  ref: VendorCredential,
  ctx: { namespace: string; member: string; secrets: SecretLookup },
): CredentialResolution {
  const secret = ctx.secrets.get(secretKey(ctx.namespace, ref.secretName));
  const keys = VENDOR_KEYS[ref.kind];
  const required = keys.filter(([, r]) => r).map(([k]) => `"${k}"`).join(' and ');
  if (!secret) {
    return {
      ok: false, reason: 'SecretNotFound', secret: ref.secretName,
      message: `member ${ctx.member}: Secret ${ctx.namespace}/${ref.secretName} not found; create it with key${keys.length > 1 ? 's' : ''} ${required}`,
    };
  }
  const value: Record<string, string> = {};
  const missing: string[] = [];
  for (const [key, isRequired] of keys) {
    const v = secretValue(secret, key)?.trim() ?? '';
    if (v !== '') value[key] = v;
    else if (isRequired) missing.push(`"${key}"`);
  }
  if (missing.length > 0) {
    return {
      ok: false, reason: 'SecretKeyMissing', secret: ref.secretName,
      message: `member ${ctx.member}: Secret ${ctx.namespace}/${ref.secretName} has no non-empty key ${missing.join(' or ')}; add ${missing.length > 1 ? 'them' : 'it'}`,
    };
  }
  if (ref.kind === 'ServiceAccountKey') {
    const problem = serviceAccountKeyProblem(value[SERVICE_ACCOUNT_KEY] ?? '');
    if (problem !== undefined) {
      return {
        ok: false, reason: 'SecretKeyMissing', secret: ref.secretName,
        message: `member ${ctx.member}: Secret ${ctx.namespace}/${ref.secretName} key "${SERVICE_ACCOUNT_KEY}" is not a usable service-account key: ${problem}; put the JSON key file there as downloaded`,
      };
    }
  }
  return {
    ok: true, kind: 'SecretRef', secret: ref.secretName,
    credential: { name: vendorCredentialName(ctx.namespace, ref.secretName, ref.kind), value: JSON.stringify(value) },
  };
}

/** What is wrong with a service-account JSON key, without quoting any of it. */
function serviceAccountKeyProblem(text: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return 'it is not JSON';
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return 'it is not a JSON object';
  const key = parsed as Record<string, unknown>;
  for (const field of ['client_email', 'private_key', 'token_uri']) {
    if (typeof key[field] !== 'string' || key[field] === '') return `field ${field} is missing`;
  }
  return undefined;
}

/** Shortest drill key accepted: an HMAC key that a guess cannot reach. */
export const MIN_DRILL_KEY_LENGTH = 32;

/**
 * The drill key of a Backend (spec.drill.keySecretRef). A problem only disables drills: the
 * Backend keeps serving, and ResolvedRefs says what to fix.
 */
export function resolveDrillKey(
  drill: DrillSpec,
  ctx: { namespace: string; secrets: SecretLookup },
): { ok: true; credential: CredentialIR } | { ok: false; reason: 'SecretNotFound' | 'SecretKeyMissing'; message: string } {
  const secretName = drill.keySecretRef.name;
  const secret = ctx.secrets.get(secretKey(ctx.namespace, secretName));
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

/** The list of service-account credentials for the AI extension (SERVICE_ACCOUNT_INDEX); none without one. */
export function serviceAccountIndex(credentials: Iterable<CredentialIR>): CredentialIR | undefined {
  // A loop, not a copy of every credential then of every name: 60,000 at 10,000 Backends, for the few service accounts.
  const names: string[] = [];
  for (const c of credentials) if (c.name.endsWith(SERVICE_ACCOUNT_SUFFIX)) names.push(c.name);
  return names.length === 0 ? undefined : { name: SERVICE_ACCOUNT_INDEX, value: JSON.stringify(names.sort()) };
}
