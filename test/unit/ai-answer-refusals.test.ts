import { describe, expect, it } from 'vitest';
import { StreamRefusalWatch, isRefusalAnswer, type AnswerFormat } from '../../src/ai-extension/answer-refusals.js';
import { eventMessage } from '../support/fake-bedrock.js';

const json = (v: unknown): string => JSON.stringify(v);
const sse = (...events: unknown[]): string => events.map((e) => `data: ${json(e)}\n\n`).join('');
const anthropicSse = (...events: Record<string, unknown>[]): string => events.map((e) => `event: ${String(e['type'])}\ndata: ${json(e)}\n\n`).join('');

/** Feeds `text` in chunks of `size` bytes (cut anywhere, even inside a UTF-8 character) and returns the first verdict. */
function streamVerdict(format: AnswerFormat, bytes: Uint8Array, size = 7): string | undefined {
  const watch = new StreamRefusalWatch(format);
  let verdict: string | undefined;
  for (let i = 0; i < bytes.length && verdict === undefined; i += size) verdict = watch.push(bytes.subarray(i, i + size));
  return verdict;
}
const text = (s: string): Uint8Array => Buffer.from(s);

describe('isRefusalAnswer (a whole 200 answer)', () => {
  it('OpenAI and Azure OpenAI: finish_reason content_filter with no content is a refusal; a partly filtered answer is not', () => {
    expect(isRefusalAnswer('openai', json({ object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: null }, finish_reason: 'content_filter', content_filter_results: { violence: { filtered: true, severity: 'high' } } }] }))).toBe(true);
    expect(isRefusalAnswer('openai', json({ choices: [{ index: 0, message: { role: 'assistant', content: '' }, finish_reason: 'content_filter' }] }))).toBe(true);
    expect(isRefusalAnswer('openai', json({ choices: [{ index: 0, message: { role: 'assistant', content: 'Once upon a' }, finish_reason: 'content_filter' }] }))).toBe(false);
    expect(isRefusalAnswer('openai', json({ choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }] }))).toBe(false);
    // n = 2 with one good choice: the client has an answer.
    expect(isRefusalAnswer('openai', json({ choices: [{ message: { content: null }, finish_reason: 'content_filter' }, { message: { content: 'fine' }, finish_reason: 'stop' }] }))).toBe(false);
  });

  it('Anthropic: stop_reason refusal', () => {
    expect(isRefusalAnswer('anthropic', json({ type: 'message', role: 'assistant', content: [], stop_reason: 'refusal', stop_details: { type: 'refusal', category: 'cyber' } }))).toBe(true);
    expect(isRefusalAnswer('anthropic', json({ type: 'message', content: [{ type: 'text', text: 'hi' }], stop_reason: 'end_turn' }))).toBe(false);
  });

  it('Gemini: promptFeedback.blockReason, or a candidate finished for SAFETY or PROHIBITED_CONTENT', () => {
    expect(isRefusalAnswer('gemini', json({ promptFeedback: { blockReason: 'PROHIBITED_CONTENT' }, usageMetadata: { promptTokenCount: 12 } }))).toBe(true);
    expect(isRefusalAnswer('gemini', json({ promptFeedback: { blockReason: 'SAFETY', safetyRatings: [] } }))).toBe(true);
    expect(isRefusalAnswer('gemini', json({ candidates: [{ finishReason: 'SAFETY', safetyRatings: [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH', blocked: true }] }] }))).toBe(true);
    expect(isRefusalAnswer('gemini', json({ candidates: [{ content: { role: 'model', parts: [{ text: 'hello' }] }, finishReason: 'STOP' }] }))).toBe(false);
    expect(isRefusalAnswer('gemini', json({ candidates: [{ content: { role: 'model', parts: [{ text: 'partial' }] }, finishReason: 'SAFETY' }] }))).toBe(false);
  });

  it('Bedrock Converse: stopReason content_filtered or guardrail_intervened', () => {
    expect(isRefusalAnswer('bedrock', json({ output: { message: { role: 'assistant', content: [] } }, stopReason: 'content_filtered' }))).toBe(true);
    expect(isRefusalAnswer('bedrock', json({ output: { message: { role: 'assistant', content: [{ text: 'Sorry, the model cannot answer this question.' }] } }, stopReason: 'guardrail_intervened' }))).toBe(true);
    expect(isRefusalAnswer('bedrock', json({ output: { message: { role: 'assistant', content: [{ text: 'hi' }] } }, stopReason: 'end_turn' }))).toBe(false);
  });

  it('says nothing of bodies that are not JSON objects', () => {
    expect(isRefusalAnswer('openai', 'not json')).toBe(false);
    expect(isRefusalAnswer('anthropic', json(['refusal']))).toBe(false);
  });
});

describe('StreamRefusalWatch (a streamed answer, before its first content)', () => {
  it('OpenAI and Azure: a content_filter finish before any content is a refusal; content first is content', () => {
    const role = { choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] };
    const promptFilter = { choices: [], prompt_filter_results: [{ prompt_index: 0, content_filter_results: {} }] };
    const filtered = { choices: [{ index: 0, delta: {}, finish_reason: 'content_filter' }] };
    expect(streamVerdict('openai', text(sse(promptFilter, role, filtered) + 'data: [DONE]\n\n'))).toBe('refusal');
    expect(streamVerdict('openai', text(sse(role, { choices: [{ index: 0, delta: { content: 'Hé' }, finish_reason: null }] }, filtered)))).toBe('content');
    expect(streamVerdict('openai', text(sse(role, { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'c1' }] }, finish_reason: null }] })))).toBe('content');
    // Keep-alives and a role-only chunk decide nothing yet.
    expect(streamVerdict('openai', text(`: keep-alive\n\n${sse(role)}`))).toBeUndefined();
  });

  it('Anthropic: message_delta with stop_reason refusal before any text delta', () => {
    const start = { type: 'message_start', message: { id: 'msg_1', content: [], stop_reason: null } };
    const refusal = { type: 'message_delta', delta: { stop_reason: 'refusal', stop_details: { type: 'refusal' } }, usage: { output_tokens: 0 } };
    expect(streamVerdict('anthropic', text(anthropicSse(start, { type: 'ping' }, refusal, { type: 'message_stop' })))).toBe('refusal');
    const textDelta = { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hello' } };
    expect(streamVerdict('anthropic', text(anthropicSse(start, { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, textDelta, refusal)))).toBe('content');
    expect(streamVerdict('anthropic', text(anthropicSse(start, { type: 'ping' })))).toBeUndefined();
  });

  it('Gemini (streamGenerateContent, CRLF-separated events): a blocked prompt or a SAFETY finish without text', () => {
    const crlf = (e: unknown): string => `data: ${json(e)}\r\n\r\n`;
    expect(streamVerdict('gemini', text(crlf({ promptFeedback: { blockReason: 'SAFETY' } })))).toBe('refusal');
    expect(streamVerdict('gemini', text(crlf({ candidates: [{ finishReason: 'PROHIBITED_CONTENT' }] })))).toBe('refusal');
    expect(streamVerdict('gemini', text(crlf({ candidates: [{ content: { role: 'model', parts: [{ text: 'Hi' }] } }] }) + crlf({ candidates: [{ finishReason: 'SAFETY' }] })))).toBe('content');
  });

  it('Bedrock converse-stream: messageStop content_filtered or guardrail_intervened before any delta, frames cut anywhere', () => {
    const refused = Buffer.concat([eventMessage('messageStart', { role: 'assistant' }), eventMessage('messageStop', { stopReason: 'guardrail_intervened' })]);
    expect(streamVerdict('bedrock', refused, 5)).toBe('refusal');
    expect(streamVerdict('bedrock', Buffer.concat([eventMessage('messageStart', { role: 'assistant' }), eventMessage('messageStop', { stopReason: 'content_filtered' })]), 3)).toBe('refusal');
    const answered = Buffer.concat([eventMessage('messageStart', { role: 'assistant' }), eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'Hi' } }), eventMessage('messageStop', { stopReason: 'guardrail_intervened' })]);
    expect(streamVerdict('bedrock', answered, 11)).toBe('content');
    expect(streamVerdict('bedrock', eventMessage('messageStart', { role: 'assistant' }))).toBeUndefined();
  });
});
