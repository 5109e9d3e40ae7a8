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
  /** Epoch ms from which a new token is fetched ahead, while this one still serves. */
  renewAt: number;
  /** Epoch ms at which the token stops being used (a margin before it expires). */
  expiresAt: number;
}

export interface ServiceAccountTokensOptions {
  /**
   * How long one token request may take before it is abandoned (default 10 s). It runs apart
   * from the attempts: an attempt waits for it only as long as it is told to (accessToken's
   * `waitMs`), and a token that arrives later serves the next attempts.
   */
  timeoutMs?: number;
  /** Renew this long before expiry (default 5 minutes, capped at half the token's lifetime). */
  renewBeforeMs?: number;
  /** Wait after a failed token request before the next one; doubles up to `maxBackoffMs` (defaults 1 s, 60 s). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Told of each failed background renewal (for a log line): the message names the endpoint and account, never the key. */
  onRenewalFailure?: (message: string) => void;
  now?: () => number;
  fetch?: typeof fetch;
}

/** What is known of one service-account key: its token, the request under way, the last failure. */
interface KeyState {
  keyText: string;
  token?: CachedToken;
  inFlight?: Promise<void>;
  /** The last request's failure, served (with no new request) until `retryAt`. */
  failure?: string;
  retryAt: number;
  backoffMs: number;
  /** Credential names kept fresh with this key (keep()); none: renewed only when an attempt asks. */
  keptBy: Set<string>;
  timer?: NodeJS.Timeout;
}

/** The attempt stopped waiting; the request goes on for the next attempts. */
export class TokenNotReady extends Error {}

/**
 * Access tokens per service-account key. Concurrent attempts share one token request; a kept
 * key's token is fetched as soon as the key is known and renewed before it expires, on a timer,
 * with back-off after a failure, so attempts do not wait for the token endpoint. An attempt that
 * finds no token waits at most its own bound; a refused key is not asked again before its
 * back-off is over, so a burst of attempts costs the endpoint one request.
 */
export class ServiceAccountTokens {
  private readonly keys = new Map<string, KeyState>();
  /** Credential name → id of the key it holds (keep()). */
  private readonly kept = new Map<string, string>();
  /** Token requests sent, for tests and metrics. */
  requests = 0;

  constructor(private readonly options: ServiceAccountTokensOptions = {}) {}

  /**
   * The key's access token; waits for one at most `waitMs` (then TokenNotReady), and fails at once
   * with the last refusal while its back-off lasts.
   */
  async accessToken(keyText: string, waitMs = Number.POSITIVE_INFINITY): Promise<string> {
    const id = keyId(keyText);
    const state = this.state(id, keyText);
    const now = this.now();
    const cached = state.token;
    if (cached !== undefined && now < cached.expiresAt) {
      if (now >= cached.renewAt && now >= state.retryAt) this.fetchToken(id, state);
      return cached.token;
    }
    if (state.inFlight === undefined) {
      if (state.failure !== undefined && now < state.retryAt) throw new Error(`${state.failure}; asked again in ${Math.ceil((state.retryAt - now) / 1000)} s`);
      this.fetchToken(id, state);
    }
    await this.within(state, waitMs);
    const token = state.token;
    if (token !== undefined && this.now() < token.expiresAt) return token.token;
    throw new Error(state.failure ?? 'no access token');
  }

  /**
   * Keeps the token of credential `name` fresh: fetched now (the key just arrived or changed),
   * renewed ahead of expiry, retried with back-off. The key it held before is no longer renewed.
   */
  keep(name: string, keyText: string): void {
    const id = keyId(keyText);
    const before = this.kept.get(name);
    if (before === id) return;
    if (before !== undefined) this.release(name, before);
    this.kept.set(name, id);
    const state = this.state(id, keyText);
    state.keptBy.add(name);
    if (state.inFlight !== undefined) return;
    if (state.token === undefined || this.now() >= state.token.renewAt) this.fetchToken(id, state);
    else this.schedule(id, state, state.token.renewAt);
  }

  /** Whether credential `name` is kept fresh (keep()). */
  keeps(name: string): boolean {
    return this.kept.has(name);
  }

  /** Stops keeping credential `name` fresh (its Backend is gone). */
  forget(name: string): void {
    const id = this.kept.get(name);
    if (id === undefined) return;
    this.kept.delete(name);
    this.release(name, id);
  }

  /** Stops every renewal timer. */
  stop(): void {
    for (const state of this.keys.values()) clearTimeout(state.timer);
    this.kept.clear();
  }

  private release(name: string, id: string): void {
    const state = this.keys.get(id);
    if (state === undefined) return;
    state.keptBy.delete(name);
    if (state.keptBy.size === 0) clearTimeout(state.timer);
  }

  private state(id: string, keyText: string): KeyState {
    let state = this.keys.get(id);
    if (state === undefined) {
      state = { keyText, retryAt: 0, backoffMs: this.options.backoffMs ?? 1_000, keptBy: new Set() };
      this.keys.set(id, state);
    }
    return state;
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  private async within(state: KeyState, waitMs: number): Promise<void> {
    const running = state.inFlight;
    if (running === undefined) return;
    if (!Number.isFinite(waitMs)) return running;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), Math.max(0, waitMs))));
    const outcome = await Promise.race([running.then(() => 'done' as const), late]);
    clearTimeout(timer);
    if (outcome === 'late') {
      const uri = parseServiceAccountKey(state.keyText);
      throw new TokenNotReady(`the token endpoint${'error' in uri ? '' : ` ${uri.tokenUri}`} gave no access token within ${Math.round(waitMs)} ms; it is still asked, for the next attempts`);
    }
  }

  /** Starts a token request for the key unless one is under way; never rejects (the outcome is in the state). */
  private fetchToken(id: string, state: KeyState): void {
    if (state.inFlight !== undefined) return;
    clearTimeout(state.timer);
    state.inFlight = this.request(state.keyText).then(
      (token) => {
        state.token = token;
        state.failure = undefined;
        state.retryAt = 0;
        state.backoffMs = this.options.backoffMs ?? 1_000;
        this.prune(this.now());
        if (state.keptBy.size > 0) this.schedule(id, state, token.renewAt);
      },
      (err: unknown) => {
        const message = err instanceof Error ? err.message : 'the access token could not be obtained';
        state.failure = message;
        state.retryAt = this.now() + state.backoffMs;
        state.backoffMs = Math.min(state.backoffMs * 2, this.options.maxBackoffMs ?? 60_000);
        if (state.keptBy.size > 0) {
          this.options.onRenewalFailure?.(message);
          this.schedule(id, state, state.retryAt);
        }
      },
    ).finally(() => {
      state.inFlight = undefined;
    });
  }

  private schedule(id: string, state: KeyState, at: number): void {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      if (state.keptBy.size > 0 && this.keys.get(id) === state) this.fetchToken(id, state);
    }, Math.max(0, at - this.now()));
    state.timer.unref();
  }

  /** Forgets keys nobody keeps whose token has expired and whose back-off is over (a rotated key's predecessor). */
  private prune(now: number): void {
    for (const [id, state] of this.keys) {
      if (state.keptBy.size === 0 && state.inFlight === undefined && (state.token === undefined || state.token.expiresAt <= now) && state.retryAt <= now) this.keys.delete(id);
    }
  }

  private async request(keyText: string): Promise<CachedToken> {
    const key = parseServiceAccountKey(keyText);
    if ('error' in key) throw new Error(key.error);
    const started = this.now();
    const form = new URLSearchParams({ grant_type: GRANT_TYPE, assertion: signedAssertion(key, Math.floor(started / 1000)) });
    this.requests++;
    let response: Response;
    let text: string;
    try {
      response = await (this.options.fetch ?? fetch)(key.tokenUri, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
      text = await response.text();
    } catch (err) {
      throw new Error(`the token endpoint ${key.tokenUri} did not answer (${err instanceof Error ? err.name : 'error'})`);
    }
    const body = safeParse(text);
    const token = isRecord(body) ? str(body['access_token']) : undefined;
    if (!response.ok || token === undefined) {
      // Google's error answers ({"error": "invalid_grant", "error_description": ...}) quote no secret.
      const error = isRecord(body) ? [str(body['error']), str(body['error_description'])].filter(Boolean).join(': ') : '';
      throw new Error(`the token endpoint ${key.tokenUri} refused the service account ${key.clientEmail} (${response.status}${error ? ` ${error}` : ''})`);
    }
    const lifetimeMs = (isRecord(body) && typeof body['expires_in'] === 'number' ? body['expires_in'] : 3600) * 1000;
    const margin = Math.min(this.options.renewBeforeMs ?? 300_000, lifetimeMs / 2);
    // Stop using a token a little before its end (clock skew, time in flight), never after.
    const skew = Math.min(10_000, lifetimeMs / 10);
    return { token, expiresAt: started + lifetimeMs - skew, renewAt: started + lifetimeMs - Math.max(margin, skew) };
  }
}

function keyId(keyText: string): string {
  // By the key's content: a rotated key gets a token of its own at once.
  return createHash('sha256').update(keyText).digest('hex');
}
