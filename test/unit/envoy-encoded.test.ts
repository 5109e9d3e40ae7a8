/**
 * The Envoy stage keeps Clusters, ClusterLoadAssignments and Secrets as encoded stand-ins
 * (src/envoy/encoded.ts): they read as the JSON they were built from, the cache serves their
 * bytes without encoding them again, and a served resource's bytes are held once.
 */
import { describe, expect, it } from 'vitest';
import { encodedForm, encodedStandIn } from '../../src/envoy/encoded.js';
import { encodeResource, encodeResourceAny } from '../../src/envoy/proto.js';
import { REDACTED, redactSecrets } from '../../src/envoy/secrets.js';
import { TypeUrl, resourceName, type EnvoyResource } from '../../src/envoy/resources.js';
import { sotwResponseBody } from '../../src/xds/wire.js';
import { SnapshotCache, contentVersion } from '../../src/xds/cache.js';

function cluster(name: string, connectTimeout = '1s'): EnvoyResource {
  return {
    '@type': TypeUrl.cluster,
    name,
    type: 'EDS',
    connect_timeout: connectTimeout,
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
    metadata: { filter_metadata: { 'switchyard.dev': { backend: `ai/${name}`, priority: 0 } } },
  };
}

function assignment(name: string): EnvoyResource {
  return {
    '@type': TypeUrl.endpoint,
    cluster_name: name,
    endpoints: [{ priority: 1, lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 8443 } } }, load_balancing_weight: 2 }] }],
  };
}

function secret(name: string, value: string): EnvoyResource {
  return { '@type': TypeUrl.secret, name, generic_secret: { secret: { inline_string: value } } };
}

/** The same memory (a record makes a new view of its bytes each time it is asked), not only equal bytes. */
function sameMemory(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a !== undefined && b !== undefined && a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.byteLength === b.byteLength;
}

function config(clusters: EnvoyResource[], endpoints: EnvoyResource[] = [], secrets: EnvoyResource[] = []) {
  return { listeners: [], routes: [], clusters, endpoints, secrets };
}

describe('encoded stand-ins', () => {
  it('read as the JSON they were built from: type, name, every field, spread and encoded again to the same bytes', () => {
    for (const json of [cluster('chat'), assignment('chat'), secret('credential/ai/key', 'sk-1')]) {
      const standIn = encodedStandIn(json);
      expect(standIn['@type']).toBe(json['@type']);
      expect(resourceName(standIn)).toBe(resourceName(json));
      expect(standIn).toEqual(json);
      expect({ ...standIn }).toEqual(json);
      expect(JSON.parse(JSON.stringify(standIn))).toEqual(json);
      expect(Buffer.from(encodeResource(standIn)).equals(Buffer.from(encodeResource(json)))).toBe(true);
      expect(contentVersion(standIn)).toBe(contentVersion(json));
      expect(encodedForm(json)).toBeUndefined();
      expect(Buffer.from(encodedForm(standIn)?.any ?? []).equals(Buffer.from(encodeResourceAny(json)))).toBe(true);
    }
  });

  it('cannot be changed: an edit meant for one resource throws', () => {
    const standIn = encodedStandIn(cluster('chat'));
    expect(() => {
      (standIn as Record<string, unknown>)['connect_timeout'] = '9s';
    }).toThrow(TypeError);
    expect(() => {
      delete (standIn as Record<string, unknown>)['type'];
    }).toThrow(TypeError);
    expect(standIn['connect_timeout']).toBe('1s');
  });

  it('throws as encoding does when a resource cannot be encoded, naming it', () => {
    expect(() => encodedStandIn({ ...cluster('broken'), lb_policy: 'NO_SUCH_POLICY' })).toThrow(/clusters\[broken\]/);
  });

  it('are served by the cache with their own bytes and version, as the same JSON would be', () => {
    const standIns = [encodedStandIn(cluster('a')), encodedStandIn(cluster('b', '2s'))];
    const cache = new SnapshotCache();
    cache.setResources(config(standIns, [encodedStandIn(assignment('a'))], [encodedStandIn(secret('s', 'sk-2'))]));
    const fresh = new SnapshotCache();
    fresh.setResources(config([cluster('a'), cluster('b', '2s')], [assignment('a')], [secret('s', 'sk-2')]));
    for (const typeUrl of [TypeUrl.cluster, TypeUrl.endpoint, TypeUrl.secret]) {
      expect(cache.snapshot(typeUrl)?.version).toBe(fresh.snapshot(typeUrl)?.version);
    }
    const a = cache.snapshot(TypeUrl.cluster)?.resources.get('a');
    // The stand-in's own bytes, not a copy made by encoding it again.
    expect(sameMemory(a?.any, encodedForm(standIns[0] as EnvoyResource)?.any)).toBe(true);
    expect(a?.version).toBe(fresh.snapshot(TypeUrl.cluster)?.resources.get('a')?.version);
  });

  it('hold the bytes the cache holds: an equal rebuilt resource takes the served bytes, and a sent response\'s copy replaces both', () => {
    const cache = new SnapshotCache();
    const first = encodedStandIn(cluster('a'));
    cache.setResources(config([first, encodedStandIn(cluster('b'))]));
    const served = cache.snapshot(TypeUrl.cluster)?.resources.get('a');
    const encodes = cache.encodedCount;
    // Built again, equal: the cache keeps its entry, and the new stand-in lets its own copy go.
    const rebuilt = encodedStandIn(cluster('a'));
    expect(sameMemory(encodedForm(rebuilt)?.any, served?.any)).toBe(false);
    cache.setResources(config([rebuilt, encodedStandIn(cluster('b'))]));
    expect(cache.encodedCount).toBe(encodes);
    expect(cache.snapshot(TypeUrl.cluster)?.resources.get('a')).toBe(served);
    expect(sameMemory(encodedForm(rebuilt)?.any, served?.any)).toBe(true);
    // The first stand-in's record is the cache's entry: one object per resource.
    expect(encodedForm(first)).toBe(served);
    // A SotW response copies the bytes into a run of its own: the entry and the stand-in keep that copy.
    const encodedAt = served?.any;
    const resources = [...(cache.snapshot(TypeUrl.cluster)?.resources.values() ?? [])];
    sotwResponseBody(TypeUrl.cluster, 'v1', resources);
    const kept = cache.snapshot(TypeUrl.cluster)?.resources.get('a')?.any;
    expect(Buffer.from(kept ?? []).equals(Buffer.from(encodedAt ?? []))).toBe(true);
    expect(sameMemory(kept, encodedAt)).toBe(false);
    expect(sameMemory(encodedForm(rebuilt)?.any, kept)).toBe(true);
  });
});

describe('encoded stand-ins of one type', () => {
  it('hold the type_url their bytes start with once for all of them, and read, encode and serve as their whole bytes', () => {
    const n = 2000;
    const json = (i: number): EnvoyResource => secret(`credential/ai/key-${i}`, `sk-${i}`);
    const whole = Array.from({ length: n }, (_, i) => Buffer.from(encodeResourceAny(json(i))));
    // The Any's type_url field: tag, length, the URL (about 70 of a credential's 110 bytes).
    const head = 2 + TypeUrl.secret.length;
    const before = process.memoryUsage().arrayBuffers;
    const standIns = Array.from({ length: n }, (_, i) => encodedStandIn(json(i)));
    const grown = process.memoryUsage().arrayBuffers - before;
    const wholeBytes = whole.reduce((sum, b) => sum + b.byteLength, 0);
    // Whole, they would hold at least their whole bytes (the versions' digests come on top);
    // sharing the type_url, each holds the rest, 8-byte aligned.
    expect(n * head).toBeGreaterThan(wholeBytes / 2);
    expect(grown).toBeLessThan(wholeBytes);
    for (const i of [0, 1, 999, n - 1]) {
      expect(Buffer.from(encodedForm(standIns[i] as EnvoyResource)?.any ?? []).equals(whole[i] as Buffer)).toBe(true);
      expect(standIns[i]).toEqual(json(i));
    }
    const cache = new SnapshotCache();
    cache.setResources(config([], [], standIns));
    const fresh = new SnapshotCache();
    fresh.setResources(config([], [], standIns.map((_, i) => json(i))));
    const body = (c: SnapshotCache): Buffer => Buffer.concat(sotwResponseBody(TypeUrl.secret, 'v1', [...(c.snapshot(TypeUrl.secret)?.resources.values() ?? [])]).pieces);
    expect(cache.snapshot(TypeUrl.secret)?.version).toBe(fresh.snapshot(TypeUrl.secret)?.version);
    expect(body(cache).equals(body(fresh))).toBe(true);
    // Served once, a record holds its whole bytes in the response's run.
    expect(Buffer.from(cache.snapshot(TypeUrl.secret)?.resources.get('credential/ai/key-5')?.any ?? []).equals(whole[5] as Buffer)).toBe(true);
    // Retired before it was ever served (replaced while an older snapshot holds it), a record keeps its bytes.
    const unserved = encodedForm(encodedStandIn(json(7)));
    unserved?.retire();
    expect(Buffer.from(unserved?.any ?? []).equals(whole[7] as Buffer)).toBe(true);
  });
});

describe('encoded stand-ins built alike', () => {
  /** A Cluster whose encoding ends in `ending` (metadata is its last field here), as every AI Backend's Cluster ends in its ext_proc filter. */
  const alike = (name: string, ending: string): EnvoyResource => ({ ...cluster(name), metadata: { filter_metadata: { 'switchyard.dev': { extension: ending } } } });

  it('hold the ending they share once, and read, encode and serve as their whole bytes', () => {
    const ending = 'x'.repeat(2048);
    const before = process.memoryUsage().arrayBuffers;
    const standIns = Array.from({ length: 1000 }, (_, i) => encodedStandIn(alike(`chat-${i}`, ending)));
    const grown = process.memoryUsage().arrayBuffers - before;
    // Whole, 1,000 of them hold 2 MiB; sharing the ending, each holds its head only.
    expect(grown).toBeLessThan(512 * 1024);
    for (const i of [0, 1, 2, 500, 999]) {
      const json = alike(`chat-${i}`, ending);
      expect(Buffer.from(encodedForm(standIns[i] as EnvoyResource)?.any ?? []).equals(Buffer.from(encodeResourceAny(json)))).toBe(true);
      expect(standIns[i]).toEqual(json);
    }
    // Served: a SotW response carries the same bytes as one built from the JSON.
    const cache = new SnapshotCache();
    cache.setResources(config(standIns));
    const fresh = new SnapshotCache();
    fresh.setResources(config(standIns.map((_, i) => alike(`chat-${i}`, ending))));
    const pieces = (c: SnapshotCache): readonly Buffer[] => sotwResponseBody(TypeUrl.cluster, 'v1', [...(c.snapshot(TypeUrl.cluster)?.resources.values() ?? [])]).pieces;
    expect(cache.snapshot(TypeUrl.cluster)?.version).toBe(fresh.snapshot(TypeUrl.cluster)?.version);
    const served = pieces(cache);
    expect(Buffer.concat(served).equals(Buffer.concat(pieces(fresh)))).toBe(true);
    // From then on a record holds its bytes whole, in the response's run.
    const record = cache.snapshot(TypeUrl.cluster)?.resources.get('chat-7');
    expect(record).toBe(encodedForm(standIns[7] as EnvoyResource));
    expect(record?.any.byteLength).toBeGreaterThan(2048);
    expect(served.some((piece) => piece.buffer === record?.any.buffer)).toBe(true);
    expect(Buffer.from(record?.any ?? []).equals(Buffer.from(encodeResourceAny(alike('chat-7', ending))))).toBe(true);
  });

  it('keep apart resources whose endings differ', () => {
    const a = encodedStandIn(alike('a', 'y'.repeat(1024)));
    const b = encodedStandIn(alike('b', 'z'.repeat(1024)));
    const c = encodedStandIn(alike('c', 'y'.repeat(1024)));
    expect(Buffer.from(encodedForm(a)?.any ?? []).equals(Buffer.from(encodeResourceAny(alike('a', 'y'.repeat(1024)))))).toBe(true);
    expect(Buffer.from(encodedForm(b)?.any ?? []).equals(Buffer.from(encodeResourceAny(alike('b', 'z'.repeat(1024)))))).toBe(true);
    expect(Buffer.from(encodedForm(c)?.any ?? []).equals(Buffer.from(encodeResourceAny(alike('c', 'y'.repeat(1024)))))).toBe(true);
  });

  it('a replaced or removed resource, still held by an older snapshot, keeps only its own bytes, not the run of a response they were copied into', () => {
    const cache = new SnapshotCache();
    cache.setResources(config(['a', 'b', 'c'].map((name) => encodedStandIn(cluster(name)))));
    sotwResponseBody(TypeUrl.cluster, 'v1', [...(cache.snapshot(TypeUrl.cluster)?.resources.values() ?? [])]);
    const before = cache.snapshot(TypeUrl.cluster)?.resources;
    const oldA = before?.get('a');
    const oldB = before?.get('b');
    const bytesA = Buffer.from(oldA?.any ?? []);
    // One run holds the three: each entry's bytes are a slice of it.
    expect(oldA?.any.buffer).toBe(before?.get('c')?.any.buffer);
    expect(oldA?.any.byteLength).toBeLessThan(oldA?.any.buffer.byteLength ?? 0);
    // a changes, b goes; c stays in the run.
    cache.setResources(config([encodedStandIn(cluster('a', '2s')), encodedStandIn(cluster('c'))]));
    expect(cache.snapshot(TypeUrl.cluster)?.resources.get('a')).not.toBe(oldA);
    for (const old of [oldA, oldB]) expect(old?.any.byteLength).toBe(old?.any.buffer.byteLength);
    expect(Buffer.from(oldA?.any ?? []).equals(bytesA)).toBe(true);
    expect(encodedForm(oldA?.resource ?? cluster('x'))?.any).toBe(oldA?.any);
    expect(before?.get('c')?.any.byteLength).toBeLessThan(before?.get('c')?.any.buffer.byteLength ?? 0);
  });
});

describe('encoded stand-ins read without decoding', () => {
  it('answer the scalar and shared (frozen) fields the xDS server reads on every push as the JSON had them', () => {
    const shared = Object.freeze({ eds_config: Object.freeze({ ads: Object.freeze({}), resource_api_version: 'V3' }) });
    const json: EnvoyResource = { ...cluster('chat'), eds_cluster_config: shared };
    const standIn = encodedStandIn(json);
    // The very object shared by every Cluster, not a decoded copy.
    expect(standIn['eds_cluster_config']).toBe(shared);
    expect(standIn['type']).toBe('EDS');
    // A field of its own is decoded: equal, not the same object.
    expect(standIn['metadata']).toEqual(json['metadata']);
    expect(standIn['metadata']).not.toBe(json['metadata']);
  });
});

describe('encoded stand-ins and redaction', () => {
  it('are redacted for printing as JSON Secrets are: no secret value, the rest as it was', () => {
    const redacted = redactSecrets(config([], [], [encodedStandIn(secret('credential/ai/key', 'sk-live-123'))]));
    expect(JSON.stringify(redacted)).not.toContain('sk-live-123');
    expect(redacted.secrets).toEqual([{ '@type': TypeUrl.secret, name: 'credential/ai/key', generic_secret: { secret: { inline_string: REDACTED } } }]);
  });
});

