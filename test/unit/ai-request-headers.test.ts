import { describe, expect, it } from 'vitest';
import type { AttemptTarget } from '../../src/ai-extension/attempt.js';
import { attemptTarget } from '../../src/ai-extension/attempt.js';
import { WELL_KNOWN_CREDENTIAL_HEADERS, requestHeaderMutation } from '../../src/ai-extension/request-headers.js';
import { RequestMemory } from '../../src/ai-extension/request-memory.js';
import { ATTEMPT_FACTS_ATTRIBUTE } from '../../src/envoy/ai-extension.js';
import { encodeAttemptFacts, type AttemptFacts } from '../../src/envoy/attempt-facts.js';

/** The per-attempt request edits: each attempt sets its member's path, host and key, and clears the rest. */

const azure: AttemptTarget = {
  backend: 'ai/chat',
  member: 'azure',
  priority: 1,
  provider: 'azureopenai',
  path: '/openai/deployments/mini/chat/completions?api-version=2024-10-21',
  hostname: 'east.openai.azure.com',
  authHeader: 'api-key',
  authKind: 'SecretRef',
  credential: 'credential/ai/azure-key',
};

const set = (m: ReturnType<typeof requestHeaderMutation>): Record<string, string> => Object.fromEntries((m.set ?? []).map((h) => [h.key, h.value]));

describe('requestHeaderMutation', () => {
  it('sets the member path, authority and key, and removes every other credential header', () => {
    const m = requestHeaderMutation({
      target: azure,
      clientPath: '/v1/chat/completions',
      key: 'az-key',
      clientCredentials: new Map([['authorization', 'Bearer client']]),
      credentialHeaders: [...WELL_KNOWN_CREDENTIAL_HEADERS, 'x-custom-key'],
    });
    expect(set(m)).toEqual({ ':path': azure.path, ':authority': 'east.openai.azure.com', 'api-key': 'az-key' });
    expect(m.remove?.sort()).toEqual(['accept-encoding', 'anthropic-version', 'authorization', 'x-amz-content-sha256', 'x-amz-date', 'x-amz-security-token', 'x-api-key', 'x-custom-key', 'x-goog-api-key', 'x-switchyard-model']);
  });

  it('writes Authorization as a bearer token and Anthropic\'s version header', () => {
    const openai = set(requestHeaderMutation({ target: { ...azure, provider: 'openai', authHeader: 'Authorization', path: '/v1/chat/completions' }, clientPath: '/v1/chat/completions', key: 'sk-1', clientCredentials: new Map(), credentialHeaders: WELL_KNOWN_CREDENTIAL_HEADERS }));
    expect(openai['authorization']).toBe('Bearer sk-1');
    const anthropic = set(requestHeaderMutation({ target: { ...azure, provider: 'anthropic', authHeader: 'x-api-key', path: '/v1/messages', apiVersion: '2023-06-01' }, clientPath: '/v1/chat/completions', key: 'ant', clientCredentials: new Map(), credentialHeaders: WELL_KNOWN_CREDENTIAL_HEADERS }));
    expect(anthropic).toMatchObject({ ':path': '/v1/messages', 'x-api-key': 'ant', 'anthropic-version': '2023-06-01' });
  });

  it('gives a Passthrough member the client\'s own credential back, even after another attempt replaced it', () => {
    const m = requestHeaderMutation({
      target: { ...azure, authKind: 'Passthrough' },
      clientPath: '/v1/chat/completions',
      key: undefined,
      clientCredentials: new Map([['authorization', 'Bearer client']]),
      credentialHeaders: WELL_KNOWN_CREDENTIAL_HEADERS,
    });
    expect(set(m)['authorization']).toBe('Bearer client');
    expect(m.remove).not.toContain('authorization');
    expect(m.remove).toContain('api-key');
  });

  it('leaves paths other than chat completions as the client sent them', () => {
    const m = requestHeaderMutation({ target: azure, clientPath: '/v1/models', key: 'k', clientCredentials: new Map(), credentialHeaders: [] });
    expect(set(m)[':path']).toBe('/v1/models');
  });
});

describe('attemptTarget', () => {
  const attributes = (fields: AttemptFacts) => new Map([[ATTEMPT_FACTS_ATTRIBUTE, { stringValue: encodeAttemptFacts(fields) }]]);

  it('reads the member Envoy picked from the CEL attributes', () => {
    expect(attemptTarget(attributes({ backend: 'ai/chat', member: 'azure', provider: 'azureopenai', priority: 1, authKind: 'SecretRef', credential: 'credential/ai/k' }))).toEqual({
      backend: 'ai/chat',
      member: 'azure',
      provider: 'azureopenai',
      priority: 1,
      authKind: 'SecretRef',
      credential: 'credential/ai/k',
    });
  });

  it('reads the pool\'s fallbacks: the next priority, or the Envoy priority of a named pool', () => {
    const target = attemptTarget(attributes({ backend: 'ai/chat', member: 'm', provider: 'openai', fallbacks: 'context_length_exceeded>2,content_policy' }));
    expect(target).toMatchObject({ fallbacks: ['context_length_exceeded', 'content_policy'], fallbackLevels: { context_length_exceeded: 2 } });
    expect(target).not.toHaveProperty('fallbackLevels.content_policy');
    // Unknown causes and malformed levels are ignored, not guessed at.
    const odd = attemptTarget(attributes({ backend: 'ai/chat', member: 'm', provider: 'openai', fallbacks: 'rate_limit>1,content_policy>x' }));
    expect(odd).toMatchObject({ fallbacks: ['content_policy'] });
    expect(odd).not.toHaveProperty('fallbackLevels');
  });

  it('says what is missing when the endpoint carries no member metadata', () => {
    expect(attemptTarget(attributes({ member: 'x' }))).toEqual({ error: expect.stringContaining('backend, provider missing') });
  });
});

describe('RequestMemory', () => {
  it('forgets a request after its time to live and keeps a bounded number of them', () => {
    let now = 0;
    const memory = new RequestMemory({ ttlMs: 100, maxEntries: 2, now: () => now });
    const record = { clientCredentials: new Map<string, string>(), path: '/', lastMember: 'a', lastBackend: 'b', startedAt: 0, attempts: 1 };
    memory.remember('1', record);
    memory.remember('2', record);
    memory.remember('3', record);
    expect(memory.get('1')).toBeUndefined();
    expect(memory.get('3')?.lastMember).toBe('a');
    now = 150;
    expect(memory.get('3')).toBeUndefined();
  });
});
