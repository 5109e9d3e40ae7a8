/**
 * The compiled encoder (src/envoy/proto-encoder.ts) writes exactly the bytes protobufjs' own
 * generated encoder writes for the same message. The reference path here is different code on
 * purpose: proto3 JSON is lowered only as far as protobufjs' fromObject needs (durations,
 * Struct, wrappers, proto3 defaults dropped), and protobufjs does the rest itself: enum names,
 * 64-bit strings, maps, nested Any by "@type", field order, packing and the encoding.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { generateManifests, inputsFrom } from '../../bench/translate.js';
import { toXdsResources } from '../../src/envoy/index.js';
import { encodeOnce, encodeResource, encodeResourceAny, messageType, reuseEncodedPieces, typeNameOfUrl } from '../../src/envoy/proto.js';
import { TypeUrl, deepFrozen, type EnvoyResource, type JsonObject, type JsonValue, type XdsResources } from '../../src/envoy/resources.js';
import { translate } from '../../src/translate/index.js';
import { envoyResources, snapshotOf } from '../golden/render.js';

const HERE = dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------
// The reference: proto3 JSON lowered for protobufjs' fromObject, then protobufjs' encode.

type Lowered = { [key: string]: unknown };

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const NULLABLE = new Set(['.google.protobuf.Value', '.google.protobuf.NullValue']);

function lowerMessage(type: protobuf.Type, json: JsonValue): unknown {
  switch (type.fullName) {
    case '.google.protobuf.Duration': {
      const match = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(String(json));
      if (!match) throw new Error(`reference: bad duration ${String(json)}`);
      const sign = match[1] ? -1 : 1;
      const seconds = sign * Number(match[2]);
      const nanos = sign * Number((match[3] ?? '').padEnd(9, '0'));
      return { ...(seconds !== 0 ? { seconds } : {}), ...(nanos !== 0 ? { nanos } : {}) };
    }
    case '.google.protobuf.Struct':
      return isObject(json) && Object.keys(json).length > 0
        ? { fields: Object.fromEntries(Object.entries(json).map(([k, v]) => [k, lowerValue(v)])) }
        : {};
    case '.google.protobuf.Value':
      return lowerValue(json);
    case '.google.protobuf.ListValue':
      return Array.isArray(json) && json.length > 0 ? { values: json.map(lowerValue) } : {};
    case '.google.protobuf.Any':
      return lowerAny(json);
  }
  if (type.fullName.startsWith('.google.protobuf.') && type.fullName.endsWith('Value') && type.fields['value']) {
    const valueField = type.fields['value'];
    return isDefault(valueField, json) ? {} : { value: lowerSingle(valueField, json) };
  }
  if (!isObject(json)) throw new Error(`reference: ${type.fullName} from ${JSON.stringify(json)}`);
  const out: Lowered = {};
  for (const [key, value] of Object.entries(json)) {
    if (key === '@type') continue;
    const field = type.fields[key];
    if (!field) throw new Error(`reference: ${type.fullName} has no ${key}`);
    field.resolve();
    if (value === null && !NULLABLE.has(field.resolvedType?.fullName ?? '')) continue;
    if (field instanceof protobuf.MapField) {
      if (!isObject(value) || Object.keys(value).length === 0) continue;
      out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, lowerSingle(field, v)]));
    } else if (field.repeated) {
      if (!Array.isArray(value) || value.length === 0) continue;
      out[key] = value.map((v) => lowerSingle(field, v));
    } else {
      const presence = field.partOf != null || field.resolvedType instanceof protobuf.Type;
      if (!presence && isDefault(field, value)) continue;
      out[key] = lowerSingle(field, value);
    }
  }
  return out;
}

function lowerSingle(field: protobuf.Field, value: JsonValue): unknown {
  if (field.resolvedType instanceof protobuf.Type) return lowerMessage(field.resolvedType, value);
  if (field.type === 'bytes') return Buffer.from(String(value), 'base64');
  return value;
}

function isDefault(field: protobuf.Field, value: JsonValue): boolean {
  if (field.resolvedType instanceof protobuf.Enum) return value === 0 || field.resolvedType.values[String(value)] === 0;
  return value === 0 || value === '0' || value === '' || value === false;
}

/** google.protobuf.Value by field number: protobufjs' bundled struct.proto names them in camelCase. */
function lowerValue(json: JsonValue): Lowered {
  const name = (id: number): string => messageType('google.protobuf.Value').fieldsById[id]?.name ?? '';
  if (json === null) return { [name(1)]: 0 };
  if (typeof json === 'number') return { [name(2)]: json };
  if (typeof json === 'string') return { [name(3)]: json };
  if (typeof json === 'boolean') return { [name(4)]: json };
  if (Array.isArray(json)) return { [name(6)]: lowerMessage(messageType('google.protobuf.ListValue'), json) };
  return { [name(5)]: lowerMessage(messageType('google.protobuf.Struct'), json) };
}

/** protobufjs' fromObject reads "@type" itself; a well-known type inside an Any is encoded here. */
function lowerAny(json: JsonValue): Lowered {
  if (!isObject(json) || typeof json['@type'] !== 'string') throw new Error('reference: Any without @type');
  const inner = messageType(typeNameOfUrl(json['@type']));
  if (inner.fullName.startsWith('.google.protobuf.')) {
    return { type_url: json['@type'], value: referenceEncode(inner, json['value'] ?? null) };
  }
  return { '@type': json['@type'], ...(lowerMessage(inner, json) as Lowered) };
}

function referenceEncode(type: protobuf.Type, json: JsonValue): Uint8Array {
  return type.encode(type.fromObject(lowerMessage(type, json) as Lowered)).finish();
}

function protobufjsBytes(resource: EnvoyResource): Buffer {
  return Buffer.from(referenceEncode(messageType(typeNameOfUrl(resource['@type'])), resource));
}

// ---------------------------------------------------------------------------------------------
// Realistic resources: every golden case, the shipped examples, the bench's multipool Backends.

function all(xds: XdsResources): EnvoyResource[] {
  return [...xds.clusters, ...xds.endpoints, ...xds.secrets, ...xds.listeners, ...xds.routes];
}

function goldenResources(): EnvoyResource[] {
  const golden = join(HERE, '..', 'golden');
  const examples = join(HERE, '..', '..', 'examples');
  const file = (dir: string, f: string) => ({ name: f, text: readFileSync(join(dir, f), 'utf8') });
  const cases = readdirSync(golden).filter((f) => f.endsWith('.in.yaml')).map((f) => [file(golden, f)]);
  cases.push(readdirSync(examples).filter((f) => f.endsWith('.yaml')).sort().map((f) => file(examples, f)));
  return cases.flatMap((files) => all(envoyResources(snapshotOf(files).inputs)));
}

function benchResources(): EnvoyResource[] {
  return all(toXdsResources(translate(inputsFrom(generateManifests(20))).ir));
}

const CLUSTER = TypeUrl.cluster;

/** What translation rarely produces: negative and 64-bit numbers, unicode, bytes, nested Struct, big messages. */
function edgeResources(): EnvoyResource[] {
  return [
    {
      '@type': CLUSTER,
      name: 'ünïcødé-👋',
      alt_stat_name: `${'long '.repeat(20)}👋 end`,
      type: 'EDS',
      dns_refresh_rate: '-1.000000001s',
      per_connection_buffer_limit_bytes: 0,
      common_lb_config: { healthy_panic_threshold: { value: 0 }, override_host_status: { statuses: ['UNKNOWN', 'HEALTHY', 5] } },
      metadata: {
        filter_metadata: { 'switchyard.dev': { list: [1, -2.5, 'x', null, true, { deep: [[], {}] }], empty: {}, big: 1e300 } },
        typed_filter_metadata: {
          duration: { '@type': 'type.googleapis.com/google.protobuf.Duration', value: '315576000000.999999999s' },
          uint64: { '@type': 'type.googleapis.com/google.protobuf.UInt64Value', value: '18446744073709551615' },
          int64: { '@type': 'type.googleapis.com/google.protobuf.Int64Value', value: '-9223372036854775808' },
          negative: { '@type': 'type.googleapis.com/google.protobuf.Int64Value', value: -123456789012 },
          bytes: { '@type': 'type.googleapis.com/google.protobuf.BytesValue', value: Buffer.from('Bearer sk-é').toString('base64') },
        },
      },
      // Listed after fields with larger numbers: written in field-number order all the same.
      connect_timeout: '0.250s',
      lb_policy: 'LEAST_REQUEST',
    },
    {
      '@type': TypeUrl.route,
      name: 'big',
      virtual_hosts: [
        {
          name: 'vh',
          domains: Array.from({ length: 300 }, (_, i) => `host-${i}.example.com`),
          routes: [
            {
              match: { prefix: '/' },
              route: {
                cluster: 'c',
                retry_policy: { retriable_status_codes: [429, 500, 70000], host_selection_retry_max_attempts: '9007199254740993', num_retries: 3 },
              },
            },
          ],
        },
      ],
    },
    { '@type': TypeUrl.secret, name: 'key', generic_secret: { secret: { inline_bytes: Buffer.alloc(20_000, 7).toString('base64') } } },
  ];
}

/** The same message with the fields of every message in reverse order (map and Struct keys keep theirs: their order is data). */
function reverseFields(type: protobuf.Type, json: JsonValue): JsonValue {
  if (!isObject(json)) return json;
  if (type.fullName === '.google.protobuf.Any' && typeof json['@type'] === 'string') {
    const inner = messageType(typeNameOfUrl(json['@type']));
    return inner.fullName.startsWith('.google.protobuf.') ? json : reverseFields(inner, json);
  }
  if (type.fullName.startsWith('.google.protobuf.')) return json;
  const entries = Object.entries(json).reverse().map(([key, value]): [string, JsonValue] => {
    const field = type.fields[key]?.resolve();
    const inner = field?.resolvedType instanceof protobuf.Type ? field.resolvedType : undefined;
    if (field === undefined || inner === undefined) return [key, value];
    if (field instanceof protobuf.MapField && isObject(value)) {
      return [key, Object.fromEntries(Object.entries(value).map(([k, v]) => [k, reverseFields(inner, v)]))];
    }
    if (Array.isArray(value)) return [key, value.map((v) => reverseFields(inner, v))];
    return [key, reverseFields(inner, value)];
  });
  return Object.fromEntries(entries);
}

function mismatches(resources: readonly EnvoyResource[]): string[] {
  return resources
    .filter((r) => !Buffer.from(encodeResource(r)).equals(protobufjsBytes(r)))
    .map((r) => `${r['@type']} ${String(r['name'] ?? r['cluster_name'])}`);
}

describe('compiled encoder = protobufjs encoder', () => {
  it('writes the same bytes for every resource of every golden case and example', () => {
    const resources = goldenResources();
    expect(resources.length).toBeGreaterThan(50);
    expect(mismatches(resources)).toEqual([]);
  });

  it('writes the same bytes for the bench’s multipool Backends (clusters, assignments, secrets, routes)', () => {
    const resources = benchResources();
    expect(resources.length).toBeGreaterThan(100);
    expect(mismatches(resources)).toEqual([]);
  });

  it('writes the same bytes for negative and 64-bit numbers, unicode, bytes, nested Struct and messages over 127 bytes', () => {
    expect(mismatches(edgeResources())).toEqual([]);
  });

  it('writes fields in field-number order whatever the order of the JSON keys', () => {
    for (const resource of benchResources().slice(0, 40)) {
      const reversed = reverseFields(messageType(typeNameOfUrl(resource['@type'])), resource) as EnvoyResource;
      expect(JSON.stringify(reversed)).not.toEqual(JSON.stringify(resource));
      expect(Buffer.from(encodeResource(reversed))).toEqual(Buffer.from(encodeResource(resource)));
    }
  });

  it('wraps resources in the Any protobufjs writes, each kept copy intact once all the others are written', () => {
    const resources = [...goldenResources(), ...benchResources(), ...edgeResources()];
    const Any = messageType('google.protobuf.Any');
    const expected = resources.map((r) => Buffer.from(Any.encode({ type_url: r['@type'], value: protobufjsBytes(r) }).finish()));
    // Kept copies share slabs: every one must still hold its own bytes once all are written.
    const kept = resources.map((r) => encodeResourceAny(r));
    const scratch = resources.map((r) => Buffer.from(encodeResourceAny(r, false)));
    expect(resources.length).toBeGreaterThan(150);
    expect(kept.map((bytes, i) => Buffer.from(bytes).equals(expected[i] as Buffer)).filter((same) => !same)).toEqual([]);
    expect(scratch.map((bytes, i) => bytes.equals(expected[i] as Buffer)).filter((same) => !same)).toEqual([]);
  });

  it('encodes correctly after a resource it rejected half-way', () => {
    const [good] = benchResources();
    if (!good) throw new Error('no resource');
    const expected = Buffer.from(encodeResource(good));
    const bad = { ...good, metadata: { filter_metadata: { x: { ok: 1 } } }, outlier_detection: { interval: 'soon' } };
    expect(() => encodeResource(bad)).toThrow(/outlier_detection\.interval: expected a duration/);
    expect(Buffer.from(encodeResource(good))).toEqual(expected);
  });

  it('copies the bytes of a piece it encoded before, wherever the same object comes again, as protobufjs encodes it', () => {
    const route = (i: number, long: boolean): JsonObject => ({
      name: `ai/chat-${i}/rule/0/match/0`,
      match: { path_separated_prefix: `/chat-${i}` },
      // Over 127 bytes: the piece's length takes two bytes.
      route: { cluster: long ? `backend/ai/${'x'.repeat(200)}` : `backend/ai/chat-${i}`, timeout: '0s' },
    });
    const routes = [route(0, false), route(1, true), route(2, false)];
    reuseEncodedPieces('envoy.config.route.v3.Route', routes);
    const config = (list: JsonObject[]): EnvoyResource => ({ '@type': TypeUrl.route, name: 'l', virtual_hosts: [{ name: 'l/*', domains: ['*'], routes: list }] });
    expect(mismatches([config(routes)])).toEqual([]);
    // Now from the kept pieces, in another order, another host and beside a route never declared a piece.
    const again = config([routes[2] as JsonObject, route(3, true), routes[1] as JsonObject, routes[0] as JsonObject]);
    expect(mismatches([again])).toEqual([]);
    const Any = messageType('google.protobuf.Any');
    expect(Buffer.from(encodeResourceAny(again))).toEqual(Buffer.from(Any.encode({ type_url: TypeUrl.route, value: protobufjsBytes(again) }).finish()));
    // A piece is bytes of its type only: the same object met as another type is encoded as that type.
    const asHost = { name: 'ai/chat-0/rule/0/match/0', domains: [] as string[] };
    reuseEncodedPieces('envoy.config.route.v3.Route', [asHost]);
    expect(mismatches([{ '@type': TypeUrl.route, name: 'l', virtual_hosts: [asHost] }])).toEqual([]);
  });

  it('writes a value declared encoded once as protobufjs encodes it, the first time and every time after, wherever it comes', () => {
    // Over 127 bytes (a length of two bytes), with a nested Any, a Struct and durations.
    const detection = deepFrozen({
      consecutive_5xx: 7,
      interval: '2.500s',
      base_ejection_time: '30s',
      max_ejection_percent: 50,
      split_external_local_origin_errors: true,
    }) as JsonObject;
    const filters = deepFrozen({
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      explicit_http_config: { http_protocol_options: {} },
      http_filters: [
        { name: 'envoy.filters.http.buffer', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer', max_request_bytes: 70000 } },
        { name: 'x'.repeat(140), typed_config: { '@type': 'type.googleapis.com/google.protobuf.Struct', value: { a: [1, 'two', { three: null }] } } },
        { name: 'envoy.filters.http.upstream_codec', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec' } },
      ],
    }) as JsonObject;
    encodeOnce('envoy.config.cluster.v3.OutlierDetection', [detection]);
    encodeOnce('google.protobuf.Any', [filters]);
    const cluster = (i: number, extra: JsonObject = {}): EnvoyResource => ({
      '@type': TypeUrl.cluster,
      name: `c-${i}`,
      connect_timeout: '1s',
      outlier_detection: detection,
      typed_extension_protocol_options: { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': filters },
      ...extra,
    });
    // The first encode keeps the bytes, the later ones copy them: all equal protobufjs' bytes,
    // beside other fields written before and after them and in another field order.
    const clusters = [cluster(0), cluster(1, { lb_policy: 'LEAST_REQUEST' }), reverseFields(messageType('envoy.config.cluster.v3.Cluster'), cluster(2)) as EnvoyResource, cluster(3)];
    expect(mismatches(clusters)).toEqual([]);
    // Inside a message kept in a slab (encodeResourceAny), and as the Any of a listener filter (another field).
    const Any = messageType('google.protobuf.Any');
    expect(Buffer.from(encodeResourceAny(cluster(4)))).toEqual(Buffer.from(Any.encode({ type_url: TypeUrl.cluster, value: protobufjsBytes(cluster(4)) }).finish()));
    // The same object met as another type is encoded as that type (typed_config is field 3 of a
    // TransportSocket, field 2 of a CustomClusterType).
    const socket = deepFrozen({ name: 'envoy.transport_sockets.raw_buffer', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec' } }) as JsonObject;
    encodeOnce('envoy.config.core.v3.TransportSocket', [socket]);
    encodeOnce('envoy.config.cluster.v3.Cluster.CustomClusterType', [socket]);
    expect(mismatches([cluster(5, { transport_socket: socket }), cluster(6, { transport_socket: socket }), cluster(7, { cluster_type: socket })])).toEqual([]);
    expect(() => encodeOnce('google.protobuf.Any', [{ '@type': TypeUrl.cluster, name: 'mutable' }])).toThrow(/not deep-frozen/);
    expect(() => encodeOnce('google.protobuf.Any', [Object.freeze({ '@type': TypeUrl.cluster, metadata: { filter_metadata: {} } })])).toThrow(/not deep-frozen/);
  });
});

/** Paths of `json` (a message of `type`) where a key comes before one with a smaller field number; map and Struct keys are data, not fields. */
function outOfFieldOrder(type: protobuf.Type, json: JsonValue, path: string): string[] {
  if (!isObject(json) || type.fullName.startsWith('.google.protobuf.')) return [];
  const out: string[] = [];
  let last = 0;
  for (const [key, value] of Object.entries(json)) {
    const field = type.fields[key]?.resolve();
    if (field === undefined) continue;
    if (field.id < last) out.push(`${path}.${key}`);
    last = field.id;
    const inner = field.resolvedType instanceof protobuf.Type ? field.resolvedType : undefined;
    if (inner === undefined || field instanceof protobuf.MapField) continue;
    if (Array.isArray(value)) value.forEach((v, i) => out.push(...outOfFieldOrder(inner, v, `${path}.${key}[${i}]`)));
    else out.push(...outOfFieldOrder(inner, value, `${path}.${key}`));
  }
  return out;
}

describe('resources built in field-number order', () => {
  it('ClusterLoadAssignments list every field in field-number order, so the encoder never has to sort one (issue 9)', () => {
    const assignment = messageType('envoy.config.endpoint.v3.ClusterLoadAssignment');
    const resources = [...goldenResources(), ...benchResources()];
    const assignments = [
      ...resources.filter((r) => r['@type'] === TypeUrl.endpoint),
      ...resources.flatMap((r) => (r['@type'] === TypeUrl.cluster && isObject(r['load_assignment']) ? [r['load_assignment']] : [])),
    ];
    // Members with limits (a health check target) and Static Backends' inline assignments among them.
    expect(assignments.length).toBeGreaterThan(60);
    expect(JSON.stringify(assignments)).toContain('health_check_config');
    expect(assignments.flatMap((a, i) => outOfFieldOrder(assignment, a, `[${i}]`))).toEqual([]);
  });
});
