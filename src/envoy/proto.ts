import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import protobuf from 'protobufjs';
import { PROTO_ENUM_VALUE_ADDITIONS, PROTO_FIELD_ADDITIONS, PROTO_MESSAGE_ADDITIONS } from './proto-additions.js';
import { INT64_TYPES, ProtoJsonEncoder, WRAPPER_TYPES } from './proto-encoder.js';
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
  // load reports (LRS) from Envoy
  'envoy/service/load_stats/v3/lrs.proto',
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
  'envoy/extensions/filters/http/json_to_metadata/v3/json_to_metadata.proto',
  'envoy/extensions/http/early_header_mutation/header_mutation/v3/header_mutation.proto',
  'envoy/extensions/filters/http/buffer/v3/buffer.proto',
  'envoy/extensions/filters/http/set_metadata/v3/set_metadata.proto',
  'envoy/extensions/filters/http/credential_injector/v3/credential_injector.proto',
  'envoy/extensions/http/injected_credentials/generic/v3/generic.proto',
  'envoy/extensions/filters/http/stateful_session/v3/stateful_session.proto',
  'envoy/extensions/http/stateful_session/header/v3/header.proto',
  // retries, upstream protocol options, access logs, regex engine
  'envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto',
  'envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/extensions/access_loggers/file/v3/file.proto',
  'envoy/extensions/access_loggers/filters/cel/v3/cel.proto',
  'envoy/extensions/regex_engines/v3/google_re2.proto',
  // tracing (OpenTelemetry, OTLP over gRPC)
  'envoy/config/trace/v3/opentelemetry.proto',
  // the AI extension's ext_proc service
  'envoy/service/ext_proc/v3/external_processor.proto',
  // generic typed config
  'xds/type/v3/typed_struct.proto',
  'udpa/type/v1/typed_struct.proto',
];

/** Include roots inside @grpc/grpc-js-xds's `deps/`, searched in this order. */
const DEPS_INCLUDE_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'] as const;

let loadedRoot: protobuf.Root | undefined;

/**
 * The protobufjs Root of every type Switchyard encodes or decodes (snake_case field names), built
 * once from the compact descriptor (compactDescriptor): the one `npm run build` wrote next to this
 * module when it matches the installed protos, else one derived from the .proto files now.
 */
export function protoRoot(): protobuf.Root {
  loadedRoot ??= rootOf(builtDescriptor() ?? compactDescriptor(parseProtos()));
  return loadedRoot;
}

function rootOf(descriptor: CompactDescriptor): protobuf.Root {
  const root = protobuf.Root.fromJSON(descriptor.root);
  root.resolveAll();
  return root;
}

/** Written by `npm run build` (scripts/gen-envoy-protos.mjs) beside the compiled proto.js. */
export const DESCRIPTOR_FILE = 'envoy-protos.json';

export interface CompactDescriptor {
  /** descriptorKey() of the protos it was derived from. */
  key: string;
  root: protobuf.INamespace;
}

/**
 * What a compact descriptor depends on: the protos' package, protobufjs (its JSON format), the
 * entry files and the additions. A descriptor with another key is stale and not used.
 */
export function descriptorKey(): string {
  const require = createRequire(import.meta.url);
  const version = (pkg: string): string => (require(`${pkg}/package.json`) as { version: string }).version;
  return JSON.stringify({
    format: 1,
    grpcJsXds: version('@grpc/grpc-js-xds'),
    protobufjs: version('protobufjs'),
    entries: ENTRY_PROTOS,
    messages: PROTO_MESSAGE_ADDITIONS,
    fields: PROTO_FIELD_ADDITIONS,
  });
}

/** The build's descriptor, or undefined when there is none (running from src/) or it is stale. */
function builtDescriptor(): CompactDescriptor | undefined {
  const file = new URL(DESCRIPTOR_FILE, import.meta.url);
  if (!existsSync(file)) return undefined;
  const descriptor = JSON.parse(readFileSync(file, 'utf8')) as CompactDescriptor;
  return descriptor.key === descriptorKey() ? descriptor : undefined;
}

/** Options the encoder and decoder read (through protobufjs' features); the rest are annotations. */
const KEPT_OPTIONS = new Set(['packed', 'proto3_optional']);

/**
 * `root` reduced to what encoding and decoding need: the types of the entry files and the
 * additions, the types their fields use, transitively, and the services; without options other
 * than KEPT_OPTIONS (toJSON leaves comments out). The validation and documentation annotations,
 * and the descriptor.proto and validate.proto types only they use, are about a fifth of the types
 * and almost half of the heap the parsed files keep (5.7 -> 3.1 MB; issue 9).
 */
export function compactDescriptor(root: protobuf.Root): CompactDescriptor {
  const kept = new Set<string>();
  const keep = (type: protobuf.Type | protobuf.Enum): void => {
    if (kept.has(type.fullName)) return;
    kept.add(type.fullName);
    if (type instanceof protobuf.Type) {
      for (const field of type.fieldsArray) {
        if (field.resolvedType !== null) keep(field.resolvedType);
      }
    }
  };
  const isEntry = (object: protobuf.ReflectionObject): boolean =>
    object.filename === null || ENTRY_PROTOS.some((entry) => object.filename?.endsWith(`/${entry}`) === true);
  const visit = (namespace: protobuf.NamespaceBase): void => {
    for (const nested of namespace.nestedArray) {
      if ((nested instanceof protobuf.Type || nested instanceof protobuf.Enum) && isEntry(nested)) keep(nested);
      if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type) visit(nested);
    }
  };
  visit(root);
  const json = root.toJSON();
  prune(json, '', kept);
  return { key: descriptorKey(), root: json };
}

type DescriptorNode = protobuf.INamespace & Partial<protobuf.IType> & Partial<protobuf.IEnum> & Partial<protobuf.IService> & { valuesOptions?: unknown };

/** Removes from `node` (the JSON of the namespace `fullName`) what compactDescriptor leaves out; true when nothing is left. */
function prune(node: DescriptorNode, fullName: string, kept: ReadonlySet<string>): boolean {
  node.options = keptOptions(node.options);
  if (node.options === undefined) delete node.options;
  for (const field of Object.values(node.fields ?? {})) {
    field.options = keptOptions(field.options);
    if (field.options === undefined) delete field.options;
  }
  for (const oneof of Object.values(node.oneofs ?? {})) delete oneof.options;
  delete node.valuesOptions;
  for (const [name, nested] of Object.entries(node.nested ?? {})) {
    if (prune(nested as DescriptorNode, `${fullName}.${name}`, kept)) delete node.nested?.[name];
  }
  if (node.nested !== undefined && Object.keys(node.nested).length === 0) delete node.nested;
  const isType = node.fields !== undefined || node.values !== undefined;
  if (isType) return !kept.has(fullName) && node.nested === undefined;
  return node.methods === undefined && node.nested === undefined;
}

function keptOptions(options: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (options === undefined) return undefined;
  const kept = Object.entries(options).filter(([name]) => KEPT_OPTIONS.has(name));
  return kept.length > 0 ? Object.fromEntries(kept) : undefined;
}

/** Every ENTRY_PROTOS file parsed, with the additions: what compactDescriptor is derived from. */
export function parseProtos(): protobuf.Root {
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
  for (const addition of PROTO_MESSAGE_ADDITIONS) {
    // The bundled protos caught up: the addition is no longer needed.
    if (root.lookup(addition.message) !== null) continue;
    const dot = addition.message.lastIndexOf('.');
    const type = new protobuf.Type(addition.message.slice(dot + 1));
    for (const f of addition.fields) type.add(new protobuf.Field(f.field, f.id, f.type));
    const namespace = root.lookup(addition.message.slice(0, dot));
    if (!(namespace instanceof protobuf.Namespace)) throw new Error(`proto addition ${addition.message}: no package ${addition.message.slice(0, dot)}`);
    namespace.add(type);
  }
  for (const addition of PROTO_ENUM_VALUE_ADDITIONS) {
    const e = root.lookupEnum(addition.enum);
    const taken = e.valuesById[addition.id];
    if (taken !== undefined) {
      // The bundled protos caught up: the addition is no longer needed.
      if (taken === addition.value) continue;
      throw new Error(`proto addition ${addition.enum}.${addition.value} = ${addition.id} clashes with value ${taken}`);
    }
    e.add(addition.value, addition.id);
  }
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
// proto3 JSON → binary (compiled per message type: proto-encoder.ts)

let jsonEncoder: ProtoJsonEncoder | undefined;

function encoder(): ProtoJsonEncoder {
  jsonEncoder ??= new ProtoJsonEncoder(messageType);
  return jsonEncoder;
}

/**
 * Encodes one resource (proto3 JSON with `@type`) to the binary form of its message (not wrapped
 * in Any). Strict where protobufjs' fromObject is lenient: an unknown field, a wrong value type,
 * two members of one oneof or an unknown `@type` throw an Error that names the JSON path.
 */
export function encodeResource(resource: EnvoyResource): Uint8Array {
  const typeUrl = resource['@type'];
  if (typeof typeUrl !== 'string') throw new Error('Envoy resource has no @type');
  return encoder().encodeResource(resource, () => rootPath(resource));
}

/**
 * Encodes a resource wrapped in a google.protobuf.Any, the bytes a discovery response carries,
 * equal to protobufjs' Any of encodeResource's bytes. `kept`: for bytes held while the resource
 * is served; otherwise they are only valid until the next encode.
 */
export function encodeResourceAny(resource: EnvoyResource, kept = true): Uint8Array {
  if (typeof resource['@type'] !== 'string') throw new Error('Envoy resource has no @type');
  return encoder().encodeResourceAny(resource, () => rootPath(resource), kept);
}

/**
 * The bytes of the last encodeResourceAny(resource, false), kept: so that a caller can hash the
 * scratch bytes first and copy only those it keeps (from `start` up to `end`: the others being
 * held elsewhere). Valid only before any other encode.
 */
export function keepLastEncoded(end?: number, start?: number): Uint8Array {
  return encoder().keepLast(end, start);
}

/**
 * The bytes of the last encodeResourceAny(resource, false) are already kept as `bytes()` (equal
 * bytes: a served resource it was encoded to compare with): the pieces in it read them from
 * there (reuseEncodedPieces); `bytes` is called only when it has pieces. Valid only before any
 * other encode.
 */
export function keepLastEncodedIn(bytes: () => Uint8Array): void {
  encoder().keepPiecesIn(bytes);
}

/**
 * Declares `values`, message values of type `typeName` that are never changed once built,
 * pieces whose bytes are kept from their first encode and copied into every later one
 * (ProtoJsonEncoder.reusePieces).
 */
export function reuseEncodedPieces(typeName: string, values: readonly object[]): void {
  encoder().reusePieces(typeName, values);
}

/**
 * `values` (deep-frozen message values of `typeName` that many resources share) are encoded once
 * and copied into every later encode (ProtoJsonEncoder.encodeOnce). Declaring loads nothing.
 */
export function encodeOnce(typeName: string, values: readonly object[]): void {
  encoder().encodeOnce(typeName, values);
}

/** The bytes a piece (reuseEncodedPieces) is copied from into the next encodes, once it was kept; undefined before. */
export function encodedPieceBytes(value: object): Uint8Array | undefined {
  return encoder().pieceBytes(value);
}

/** Encodes any loaded message from proto3 JSON (no `@type` at the top), as strictly as encodeResource. */
export function encodeMessage(typeName: string, json: JsonObject, jsonPath = typeName): Uint8Array {
  return encoder().encodeMessage(typeName, json, jsonPath);
}

function rootPath(resource: EnvoyResource): string {
  const kind = kindOfTypeUrl(resource['@type']);
  const name = resource['cluster_name'] ?? resource['name'];
  const label = typeof name === 'string' && name !== '' ? name : '?';
  return `${kind !== undefined ? KIND_FIELD[kind] : typeNameOfUrl(resource['@type'])}[${label}]`;
}

// Shared with the decoder below.

/** Field values as protobufjs messages hold them: plain objects, numbers for enums. */
type Plain = { [key: string]: PlainValue };
type PlainValue = string | number | boolean | Uint8Array | Plain | PlainValue[];

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
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

function shortName(type: protobuf.ReflectionObject): string {
  return type.fullName.replace(/^\./, '');
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
  ...Object.fromEntries([...WRAPPER_TYPES].map((name) => [name, wrapperToJson])),
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
