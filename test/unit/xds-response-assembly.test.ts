import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeResource, encodeResourceAny, messageType } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource } from '../../src/envoy/resources.js';
import { SnapshotCache, type CachedResource } from '../../src/xds/cache.js';
import { everyResource } from '../../src/xds/snapshot-diff.js';
import { sotwResponseBody, wireBytes, withNonce, type WireMessage, type WireResource } from '../../src/xds/wire.js';

/**
 * SotW responses are assembled from pieces (the resources' pre-encoded Anys, copied in runs
 * that later responses reuse): the bytes must be exactly protobufjs' encoding of the same
 * DiscoveryResponse, whatever the resources and however the list was edited, and an edit must
 * cost new pieces only where it changed something.
 */

const RESPONSE = 'envoy.service.discovery.v3.DiscoveryResponse';

/** A Cluster of `name`; `pad` grows it (past one-byte lengths and past a run's byte cap). */
function clusterOf(name: string, timeoutSeconds: number, pad: number): EnvoyResource {
  return {
    '@type': TypeUrl.cluster,
    name,
    type: 'STATIC',
    connect_timeout: `${timeoutSeconds}s`,
    ...(pad > 0 ? { alt_stat_name: 'p'.repeat(pad) } : {}),
  };
}

/** A resource as the cache keeps it: a new object, with its Any encoded once. */
function served(resource: EnvoyResource): WireResource {
  return { name: String(resource['name']), any: Buffer.from(encodeResourceAny(resource)) };
}

/** protobufjs' own encoding of the response, the reference. */
function reference(typeUrl: string, version: string, resources: readonly EnvoyResource[], nonce: string): Uint8Array {
  return messageType(RESPONSE)
    .encode({ version_info: version, resources: resources.map((r) => ({ type_url: r['@type'], value: encodeResource(r) })), type_url: typeUrl, nonce })
    .finish();
}

const clusterArb = fc.record({
  name: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
  timeout: fc.integer({ min: 1, max: 600 }),
  pad: fc.oneof(
    { arbitrary: fc.constant(0), weight: 3 },
    { arbitrary: fc.integer({ min: 1, max: 300 }), weight: 3 },
    { arbitrary: fc.integer({ min: 16_000, max: 20_000 }), weight: 2 },
    { arbitrary: fc.integer({ min: 64 * 1024 - 100, max: 70_000 }), weight: 1 },
  ),
});

type Edit = { kind: 'replace' | 'retime' | 'insert' | 'remove'; at: number; cluster: { name: string; timeout: number; pad: number } };
/** `retime`: the same Cluster with another one-digit timeout, so of the same size (a run of the same length must still be rebuilt). */
const editArb: fc.Arbitrary<Edit> = fc.record({ kind: fc.constantFrom('replace' as const, 'retime' as const, 'insert' as const, 'remove' as const), at: fc.nat(), cluster: clusterArb });

describe('SotW response assembly', () => {
  it('equals protobufjs byte for byte, through random edit sequences', () => {
    fc.assert(
      fc.property(fc.array(clusterArb, { maxLength: 300 }), fc.array(editArb, { maxLength: 8 }), fc.string({ maxLength: 20 }), (initial, edits, version) => {
        let clusters = initial.map((c) => ({ ...c, timeout: 1 + (c.timeout % 9) }));
        let list = clusters.map((c) => clusterOf(c.name, c.timeout, c.pad));
        let wire = list.map(served);
        const check = (step: number): void => {
          const nonce = `n${step}`;
          const assembled = wireBytes(withNonce(sotwResponseBody(TypeUrl.cluster, `${version}${step}`, wire), nonce));
          expect(Buffer.compare(assembled, Buffer.from(reference(TypeUrl.cluster, `${version}${step}`, list, nonce)))).toBe(0);
        };
        check(0);
        edits.forEach((edit, step) => {
          const at = list.length === 0 ? 0 : edit.at % list.length;
          const old = clusters[at];
          const next = edit.kind === 'retime' && old !== undefined ? { ...old, timeout: 1 + (old.timeout % 9) } : { ...edit.cluster, timeout: 1 + (edit.cluster.timeout % 9) };
          const resource = clusterOf(next.name, next.timeout, next.pad);
          if (edit.kind === 'remove' && list.length > 0) {
            clusters = spliced(clusters, at, 1);
            list = spliced(list, at, 1);
            wire = spliced(wire, at, 1);
          } else if ((edit.kind === 'replace' || edit.kind === 'retime') && list.length > 0) {
            clusters = spliced(clusters, at, 1, next);
            list = spliced(list, at, 1, resource);
            wire = spliced(wire, at, 1, served(resource));
          } else {
            clusters = spliced(clusters, at, 0, next);
            list = spliced(list, at, 0, resource);
            wire = spliced(wire, at, 0, served(resource));
          }
          check(step + 1);
        });
      }),
      { numRuns: 60 },
    );
  });

  it('answers an edit of one Cluster among 5,000 with one new run of resources; the other pieces are the last response\'s own', () => {
    let wire = Array.from({ length: 5_000 }, (_, i) => served(clusterOf(`pool-${i}`, 1, 200)));
    const before = sotwResponseBody(TypeUrl.cluster, 'v1', wire);
    const edited = 2_345;
    wire = spliced(wire, edited, 1, served(clusterOf(`pool-${edited}`, 9, 200)));
    const after = sotwResponseBody(TypeUrl.cluster, 'v2', wire);
    const fresh = freshPieces(before, after);
    // The version field and the type_url field are per response; of the resource runs, only the edited one is new.
    expect(fresh.length).toBe(3);
    const runs = fresh.slice(1, -1);
    expect(runs[0]?.includes(Buffer.from(wire[edited]?.any as Uint8Array))).toBe(true);
    // A run is a small part of the response: the edit copied kilobytes, not the whole.
    expect(runs[0]?.length).toBeLessThan(after.byteLength / 20);
    expect(before.pieces.length).toBeGreaterThan(20);
  });

  it('keeps the runs of two views that share resources, and lets go of a run once an edit replaced it', () => {
    const wire = Array.from({ length: 3_000 }, (_, i) => served(clusterOf(`pool-${i}`, 1, 100)));
    // A Gateway's view: every third Cluster left out.
    const gateway = wire.filter((_, i) => i % 3 !== 0);
    const whole1 = sotwResponseBody(TypeUrl.cluster, 'v1', wire);
    const view1 = sotwResponseBody(TypeUrl.cluster, 'g1', gateway);
    // Served in turn, neither view rebuilds a run.
    expect(freshPieces(whole1, sotwResponseBody(TypeUrl.cluster, 'v2', wire))).toHaveLength(2);
    expect(freshPieces(view1, sotwResponseBody(TypeUrl.cluster, 'g2', gateway))).toHaveLength(2);
    const edited = spliced(wire, 1_500, 1, served(clusterOf('pool-1500', 7, 100)));
    const whole2 = sotwResponseBody(TypeUrl.cluster, 'v3', edited);
    expect(freshPieces(whole1, whole2)).toHaveLength(3);
    // The run the edit replaced is not kept: the list from before the edit needs it built again.
    expect(freshPieces(whole1, sotwResponseBody(TypeUrl.cluster, 'v4', wire))).toHaveLength(3);
  });

  it('leaves the cache\'s resources holding their bytes in the runs (once, not twice), and the responses still exact', () => {
    const cache = new SnapshotCache();
    let list = Array.from({ length: 1_000 }, (_, i) => clusterOf(`pool-${i}`, 1, 50));
    const serve = (): readonly CachedResource[] => {
      cache.setResources({ listeners: [], routes: [], clusters: list, endpoints: [], secrets: [] });
      return everyResource(cache.snapshot(TypeUrl.cluster)?.resources ?? new Map());
    };
    for (const step of [1, 2]) {
      const served = serve();
      const body = sotwResponseBody(TypeUrl.cluster, `v${step}`, served);
      const runs = new Set(body.pieces.map((piece) => piece.buffer));
      expect(served.every((resource) => runs.has(resource.any.buffer as ArrayBuffer))).toBe(true);
      const order = served.map((resource) => resource.resource);
      expect(Buffer.compare(wireBytes(withNonce(body, 'n')), Buffer.from(reference(TypeUrl.cluster, `v${step}`, order, 'n')))).toBe(0);
      for (const resource of served) expect(Buffer.from(resource.any)).toEqual(Buffer.from(encodeResourceAny(resource.resource, false)));
      list = spliced(list, 500, 1, clusterOf('pool-500', 1 + step, 50));
    }
  });

  it('writes a large resource from its own bytes, not a copy', () => {
    const large = served(clusterOf('routes', 1, 300_000));
    const body = sotwResponseBody(TypeUrl.cluster, 'v1', [served(clusterOf('a', 1, 0)), large, served(clusterOf('b', 1, 0))]);
    const own = body.pieces.find((piece) => piece.length === large.any.length);
    expect(own?.buffer).toBe(large.any.buffer);
    expect(own?.byteOffset).toBe(large.any.byteOffset);
  });

  it('answers an added Cluster with one new run too: the runs after it are not shifted', () => {
    const wire = Array.from({ length: 5_000 }, (_, i) => served(clusterOf(`pool-${i}`, 1, 200)));
    const before = sotwResponseBody(TypeUrl.cluster, 'v1', wire);
    const after = sotwResponseBody(TypeUrl.cluster, 'v2', spliced(wire, 1_000, 0, served(clusterOf('added', 1, 200))));
    expect(freshPieces(before, after).length).toBe(3);
  });
});

/** `list` with `remove` items at `at` replaced by `insert` (Array.prototype.toSpliced, not in this project's lib). */
function spliced<T>(list: readonly T[], at: number, remove: number, ...insert: T[]): T[] {
  const out = list.slice();
  out.splice(at, remove, ...insert);
  return out;
}

/** The pieces of `after` that `before` does not have (by identity). */
function freshPieces(before: WireMessage, after: WireMessage): Buffer[] {
  const old = new Set(before.pieces);
  return after.pieces.filter((piece) => !old.has(piece));
}
