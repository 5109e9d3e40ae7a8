import { describe, expect, it } from 'vitest';
import { decodeMessage } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache, type CacheChange } from '../../src/xds/cache.js';

function cluster(name: string, connectTimeout = '1s'): EnvoyResource {
  return { '@type': TypeUrl.cluster, name, type: 'EDS', connect_timeout: connectTimeout, eds_cluster_config: { eds_config: { ads: {} } } };
}

function assignment(name: string, port: number): EnvoyResource {
  return {
    '@type': TypeUrl.endpoint,
    cluster_name: name,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
  };
}

function config(overrides: Partial<XdsResources> = {}): XdsResources {
  return {
    listeners: [],
    routes: [{ '@type': TypeUrl.route, name: 'r', virtual_hosts: [{ name: 'all', domains: ['*'] }] }],
    clusters: [cluster('a'), cluster('b')],
    endpoints: [assignment('a', 1001), assignment('b', 1002)],
    secrets: [],
    ...overrides,
  };
}

describe('SnapshotCache', () => {
  it('gives the same versions to the same configuration, even after a restart or with keys reordered', () => {
    const first = new SnapshotCache();
    first.setResources(config());
    const restarted = new SnapshotCache();
    const reordered = config({
      clusters: [
        { eds_cluster_config: { eds_config: { ads: {} } }, connect_timeout: '1s', type: 'EDS', name: 'b', '@type': TypeUrl.cluster },
        cluster('a'),
      ],
    });
    restarted.setResources(reordered);
    for (const typeUrl of Object.values(TypeUrl)) {
      expect(restarted.snapshot(typeUrl)?.version).toBe(first.snapshot(typeUrl)?.version);
    }
    expect(restarted.snapshot(TypeUrl.cluster)?.resources.get('b')?.version).toBe(first.snapshot(TypeUrl.cluster)?.resources.get('b')?.version);
  });

  it('encodes each resource once and re-encodes only what changed', () => {
    const cache = new SnapshotCache();
    cache.setResources(config());
    expect(cache.encodedCount).toBe(5);
    const before = cache.snapshot(TypeUrl.cluster);
    const endpointsBefore = cache.snapshot(TypeUrl.endpoint)?.version;

    const change = cache.setResources(config({ clusters: [cluster('a'), cluster('b', '2s')] }));

    expect(cache.encodedCount).toBe(6);
    expect(change.changed).toEqual([TypeUrl.cluster]);
    const after = cache.snapshot(TypeUrl.cluster);
    expect(after?.version).not.toBe(before?.version);
    // The unchanged cluster keeps its very bytes; the changed one has new bytes and version.
    expect(after?.resources.get('a')?.any).toBe(before?.resources.get('a')?.any);
    expect(after?.resources.get('b')?.version).not.toBe(before?.resources.get('b')?.version);
    expect(cache.snapshot(TypeUrl.endpoint)?.version).toBe(endpointsBefore);
  });

  it('wraps each resource in an Any that decodes to the resource', () => {
    const cache = new SnapshotCache();
    cache.setResources(config());
    const any = cache.snapshot(TypeUrl.endpoint)?.resources.get('b')?.any;
    expect(any).toBeDefined();
    expect(decodeMessage('envoy.service.discovery.v3.Resource', wrapInResource(any ?? new Uint8Array()))).toEqual({
      resource: assignment('b', 1002),
    });
  });

  it('notifies watchers of the changed types in make-before-break order, and not at all when nothing changed', () => {
    const cache = new SnapshotCache();
    const changes: CacheChange[] = [];
    cache.watch((change) => changes.push(change));
    cache.setResources(config());
    expect(changes.map((change) => change.changed)).toEqual([
      [TypeUrl.cluster, TypeUrl.endpoint, TypeUrl.secret, TypeUrl.listener, TypeUrl.route],
    ]);
    expect(cache.setResources(config()).changed).toEqual([]);
    cache.setResources(config({ routes: [], endpoints: [assignment('a', 1001)], clusters: [cluster('a')] }));
    expect(changes).toHaveLength(2);
    expect(changes[1]?.changed).toEqual([TypeUrl.cluster, TypeUrl.endpoint, TypeUrl.route]);
    expect(cache.snapshot(TypeUrl.cluster)?.resources.has('b')).toBe(false);
  });

  it('stops notifying a watcher that unsubscribed', () => {
    const cache = new SnapshotCache();
    let calls = 0;
    const unwatch = cache.watch(() => calls++);
    cache.setResources(config());
    unwatch();
    cache.setResources(config({ clusters: [] }));
    expect(calls).toBe(1);
  });

  it('rejects an invalid resource and keeps the previous snapshot whole', () => {
    const cache = new SnapshotCache();
    cache.setResources(config());
    const version = cache.snapshot(TypeUrl.cluster)?.version;
    const bad = { ...cluster('c'), lb_polcy: 'ROUND_ROBIN' };
    expect(() => cache.setResources(config({ clusters: [cluster('a'), bad], routes: [] }))).toThrow('clusters[c].lb_polcy: unknown field');
    expect(cache.snapshot(TypeUrl.cluster)?.version).toBe(version);
    expect(cache.snapshot(TypeUrl.route)?.resources.size).toBe(1);
  });

  it('rejects duplicate names and resources filed under the wrong type', () => {
    const cache = new SnapshotCache();
    expect(() => cache.setResources(config({ clusters: [cluster('a'), cluster('a')] }))).toThrow('clusters[a]: two resources share this name');
    expect(() => cache.setResources(config({ listeners: [cluster('a')] }))).toThrow(/listeners\[0\]: @type is .*Cluster, expected .*Listener/);
    expect(cache.ready).toBe(false);
  });
});

/** A `Resource` message with only field 2 (resource: Any) set. */
function wrapInResource(any: Uint8Array): Uint8Array {
  const header = Buffer.from([0x12, ...varint(any.length)]);
  return Buffer.concat([header, any]);
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest > 127) {
    bytes.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  bytes.push(rest);
  return bytes;
}
