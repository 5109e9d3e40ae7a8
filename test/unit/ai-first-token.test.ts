import { describe, expect, it } from 'vitest';
import { FirstTokenWatch } from '../../src/ai-extension/first-token.js';
import { eventMessage } from '../support/fake-bedrock.js';

const sse = (data: object | string): string => `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
const openaiChunk = (delta: object, finish: string | null = null): string => sse({ object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] });

function feed(eventStream: boolean, ...chunks: string[]): boolean[] {
  const watch = new FirstTokenWatch(eventStream ? 'sse' : 'json');
  return chunks.map((c) => watch.push(Buffer.from(c)));
}

describe('FirstTokenWatch, OpenAI SSE', () => {
  it('ignores comments, role-only and empty deltas, and a usage-only chunk', () => {
    expect(feed(true, ': keep-alive\n\n', openaiChunk({ role: 'assistant', content: '', refusal: null }), openaiChunk({ content: '' }), sse({ choices: [], usage: { total_tokens: 3 } }), '\n\n')).toEqual([false, false, false, false, false]);
  });

  it('fires on the first non-empty content, tool call or refusal', () => {
    expect(feed(true, openaiChunk({ role: 'assistant' }), openaiChunk({ content: 'Hi' }))).toEqual([false, true]);
    expect(feed(true, openaiChunk({ tool_calls: [{ index: 0, id: 'call_1', function: { name: 'f', arguments: '' } }] }))).toEqual([true]);
    expect(feed(true, openaiChunk({ refusal: 'no' }))).toEqual([true]);
  });

  it('fires on the end of an empty answer (finish_reason, [DONE]) and on an error event', () => {
    expect(feed(true, openaiChunk({}, 'stop'))).toEqual([true]);
    expect(feed(true, sse('[DONE]'))).toEqual([true]);
    expect(feed(true, sse({ error: { message: 'overloaded' } }))).toEqual([true]);
  });

  it('reads events split across chunks and CRLF line ends', () => {
    const event = openaiChunk({ content: 'Hello' }).replace(/\n/g, '\r\n');
    expect(feed(true, event.slice(0, 20), event.slice(20, 40), event.slice(40))).toEqual([false, false, true]);
  });

  it('reads a multi-byte character split across chunks', () => {
    const bytes = Buffer.from(openaiChunk({ content: 'é' }));
    const at = bytes.indexOf(0xc3) + 1;
    const watch = new FirstTokenWatch('sse');
    expect(watch.push(bytes.subarray(0, at))).toBe(false);
    expect(watch.push(bytes.subarray(at))).toBe(true);
  });
});

describe('FirstTokenWatch, Anthropic SSE', () => {
  const event = (type: string, rest: object): string => `event: ${type}\n${sse({ type, ...rest })}`;
  it('ignores message_start, ping and an empty text block; fires on text', () => {
    expect(feed(true,
      event('message_start', { message: { role: 'assistant', content: [] } }),
      event('ping', {}),
      event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hi' } }),
    )).toEqual([false, false, false, true]);
  });

  it('fires on a tool_use block', () => {
    expect(feed(true, event('content_block_start', { index: 0, content_block: { type: 'tool_use', id: 't', name: 'f', input: {} } }))).toEqual([true]);
  });
});

describe('FirstTokenWatch, JSON answers', () => {
  it('ignores blank keep-alive lines and fires on the first byte of the body', () => {
    expect(feed(false, '\n', '  \n', '{"id":')).toEqual([false, false, true]);
  });
});

describe('FirstTokenWatch, Gemini streamGenerateContent (native Vertex AI path)', () => {
  const gemini = (candidate: object | undefined, extra: object = {}): string => sse({ ...(candidate === undefined ? {} : { candidates: [candidate] }), modelVersion: 'gemini-2.0-flash', ...extra });

  it('fires on the first text or function call of a candidate', () => {
    expect(feed(true, gemini({ content: { role: 'model', parts: [{ text: 'Hi' }] } }))).toEqual([true]);
    expect(feed(true, gemini({ content: { role: 'model', parts: [{ functionCall: { name: 'f', args: {} } }] } }))).toEqual([true]);
  });

  it('ignores empty text, a thought signature alone and a usage-only event', () => {
    expect(feed(true, gemini({ content: { role: 'model', parts: [{ text: '' }] } }), gemini({ content: { role: 'model', parts: [{ thoughtSignature: 'c2ln' }] } }), gemini(undefined, { usageMetadata: { promptTokenCount: 3 } }), gemini({ content: { role: 'model', parts: [{ text: 'ok' }] } })))
      .toEqual([false, false, false, true]);
  });

  it('fires on the end of an answer (finishReason) and on a blocked prompt', () => {
    expect(feed(true, gemini({ finishReason: 'SAFETY' }))).toEqual([true]);
    expect(feed(true, sse({ promptFeedback: { blockReason: 'PROHIBITED_CONTENT' } }))).toEqual([true]);
  });
});

describe('FirstTokenWatch, Bedrock converse-stream (binary event stream)', () => {
  const frames = (...messages: Buffer[]): boolean[] => {
    const watch = new FirstTokenWatch('eventstream');
    return messages.map((m) => watch.push(m));
  };

  it('ignores messageStart and an empty text delta; fires on the first text', () => {
    expect(frames(
      eventMessage('messageStart', { role: 'assistant' }),
      eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: '' } }),
      eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'Hi' } }),
    )).toEqual([false, false, true]);
  });

  it('reads a message cut anywhere, and two messages in one chunk', () => {
    const start = eventMessage('messageStart', { role: 'assistant' });
    const text = eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'Hi' } });
    const both = Buffer.concat([start, text]);
    expect(frames(both.subarray(0, 5), both.subarray(5, start.length + 7), both.subarray(start.length + 7))).toEqual([false, false, true]);
  });

  it('fires on a tool call, the end of an empty answer, and an exception', () => {
    expect(frames(eventMessage('contentBlockStart', { contentBlockIndex: 0, start: { toolUse: { toolUseId: 't', name: 'f' } } }))).toEqual([true]);
    expect(frames(eventMessage('messageStop', { stopReason: 'end_turn' }))).toEqual([true]);
    expect(frames(eventMessage('throttlingException', { message: 'slow down' }, 'exception'))).toEqual([true]);
  });

  it('fires on a corrupt stream: its error chunk must reach the client now', () => {
    const bad = eventMessage('messageStart', { role: 'assistant' });
    bad.writeUInt32BE((bad.readUInt32BE(8) ^ 1) >>> 0, 8);
    expect(frames(bad)).toEqual([true]);
  });
});
