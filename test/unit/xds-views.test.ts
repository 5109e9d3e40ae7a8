import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { GATEWAY_NODE_METADATA } from '../../src/envoy/bootstrap.js';
import { messageType } from '../../src/envoy/proto.js';
import { PUSH_ORDER, TypeUrl, type TypeUrlValue } from '../../src/envoy/resources.js';
import { AdsStream } from '../../src/xds/ads-stream.js';
import { SnapshotCache, type CacheView } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { twoGateways, type TwoGateways } from '../support/two-gateways.js';
import { openAdsStream, sotwRequest as request, type AdsConnection } from '../support/ads-client.js';
import { waitFor } from '../support/wait.js';

/**
 * A data plane per Gateway: two Gateways on port 80 in different namespaces. Each Gateway's view
 * holds only its own listener, routes, cluster and assignment; versions are per view, so an edit
 * of one Gateway's route neither changes the other's versions nor reaches its streams.
 */

const BASE: TwoGateways = { port: 80, upstreamA: { host: '10.0.0.1', port: 8080 }, upstreamB: { host: '10.0.0.2', port: 8080 } };

function names(view: CacheView, typeUrl: TypeUrlValue): string[] {
  return [...(view.snapshot(typeUrl)?.resources.keys() ?? [])].sort();
}

function versions(view: CacheView): string[] {
  return PUSH_ORDER.map((kind) => view.snapshot(TypeUrl[kind])?.version ?? '');
}

function load(cache: SnapshotCache, o: TwoGateways): ReturnType<SnapshotCache['setResources']> {
  const { xds, planes } = twoGateways(o);
  return cache.setResources(xds, planes);
}

describe('cache views per Gateway', () => {
  it('give each Gateway only its own listener, routes, cluster and assignment', () => {
    const cache = new SnapshotCache();
    load(cache, BASE);
    const a = cache.view('a/edge');
    const b = cache.view('b/edge');
    expect(a.known && b.known).toBe(true);
    expect(names(a, TypeUrl.listener)).toEqual(['a/edge/80']);
    expect(names(a, TypeUrl.route)).toEqual(['a/edge/80']);
    expect(names(a, TypeUrl.cluster)).toEqual(['backend/a/pool']);
    expect(names(a, TypeUrl.endpoint)).toEqual(['backend/a/pool']);
    expect(names(b, TypeUrl.listener)).toEqual(['b/edge/80']);
    expect(names(b, TypeUrl.cluster)).toEqual(['backend/b/pool']);
    expect(names(b, TypeUrl.secret)).toEqual([]);
    // Encoded once: the view holds the very resource the whole configuration holds.
    expect(a.snapshot(TypeUrl.cluster)?.resources.get('backend/a/pool')).toBe(cache.snapshot(TypeUrl.cluster)?.resources.get('backend/a/pool'));
  });

  it('leave the younger Gateway\'s listener on a contested port out of the shared view, and say why', () => {
    const cache = new SnapshotCache();
    load(cache, BASE);
    const shared = cache.view(undefined);
    expect(names(shared, TypeUrl.listener)).toEqual(['a/edge/80']);
    expect(names(shared, TypeUrl.route)).toEqual(['a/edge/80']);
    expect(names(shared, TypeUrl.cluster)).toEqual(['backend/a/pool', 'backend/b/pool']);
    expect(shared.problems).toHaveLength(1);
    expect(shared.problems[0]).toContain('Gateway b/edge: listener b/edge/80 is left out');
    expect(shared.problems[0]).toContain('older Gateway a/edge');
    // With an address per Gateway both fit on one Envoy.
    const apart = new SnapshotCache();
    const { xds, planes } = twoGateways(BASE, { gatewayAddresses: new Map([['a/edge', '127.0.0.2'], ['b/edge', '127.0.0.3']]) });
    apart.setResources(xds, planes);
    expect(names(apart.view(undefined), TypeUrl.listener)).toEqual(['a/edge/80', 'b/edge/80']);
    expect(xds.listeners.map((l) => (l['address'] as { socket_address: { address: string } }).socket_address.address)).toEqual(['127.0.0.2', '127.0.0.3']);
  });

  it('keep versions per view: editing a route of Gateway a changes a\'s route version only', () => {
    const cache = new SnapshotCache();
    load(cache, BASE);
    const a = cache.view('a/edge');
    const b = cache.view('b/edge');
    const shared = cache.view(undefined);
    const [aBefore, bBefore] = [versions(a), versions(b)];
    const change = load(cache, { ...BASE, pathA: '/v2' });
    expect(change.views.get(a)).toEqual([TypeUrl.route]);
    expect(change.views.has(b)).toBe(false);
    expect(change.views.get(shared)).toEqual([TypeUrl.route]);
    expect(versions(b)).toEqual(bBefore);
    expect(versions(a)).not.toEqual(aBefore);
    expect(versions(a).filter((v, i) => v !== aBefore[i])).toHaveLength(1);
  });

  it('serve an unknown Gateway an empty view that fills when the Gateway appears', () => {
    const cache = new SnapshotCache();
    load(cache, BASE);
    const c = cache.view('c/edge');
    expect(c.known).toBe(false);
    expect(names(c, TypeUrl.listener)).toEqual([]);
    const change = load(cache, { ...BASE, withC: true });
    expect(c.known).toBe(true);
    expect(names(c, TypeUrl.listener)).toEqual(['c/edge/80']);
    expect(change.views.get(c)).toContain(TypeUrl.listener);
    expect(cache.view('not-a-gateway').known).toBe(false);
  });
});

interface FakeEnvoy extends AdsConnection {
  /** Resource names of each response received, by type. */
  readonly received: Map<string, string[][]>;
}

/** A SotW client that names its Gateway in node metadata, ACKs everything, and asks for LDS (wildcard) and its Gateway's routes. */
function fakeEnvoy(port: number, id: string, gateway: string | undefined, routes: string[]): FakeEnvoy {
  const { client, call } = openAdsStream(port);
  const received = new Map<string, string[][]>();
  call.on('data', (bytes: Buffer) => {
    // Protos are loaded with keepCase: the decoded message has the proto's field names.
    const response = messageType('envoy.service.discovery.v3.DiscoveryResponse').decode(bytes) as unknown as { version_info: string; nonce: string; type_url: string; resources: { value: Uint8Array }[] };
    const typeUrl = response.type_url;
    const type = typeUrl === TypeUrl.listener ? 'envoy.config.listener.v3.Listener' : 'envoy.config.route.v3.RouteConfiguration';
    const got = response.resources.map((r) => (messageType(type).decode(r.value) as unknown as { name: string }).name);
    received.set(typeUrl, [...(received.get(typeUrl) ?? []), got]);
    call.write(request({ version_info: response.version_info, response_nonce: response.nonce, type_url: typeUrl, ...(typeUrl === TypeUrl.route ? { resource_names: routes } : {}) }));
  });
  call.on('error', () => undefined);
  const node = { id, ...(gateway !== undefined ? { metadata: { [GATEWAY_NODE_METADATA]: gateway } } : {}) };
  call.write(request({ node, type_url: TypeUrl.listener }));
  call.write(request({ type_url: TypeUrl.route, resource_names: routes }));
  return { client, call, received };
}

describe('xDS server views', () => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  let envoys: { a: FakeEnvoy; b: FakeEnvoy; shared: FakeEnvoy };

  beforeAll(async () => {
    load(cache, BASE);
    const port = await server.start({ port: 0, host: '127.0.0.1' });
    envoys = {
      a: fakeEnvoy(port, 'envoy-a', 'a/edge', ['a/edge/80']),
      b: fakeEnvoy(port, 'envoy-b', 'b/edge', ['b/edge/80']),
      shared: fakeEnvoy(port, 'envoy-shared', undefined, ['a/edge/80']),
    };
    await waitFor(() => Object.values(envoys).every((e) => e.received.has(TypeUrl.route)), { what: 'every client has its first routes' });
  });

  afterAll(async () => {
    for (const e of Object.values(envoys)) {
      e.call.end();
      e.client.close();
    }
    await server.stop();
  });

  it('picks each stream\'s view from its node metadata, and tells the clients which Gateway they serve', () => {
    expect(envoys.a.received.get(TypeUrl.listener)).toEqual([['a/edge/80']]);
    expect(envoys.b.received.get(TypeUrl.listener)).toEqual([['b/edge/80']]);
    expect(envoys.shared.received.get(TypeUrl.listener)).toEqual([['a/edge/80']]);
    const byNode = new Map(server.clients().map((c) => [c.nodeId, c.gateway]));
    expect(byNode).toEqual(new Map([['envoy-a', 'a/edge'], ['envoy-b', 'b/edge'], ['envoy-shared', undefined]]));
  });

  it('pushes an edit of Gateway a\'s route to a\'s streams (and the shared ones) only', async () => {
    const touched = vi.spyOn(AdsStream.prototype, 'onCacheChange');
    load(cache, { ...BASE, pathA: '/v2' });
    await waitFor(() => envoys.a.received.get(TypeUrl.route)?.length === 2 && envoys.shared.received.get(TypeUrl.route)?.length === 2, { what: 'a and shared get the edited route' });
    // Fan-out visits the streams of the views that changed, not every stream. Counted once the
    // pushes are done: a loaded machine can spread them over several 10 ms slices.
    expect(touched).toHaveBeenCalledTimes(2);
    touched.mockRestore();
    // An edit of b is the marker: once b has it, any push of a's edit to b would have arrived first.
    load(cache, { ...BASE, pathA: '/v2', pathB: '/v3' });
    await waitFor(() => envoys.b.received.get(TypeUrl.route)?.length === 2, { what: 'b gets its edited route' });
    expect(envoys.b.received.get(TypeUrl.route)).toEqual([['b/edge/80'], ['b/edge/80']]);
    expect(envoys.b.received.get(TypeUrl.listener)).toHaveLength(1);
    expect(envoys.a.received.get(TypeUrl.route)).toHaveLength(2);
  });
});

describe('xDS server, an Envoy naming a Gateway the configuration does not have', () => {
  it('gets an empty view, is logged once however many streams name it, and fills when the Gateway appears', async () => {
    const lines: { msg: string; gateway?: string }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line) as { msg: string; gateway?: string }) });
    const cache = new SnapshotCache();
    load(cache, BASE);
    const server = new XdsServer({ cache, logger });
    const port = await server.start({ port: 0, host: '127.0.0.1' });
    const clients = [fakeEnvoy(port, 'envoy-c1', 'c/edge', ['c/edge/80']), fakeEnvoy(port, 'envoy-c2', 'c/edge', ['c/edge/80']), fakeEnvoy(port, 'envoy-bad', 'no-namespace', [])];
    try {
      await waitFor(() => clients.every((c) => c.received.has(TypeUrl.listener)), { what: 'every client has its first listeners' });
      expect(clients.map((c) => c.received.get(TypeUrl.listener))).toEqual([[[]], [[]], [[]]]);
      const about = (gateway: string): string[] => lines.filter((l) => l.gateway === gateway).map((l) => l.msg);
      expect(about('c/edge')).toEqual(['an Envoy names Gateway "c/edge" in node.metadata["switchyard.dev/gateway"]: Gateway c/edge is not in the configuration (or not of a Switchyard GatewayClass); it gets no listeners until that Gateway exists']);
      expect(about('no-namespace')).toEqual([expect.stringContaining('a Gateway is named "namespace/name", got "no-namespace"')]);
      load(cache, { ...BASE, withC: true });
      await waitFor(() => clients.slice(0, 2).every((c) => c.received.get(TypeUrl.listener)?.length === 2), { what: 'the c/edge clients get their listener' });
      expect(clients[0]?.received.get(TypeUrl.listener)?.[1]).toEqual(['c/edge/80']);
    } finally {
      for (const c of clients) {
        c.call.end();
        c.client.close();
      }
      await server.stop();
    }
  });
});
