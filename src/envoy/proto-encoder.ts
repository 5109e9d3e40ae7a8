import protobuf from 'protobufjs';
import { ProtoWriter } from './proto-writer.js';
import type { JsonObject, JsonValue } from './resources.js';

/**
 * Strict proto3 JSON → protobuf binary, compiled once per message type.
 *
 * The first time a message type is met, its fields become a table (JSON name → field number,
 * tag, value kind, oneof, presence); after that, encoding a value is a walk over the JSON that
 * looks each key up once and writes straight into one reused buffer (proto-writer.ts), with no
 * reflection and no intermediate objects. Validation is as strict as proto3 JSON: an unknown
 * field, a wrong value type, two members of one oneof or an unknown `@type` throw an
 * EncodeError naming the JSON path. The bytes are those protobufjs' own encoder writes for the
 * same message (test/unit/proto-encoder.test.ts holds it to that).
 */

export class EncodeError extends Error {
  constructor(jsonPath: string, problem: string) {
    super(`${jsonPath}: ${problem}`);
    this.name = 'EncodeError';
  }
}

/**
 * A problem found while encoding. Its JSON path is built only when it is thrown: each level
 * adds its segment on the way out, so the happy path never builds path strings.
 */
class Problem extends Error {
  /** Path segments, innermost first. */
  readonly segments: string[] = [];
  constructor(readonly problem: string) {
    super(problem);
  }
}

function at(err: unknown, segment: string): unknown {
  if (err instanceof Problem) err.segments.push(segment);
  return err;
}

/** The wrapper types, written in proto3 JSON as their bare value. */
export const WRAPPER_TYPES: ReadonlySet<string> = new Set(
  ['DoubleValue', 'FloatValue', 'Int64Value', 'UInt64Value', 'Int32Value', 'UInt32Value', 'BoolValue', 'StringValue', 'BytesValue'].map(
    (name) => `.google.protobuf.${name}`,
  ),
);

export const INT64_TYPES: ReadonlySet<string> = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);
const UNSIGNED_64 = new Set(['uint64', 'fixed64']);
const MAX_UINT64 = 2n ** 64n - 1n;
const MIN_INT64 = -(2n ** 63n);
const MAX_INT64 = 2n ** 63n - 1n;
const INT_RANGES: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  sint32: [-(2 ** 31), 2 ** 31 - 1],
  sfixed32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
  fixed32: [0, 2 ** 32 - 1],
};

/** Wire types of the scalar types (protobuf encoding spec, "Message Structure"). */
const WIRE_TYPE: Record<string, number> = {
  double: 1, float: 5, int32: 0, uint32: 0, sint32: 0, fixed32: 5, sfixed32: 5,
  int64: 0, uint64: 0, sint64: 0, fixed64: 1, sfixed64: 1, bool: 0, string: 2, bytes: 2,
};
const LENGTH_DELIMITED = 2;
const START_GROUP = 3;
const END_GROUP = 4;
/** protobufjs' (and protoc's) recursion limit: deeper messages are refused, by Envoy too. */
const MAX_DEPTH = 100;

/** The message types proto3 JSON writes in a form of their own. */
type Special = 'any' | 'duration' | 'timestamp' | 'struct' | 'value' | 'list' | 'fieldMask' | 'wrapper';

const SPECIAL: Record<string, Special> = {
  '.google.protobuf.Any': 'any',
  '.google.protobuf.Duration': 'duration',
  '.google.protobuf.Timestamp': 'timestamp',
  '.google.protobuf.Struct': 'struct',
  '.google.protobuf.Value': 'value',
  '.google.protobuf.ListValue': 'list',
  '.google.protobuf.FieldMask': 'fieldMask',
};

interface MessagePlan {
  /** Full name without the leading dot, for error messages. */
  readonly name: string;
  /** Values of this type may be pieces (reusePieces): looked up before they are encoded. */
  piecesOf: boolean;
  /** Values of this type may be encoded once (encodeOnce): looked up before they are encoded. */
  onceOf: boolean;
  readonly special: Special | undefined;
  /** By JSON name (the .proto field name: the root is loaded with keepCase). */
  readonly fields: ReadonlyMap<string, FieldPlan>;
}

interface FieldPlan {
  readonly name: string;
  readonly id: number;
  /** Tag of one value (one element when repeated, one entry when a map). */
  readonly tag: number;
  readonly shape: 'single' | 'repeated' | 'packed' | 'map';
  /** A scalar type name ('uint32', 'string'...), 'enum' or 'message'. */
  readonly kind: string;
  /** Written even at its default: oneof members and messages (proto3 presence). */
  readonly presence: boolean;
  /** google.protobuf.Value and NullValue take JSON null as a value; other fields skip it. */
  readonly nullable: boolean;
  /** Its oneof's bit in a per-message mask (1 << index), or 0. */
  readonly oneof: number;
  readonly oneofName: string;
  /** Group encoding (proto2 groups, editions' DELIMITED): start and end tags instead of a length. */
  readonly delimited: boolean;
  readonly messageType: protobuf.Type | undefined;
  readonly enumType: protobuf.Enum | undefined;
  readonly mapKeyType: string;
  /** The plan of the field's message type, compiled on first use (types may be recursive). */
  plan: MessagePlan | undefined;
}

export class ProtoJsonEncoder {
  private readonly writer = new ProtoWriter();
  private readonly plans = new Map<protobuf.Type, MessagePlan>();
  private readonly byName = new Map<string, MessagePlan>();
  private readonly byTypeUrl = new Map<string, MessagePlan>();
  private readonly enumValues = new Map<protobuf.Enum, ReadonlyMap<string, number>>();
  private wellKnownPlans: WellKnownPlans | undefined;
  private readonly durations = new Map<string, readonly [seconds: number, nanos: number]>();
  /** Pieces (reusePieces) and, once kept, their bytes: a view of the message they were last kept in. */
  private readonly pieces = new WeakMap<object, Uint8Array | null>();
  /** Full names (no leading dot) of the types pieces were declared of. */
  private readonly pieceTypes = new Set<string>();
  /** Values declared to encodeOnce: null until first encoded, then their body's bytes and the depth they were written at. */
  private readonly once = new WeakMap<object, { plan: MessagePlan; bytes: Uint8Array; depth: number } | null>();
  /** Full names (no leading dot) of the types encodeOnce was told values of. */
  private readonly onceTypes = new Set<string>();

  /** `lookup` resolves a full message type name or throws (proto.ts' messageType). */
  constructor(private readonly lookup: (typeName: string) => protobuf.Type) {}

  /** Encodes message `typeName` from `json`; `jsonPath` names the JSON in errors. */
  encodeMessage(typeName: string, json: JsonObject, jsonPath: string): Buffer {
    return this.encode(this.planNamed(typeName), json, jsonPath, undefined);
  }

  /**
   * Encodes a resource: the message its `@type` names, from its other keys. `rootPath` names it
   * in errors and is only called when there is one.
   */
  encodeResource(resource: JsonObject & { '@type': string }, rootPath: () => string): Buffer {
    return this.encode(this.planOfUrl(resource['@type']), resource, rootPath, '@type');
  }

  /**
   * A resource wrapped in a google.protobuf.Any ({type_url: its @type, value: its bytes}, as
   * protobufjs encodes that Any), written in one pass with no body copied in between. `kept`:
   * the bytes are kept while the resource is served (ProtoWriter.finishKept); otherwise they
   * are the writer's own, valid only until the next encode (to hash them, say).
   */
  encodeResourceAny(resource: JsonObject & { '@type': string }, rootPath: () => string, kept: boolean): Uint8Array {
    const plan = this.planOfUrl(resource['@type']);
    const any = this.wellKnown().any;
    const w = this.writer;
    w.reset();
    try {
      w.varint32(this.wkt(any, 'type_url').tag);
      w.string(resource['@type']);
      w.varint32(this.wkt(any, 'value').tag);
      const length = w.beginLength();
      this.writeTop(plan, resource, '@type');
      w.endLength(length);
    } catch (err) {
      throw this.located(err, rootPath);
    }
    return kept ? this.keptPieces(w.finishKept(), undefined) : w.written();
  }

  /**
   * Declares `values` (message values of type `typeName`, never changed once built) pieces: the
   * first kept encode of each (encodeResourceAny kept, keepLast) keeps where its bytes are in
   * that message, and every later encode that meets the same object writes them as they are. A
   * large resource assembled mostly from pieces met before (the route entries of a
   * RouteConfiguration) then costs a copy of each, not an encode; and its bytes are held once,
   * as the message kept, not again as pieces (4.6 MiB at 10,000 routes).
   */
  reusePieces(typeName: string, values: readonly object[]): void {
    if (!this.pieceTypes.has(typeName)) {
      // By name, without loading the type: the .proto files load on the first encode.
      this.pieceTypes.add(typeName);
      for (const plan of this.plans.values()) if (plan.name === typeName) plan.piecesOf = true;
    }
    for (const v of values) if (!this.pieces.has(v)) this.pieces.set(v, null);
  }

  /**
   * Declares `values` (message values of type `typeName`, deep-frozen, and shared by many
   * resources: the upstream filters of every AI Cluster) encoded once: the first encode that meets
   * one keeps a copy of its body's bytes, and every later one writes that copy. Unlike pieces,
   * the bytes are the values' own (a few hundred bytes each, for values that are few), so they
   * are reused whether or not the message around them is kept.
   */
  encodeOnce(typeName: string, values: readonly object[]): void {
    if (!this.onceTypes.has(typeName)) {
      this.onceTypes.add(typeName);
      for (const plan of this.plans.values()) if (plan.name === typeName) plan.onceOf = true;
    }
    for (const v of values) {
      // Frozen all the way down, or its bytes could go stale when a part of it is edited in place.
      if (!isDeepFrozen(v)) throw new Error(`encodeOnce(${typeName}): a value is not deep-frozen`);
      if (!this.once.has(v)) this.once.set(v, null);
    }
  }

  /** The bytes a piece is written from (a view of the message it was last kept in), if it was kept. */
  pieceBytes(value: object): Uint8Array | undefined {
    return this.pieces.get(value) ?? undefined;
  }

  /**
   * The bytes of the last encode from `start` up to `end` (all of them by default), copied to
   * kept memory (ProtoWriter.finishKept).
   */
  keepLast(end?: number, start = 0): Uint8Array {
    return this.keptPieces(this.writer.finishKept(end, start), end, start);
  }

  /**
   * The last encode's bytes are held as `bytes()` (the same bytes, kept elsewhere: a served
   * message equal to the one just encoded to compare): its pieces are read from there. Asked
   * for only when the encode wrote pieces.
   */
  keepPiecesIn(bytes: () => Uint8Array): void {
    if (this.writer.trackedCount === 0) return;
    const kept = bytes();
    this.keptPieces(kept, kept.byteLength);
  }

  /**
   * `kept`, the bytes of the last encode (up to `length`), kept: every piece written in it (new,
   * or copied from a message kept before) is from now on a view of its range there, so that the
   * pieces hold no bytes of their own and no older message stays alive for them.
   */
  private keptPieces<T extends Uint8Array>(kept: T, length: number | undefined, from = 0): T {
    if (this.writer.trackedCount === 0) return kept;
    const end = length ?? from + kept.byteLength;
    const whole = Buffer.from(kept.buffer, kept.byteOffset, kept.byteLength);
    this.writer.trackedRanges((owner, start, bytes) => {
      if (start >= from && start + bytes <= end) this.pieces.set(owner, whole.subarray(start - from, start - from + bytes));
    });
    // Each encode is kept once.
    this.writer.untrack();
    return kept;
  }

  private encode(plan: MessagePlan, json: JsonObject, rootPath: string | (() => string), skipKey: string | undefined): Buffer {
    const w = this.writer;
    w.reset();
    try {
      this.writeTop(plan, json, skipKey);
    } catch (err) {
      throw this.located(err, rootPath);
    }
    return w.finish();
  }

  private writeTop(plan: MessagePlan, json: JsonObject, skipKey: string | undefined): void {
    if (plan.special === undefined) {
      this.writeFields(plan, json, skipKey, 0);
    } else {
      // A special type at the top (never an Envoy resource): its JSON form without the skipped key.
      const rest: JsonObject = {};
      for (const key of Object.keys(json)) if (key !== skipKey) rest[key] = json[key] as JsonValue;
      this.writeBody(plan, rest, 0);
    }
  }

  private located(err: unknown, rootPath: string | (() => string)): unknown {
    if (!(err instanceof Problem)) return err;
    const root = typeof rootPath === 'string' ? rootPath : rootPath();
    return new EncodeError(root + err.segments.reverse().join(''), err.problem);
  }

  // -- plans -----------------------------------------------------------------------------------

  private planNamed(typeName: string): MessagePlan {
    let plan = this.byName.get(typeName);
    if (plan === undefined) {
      plan = this.planOf(this.lookup(typeName));
      this.byName.set(typeName, plan);
    }
    return plan;
  }

  /** The plan of `type.googleapis.com/<message>`; throws lookup's error for a type not loaded. */
  private planOfUrl(typeUrl: string): MessagePlan {
    let plan = this.byTypeUrl.get(typeUrl);
    if (plan === undefined) {
      plan = this.planOf(this.lookup(typeUrl.slice(typeUrl.lastIndexOf('/') + 1)));
      this.byTypeUrl.set(typeUrl, plan);
    }
    return plan;
  }

  private planOf(type: protobuf.Type): MessagePlan {
    let plan = this.plans.get(type);
    if (plan !== undefined) return plan;
    const fullName = type.fullName;
    const fields = new Map<string, FieldPlan>();
    // resolve(): resolveAll() at load leaves the fields proto-additions.ts adds unresolved.
    for (const field of type.fieldsArray) fields.set(field.name, compileField(type, field.resolve()));
    const name = fullName.replace(/^\./, '');
    plan = {
      name,
      piecesOf: this.pieceTypes.has(name),
      onceOf: this.onceTypes.has(name),
      special: SPECIAL[fullName] ?? (WRAPPER_TYPES.has(fullName) ? 'wrapper' : undefined),
      fields,
    };
    this.plans.set(type, plan);
    return plan;
  }

  private fieldPlan(field: FieldPlan): MessagePlan {
    if (field.plan !== undefined) return field.plan;
    if (field.messageType === undefined) throw new Error(`${field.name} is not a message field`);
    field.plan = this.planOf(field.messageType);
    return field.plan;
  }

  private wellKnown(): WellKnownPlans {
    this.wellKnownPlans ??= {
      any: this.planNamed('google.protobuf.Any'),
      struct: this.planNamed('google.protobuf.Struct'),
      list: this.planNamed('google.protobuf.ListValue'),
    };
    return this.wellKnownPlans;
  }

  private enumValuesOf(type: protobuf.Enum): ReadonlyMap<string, number> {
    let values = this.enumValues.get(type);
    if (values === undefined) {
      values = new Map(Object.entries(type.values));
      this.enumValues.set(type, values);
    }
    return values;
  }

  // -- messages --------------------------------------------------------------------------------

  /** The body of one message value: its special JSON form, or its fields. */
  private writeBody(plan: MessagePlan, json: JsonValue, depth: number): void {
    if (plan.onceOf && isObject(json)) {
      const once = this.once.get(json);
      // Bytes of its type only; written as deep as it was first or less, it is still within MAX_DEPTH.
      if (once !== undefined && once !== null && once.plan === plan && depth <= once.depth) {
        this.writer.raw(once.bytes);
        return;
      }
      if (once === null) {
        this.writeBodyOnce(plan, json, depth);
        return;
      }
    }
    this.writeBodyEncoded(plan, json, depth);
  }

  /** writeBody of a value declared to encodeOnce, met for the first time: its bytes are kept. */
  private writeBodyOnce(plan: MessagePlan, json: JsonObject, depth: number): void {
    const w = this.writer;
    const start = w.position;
    const tracked = w.trackedCount;
    this.writeBodyEncoded(plan, json, depth);
    // A body holding pieces (tracked) is left to them: its bytes must be followed, not copied.
    // Copied now: the body's own fields are in order and in place (only what encloses it moves later).
    // A copy (Buffer's slice would be a view of the scratch buffer, overwritten by the next encode).
    if (w.trackedCount === tracked) this.once.set(json, { plan, bytes: new Uint8Array(w.written().subarray(start)), depth });
  }

  private writeBodyEncoded(plan: MessagePlan, json: JsonValue, depth: number): void {
    if (depth > MAX_DEPTH) throw new Problem(`messages nest more than ${MAX_DEPTH} levels deep`);
    switch (plan.special) {
      case undefined:
        this.writeFields(plan, json, undefined, depth);
        return;
      case 'any':
        this.writeAny(json, depth);
        return;
      case 'duration':
        this.writeDuration(plan, json);
        return;
      case 'timestamp':
        this.writeTimestamp(plan, json);
        return;
      case 'struct':
        this.writeStruct(plan, json, depth);
        return;
      case 'value':
        this.writeValue(json, depth);
        return;
      case 'list':
        this.writeList(plan, json, depth);
        return;
      case 'fieldMask':
        this.writeFieldMask(plan, json);
        return;
      case 'wrapper':
        this.writeWrapper(plan, json);
        return;
    }
  }

  private writeFields(plan: MessagePlan, json: JsonValue, skipKey: string | undefined, depth: number): void {
    if (!isObject(json)) throw new Problem(`expected an object (${plan.name}), got ${describe(json)}`);
    const w = this.writer;
    const mark = w.openMessage();
    let oneofs = 0;
    // for-in rather than Object.keys: no array per message; JSON objects have no inherited keys.
    for (const key in json) {
      if (key === skipKey) continue;
      const field = plan.fields.get(key);
      if (field === undefined) {
        throw at(new Problem(`unknown field (${plan.name} has no field "${key}"${suggestion(plan, key)})`), `.${key}`);
      }
      const value = json[key] as JsonValue;
      if (value === null && !field.nullable) continue;
      if ((oneofs & field.oneof) !== 0) {
        const previous = Object.keys(json).find((k) => {
          const other = k === skipKey ? undefined : plan.fields.get(k);
          return other !== undefined && other.oneof === field.oneof && (json[k] !== null || other.nullable);
        });
        throw at(new Problem(`"${key}" and "${previous ?? '?'}" are members of oneof "${field.oneofName}"; set only one`), `.${key}`);
      }
      oneofs |= field.oneof;
      try {
        this.writeField(field, value, depth);
      } catch (err) {
        throw at(err, `.${key}`);
      }
    }
    w.closeMessage(mark);
  }

  private writeField(field: FieldPlan, value: JsonValue, depth: number): void {
    switch (field.shape) {
      case 'single':
        this.writeSingle(field, value, depth);
        return;
      case 'map':
        this.writeMap(field, value, depth);
        return;
      case 'packed':
        this.writePacked(field, value);
        return;
      case 'repeated':
        this.writeRepeated(field, value, depth);
        return;
    }
  }

  /** A non-repeated field; fields without presence are omitted at their default, as proto3 encoders do. */
  private writeSingle(field: FieldPlan, value: JsonValue, depth: number): void {
    const w = this.writer;
    if (field.kind === 'message') {
      w.field(field.id);
      this.writeMessage(field, value, depth + 1);
      return;
    }
    if (field.kind === 'enum') {
      const number = this.enumFromJson(field, value);
      if (number === 0 && !field.presence) return;
      w.field(field.id);
      w.varint32(field.tag);
      w.int32(number);
      return;
    }
    const scalar = scalarFromJson(field.kind, value);
    if (!field.presence && isDefaultScalar(field.kind, scalar)) return;
    w.field(field.id);
    w.varint32(field.tag);
    this.writeScalar(field.kind, scalar);
  }

  /** Tag and body of one message value of `field` (length-prefixed, or a group). */
  private writeMessage(field: FieldPlan, value: JsonValue, depth: number): void {
    const w = this.writer;
    const plan = this.fieldPlan(field);
    w.varint32(field.tag);
    if (field.delimited) {
      this.writeBody(plan, value, depth);
      w.varint32((field.id << 3) | END_GROUP);
      return;
    }
    const piece = plan.piecesOf && isObject(value) ? this.pieces.get(value) : undefined;
    if (piece) {
      w.varint32(piece.length);
      w.track(value as object, w.position, piece.length);
      w.raw(piece);
      return;
    }
    const length = w.beginLength();
    const start = w.position;
    this.writeBody(plan, value, depth);
    const bodyLength = w.position - start;
    w.endLength(length);
    // Where its bytes are is known once the message is kept (keptPieces); the body ends here.
    if (piece === null) w.track(value as object, w.position - bodyLength, bodyLength);
  }

  private writeRepeated(field: FieldPlan, value: JsonValue, depth: number): void {
    if (!Array.isArray(value)) throw new Problem(`expected an array, got ${describe(value)}`);
    if (value.length === 0) return;
    const w = this.writer;
    w.field(field.id);
    for (let i = 0; i < value.length; i++) {
      const element = value[i] as JsonValue;
      try {
        if (element === null && !field.nullable) throw new Problem('repeated elements must not be null');
        if (field.kind === 'message') {
          this.writeMessage(field, element, depth + 1);
        } else if (field.kind === 'enum') {
          const number = this.enumFromJson(field, element);
          w.varint32(field.tag);
          w.int32(number);
        } else {
          const scalar = scalarFromJson(field.kind, element);
          w.varint32(field.tag);
          this.writeScalar(field.kind, scalar);
        }
      } catch (err) {
        throw at(err, `[${i}]`);
      }
    }
  }

  /** Repeated numbers and enums: one length-delimited run of values (proto3's default packing). */
  private writePacked(field: FieldPlan, value: JsonValue): void {
    if (!Array.isArray(value)) throw new Problem(`expected an array, got ${describe(value)}`);
    if (value.length === 0) return;
    const w = this.writer;
    w.field(field.id);
    w.varint32(field.tag);
    const length = w.beginLength();
    for (let i = 0; i < value.length; i++) {
      const element = value[i] as JsonValue;
      try {
        if (element === null && !field.nullable) throw new Problem('repeated elements must not be null');
        if (field.kind === 'enum') w.int32(this.enumFromJson(field, element));
        else this.writeScalar(field.kind, scalarFromJson(field.kind, element));
      } catch (err) {
        throw at(err, `[${i}]`);
      }
    }
    w.endLength(length);
  }

  /** Map entries are messages with the key as field 1 and the value as field 2, both always written. */
  private writeMap(field: FieldPlan, value: JsonValue, depth: number): void {
    if (!isObject(value)) throw new Problem(`expected an object (map), got ${describe(value)}`);
    const w = this.writer;
    let empty = true;
    for (const key in value) {
      if (empty) w.field(field.id);
      empty = false;
      const entry = value[key] as JsonValue;
      try {
        checkMapKey(field.mapKeyType, key);
        if (entry === null && !field.nullable) throw new Problem('map values must not be null');
        w.varint32(field.tag);
        const length = w.beginLength();
        w.varint32((1 << 3) | (WIRE_TYPE[field.mapKeyType] ?? 0));
        this.writeMapKey(field.mapKeyType, key);
        if (field.kind === 'message') {
          w.varint32((2 << 3) | LENGTH_DELIMITED);
          const valueLength = w.beginLength();
          this.writeBody(this.fieldPlan(field), entry, depth + 1);
          w.endLength(valueLength);
        } else if (field.kind === 'enum') {
          const number = this.enumFromJson(field, entry);
          w.varint32(2 << 3);
          w.int32(number);
        } else {
          const scalar = scalarFromJson(field.kind, entry);
          w.varint32((2 << 3) | (WIRE_TYPE[field.kind] ?? 0));
          this.writeScalar(field.kind, scalar);
        }
        w.endLength(length);
      } catch (err) {
        throw at(err, `[${key}]`);
      }
    }
  }

  private writeMapKey(keyType: string, key: string): void {
    if (keyType === 'string') this.writer.string(key);
    else if (keyType === 'bool') this.writer.bool(key === 'true');
    else this.writeScalar(keyType, INT64_TYPES.has(keyType) ? key : Number(key));
  }

  private enumFromJson(field: FieldPlan, value: JsonValue): number {
    const type = field.enumType;
    if (type === undefined) throw new Error(`${field.name} is not an enum field`);
    if (field.nullable && value === null) return 0;
    if (typeof value === 'string') {
      const number = this.enumValuesOf(type).get(value);
      if (number === undefined) {
        throw new Problem(`unknown ${shortName(type)} value "${value}" (one of ${Object.keys(type.values).join(', ')})`);
      }
      return number;
    }
    if (typeof value === 'number' && Number.isInteger(value)) return value;
    throw new Problem(`expected a ${shortName(type)} name, got ${describe(value)}`);
  }

  private writeScalar(type: string, value: ScalarValue): void {
    const w = this.writer;
    switch (type) {
      case 'string':
        w.string(value as string);
        return;
      case 'uint32':
        w.varint32(value as number);
        return;
      case 'int32':
        w.int32(value as number);
        return;
      case 'bool':
        w.bool(value as boolean);
        return;
      case 'int64':
      case 'uint64':
        w.int64(value as number | string);
        return;
      case 'double':
        w.double(value as number);
        return;
      case 'float':
        w.float(value as number);
        return;
      case 'bytes':
        w.bytes(value as Uint8Array);
        return;
      case 'sint32':
        w.sint32(value as number);
        return;
      case 'sint64':
        w.sint64(value as number | string);
        return;
      case 'fixed32':
      case 'sfixed32':
        w.fixed32(value as number);
        return;
      case 'fixed64':
      case 'sfixed64':
        w.fixed64(value as number | string);
        return;
      default:
        throw new Problem(`unsupported scalar type ${type}`);
    }
  }

  // -- well-known types with a JSON form of their own -------------------------------------------

  /** Field `name` of a well-known type, with its tag, read from the loaded .proto. */
  private wkt(plan: MessagePlan, name: string): FieldPlan {
    const field = plan.fields.get(name);
    if (field === undefined) throw new Error(`${plan.name} has no field ${name}`);
    return field;
  }

  private writeAny(json: JsonValue, depth: number): void {
    if (!isObject(json)) throw new Problem(`expected an object with "@type", got ${describe(json)}`);
    const typeUrl = json['@type'];
    if (typeof typeUrl !== 'string' || !typeUrl.includes('/')) {
      throw new Problem(`an Any needs "@type": "type.googleapis.com/<message>", got ${typeUrl === undefined ? 'none' : describe(typeUrl)}`);
    }
    let inner: MessagePlan;
    try {
      inner = this.planOfUrl(typeUrl);
    } catch {
      throw at(new Problem(`unknown @type ${typeUrl}: add its .proto to ENTRY_PROTOS in src/envoy/proto.ts`), '.@type');
    }
    const any = this.wellKnown().any;
    const w = this.writer;
    w.varint32(this.wkt(any, 'type_url').tag);
    w.string(typeUrl);
    w.varint32(this.wkt(any, 'value').tag);
    const length = w.beginLength();
    // The embedded message is encoded on its own, so protobuf's nesting limit starts again.
    if (inner.special === undefined) {
      this.writeFields(inner, json, '@type', 0);
    } else if (inner.special === 'any') {
      const rest: JsonObject = {};
      for (const key of Object.keys(json)) if (key !== '@type') rest[key] = json[key] as JsonValue;
      this.writeBody(inner, rest, 0);
    } else {
      // proto3 JSON puts a well-known type with a special JSON form under "value".
      const extra = Object.keys(json).find((key) => key !== '@type' && key !== 'value');
      if (extra !== undefined) throw at(new Problem(`unknown field (an Any of ${inner.name} holds only "value")`), `.${extra}`);
      try {
        this.writeBody(inner, json['value'] ?? null, 0);
      } catch (err) {
        throw at(err, '.value');
      }
    }
    w.endLength(length);
  }

  private writeDuration(plan: MessagePlan, json: JsonValue): void {
    // A configuration repeats a few durations thousands of times: parse each once.
    let parsed = typeof json === 'string' ? this.durations.get(json) : undefined;
    if (parsed === undefined) {
      parsed = parseDuration(json);
      if (this.durations.size >= MAX_CACHED_DURATIONS) this.durations.clear();
      this.durations.set(json as string, parsed);
    }
    this.writeSecondsAndNanos(plan, parsed[0], parsed[1]);
  }

  private writeTimestamp(plan: MessagePlan, json: JsonValue): void {
    const match =
      typeof json === 'string' ? /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/i.exec(json) : null;
    const millis = match !== null ? Date.parse(`${match[1]}${match[3]}`) : Number.NaN;
    if (match === null || Number.isNaN(millis)) {
      throw new Problem(`expected an RFC 3339 timestamp like "2025-01-31T12:00:00Z", got ${describe(json)}`);
    }
    this.writeSecondsAndNanos(plan, Math.floor(millis / 1000), Number((match[2] ?? '').padEnd(9, '0')));
  }

  private writeSecondsAndNanos(plan: MessagePlan, seconds: number, nanos: number): void {
    const w = this.writer;
    if (seconds !== 0) {
      w.varint32(this.wkt(plan, 'seconds').tag);
      w.int64(seconds);
    }
    if (nanos !== 0) {
      w.varint32(this.wkt(plan, 'nanos').tag);
      w.int32(nanos);
    }
  }

  private writeStruct(plan: MessagePlan, json: JsonValue, depth: number): void {
    if (!isObject(json)) throw new Problem(`expected an object (google.protobuf.Struct), got ${describe(json)}`);
    const w = this.writer;
    const entryTag = this.wkt(plan, 'fields').tag;
    for (const key in json) {
      w.varint32(entryTag);
      const length = w.beginLength();
      w.varint32((1 << 3) | LENGTH_DELIMITED);
      w.string(key);
      w.varint32((2 << 3) | LENGTH_DELIMITED);
      const valueLength = w.beginLength();
      try {
        this.writeValue(json[key] as JsonValue, depth + 1);
      } catch (err) {
        throw at(err, `.${key}`);
      }
      w.endLength(valueLength);
      w.endLength(length);
    }
  }

  private writeList(plan: MessagePlan, json: JsonValue, depth: number): void {
    if (!Array.isArray(json)) throw new Problem(`expected an array (google.protobuf.ListValue), got ${describe(json)}`);
    const w = this.writer;
    const tag = this.wkt(plan, 'values').tag;
    for (let i = 0; i < json.length; i++) {
      w.varint32(tag);
      const length = w.beginLength();
      try {
        this.writeValue(json[i] as JsonValue, depth + 1);
      } catch (err) {
        throw at(err, `[${i}]`);
      }
      w.endLength(length);
    }
  }

  /**
   * google.protobuf.Value by field number: protobufjs' bundled struct.proto names its fields in
   * camelCase whatever keepCase says, but the numbers are fixed (1 null … 6 list).
   */
  private writeValue(json: JsonValue, depth: number): void {
    if (depth > MAX_DEPTH) throw new Problem(`messages nest more than ${MAX_DEPTH} levels deep`);
    const w = this.writer;
    if (json === null) {
      w.varint32((1 << 3) | 0);
      w.varint32(0);
    } else if (typeof json === 'number') {
      if (!Number.isFinite(json)) throw new Problem('a google.protobuf.Value number must be finite');
      w.varint32((2 << 3) | 1);
      w.double(json);
    } else if (typeof json === 'string') {
      w.varint32((3 << 3) | LENGTH_DELIMITED);
      w.string(json);
    } else if (typeof json === 'boolean') {
      w.varint32((4 << 3) | 0);
      w.bool(json);
    } else if (Array.isArray(json)) {
      w.varint32((6 << 3) | LENGTH_DELIMITED);
      const length = w.beginLength();
      this.writeList(this.wellKnown().list, json, depth + 1);
      w.endLength(length);
    } else {
      w.varint32((5 << 3) | LENGTH_DELIMITED);
      const length = w.beginLength();
      this.writeStruct(this.wellKnown().struct, json, depth + 1);
      w.endLength(length);
    }
  }

  private writeFieldMask(plan: MessagePlan, json: JsonValue): void {
    if (typeof json !== 'string') throw new Problem(`expected a comma-separated field mask, got ${describe(json)}`);
    if (json === '') return;
    const tag = this.wkt(plan, 'paths').tag;
    for (const part of json.split(',')) {
      this.writer.varint32(tag);
      this.writer.string(part.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`));
    }
  }

  private writeWrapper(plan: MessagePlan, json: JsonValue): void {
    const valueField = this.wkt(plan, 'value');
    if (isObject(json) || Array.isArray(json)) {
      throw new Problem(`expected a bare ${valueField.kind} (${plan.name}), got ${describe(json)}`);
    }
    const scalar = scalarFromJson(valueField.kind, json);
    if (isDefaultScalar(valueField.kind, scalar)) return;
    this.writer.varint32(valueField.tag);
    this.writeScalar(valueField.kind, scalar);
  }
}

const MAX_DURATION_SECONDS = 315_576_000_000;
const MAX_CACHED_DURATIONS = 1_000;

function parseDuration(json: JsonValue): readonly [seconds: number, nanos: number] {
  const match = typeof json === 'string' ? /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(json) : null;
  if (match === null) throw new Problem(`expected a duration like "1.5s", got ${describe(json)}`);
  const sign = match[1] === '-' ? -1 : 1;
  const seconds = Number(match[2]);
  if (seconds > MAX_DURATION_SECONDS) throw new Problem(`duration ${String(json)} is out of range`);
  const nanos = Number((match[3] ?? '').padEnd(9, '0'));
  return [sign * seconds, sign * nanos];
}

function compileField(type: protobuf.Type, field: protobuf.Field): FieldPlan {
  const resolved = field.resolvedType;
  const kind = resolved instanceof protobuf.Type ? 'message' : resolved instanceof protobuf.Enum ? 'enum' : field.type;
  const isMap = field instanceof protobuf.MapField;
  const valueWire = kind === 'message' ? LENGTH_DELIMITED : kind === 'enum' ? 0 : WIRE_TYPE[kind];
  if (valueWire === undefined) throw new Error(`${type.fullName}.${field.name}: unsupported field type ${field.type}`);
  const delimited = field.delimited && kind === 'message' && !isMap;
  const packable = kind === 'enum' || (valueWire !== LENGTH_DELIMITED && kind !== 'message');
  const shape = isMap ? 'map' : !field.repeated ? 'single' : field.packed && packable ? 'packed' : 'repeated';
  const wire = isMap || shape === 'packed' ? LENGTH_DELIMITED : delimited ? START_GROUP : valueWire;
  const oneof = field.partOf;
  const oneofIndex = oneof !== null && oneof !== undefined ? type.oneofsArray.indexOf(oneof) : -1;
  // Envoy's messages have at most a few oneofs; a mask of 31 bits keeps the check allocation-free.
  if (oneofIndex > 30) throw new Error(`${type.fullName}: more than 31 oneofs are not supported by the JSON encoder`);
  const resolvedName = resolved?.fullName;
  return {
    name: field.name,
    id: field.id,
    tag: ((field.id << 3) | wire) >>> 0,
    shape,
    kind,
    presence: (oneof !== null && oneof !== undefined) || kind === 'message',
    nullable: resolvedName === '.google.protobuf.Value' || resolvedName === '.google.protobuf.NullValue',
    oneof: oneofIndex >= 0 ? 1 << oneofIndex : 0,
    oneofName: oneof?.name ?? '',
    delimited,
    messageType: resolved instanceof protobuf.Type ? resolved : undefined,
    enumType: resolved instanceof protobuf.Enum ? resolved : undefined,
    mapKeyType: isMap ? field.keyType : '',
    plan: undefined,
  };
}

interface WellKnownPlans {
  readonly any: MessagePlan;
  readonly struct: MessagePlan;
  readonly list: MessagePlan;
}

type ScalarValue = string | number | boolean | Uint8Array;

/** Whether `value` and everything in it is frozen (frozen stays frozen: checked once, it holds). */
function isDeepFrozen(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true;
  return Object.isFrozen(value) && Object.values(value).every(isDeepFrozen);
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: JsonValue): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}

function shortName(type: protobuf.ReflectionObject): string {
  return type.fullName.replace(/^\./, '');
}

function suggestion(plan: MessagePlan, key: string): string {
  const snake = key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
  if (snake !== key && plan.fields.has(snake)) return `; did you mean "${snake}"?`;
  return '';
}

function checkMapKey(keyType: string, key: string): void {
  if (keyType === 'string') return;
  if (keyType === 'bool') {
    if (key !== 'true' && key !== 'false') throw new Problem('map key must be "true" or "false"');
    return;
  }
  scalarFromJson(keyType, key);
}

function isDefaultScalar(scalarType: string, value: ScalarValue): boolean {
  if (value instanceof Uint8Array) return value.length === 0;
  // 64-bit integers may arrive as decimal strings; a string field holding "0" is not a default.
  if (typeof value === 'string') return INT64_TYPES.has(scalarType) ? /^-?0+$/.test(value) : value === '';
  return value === 0 || value === false;
}

/** Checks one scalar JSON value and returns what the writer takes for its type. */
function scalarFromJson(scalarType: string, value: JsonValue): ScalarValue {
  switch (scalarType) {
    case 'string':
      if (typeof value === 'string') return value;
      throw new Problem(`expected a string, got ${describe(value)}`);
    case 'bool':
      if (typeof value === 'boolean') return value;
      throw new Problem(`expected true or false, got ${describe(value)}`);
    case 'int32':
    case 'sint32':
    case 'sfixed32':
    case 'uint32':
    case 'fixed32':
      return int32FromJson(scalarType, value);
    case 'int64':
    case 'sint64':
    case 'sfixed64':
    case 'uint64':
    case 'fixed64':
      return int64FromJson(scalarType, value);
    case 'double':
    case 'float':
      if (typeof value === 'number') return value;
      if (value === 'NaN') return Number.NaN;
      if (value === 'Infinity') return Number.POSITIVE_INFINITY;
      if (value === '-Infinity') return Number.NEGATIVE_INFINITY;
      if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
      throw new Problem(`expected a number (${scalarType}), got ${describe(value)}`);
    case 'bytes':
      if (typeof value === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) {
        return Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
      }
      throw new Problem(`expected base64 bytes, got ${describe(value)}`);
    default:
      throw new Problem(`unsupported scalar type ${scalarType}`);
  }
}

function int32FromJson(scalarType: string, value: JsonValue): number {
  const number = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number)) {
    throw new Problem(`expected an integer (${scalarType}), got ${describe(value)}`);
  }
  const range = INT_RANGES[scalarType];
  if (range !== undefined && (number < range[0] || number > range[1])) throw new Problem(`${number} is out of range for ${scalarType}`);
  return number;
}

function int64FromJson(scalarType: string, value: JsonValue): number | string {
  const unsigned = UNSIGNED_64.has(scalarType);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) {
      throw new Problem(`expected an integer (${scalarType}; write values beyond 2^53 as strings), got ${value}`);
    }
    if (unsigned && value < 0) throw new Problem(`${value} is negative but ${scalarType} is unsigned`);
    return value;
  }
  if (typeof value === 'string' && (unsigned ? /^\d+$/ : /^-?\d+$/).test(value)) {
    // Decimal strings within 2^53 are in range for every 64-bit type that passed the pattern.
    if (Number.isSafeInteger(Number(value))) return value;
    const big = BigInt(value);
    if (unsigned ? big > MAX_UINT64 : big < MIN_INT64 || big > MAX_INT64) throw new Problem(`${value} is out of range for ${scalarType}`);
    return value;
  }
  throw new Problem(`expected an integer or a decimal string (${scalarType}), got ${describe(value)}`);
}
