import { describe, expect, it } from 'vitest';
import { decodeMessage } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache, versionOfSet, type CacheChange, type CachedResource } from '../../src/xds/cache.js';
import { changedBetween, everyResource, goneBetween } from '../../src/xds/snapshot-diff.js';

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
    const first = config();
    cache.setResources(first);
    expect(cache.encodedCount).toBe(5);
    const before = cache.snapshot(TypeUrl.cluster);
    const endpointsBefore = cache.snapshot(TypeUrl.endpoint)?.version;

    // As the translator does, the objects of what did not change are handed over again.
    const change = cache.setResources({ ...first, clusters: [first.clusters[0] as EnvoyResource, cluster('b', '2s')] });

    expect(cache.encodedCount).toBe(6);
    expect(change.changed).toEqual([TypeUrl.cluster]);
    const after = cache.snapshot(TypeUrl.cluster);
    expect(after?.version).not.toBe(before?.version);
    // The unchanged cluster keeps its very bytes; the changed one has new bytes and version.
    expect(sameMemory(after?.resources.get('a')?.any, before?.resources.get('a')?.any)).toBe(true);
    expect(after?.resources.get('b')?.version).not.toBe(before?.resources.get('b')?.version);
    expect(cache.snapshot(TypeUrl.endpoint)?.version).toBe(endpointsBefore);

    // An equal resource in a new object keeps the bytes (and version) it had.
    const again = cache.setResources(config({ clusters: [cluster('a'), cluster('b', '2s')] }));
    expect(cache.encodedCount).toBe(6);
    expect(again.changed).toEqual([]);
    expect(cache.snapshot(TypeUrl.cluster)).toBe(after);
    expect(sameMemory(cache.snapshot(TypeUrl.cluster)?.resources.get('b')?.any, after?.resources.get('b')?.any)).toBe(true);
  });

  it('keeps each set version, updated edit by edit, equal to the version of the set computed afresh', () => {
    const cache = new SnapshotCache();
    const gateway = 'ns/gw';
    const view = cache.view(gateway);
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return Math.floor(seed / 65_536) % n;
    };
    let clusters = new Map<string, EnvoyResource>();
    const seen = new Set<string>();
    for (let step = 0; step < 60; step++) {
      const next = new Map(clusters);
      for (let k = 0; k < 1 + random(4); k++) {
        const name = `c${random(12)}`;
        const roll = random(3);
        if (roll === 0) next.delete(name);
        else next.set(name, cluster(name, `${1 + random(3)}s`));
      }
      clusters = next;
      const list = [...clusters.values()];
      const picked = list.filter(() => random(2) === 0).map((r) => r['name'] as string);
      cache.setResources(config({ clusters: list, endpoints: [] }), {
        gateways: new Map([[gateway, { listeners: [], routes: [], clusters: picked, endpoints: [], secrets: [] }]]),
        shared: { excluded: { listeners: [], routes: [], clusters: [], endpoints: [], secrets: [] }, problems: [] },
      });
      const full = cache.snapshot(TypeUrl.cluster);
      const mine = view.snapshot(TypeUrl.cluster);
      expect([...(full?.resources.keys() ?? [])].sort()).toEqual([...clusters.keys()].sort());
      expect(full?.version).toBe(versionOfSet([...(full?.resources.values() ?? [])].map(({ name, version }) => ({ name, version }))));
      expect([...(mine?.resources.keys() ?? [])].sort()).toEqual([...new Set(picked)].sort());
      expect(mine?.version).toBe(versionOfSet([...(mine?.resources.values() ?? [])].map(({ name, version }) => ({ name, version }))));
      // A new cache given the same configuration agrees.
      const fresh = new SnapshotCache();
      fresh.setResources(config({ clusters: list, endpoints: [] }));
      expect(fresh.snapshot(TypeUrl.cluster)?.version).toBe(full?.version);
      seen.add(full?.version ?? '');
    }
    // The versions did move (the test would catch a constant).
    expect(seen.size).toBeGreaterThan(20);
  });

  it('gives a set a version that moves with any member\'s name or content, and not with their order', () => {
    const cache = new SnapshotCache();
    cache.setResources(config({ clusters: [cluster('a'), cluster('b'), cluster('c', '2s')] }));
    const members = [...(cache.snapshot(TypeUrl.cluster)?.resources.values() ?? [])].map(({ name, version }) => ({ name, version }));
    const version = versionOfSet(members);
    expect(cache.snapshot(TypeUrl.cluster)?.version).toBe(version);
    expect(versionOfSet([...members].reverse())).toBe(version);
    // Any member taken away, added twice, or swapped for another: another version.
    const others = new Set([version]);
    for (let i = 0; i < members.length; i++) others.add(versionOfSet(members.filter((_, j) => j !== i)));
    others.add(versionOfSet([...members, members[0] as CachedResource]));
    // Two members' contents swapped: the same versions on other names.
    const [a, b, c] = members as [CachedResource, CachedResource, CachedResource];
    others.add(versionOfSet([{ name: 'a', version: c.version }, b, { name: 'c', version: a.version }]));
    expect(others.size).toBe(members.length + 3);
    // Hand-made versions (not a content hash) are told apart by name as well.
    expect(versionOfSet([{ name: 'a', version: '1' }])).not.toBe(versionOfSet([{ name: 'b', version: '1' }]));
    expect(versionOfSet([{ name: 'a', version: 'AAAAAAAAAAAAAAAA' }])).not.toBe(versionOfSet([{ name: 'a', version: 'AAAAAAAAAAAAAAAB' }]));
  });

  it('keeps every name and version right over hundreds of edits, each changing a few of a thousand resources', () => {
    const cache = new SnapshotCache();
    const gateway = 'ns/gw';
    const view = cache.view(gateway);
    const list = Array.from({ length: 1000 }, (_, i) => cluster(`c${i}`));
    const names = list.map((r) => r['name'] as string);
    const planes = {
      gateways: new Map([[gateway, { listeners: [], routes: [], clusters: names.slice(0, 600), endpoints: [], secrets: [] }]]),
      shared: { excluded: { listeners: [], routes: [], clusters: [], endpoints: [], secrets: [] }, problems: [] },
    };
    for (let step = 1; step <= 400; step++) {
      for (const i of [(step * 7) % 1000, (step * 13 + 1) % 1000, (step * 31 + 2) % 1000]) list[i] = cluster(`c${i}`, `${step}s`);
      const current = step % 50 === 25 ? list.slice(0, 990) : list.slice();
      cache.setResources(config({ clusters: current, endpoints: [] }), planes);
      if (step % 25 !== 0) continue;
      const full = cache.snapshot(TypeUrl.cluster);
      const fresh = new SnapshotCache();
      fresh.setResources(config({ clusters: current, endpoints: [] }));
      expect(full?.resources.size).toBe(current.length);
      expect([...(full?.resources.keys() ?? [])].sort()).toEqual([...(fresh.snapshot(TypeUrl.cluster)?.resources.keys() ?? [])].sort());
      expect(full?.version).toBe(fresh.snapshot(TypeUrl.cluster)?.version);
      for (const r of current) expect(full?.resources.get(r['name'] as string)?.version).toBe(fresh.snapshot(TypeUrl.cluster)?.resources.get(r['name'] as string)?.version);
      const mine = view.snapshot(TypeUrl.cluster);
      expect(mine?.resources.size).toBe(600);
      expect(mine?.version).toBe(versionOfSet(names.slice(0, 600).map((name) => fresh.snapshot(TypeUrl.cluster)?.resources.get(name) ?? { name: '', version: '' })));
    }
  });

  it("keeps a Gateway view's list of every resource in its order when an edit replaces some, each new one in its old one's place", () => {
    const cache = new SnapshotCache();
    const view = cache.view('ns/gw');
    const names = Array.from({ length: 50 }, (_, i) => `c${i}`);
    const planes = {
      gateways: new Map([['ns/gw', { listeners: [], routes: [], clusters: names.filter((_, i) => i % 2 === 0), endpoints: [], secrets: [] }]]),
      shared: { excluded: { listeners: [], routes: [], clusters: [], endpoints: [], secrets: [] }, problems: [] },
    };
    cache.setResources(config({ clusters: names.map((n) => cluster(n)), endpoints: [] }), planes);
    const before = everyResource(view.snapshot(TypeUrl.cluster)?.resources ?? new Map<string, CachedResource>()).map((r) => r.name);
    cache.setResources(config({ clusters: names.map((n) => cluster(n, n === 'c10' || n === 'c42' ? '5s' : '1s')), endpoints: [] }), planes);
    const after = view.snapshot(TypeUrl.cluster)?.resources ?? new Map<string, CachedResource>();
    expect(everyResource(after).map((r) => r.name)).toEqual(before);
    expect(everyResource(after).filter((r) => r.version !== cache.snapshot(TypeUrl.cluster)?.resources.get(r.name)?.version)).toEqual([]);
    expect(everyResource(after).find((r) => r.name === 'c10')).toBe(after.get('c10'));
  });

  it('gives streams every resource, and what changed or went between two snapshots, as a full pass over the maps would, over edits that add, change and remove', () => {
    const cache = new SnapshotCache();
    const gateway = 'ns/gw';
    const view = cache.view(gateway);
    let list = Array.from({ length: 800 }, (_, i) => cluster(`c${i}`));
    const selected = list.filter((_, i) => i % 3 !== 0).map((r) => r['name'] as string);
    const planes = {
      gateways: new Map([[gateway, { listeners: [], routes: [], clusters: selected, endpoints: [], secrets: [] }]]),
      shared: { excluded: { listeners: [], routes: [], clusters: [], endpoints: [], secrets: [] }, problems: [] },
    };
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return Math.floor(seed / 65_536) % n;
    };
    const pairs = (resources: Iterable<CachedResource>): string[] => [...resources].map((r) => `${r.name}@${r.version}`).sort();
    let before: { full: ReadonlyMap<string, CachedResource>; mine: ReadonlyMap<string, CachedResource> } | undefined;
    for (let step = 1; step <= 160; step++) {
      list = list.slice();
      for (let k = 0; k < 5; k++) {
        const at = random(list.length);
        const roll = random(4);
        if (roll === 0) list.splice(at, 1);
        else if (roll === 1) list.splice(at, 0, cluster(`c${random(1000)}`, `${step}s`));
        else list[at] = cluster(list[at]?.['name'] as string, `${step}s`);
      }
      // Names added twice are kept once, as translation would hand them over.
      const seen = new Set<string>();
      list = list.filter((r) => !seen.has(r['name'] as string) && seen.add(r['name'] as string) !== undefined);
      cache.setResources(config({ clusters: list, endpoints: [] }), planes);
      const full = cache.snapshot(TypeUrl.cluster)?.resources ?? new Map<string, CachedResource>();
      const mine = view.snapshot(TypeUrl.cluster)?.resources ?? new Map<string, CachedResource>();
      for (const resources of [full, mine]) {
        expect(everyResource(resources)).toHaveLength(resources.size);
        expect(pairs(everyResource(resources))).toEqual(pairs(resources.values()));
      }
      if (before !== undefined) {
        for (const [previous, next] of [[before.full, full], [before.mine, mine]] as const) {
          expect(pairs(changedBetween(previous, next))).toEqual(pairs([...next.values()].filter((r) => previous.get(r.name)?.version !== r.version)));
          expect([...goneBetween(previous, next).keys()].sort()).toEqual([...previous.keys()].filter((name) => !next.has(name)).sort());
        }
      }
      before = { full, mine };
    }
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
/** The same memory (the cache makes a new view of a resource's bytes each time it is asked), not only equal bytes. */
function sameMemory(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a !== undefined && b !== undefined && a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.byteLength === b.byteLength;
}

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
