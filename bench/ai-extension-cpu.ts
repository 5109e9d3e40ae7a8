/**
 * CPU per request of the AI extension's own work, without the gRPC transport: the five ext_proc
 * messages of one non-streamed OpenAI attempt (request headers with the member's attributes,
 * request body, response headers, response body, its empty end) encoded as Envoy sends them, then
 * decoded, answered and encoded by the extension, as many times as it takes. Steadier than the
 * end-to-end row on a busy machine: one process, CPU time only.
 *
 *   npx tsx bench/ai-extension-cpu.ts [requests]
 */
import { pino } from 'pino';
import { DrillNonces, DrillRejectionLog } from '../src/ai-extension/drill.js';
import { AttemptExchange, type ExchangeContext } from '../src/ai-extension/exchange.js';
import { createAiExtensionMetrics } from '../src/ai-extension/metrics.js';
import { decodeProcessingRequest, encodeProcessingResponse } from '../src/ai-extension/protocol.js';
import { RequestMemory } from '../src/ai-extension/request-memory.js';
import { CONNECTION_READY_ATTRIBUTE, EXT_PROC_ATTRIBUTES, attemptAttribute, type AttemptKey } from '../src/envoy/ai-extension.js';
import { messageType } from '../src/envoy/proto.js';

const REQUEST = messageType('envoy.service.ext_proc.v3.ProcessingRequest');

function encode(message: object): Buffer {
  return Buffer.from(REQUEST.encode(REQUEST.fromObject(message)).finish());
}

const headers = (h: Record<string, string>): object => ({ headers: { headers: Object.entries(h).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) } });

const member: Partial<Record<AttemptKey, string>> = {
  backend: 'ai/ai', member: 'ai-0-0', priority: '0', provider: 'openaiCompatible', model: 'gpt-4o', path: '/v1/chat/completions', hostname: 'provider.bench',
  authHeader: 'Authorization', authKind: 'SecretRef', credential: 'credential/ai/bench-key',
};
// Envoy also says, per attempt, that a connection was ready (a pooled one: the usual case).
const attributes = { [EXT_PROC_ATTRIBUTES]: { fields: { ...Object.fromEntries(Object.entries(member).map(([k, v]) => [attemptAttribute(k as AttemptKey), { stringValue: v }])), [CONNECTION_READY_ATTRIBUTE]: { stringValue: '23.132us' } } } };
const requestBody = JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] });
const responseBody = JSON.stringify({
  id: 'chatcmpl-1', object: 'chat.completion', created: 1_700_000_000, model: 'gpt-4o',
  choices: [{ index: 0, message: { role: 'assistant', content: 'answered by provider' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
});

function messages(id: number): Buffer[] {
  return [
    encode({
      request_headers: headers({
        ':authority': '127.0.0.1:10000', ':path': '/v1/chat/completions', ':method': 'POST', ':scheme': 'http', 'content-type': 'application/json',
        'content-length': String(requestBody.length), authorization: 'Bearer sk-bench', 'x-forwarded-proto': 'http', 'x-request-id': `4f0c7a52-90a4-4a6b-9c1e-${String(id).padStart(12, '0')}`,
        'x-envoy-attempt-count': '1', 'x-envoy-expected-rq-timeout-ms': '15000',
      }),
      attributes,
      metadata_context: {},
    }),
    encode({ request_body: { body: Buffer.from(requestBody), end_of_stream: true }, metadata_context: {} }),
    encode({ response_headers: headers({ ':status': '200', 'content-type': 'application/json', 'content-length': String(responseBody.length), 'x-fake-provider': 'provider', date: 'Sat, 05 Dec 2026 04:50:00 GMT' }), metadata_context: {} }),
    encode({ response_body: { body: Buffer.from(responseBody), end_of_stream: false }, metadata_context: {} }),
    encode({ response_body: { body: Buffer.alloc(0), end_of_stream: true }, metadata_context: {} }),
  ];
}

async function run(requests: number, ctx: ExchangeContext, wire: Buffer[][]): Promise<number> {
  const started = process.cpuUsage();
  for (let i = 0; i < requests; i++) {
    const exchange = new AttemptExchange(ctx);
    for (const bytes of wire[i % wire.length] ?? []) {
      const message = decodeProcessingRequest(bytes);
      exchange.observe(message);
      const phaseStarted = performance.now();
      const response = await exchange.handle(message);
      encodeProcessingResponse(response);
      ctx.metrics.processing.observe({ phase: 'request_headers' }, (performance.now() - phaseStarted) / 1000);
    }
    exchange.close();
  }
  const used = process.cpuUsage(started);
  return (used.user + used.system) / requests;
}

async function main(): Promise<void> {
  const requests = Number(process.argv[2]) || 20_000;
  const ctx: ExchangeContext = {
    credentials: { resolve: () => Promise.resolve('sk-bench-provider') },
    memory: new RequestMemory(),
    metrics: createAiExtensionMetrics(),
    credentialHeaders: new Set(),
    credentialWaitMs: 1_000,
    logger: pino({ level: 'info' }),
    drill: { nonces: new DrillNonces(), rejections: new DrillRejectionLog() },
  };
  const wire = Array.from({ length: 1000 }, (_, i) => messages(i));
  await run(requests / 4, ctx, wire);
  const runs: number[] = [];
  for (let i = 0; i < 3; i++) runs.push(await run(requests, ctx, wire));
  process.stdout.write(`extension CPU per request without transport: ${runs.map((us) => us.toFixed(1)).join(', ')} µs (${requests} requests a run)\n`);
}

void main();
