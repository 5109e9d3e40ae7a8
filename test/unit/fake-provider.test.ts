import { connect } from 'node:net';
import OpenAI, { RateLimitError } from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeProvider, type FakeProvider } from '../../examples/demo/fake-provider.js';
import { sleep, waitFor } from '../support/wait.js';

const started: FakeProvider[] = [];
async function provider(name: string): Promise<FakeProvider> {
  const p = await startFakeProvider({ name });
  started.push(p);
  return p;
}
afterEach(async () => {
  await Promise.all(started.splice(0).map((p) => p.close()));
});

function client(p: FakeProvider): OpenAI {
  return new OpenAI({ baseURL: `${p.url}/v1`, apiKey: 'sk-test', maxRetries: 0, timeout: 5_000 });
}

function chat(p: FakeProvider, path = '/v1/chat/completions', init: RequestInit = {}): Promise<Response> {
  return fetch(`${p.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-a' },
    body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    ...init,
  });
}

/** Resolves with the socket error code of a raw TCP connect, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('fake provider', () => {
  it('ok: answers a chat completion the official client parses, naming itself and echoing the model', async () => {
    const p = await provider('alpha');
    const completion = await client(p).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    expect(completion.object).toBe('chat.completion');
    expect(completion.model).toBe('gpt-4o-mini');
    expect(completion.choices[0]?.message.content).toBe('answered by alpha');
    expect(completion.choices[0]?.finish_reason).toBe('stop');
    expect(p.counts().ok).toBe(1);
  });

  it('ok: streams chunks the official client assembles, ending with [DONE] and usage when asked', async () => {
    const p = await provider('beta');
    const stream = await client(p).chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null | undefined;
    let totalTokens: number | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      expect(chunk.model).toBe('gpt-4o');
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      totalTokens = chunk.usage?.total_tokens ?? totalTokens;
    }
    expect(text).toBe('answered by beta');
    expect(finish).toBe('stop');
    expect(totalTokens).toBeGreaterThan(0);

    const raw = await (await chat(p, '/v1/chat/completions', { body: JSON.stringify({ model: 'm', stream: true }) })).text();
    expect(raw.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('records method, path with query, host, every header and the parsed body, for any path', async () => {
    const p = await provider('azure-like');
    const res = await chat(p, '/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21', {
      headers: { 'content-type': 'application/json', 'api-key': 'k-123', 'x-extra': 'yes' },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-fake-provider')).toBe('azure-like');
    const [r] = p.received();
    expect(r?.method).toBe('POST');
    expect(r?.path).toBe('/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21');
    expect(r?.host).toBe(`127.0.0.1:${p.port}`);
    expect(r?.headers['api-key']).toBe('k-123');
    expect(r?.headers['x-extra']).toBe('yes');
    expect(r?.body).toEqual({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
    expect(r?.outcome).toBe('ok');
    expect(r?.time).toBeLessThanOrEqual(Date.now());
    p.clear();
    expect(p.received()).toHaveLength(0);
    expect(p.counts().ok).toBe(0);
  });

  it('status: answers the chosen code with an OpenAI-style error body', async () => {
    const p = await provider('gamma');
    await p.setMode({ kind: 'status', status: 502 });
    const res = await chat(p);
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: { message: string; type: string } };
    expect(body.error.message).toContain('gamma');
    expect(body.error.type).toBe('server_error');
    await p.setMode('status');
    expect((await chat(p)).status).toBe(503);
    expect(p.counts()).toMatchObject({ status: 2, ok: 0 });
  });

  it('ratelimit: 429 with Retry-After and x-ratelimit-reset-requests, seen by the official client', async () => {
    const p = await provider('delta');
    await p.setMode({ kind: 'ratelimit', retryAfterSeconds: 7 });
    const err = await client(p)
      .chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitError);
    const rl = err as RateLimitError;
    expect(rl.status).toBe(429);
    expect(rl.headers?.get('retry-after')).toBe('7');
    expect(rl.headers?.get('x-ratelimit-reset-requests')).toBe('7s');
    expect(rl.code).toBe('rate_limit_exceeded');
    expect(p.counts().ratelimit).toBe(1);
  });

  it('reset: reads the request, records it, then drops the connection without an answer', async () => {
    const p = await provider('epsilon');
    await p.setMode('reset');
    const err = await chat(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TypeError);
    expect(String((err as TypeError).cause)).toMatch(/ECONNRESET|other side closed|socket/i);
    expect(p.received()[0]?.outcome).toBe('reset');
    await p.setMode('ok');
    expect((await chat(p)).status).toBe(200);
  });

  it('refuse: connections are refused, and ok reopens the same port', async () => {
    const p = await provider('zeta');
    expect(await tryConnect(p.port)).toBe('connected');
    await p.setMode('refuse');
    expect(await tryConnect(p.port)).toBe('ECONNREFUSED');
    await p.setMode('ok');
    expect(await tryConnect(p.port)).toBe('connected');
    expect((await chat(p)).status).toBe(200);
  });

  it('refuse: also closes kept-alive connections, so a pooled client cannot sneak a request in', async () => {
    const p = await provider('eta');
    const socket = connect({ port: p.port, host: '127.0.0.1' });
    await new Promise((resolve) => socket.once('connect', resolve));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.on('error', () => undefined);
    await p.setMode('refuse');
    await closed;
    expect(socket.destroyed).toBe(true);
  });

  it('stall: holds the request until the mode changes, then the new mode answers it', async () => {
    const p = await provider('theta');
    await p.setMode('stall');
    let settled = false;
    const pending = chat(p).then((res) => {
      settled = true;
      return res;
    });
    await waitFor(() => p.stalled() === 1, { what: 'the request to be stalled' });
    await sleep(200);
    expect(settled).toBe(false);
    await p.setMode('ok');
    const res = await pending;
    expect(res.status).toBe(200);
    expect(p.stalled()).toBe(0);
    expect(p.received()[0]?.outcome).toBe('stall');
  });

  it('stall: forgets a request whose client went away', async () => {
    const p = await provider('iota');
    await p.setMode('stall');
    const abort = new AbortController();
    const pending = chat(p, '/v1/chat/completions', { signal: abort.signal }).catch((e: unknown) => e);
    await waitFor(() => p.stalled() === 1, { what: 'the request to be stalled' });
    abort.abort();
    expect(await pending).toBeInstanceOf(Error);
    await waitFor(() => p.stalled() === 0, { what: 'the stalled request to be dropped' });
    expect(p.counts().stall).toBe(1);
  });

  it('answers a burst of a few hundred concurrent requests', async () => {
    const p = await provider('kappa');
    const batch = 400;
    const statuses = await Promise.all(Array.from({ length: batch }, () => chat(p).then((r) => r.status)));
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(p.counts().ok).toBe(batch);
  });
});
