/**
 * The compact descriptor (src/envoy/proto.ts compactDescriptor) that serve loads instead of the
 * .proto files: every type it keeps is the parsed files' type, field for field, and encodes the
 * same bytes; what it leaves out is annotation only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateManifests, inputsFrom } from '../../bench/translate.js';
import { toXdsResources } from '../../src/envoy/index.js';
import { compactDescriptor, parseProtos, protoRoot, typeNameOfUrl } from '../../src/envoy/proto.js';
import { ProtoJsonEncoder } from '../../src/envoy/proto-encoder.js';
import type { EnvoyResource, XdsResources } from '../../src/envoy/resources.js';
import { translate } from '../../src/translate/index.js';
import { envoyResources, snapshotOf } from '../golden/render.js';

const HERE = dirname(fileURLToPath(import.meta.url));

let parsed: protobuf.Root;
let compact: protobuf.Root;

beforeAll(() => {
  parsed = parseProtos();
  compact = protobuf.Root.fromJSON(compactDescriptor(parsed).root);
  compact.resolveAll();
});

function typesOf(namespace: protobuf.NamespaceBase, out: (protobuf.Type | protobuf.Enum)[] = []): (protobuf.Type | protobuf.Enum)[] {
  for (const nested of namespace.nestedArray) {
    if (nested instanceof protobuf.Type || nested instanceof protobuf.Enum) out.push(nested);
    if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type) typesOf(nested, out);
  }
  return out;
}

/**
 * What encoding and decoding read of a type (`packed` only matters for repeated fields). Resolved
 * first: a field added to a parsed type after its file was resolved (src/envoy/proto-additions.ts)
 * is resolved only when protobufjs first uses it.
 */
function shape(type: protobuf.Type | protobuf.Enum): unknown {
  if (type instanceof protobuf.Enum) return { values: type.values };
  return type.fieldsArray.map((f) => f.resolve()).map((f) => ({
    name: f.name, id: f.id, type: f.resolvedType?.fullName ?? f.type, repeated: f.repeated, map: f instanceof protobuf.MapField ? f.keyType : undefined,
    packed: f.repeated ? f.packed : undefined, delimited: f.delimited, oneof: f.partOf?.name, optional: f.optional,
  }));
}

function all(xds: XdsResources): EnvoyResource[] {
  return [...xds.clusters, ...xds.endpoints, ...xds.secrets, ...xds.listeners, ...xds.routes];
}

function realisticResources(): EnvoyResource[] {
  const golden = join(HERE, '..', 'golden');
  const examples = join(HERE, '..', '..', 'examples');
  const file = (dir: string, f: string) => ({ name: f, text: readFileSync(join(dir, f), 'utf8') });
  const cases = readdirSync(golden).filter((f) => f.endsWith('.in.yaml')).map((f) => [file(golden, f)]);
  cases.push(readdirSync(examples).filter((f) => f.endsWith('.yaml')).sort().map((f) => file(examples, f)));
  return [...cases.flatMap((files) => all(envoyResources(snapshotOf(files).inputs))), ...all(toXdsResources(translate(inputsFrom(generateManifests(5))).ir))];
}

describe('the compact descriptor of the Envoy protos', () => {
  it('describes every type it keeps as the parsed .proto files do, field for field', () => {
    const kept = typesOf(compact);
    expect(kept.length).toBeGreaterThan(300);
    for (const type of kept) {
      const original = parsed.lookup(type.fullName);
      expect(original, type.fullName).not.toBeNull();
      expect(shape(type), type.fullName).toEqual(shape(original as protobuf.Type | protobuf.Enum));
    }
    // Repeated scalars stay packed (proto3's default, resolved from each file's syntax).
    const endpointStatuses = compact.lookupType('envoy.config.cluster.v3.Cluster.CommonLbConfig').fieldsArray.find((f) => f.name === 'override_host_status');
    expect(endpointStatuses?.resolvedType?.fullName).toBe('.envoy.config.core.v3.HealthStatusSet');
    expect(compact.lookupType('envoy.config.core.v3.HealthStatusSet').fields['statuses']?.packed).toBe(true);
  });

  it('encodes every golden, example and bench resource to the bytes the parsed files give', () => {
    const fromParsed = new ProtoJsonEncoder((name) => parsed.lookupType(name));
    const fromCompact = new ProtoJsonEncoder((name) => compact.lookupType(name));
    const resources = realisticResources();
    expect(resources.length).toBeGreaterThan(100);
    for (const resource of resources) {
      const where = () => `${typeNameOfUrl(resource['@type'])}[${String(resource['name'] ?? resource['cluster_name'])}]`;
      expect(Buffer.from(fromCompact.encodeResource(resource, where)).equals(Buffer.from(fromParsed.encodeResource(resource, where))), where()).toBe(true);
    }
  });

  it('leaves out the annotations and the types only annotations use', () => {
    expect(parsed.lookup('validate.FieldRules')).not.toBeNull();
    expect(parsed.lookup('google.protobuf.FileDescriptorProto')).not.toBeNull();
    expect(compact.lookup('validate.FieldRules')).toBeNull();
    expect(compact.lookup('google.protobuf.FileDescriptorProto')).toBeNull();
    const options = new Set<string>();
    const collect = (o: protobuf.ReflectionObject) => Object.keys(o.options ?? {}).forEach((k) => options.add(k));
    for (const type of typesOf(compact)) {
      collect(type);
      if (type instanceof protobuf.Type) type.fieldsArray.forEach(collect);
    }
    expect([...options].filter((o) => o !== 'packed' && o !== 'proto3_optional')).toEqual([]);
    expect(typesOf(compact).length).toBeLessThan(typesOf(parsed).length);
  });

  it('is what protoRoot serves (derived at start when no build wrote one)', () => {
    expect(shape(protoRoot().lookupType('envoy.config.cluster.v3.Cluster'))).toEqual(shape(compact.lookupType('envoy.config.cluster.v3.Cluster')));
    expect(protoRoot().lookup('validate.FieldRules')).toBeNull();
  });
});
