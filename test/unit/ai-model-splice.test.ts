import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readChatFields, withModel } from '../../src/ai-extension/model-splice.js';

const fields = (body: string) => readChatFields(Buffer.from(body));
const splice = (body: string, model: string): string | undefined => {
  const f = fields(body);
  return f === undefined ? undefined : withModel(Buffer.from(body), f, model).toString('utf8');
};

describe('the top-level fields of a chat body, read without parsing its messages', () => {
  it('reads model, stream and stream_options.include_usage at the top level only, the last of duplicates as JSON.parse does', () => {
    expect(fields('{"messages":[{"model":"x","stream":false}],"model":"m","stream":true,"stream_options":{"include_usage":true}}')).toMatchObject({ model: 'm', stream: true, includeUsage: true });
    expect(fields('{"tools":[{"stream":true}],"stream_options":{"x":{"include_usage":true}}}')).toMatchObject({ model: undefined, stream: false, includeUsage: false });
    expect(fields('{"model":"a","model":"b","stream":true,"stream":false}')).toMatchObject({ model: 'b', stream: false });
    expect(fields('{"mod\\u0065l":"m","str\\u0065am":true}')).toMatchObject({ model: 'm', stream: true });
    expect(fields('{"model":7}')).toMatchObject({ model: 7 });
  });

  it('replaces only the model\'s value and keeps every other byte the client sent', () => {
    const body = '{ "model" : "client-model",\n "seed": 12345678901234567890, "messages": [{"role":"user","content":"h\\u00e9llo \\"model\\": x \\\\"}], "t": 1.0 }';
    expect(splice(body, 'gpt-4o')).toBe(body.replace('"client-model"', '"gpt-4o"'));
    expect(splice('{"a":{"model":"x"},"b":["model"],"model":"c"}', 'm')).toBe('{"a":{"model":"x"},"b":["model"],"model":"m"}');
    expect(splice('{"tools":[{"model":"n"}],"mod\\u0065l":"c"}', 'm')).toBe('{"tools":[{"model":"n"}],"mod\\u0065l":"m"}');
    expect(splice('{"model":"a","model":"b"}', 'm')).toBe('{"model":"a","model":"m"}');
    expect(splice('{"model":null,"x":true}', 'm')).toBe('{"model":"m","x":true}');
  });

  it('adds the model when the body has none, and escapes the name', () => {
    expect(JSON.parse(splice('{"messages":[]}', 'a"b') ?? '')).toEqual({ model: 'a"b', messages: [] });
    expect(JSON.parse(splice(' { } ', 'm') ?? '')).toEqual({ model: 'm' });
  });

  it('leaves alone (the body goes on as sent) what does not scan as one JSON object', () => {
    for (const body of ['', '[1]', '"x"', '{"model":"a"} {}', '{"model":"a"', '{"model" "a"}', '{"model":}', '{"m":[1,2}', '{"m":"abc}', '{model:1}', '{"a":1,}']) expect(fields(body)).toBeUndefined();
  });

  it('reads as JSON.parse does, and the spliced body parses to the client\'s with the model set, for any JSON object', () => {
    const key = fc.oneof(fc.string(), fc.constantFrom('model', 'stream', 'stream_options'));
    const value = fc.oneof(fc.jsonValue(), fc.record({ include_usage: fc.jsonValue() }));
    fc.assert(
      fc.property(fc.dictionary(key, value), fc.string(), fc.boolean(), (object, model, pretty) => {
        const body = JSON.stringify(object, null, pretty ? 2 : undefined);
        const parsed = JSON.parse(body) as Record<string, unknown>;
        const f = fields(body);
        const options = parsed['stream_options'];
        expect(f).toMatchObject({
          stream: parsed['stream'] === true,
          includeUsage: typeof options === 'object' && options !== null && !Array.isArray(options) && (options as Record<string, unknown>)['include_usage'] === true,
        });
        expect(f?.model).toEqual(parsed['model']);
        expect(JSON.parse(splice(body, model) ?? '')).toEqual({ ...parsed, model });
      }),
      { numRuns: 500 },
    );
  });
});
