import { describe, expect, it } from 'vitest';
import { AnthropicStreamTranslator, DEFAULT_MAX_TOKENS, fromAnthropicResponse, toAnthropicRequest, toOpenAIError } from '../../src/ai-extension/anthropic.js';

/** OpenAI Chat Completions ⇄ Anthropic Messages, as the AI extension translates them. */

describe('toAnthropicRequest', () => {
  it('moves system messages out, keeps turns, requires max_tokens and uses the member model', () => {
    const out = toAnthropicRequest(
      {
        model: 'client-model',
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'developer', content: [{ type: 'text', text: 'and kind' }] },
          { role: 'user', content: 'hello' },
          { role: 'assistant', content: 'hi' },
          { role: 'user', content: [{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] },
        ],
        temperature: 1.7,
        stop: 'END',
        stream: true,
        user: 'u-1',
      },
      'claude-sonnet-4-5',
    );
    expect(out).toEqual({
      model: 'claude-sonnet-4-5',
      max_tokens: DEFAULT_MAX_TOKENS,
      system: 'be brief\n\nand kind',
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'hello' }] },
        { role: 'assistant', content: [{ type: 'text', text: 'hi' }] },
        { role: 'user', content: [{ type: 'text', text: 'look' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] },
      ],
      temperature: 1,
      stop_sequences: ['END'],
      stream: true,
      metadata: { user_id: 'u-1' },
    });
  });

  it('carries tools, tool calls and tool results', () => {
    const out = toAnthropicRequest(
      {
        max_completion_tokens: 50,
        messages: [
          { role: 'user', content: 'weather?' },
          { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] },
          { role: 'tool', tool_call_id: 'call_1', content: 'rain' },
        ],
        tools: [{ type: 'function', function: { name: 'weather', description: 'forecast', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
        tool_choice: 'required',
      },
      undefined,
    );
    expect(out['max_tokens']).toBe(50);
    expect(out['messages']).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'weather?' }] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'call_1', name: 'weather', input: { city: 'Oslo' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_1', content: 'rain' }] },
    ]);
    expect(out['tools']).toEqual([{ name: 'weather', description: 'forecast', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }]);
    expect(out['tool_choice']).toEqual({ type: 'any' });
  });
});

describe('fromAnthropicResponse', () => {
  it('gives an OpenAI chat.completion with usage and finish reason', () => {
    const { completion, usage } = fromAnthropicResponse({
      id: 'msg_1',
      model: 'claude',
      content: [{ type: 'text', text: 'hel' }, { type: 'text', text: 'lo' }, { type: 'tool_use', id: 't1', name: 'f', input: { a: 1 } }],
      stop_reason: 'tool_use',
      usage: { input_tokens: 10, output_tokens: 4 },
    });
    expect(usage).toEqual({ input: 10, output: 4 });
    expect(completion).toMatchObject({
      id: 'msg_1',
      object: 'chat.completion',
      model: 'claude',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'hello', tool_calls: [{ id: 't1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }] },
          finish_reason: 'tool_calls',
        },
      ],
      usage: { prompt_tokens: 10, completion_tokens: 4, total_tokens: 14 },
    });
  });

  it('turns an Anthropic error into OpenAI\'s error shape', () => {
    expect(toOpenAIError({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }, 529)).toEqual({
      error: { message: 'Overloaded', type: 'overloaded_error', param: null, code: 'overloaded_error' },
    });
    expect(toOpenAIError(undefined, 500)).toMatchObject({ error: { message: 'Anthropic answered 500' } });
  });
});

describe('AnthropicStreamTranslator', () => {
  const events = [
    'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_9","model":"claude","usage":{"input_tokens":7,"output_tokens":1}}}\n\n',
    'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
    'event: ping\ndata: {"type":"ping"}\n\n',
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n',
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}\n\n',
    'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
    'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":2}}\n\n',
    'event: message_stop\ndata: {"type":"message_stop"}\n\n',
  ].join('');

  function chunks(out: string): unknown[] {
    return out
      .split('\n\n')
      .filter((e) => e.startsWith('data: '))
      .map((e) => e.slice(6))
      .map((d) => (d === '[DONE]' ? d : (JSON.parse(d) as unknown)));
  }

  it('emits OpenAI chunks for each complete event, however the bytes are split', () => {
    const whole = new AnthropicStreamTranslator(true);
    const expected = chunks(whole.push(events) + whole.end());
    const split = new AnthropicStreamTranslator(true);
    let out = '';
    for (let i = 0; i < events.length; i += 7) out += split.push(events.slice(i, i + 7));
    out += split.end();
    expect(chunks(out)).toEqual(expected);
    expect(expected).toMatchObject([
      { id: 'msg_9', object: 'chat.completion.chunk', model: 'claude', choices: [{ delta: { role: 'assistant', content: '' }, finish_reason: null }] },
      { choices: [{ delta: { content: 'Hi' } }] },
      { choices: [{ delta: { content: ' there' } }] },
      { choices: [{ delta: {}, finish_reason: 'length' }] },
      { choices: [], usage: { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 } },
      '[DONE]',
    ]);
    expect(split.tokens).toEqual({ input: 7, output: 2 });
  });

  it('sends each event on as soon as it is complete, and nothing for a partial one', () => {
    const t = new AnthropicStreamTranslator(false);
    const first = events.indexOf('\n\n') + 2;
    expect(t.push(events.slice(0, first - 5))).toBe('');
    expect(chunks(t.push(events.slice(first - 5, first)))).toHaveLength(1);
  });

  it('streams tool calls as OpenAI tool_call deltas', () => {
    const t = new AnthropicStreamTranslator(false);
    const out = t.push(
      [
        'data: {"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":1}}}\n\n',
        'data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"tu_1","name":"weather"}}\n\n',
        'data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\":"}}\n\n',
        'data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\\"Oslo\\"}"}}\n\n',
        'data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":5}}\n\n',
        'data: {"type":"message_stop"}\n\n',
      ].join(''),
    );
    expect(chunks(out)).toMatchObject([
      { choices: [{ delta: { role: 'assistant' } }] },
      { choices: [{ delta: { tool_calls: [{ index: 0, id: 'tu_1', type: 'function', function: { name: 'weather', arguments: '' } }] } }] },
      { choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] } }] },
      { choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: '"Oslo"}' } }] } }] },
      { choices: [{ finish_reason: 'tool_calls' }] },
      '[DONE]',
    ]);
  });

  it('passes a stream error on as an OpenAI error chunk', () => {
    const t = new AnthropicStreamTranslator(false);
    const out = t.push('event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n');
    expect(chunks(out)).toEqual([{ error: { message: 'Overloaded', type: 'overloaded_error', param: null, code: null } }]);
  });
});
