import { describe, expect, it } from 'vitest';
import { exchangeContext } from '../support/exchange-context.js';
import { AttemptExchange, type ExchangeContext } from '../../src/ai-extension/exchange.js';
import type { ProcessingRequest, ProcessingResponse } from '../../src/ai-extension/protocol.js';
import { attemptAttributes } from '../support/attempt-attributes.js';

/**
 * The request body in full duplex, as Envoy 1.40 sends it (src/ai-extension/README.md, "Bodies
 * and content-length"): its messages come right behind the headers, before their answer. The
 * headers are answered once the whole body is in, with what the body decides; the body's
 * messages get one answer, with the last: the member's body.
 */

const member = attemptAttributes({ backend: 'ai/chat', member: 'azure', priority: '0', provider: 'azureopenai', authKind: 'SecretRef', authHeader: 'api-key', credential: 'credential/ai/k', hostname: 'x.openai.azure.com', path: '/openai/deployments/dep/chat/completions?api-version=2024-10-21', model: 'gpt-4o' });

function context(): ExchangeContext {
  return exchangeContext('azure-key');
}

const headersMessage = (end = false): ProcessingRequest => ({
  request_headers: { headers: { headers: [[':path', '/v1/chat/completions'], ['content-length', '57'], ['x-request-id', 'r1']].map(([key, value]) => ({ key: key ?? '', raw_value: Buffer.from(value ?? '') })) }, end_of_stream: end },
  attributes: member,
});
const chunk = (text: string, end = false): ProcessingRequest => ({ request_body: { body: Buffer.from(text), end_of_stream: end } });

function set(r: ProcessingResponse): Record<string, string> {
  return r.phase === 'request_headers' ? Object.fromEntries((r.headers?.set ?? []).map((h) => [h.key, h.value])) : {};
}

function streamed(r: ProcessingResponse): { text: string; end: boolean } | undefined {
  if (r.phase !== 'request_body' || r.body === undefined || !('streamed' in r.body)) return undefined;
  return { text: Buffer.from(r.body.streamed).toString('utf8'), end: r.body.end };
}

describe('a request body in full duplex', () => {
  it('answers the headers only once the whole body is in, with the adapted body\'s length, and sends that body with its last message', async () => {
    const exchange = new AttemptExchange(context());
    const waits: ProcessingResponse[] = [];
    const waiting = new AttemptExchange(context(), (r) => waits.push(r));
    for (const ex of [exchange, waiting]) ex.observe(headersMessage());
    // The body's first half is in, the rest not yet: the headers' answer waits for it.
    const body = JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hi' }] });
    const parts = [body.slice(0, 20), body.slice(20)];
    waiting.observe(chunk(parts[0] ?? ''));
    let answered = false;
    const answer = waiting.handle(headersMessage()).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(answered).toBe(false);
    // The rest is usually right behind: Envoy is asked to wait longer only once the body is slow (0.5 s).
    expect(waits).toEqual([]);
    await new Promise((r) => setTimeout(r, 600));
    expect(answered).toBe(false);
    expect(waits).toEqual([{ phase: 'wait', ms: 300_000 }]);
    waiting.observe(chunk(parts[1] ?? ''));
    waiting.observe(chunk('', true));
    const headers = set(await answer);
    const sent = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
    expect(headers).toMatchObject({ ':path': '/openai/deployments/dep/chat/completions?api-version=2024-10-21', 'api-key': 'azure-key', 'content-length': String(sent.length) });
    // One answer for the body's three messages: none to the first two, the member's body with the end.
    expect((await waiting.handle(chunk(parts[0] ?? ''))).phase).toBe('none');
    expect((await waiting.handle(chunk(parts[1] ?? ''))).phase).toBe('none');
    expect(streamed(await waiting.handle(chunk('', true)))).toEqual({ text: sent, end: true });
  });

  it('a body that ends with the request trailers goes with its last data message, not flagged as the end', async () => {
    const exchange = new AttemptExchange(context());
    const body = JSON.stringify({ model: 'gpt-4o', messages: [] });
    exchange.observe(chunk(body));
    exchange.observe({ request_trailers: {} });
    expect(set(await exchange.handle(headersMessage()))['content-length']).toBe(String(body.length));
    expect(streamed(await exchange.handle(chunk(body)))).toEqual({ text: body, end: false });
    expect((await exchange.handle({ request_trailers: {} })).phase).toBe('request_trailers');
  });

  it('behind a stand-in each body message is still answered (Envoy is done with the body)', async () => {
    const exchange = new AttemptExchange(context());
    const body = 'x'.repeat(20);
    exchange.observe(headersMessage());
    exchange.observe(chunk(body));
    exchange.observe(chunk('', true));
    // A member whose key the extension cannot have: answered with a local reply, the provider never called.
    const refused = new AttemptExchange(exchangeContext('', { credentials: { resolve: () => Promise.resolve(undefined) } }));
    refused.observe(headersMessage());
    refused.observe(chunk(body));
    refused.observe(chunk('', true));
    expect((await refused.handle(headersMessage())).phase).not.toBe('request_headers');
    expect(streamed(await refused.handle(chunk(body)))).toEqual({ text: '', end: false });
    expect((await exchange.handle(headersMessage())).phase).toBe('request_headers');
    expect((await exchange.handle(chunk(body))).phase).toBe('none');
  });

  it('a request without a body is answered at once', async () => {
    const exchange = new AttemptExchange(context());
    const r = await exchange.handle(headersMessage(true));
    expect(set(r)['api-key']).toBe('azure-key');
    expect(set(r)['content-length']).toBeUndefined();
  });

  it('sends the member the client\'s own bytes with only the model changed (no re-serialization)', async () => {
    const exchange = new AttemptExchange(context());
    const body = '{\n  "messages": [{"role": "user", "content": "caf\\u00e9 \\"model\\": x"}],\n  "seed": 12345678901234567890,\n  "model": "client-model"\n}';
    exchange.observe(headersMessage());
    exchange.observe(chunk(body, true));
    const headers = set(await exchange.handle(headersMessage()));
    const sent = body.replace('"client-model"', '"gpt-4o"');
    expect(headers['content-length']).toBe(String(Buffer.byteLength(sent)));
    expect(streamed(await exchange.handle(chunk(body, true)))).toEqual({ text: sent, end: true });
  });
});
