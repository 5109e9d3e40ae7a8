import { describe, expect, it } from 'vitest';
import { exchangeContext } from '../support/exchange-context.js';
import { AttemptExchange, type ExchangeContext } from '../../src/ai-extension/exchange.js';
import type { ProcessingRequest } from '../../src/ai-extension/protocol.js';
import { attemptAttributes, type MemberFactsText } from '../support/attempt-attributes.js';
import type { SpanRecord } from '../../src/observability/otlp.js';

/**
 * What one streamed attempt leaves behind, message by message as Envoy sends them: its time to
 * first token (on the first chunk, not the last), its duration, its tokens per member and a GenAI
 * span with the models and usage read from the SSE chunks.
 */

const KEY = 'sk-member-3e2d1c';

const attributes = (values: MemberFactsText): ProcessingRequest['attributes'] => attemptAttributes(values);

const headers = (h: Record<string, string>) => ({ headers: { headers: Object.entries(h).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) } });

function context(spans: SpanRecord[]): ExchangeContext {
  return exchangeContext(KEY, { spans: { export: (s) => spans.push(s) } });
}

const sse = (o: object): string => `data: ${JSON.stringify(o)}\n\n`;

describe('a streamed attempt', () => {
  it('observes time to first token on the first chunk, then duration, tokens and a span with the response model', async () => {
    const spans: SpanRecord[] = [];
    const ctx = context(spans);
    const exchange = new AttemptExchange(ctx);
    // Full duplex: the body arrives with the headers, before their answer.
    const body = { request_body: { body: Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [] })), end_of_stream: true } };
    exchange.observe(body);
    await exchange.handle({
      request_headers: headers({ ':path': '/v1/chat/completions', 'x-request-id': 'r1', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', authorization: 'Bearer sk-client' }),
      attributes: attributes({ backend: 'ai/chat', member: 'fast', priority: '0', provider: 'openai', authKind: 'SecretRef', credential: 'credential/ai/k', authHeader: 'Authorization' }),
    });
    await exchange.handle(body);
    await exchange.handle({ response_headers: headers({ ':status': '200', 'content-type': 'text/event-stream' }) });
    const ttft = async (): Promise<number> => (await ctx.metrics.timeToFirstToken.get()).values.find((v) => v.metricName === 'switchyard_ai_time_to_first_token_seconds_count')?.value ?? 0;
    expect(await ttft()).toBe(0);
    await exchange.handle({ response_body: { body: Buffer.from(sse({ model: 'gpt-4o-mini-2024-07-18', choices: [{ delta: { content: 'Hi' } }] })) } });
    expect(await ttft()).toBe(1);
    expect(spans).toHaveLength(0);
    await exchange.handle({ response_body: { body: Buffer.from(sse({ model: 'gpt-4o-mini-2024-07-18', choices: [], usage: { prompt_tokens: 12, completion_tokens: 30 } }) + 'data: [DONE]\n\n'), end_of_stream: true } });
    expect(await ttft()).toBe(1);

    const labels = { backend: 'ai/chat', priority: '0', member: 'fast', model: '' };
    const duration = (await ctx.metrics.requestDuration.get()).values.find((v) => v.metricName === 'switchyard_ai_request_duration_seconds_count');
    expect(duration).toMatchObject({ labels, value: 1 });
    const tokens = (await ctx.metrics.requestTokens.get()).values.filter((v) => v.metricName === 'switchyard_ai_request_tokens_sum');
    expect(tokens).toEqual(expect.arrayContaining([expect.objectContaining({ labels: { ...labels, type: 'input' }, value: 12 }), expect.objectContaining({ labels: { ...labels, type: 'output' }, value: 30 })]));

    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      parentSpanId: '00f067aa0ba902b7',
      name: 'chat gpt-4o-mini',
      attributes: {
        'gen_ai.request.model': 'gpt-4o-mini',
        'gen_ai.response.model': 'gpt-4o-mini-2024-07-18',
        'gen_ai.usage.input_tokens': 12,
        'gen_ai.usage.output_tokens': 30,
        'switchyard.attempt': 1,
      },
    });
    expect(JSON.stringify(spans, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))).not.toMatch(/sk-member|sk-client/);
  });

  it('with its bookkeeping deferred (as serve runs it), records a JSON answer only after its answers, usage on the span included', async () => {
    const spans: SpanRecord[] = [];
    const ctx = context(spans);
    const exchange = new AttemptExchange(ctx);
    exchange.deferBookkeeping();
    const body = { request_body: { body: Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [] })), end_of_stream: true } };
    exchange.observe(body);
    await exchange.handle({
      request_headers: headers({ ':path': '/v1/chat/completions', 'x-request-id': 'r2', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }),
      attributes: attributes({ backend: 'ai/chat', member: 'fast', priority: '0', provider: 'openai', authKind: 'SecretRef', credential: 'credential/ai/k', authHeader: 'Authorization' }),
    });
    await exchange.handle(body);
    await exchange.handle({ response_headers: headers({ ':status': '200', 'content-type': 'application/json' }) });
    const answer = JSON.stringify({ model: 'gpt-4o-mini-2024-07-18', choices: [{ message: { content: 'Hi' } }], usage: { prompt_tokens: 12, completion_tokens: 30 } });
    await exchange.handle({ response_body: { body: Buffer.from(answer) } });
    await exchange.handle({ response_body: { end_of_stream: true } });
    const count = async (): Promise<number> => (await ctx.metrics.requestDuration.get()).values.find((v) => v.metricName === 'switchyard_ai_request_duration_seconds_count')?.value ?? 0;
    // Every answer is made, and nothing is recorded yet: that waits until they have been sent.
    expect(await count()).toBe(0);
    expect((await ctx.metrics.requests.get()).values).toEqual([]);
    expect(spans).toHaveLength(0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(await count()).toBe(1);
    expect((await ctx.metrics.requests.get()).values[0]).toMatchObject({ labels: { member: 'fast' }, value: 1 });
    expect((await ctx.metrics.tokens.get()).values).toEqual(expect.arrayContaining([expect.objectContaining({ labels: expect.objectContaining({ direction: 'out' }), value: 30 })]));
    // The usage read from the answer reaches the span before it ends.
    expect(spans).toHaveLength(1);
    expect(spans[0]?.attributes).toMatchObject({ 'gen_ai.response.model': 'gpt-4o-mini-2024-07-18', 'gen_ai.usage.input_tokens': 12, 'gen_ai.usage.output_tokens': 30 });
  });

  it('makes no span for an unsampled trace, and still counts', async () => {
    const spans: SpanRecord[] = [];
    const ctx = context(spans);
    const exchange = new AttemptExchange(ctx, undefined, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00');
    // A request without a body: the headers end the stream.
    await exchange.handle({ request_headers: { ...headers({ ':path': '/v1/chat/completions' }), end_of_stream: true }, attributes: attributes({ backend: 'ai/chat', member: 'm', provider: 'openai' }) });
    await exchange.handle({ response_headers: headers({ ':status': '503' }) });
    exchange.close();
    expect(spans).toEqual([]);
    expect((await ctx.metrics.failures.get()).values[0]).toMatchObject({ labels: { member: 'm', cause: 'status_5xx' }, value: 1 });
  });
});
