import { createVerify, generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CLOUD_PLATFORM_SCOPE, ServiceAccountTokens, TokenNotReady, parseServiceAccountKey, signedAssertion } from '../../src/ai-extension/vertex.js';

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PEM = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const TOKEN_URI = 'https://oauth2.example.test/token';
const KEY_FILE = JSON.stringify({ type: 'service_account', client_email: 'sa@p.iam.gserviceaccount.com', private_key: PEM, private_key_id: 'kid-1', token_uri: TOKEN_URI });
/** What the controller sends: the Secret's keys as JSON. */
const CREDENTIAL = JSON.stringify({ 'key.json': KEY_FILE });

function decode(part: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** A token endpoint in a function: records grants, answers tokens that live `lifetimeS`. */
function tokenEndpoint(lifetimeS: number, status = 200) {
  const grants: URLSearchParams[] = [];
  const fetchFn = (async (_url: string | URL | Request, init?: RequestInit) => {
    grants.push(new URLSearchParams(String(init?.body)));
    const body = status === 200 ? { access_token: `tok-${grants.length}`, expires_in: lifetimeS } : { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' };
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  return { grants, fetchFn };
}

describe('service-account JWT', () => {
  it('is signed RS256 with the key (verifiable with its public half) and claims iss, scope, aud and one hour', () => {
    const key = parseServiceAccountKey(CREDENTIAL);
    if ('error' in key) throw new Error(key.error);
    const jwt = signedAssertion(key, 1_700_000_000);
    const [h = '', c = '', s = ''] = jwt.split('.');
    expect(decode(h)).toEqual({ alg: 'RS256', typ: 'JWT', kid: 'kid-1' });
    expect(decode(c)).toEqual({ iss: 'sa@p.iam.gserviceaccount.com', scope: CLOUD_PLATFORM_SCOPE, aud: TOKEN_URI, iat: 1_700_000_000, exp: 1_700_003_600 });
    expect(createVerify('RSA-SHA256').update(`${h}.${c}`).verify(publicKey, Buffer.from(s, 'base64url'))).toBe(true);
    expect(createVerify('RSA-SHA256').update(`${h}.${c}x`).verify(publicKey, Buffer.from(s, 'base64url'))).toBe(false);
  });

  it('names what a key lacks without quoting it', () => {
    const bad = parseServiceAccountKey(JSON.stringify({ 'key.json': JSON.stringify({ private_key: 'SECRET-PEM' }) }));
    expect(bad).toEqual({ error: 'the service-account key lacks client_email, private_key or token_uri' });
  });
});

describe('ServiceAccountTokens', () => {
  it('asks once for concurrent attempts, reuses the token, renews it in the background near expiry and never serves an expired one', async () => {
    let now = 1_000_000;
    const endpoint = tokenEndpoint(3600);
    const tokens = new ServiceAccountTokens({ now: () => now, fetch: endpoint.fetchFn });
    const first = await Promise.all([tokens.accessToken(CREDENTIAL), tokens.accessToken(CREDENTIAL), tokens.accessToken(CREDENTIAL)]);
    expect(first).toEqual(['tok-1', 'tok-1', 'tok-1']);
    expect(endpoint.grants).toHaveLength(1);
    expect(endpoint.grants[0]?.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:jwt-bearer');

    now += 50 * 60_000; // 50 minutes: still fresh
    expect(await tokens.accessToken(CREDENTIAL)).toBe('tok-1');
    expect(endpoint.grants).toHaveLength(1);

    now += 6 * 60_000; // 56 minutes: within 5 minutes of expiry, the old token still serves while a new one is fetched
    expect(await tokens.accessToken(CREDENTIAL)).toBe('tok-1');
    await new Promise((resolve) => setImmediate(resolve));
    expect(endpoint.grants).toHaveLength(2);
    expect(await tokens.accessToken(CREDENTIAL)).toBe('tok-2');

    now += 2 * 3600_000; // long past tok-2's expiry: the attempt waits for a new token
    expect(await tokens.accessToken(CREDENTIAL)).toBe('tok-3');
  });

  it('fails with the endpoint\'s reason and the account, not the key', async () => {
    const endpoint = tokenEndpoint(3600, 400);
    const tokens = new ServiceAccountTokens({ fetch: endpoint.fetchFn });
    const error = await tokens.accessToken(CREDENTIAL).then(() => undefined, (err: unknown) => err as Error);
    expect(error?.message).toBe(`the token endpoint ${TOKEN_URI} refused the service account sa@p.iam.gserviceaccount.com (400 invalid_grant: Invalid JWT Signature.)`);
    expect(error?.message).not.toContain('PRIVATE KEY');
  });

  it('keeps a token per key: a rotated key gets its own token at once', async () => {
    const endpoint = tokenEndpoint(3600);
    const tokens = new ServiceAccountTokens({ fetch: endpoint.fetchFn });
    const other = JSON.stringify({ 'key.json': KEY_FILE.replace('kid-1', 'kid-2') });
    expect(await tokens.accessToken(CREDENTIAL)).toBe('tok-1');
    expect(await tokens.accessToken(other)).toBe('tok-2');
    expect(await tokens.accessToken(CREDENTIAL)).toBe('tok-1');
  });
});

/** A token endpoint whose answers the test controls: held until released, or failing with `status`. */
function controlledEndpoint() {
  const grants: number[] = [];
  const held: (() => void)[] = [];
  const state = { status: 200, hold: false };
  const fetchFn = (async () => {
    grants.push(grants.length + 1);
    const n = grants.length;
    if (state.hold) await new Promise<void>((resolve) => held.push(resolve));
    const body = state.status === 200 ? { access_token: `tok-${n}`, expires_in: 3600 } : { error: 'internal_failure' };
    return new Response(JSON.stringify(body), { status: state.status, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  return { grants, state, fetchFn, release: () => held.splice(0).forEach((r) => r()) };
}

describe('ServiceAccountTokens within an attempt\'s time', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('an attempt waits at most its bound for a slow endpoint; the token that comes later serves the next attempt with no new request', async () => {
    const endpoint = controlledEndpoint();
    endpoint.state.hold = true;
    const tokens = new ServiceAccountTokens({ fetch: endpoint.fetchFn });
    const started = performance.now();
    const error = await tokens.accessToken(CREDENTIAL, 50).then(() => undefined, (err: unknown) => err);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(error).toBeInstanceOf(TokenNotReady);
    expect((error as Error).message).toBe(`the token endpoint ${TOKEN_URI} gave no access token within 50 ms; it is still asked, for the next attempts`);
    // A second attempt joins the request under way rather than sending another.
    await expect(tokens.accessToken(CREDENTIAL, 10)).rejects.toBeInstanceOf(TokenNotReady);
    expect(endpoint.grants).toHaveLength(1);
    endpoint.release();
    await vi.waitFor(async () => expect(await tokens.accessToken(CREDENTIAL, 10)).toBe('tok-1'));
    expect(endpoint.grants).toHaveLength(1);
  });

  it('a failing endpoint is asked again only after a back-off that doubles; meanwhile attempts fail at once with its reason', async () => {
    let now = 5_000_000;
    const endpoint = controlledEndpoint();
    endpoint.state.status = 500;
    const tokens = new ServiceAccountTokens({ fetch: endpoint.fetchFn, now: () => now });
    const reason = `the token endpoint ${TOKEN_URI} refused the service account sa@p.iam.gserviceaccount.com (500 internal_failure)`;
    await expect(tokens.accessToken(CREDENTIAL)).rejects.toThrow(reason);
    await expect(tokens.accessToken(CREDENTIAL)).rejects.toThrow(`${reason}; asked again in 1 s`);
    expect(endpoint.grants).toHaveLength(1);
    now += 1_000;
    await expect(tokens.accessToken(CREDENTIAL)).rejects.toThrow(reason);
    expect(endpoint.grants).toHaveLength(2);
    now += 1_000; // the back-off is 2 s now
    await expect(tokens.accessToken(CREDENTIAL)).rejects.toThrow('asked again in 1 s');
    expect(endpoint.grants).toHaveLength(2);
    endpoint.state.status = 200;
    now += 1_000;
    expect(await tokens.accessToken(CREDENTIAL)).toBe('tok-3');
  });

  it('keep() fetches a key\'s token before any attempt asks, renews it on a timer before expiry, retries a failed renewal with back-off, and drops a rotated key', async () => {
    vi.useFakeTimers({ now: 1_000_000, toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const endpoint = controlledEndpoint();
    const failures: string[] = [];
    const tokens = new ServiceAccountTokens({ fetch: endpoint.fetchFn, onRenewalFailure: (m) => failures.push(m) });
    tokens.keep('credential/ai/sa', CREDENTIAL);
    await vi.advanceTimersByTimeAsync(0);
    expect(endpoint.grants).toHaveLength(1);
    expect(await tokens.accessToken(CREDENTIAL, 0)).toBe('tok-1');
    expect(tokens.keeps('credential/ai/sa')).toBe(true);
    tokens.keep('credential/ai/sa', CREDENTIAL); // the same key again: nothing new
    await vi.advanceTimersByTimeAsync(54 * 60_000);
    expect(endpoint.grants).toHaveLength(1);

    // 55 minutes in (5 minutes before expiry) the renewal fails: retried after 1 s, then 2 s.
    endpoint.state.status = 500;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(endpoint.grants).toHaveLength(2);
    expect(failures).toHaveLength(1);
    expect(failures[0]).not.toContain('PRIVATE KEY');
    expect(await tokens.accessToken(CREDENTIAL, 0)).toBe('tok-1');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(endpoint.grants).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(endpoint.grants).toHaveLength(3);
    endpoint.state.status = 200;
    await vi.advanceTimersByTimeAsync(1_000);
    expect(endpoint.grants).toHaveLength(4);
    expect(await tokens.accessToken(CREDENTIAL, 0)).toBe('tok-4');

    // A rotated key is fetched at once; the old one is no longer renewed.
    const rotated = JSON.stringify({ 'key.json': KEY_FILE.replace('kid-1', 'kid-2') });
    tokens.keep('credential/ai/sa', rotated);
    await vi.advanceTimersByTimeAsync(0);
    expect(endpoint.grants).toHaveLength(5);
    expect(await tokens.accessToken(rotated, 0)).toBe('tok-5');
    await vi.advanceTimersByTimeAsync(56 * 60_000);
    // Only the rotated key's renewal (at 55 minutes), not the old key's.
    expect(endpoint.grants).toHaveLength(6);
    tokens.stop();
  });
});
