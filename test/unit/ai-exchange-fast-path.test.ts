import { describe, expect, it, vi } from 'vitest';
import { exchangeContext } from '../support/exchange-context.js';
import { attemptAttributes } from '../support/attempt-attributes.js';
import { AttemptExchange } from '../../src/ai-extension/exchange.js';
import type { ProcessingRequest, ProcessingResponse } from '../../src/ai-extension/protocol.js';

/**
 * The usual attempt (no drill, no fallback named, its key held, its body in the same read as its
 * headers) is answered without awaiting anything: each await of an async call was a few promise
 * jobs more between Envoy's request headers and their answer, on every attempt.
 */

const member = attemptAttributes({ backend: 'ai/chat', member: 'openai', priority: '0', provider: 'openai', authKind: 'SecretRef', authHeader: 'Authorization', credential: 'credential/ai/k', hostname: 'api.openai.com', path: '/v1/chat/completions', model: 'gpt-4o' });
const body = JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hi' }] });
const headers = (id: string): ProcessingRequest => ({
  request_headers: { headers: { headers: [[':path', '/v1/chat/completions'], ['content-length', String(body.length)], ['x-request-id', id]].map(([key, value]) => ({ key: key ?? '', raw_value: Buffer.from(value ?? '') })) }, end_of_stream: false },
  attributes: member,
});
const wholeBody: ProcessingRequest = { request_body: { body: Buffer.from(body), end_of_stream: true } };

/** Promise jobs run before `answer` settles (at most `limit`). */
async function jobsUntil(answer: Promise<unknown>, limit = 50): Promise<number> {
  let settled = false;
  void answer.then(() => (settled = true));
  let jobs = 0;
  while (!settled && jobs < limit) {
    await Promise.resolve();
    jobs++;
  }
  return jobs;
}

function set(r: ProcessingResponse): Record<string, string> {
  return r.phase === 'request_headers' ? Object.fromEntries((r.headers?.set ?? []).map((h) => [h.key, h.value])) : {};
}

describe('the answer to an attempt\'s request headers', () => {
  it('takes a key the store holds without resolve(), and awaits nothing when the body is in', async () => {
    const resolve = vi.fn(() => Promise.resolve('sk-held'));
    const ctx = exchangeContext('unused', { credentials: { resolve, get: (name) => (name === 'credential/ai/k' ? 'sk-held' : undefined) } });
    const exchange = new AttemptExchange(ctx);
    exchange.observe(headers('r1'));
    exchange.observe(wholeBody);
    const answer = exchange.handle(headers('r1'));
    // 6 on 139a9e6, where the drill check, the fallback check, resolve() and the body's wait were each awaited.
    expect(await jobsUntil(answer)).toBeLessThanOrEqual(3);
    expect(resolve).not.toHaveBeenCalled();
    const r = await answer;
    expect(set(r)).toMatchObject({ ':path': '/v1/chat/completions', ':authority': 'api.openai.com', authorization: 'Bearer sk-held', 'content-length': String(body.length - 'client-model'.length + 'gpt-4o'.length) });
  });

  it('still waits for a key the store does not hold yet', async () => {
    const resolve = vi.fn(() => Promise.resolve('sk-late'));
    const exchange = new AttemptExchange(exchangeContext('unused', { credentials: { resolve, get: () => undefined } }));
    exchange.observe(headers('r2'));
    exchange.observe(wholeBody);
    const r = await exchange.handle(headers('r2'));
    expect(resolve).toHaveBeenCalledWith('credential/ai/k', 10);
    expect(set(r)['authorization']).toBe('Bearer sk-late');
  });
});
