import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import protobuf from 'protobufjs';
import { PROTO_FIELD_ADDITIONS } from './proto-additions.js';
import { KIND_FIELD, kindOfTypeUrl, type EnvoyResource, type JsonObject, type JsonValue } from './resources.js';

/**
 * The Envoy API .proto files Switchyard loads, relative to the include roots of
 * @grpc/grpc-js-xds's `deps/` folder (see proto/README.md). Every type that can appear behind a
 * google.protobuf.Any in our resources must be reachable from this list, or encoding it fails
 * with "unknown @type".
 */
export const ENTRY_PROTOS: readonly string[] = [
  // xDS transport
  'envoy/service/discovery/v3/ads.proto',
  'envoy/service/discovery/v3/discovery.proto',
  'envoy/service/secret/v3/sds.proto',
  // the five resource kinds and the bootstrap
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto',
  // listener and HTTP filters
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/network/direct_response/v3/config.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/upstream_codec/v3/upstream_codec.proto',
  'envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto',
  'envoy/extensions/filters/http/header_mutation/v3/header_mutation.proto',
  'envoy/extensions/filters/http/buffer/v3/buffer.proto',
  'envoy/extensions/filters/http/set_metadata/v3/set_metadata.proto',
  'envoy/extensions/filters/http/credential_injector/v3/credential_injector.proto',
  'envoy/extensions/http/injected_credentials/generic/v3/generic.proto',
  // retries, upstream protocol options, access logs, regex engine
  'envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto',
  'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/extensions/access_loggers/file/v3/file.proto',
  'envoy/extensions/regex_engines/v3/google_re2.proto',
  // the AI extension's ext_proc service
  'envoy/service/ext_proc/v3/external_processor.proto',
  // generic typed config
  'xds/type/v3/typed_struct.proto',
  'udpa/type/v1/typed_struct.proto',
];

/** Include roots inside @grpc/grpc-js-xds's `deps/`, searched in this order. */
const DEPS_INCLUDE_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'] as const;

let loadedRoot: protobuf.Root | undefined;

/** The protobufjs Root with every ENTRY_PROTOS file loaded (snake_case field names), built once. */
export function protoRoot(): protobuf.Root {
  loadedRoot ??= loadRoot();
  return loadedRoot;
}

function loadRoot(): protobuf.Root {
  const require = createRequire(import.meta.url);
  const depsDir = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
  // protobufjs ships google/protobuf/descriptor.proto, which the udpa/validate annotations import.
  const includes = [
    ...DEPS_INCLUDE_DIRS.map((dir) => path.join(depsDir, dir)),
    path.dirname(require.resolve('protobufjs/package.json')),
  ];
  for (const dir of includes) {
    if (!existsSync(dir)) throw new Error(`Envoy protos: include directory ${dir} is missing; reinstall @grpc/grpc-js-xds`);
  }
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (path.isAbsolute(target)) return target;
    for (const dir of includes) {
      const candidate = path.join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync([...ENTRY_PROTOS], { keepCase: true });
  addNewerFields(root);
  root.resolveAll();
  return root;
}

function addNewerFields(root: protobuf.Root): void {
  for (const addition of PROTO_FIELD_ADDITIONS) {
    const type = root.lookupType(addition.message);
    const taken = type.fieldsById[addition.id];
    if (taken !== undefined) {
      // The bundled protos caught up: the addition is no longer needed.
      if (taken.name === addition.field) continue;
      throw new Error(`proto addition ${addition.message}.${addition.field} = ${addition.id} clashes with field ${taken.name}`);
    }
    type.add(new protobuf.Field(addition.field, addition.id, addition.type));
  }
}

const typeCache = new Map<string, protobuf.Type>();

/** The message type named `fullName` (`envoy.service.discovery.v3.DiscoveryRequest`), or an error. */
export function messageType(fullName: string): protobuf.Type {
  const cached = typeCache.get(fullName);
  if (cached !== undefined) return cached;
  const found = protoRoot().lookup(fullName.replace(/^\./, ''));
  if (!(found instanceof protobuf.Type)) {
    throw new Error(`unknown message type ${fullName}: add its .proto to ENTRY_PROTOS in src/envoy/proto.ts`);
  }
  typeCache.set(fullName, found);
  return found;
}

/** `type.googleapis.com/envoy.config.cluster.v3.Cluster` → `envoy.config.cluster.v3.Cluster`. */
export function typeNameOfUrl(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}

// ---------------------------------------------------------------------------------------------
// proto3 JSON → binary

/**
 * Encodes one resource (proto3 JSON with `@type`) to the binary form of its message (not wrapped
 * in Any). Strict where protobufjs' fromObject is lenient: an unknown field, a wrong value type,
 * two members of one oneof or an unknown `@type` throw an Error that names the JSON path.
 */
export function encodeResource(resource: EnvoyResource): Uint8Array {
  const typeUrl = resource['@type'];
  if (typeof typeUrl !== 'string') throw new Error('Envoy resource has no @type');
  const type = messageType(typeNameOfUrl(typeUrl));
  const { '@type': _ignored, ...fields } = resource;
  const plain = messageFromJson(type, fields, rootPath(resource));
  return type.encode(plain).finish();
}

/** Encodes any loaded message from proto3 JSON (no `@type` at the top), as strictly as encodeResource. */
export function encodeMessage(typeName: string, json: JsonObject, jsonPath = typeName): Uint8Array {
  const type = messageType(typeName);
  return type.encode(messageFromJson(type, json, jsonPath)).finish();
}

function rootPath(resource: EnvoyResource): string {
  const kind = kindOfTypeUrl(resource['@type']);
  const name = resource['cluster_name'] ?? resource['name'];
  const label = typeof name === 'string' && name !== '' ? name : '?';
  return `${kind !== undefined ? KIND_FIELD[kind] : typeNameOfUrl(resource['@type'])}[${label}]`;
}

/** What protobufjs' generated encoder accepts: plain objects with numbers for enums. */
type Plain = { [key: string]: PlainValue };
type PlainValue = string | number | boolean | Uint8Array | Plain | PlainValue[];

class EncodeError extends Error {
  constructor(jsonPath: string, problem: string) {
    super(`${jsonPath}: ${problem}`);
    this.name = 'EncodeError';
  }
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

function messageFromJson(type: protobuf.Type, json: JsonValue, jsonPath: string): Plain {
  const special = SPECIAL_FROM_JSON[type.fullName];
  if (special !== undefined) return special(type, json, jsonPath);
  if (!isObject(json)) throw new EncodeError(jsonPath, `expected an object (${shortName(type)}), got ${describe(json)}`);
  const out: Plain = {};
  const oneofOwner = new Map<string, string>();
  for (const [key, value] of Object.entries(json)) {
    const fieldPath = `${jsonPath}.${key}`;
    // Own properties only: a JSON key like "constructor" must not find Object.prototype's.
    const field = Object.hasOwn(type.fields, key) ? type.fields[key] : undefined;
    if (field === undefined) {
      throw new EncodeError(fieldPath, `unknown field (${shortName(type)} has no field "${key}"${suggestion(type, key)})`);
    }
    if (value === null && !isNullValueField(field)) continue;
    const oneof = field.partOf;
    if (oneof !== null && oneof !== undefined) {
      const previous = oneofOwner.get(oneof.name);
      if (previous !== undefined) {
        throw new EncodeError(fieldPath, `"${key}" and "${previous}" are members of oneof "${oneof.name}"; set only one`);
      }
      oneofOwner.set(oneof.name, key);
    }
    const converted = fieldFromJson(field, value, fieldPath);
    if (converted !== undefined) out[key] = converted;
  }
  return out;
}

function isNullValueField(field: protobuf.Field): boolean {
  return field.resolvedType?.fullName === '.google.protobuf.Value' || field.resolvedType?.fullName === '.google.protobuf.NullValue';
}

function fieldFromJson(field: protobuf.Field, value: JsonValue, jsonPath: string): PlainValue | undefined {
  if (field instanceof protobuf.MapField) {
    if (!isObject(value)) throw new EncodeError(jsonPath, `expected an object (map), got ${describe(value)}`);
    const out: Plain = {};
    for (const [key, entry] of Object.entries(value)) {
      const entryPath = `${jsonPath}[${key}]`;
      checkMapKey(field.keyType, key, entryPath);
      if (entry === null && !isNullValueField(field)) throw new EncodeError(entryPath, 'map values must not be null');
      const converted = singleFromJson(field, entry, entryPath, true);
      out[key] = converted ?? defaultPlain(field);
    }
    return Object.keys(out).length === 0 ? undefined : out;
  }
  if (field.repeated) {
    if (!Array.isArray(value)) throw new EncodeError(jsonPath, `expected an array, got ${describe(value)}`);
    if (value.length === 0) return undefined;
    return value.map((element, index) => {
      const elementPath = `${jsonPath}[${index}]`;
      if (element === null && !isNullValueField(field)) throw new EncodeError(elementPath, 'repeated elements must not be null');
      return singleFromJson(field, element, elementPath, true) ?? defaultPlain(field);
    });
  }
  // Fields without presence are omitted at their default, as proto3 encoders do.
  return singleFromJson(field, value, jsonPath, hasPresence(field));
}

function hasPresence(field: protobuf.Field): boolean {
  return (field.partOf !== null && field.partOf !== undefined) || field.resolvedType instanceof protobuf.Type;
}

function defaultPlain(field: protobuf.Field): PlainValue {
  if (field.resolvedType instanceof protobuf.Type) return {};
  if (field.resolvedType instanceof protobuf.Enum) return 0;
  switch (field.type) {
    case 'string':
      return '';
    case 'bool':
      return false;
    case 'bytes':
      return new Uint8Array(0);
    default:
      return 0;
  }
}

function checkMapKey(keyType: string, key: string, jsonPath: string): void {
  if (keyType === 'string') return;
  if (keyType === 'bool') {
    if (key !== 'true' && key !== 'false') throw new EncodeError(jsonPath, 'map key must be "true" or "false"');
    return;
  }
  scalarFromJson(keyType, key, jsonPath);
}

/** Converts one non-repeated value; undefined means "omit" (a default without presence). */
function singleFromJson(field: protobuf.Field, value: JsonValue, jsonPath: string, keepDefault: boolean): PlainValue | undefined {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return messageFromJson(resolved, value, jsonPath);
  if (resolved instanceof protobuf.Enum) {
    const number = enumFromJson(resolved, value, jsonPath);
    return number === 0 && !keepDefault ? undefined : number;
  }
  const converted = scalarFromJson(field.type, value, jsonPath);
  return !keepDefault && isDefaultScalar(field.type, converted) ? undefined : converted;
}

function isDefaultScalar(scalarType: string, value: PlainValue): boolean {
  if (value instanceof Uint8Array) return value.length === 0;
  // 64-bit integers may arrive as decimal strings; a string field holding "0" is not a default.
  if (typeof value === 'string') return INT64_TYPES.has(scalarType) ? /^-?0+$/.test(value) : value === '';
  return value === 0 || value === false;
}

function enumFromJson(type: protobuf.Enum, value: JsonValue, jsonPath: string): number {
  if (type.fullName === '.google.protobuf.NullValue' && value === null) return 0;
  if (typeof value === 'string') {
    const number = Object.hasOwn(type.values, value) ? type.values[value] : undefined;
    if (number === undefined) {
      throw new EncodeError(jsonPath, `unknown ${shortName(type)} value "${value}" (one of ${Object.keys(type.values).join(', ')})`);
    }
    return number;
  }
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  throw new EncodeError(jsonPath, `expected a ${shortName(type)} name, got ${describe(value)}`);
}

const INT_RANGES: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  sint32: [-(2 ** 31), 2 ** 31 - 1],
  sfixed32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
  fixed32: [0, 2 ** 32 - 1],
};
const INT64_TYPES = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);
const UNSIGNED_64 = new Set(['uint64', 'fixed64']);

function scalarFromJson(scalarType: string, value: JsonValue, jsonPath: string): PlainValue {
  const range = INT_RANGES[scalarType];
  if (range !== undefined) {
    const number = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
    if (typeof number !== 'number' || !Number.isInteger(number)) {
      throw new EncodeError(jsonPath, `expected an integer (${scalarType}), got ${describe(value)}`);
    }
    if (number < range[0] || number > range[1]) throw new EncodeError(jsonPath, `${number} is out of range for ${scalarType}`);
    return number;
  }
  if (INT64_TYPES.has(scalarType)) {
    const unsigned = UNSIGNED_64.has(scalarType);
    if (typeof value === 'number') {
      if (!Number.isSafeInteger(value)) {
        throw new EncodeError(jsonPath, `expected an integer (${scalarType}; write values beyond 2^53 as strings), got ${value}`);
      }
      if (unsigned && value < 0) throw new EncodeError(jsonPath, `${value} is negative but ${scalarType} is unsigned`);
      return value;
    }
    if (typeof value === 'string' && (unsigned ? /^\d+$/ : /^-?\d+$/).test(value)) {
      const big = BigInt(value);
      const [min, max] = unsigned ? [0n, 2n ** 64n - 1n] : [-(2n ** 63n), 2n ** 63n - 1n];
      if (big < min || big > max) throw new EncodeError(jsonPath, `${value} is out of range for ${scalarType}`);
      // protobufjs' writer parses decimal strings with Long, keeping all 64 bits.
      return value;
    }
    throw new EncodeError(jsonPath, `expected an integer or a decimal string (${scalarType}), got ${describe(value)}`);
  }
  switch (scalarType) {
    case 'double':
    case 'float':
      if (typeof value === 'number') return value;
      if (value === 'NaN') return Number.NaN;
      if (value === 'Infinity') return Number.POSITIVE_INFINITY;
      if (value === '-Infinity') return Number.NEGATIVE_INFINITY;
      if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
      throw new EncodeError(jsonPath, `expected a number (${scalarType}), got ${describe(value)}`);
    case 'bool':
      if (typeof value === 'boolean') return value;
      throw new EncodeError(jsonPath, `expected true or false, got ${describe(value)}`);
    case 'string':
      if (typeof value === 'string') return value;
      throw new EncodeError(jsonPath, `expected a string, got ${describe(value)}`);
    case 'bytes':
      if (typeof value === 'string' && /^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) {
        return new Uint8Array(Buffer.from(value.replace(/-/g, '+').replace(/_/g, '/'), 'base64'));
      }
      throw new EncodeError(jsonPath, `expected base64 bytes, got ${describe(value)}`);
    default:
      throw new EncodeError(jsonPath, `unsupported scalar type ${scalarType}`);
  }
}

function shortName(type: protobuf.ReflectionObject): string {
  return type.fullName.replace(/^\./, '');
}

function suggestion(type: protobuf.Type, key: string): string {
  const snake = key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
  if (snake !== key && type.fields[snake] !== undefined) return `; did you mean "${snake}"?`;
  return '';
}

type FromJson = (type: protobuf.Type, json: JsonValue, jsonPath: string) => Plain;

const WRAPPERS = [
  'DoubleValue',
  'FloatValue',
  'Int64Value',
  'UInt64Value',
  'Int32Value',
  'UInt32Value',
  'BoolValue',
  'StringValue',
  'BytesValue',
].map((name) => `.google.protobuf.${name}`);

const SPECIAL_FROM_JSON: Record<string, FromJson> = {
  '.google.protobuf.Any': anyFromJson,
  '.google.protobuf.Duration': (_type, json, jsonPath) => durationFromJson(json, jsonPath),
  '.google.protobuf.Timestamp': (_type, json, jsonPath) => timestampFromJson(json, jsonPath),
  '.google.protobuf.Struct': (_type, json, jsonPath) => structFromJson(json, jsonPath),
  '.google.protobuf.Value': (_type, json, jsonPath) => valueFromJson(json, jsonPath),
  '.google.protobuf.ListValue': (_type, json, jsonPath) => listFromJson(json, jsonPath),
  '.google.protobuf.FieldMask': (_type, json, jsonPath) => fieldMaskFromJson(json, jsonPath),
  ...Object.fromEntries(WRAPPERS.map((name) => [name, wrapperFromJson])),
};

function wrapperFromJson(type: protobuf.Type, json: JsonValue, jsonPath: string): Plain {
  const valueField = type.fields['value'];
  if (valueField === undefined) throw new EncodeError(jsonPath, `${shortName(type)} has no value field`);
  if (isObject(json) || Array.isArray(json)) {
    throw new EncodeError(jsonPath, `expected a bare ${valueField.type} (${shortName(type)}), got ${describe(json)}`);
  }
  const converted = scalarFromJson(valueField.type, json, jsonPath);
  return isDefaultScalar(valueField.type, converted) ? {} : { value: converted };
}

function anyFromJson(_type: protobuf.Type, json: JsonValue, jsonPath: string): Plain {
  if (!isObject(json)) throw new EncodeError(jsonPath, `expected an object with "@type", got ${describe(json)}`);
  const typeUrl = json['@type'];
  if (typeof typeUrl !== 'string' || !typeUrl.includes('/')) {
    throw new EncodeError(jsonPath, `an Any needs "@type": "type.googleapis.com/<message>", got ${typeUrl === undefined ? 'none' : describe(typeUrl)}`);
  }
  let inner: protobuf.Type;
  try {
    inner = messageType(typeNameOfUrl(typeUrl));
  } catch {
    throw new EncodeError(`${jsonPath}.@type`, `unknown @type ${typeUrl}: add its .proto to ENTRY_PROTOS in src/envoy/proto.ts`);
  }
  const { '@type': _ignored, ...rest } = json;
  let plain: Plain;
  if (SPECIAL_FROM_JSON[inner.fullName] !== undefined && inner.fullName !== '.google.protobuf.Any') {
    // proto3 JSON puts a well-known type with a special JSON form under "value".
    const extra = Object.keys(rest).find((key) => key !== 'value');
    if (extra !== undefined) throw new EncodeError(`${jsonPath}.${extra}`, `unknown field (an Any of ${shortName(inner)} holds only "value")`);
    plain = messageFromJson(inner, rest['value'] ?? null, `${jsonPath}.value`);
  } else {
    plain = messageFromJson(inner, rest, jsonPath);
  }
  return { type_url: typeUrl, value: inner.encode(plain).finish() };
}

const MAX_DURATION_SECONDS = 315_576_000_000;

function durationFromJson(json: JsonValue, jsonPath: string): Plain {
  const match = typeof json === 'string' ? /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(json) : null;
  if (match === null) throw new EncodeError(jsonPath, `expected a duration like "1.5s", got ${describe(json)}`);
  const sign = match[1] === '-' ? -1 : 1;
  const seconds = Number(match[2]);
  if (seconds > MAX_DURATION_SECONDS) throw new EncodeError(jsonPath, `duration ${String(json)} is out of range`);
  const nanos = Number((match[3] ?? '').padEnd(9, '0'));
  const out: Plain = {};
  if (seconds !== 0) out['seconds'] = sign * seconds;
  if (nanos !== 0) out['nanos'] = sign * nanos;
  return out;
}

function timestampFromJson(json: JsonValue, jsonPath: string): Plain {
  const match =
    typeof json === 'string'
      ? /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/i.exec(json)
      : null;
  const millis = match !== null ? Date.parse(`${match[1]}${match[3]}`) : Number.NaN;
  if (match === null || Number.isNaN(millis)) {
    throw new EncodeError(jsonPath, `expected an RFC 3339 timestamp like "2025-01-31T12:00:00Z", got ${describe(json)}`);
  }
  const out: Plain = {};
  const seconds = Math.floor(millis / 1000);
  const nanos = Number((match[2] ?? '').padEnd(9, '0'));
  if (seconds !== 0) out['seconds'] = seconds;
  if (nanos !== 0) out['nanos'] = nanos;
  return out;
}

function structFromJson(json: JsonValue, jsonPath: string): Plain {
  if (!isObject(json)) throw new EncodeError(jsonPath, `expected an object (google.protobuf.Struct), got ${describe(json)}`);
  const fields: Plain = {};
  for (const [key, value] of Object.entries(json)) fields[key] = valueFromJson(value, `${jsonPath}.${key}`);
  return Object.keys(fields).length === 0 ? {} : { fields };
}

function listFromJson(json: JsonValue, jsonPath: string): Plain {
  if (!Array.isArray(json)) throw new EncodeError(jsonPath, `expected an array (google.protobuf.ListValue), got ${describe(json)}`);
  return json.length === 0 ? {} : { values: json.map((value, index) => valueFromJson(value, `${jsonPath}[${index}]`)) };
}

/**
 * google.protobuf.Value's field names, read from reflection: protobufjs' bundled definition of
 * struct.proto spells them in camelCase whatever keepCase says.
 */
interface ValueFields {
  null: string;
  number: string;
  string: string;
  bool: string;
  struct: string;
  list: string;
}
let valueFieldNames: ValueFields | undefined;
function valueFields(): ValueFields {
  if (valueFieldNames !== undefined) return valueFieldNames;
  const byId = messageType('google.protobuf.Value').fieldsById;
  const name = (id: number): string => {
    const field = byId[id];
    if (field === undefined) throw new Error(`google.protobuf.Value has no field ${id}`);
    return field.name;
  };
  valueFieldNames = { null: name(1), number: name(2), string: name(3), bool: name(4), struct: name(5), list: name(6) };
  return valueFieldNames;
}

function valueFromJson(json: JsonValue, jsonPath: string): Plain {
  const names = valueFields();
  if (json === null) return { [names.null]: 0 };
  if (typeof json === 'number') {
    if (!Number.isFinite(json)) throw new EncodeError(jsonPath, 'a google.protobuf.Value number must be finite');
    return { [names.number]: json };
  }
  if (typeof json === 'string') return { [names.string]: json };
  if (typeof json === 'boolean') return { [names.bool]: json };
  if (Array.isArray(json)) return { [names.list]: listFromJson(json, jsonPath) };
  return { [names.struct]: structFromJson(json, jsonPath) };
}

function fieldMaskFromJson(json: JsonValue, jsonPath: string): Plain {
  if (typeof json !== 'string') throw new EncodeError(jsonPath, `expected a comma-separated field mask, got ${describe(json)}`);
  const paths = json === '' ? [] : json.split(',').map((part) => part.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`));
  return paths.length === 0 ? {} : { paths };
}

// ---------------------------------------------------------------------------------------------
// binary → proto3 JSON

/** Decodes a resource's binary message to proto3 JSON with `@type`; the inverse of encodeResource. */
export function decodeResource(typeUrl: string, bytes: Uint8Array): EnvoyResource {
  const type = messageType(typeNameOfUrl(typeUrl));
  const json = messageToJson(type, type.decode(bytes));
  if (!isObject(json)) throw new Error(`decodeResource: ${typeUrl} has a special JSON form, not a resource`);
  return { '@type': typeUrl, ...json };
}

/** Decodes any loaded message to proto3 JSON (field names snake_case, defaults omitted). */
export function decodeMessage(typeName: string, bytes: Uint8Array): JsonObject {
  const type = messageType(typeName);
  const json = messageToJson(type, type.decode(bytes));
  if (!isObject(json)) throw new Error(`decodeMessage: ${typeName} has a special JSON form; decode it inside a message`);
  return json;
}

/** A decoded protobufjs message viewed as what it is at runtime: a record of field values. */
type Decoded = { [key: string]: unknown };

function asDecoded(value: unknown): Decoded {
  if (typeof value !== 'object' || value === null) throw new Error(`decode: expected a message, got ${String(value)}`);
  return value as Decoded;
}

function messageToJson(type: protobuf.Type, message: unknown): JsonValue {
  const decoded = asDecoded(message);
  const special = SPECIAL_TO_JSON[type.fullName];
  if (special !== undefined) return special(type, decoded);
  const out: JsonObject = {};
  for (const field of type.fieldsArray) {
    if (!Object.prototype.hasOwnProperty.call(decoded, field.name)) continue;
    const value = decoded[field.name];
    if (value === undefined || value === null) continue;
    if (field instanceof protobuf.MapField) {
      const entries = Object.entries(asDecoded(value));
      if (entries.length === 0) continue;
      out[field.name] = Object.fromEntries(entries.map(([key, entry]) => [key, singleToJson(field, entry)]));
    } else if (field.repeated) {
      if (!Array.isArray(value) || value.length === 0) continue;
      out[field.name] = value.map((element: unknown) => singleToJson(field, element));
    } else {
      const json = singleToJson(field, value);
      if (!hasPresence(field) && isDefaultJson(field, value, json)) continue;
      out[field.name] = json;
    }
  }
  return out;
}

function isDefaultJson(field: protobuf.Field, decoded: unknown, json: JsonValue): boolean {
  if (field.resolvedType instanceof protobuf.Enum) return Number(decoded) === 0;
  if (json === '0') return INT64_TYPES.has(field.type);
  return json === 0 || json === '' || json === false;
}

function singleToJson(field: protobuf.Field, value: unknown): JsonValue {
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) return messageToJson(resolved, value);
  if (resolved instanceof protobuf.Enum) return enumToJson(resolved, value);
  return scalarToJson(field.type, value);
}

function enumToJson(type: protobuf.Enum, value: unknown): JsonValue {
  const number = Number(value);
  if (type.fullName === '.google.protobuf.NullValue') return null;
  return type.valuesById[number] ?? number;
}

function scalarToJson(scalarType: string, value: unknown): JsonValue {
  if (INT64_TYPES.has(scalarType)) return String(value);
  switch (scalarType) {
    case 'bytes':
      return Buffer.from(value as Uint8Array).toString('base64');
    case 'double':
    case 'float': {
      const number = Number(value);
      if (Number.isNaN(number)) return 'NaN';
      if (!Number.isFinite(number)) return number > 0 ? 'Infinity' : '-Infinity';
      return number;
    }
    case 'bool':
      return value === true;
    case 'string':
      return String(value);
    default:
      return Number(value);
  }
}

type ToJson = (type: protobuf.Type, message: Decoded) => JsonValue;

const SPECIAL_TO_JSON: Record<string, ToJson> = {
  '.google.protobuf.Any': anyToJson,
  '.google.protobuf.Duration': (_type, message) => `${secondsAndNanos(message)}s`,
  '.google.protobuf.Timestamp': (_type, message) => timestampToJson(message),
  '.google.protobuf.Struct': (_type, message) => structToJson(message),
  '.google.protobuf.Value': (_type, message) => valueToJson(message),
  '.google.protobuf.ListValue': (_type, message) => listToJson(message),
  '.google.protobuf.FieldMask': (_type, message) =>
    ((message['paths'] as string[] | undefined) ?? []).map((p) => p.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase())).join(','),
  ...Object.fromEntries(WRAPPERS.map((name) => [name, wrapperToJson])),
};

function wrapperToJson(type: protobuf.Type, message: Decoded): JsonValue {
  const valueField = type.fields['value'];
  if (valueField === undefined) throw new Error(`${shortName(type)} has no value field`);
  const value = Object.prototype.hasOwnProperty.call(message, 'value') ? message['value'] : undefined;
  return value === undefined || value === null
    ? scalarToJson(valueField.type, defaultPlain(valueField))
    : scalarToJson(valueField.type, value);
}

function anyToJson(_type: protobuf.Type, message: Decoded): JsonValue {
  const typeUrl = String(message['type_url'] ?? '');
  if (typeUrl === '') return {};
  const inner = messageType(typeNameOfUrl(typeUrl));
  const value = message['value'];
  const json = messageToJson(inner, inner.decode(value instanceof Uint8Array ? value : new Uint8Array(0)));
  if (SPECIAL_TO_JSON[inner.fullName] !== undefined && inner.fullName !== '.google.protobuf.Any') {
    return { '@type': typeUrl, value: json };
  }
  return { '@type': typeUrl, ...(isObject(json) ? json : {}) };
}

function secondsAndNanos(message: Decoded): string {
  const seconds = BigInt(String(message['seconds'] ?? 0));
  const nanos = Number(message['nanos'] ?? 0);
  const negative = seconds < 0n || nanos < 0;
  const absSeconds = seconds < 0n ? -seconds : seconds;
  return `${negative ? '-' : ''}${absSeconds}${fraction(Math.abs(nanos))}`;
}

/** proto3 JSON prints 0, 3, 6 or 9 fractional digits. */
function fraction(nanos: number): string {
  if (nanos === 0) return '';
  const digits = String(nanos).padStart(9, '0');
  if (nanos % 1_000_000 === 0) return `.${digits.slice(0, 3)}`;
  if (nanos % 1_000 === 0) return `.${digits.slice(0, 6)}`;
  return `.${digits}`;
}

function timestampToJson(message: Decoded): string {
  const seconds = Number(String(message['seconds'] ?? 0));
  const nanos = Number(message['nanos'] ?? 0);
  const base = new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, '');
  return `${base}${fraction(nanos)}Z`;
}

function structToJson(message: Decoded): JsonObject {
  const fields = message['fields'];
  const out: JsonObject = {};
  if (fields === undefined || fields === null) return out;
  for (const [key, value] of Object.entries(asDecoded(fields))) out[key] = valueToJson(asDecoded(value));
  return out;
}

function listToJson(message: Decoded): JsonValue[] {
  const values = message['values'];
  return Array.isArray(values) ? values.map((value: unknown) => valueToJson(asDecoded(value))) : [];
}

function valueToJson(message: Decoded): JsonValue {
  const names = valueFields();
  const has = (key: string): boolean => Object.prototype.hasOwnProperty.call(message, key) && message[key] !== undefined;
  if (has(names.number)) return Number(message[names.number]);
  if (has(names.string)) return String(message[names.string]);
  if (has(names.bool)) return message[names.bool] === true;
  if (has(names.struct)) return structToJson(asDecoded(message[names.struct]));
  if (has(names.list)) return listToJson(asDecoded(message[names.list]));
  return null;
}
