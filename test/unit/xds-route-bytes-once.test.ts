/**
 * A RouteConfiguration's bytes are held once. Its route entries are pieces (src/envoy/routes.ts):
 * an edit of one route among thousands copies the others' bytes instead of encoding them again.
 * Those bytes are read from the message the cache serves, never kept beside it, and an edit
 * moves every piece to the new message, so no older one stays alive for them.
 */
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { toXdsResourcesReusing, type EnvoyState } from '../../src/envoy/index.js';
import { encodedPieceBytes, encodeMessage, encodeResourceAny, reuseEncodedPieces } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource, type JsonObject, type JsonValue } from '../../src/envoy/resources.js';
import { ManifestStore, parseManifestFile, type ManifestFile } from '../../src/providers/manifest-files.js';
import { translate, type TranslationState } from '../../src/translate/index.js';
import { SnapshotCache, type CachedResource } from '../../src/xds/cache.js';
import { EDGE_GATEWAY } from '../support/edge-gateway.js';

const ROUTES = 600;

function route(i: number, prefix = `/chat-${i}`): unknown {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: `chat-${i}`, namespace: 'ai' },
    spec: {
      parentRefs: [{ name: 'edge' }],
      rules: [{ matches: [{ path: { type: 'PathPrefix', value: prefix } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: `chat-${i}` }] }],
    },
  };
}

function backend(i: number): unknown {
  return {
    apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name: `chat-${i}`, namespace: 'ai' },
    spec: { type: 'Static', static: { priorities: [{ hosts: [{ host: `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}`, port: 8080 }] }] } },
  };
}

const GATEWAY = EDGE_GATEWAY;

/** Translation, the Envoy stage and the cache, as serve runs them, one file per route. */
class Pipeline {
  private readonly files = new Map<string, ManifestFile>();
  private readonly store = new ManifestStore();
  readonly cache = new SnapshotCache();
  private translation: TranslationState | undefined;
  private envoy: EnvoyState | undefined;

  write(name: string, docs: readonly unknown[]): void {
    this.files.set(name, { name, documents: parseManifestFile(name, docs.map((d) => stringify(d)).join('---\n')) });
  }

  run(): void {
    const { inputs } = this.store.build([...this.files.values()].sort((a, b) => (a.name < b.name ? -1 : 1)));
    const t = translate(inputs, this.translation);
    const built = toXdsResourcesReusing(t.ir, {}, this.envoy);
    this.translation = t.state;
    this.envoy = built.state;
    this.cache.setResources(built.xds, built.planes);
  }

  routeConfiguration(): CachedResource {
    const all = [...(this.cache.snapshot(TypeUrl.route)?.resources.values() ?? [])];
    expect(all).toHaveLength(1);
    return all[0] as CachedResource;
  }
}

function routeEntries(config: EnvoyResource): JsonObject[] {
  const hosts = config['virtual_hosts'] as JsonObject[];
  return hosts.flatMap((host) => host['routes'] as JsonObject[]);
}

/** The memory a message's bytes and the kept bytes of its pieces hold: each ArrayBuffer once. */
function heldBytes(message: Uint8Array, pieces: readonly (Uint8Array | undefined)[]): number {
  const buffers = new Set<ArrayBufferLike>([message.buffer]);
  for (const piece of pieces) if (piece !== undefined) buffers.add(piece.buffer);
  let total = 0;
  for (const buffer of buffers) total += buffer.byteLength;
  return total;
}

/** How many of the pieces are not views of `message`'s memory (undefined ones, never kept, count too). */
function elsewhere(pieces: readonly (Uint8Array | undefined)[], message: Uint8Array): number {
  return pieces.filter((piece) => piece === undefined || piece.buffer !== message.buffer).length;
}

function setUp(): Pipeline {
  const p = new Pipeline();
  p.write('gateway.yaml', GATEWAY);
  for (let i = 0; i < ROUTES; i++) p.write(`chat-${String(i).padStart(4, '0')}.yaml`, [backend(i), route(i)]);
  p.run();
  return p;
}

describe('a RouteConfiguration held once', () => {
  it('reads its route entries from the served message: the message and its pieces hold its bytes once, not twice', () => {
    const p = setUp();
    const served = p.routeConfiguration();
    const entries = routeEntries(served.resource);
    const pieces = entries.map((r) => encodedPieceBytes(r));
    // Every route of the listener is a piece kept for the next edit (the warm-up host's are not pieces).
    expect(pieces.filter((piece) => piece !== undefined).length).toBeGreaterThanOrEqual(ROUTES);
    expect(served.any.byteLength).toBeGreaterThan(64 * 1024);
    // Each piece is the very bytes of its route inside the served message.
    expect(elsewhere(pieces.filter((piece) => piece !== undefined), served.any)).toBe(0);
    expect(heldBytes(served.any, pieces)).toBeLessThan(served.any.byteLength * 1.3);
  });

  it('after an edit of one route, serves the bytes a fresh encode gives, and keeps no older message alive for its pieces', () => {
    const p = setUp();
    const before = p.routeConfiguration();
    const encodes = p.cache.encodedCount;
    p.write('chat-0007.yaml', [backend(7), route(7, '/edited-7')]);
    p.run();
    const after = p.routeConfiguration();
    expect(after.version).not.toBe(before.version);
    expect(p.cache.encodedCount).toBe(encodes + 1);
    // A copy of the JSON has no pieces: encoded in full, it is what the edit must equal.
    const fresh = Buffer.from(encodeResourceAny(structuredClone(after.resource) as EnvoyResource, false));
    expect(Buffer.from(after.any).equals(fresh)).toBe(true);
    const pieces = routeEntries(after.resource).map((r) => encodedPieceBytes(r));
    expect(pieces.filter((piece) => piece !== undefined).length).toBeGreaterThanOrEqual(ROUTES);
    expect(elsewhere(pieces.filter((piece) => piece !== undefined), after.any)).toBe(0);
    expect(pieces.filter((piece) => piece?.buffer === before.any.buffer).length).toBe(0);
  });
});

describe('pieces kept as views of the message', () => {
  /** A route of about `size` bytes: lengths of one, two and three bytes, and moves of the bodies around them. */
  const routeOf = (i: number, size: number): JsonObject => ({
    name: `r-${i}`,
    match: { prefix: `/r-${i}` },
    route: { cluster: `c-${i}-${'x'.repeat(size)}`, timeout: '0s' },
  });
  /** virtual_hosts listed after fields of higher numbers: the encoder moves it when the message closes. */
  const config = (hosts: JsonValue[]): EnvoyResource => ({ '@type': TypeUrl.route, name: 'l', validate_clusters: false, ignore_port_in_host_matching: true, virtual_hosts: hosts });
  const host = (name: string, routes: JsonObject[]): JsonObject => ({ name, domains: [`${name}.example`], routes, include_request_attempt_count: true });

  it('writes every later message from them exactly as a fresh encode, whatever moved around them', () => {
    const sizes = [1, 100, 130, 500, 16_400, 20_000, 3, 70_000];
    const routes = sizes.map((size, i) => routeOf(i, size));
    reuseEncodedPieces('envoy.config.route.v3.Route', routes);
    const first = config([host('a', routes.slice(0, 4)), host('b', routes.slice(4))]);
    const kept = encodeResourceAny(first);
    expect(Buffer.from(kept).equals(Buffer.from(encodeResourceAny(structuredClone(first) as EnvoyResource, false)))).toBe(true);
    expect(elsewhere(routes.map((r) => encodedPieceBytes(r)), kept)).toBe(0);
    // Each piece is its route's message alone.
    for (const r of routes) expect(Buffer.from(encodedPieceBytes(r) ?? []).equals(Buffer.from(encodeMessage('envoy.config.route.v3.Route', structuredClone(r))))).toBe(true);
    // Reordered, regrouped and beside a new route, from the kept pieces; then again from the pieces moved to that message.
    const extra = routeOf(99, 300);
    const second = config([host('c', [routes[7] as JsonObject, extra, routes[0] as JsonObject]), host('d', routes.slice(1, 7).reverse())]);
    const secondKept = encodeResourceAny(second);
    expect(Buffer.from(secondKept).equals(Buffer.from(encodeResourceAny(structuredClone(second) as EnvoyResource, false)))).toBe(true);
    expect(elsewhere(routes.map((r) => encodedPieceBytes(r)), secondKept)).toBe(0);
    const third = config([host('e', [...routes].reverse())]);
    expect(Buffer.from(encodeResourceAny(third)).equals(Buffer.from(encodeResourceAny(structuredClone(third) as EnvoyResource, false)))).toBe(true);
  });

  it('reads the pieces of a rebuilt configuration equal to the served one from the served bytes', () => {
    const routes = [routeOf(1, 10), routeOf(2, 200), routeOf(3, 20_000)];
    reuseEncodedPieces('envoy.config.route.v3.Route', routes);
    const cache = new SnapshotCache();
    const none = { listeners: [], clusters: [], endpoints: [], secrets: [] };
    cache.setResources({ ...none, routes: [config([host('a', routes)])] });
    const served = cache.snapshot(TypeUrl.route)?.resources.get('l');
    // Built again from scratch (new objects, new pieces): equal, so the served bytes stay.
    const rebuilt = routes.map((r) => structuredClone(r));
    reuseEncodedPieces('envoy.config.route.v3.Route', rebuilt);
    const change = cache.setResources({ ...none, routes: [config([host('a', rebuilt)])] });
    expect(change.changed).toEqual([]);
    if (served === undefined) throw new Error('no RouteConfiguration served');
    expect(elsewhere(rebuilt.map((r) => encodedPieceBytes(r)), served.any)).toBe(0);
  });

  it('keeps nothing for an encode that is not kept: the pieces stay where they were', () => {
    const routes = [routeOf(1, 10), routeOf(2, 200)];
    reuseEncodedPieces('envoy.config.route.v3.Route', routes);
    encodeResourceAny(config([host('a', routes)]), false);
    expect(routes.filter((r) => encodedPieceBytes(r) !== undefined).length).toBe(0);
    const kept = encodeResourceAny(config([host('a', routes)]));
    encodeResourceAny(config([host('b', [...routes].reverse())]), false);
    expect(elsewhere(routes.map((r) => encodedPieceBytes(r)), kept)).toBe(0);
  });
});
