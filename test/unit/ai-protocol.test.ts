import { describe, expect, it } from 'vitest';
import { asBuffer, decodeProcessingRequest, encodeProcessingResponse, headerMap, type ProcessingResponse } from '../../src/ai-extension/protocol.js';
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
