import { describe, expect, it } from 'vitest';
import type { AuthToken } from '../../src/api/backend.js';
import type { Secret } from '../../src/api/secret.js';
import { resolveCredential, resolveVendorCredential, secretKey } from '../../src/translate/credentials.js';

function secret(namespace: string, name: string, content: { stringData?: Record<string, string>; data?: Record<string, string> }): [string, Secret] {
  return [secretKey(namespace, name), { apiVersion: 'v1', kind: 'Secret', metadata: { namespace, name }, ...content }];
}

const ref = (name: string): AuthToken => ({ kind: 'SecretRef', secretRef: { name } });
const ctx = (secrets: [string, Secret][]) => ({ namespace: 'ai', backend: 'chat', member: 'primary', secrets: new Map(secrets) });

function resolvedValue(token: AuthToken, secrets: [string, Secret][]): string {
  const r = resolveCredential(token, ctx(secrets));
  if (!r.ok) throw new Error(`expected a usable credential, got ${r.reason}: ${r.message}`);
  if (r.kind !== 'SecretRef' && r.kind !== 'Inline') throw new Error(`expected a credential, got kind ${r.kind}`);
  return r.credential.value;
}

describe('resolveCredential', () => {
  it.each([
    ['Bearer sk-1', 'sk-1'],
    ['sk-1', 'sk-1'],
    ['bearer sk-1', 'sk-1'],
    ['  Bearer   sk-1 \n', 'sk-1'],
  ])('a Secret holding %j gives the bare key %j', (stored, key) => {
    expect(resolvedValue(ref('openai-key'), [secret('ai', 'openai-key', { stringData: { Authorization: stored } })])).toBe(key);
  });

  it('decodes base64 data, and prefers stringData as the API server does', () => {
    const encoded = Buffer.from('Bearer sk-data').toString('base64');
    expect(resolvedValue(ref('k'), [secret('ai', 'k', { data: { Authorization: encoded } })])).toBe('sk-data');
    expect(resolvedValue(ref('k'), [secret('ai', 'k', { data: { Authorization: encoded }, stringData: { Authorization: 'sk-plain' } })])).toBe('sk-plain');
  });

  it('names the credential after the Secret, so members sharing a Secret share one SDS resource', () => {
    const r = resolveCredential(ref('openai-key'), ctx([secret('ai', 'openai-key', { stringData: { Authorization: 'sk-1' } })]));
    expect(r).toMatchObject({ ok: true, kind: 'SecretRef', secret: 'openai-key', credential: { name: 'credential/ai/openai-key' } });
  });

  it('reports a missing Secret with the member, the Secret and the fix', () => {
    const r = resolveCredential(ref('openai-key'), ctx([]));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toBe('SecretNotFound');
    expect(r.secret).toBe('openai-key');
    expect(r.message).toContain('member primary');
    expect(r.message).toContain('Secret ai/openai-key not found');
    expect(r.message).toContain('"Authorization"');
  });

  it('does not look in other namespaces: a Secret of the same name elsewhere is not found', () => {
    const r = resolveCredential(ref('openai-key'), ctx([secret('other', 'openai-key', { stringData: { Authorization: 'sk-1' } })]));
    expect(r).toMatchObject({ ok: false, reason: 'SecretNotFound' });
  });

  it.each([
    ['no Authorization key', { stringData: { 'api-key': 'sk-1' } }],
    ['an empty value', { stringData: { Authorization: '' } }],
    ['only "Bearer "', { stringData: { Authorization: 'Bearer ' } }],
    ['only whitespace', { stringData: { Authorization: '  \n' } }],
  ])('reports SecretKeyMissing for a Secret with %s', (_label, content) => {
    const r = resolveCredential(ref('openai-key'), ctx([secret('ai', 'openai-key', content)]));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toBe('SecretKeyMissing');
    expect(r.message).toContain('member primary');
    expect(r.message).toContain('Secret ai/openai-key');
    expect(r.message).toContain('"Authorization"');
  });

  it('takes an inline token without "Bearer ", names it per member and warns', () => {
    const r = resolveCredential({ kind: 'Inline', inline: 'Bearer sk-inline' }, ctx([]));
    expect(r).toMatchObject({ ok: true, kind: 'Inline', credential: { name: 'credential/ai/chat/primary', value: 'sk-inline' } });
    if (r.ok && r.kind === 'Inline') expect(r.warning).toMatch(/SecretRef/);
  });

  it('needs no credential for Passthrough or no authToken', () => {
    expect(resolveCredential({ kind: 'Passthrough' }, ctx([]))).toEqual({ ok: true, kind: 'Passthrough' });
    expect(resolveCredential(undefined, ctx([]))).toEqual({ ok: true, kind: 'None' });
  });
});

describe('resolveVendorCredential (bedrock, vertexai serviceAccountKey)', () => {
  const aws = { kind: 'AwsKeys', secretName: 'aws' } as const;
  const sa = { kind: 'ServiceAccountKey', secretName: 'sa' } as const;
  const vctx = (secrets: [string, Secret][]) => ({ namespace: 'ai', member: 'bedrock', secrets: new Map(secrets) });

  it('hands the extension the Secret\'s keys as JSON under a name of its own', () => {
    const r = resolveVendorCredential(aws, vctx([secret('ai', 'aws', { stringData: { accessKey: 'AKIA1', secretKey: 's3cret', sessionToken: 'tok' } })]));
    expect(r).toMatchObject({ ok: true, kind: 'SecretRef', secret: 'aws', credential: { name: 'credential/ai/aws:aws' } });
    if (!r.ok || !('credential' in r)) throw new Error('expected a credential');
    expect(JSON.parse(r.credential.value)).toEqual({ accessKey: 'AKIA1', secretKey: 's3cret', sessionToken: 'tok' });
  });

  it('a missing Secret names the keys to create; a missing key names it, never a value', () => {
    expect(resolveVendorCredential(aws, vctx([]))).toMatchObject({
      ok: false, reason: 'SecretNotFound', message: 'member bedrock: Secret ai/aws not found; create it with keys "accessKey" and "secretKey"',
    });
    const r = resolveVendorCredential(aws, vctx([secret('ai', 'aws', { stringData: { accessKey: 'AKIA1' } })]));
    expect(r).toMatchObject({ ok: false, reason: 'SecretKeyMissing', message: 'member bedrock: Secret ai/aws has no non-empty key "secretKey"; add it' });
    expect(JSON.stringify(r)).not.toContain('AKIA1');
  });

  it('a key.json that is not a service-account key is named, without quoting it', () => {
    const r = resolveVendorCredential(sa, vctx([secret('ai', 'sa', { stringData: { 'key.json': '{"private_key":"PEM-SECRET"}' } })]));
    expect(r).toMatchObject({ ok: false, reason: 'SecretKeyMissing' });
    if (r.ok) throw new Error('expected a problem');
    expect(r.message).toBe('member bedrock: Secret ai/sa key "key.json" is not a usable service-account key: field client_email is missing; put the JSON key file there as downloaded');
    expect(r.message).not.toContain('PEM-SECRET');
  });
});
