import { createHash, createSign } from 'node:crypto';
import { isRecord, str } from './json.js';

/**
 * OAuth access tokens for Vertex AI members, from a Google service-account key (RFC 7523 JWT
 * bearer grant, as Google's "Using OAuth 2.0 for Server to Server Applications" describes): a JWT
 * signed RS256 with the key is traded at the key's token_uri for an access token, which is kept
 * and renewed before it expires. Neither key nor token is ever logged or put in an error.
 */

export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** Google issues tokens for an hour; the JWT asks for that. */
const ASSERTION_LIFETIME_S = 3600;

export interface ServiceAccountKey {
  clientEmail: string;
  privateKey: string;
  privateKeyId?: string;
  tokenUri: string;
}

/** The key file's fields, or why they are not usable (never quoting the key). */
export function parseServiceAccountKey(text: string): ServiceAccountKey | { error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { error: 'the service-account key is not JSON' };
  }
  // The credential the controller sends is {"key.json": "<the key file>"}.
  const file = isRecord(parsed) && typeof parsed['key.json'] === 'string' ? safeParse(parsed['key.json']) : parsed;
  if (!isRecord(file)) return { error: 'the service-account key is not a JSON object' };
  const clientEmail = str(file['client_email']);
  const privateKey = str(file['private_key']);
  const tokenUri = str(file['token_uri']);
  if (!clientEmail || !privateKey || !tokenUri) return { error: 'the service-account key lacks client_email, private_key or token_uri' };
  const privateKeyId = str(file['private_key_id']);
  return { clientEmail, privateKey, tokenUri, ...(privateKeyId ? { privateKeyId } : {}) };
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const base64url = (data: string | Buffer): string => Buffer.from(data).toString('base64url');

/** The signed JWT assertion of the grant. */
export function signedAssertion(key: ServiceAccountKey, nowS: number, scope = CLOUD_PLATFORM_SCOPE): string {
  const header = { alg: 'RS256', typ: 'JWT', ...(key.privateKeyId ? { kid: key.privateKeyId } : {}) };
  const claims = { iss: key.clientEmail, scope, aud: key.tokenUri, iat: nowS, exp: nowS + ASSERTION_LIFETIME_S };
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const signature = createSign('RSA-SHA256').update(input).sign(key.privateKey);
  return `${input}.${base64url(signature)}`;
}

interface CachedToken {
  token: string;
  /** Epoch ms at which the token stops being used (a margin before it expires). */
  renewAt: number;
  expiresAt: number;
}

export interface ServiceAccountTokensOptions {
  /** How long a token request may take: an attempt waits for it, within ext_proc's 2 s message timeout. */
  timeoutMs?: number;
  /** Renew this long before expiry (default 5 minutes, capped at half the token's lifetime). */
  renewBeforeMs?: number;
  now?: () => number;
  fetch?: typeof fetch;
}

/**
 * Access tokens per service-account key. Concurrent attempts share one token request; a token is
 * renewed in the background once it is within `renewBeforeMs` of expiring, and used until then,
 * so attempts do not wait for the token endpoint after the first.
 */
export class ServiceAccountTokens {
  private readonly cache = new Map<string, CachedToken>();
  private readonly inFlight = new Map<string, Promise<string>>();
  /** Token requests sent, for tests and metrics. */
  requests = 0;

  constructor(private readonly options: ServiceAccountTokensOptions = {}) {}

  async accessToken(keyText: string): Promise<string> {
    // Cached by the key's content: a rotated key gets a token of its own at once.
    const id = createHash('sha256').update(keyText).digest('hex');
    const now = this.now();
    const cached = this.cache.get(id);
    if (cached !== undefined && now < cached.expiresAt) {
      if (now >= cached.renewAt) void this.renew(id, keyText).catch(() => undefined);
      return cached.token;
    }
    return this.renew(id, keyText);
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  private renew(id: string, keyText: string): Promise<string> {
    const running = this.inFlight.get(id);
    if (running !== undefined) return running;
    const request = this.request(id, keyText).finally(() => this.inFlight.delete(id));
    this.inFlight.set(id, request);
    return request;
  }

  private async request(id: string, keyText: string): Promise<string> {
    const key = parseServiceAccountKey(keyText);
    if ('error' in key) throw new Error(key.error);
    const started = this.now();
    const form = new URLSearchParams({ grant_type: GRANT_TYPE, assertion: signedAssertion(key, Math.floor(started / 1000)) });
    this.requests++;
    let response: Response;
    try {
      response = await (this.options.fetch ?? fetch)(key.tokenUri, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 1500),
      });
    } catch (err) {
      throw new Error(`the token endpoint ${key.tokenUri} did not answer (${err instanceof Error ? err.name : 'error'})`);
    }
    const text = await response.text();
    const body = safeParse(text);
    const token = isRecord(body) ? str(body['access_token']) : undefined;
    if (!response.ok || token === undefined) {
      // Google's error answers ({"error": "invalid_grant", "error_description": ...}) quote no secret.
      const error = isRecord(body) ? [str(body['error']), str(body['error_description'])].filter(Boolean).join(': ') : '';
      throw new Error(`the token endpoint ${key.tokenUri} refused the service account ${key.clientEmail} (${response.status}${error ? ` ${error}` : ''})`);
    }
    const lifetimeMs = (isRecord(body) && typeof body['expires_in'] === 'number' ? body['expires_in'] : 3600) * 1000;
    const margin = Math.min(this.options.renewBeforeMs ?? 300_000, lifetimeMs / 2);
    for (const [other, cached] of this.cache) if (cached.expiresAt <= started) this.cache.delete(other);
    // Stop using a token a little before its end (clock skew, time in flight), never after.
    const skew = Math.min(10_000, lifetimeMs / 10);
    this.cache.set(id, { token, expiresAt: started + lifetimeMs - skew, renewAt: started + lifetimeMs - Math.max(margin, skew) });
    return token;
  }
}
