/**
 * The five ext_proc messages of one non-streamed OpenAI attempt, encoded as Envoy 1.40 sends them
 * (request headers with the member's attributes, the request body whole behind the AI cluster's
 * buffer filter, response headers, response body and its empty end), for the AI extension
 * benches (ai-extension-cpu.ts, ai-extension-grpc.ts). Envoy sends the first REQUEST_MESSAGES
 * together, then the rest together.
 */
import { ATTEMPT_FACTS_ATTRIBUTE, CONNECTION_READY_ATTRIBUTE, EXT_PROC_ATTRIBUTES } from '../src/envoy/ai-extension.js';
import { encodeAttemptFacts, type AttemptFacts } from '../src/envoy/attempt-facts.js';
import { messageType } from '../src/envoy/proto.js';

const REQUEST = messageType('envoy.service.ext_proc.v3.ProcessingRequest');

function encode(message: object): Buffer {
  return Buffer.from(REQUEST.encode(REQUEST.fromObject(message)).finish());
}

const headers = (h: Record<string, string>): object => ({ headers: { headers: Object.entries(h).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) } });

export const BENCH_MEMBER: AttemptFacts = {
  backend: 'ai/ai', member: 'ai-0-0', priority: 0, provider: 'openaiCompatible', model: 'gpt-4o', path: '/v1/chat/completions', hostname: 'provider.bench',
  authHeader: 'Authorization', authKind: 'SecretRef', credential: 'credential/ai/bench-key',
};
// Envoy also says, per attempt, that a connection was ready (a pooled one: the usual case).
const attributesOf = (m: AttemptFacts): object => ({ [EXT_PROC_ATTRIBUTES]: { fields: { [ATTEMPT_FACTS_ATTRIBUTE]: { stringValue: encodeAttemptFacts(m) }, [CONNECTION_READY_ATTRIBUTE]: { stringValue: '23.132us' } } } });
/** A chat of about `kb` KiB (the last turn 'hello'); 0: one short turn. */
export function chatBody(kb = 0): string {
  const turn = 'lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore';
  const earlier = Array.from({ length: Math.ceil((kb * 1024) / (turn.length + 40)) }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: turn }));
  return JSON.stringify({ messages: [...earlier, { role: 'user', content: 'hello' }], model: 'client-model' });
}
const responseBody = JSON.stringify({
  id: 'chatcmpl-1', object: 'chat.completion', created: 1_700_000_000, model: 'gpt-4o',
  choices: [{ index: 0, message: { role: 'assistant', content: 'answered by provider' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
});

/** How many of an attempt's messages belong to the request (sent together, before the answer's). */
export const REQUEST_MESSAGES = 2;

export function attemptMessages(id: number, member: AttemptFacts = BENCH_MEMBER, bodyKb = 0): Buffer[] {
  const attributes = attributesOf(member);
  const requestBody = chatBody(bodyKb);
  return [
    encode({
      request_headers: headers({
        ':authority': '127.0.0.1:10000', ':path': '/v1/chat/completions', ':method': 'POST', ':scheme': 'http', 'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(requestBody)), authorization: 'Bearer sk-bench', 'x-forwarded-proto': 'http', 'x-request-id': `4f0c7a52-90a4-4a6b-9c1e-${String(id).padStart(12, '0')}`,
        'x-envoy-attempt-count': '1', 'x-envoy-expected-rq-timeout-ms': '15000',
      }),
      attributes,
      metadata_context: {},
    }),
    // Full duplex, the body buffered ahead of the filter: the whole body flagged end_of_stream.
    encode({ request_body: { body: Buffer.from(requestBody), end_of_stream: true }, metadata_context: {} }),
    encode({ response_headers: headers({ ':status': '200', 'content-type': 'application/json', 'content-length': String(responseBody.length), 'x-fake-provider': 'provider', date: 'Sat, 05 Dec 2026 04:50:00 GMT' }), metadata_context: {} }),
    encode({ response_body: { body: Buffer.from(responseBody), end_of_stream: false }, metadata_context: {} }),
    encode({ response_body: { body: Buffer.alloc(0), end_of_stream: true }, metadata_context: {} }),
  ];
}

