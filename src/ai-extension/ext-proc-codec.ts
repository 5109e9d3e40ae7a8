import { EXT_PROC_ATTRIBUTES } from '../envoy/ai-extension.js';
import type { DecodedHeader, DecodedHttpBody, DecodedHttpHeaders, DecodedValue, HeaderMutation, PhaseResponse, ProcessingRequest } from './protocol.js';

/**
 * The ext_proc messages of every attempt read and written by hand, straight from and to the
 * protobuf wire format (protobuf.dev, "Encoding"): Envoy sends five ProcessingRequests per
 * attempt and the extension answers each. protobufjs built a message object per header, per
 * attribute and per Struct value, and the attribute Struct became an object keyed by long CEL
 * expressions, slow to read; in a profile of the bench's extension (bench/ai-extension.ts) decoding
 * and reading the attributes cost more than the rest of the request headers' handling. Only the
 * fields the extension reads are decoded; every other field is skipped by its wire type.
 * Field numbers: envoy/service/ext_proc/v3/external_processor.proto,
 * envoy/config/core/v3/base.proto, google/protobuf/struct.proto.
 */

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

const EMPTY = Buffer.alloc(0);

/** A position in one message; every read checks it stays inside `end`. */
class Cursor {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
  ) {}

  get more(): boolean {
    return this.pos < this.end;
  }

  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const byte = this.buf[this.pos++] ?? 0;
      // Past 2^53 a number loses precision: lengths and tags never get there, and booleans or
      // enums only need to be told apart from 0.
      result += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return result;
      shift += 7;
      if (shift > 63) throw new Error('varint longer than 10 bytes');
    }
  }

  /** The bounds of a length-delimited field's payload; the cursor moves past it. */
  sub(): Cursor {
    const length = this.varint();
    const start = this.pos;
    if (length > this.end - start) throw new Error(`field of ${length} bytes runs past the end of its message`);
    this.pos = start + length;
    return new Cursor(this.buf, start, start + length);
  }

  bytes(): Buffer {
    const c = this.sub();
    return this.buf.subarray(c.pos, c.end);
  }

  /** A string of ASCII in practice (header names, CEL expressions): latin1 keeps each byte. */
  ascii(): string {
    const c = this.sub();
    return this.buf.toString('latin1', c.pos, c.end);
  }

  utf8(): string {
    const c = this.sub();
    return this.buf.toString('utf8', c.pos, c.end);
  }

  double(): number {
    if (this.end - this.pos < 8) throw new Error('truncated double');
    const value = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return value;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case VARINT:
        this.varint();
        return;
      case FIXED64:
        this.advance(8);
        return;
      case LENGTH_DELIMITED:
        this.sub();
        return;
      case FIXED32:
        this.advance(4);
        return;
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
  }

  private advance(n: number): void {
    if (this.end - this.pos < n) throw new Error('truncated field');
    this.pos += n;
  }
}

/** Reads one ProcessingRequest; throws on bytes that are not one. */
export function readProcessingRequest(bytes: Buffer): ProcessingRequest {
  const c = new Cursor(bytes, 0, bytes.length);
  const out: ProcessingRequest = {};
  while (c.more) {
    const tag = c.varint();
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (wireType !== LENGTH_DELIMITED) {
      c.skip(wireType);
      continue;
    }
    switch (field) {
      case 2:
        out.request_headers = readHttpHeaders(c.sub());
        break;
      case 3:
        out.response_headers = readHttpHeaders(c.sub());
        break;
      case 4:
        out.request_body = readHttpBody(c.sub());
        break;
      case 5:
        out.response_body = readHttpBody(c.sub());
        break;
      case 6:
        c.sub();
        out.request_trailers = {};
        break;
      case 7:
        c.sub();
        out.response_trailers = {};
        break;
      case 9:
        readAttributesEntry(c.sub(), out);
        break;
      default:
        c.skip(wireType);
    }
  }
  return out;
}

/** HttpHeaders: headers = 1 (HeaderMap: headers = 1, repeated HeaderValue), end_of_stream = 3. */
function readHttpHeaders(c: Cursor): DecodedHttpHeaders {
  const headers: DecodedHeader[] = [];
  let endOfStream = false;
  while (c.more) {
    const tag = c.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) {
      const map = c.sub();
      while (map.more) {
        const inner = map.varint();
        if (inner === ((1 << 3) | LENGTH_DELIMITED)) headers.push(readHeaderValue(map.sub()));
        else map.skip(inner & 7);
      }
    } else if (tag === ((3 << 3) | VARINT)) {
      endOfStream = c.varint() !== 0;
    } else {
      c.skip(tag & 7);
    }
  }
  return { headers: { headers }, end_of_stream: endOfStream };
}

/** HeaderValue: key = 1, value = 2, raw_value = 3 (what Envoy 1.40 fills). */
function readHeaderValue(c: Cursor): DecodedHeader {
  let key = '';
  let value: string | undefined;
  let raw: Buffer | undefined;
  while (c.more) {
    const tag = c.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) key = c.ascii();
    else if (tag === ((2 << 3) | LENGTH_DELIMITED)) value = c.utf8();
    else if (tag === ((3 << 3) | LENGTH_DELIMITED)) raw = c.bytes();
    else c.skip(tag & 7);
  }
  const header: DecodedHeader = { key };
  if (value !== undefined) header.value = value;
  if (raw !== undefined) header.raw_value = raw;
  return header;
}

/** HttpBody: body = 1, end_of_stream = 2. An absent body (Envoy's empty end chunk) reads as empty bytes. */
function readHttpBody(c: Cursor): DecodedHttpBody {
  let body: Buffer = EMPTY;
  let endOfStream = false;
  while (c.more) {
    const tag = c.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) body = c.bytes();
    else if (tag === ((2 << 3) | VARINT)) endOfStream = c.varint() !== 0;
    else c.skip(tag & 7);
  }
  return { body, end_of_stream: endOfStream };
}

/** One entry of map<string, Struct> attributes: key = 1, value = 2; only the ext_proc filter's is kept. */
function readAttributesEntry(c: Cursor, out: ProcessingRequest): void {
  let key: string | undefined;
  let struct: Cursor | undefined;
  while (c.more) {
    const tag = c.varint();
    if (tag === ((1 << 3) | LENGTH_DELIMITED)) key = c.ascii();
    else if (tag === ((2 << 3) | LENGTH_DELIMITED)) struct = c.sub();
    else c.skip(tag & 7);
  }
  if (key !== EXT_PROC_ATTRIBUTES || struct === undefined) return;
  const fields = new Map<string, DecodedValue>(out.attributes);
  // Struct: fields = 1, map<string, Value> entries of key = 1, value = 2.
  while (struct.more) {
    const tag = struct.varint();
    if (tag !== ((1 << 3) | LENGTH_DELIMITED)) {
      struct.skip(tag & 7);
      continue;
    }
    const entry = struct.sub();
    let name = '';
    let value: DecodedValue = {};
    while (entry.more) {
      const inner = entry.varint();
      if (inner === ((1 << 3) | LENGTH_DELIMITED)) name = entry.ascii();
      else if (inner === ((2 << 3) | LENGTH_DELIMITED)) value = readValue(entry.sub());
      else entry.skip(inner & 7);
    }
    fields.set(name, value);
  }
  out.attributes = fields;
}

/** google.protobuf.Value: number_value = 2, string_value = 3, bool_value = 4; lists and structs are not read. */
function readValue(c: Cursor): DecodedValue {
  const value: DecodedValue = {};
  while (c.more) {
    const tag = c.varint();
    if (tag === ((2 << 3) | FIXED64)) value.numberValue = c.double();
    else if (tag === ((3 << 3) | LENGTH_DELIMITED)) value.stringValue = c.utf8();
    else if (tag === ((4 << 3) | VARINT)) value.boolValue = c.varint() !== 0;
    else c.skip(tag & 7);
  }
  return value;
}

/** ProcessingResponse field of each phase's answer (HeadersResponse or BodyResponse). */
const PHASE_FIELD: Record<PhaseResponse['phase'], number> = { request_headers: 1, response_headers: 2, request_body: 3, response_body: 4 };

/** HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD (envoy/config/core/v3/base.proto). */
const OVERWRITE_IF_EXISTS_OR_ADD = 2;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Size of a length-delimited field: its tag (one byte: every field number here is below 16), length and payload. */
function fieldSize(payload: number): number {
  return 1 + varintSize(payload) + payload;
}

class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
  }

  /** Tag and length of a length-delimited field whose payload follows. */
  open(field: number, length: number): void {
    this.buf[this.pos++] = (field << 3) | LENGTH_DELIMITED;
    this.varint(length);
  }

  string(field: number, text: string, length: number): void {
    this.open(field, length);
    this.pos += this.buf.write(text, this.pos, length, 'utf8');
  }

  bytes(field: number, bytes: Uint8Array): void {
    this.open(field, bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }
}

interface SizedHeader {
  key: string;
  value: string;
  keyBytes: number;
  valueBytes: number;
  /** HeaderValue: key = 1, raw_value = 3. */
  headerValue: number;
  /** HeaderValueOption: header = 1, append_action = 3. */
  option: number;
}

/**
 * One phase's answer (CommonResponse with its header and body mutations) as ProcessingResponse
 * bytes: the answer to nearly every message, so sizes are computed first and the bytes written
 * once into a buffer of the exact length.
 */
export function writePhaseResponse(r: PhaseResponse): Buffer {
  const mutation = r.headers === undefined ? undefined : sizeMutation(r.headers);
  const body = r.body;
  // StreamedBodyResponse: body = 1, end_of_stream = 2 (a false bool is left out, as proto3 does).
  const streamed = body !== undefined && 'streamed' in body ? fieldSize(body.streamed.length) + (body.end ? 2 : 0) : 0;
  // BodyMutation: body = 1 (bytes), clear_body = 2 (bool) or streamed_response = 3.
  const bodyMutation = body === undefined ? 0 : 'body' in body ? fieldSize(body.body.length) : 'streamed' in body ? fieldSize(streamed) : 2;
  // CommonResponse: header_mutation = 2, body_mutation = 3.
  const common = (mutation === undefined ? 0 : fieldSize(mutation.size)) + (body === undefined ? 0 : fieldSize(bodyMutation));
  // HeadersResponse / BodyResponse: response = 1.
  const phase = fieldSize(common);
  const out = Buffer.allocUnsafe(fieldSize(phase));
  const w = new Writer(out);
  w.open(PHASE_FIELD[r.phase], phase);
  w.open(1, common);
  if (mutation !== undefined) {
    w.open(2, mutation.size);
    for (const h of mutation.set) {
      w.open(1, h.option);
      w.open(1, h.headerValue);
      w.string(1, h.key, h.keyBytes);
      w.string(3, h.value, h.valueBytes);
      out[w.pos++] = (3 << 3) | VARINT;
      out[w.pos++] = OVERWRITE_IF_EXISTS_OR_ADD;
    }
    for (const name of mutation.remove) w.string(2, name.text, name.bytes);
  }
  if (body !== undefined) {
    w.open(3, bodyMutation);
    if ('body' in body) {
      w.bytes(1, body.body);
    } else if ('streamed' in body) {
      w.open(3, streamed);
      w.bytes(1, body.streamed);
      if (body.end) {
        out[w.pos++] = (2 << 3) | VARINT;
        out[w.pos++] = 1;
      }
    } else {
      out[w.pos++] = (2 << 3) | VARINT;
      out[w.pos++] = 1;
    }
  }
  if (w.pos !== out.length) throw new Error(`ext_proc answer encoded to ${w.pos} bytes, ${out.length} expected`);
  return out;
}

/** HeaderMutation: set_headers = 1 (HeaderValueOption), remove_headers = 2 (string). */
function sizeMutation(m: HeaderMutation): { size: number; set: SizedHeader[]; remove: { text: string; bytes: number }[] } {
  let size = 0;
  const set: SizedHeader[] = [];
  for (const { key, value } of m.set ?? []) {
    const keyBytes = Buffer.byteLength(key, 'utf8');
    const valueBytes = Buffer.byteLength(value, 'utf8');
    const headerValue = fieldSize(keyBytes) + fieldSize(valueBytes);
    // append_action: tag and one byte.
    const option = fieldSize(headerValue) + 2;
    set.push({ key, value, keyBytes, valueBytes, headerValue, option });
    size += fieldSize(option);
  }
  const remove = (m.remove ?? []).map((text) => ({ text, bytes: Buffer.byteLength(text, 'utf8') }));
  for (const name of remove) size += fieldSize(name.bytes);
  return { size, set, remove };
}

/** The member facts Envoy's access log and trace tags read from the attempt's dynamic metadata. */
export interface AttemptMemberFacts {
  backend: string;
  member: string;
  priority: number;
  provider: string;
  model?: string;
}

/** A google.protobuf.Value holding a string (string_value = 3), as a map entry of a Struct (key = 1, value = 2). */
function stringEntrySize(key: string, value: string): { size: number; keyBytes: number; valueBytes: number } {
  const keyBytes = Buffer.byteLength(key, 'utf8');
  const valueBytes = Buffer.byteLength(value, 'utf8');
  return { size: fieldSize(keyBytes) + fieldSize(fieldSize(valueBytes)), keyBytes, valueBytes };
}

/**
 * ProcessingResponse.dynamic_metadata (field 8) naming the member of this attempt under
 * `namespace`: the bytes are appended to the answer to the request headers (a protobuf message
 * may be sent as the concatenation of its fields). Envoy keeps the last attempt's, and its access
 * log and request span read them there (src/envoy/access-log.ts), so no endpoint carries these
 * facts a second time beside its facts string.
 */
export function writeAttemptMember(namespace: string, facts: AttemptMemberFacts): Buffer {
  const strings: [string, string][] = [['backend', facts.backend], ['member', facts.member], ['provider', facts.provider]];
  if (facts.model !== undefined) strings.push(['model', facts.model]);
  const sized = strings.map(([key, value]) => ({ key, value, ...stringEntrySize(key, value) }));
  // priority: Value.number_value = 2, a double (tag and 8 bytes).
  const priorityValue = 9;
  const priorityEntry = fieldSize(Buffer.byteLength('priority')) + fieldSize(priorityValue);
  let inner = fieldSize(priorityEntry);
  for (const s of sized) inner += fieldSize(s.size);
  // Value.struct_value = 5 holding the inner Struct; the outer Struct's entry is keyed by the namespace.
  const namespaceBytes = Buffer.byteLength(namespace, 'utf8');
  const outerValue = fieldSize(inner);
  const outerEntry = fieldSize(namespaceBytes) + fieldSize(outerValue);
  const struct = fieldSize(outerEntry);
  const out = Buffer.allocUnsafe(fieldSize(struct));
  const w = new Writer(out);
  w.open(8, struct);
  w.open(1, outerEntry);
  w.string(1, namespace, namespaceBytes);
  w.open(2, outerValue);
  w.open(5, inner);
  for (const s of sized) {
    w.open(1, s.size);
    w.string(1, s.key, s.keyBytes);
    w.open(2, fieldSize(s.valueBytes));
    w.string(3, s.value, s.valueBytes);
  }
  w.open(1, priorityEntry);
  w.string(1, 'priority', 8);
  w.open(2, priorityValue);
  out[w.pos++] = (2 << 3) | FIXED64;
  out.writeDoubleLE(facts.priority, w.pos);
  w.pos += 8;
  if (w.pos !== out.length) throw new Error(`attempt member metadata encoded to ${w.pos} bytes, ${out.length} expected`);
  return out;
}
