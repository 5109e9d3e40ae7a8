import { describe, expect, it } from 'vitest';
import { GeminiStreamTranslator, fromGenerateContentResponse, geminiErrorToOpenAI, toGenerateContentRequest } from '../../src/ai-extension/gemini.js';

describe('OpenAI request → generateContent', () => {
  it('names each function response after its call (OpenAI names only the id) and maps tools and settings', () => {
    const request = toGenerateContentRequest({
      model: 'x',
      max_tokens: 50,
      temperature: 0.3,
      stop: ['END'],
      messages: [
        { role: 'developer', content: 'be brief' },
        { role: 'user', content: [{ type: 'text', text: 'weather?' }, { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,BBBB' } }] },
        { role: 'assistant', content: '', tool_calls: [{ id: 'call-9', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] },
        { role: 'tool', tool_call_id: 'call-9', content: '{"temp":3}' },
      ],
      tools: [{ type: 'function', function: { name: 'weather', parameters: { type: 'object' } } }],
      tool_choice: 'required',
    });
    expect(request).toEqual({
      systemInstruction: { parts: [{ text: 'be brief' }] },
      contents: [
        { role: 'user', parts: [{ text: 'weather?' }, { inlineData: { mimeType: 'image/jpeg', data: 'BBBB' } }] },
        { role: 'model', parts: [{ functionCall: { name: 'weather', args: { city: 'Oslo' } } }] },
        { role: 'user', parts: [{ functionResponse: { name: 'weather', response: { temp: 3 } } }] },
      ],
      generationConfig: { maxOutputTokens: 50, temperature: 0.3, stopSequences: ['END'] },
      tools: [{ functionDeclarations: [{ name: 'weather', parameters: { type: 'object' } }] }],
      toolConfig: { functionCallingConfig: { mode: 'ANY' } },
    });
  });
});

describe('generateContent answer → OpenAI', () => {
  it('maps text (not thoughts), function calls, finish reason and usage', () => {
    const { completion, usage } = fromGenerateContentResponse({
      candidates: [{ content: { role: 'model', parts: [{ text: 'thinking', thought: true }, { text: 'Oslo: ' }, { functionCall: { name: 'weather', args: { city: 'Oslo' } } }] }, finishReason: 'STOP' }],
      usageMetadata: { promptTokenCount: 7, candidatesTokenCount: 2, totalTokenCount: 9 },
      modelVersion: 'gemini-2.0-flash-001',
    }, 'google/gemini-2.0-flash');
    expect(usage).toEqual({ input: 7, output: 2 });
    expect(completion).toMatchObject({
      model: 'gemini-2.0-flash-001',
      choices: [{ finish_reason: 'tool_calls', message: { content: 'Oslo: ', tool_calls: [{ type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] } }],
      usage: { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 },
    });
  });

  it('a safety stop is content_filter; Google\'s error (in an array) becomes OpenAI\'s', () => {
    expect(fromGenerateContentResponse({ candidates: [{ content: { parts: [] }, finishReason: 'SAFETY' }] }, 'm').completion).toMatchObject({ choices: [{ finish_reason: 'content_filter' }] });
    expect(geminiErrorToOpenAI([{ error: { code: 429, message: 'Resource exhausted', status: 'RESOURCE_EXHAUSTED' } }], 429)).toEqual({
      error: { message: 'Resource exhausted', type: 'RESOURCE_EXHAUSTED', param: null, code: 'RESOURCE_EXHAUSTED' },
    });
  });
});

describe('streamGenerateContent (alt=sse) → OpenAI SSE', () => {
  it('joins events cut anywhere, ends with finish, usage and [DONE]', () => {
    const events = [
      { candidates: [{ content: { role: 'model', parts: [{ text: 'Hel' }] } }] },
      { candidates: [{ content: { role: 'model', parts: [{ text: 'lo' }] }, finishReason: 'MAX_TOKENS' }], usageMetadata: { promptTokenCount: 4, candidatesTokenCount: 2 } },
    ].map((e) => `data: ${JSON.stringify(e)}\r\n\r\n`).join('');
    const t = new GeminiStreamTranslator('m', true);
    let out = '';
    for (let i = 0; i < events.length; i += 7) out += t.push(events.slice(i, i + 7));
    out += t.end();
    const chunks = out.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)) as { choices: { delta: { content?: string }; finish_reason: string | null }[]; usage?: unknown });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello');
    expect(chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean)).toEqual(['length']);
    expect(chunks.at(-1)?.usage).toEqual({ prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 });
    expect(out.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(t.tokens).toEqual({ input: 4, output: 2 });
  });

  it('an error event ends the stream with an error chunk and no [DONE]', () => {
    const t = new GeminiStreamTranslator('m', false);
    const out = t.push(`data: ${JSON.stringify({ error: { code: 500, message: 'Internal error', status: 'INTERNAL' } })}\n\n`) + t.end();
    expect(out).toContain('"message":"Internal error"');
    expect(out).not.toContain('[DONE]');
  });
});
