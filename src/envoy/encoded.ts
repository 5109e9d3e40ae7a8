import { hash as digestOf } from 'node:crypto';
import { decodeResource, encodeResourceAny, keepLastEncoded } from './proto.js';
import { resourceName, type EnvoyResource, type JsonValue, type TypeUrlValue } from './resources.js';

/**
 * A resource held as what is served, its encoded bytes, instead of its proto3 JSON: at 10,000
 * Backends the JSON of the Clusters, ClusterLoadAssignments and Secrets is 38 MiB of heap kept
 * only so that an edit could hand the same object to the cache again; the bytes are kept anyway.
 */
export interface EncodedForm {
  readonly typeUrl: string;
  readonly name: string;
  /** bytesVersion of `any`: the cache's version of the resource. */
  readonly version: string;
  /** The resource wrapped in a google.protobuf.Any (encodeResourceAny's bytes, kept). */
  readonly any: Uint8Array;
}

const NO_FIELDS: Readonly<Record<string, JsonValue>> = Object.freeze({});

/**
 * The top-level fields of `resource` that cost nothing to keep: scalars, and frozen parts that
 * every resource built alike shares (deepFrozen). The xDS server reads a Cluster's `type` and
 * `eds_cluster_config` on every CDS push (subscription.ts); decoding each Cluster for that cost
 * 14% more CPU to serve 10,000 Backends the first time.
 */
function sharedFields(resource: EnvoyResource): Readonly<Record<string, JsonValue>> {
  let fields: Record<string, JsonValue> | undefined;
  for (const key of Object.keys(resource)) {
    if (key === '@type' || key === 'name' || key === 'cluster_name') continue;
    const value = resource[key] as JsonValue;
    if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) continue;
    (fields ??= {})[key] = value;
  }
  if (fields === undefined) return NO_FIELDS;
  // Resources built alike in a row (every AI Backend's Cluster) have equal fields: they share one
  // object, where each kept its own and a property array beside it (1 MiB at 10,000 Backends).
  if (lastFields !== undefined && sameFields(fields, lastFields)) return lastFields;
  lastFields = fields;
  return fields;
}

/** The fields sharedFields last kept: never changed once returned (the stand-ins only read them). */
let lastFields: Readonly<Record<string, JsonValue>> | undefined;

function sameFields(a: Readonly<Record<string, JsonValue>>, b: Readonly<Record<string, JsonValue>>): boolean {
  const keys = Object.keys(a);
  const other = Object.keys(b);
  if (keys.length !== other.length) return false;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    if (key !== other[i] || a[key] !== b[key]) return false;
  }
  return true;
}

const ENCODED = Symbol('switchyard.encoded');

/** The version of a resource's encoded bytes: equal content gives an equal version, across restarts too. */
export function bytesVersion(any: Uint8Array): string {
  // The first 12 bytes are the first 16 characters of the whole digest's base64url; encoding only
  // them keeps no 43-character string alive behind a 16-character slice of it (one per resource).
  return digestOf('sha256', any, 'buffer').toString('base64url', 0, 12);
}

/**
 * One resource encoded once: its name, version and where its bytes are. It is the Envoy stage's
 * stand-in (read through a Proxy as the JSON it was built from) and the cache's record of it at
 * once, one object where a stand-in, its form, a Buffer view and the cache's entry were four
 * (about 230 bytes of wrapper around a 130-byte credential Secret, 80,000 resources at 10,000
 * Backends). The bytes are a range of a shared ArrayBuffer (a slab of kept encodes, or a SotW
 * response's run), viewed only once a response is built with them.
 */
export class EncodedResource implements EncodedForm {
  /** The cache pass that last met this record (SnapshotCache: duplicate and removal checks). */
  pass = 0;
  /** What the cache hands back as the resource: this record's own stand-in, or the newest equal JSON (follow). */
  resource: EnvoyResource;
  private store: ArrayBufferLike;
  private start: number;
  /**
   * Its type, its fields read without decoding, and the bytes before and after its own that the
   * records of its type share (Frame); a frame without them (its `whole`) when its own are all.
   */
  private frame: Frame;
  /**
   * A view of the bytes whole, made when first asked for (building a response) or handed over
   * with them (keepIn): the Envoy stage and the cache ask for none, so a configuration that no
   * client was sent yet keeps no view (104 bytes each), and a push makes one per resource, once.
   */
  private view: Uint8Array | undefined;
  /** The size of `any`. */
  readonly byteLength: number;

  /**
   * `bytes` are kept by reference (a range of their ArrayBuffer), between the parts of `frame`
   * when given (its type and fields must be these). Without `resource`, the record stands in for
   * the resource it was encoded from (encodedStandIn).
   */
  constructor(
    typeUrl: TypeUrlValue,
    readonly name: string,
    readonly version: string,
    bytes: Uint8Array,
    resource?: EnvoyResource,
    /** The top-level fields read without decoding (sharedFields). */
    fields: Readonly<Record<string, JsonValue>> = NO_FIELDS,
    frame?: Frame,
  ) {
    this.store = bytes.buffer;
    this.start = bytes.byteOffset;
    this.frame = frame ?? wholeFrame(typeUrl, fields);
    this.byteLength = bytes.byteLength + this.frame.byteLength;
    this.resource = resource ?? (new Proxy(this, READ_ONLY_JSON) as unknown as EnvoyResource);
  }

  get typeUrl(): TypeUrlValue {
    return this.frame.typeUrl;
  }

  /** The top-level fields read without decoding (sharedFields). */
  get fields(): Readonly<Record<string, JsonValue>> {
    return this.frame.fields;
  }

  /**
   * The bytes, whole. Held in parts until then (a frame's and its own), they are copied together
   * once: the first response that carries them holds them in its run from then on (keepIn) and
   * the copy goes.
   */
  get any(): Uint8Array {
    if (this.view !== undefined) return this.view;
    const frame = this.frame;
    const own = Buffer.from(this.store, this.start, this.byteLength - frame.byteLength);
    if (frame.byteLength === 0) return (this.view = own);
    const whole = Buffer.allocUnsafe(this.byteLength);
    whole.set(frame.head, 0);
    whole.set(own, frame.head.byteLength);
    if (frame.tail !== undefined) whole.set(frame.tail, frame.head.byteLength + own.byteLength);
    this.store = whole.buffer;
    this.start = whole.byteOffset;
    this.frame = frame.whole;
    return (this.view = whole);
  }

  /** True when `bytes` are this record's very bytes (same memory), not only equal ones. */
  holds(bytes: Uint8Array): boolean {
    return this.frame.byteLength === 0 && bytes.buffer === this.store && bytes.byteOffset === this.start && bytes.byteLength === this.byteLength;
  }

  /**
   * The same bytes, copied into a run of a SotW response (wire.ts): kept there, this record's own
   * copy is let go, so that a served resource's bytes are held once, not twice (20 MB at 10,000
   * Backends); the stand-in it follows lets go of its copy too.
   */
  keepIn(bytes: Uint8Array): void {
    if (bytes.byteLength !== this.byteLength) return;
    this.store = bytes.buffer;
    this.start = bytes.byteOffset;
    this.frame = this.frame.whole;
    this.view = bytes;
    const other = encodedForm(this.resource);
    if (other !== undefined && other !== this) other.share(this);
  }

  /**
   * This record is no longer served (replaced or removed), but older layers of the snapshot cache
   * (withChanges) may still hold it until they flatten, up to hundreds of edits later. Its bytes,
   * a range of a SotW response's run (keepIn), would pin that whole run, about 128 KiB, for one
   * resource: one more run per edit (7 MB after 30 edits at 1,000 Backends; issue 9). It keeps a
   * copy of its own bytes instead, outside Node's shared pool for the same reason.
   */
  retire(): void {
    // A record never served holds its own bytes between its frame's parts, in a slab of kept
    // encodes: it keeps a copy of those, and its frame.
    const length = this.byteLength - this.frame.byteLength;
    if (this.store.byteLength === length) return;
    const own = Buffer.allocUnsafeSlow(length);
    own.set(new Uint8Array(this.store, this.start, length));
    this.store = own.buffer;
    this.start = 0;
    if (this.frame.byteLength === 0) this.view = own;
    const other = encodedForm(this.resource);
    if (other !== undefined && other !== this) other.share(this);
  }

  /** A rebuilt resource equal to this one: handed back instead (the Envoy stage hands it over next time), holding these bytes. */
  follow(resource: EnvoyResource): void {
    this.resource = resource;
    const other = encodedForm(resource);
    if (other !== undefined && other !== this) other.share(this);
  }

  /**
   * Holds the bytes `from` holds, equal to its own, instead of its own copy: the cache keeps one
   * copy of a served resource's bytes, and a stand-in the Envoy stage keeps must not pin a second.
   */
  private share(from: EncodedResource): void {
    if (from.byteLength !== this.byteLength) return;
    this.store = from.store;
    this.start = from.start;
    this.frame = from.frame;
    this.view = from.view;
  }
}

/**
 * What the records of one type built alike hold once for all of them: the type, the fields read
 * without decoding (sharedFields), and the parts of their bytes they share: the Any's type_url
 * field, which starts every resource of a type (70 of a credential Secret's 131 bytes: 4 MiB at
 * 10,000 Backends' 60,000 credentials), and the ending resources built alike share (sharedTail),
 * if any. One object per type, fields and tail, shared by the records: a type and fields of
 * their own cost each record 16 bytes (1.2 MiB at 10,000 Backends' 80,000 resources).
 */
interface Frame {
  readonly typeUrl: TypeUrlValue;
  readonly fields: Readonly<Record<string, JsonValue>>;
  readonly head: Uint8Array;
  readonly tail: Uint8Array | undefined;
  /** Of head and tail together. */
  readonly byteLength: number;
  /** The frame of the same type and fields without head or tail: a record's once its own bytes are all. */
  readonly whole: Frame;
}

/** The frames of one type and fields: without head or tail, with the type_url head alone, with a tail (and the head, or none). */
interface FrameFamily {
  readonly whole: Frame;
  alone: Frame | undefined;
  readonly withTail: WeakMap<Uint8Array, Frame>;
  readonly tailOnly: WeakMap<Uint8Array, Frame>;
}

/** Per type: its type_url field's bytes, and the frame families by fields. */
const framesByType = new Map<string, { head: Uint8Array | undefined; families: WeakMap<object, FrameFamily> }>();

function familyOf(typeUrl: TypeUrlValue, fields: Readonly<Record<string, JsonValue>>): FrameFamily {
  let known = framesByType.get(typeUrl);
  if (known === undefined) framesByType.set(typeUrl, (known = { head: undefined, families: new WeakMap() }));
  let family = known.families.get(fields);
  if (family === undefined) {
    const whole = { typeUrl, fields, head: NO_BYTES, tail: undefined, byteLength: 0 } as { -readonly [K in keyof Frame]: Frame[K] };
    whole.whole = whole;
    family = { whole, alone: undefined, withTail: new WeakMap(), tailOnly: new WeakMap() };
    known.families.set(fields, family);
  }
  return family;
}

/** The frame of a record of `typeUrl` and `fields` with no head or tail (its own bytes are all). */
function wholeFrame(typeUrl: TypeUrlValue, fields: Readonly<Record<string, JsonValue>>): Frame {
  return familyOf(typeUrl, fields).whole;
}

/**
 * The length of the type_url field `any` starts with (encodeResourceAny writes it first: tag 1,
 * length, the URL), or 0 when it does not start so.
 */
function typeUrlFieldLength(any: Uint8Array): number {
  if (any[0] !== 0x0a) return 0;
  let length = 0;
  let at = 1;
  for (let shift = 0; at < any.byteLength && shift < 35; shift += 7) {
    const byte = any[at++] as number;
    length += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return at + length <= any.byteLength ? at + length : 0;
  }
  return 0;
}

/**
 * The frame of a resource of `typeUrl` and `fields` encoded as `scratch`, ending in `tail` (or
 * none): its head is the type_url field when `scratch` starts with the same bytes as every
 * resource of its type before it and its own bytes lie between that head and the tail; without
 * either part, the family's whole frame.
 */
function frameOf(typeUrl: TypeUrlValue, fields: Readonly<Record<string, JsonValue>>, scratch: Uint8Array, tail: Uint8Array | undefined): Frame {
  const family = familyOf(typeUrl, fields);
  const headLength = typeUrlFieldLength(scratch);
  const known = framesByType.get(typeUrl);
  if (known !== undefined && known.head === undefined && headLength > 0) {
    const head = Buffer.allocUnsafeSlow(headLength);
    head.set(scratch.subarray(0, headLength));
    known.head = head;
  }
  const head = known?.head;
  const fits =
    head !== undefined &&
    headLength === head.byteLength &&
    headLength + (tail?.byteLength ?? 0) <= scratch.byteLength &&
    Buffer.compare(head, scratch.subarray(0, headLength)) === 0;
  if (!fits || head === undefined) {
    if (tail === undefined) return family.whole;
    let frame = family.tailOnly.get(tail);
    if (frame === undefined) family.tailOnly.set(tail, (frame = { typeUrl, fields, head: NO_BYTES, tail, byteLength: tail.byteLength, whole: family.whole }));
    return frame;
  }
  if (tail === undefined) return (family.alone ??= { typeUrl, fields, head, tail: undefined, byteLength: head.byteLength, whole: family.whole });
  let frame = family.withTail.get(tail);
  if (frame === undefined) family.withTail.set(tail, (frame = { typeUrl, fields, head, tail, byteLength: head.byteLength + tail.byteLength, whole: family.whole }));
  return frame;
}

const NO_BYTES = new Uint8Array(0);

/** A tail is shared when at least this long: shorter common endings are not worth a lookup. */
const MIN_TAIL_BYTES = 512;
const TAILS_PER_TYPE = 4;

/** Per type: the tails stand-ins share (most recently met first), and the own bytes of the last stand-in kept without a tail. */
const tailsByType = new Map<string, { tails: Uint8Array[]; lastWhole: Uint8Array | undefined }>();

function endsWith(bytes: Uint8Array, tail: Uint8Array): boolean {
  return bytes.byteLength >= tail.byteLength && Buffer.compare(tail, bytes.subarray(bytes.byteLength - tail.byteLength)) === 0;
}

function commonSuffix(a: Uint8Array, b: Uint8Array): number {
  const most = Math.min(a.byteLength, b.byteLength);
  let n = 0;
  while (n < most && a[a.byteLength - 1 - n] === b[b.byteLength - 1 - n]) n++;
  return n;
}

/**
 * The ending `scratch` shares with resources of its type encoded before, held once for all of
 * them: every AI Backend's Cluster ends in the same 1.8 KiB (its upstream ext_proc filter and
 * what follows), 90% of its bytes. Found by comparing endings with the tails met before and the
 * last resource kept without one; a tail met again with a longer ending than the rest share (a name
 * ending in the same character) gives way to the ending they all share.
 */
function sharedTail(typeUrl: string, scratch: Uint8Array): Uint8Array | undefined {
  let known = tailsByType.get(typeUrl);
  if (known === undefined) tailsByType.set(typeUrl, (known = { tails: [], lastWhole: undefined }));
  const { tails } = known;
  for (let i = 0; i < tails.length; i++) {
    const tail = tails[i] as Uint8Array;
    if (!endsWith(scratch, tail)) continue;
    if (i > 0) {
      tails.splice(i, 1);
      tails.unshift(tail);
    }
    return tail;
  }
  for (const other of known.lastWhole === undefined ? tails : [...tails, known.lastWhole]) {
    const length = commonSuffix(scratch, other);
    if (length < MIN_TAIL_BYTES) continue;
    const tail = Buffer.allocUnsafeSlow(length);
    tail.set(scratch.subarray(scratch.byteLength - length));
    tails.unshift(tail);
    if (tails.length > TAILS_PER_TYPE) tails.length = TAILS_PER_TYPE;
    return tail;
  }
  return undefined;
}

function keptWhole(typeUrl: string, bytes: Uint8Array): Uint8Array {
  const known = tailsByType.get(typeUrl);
  if (known !== undefined) known.lastWhole = bytes;
  return bytes;
}

/** The encoded form behind `resource` when it is a stand-in (encodedStandIn), else undefined. */
export function encodedForm(resource: EnvoyResource): EncodedResource | undefined {
  return (resource as { [ENCODED]?: EncodedResource })[ENCODED];
}

/**
 * `resource`, encoded once, as a stand-in that keeps only its bytes: it reads as the same proto3
 * JSON (decoded when something reads beyond its type and name, which serving never does: tests,
 * and a quarantined resource's content), and the cache takes its bytes and version as they are.
 * Throws as encodeResourceAny does when the resource cannot be encoded.
 */
export function encodedStandIn(resource: EnvoyResource): EnvoyResource {
  const scratch = encodeResourceAny(resource, false);
  const version = bytesVersion(scratch);
  // The cache checks every resource's @type against the list it is in.
  const typeUrl = resource['@type'] as TypeUrlValue;
  const tail = scratch.byteLength >= MIN_TAIL_BYTES ? sharedTail(typeUrl, scratch) : undefined;
  const fields = sharedFields(resource);
  const frame = frameOf(typeUrl, fields, scratch, tail);
  const end = scratch.byteLength - (tail?.byteLength ?? 0);
  const own = keepLastEncoded(end, frame.head.byteLength);
  if (tail === undefined) keptWhole(typeUrl, own);
  return new EncodedResource(typeUrl, resourceName(resource), version, own, undefined, fields, frame).resource;
}

/** The last stand-in decoded and its JSON: a spread or comparison reads every key of one resource in a row. */
let lastDecoded: { form: EncodedForm; json: EnvoyResource } | undefined;

function decoded(form: EncodedForm): EnvoyResource {
  if (lastDecoded?.form !== form) lastDecoded = { form, json: decodeResource(form.typeUrl, anyValue(form.any)) };
  return lastDecoded.json;
}

/** The name field of the message (ClusterLoadAssignment: cluster_name), answered without decoding. */
function nameKey(form: EncodedForm): string {
  return form.typeUrl.endsWith('.ClusterLoadAssignment') ? 'cluster_name' : 'name';
}

/** The proxy target is the form; the JSON it reads as is decoded, never stored on it. */
const READ_ONLY_JSON: ProxyHandler<EncodedResource> = {
  get(form, key) {
    if (key === ENCODED) return form;
    if (key === '@type') return form.typeUrl;
    if (typeof key !== 'string') return undefined;
    if (key === nameKey(form)) return form.name;
    // resourceName asks for the other name field first: no resource we serve has both.
    if (key === 'name' || key === 'cluster_name') return undefined;
    if (Object.hasOwn(form.fields, key)) return form.fields[key];
    return decoded(form)[key];
  },
  has(form, key) {
    return key === ENCODED || (typeof key === 'string' && Object.hasOwn(decoded(form), key));
  },
  ownKeys(form) {
    return Object.keys(decoded(form));
  },
  getOwnPropertyDescriptor(form, key) {
    if (typeof key !== 'string') return undefined;
    const json = decoded(form);
    if (!Object.hasOwn(json, key)) return undefined;
    return { value: json[key], writable: false, enumerable: true, configurable: true };
  },
  set() {
    return false;
  },
  defineProperty() {
    return false;
  },
  deleteProperty() {
    return false;
  },
};

/** The `value` of a google.protobuf.Any as encodeResourceAny writes it: type_url (field 1), then value (field 2). */
function anyValue(any: Uint8Array): Uint8Array {
  let at = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = any[at++] as number;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  if (any[at++] !== 0x0a) throw new Error('encoded resource: an Any must start with its type_url');
  const typeUrlLength = varint();
  at += typeUrlLength;
  if (at === any.length) return any.subarray(at);
  if (any[at++] !== 0x12) throw new Error('encoded resource: an Any must hold its value after its type_url');
  const length = varint();
  return any.subarray(at, at + length);
}
