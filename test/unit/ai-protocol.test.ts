import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { asBuffer, decodeProcessingRequest, encodeProcessingResponse, headerMap, type ProcessingResponse } from '../../src/ai-extension/protocol.js';
import { writeAttemptMember } from '../../src/ai-extension/ext-proc-codec.js';
import { EXT_PROC_ATTRIBUTES } from '../../src/envoy/ai-extension.js';
import { messageType } from '../../src/envoy/proto.js';

/**
 * What Envoy reads from the extension's answers: the bytes are decoded with the real Envoy
 * protos, the way Envoy's ext_proc filter does, so an answer the encoder got wrong (an enum, a
 * bytes field, the wrong phase) shows here rather than as a silently ignored mutation.
 */

const RESPONSE = messageType('envoy.service.ext_proc.v3.ProcessingResponse');
const REQUEST = messageType('envoy.service.ext_proc.v3.ProcessingRequest');

function decoded(r: ProcessingResponse): Record<string, unknown> {
  return RESPONSE.toObject(RESPONSE.decode(encodeProcessingResponse(r)), { enums: String, bytes: String, longs: Number });
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('ext_proc answers on the wire', () => {
  it('sets headers with OVERWRITE_IF_EXISTS_OR_ADD in raw_value, removes the others, replaces the body', () => {
    expect(decoded({ phase: 'request_body', headers: { set: [{ key: 'content-length', value: '11' }], remove: ['api-key'] }, body: { body: Buffer.from('{"model":1}') } })).toEqual({
      request_body: {
        response: {
          header_mutation: { set_headers: [{ header: { key: 'content-length', raw_value: b64('11') }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }], remove_headers: ['api-key'] },
          body_mutation: { body: b64('{"model":1}') },
        },
      },
    });
  });

  it('names the attempt\'s member in dynamic metadata appended to any answer, as Envoy decodes it', () => {
    const member = { backend: 'ai/chat', member: 'pool-ü', priority: 2, provider: 'openaiCompatible', model: 'gpt-4o' };
    for (const answer of [{ phase: 'request_headers', headers: { set: [{ key: ':path', value: '/v1/x' }] } }, { phase: 'immediate', status: 503, body: 'no' }] as ProcessingResponse[]) {
      const bytes = Buffer.concat([encodeProcessingResponse(answer), writeAttemptMember('switchyard.dev', member)]);
      const message = RESPONSE.toObject(RESPONSE.decode(bytes), { enums: String, bytes: String, longs: Number });
      expect(message['dynamic_metadata']).toEqual({ fields: { 'switchyard.dev': { structValue: { fields: {
        backend: { stringValue: 'ai/chat' },
        member: { stringValue: 'pool-ü' },
        provider: { stringValue: 'openaiCompatible' },
        model: { stringValue: 'gpt-4o' },
        priority: { numberValue: 2 },
      } } } } });
      // The answer itself is unchanged by what is appended.
      const { dynamic_metadata: _appended, ...rest } = message;
      expect(rest).toEqual(RESPONSE.toObject(RESPONSE.decode(encodeProcessingResponse(answer)), { enums: String, bytes: String, longs: Number }));
    }
    const { model: _none, ...noModel } = member;
    const fields = (RESPONSE.toObject(RESPONSE.decode(writeAttemptMember('switchyard.dev', noModel))) as { dynamic_metadata: { fields: Record<string, { structValue: { fields: Record<string, unknown> } }> } }).dynamic_metadata.fields['switchyard.dev']?.structValue.fields;
    expect(Object.keys(fields ?? {}).sort()).toEqual(['backend', 'member', 'priority', 'provider']);
  });

  it('answers each phase that changes nothing with that phase, the same bytes every time', () => {
    for (const phase of ['request_headers', 'request_body', 'response_headers', 'response_body'] as const) {
      expect(decoded({ phase })).toEqual({ [phase]: { response: {} } });
      expect(encodeProcessingResponse({ phase }).equals(encodeProcessingResponse({ phase }))).toBe(true);
    }
    // A cached empty answer never stands in for one that carries a mutation.
    expect(decoded({ phase: 'response_body', body: { clear: true } })).toEqual({ response_body: { response: { body_mutation: { clear_body: true } } } });
  });

  it('encodes immediate responses, stand-ins and longer waits', () => {
    expect(decoded({ phase: 'immediate', status: 503, body: 'down', headers: [{ key: 'content-type', value: 'application/json' }] })).toEqual({
      immediate_response: {
        status: { code: 'ServiceUnavailable' },
        body: b64('down'),
        headers: { set_headers: [{ header: { key: 'content-type', raw_value: b64('application/json') }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }] },
      },
    });
    expect(decoded({ phase: 'stand-in', headers: [{ key: ':status', value: '424' }] })).toMatchObject({
      streamed_immediate_response: { headers_response: { headers: { headers: [{ key: ':status', raw_value: b64('424') }] }, end_of_stream: true } },
    });
    expect(decoded({ phase: 'wait', ms: 12_345 })).toEqual({ override_message_timeout: { seconds: 12, nanos: 345_000_000 } });
  });

  it('reads header values from raw_value as Envoy sends them', () => {
    const bytes = REQUEST.encode(REQUEST.fromObject({ request_headers: { headers: { headers: [{ key: ':path', raw_value: Buffer.from('/v1/chat/completions') }, { key: 'x-a', raw_value: Buffer.from('1') }, { key: 'x-a', raw_value: Buffer.from('2') }] } } })).finish();
    const headers = headerMap(decodeProcessingRequest(Buffer.from(bytes)).request_headers);
    expect([...headers]).toEqual([[':path', '/v1/chat/completions'], ['x-a', '1, 2']]);
  });

  it('reads a body chunk Envoy sent without bytes (the end of a stream) as an empty buffer', () => {
    const bytes = REQUEST.encode({ response_body: { end_of_stream: true } }).finish();
    const body = decodeProcessingRequest(Buffer.from(bytes)).response_body?.body;
    expect(body).toBeDefined();
    expect(asBuffer(body ?? new Uint8Array(1)).equals(Buffer.alloc(0))).toBe(true);
    const chunk = decodeProcessingRequest(Buffer.from(REQUEST.encode({ response_body: { body: Buffer.from('data: x') } }).finish())).response_body?.body;
    expect(asBuffer(chunk ?? new Uint8Array(0)).toString('utf8')).toBe('data: x');
  });
});

/**
 * The hand-written codec (src/ai-extension/ext-proc-codec.ts) against protobufjs with the real
 * Envoy protos: every generated request reads the same as protobufjs reads it, and every phase
 * answer decodes, with the Envoy protos, to what protobufjs would have encoded.
 */
describe('ext_proc messages read and written by hand', () => {
  const text = fc.string({ unit: 'binary', maxLength: 40 });
  const ascii = fc.string({ maxLength: 30 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'x'));
  const header = fc.record({ key: ascii.map((s) => s.toLowerCase()), raw_value: fc.uint8Array({ maxLength: 60 }) });
  const headersMessage = fc.record({ headers: fc.record({ headers: fc.array(header, { maxLength: 12 }) }), end_of_stream: fc.boolean() });
  const bodyMessage = fc.record({ body: fc.uint8Array({ maxLength: 300 }), end_of_stream: fc.boolean() }, { requiredKeys: ['end_of_stream'] });
  const value = fc.oneof(text.map((s) => ({ stringValue: s })), fc.double({ noNaN: true }).map((n) => ({ numberValue: n })), fc.boolean().map((b) => ({ boolValue: b })));
  const attributes = fc.dictionary(ascii, value, { maxKeys: 20 });
  const phase = fc.oneof(
    headersMessage.map((h) => ({ request_headers: h })),
    headersMessage.map((h) => ({ response_headers: h })),
    bodyMessage.map((b) => ({ request_body: b })),
    bodyMessage.map((b) => ({ response_body: b })),
  );

  it('reads every ProcessingRequest as protobufjs does, attributes by CEL expression', () => {
    fc.assert(
      fc.property(phase, fc.option(attributes, { nil: undefined }), fc.boolean(), (message, attrs, otherFilter) => {
        const wire = {
          ...message,
          // Fields the extension does not read are skipped: metadata, another filter's attributes.
          metadata_context: { filter_metadata: { 'switchyard.dev': { fields: { a: { stringValue: 'b' } } } } },
          observability_mode: true,
          ...(attrs !== undefined || otherFilter
            ? {
                attributes: {
                  ...(attrs !== undefined ? { [EXT_PROC_ATTRIBUTES]: { fields: attrs } } : {}),
                  ...(otherFilter ? { 'envoy.filters.http.other': { fields: { x: { stringValue: 'y' } } } } : {}),
                },
              }
            : {}),
        };
        const bytes = Buffer.from(REQUEST.encode(REQUEST.fromObject(wire)).finish());
        const expected = REQUEST.toObject(REQUEST.decode(bytes), { defaults: false }) as Record<string, unknown>;
        const got = decodeProcessingRequest(bytes);
        for (const key of ['request_headers', 'response_headers'] as const) {
          const h = got[key];
          if (h === undefined) continue;
          const want = expected[key] as { headers?: { headers?: { key: string; raw_value?: Uint8Array }[] }; end_of_stream?: boolean };
          expect(h.end_of_stream ?? false).toBe(want.end_of_stream ?? false);
          expect((h.headers?.headers ?? []).map((x) => [x.key, Buffer.from(x.raw_value ?? []).toString('hex')])).toEqual((want.headers?.headers ?? []).map((x) => [x.key, Buffer.from(x.raw_value ?? []).toString('hex')]));
        }
        for (const key of ['request_body', 'response_body'] as const) {
          const b = got[key];
          if (b === undefined) continue;
          const want = expected[key] as { body?: Uint8Array; end_of_stream?: boolean };
          expect(b.end_of_stream ?? false).toBe(want.end_of_stream ?? false);
          expect(asBuffer(b.body ?? new Uint8Array(1)).equals(Buffer.from(want.body ?? []))).toBe(true);
        }
        expect(Object.keys(got).filter((k) => k !== 'attributes').sort()).toEqual(Object.keys(message));
        if (attrs === undefined) {
          expect(got.attributes).toBeUndefined();
        } else {
          expect(Object.fromEntries(got.attributes ?? [])).toEqual(attrs);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('refuses bytes that are not a ProcessingRequest instead of reading past them', () => {
    // request_headers declaring 10 bytes where 2 follow.
    expect(() => decodeProcessingRequest(Buffer.from([0x12, 0x0a, 0x0a, 0x00]))).toThrow(/runs past the end/);
    expect(() => decodeProcessingRequest(Buffer.from([0x12]))).toThrow(/truncated varint/);
  });

  it('writes every phase answer as protobufjs would', () => {
    const set = fc.array(fc.record({ key: text, value: text }), { maxLength: 10 });
    const answer = fc.record(
      {
        phase: fc.constantFrom('request_headers' as const, 'response_headers' as const, 'request_body' as const, 'response_body' as const),
        headers: fc.record({ set, remove: fc.array(text, { maxLength: 10 }) }, { requiredKeys: [] }),
        body: fc.oneof(fc.uint8Array({ maxLength: 400 }).map((b) => ({ body: b })), fc.constant({ clear: true as const })),
      },
      { requiredKeys: ['phase'] },
    );
    fc.assert(
      fc.property(answer, (r) => {
        const common: Record<string, unknown> = {};
        if (r.headers !== undefined) {
          common['header_mutation'] = {
            set_headers: (r.headers.set ?? []).map((h) => ({ header: { key: h.key, raw_value: Buffer.from(h.value) }, append_action: 2 })),
            remove_headers: r.headers.remove ?? [],
          };
        }
        if (r.body !== undefined) common['body_mutation'] = 'body' in r.body ? { body: r.body.body } : { clear_body: true };
        const viaProtobufjs = RESPONSE.toObject(RESPONSE.decode(RESPONSE.encode({ [r.phase]: { response: common } }).finish()), { bytes: String });
        expect(RESPONSE.toObject(RESPONSE.decode(encodeProcessingResponse(r)), { bytes: String })).toEqual(viaProtobufjs);
      }),
      { numRuns: 300 },
    );
  });
});
