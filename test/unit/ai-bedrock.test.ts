import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ConverseStreamTranslator, bedrockErrorToOpenAI, fromConverseResponse, toConverseRequest } from '../../src/ai-extension/bedrock.js';
import { EventStreamDecoder } from '../../src/ai-extension/eventstream.js';
import { signRequest } from '../../src/ai-extension/sigv4.js';
import { eventMessage } from '../support/fake-bedrock.js';

const EXAMPLE = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };

describe('SigV4', () => {
  it('gives the signature of AWS\'s documented example (IAM ListUsers, 2015-08-30)', () => {
    const signed = signRequest(
      {
        method: 'GET', host: 'iam.amazonaws.com', path: '/?Action=ListUsers&Version=2010-05-08',
        headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
        body: new Uint8Array(0), region: 'us-east-1', service: 'iam', now: new Date('2015-08-30T12:36:00Z'),
      },
      EXAMPLE,
    );
    expect(signed.authorization).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7',
    );
    expect(signed['x-amz-date']).toBe('20150830T123600Z');
  });

  it('signs a Bedrock Converse request as botocore 1.43 does (model ID ":" encoded twice in the canonical URI, session token signed)', () => {
    // Expected value computed with botocore's SigV4Auth for the same request, key and time.
    const signed = signRequest(
      {
        method: 'POST', host: 'bedrock-runtime.us-east-1.amazonaws.com', path: '/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse',
        headers: { 'content-type': 'application/json' }, body: Buffer.from('{"messages":[]}'), region: 'us-east-1', service: 'bedrock',
        now: new Date('2026-12-05T02:37:32Z'),
      },
      { ...EXAMPLE, sessionToken: 'TOKEN' },
    );
    expect(signed).toEqual({
      authorization: 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261205/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=d28b03ebac3228279e1edd6bdcc840fe53521f0339f405382528c6b9a14807ce',
      'x-amz-date': '20261205T023732Z',
      'x-amz-security-token': 'TOKEN',
    });
  });
});

describe('OpenAI request → Converse request', () => {
  it('moves system messages, merges tool results into one user turn, maps tools, tool choice and inference settings', () => {
    const converse = toConverseRequest({
      model: 'gpt-4o',
      stream: true,
      max_completion_tokens: 100,
      temperature: 1.7,
      top_p: 0.9,
      stop: 'END',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: [{ type: 'text', text: 'weather in Paris and Rome?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] },
        { role: 'assistant', content: null, tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
          { id: 'c2', type: 'function', function: { name: 'weather', arguments: '{"city":"Rome"}' } },
        ] },
        { role: 'tool', tool_call_id: 'c1', content: 'sunny' },
        { role: 'tool', tool_call_id: 'c2', content: 'rain' },
      ],
      tools: [{ type: 'function', function: { name: 'weather', description: 'the weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }],
      tool_choice: { type: 'function', function: { name: 'weather' } },
    });
    expect(converse).toEqual({
      system: [{ text: 'be brief' }],
      messages: [
        { role: 'user', content: [{ text: 'weather in Paris and Rome?' }, { image: { format: 'png', source: { bytes: 'AAAA' } } }] },
        { role: 'assistant', content: [
          { toolUse: { toolUseId: 'c1', name: 'weather', input: { city: 'Paris' } } },
          { toolUse: { toolUseId: 'c2', name: 'weather', input: { city: 'Rome' } } },
        ] },
        { role: 'user', content: [
          { toolResult: { toolUseId: 'c1', content: [{ text: 'sunny' }] } },
          { toolResult: { toolUseId: 'c2', content: [{ text: 'rain' }] } },
        ] },
      ],
      inferenceConfig: { maxTokens: 100, temperature: 1, topP: 0.9, stopSequences: ['END'] },
      toolConfig: {
        tools: [{ toolSpec: { name: 'weather', description: 'the weather', inputSchema: { json: { type: 'object', properties: { city: { type: 'string' } } } } } }],
        toolChoice: { tool: { name: 'weather' } },
      },
    });
  });

  it('offers no tools when the client says tool_choice none', () => {
    const converse = toConverseRequest({ messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'x' } }], tool_choice: 'none' });
    expect(converse['toolConfig']).toBeUndefined();
  });
});

describe('Converse answer → OpenAI chat completion', () => {
  it('maps text, tool use, stop reason and usage', () => {
    const { completion, usage } = fromConverseResponse({
      output: { message: { role: 'assistant', content: [{ text: 'let me check' }, { toolUse: { toolUseId: 't1', name: 'weather', input: { city: 'Paris' } } }] } },
      stopReason: 'tool_use',
      usage: { inputTokens: 12, outputTokens: 7, totalTokens: 19 },
    }, 'amazon.nova-lite-v1:0');
    expect(usage).toEqual({ input: 12, output: 7 });
    expect(completion).toMatchObject({
      object: 'chat.completion',
      model: 'amazon.nova-lite-v1:0',
      choices: [{ index: 0, finish_reason: 'tool_calls', message: { role: 'assistant', content: 'let me check', tool_calls: [{ id: 't1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } }] } }],
      usage: { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 },
    });
  });

  it('turns Bedrock\'s error into OpenAI\'s shape with the type from x-amzn-errortype', () => {
    expect(bedrockErrorToOpenAI({ message: 'Too many requests' }, 'ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/', 429)).toEqual({
      error: { message: 'Too many requests', type: 'ThrottlingException', param: null, code: 'ThrottlingException' },
    });
  });
});

function sse(text: string): Record<string, unknown>[] {
  return text.split('\n\n').filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]').map((e) => JSON.parse(e.slice(6)) as Record<string, unknown>);
}

describe('converse-stream → OpenAI SSE', () => {
  const events = [
    eventMessage('messageStart', { role: 'assistant' }),
    eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'Hel' } }),
    eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'lo' } }),
    eventMessage('contentBlockStop', { contentBlockIndex: 0 }),
    eventMessage('contentBlockStart', { contentBlockIndex: 1, start: { toolUse: { toolUseId: 't1', name: 'weather' } } }),
    eventMessage('contentBlockDelta', { contentBlockIndex: 1, delta: { toolUse: { input: '{"city":' } } }),
    eventMessage('contentBlockDelta', { contentBlockIndex: 1, delta: { toolUse: { input: '"Paris"}' } } }),
    eventMessage('messageStop', { stopReason: 'tool_use' }),
    eventMessage('metadata', { usage: { inputTokens: 9, outputTokens: 4, totalTokens: 13 } }),
  ];
  const all = Buffer.concat(events);

  it('gives the same chunks whether bytes arrive whole or one at a time', () => {
    const whole = new ConverseStreamTranslator('m', true);
    const wholeOut = whole.push(all) + whole.end();
    const bytewise = new ConverseStreamTranslator('m', true);
    let bytewiseOut = '';
    for (let i = 0; i < all.length; i++) bytewiseOut += bytewise.push(all.subarray(i, i + 1));
    bytewiseOut += bytewise.end();
    const strip = (s: string): string => s.replace(/"id":"[^"]+"/g, '"id":"x"');
    expect(strip(bytewiseOut)).toBe(strip(wholeOut));
    expect(wholeOut.endsWith('data: [DONE]\n\n')).toBe(true);
    const chunks = sse(wholeOut);
    const deltas = chunks.map((c) => (c['choices'] as { delta: Record<string, unknown>; finish_reason: string | null }[])[0]);
    expect(deltas.map((d) => d?.delta['content']).filter((c) => typeof c === 'string').join('')).toBe('Hello');
    expect(deltas.flatMap((d) => (d?.delta['tool_calls'] as { function: { arguments: string } }[] | undefined) ?? []).map((t) => t.function.arguments).join('')).toBe('{"city":"Paris"}');
    expect(deltas.find((d) => d?.delta['tool_calls'] !== undefined)?.delta['tool_calls']).toEqual([{ index: 0, id: 't1', type: 'function', function: { name: 'weather', arguments: '' } }]);
    expect(deltas.map((d) => d?.finish_reason).filter(Boolean)).toEqual(['tool_calls']);
    expect(chunks.at(-1)?.['usage']).toEqual({ prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 });
    expect(whole.tokens).toEqual({ input: 9, output: 4 });
  });

  it('turns an exception message into an error chunk the OpenAI SDK raises', () => {
    const t = new ConverseStreamTranslator('m', false);
    const out = t.push(Buffer.concat([eventMessage('messageStart', { role: 'assistant' }), exception('throttlingException', 'slow down')])) + t.end();
    expect(sse(out).at(-1)).toEqual({ error: { message: 'slow down', type: 'throttlingException', param: null, code: null } });
    expect(out).not.toContain('[DONE]');
  });

  it('says so when a frame is corrupt or the stream is cut short, instead of ending as if complete', () => {
    const corrupt = Buffer.from(all);
    corrupt[corrupt.length - 20] = (corrupt[corrupt.length - 20] ?? 0) ^ 0xff;
    const t = new ConverseStreamTranslator('m', false);
    expect(sse(t.push(corrupt) + t.end()).at(-1)?.['error']).toMatchObject({ message: expect.stringContaining('message CRC mismatch') });
    const cut = new ConverseStreamTranslator('m', false);
    const out = cut.push(all.subarray(0, all.length - 30)) + cut.end();
    expect(sse(out).at(-1)?.['error']).toMatchObject({ message: expect.stringContaining('before the answer was complete') });
  });
});

describe('EventStreamDecoder', () => {
  it('reads headers and payload and ignores non-string header types', () => {
    const d = new EventStreamDecoder();
    const [m] = d.push(eventMessage('messageStop', { stopReason: 'end_turn' }));
    expect(m?.headers).toEqual({ ':event-type': 'messageStop', ':content-type': 'application/json', ':message-type': 'event' });
    expect(JSON.parse(m?.payload.toString() ?? '')).toMatchObject({ stopReason: 'end_turn' });
    expect(d.pending).toBe(0);
  });
});

/** An exception message as Bedrock sends one mid-stream (:message-type exception, its type in :exception-type). */
function exception(type: string, message: string): Buffer {
  return frame({ ':exception-type': type, ':content-type': 'application/json', ':message-type': 'exception' }, Buffer.from(JSON.stringify({ message })));
}

function frame(headers: Record<string, string>, payload: Buffer): Buffer {
  const h = Buffer.concat(Object.entries(headers).map(([name, value]) => {
    const n = Buffer.from(name);
    const v = Buffer.from(value);
    return Buffer.concat([Buffer.from([n.length]), n, Buffer.from([7, v.length >> 8, v.length & 0xff]), v]);
  }));
  const total = 12 + h.length + payload.length + 4;
  const out = Buffer.alloc(total);
  out.writeUInt32BE(total, 0);
  out.writeUInt32BE(h.length, 4);
  out.writeUInt32BE(crc32(out.subarray(0, 8)), 8);
  h.copy(out, 12);
  payload.copy(out, 12 + h.length);
  out.writeUInt32BE(crc32(out.subarray(0, total - 4)), total - 4);
  return out;
}
