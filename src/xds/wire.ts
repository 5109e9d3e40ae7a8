import protobuf from 'protobufjs';
import { ATTEMPT_FACTS_NODE_METADATA, GATEWAY_NODE_METADATA } from '../envoy/bootstrap.js';
import { messageType } from '../envoy/proto.js';
import { TypeUrl } from '../envoy/resources.js';

/**
 * The xDS transport messages on the wire. Requests are decoded into small typed records;
 * responses are assembled from the cache's pre-encoded Any bytes, because protobuf fields
 * concatenate: a shared response body plus a per-stream nonce field is a valid message.
 */

export interface NodeInfo {
  readonly id: string;
  readonly cluster: string;
  readonly userAgent: string;
  /** node.metadata[GATEWAY_NODE_METADATA]: the Gateway ("namespace/name") this Envoy serves, if it names one. */
  readonly gateway?: string;
  /** node.metadata[ATTEMPT_FACTS_NODE_METADATA]: the member facts format its AI extension reads; absent from Envoys of the release before. */
  readonly attemptFacts?: string;
}


export interface ErrorDetail {
  readonly code: number;
  readonly message: string;
}

export interface DiscoveryRequest {
  readonly versionInfo: string;
  readonly node: NodeInfo | undefined;
  readonly resourceNames: readonly string[];
  readonly typeUrl: string;
  readonly responseNonce: string;
  readonly errorDetail: ErrorDetail | undefined;
}

export interface DeltaDiscoveryRequest {
  readonly node: NodeInfo | undefined;
  readonly typeUrl: string;
  readonly subscribe: readonly string[];
  readonly unsubscribe: readonly string[];
  readonly initialResourceVersions: ReadonlyMap<string, string>;
  readonly responseNonce: string;
  readonly errorDetail: ErrorDetail | undefined;
}

const DISCOVERY_REQUEST = 'envoy.service.discovery.v3.DiscoveryRequest';
const DISCOVERY_RESPONSE = 'envoy.service.discovery.v3.DiscoveryResponse';
const DELTA_REQUEST = 'envoy.service.discovery.v3.DeltaDiscoveryRequest';
const DELTA_RESPONSE = 'envoy.service.discovery.v3.DeltaDiscoveryResponse';
const RESOURCE = 'envoy.service.discovery.v3.Resource';

/**
 * Requests are read with protobufjs' own toObject, not the strict JSON decoder: an Any inside
 * error_detail.details of a type we never loaded must not fail the stream.
 */
function decodeRequest(typeName: string, bytes: Uint8Array): Fields {
  const type = messageType(typeName);
  return type.toObject(type.decode(bytes), { longs: String, enums: String, defaults: false });
}

type Fields = { [key: string]: unknown };

export function decodeDiscoveryRequest(bytes: Uint8Array): DiscoveryRequest {
  const message = decodeRequest(DISCOVERY_REQUEST, bytes);
  return {
    versionInfo: text(message['version_info']),
    node: node(message['node']),
    resourceNames: texts(message['resource_names']),
    typeUrl: text(message['type_url']),
    responseNonce: text(message['response_nonce']),
    errorDetail: errorDetail(message['error_detail']),
  };
}

export function decodeDeltaDiscoveryRequest(bytes: Uint8Array): DeltaDiscoveryRequest {
  const reply = deltaReply(bytes);
  if (reply !== undefined) return reply;
  const message = decodeRequest(DELTA_REQUEST, bytes);
  const initial = message['initial_resource_versions'];
  return {
    node: node(message['node']),
    typeUrl: text(message['type_url']),
    subscribe: texts(message['resource_names_subscribe']),
    unsubscribe: texts(message['resource_names_unsubscribe']),
    initialResourceVersions: new Map(isFields(initial) ? Object.entries(initial).map(([name, version]) => [name, text(version)]) : []),
    responseNonce: text(message['response_nonce']),
    errorDetail: errorDetail(message['error_detail']),
  };
}

const NO_NAMES: readonly string[] = Object.freeze([]);
const NO_VERSIONS: ReadonlyMap<string, string> = new Map();
/** The served type URLs as bytes, so that a reply's type URL is one of these strings, not a new one (hashed anew at every lookup). */
const KNOWN_TYPE_URLS: readonly { readonly bytes: Buffer; readonly text: string }[] = Object.values(TypeUrl).map((text) => ({ bytes: Buffer.from(text, 'latin1'), text }));

interface ReplyTags {
  readonly typeUrl: number;
  readonly nonce: number;
}
let replyTags: ReplyTags | undefined;

/**
 * A DeltaDiscoveryRequest that is an ACK (type_url and response_nonce, nothing else: what Envoy
 * sends after each response, a thousand streams at a time), read without protobufjs: its decode
 * and toObject made two objects with every field defaulted, and a Map, per ACK. Undefined for
 * any other request (a field more, a NACK's error_detail, a repeated field, anything unusual),
 * which takes the full decoder.
 */
function deltaReply(bytes: Uint8Array): DeltaDiscoveryRequest | undefined {
  return deltaReplyAt(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 0, bytes.length);
}

/**
 * deltaReply() of `bytes` from `start` to `end`, read in place: the server's direct reads
 * (grpc-framing.ts) find an ACK inside a DATA frame and need no Buffer made for it.
 */
export function deltaReplyAt(bytes: Buffer, start: number, end: number): DeltaDiscoveryRequest | undefined {
  replyTags ??= { typeUrl: (fieldId(DELTA_REQUEST, 'type_url') << 3) | LENGTH_DELIMITED, nonce: (fieldId(DELTA_REQUEST, 'response_nonce') << 3) | LENGTH_DELIMITED };
  let typeUrl: string | undefined;
  let nonce: string | undefined;
  let at = start;
  while (at < end) {
    // Both tags are below 128: one byte each.
    const fieldTag = bytes[at++] as number;
    if (fieldTag !== replyTags.typeUrl && fieldTag !== replyTags.nonce) return undefined;
    let length = 0;
    let shift = 0;
    for (;;) {
      if (at >= end || shift > 21) return undefined;
      const byte = bytes[at++] as number;
      length |= (byte & 0x7f) << shift;
      if (byte < 0x80) break;
      shift += 7;
    }
    const fieldEnd = at + length;
    if (fieldEnd > end) return undefined;
    if (fieldTag === replyTags.typeUrl) {
      if (typeUrl !== undefined) return undefined;
      typeUrl = knownTypeUrl(bytes, at, fieldEnd) ?? bytes.toString('utf8', at, fieldEnd);
    } else {
      if (nonce !== undefined) return undefined;
      nonce = bytes.toString('utf8', at, fieldEnd);
    }
    at = fieldEnd;
  }
  if (nonce === undefined || nonce === '') return undefined;
  return { node: undefined, typeUrl: typeUrl ?? '', subscribe: NO_NAMES, unsubscribe: NO_NAMES, initialResourceVersions: NO_VERSIONS, responseNonce: nonce, errorDetail: undefined };
}

function knownTypeUrl(bytes: Uint8Array, start: number, end: number): string | undefined {
  next: for (const known of KNOWN_TYPE_URLS) {
    if (known.bytes.length !== end - start) continue;
    for (let i = 0; i < known.bytes.length; i++) if (known.bytes[i] !== bytes[start + i]) continue next;
    return known.text;
  }
  return undefined;
}

function isFields(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function texts(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

function node(value: unknown): NodeInfo | undefined {
  if (!isFields(value)) return undefined;
  const gateway = metadataText(value['metadata'], GATEWAY_NODE_METADATA);
  const attemptFacts = metadataText(value['metadata'], ATTEMPT_FACTS_NODE_METADATA);
  return {
    id: text(value['id']),
    cluster: text(value['cluster']),
    userAgent: text(value['user_agent_name']),
    ...(gateway !== undefined ? { gateway } : {}),
    ...(attemptFacts !== undefined ? { attemptFacts } : {}),
  };
}

/** A string field of a google.protobuf.Struct as protobufjs decodes it (`fields` → Value). */
function metadataText(struct: unknown, key: string): string | undefined {
  if (!isFields(struct) || !isFields(struct['fields'])) return undefined;
  const value = struct['fields'][key];
  if (!isFields(value)) return undefined;
  // protobufjs' bundled struct.proto names Value's fields in camelCase whatever keepCase says.
  const found = value['string_value'] ?? value['stringValue'];
  return typeof found === 'string' ? found : undefined;
}

function errorDetail(value: unknown): ErrorDetail | undefined {
  if (!isFields(value)) return undefined;
  return { code: typeof value['code'] === 'number' ? value['code'] : 0, message: text(value['message']) };
}

function fieldId(typeName: string, field: string): number {
  const id = messageType(typeName).fields[field]?.id;
  if (id === undefined) throw new Error(`${typeName} has no field ${field}`);
  return id;
}

const LENGTH_DELIMITED = 2;

/** Field tags, read from the loaded protos once rather than hard-coded. */
interface Tags {
  sotwVersion: number;
  sotwResources: number;
  sotwTypeUrl: number;
  sotwNonce: number;
  deltaVersion: number;
  deltaResources: number;
  deltaTypeUrl: number;
  deltaRemoved: number;
  deltaNonce: number;
  resourceName: number;
  resourceVersion: number;
  resourceBody: number;
}

let cachedTags: Tags | undefined;
function tags(): Tags {
  const tag = (typeName: string, field: string): number => (fieldId(typeName, field) << 3) | LENGTH_DELIMITED;
  cachedTags ??= {
    sotwVersion: tag(DISCOVERY_RESPONSE, 'version_info'),
    sotwResources: tag(DISCOVERY_RESPONSE, 'resources'),
    sotwTypeUrl: tag(DISCOVERY_RESPONSE, 'type_url'),
    sotwNonce: tag(DISCOVERY_RESPONSE, 'nonce'),
    deltaVersion: tag(DELTA_RESPONSE, 'system_version_info'),
    deltaResources: tag(DELTA_RESPONSE, 'resources'),
    deltaTypeUrl: tag(DELTA_RESPONSE, 'type_url'),
    deltaRemoved: tag(DELTA_RESPONSE, 'removed_resources'),
    deltaNonce: tag(DELTA_RESPONSE, 'nonce'),
    resourceName: tag(RESOURCE, 'name'),
    resourceVersion: tag(RESOURCE, 'version'),
    resourceBody: tag(RESOURCE, 'resource'),
  };
  return cachedTags;
}

/**
 * A protobuf message held as pieces whose concatenation is its bytes. Pieces are shared between
 * messages and written one after the other, never copied together: a response of 10,000
 * Clusters that differs from the last one in a single Cluster costs one new piece, not 20 MB.
 */
export interface WireMessage {
  readonly pieces: readonly Buffer[];
  readonly byteLength: number;
}

/** A message's bytes in one Buffer (a copy unless it is one piece). */
export function wireBytes(message: WireMessage): Buffer {
  return message.pieces.length === 1 ? (message.pieces[0] as Buffer) : Buffer.concat(message.pieces as Buffer[], message.byteLength);
}

/** What a SotW response carries of a resource: its Any, encoded once. Its identity keys the reuse of pieces. */
export interface WireResource {
  readonly name: string;
  readonly any: Uint8Array;
  /** Offered its Any's bytes as copied into a run: a resource that keeps those instead of its own holds them once. */
  keepIn?(bytes: Uint8Array): void;
}

/**
 * A DiscoveryResponse without its nonce; shareable by every stream that gets this exact set.
 * Fields in field-number order (version_info, resources, type_url, then withNonce's nonce), as
 * protobufjs writes them: the bytes equal its encoding of the same response.
 */
export function sotwResponseBody(typeUrl: string, version: string, resources: readonly WireResource[]): WireMessage {
  const t = tags();
  const head = protobuf.Writer.create().uint32(t.sotwVersion).string(version).finish() as Buffer;
  const tail = protobuf.Writer.create().uint32(t.sotwTypeUrl).string(typeUrl).finish() as Buffer;
  const pieces: Buffer[] = [head];
  let byteLength = head.length + tail.length;
  for (const segment of resourceSegments(resources, t.sotwResources, 'any')) {
    pieces.push(segment);
    byteLength += segment.length;
  }
  pieces.push(tail);
  return { pieces, byteLength };
}

/** A shared response body plus this stream's nonce: a complete DiscoveryResponse. */
export function withNonce(body: WireMessage, nonce: string): WireMessage {
  const nonceField = protobuf.Writer.create().uint32(tags().sotwNonce).string(nonce).finish() as Buffer;
  return { pieces: [...body.pieces, nonceField], byteLength: body.byteLength + nonceField.length };
}

/**
 * Consecutive resource fields copied into one Buffer, kept for as long as its first resource
 * lives and reused by every later response that has the same resources in the same run. A field
 * holds a resource's Any (SotW) or a delta `Resource` wrapping its name, version and Any: both
 * forms are runs, so a delta stream's responses hold each Any once, as SotW's do, instead of a
 * per-resource entry beside a whole-snapshot response. Runs end after a resource whose name
 * hashes to a boundary (content-defined, so an added or removed resource moves no boundary but
 * its own) or at MAX_SEGMENT_BYTES. A resource whose Any is STANDALONE_BYTES or more is a run of
 * its own and its Any is not copied: the bytes before it are a piece, its Any the next (a
 * RouteConfiguration of 10,000 routes is megabytes).
 */
interface Segment {
  readonly tag: number;
  readonly form: FieldForm;
  readonly members: readonly WireResource[];
  readonly pieces: readonly Buffer[];
  readonly byteLength: number;
}

/** What a response's resource field holds: the Any itself (SotW) or a delta Resource around it. */
type FieldForm = 'any' | 'entry';

/** By first resource: the runs it starts, newest first (views of several Gateways that share it each have theirs). */
const segments = new WeakMap<WireResource, Segment[]>();
/** Runs kept per first resource (SotW and delta runs share the limit; a stream speaks one of them). */
const RUNS_PER_RESOURCE = 4;

/**
 * A run ends after one resource in SEGMENT_SPREAD on average, or one in more for small
 * resources, so that a run is about RUN_BYTES whatever the resources' size: every piece is a
 * write per stream, and 6,000 Secrets of 200 bytes were 94 pieces of 12 KiB each.
 */
const SEGMENT_SPREAD = 64;
const MAX_SPREAD = 4096;
const RUN_BYTES = 128 * 1024;
/** A run also ends once this long, so that a change copies at most about this much. */
const MAX_SEGMENT_BYTES = 512 * 1024;
const STANDALONE_BYTES = 64 * 1024;

/** The length of a resource field's content: its Any, or its delta Resource (name, version, Any, each written even when empty). */
function contentLength(resource: WireResource, form: FieldForm): number {
  if (form === 'any') return resource.any.length;
  const t = tags();
  const name = Buffer.byteLength(resource.name, 'utf8');
  const version = Buffer.byteLength(versionOf(resource), 'utf8');
  return fieldLength(t.resourceName, name) + fieldLength(t.resourceVersion, version) + fieldLength(t.resourceBody, resource.any.length);
}

function versionOf(resource: WireResource): string {
  return (resource as DeltaWireResource).version;
}

/** Writes a resource field up to its Any (tag, length and, for a delta Resource, its name and version fields and the Any's tag and length); returns where the Any goes. */
function writeFieldHead(out: Buffer, at: number, tag: number, resource: WireResource, form: FieldForm, content: number): number {
  at = writeVarint(out, at, tag);
  at = writeVarint(out, at, content);
  if (form === 'entry') {
    const t = tags();
    const version = versionOf(resource);
    at = writeVarint(out, at, t.resourceName);
    at = writeVarint(out, at, Buffer.byteLength(resource.name, 'utf8'));
    at += out.write(resource.name, at, 'utf8');
    at = writeVarint(out, at, t.resourceVersion);
    at = writeVarint(out, at, Buffer.byteLength(version, 'utf8'));
    at += out.write(version, at, 'utf8');
    at = writeVarint(out, at, t.resourceBody);
    at = writeVarint(out, at, resource.any.length);
  }
  return at;
}

function resourceSegments(resources: readonly WireResource[], tag: number, form: FieldForm): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  while (start < resources.length) {
    let end = start;
    let bytes = 0;
    for (;;) {
      const resource = resources[end] as WireResource;
      const standalone = resource.any.length >= STANDALONE_BYTES;
      if (standalone && end > start) break;
      end++;
      const field = fieldLength(tag, contentLength(resource, form));
      bytes += field;
      if (standalone || end === resources.length || bytes >= MAX_SEGMENT_BYTES || endsRun(resource.name, field)) break;
    }
    for (const piece of segmentOf(resources, start, end, bytes, tag, form).pieces) out.push(piece);
    start = end;
  }
  return out;
}

function segmentOf(resources: readonly WireResource[], start: number, end: number, bytes: number, tag: number, form: FieldForm): Segment {
  const first = resources[start] as WireResource;
  const known = segments.get(first) ?? [];
  for (const candidate of known) {
    if (candidate.tag === tag && candidate.form === form && candidate.byteLength === bytes && sameMembers(candidate.members, resources, start, end)) return candidate;
  }
  let segment: Segment;
  if (end - start === 1 && first.any.length >= STANDALONE_BYTES) {
    const prefix = Buffer.allocUnsafeSlow(bytes - first.any.length);
    writeFieldHead(prefix, 0, tag, first, form, contentLength(first, form));
    segment = { tag, form, members: [first], pieces: [prefix, Buffer.from(first.any.buffer, first.any.byteOffset, first.any.byteLength)], byteLength: bytes };
  } else {
    // Outside Node's shared pool: a kept segment must not pin the pool's other, short-lived slices.
    const out = Buffer.allocUnsafeSlow(bytes);
    let at = 0;
    for (let i = start; i < end; i++) {
      const resource = resources[i] as WireResource;
      const any = resource.any;
      at = writeFieldHead(out, at, tag, resource, form, contentLength(resource, form));
      out.set(any, at);
      resource.keepIn?.(out.subarray(at, at + any.length));
      at += any.length;
    }
    segment = { tag, form, members: resources.slice(start, end), pieces: [out], byteLength: bytes };
  }
  // The run this one replaces (same form and length, same last name: an edit inside it) is let go; the runs of other views stay.
  const lastName = segment.members[segment.members.length - 1]?.name;
  const others = known.filter((run) => run.form !== form || run.members.length !== segment.members.length || run.members[run.members.length - 1]?.name !== lastName);
  segments.set(first, [segment, ...others.slice(0, RUNS_PER_RESOURCE - 1)]);
  return segment;
}

function sameMembers(members: readonly WireResource[], resources: readonly WireResource[], start: number, end: number): boolean {
  if (members.length !== end - start) return false;
  for (let i = start + 1; i < end; i++) if (members[i - start] !== resources[i]) return false;
  return true;
}

/** The size of a length-delimited field of `length` bytes. */
function fieldLength(tag: number, length: number): number {
  return varintLength(tag) + varintLength(length) + length;
}

function varintLength(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value >>>= 7;
    n++;
  }
  return n;
}

function writeVarint(out: Buffer, at: number, value: number): number {
  while (value >= 0x80) {
    out[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[at++] = value;
  return at;
}

/**
 * FNV-1a of the name: whether a run of resources ends after this one, a field of `bytes`. The
 * odds follow from the resource alone (its name and size), so an edit elsewhere moves no boundary.
 */
function endsRun(name: string, bytes: number): boolean {
  let spread = SEGMENT_SPREAD;
  while (spread < MAX_SPREAD && spread * 2 * bytes <= RUN_BYTES) spread *= 2;
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193);
  return (hash >>> 0) % spread === 0;
}

/** What a delta response carries of a resource: its name, its version and its Any. */
export interface DeltaWireResource extends WireResource {
  readonly version: string;
}

export interface DeltaResponse {
  readonly typeUrl: string;
  readonly systemVersion: string;
  readonly resources: readonly DeltaWireResource[];
  readonly removed: readonly string[];
  readonly nonce: string;
}

/**
 * A DeltaDiscoveryResponse as pieces: its `Resource` entries are runs shared with every other
 * response that sends the same resources in the same order (see Segment), the rest a head and a
 * tail. The response's fields in field-number order, as protobufjs writes them; a Resource's
 * fields as Switchyard always wrote them (name, version, resource: any order is valid protobuf).
 */
export function deltaResponse(response: DeltaResponse): WireMessage {
  const t = tags();
  const head = protobuf.Writer.create().uint32(t.deltaVersion).string(response.systemVersion).finish() as Buffer;
  const tailWriter = protobuf.Writer.create().uint32(t.deltaTypeUrl).string(response.typeUrl);
  for (const name of response.removed) tailWriter.uint32(t.deltaRemoved).string(name);
  const tail = tailWriter.uint32(t.deltaNonce).string(response.nonce).finish() as Buffer;
  const pieces: Buffer[] = [head];
  let byteLength = head.length + tail.length;
  for (const segment of resourceSegments(response.resources, t.deltaResources, 'entry')) {
    pieces.push(segment);
    byteLength += segment.length;
  }
  pieces.push(tail);
  return { pieces, byteLength };
}
