import { describe, expect, it } from 'vitest';
import { toAnthropicRequest } from '../../src/ai-extension/anthropic.js';
import { toConverseRequest } from '../../src/ai-extension/bedrock.js';
import { toGenerateContentRequest } from '../../src/ai-extension/gemini.js';
import type { JsonRecord } from '../../src/ai-extension/json.js';

/**
 * The three vendors read OpenAI's messages by one walk (chat-turns.ts); what each must keep of
 * its own is where they differ: empty text parts, remote images, tool results.
 */

const messages: JsonRecord[] = [
  { role: 'system', content: [{ type: 'text', text: 'be brief' }, { type: 'text', text: '' }] },
  { role: 'user', content: [{ type: 'text', text: '' }, { type: 'text', text: 'see' }, { type: 'image_url', image_url: 'https://example.com/cat.png' }, { type: 'image_url', image_url: { url: 'data:image/tiff;base64,TTTT' } }] },
  { role: 'assistant', content: '', tool_calls: [
    { id: 'c1', type: 'function', function: { name: 'lookup', arguments: '[1,2]' } },
    { id: 'c2', type: 'function', function: { name: 'fetch', arguments: 7 } },
  ] },
  { role: 'tool', tool_call_id: 'c1', content: '{"hit":true}' },
  { role: 'tool', tool_call_id: 'c2', content: [{ type: 'text', text: 'plain' }] },
  { role: 'tool', tool_call_id: 'unknown', content: 'x' },
];

describe('one walk over OpenAI messages, each vendor its own blocks', () => {
  it('Anthropic keeps an empty text part, passes a remote image as a URL and a TIFF as base64', () => {
    const req = toAnthropicRequest({ messages }, 'claude');
    expect(req['system']).toBe('be brief');
    expect(req['messages']).toEqual([
      { role: 'user', content: [
        { type: 'text', text: '' },
        { type: 'text', text: 'see' },
        { type: 'image', source: { type: 'url', url: 'https://example.com/cat.png' } },
        { type: 'image', source: { type: 'base64', media_type: 'image/tiff', data: 'TTTT' } },
      ] },
      { role: 'assistant', content: [
        { type: 'tool_use', id: 'c1', name: 'lookup', input: {} },
        { type: 'tool_use', id: 'c2', name: 'fetch', input: {} },
      ] },
      { role: 'user', content: [
        { type: 'tool_result', tool_use_id: 'c1', content: '{"hit":true}' },
        { type: 'tool_result', tool_use_id: 'c2', content: 'plain' },
        { type: 'tool_result', tool_use_id: 'unknown', content: 'x' },
      ] },
    ]);
  });

  it('Converse drops empty text, remote images and formats it cannot take; tool results in one user turn', () => {
    const req = toConverseRequest({ messages });
    expect(req['system']).toEqual([{ text: 'be brief' }]);
    expect(req['messages']).toEqual([
      { role: 'user', content: [{ text: 'see' }] },
      { role: 'assistant', content: [
        { toolUse: { toolUseId: 'c1', name: 'lookup', input: {} } },
        { toolUse: { toolUseId: 'c2', name: 'fetch', input: {} } },
      ] },
      { role: 'user', content: [
        { toolResult: { toolUseId: 'c1', content: [{ text: '{"hit":true}' }] } },
        { toolResult: { toolUseId: 'c2', content: [{ text: 'plain' }] } },
        { toolResult: { toolUseId: 'unknown', content: [{ text: 'x' }] } },
      ] },
    ]);
  });

  it('Gemini drops empty text, fetches remote images itself and answers each function by the name of its call', () => {
    const req = toGenerateContentRequest({ messages });
    expect(req['systemInstruction']).toEqual({ parts: [{ text: 'be brief' }] });
    expect(req['contents']).toEqual([
      { role: 'user', parts: [
        { text: 'see' },
        { fileData: { fileUri: 'https://example.com/cat.png', mimeType: 'image/*' } },
        { inlineData: { mimeType: 'image/tiff', data: 'TTTT' } },
      ] },
      { role: 'model', parts: [
        { functionCall: { name: 'lookup', args: {} } },
        { functionCall: { name: 'fetch', args: {} } },
      ] },
      { role: 'user', parts: [
        { functionResponse: { name: 'lookup', response: { hit: true } } },
        { functionResponse: { name: 'fetch', response: { content: 'plain' } } },
        { functionResponse: { name: '', response: { content: 'x' } } },
      ] },
    ]);
  });
});
