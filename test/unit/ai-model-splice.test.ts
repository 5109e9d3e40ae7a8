import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { spliceModel } from '../../src/ai-extension/model-splice.js';

const splice = (body: string, model: string): string | undefined => spliceModel(Buffer.from(body), model, Object.hasOwn(JSON.parse(body) as object, 'model'))?.toString('utf8');

describe('the model spliced into the client\'s body', () => {
  it('replaces only the model\'s value and keeps every other byte the client sent', () => {
    const body = '{ "model" : "client-model",\n "seed": 12345678901234567890, "messages": [{"role":"user","content":"h\\u00e9llo \\"model\\": x"}], "t": 1.0 }';
    expect(splice(body, 'gpt-4o')).toBe(body.replace('"client-model"', '"gpt-4o"'));
  });

  it('finds a top-level model after nested ones, escaped keys included, and replaces the last of duplicates as JSON.parse reads it', () => {
    expect(splice('{"a":{"model":"x"},"b":["model"],"model":"c"}', 'm')).toBe('{"a":{"model":"x"},"b":["model"],"model":"m"}');
    expect(splice('{"mod\\u0065l":"c","n":2}', 'm')).toBe('{"mod\\u0065l":"m","n":2}');
    expect(splice('{"model":"a","model":"b"}', 'm')).toBe('{"model":"a","model":"m"}');
    expect(splice('{"model":null,"x":true}', 'm')).toBe('{"model":"m","x":true}');
    // One plain model key, nested, while the top-level one is spelled with an escape: the nested one stays.
    expect(splice('{"tools":[{"model":"n"}],"mod\\u0065l":"c"}', 'm')).toBe('{"tools":[{"model":"n"}],"mod\\u0065l":"m"}');
    // A quoted "model" inside a string is no key.
    expect(splice('{"messages":[{"content":"\\"model\\": 1"}],"model":"c"}', 'm')).toBe('{"messages":[{"content":"\\"model\\": 1"}],"model":"m"}');
    expect(splice('{"messages":[{"content":"say \\\\"}], "model" :\n"c"}', 'm')).toBe('{"messages":[{"content":"say \\\\"}], "model" :\n"m"}');
  });

  it('adds the model when the body has none, and escapes the name', () => {
    expect(JSON.parse(splice('{"messages":[]}', 'a"b') ?? '')).toEqual({ model: 'a"b', messages: [] });
    expect(JSON.parse(splice(' { } ', 'm') ?? '')).toEqual({ model: 'm' });
  });

  it('gives up (the caller serializes) on what does not scan as one JSON object', () => {
    for (const body of ['[1]', '{"model":"a"} {}', '{"model":"a"', '{"model" "a"}']) expect(spliceModel(Buffer.from(body), 'm', false)).toBeUndefined();
  });

  it('reads as the parsed body with the model set, for any JSON object', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.oneof(fc.string(), fc.constant('model')), fc.jsonValue()), fc.string(), fc.boolean(), (object, model, pretty) => {
        const body = JSON.stringify(object, null, pretty ? 2 : undefined);
        const spliced = splice(body, model);
        expect(spliced).toBeDefined();
        expect(JSON.parse(spliced ?? '')).toEqual({ ...(JSON.parse(body) as object), model });
      }),
      { numRuns: 300 },
    );
  });
});
