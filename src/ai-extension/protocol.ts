import { messageType } from '../envoy/proto.js';
import { readProcessingRequest, writePhaseResponse } from './ext-proc-codec.js';

/**
 * The ext_proc wire protocol (envoy.service.ext_proc.v3.ExternalProcessor/Process). Requests and
 * the phase answers are read and written by hand (ext-proc-codec.ts: bodies and header values
 * stay views of the message); the rarer answers (immediate, stand-in, waits) are encoded with the
 * Envoy protos loaded through src/envoy/proto.ts.
 */

const RESPONSE = 'envoy.service.ext_proc.v3.ProcessingResponse';

/** google.protobuf.Value: the kinds an attribute arrives as (a CEL string, number or bool). */
export interface DecodedValue {
  stringValue?: string;
  numberValue?: number;
  boolValue?: boolean;
}

export interface DecodedHeader {
  key: string;
  value?: string;
  raw_value?: Uint8Array;
}

export interface DecodedHttpHeaders {
  headers?: { headers?: DecodedHeader[] };
  end_of_stream?: boolean;
}

export interface DecodedHttpBody {
  body?: Uint8Array;
  end_of_stream?: boolean;
}

/** One message from Envoy: exactly one phase is set. */
export interface ProcessingRequest {
  request_headers?: DecodedHttpHeaders;
  response_headers?: DecodedHttpHeaders;
  request_body?: DecodedHttpBody;
  response_body?: DecodedHttpBody;
  request_trailers?: object;
  response_trailers?: object;
  /**
   * The filter's request_attributes, by CEL expression: the Struct Envoy sends under the key
   * `envoy.filters.http.ext_proc` of ProcessingRequest.attributes (src/envoy/ai-extension.ts).
   */
  attributes?: ReadonlyMap<string, DecodedValue>;
}

export interface HeaderSet {
  key: string;
  value: string;
}

export interface HeaderMutation {
  set?: HeaderSet[];
  remove?: string[];
}

/**
 * `streamed` answers a request body chunk in full-duplex mode (BodyMutation.streamed_response):
 * the bytes that go on in its place, and whether they end the body.
 */
export type BodyMutation = { body: Uint8Array } | { clear: true } | { streamed: Uint8Array; end: boolean };

export interface PhaseResponse {
  phase: 'request_headers' | 'response_headers' | 'request_body' | 'response_body';
  headers?: HeaderMutation;
  body?: BodyMutation;
}

export interface ImmediateResponse {
  phase: 'immediate';
  status: number;
  body: string;
  headers?: HeaderSet[];
}

/**
 * An answer made up by the extension that Envoy treats as the upstream's (streamed_immediate_response):
 * the router applies the retry policy to it. No provider is called.
 */
export interface StandInResponse {
  phase: 'stand-in';
  headers: HeaderSet[];
}

export interface TrailersResponse {
  phase: 'request_trailers' | 'response_trailers';
}

/** Not an answer: asks Envoy to wait this long for the answer it is waiting for (override_message_timeout). */
export interface WaitLonger {
  phase: 'wait';
  ms: number;
}

/**
 * Nothing goes back for this message: in full duplex Envoy takes the request body's answers as
 * they come, not one per message (its ProcessorState::handleDuplexStreamedBodyResponse), so the
 * body's messages are answered by one, with the last.
 */
export interface NoAnswer {
  phase: 'none';
}

/** What the extension answers to one phase. */
export type ProcessingResponse = PhaseResponse | ImmediateResponse | StandInResponse | TrailersResponse | WaitLonger | NoAnswer;

export function decodeProcessingRequest(bytes: Buffer): ProcessingRequest {
  return readProcessingRequest(bytes);
}

type Plain = Record<string, unknown>;

/** HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD (envoy/config/core/v3/base.proto). */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

function headerMutation(m: HeaderMutation): Plain {
  return {
    set_headers: (m.set ?? []).map((h) => ({
      header: { key: h.key, raw_value: Buffer.from(h.value) },
      append_action: OVERWRITE_IF_EXISTS_OR_ADD,
    })),
    remove_headers: m.remove ?? [],
  };
}

/** Answers that change nothing, the most frequent ones, are the same bytes every time. */
const unchanged = new Map<PhaseResponse['phase'], Buffer>();

/**
 * The plain objects built below already have the wire shape (enum numbers, bytes as Uint8Array),
 * so they go straight to the encoder: fromObject would copy every one of them first.
 */
export function encodeProcessingResponse(r: ProcessingResponse): Buffer {
  if (isPhase(r)) {
    if (r.headers !== undefined || r.body !== undefined) return writePhaseResponse(r);
    let bytes = unchanged.get(r.phase);
    if (bytes === undefined) {
      bytes = writePhaseResponse(r);
      unchanged.set(r.phase, bytes);
    }
    return bytes;
  }
  const bytes = messageType(RESPONSE).encode(responseMessage(r)).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function isPhase(r: ProcessingResponse): r is PhaseResponse {
  return r.phase === 'request_headers' || r.phase === 'response_headers' || r.phase === 'request_body' || r.phase === 'response_body';
}

function responseMessage(r: Exclude<ProcessingResponse, PhaseResponse>): Plain {
  switch (r.phase) {
    case 'immediate':
      return { immediate_response: { status: { code: r.status }, body: Buffer.from(r.body), headers: headerMutation({ set: r.headers ?? [] }) } };
    case 'stand-in':
      return { streamed_immediate_response: { headers_response: { headers: { headers: r.headers.map((h) => ({ key: h.key, raw_value: Buffer.from(h.value) })) }, end_of_stream: true } } };
    case 'request_trailers':
    case 'response_trailers':
      return { [r.phase]: {} };
    case 'wait':
      return { override_message_timeout: { seconds: Math.floor(r.ms / 1000), nanos: (r.ms % 1000) * 1_000_000 } };
    case 'none':
      // An empty message would reach Envoy as a ProcessingResponse with no answer in it (spurious).
      throw new Error('encodeProcessingResponse: a message that is not answered has nothing to encode (check phase "none" before writing)');
  }
}

export const PROCESS_PATH = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';

/** The same bytes as a Buffer, without a copy (decoded bytes fields are views of the message already). */
export function asBuffer(bytes: Uint8Array): Buffer {
  if (Buffer.isBuffer(bytes)) return bytes;
  // An absent bytes field (Envoy's empty end-of-stream chunk) decodes to protobufjs' default, a plain empty array.
  return bytes instanceof Uint8Array ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : Buffer.from(bytes);
}

/** Header values arrive in raw_value (bytes) from Envoy 1.40; `value` is the older form. */
export function headerValue(h: DecodedHeader): string {
  if (h.raw_value !== undefined && h.raw_value.length > 0) return asBuffer(h.raw_value).toString('utf8');
  return h.value ?? '';
}

/** Headers of one message as a map with lower-case names (repeated headers joined by ", "). */
export function headerMap(h: DecodedHttpHeaders | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const header of h?.headers?.headers ?? []) {
    const name = header.key.toLowerCase();
    const value = headerValue(header);
    const previous = out.get(name);
    out.set(name, previous === undefined ? value : `${previous}, ${value}`);
  }
  return out;
}
