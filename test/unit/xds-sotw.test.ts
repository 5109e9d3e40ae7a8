import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { decodeMessage } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource, type JsonObject } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import type { StreamIdentity } from '../../src/xds/identity.js';
import { SharedResponseBodies, SotwStream } from '../../src/xds/sotw.js';
import { wireBytes, type DiscoveryRequest, type WireMessage } from '../../src/xds/wire.js';
import { assignment, cluster, recordingHooks, resources, route } from '../support/xds-stream.js';

interface Response {
  version_info: string;
  nonce: string;
  type_url: string;
  names: string[];
}

/** What a test reads of a DiscoveryResponse: its version, nonce, type and resource names. */
function summary(json: JsonObject): Response {
  const list = (json['resources'] ?? []) as JsonObject[];
  return {
    version_info: String(json['version_info'] ?? ''),
    nonce: String(json['nonce']),
    type_url: String(json['type_url']),
    names: list.map((resource) => String(resource['name'] ?? resource['cluster_name'])),
  };
}

/**
 * A SotwStream of `identity` on `cache`, wired as the server wires one: each response it writes is
 * decoded and handed to `receive`; `transport` stands for the socket (it calls `flushed` once the
 * bytes are out, and says whether there is room for more; by default at once, and always room);
 * with `watchCache` (the default) the cache's changes reach the stream.
 */
function sotwStreamOn(o: {
  cache: SnapshotCache;
  bodies: SharedResponseBodies;
  identity: StreamIdentity;
  receive: (response: JsonObject) => void;
  hooks?: ReturnType<typeof recordingHooks>['hooks'];
  transport?: (flushed: () => void) => boolean;
  watchCache?: boolean;
}): SotwStream {
  const transport = o.transport ?? ((flushed) => (flushed(), true));
  const stream = new SotwStream({
    cache: o.cache,
    identity: o.identity,
    bodies: o.bodies,
    hooks: o.hooks ?? recordingHooks().hooks,
    logger: pino({ level: 'silent' }),
    send: (messages, flushed) => {
      for (const message of messages) o.receive(decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', wireBytes(message)));
      return transport(flushed);
    },
  });
  if (o.watchCache ?? true) {
    o.cache.watch((change) => {
      o.bodies.invalidate(change.changed);
      stream.onCacheChange(change.changed);
    });
  }
  return stream;
}

/**
 * `transport`: `instant` flushes every response at once (a client that reads); `held` keeps
 * each response in flight until `flushAll()` (a client that stopped reading).
 */
const ENVOY: StreamIdentity = { role: 'envoy', via: 'mtls' };

function harness(nodeCluster = 'gw', transport: 'instant' | 'held' = 'instant', identity: StreamIdentity = ENVOY) {
  const waiting: Array<() => void> = [];
  const cache = new SnapshotCache();
  const sent: Response[] = [];
  const { hooks, events, fleet } = recordingHooks();
  const bodies = new SharedResponseBodies();
  const stream = sotwStreamOn({
    cache,
    identity,
    bodies,
    hooks,
    receive: (json) => sent.push(summary(json)),
    transport: (flushed) => {
      if (transport === 'instant') flushed();
      else waiting.push(flushed);
      return true;
    },
  });
  const request = (typeUrl: string, names: string[], ack?: Response, error?: string): void =>
    stream.onRequest({
      versionInfo: ack?.version_info ?? '',
      node: { id: 'envoy-1', cluster: nodeCluster, userAgent: 'test' },
      resourceNames: names,
      typeUrl,
      responseNonce: ack?.nonce ?? '',
      errorDetail: error === undefined ? undefined : { code: 3, message: error },
    } satisfies DiscoveryRequest);
  const flushAll = (): void => {
    for (const flushed of waiting.splice(0)) flushed();
  };
  return { cache, sent, events, fleet, request, stream, flushAll };
}

describe('SotwStream', () => {
  it('waits for the first snapshot, then answers a wildcard CDS request with every cluster', () => {
    const { cache, sent, events, request } = harness();
    request(TypeUrl.cluster, []);
    expect(sent).toEqual([]);
    expect(events).toEqual(['identify envoy-1']);
    cache.setResources(resources());
    expect(sent).toHaveLength(1);
    expect(sent[0]?.names.sort()).toEqual(['a', 'b']);
    expect(sent[0]?.version_info).toBe(cache.snapshot(TypeUrl.cluster)?.version);
  });

  it('answers an empty wildcard set so Envoy can finish initializing', () => {
    const { cache, sent, request } = harness();
    cache.setResources(resources({ listeners: [] }));
    request(TypeUrl.listener, []);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.names).toEqual([]);
  });

  it('answers an empty wildcard set that arrives after the request', () => {
    const { cache, sent, request } = harness();
    request(TypeUrl.listener, []);
    cache.setResources(resources({ listeners: [] }));
    expect(sent.map((r) => [r.type_url, r.names])).toEqual([[TypeUrl.listener, []]]);
    request(TypeUrl.listener, [], sent[0]);
    cache.setResources(resources({ listeners: [], routes: [{ '@type': TypeUrl.route, name: 'r' }] }));
    expect(sent).toHaveLength(1);
  });

  it('records an ACK and pushes nothing when nothing changed for the client', () => {
    const { cache, sent, events, request } = harness();
    cache.setResources(resources());
    request(TypeUrl.endpoint, ['a']);
    expect(sent.map((r) => r.names)).toEqual([['a']]);
    request(TypeUrl.endpoint, ['a'], sent[0]);
    expect(events).toContain(`ack ClusterLoadAssignment ${sent[0]?.version_info}`);
    // Only "b" changes: the client watching "a" hears nothing.
    cache.setResources(resources({ endpoints: [assignment('a'), assignment('b', 2000)] }));
    expect(sent).toHaveLength(1);
    cache.setResources(resources({ endpoints: [assignment('a', 3000), assignment('b', 2000)] }));
    expect(sent).toHaveLength(2);
    expect(sent[1]?.nonce).not.toBe(sent[0]?.nonce);
  });

  it('tells the fleet ledger which view version an ACK stands for, and that a settled named client holds a new version that changed nothing it watches', () => {
    const { cache, sent, fleet, request } = harness();
    cache.setResources(resources());
    const first = cache.view(undefined).snapshot(TypeUrl.endpoint)?.version;
    request(TypeUrl.endpoint, ['a']);
    request(TypeUrl.endpoint, ['a'], sent[0]);
    expect(fleet).toEqual([`ack ClusterLoadAssignment ${first}`]);
    cache.setResources(resources({ endpoints: [assignment('a'), assignment('b', 2000)] }));
    const second = cache.view(undefined).snapshot(TypeUrl.endpoint)?.version;
    expect(second).not.toBe(first);
    expect(sent).toHaveLength(1);
    expect(fleet).toEqual([`ack ClusterLoadAssignment ${first}`, `holds ClusterLoadAssignment ${second}`]);
  });

  it('sends a named resource when it appears, and a newly subscribed one at once (alone: EDS responses need not repeat what the client holds)', () => {
    const { cache, sent, request } = harness();
    cache.setResources(resources({ endpoints: [] }));
    request(TypeUrl.endpoint, ['a']);
    expect(sent).toEqual([]);
    cache.setResources(resources({ endpoints: [assignment('a')] }));
    expect(sent.map((r) => r.names)).toEqual([['a']]);
    cache.setResources(resources());
    request(TypeUrl.endpoint, ['a', 'b'], sent[0]);
    expect(sent.map((r) => r.names.sort())).toEqual([['a'], ['b']]);
  });

  it('resends a resource that was unsubscribed and asked for again', () => {
    const { cache, sent, request } = harness();
    cache.setResources(resources());
    request(TypeUrl.endpoint, ['a']);
    request(TypeUrl.endpoint, [], sent[0]);
    request(TypeUrl.endpoint, ['a'], sent[0]);
    expect(sent.map((r) => r.names)).toEqual([['a'], ['a']]);
  });

  it('drops a removed cluster from the next full CDS set', () => {
    const { cache, sent, request } = harness();
    cache.setResources(resources());
    request(TypeUrl.cluster, []);
    cache.setResources(resources({ clusters: [cluster('a')] }));
    expect(sent.map((r) => r.names.sort())).toEqual([['a', 'b'], ['a']]);
  });

  it('records a NACK with the rejected version and does not resend it; the next change is sent', () => {
    const { cache, sent, events, request } = harness();
    cache.setResources(resources());
    request(TypeUrl.cluster, []);
    request(TypeUrl.cluster, [], sent[0]);
    cache.setResources(resources({ clusters: [cluster('a', '2s'), cluster('b')] }));
    const rejected = sent[1];
    request(TypeUrl.cluster, [], { ...(rejected as Response), version_info: sent[0]?.version_info ?? '' }, 'bad cluster a');
    expect(events.at(-1)).toBe(`nack Cluster ${rejected?.version_info} bad cluster a`);
    expect(sent).toHaveLength(2);
    cache.setResources(resources({ clusters: [cluster('a', '3s'), cluster('b')] }));
    expect(sent).toHaveLength(3);
  });

  it('ignores a request carrying a stale nonce', () => {
    const { cache, sent, events, request } = harness();
    cache.setResources(resources());
    request(TypeUrl.cluster, []);
    cache.setResources(resources({ clusters: [cluster('a')] }));
    request(TypeUrl.cluster, [], sent[0]);
    expect(events.filter((event) => event.startsWith('ack'))).toEqual([]);
    request(TypeUrl.cluster, [], sent[1]);
    expect(events.filter((event) => event.startsWith('ack'))).toHaveLength(1);
  });

  it('pushes several changed types in make-before-break order', () => {
    const { cache, sent, request } = harness();
    cache.setResources(resources());
    request(TypeUrl.route, ['r']);
    request(TypeUrl.listener, []);
    request(TypeUrl.endpoint, ['c']);
    request(TypeUrl.cluster, []);
    sent.length = 0;
    cache.setResources(
      resources({
        clusters: [cluster('a'), cluster('b'), cluster('c')],
        endpoints: [assignment('a'), assignment('b'), assignment('c')],
        listeners: [{ '@type': TypeUrl.listener, name: 'l', address: { socket_address: { address: '0.0.0.0', port_value: 1 } } }],
        routes: [{ '@type': TypeUrl.route, name: 'r' }],
      }),
    );
    expect(sent.map((r) => r.type_url)).toEqual([TypeUrl.cluster, TypeUrl.endpoint, TypeUrl.listener, TypeUrl.route]);
  });

  it('treats "*" as a wildcard for any type and ignores types it does not serve', () => {
    const { cache, sent, request } = harness();
    cache.setResources(resources());
    request(TypeUrl.endpoint, ['*']);
    request('type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration', []);
    expect(sent.map((r) => r.names.sort())).toEqual([['a', 'b']]);
  });

  it('resends the unchanged assignment of an updated EDS cluster, which Envoy needs to finish warming, and only that one', () => {
    const { cache, sent, request } = harness();
    cache.setResources(resources());
    request(TypeUrl.cluster, []);
    request(TypeUrl.endpoint, ['a', 'b']);
    request(TypeUrl.cluster, [], sent[0]);
    request(TypeUrl.endpoint, ['a', 'b'], sent[1]);
    sent.length = 0;
    cache.setResources(resources({ clusters: [cluster('a', '9s'), cluster('b')] }));
    expect(sent.map((r) => r.type_url)).toEqual([TypeUrl.cluster, TypeUrl.endpoint]);
    expect(sent[1]?.names).toEqual(['a']);
  });

  describe('make-before-break on removal', () => {
    /** A client holding clusters a and b, their assignments and route r (to b), everything ACKed. */
    function settledClient() {
      const h = harness();
      h.cache.setResources(resources({ routes: [route('b')] }));
      h.request(TypeUrl.cluster, []);
      h.request(TypeUrl.endpoint, ['a', 'b']);
      h.request(TypeUrl.route, ['r']);
      const [cds, eds, rds] = h.sent;
      h.request(TypeUrl.cluster, [], cds);
      h.request(TypeUrl.endpoint, ['a', 'b'], eds);
      h.request(TypeUrl.route, ['r'], rds);
      h.sent.length = 0;
      return h;
    }

    it('keeps serving a removed cluster and its assignment until the route that stops naming it is ACKed', () => {
      const { cache, sent, request } = settledClient();
      cache.setResources(resources({ clusters: [cluster('a')], endpoints: [assignment('a')], routes: [route('a')] }));
      // The route moves first; b is neither dropped from CDS nor emptied through EDS.
      expect(sent.map((r) => [r.type_url, r.names])).toEqual([[TypeUrl.route, ['r']]]);
      request(TypeUrl.route, ['r'], sent[0]);
      expect(sent.slice(1).map((r) => [r.type_url, r.names])).toEqual([[TypeUrl.cluster, ['a']]]);
      expect(sent[1]?.version_info).toBe(cache.snapshot(TypeUrl.cluster)?.version);
    });

    it('keeps the hold while Envoy rejects the route update, and releases it on the next ACK', () => {
      const { cache, sent, request } = settledClient();
      cache.setResources(resources({ clusters: [cluster('a')], endpoints: [assignment('a')], routes: [route('a')] }));
      request(TypeUrl.route, ['r'], sent[0], 'route rejected');
      expect(sent.map((r) => r.type_url)).toEqual([TypeUrl.route]);
      cache.setResources(resources({ clusters: [cluster('a')], endpoints: [assignment('a')], routes: [route('a'), { '@type': TypeUrl.route, name: 'r2' }] }));
      cache.setResources(resources({ clusters: [cluster('a', '2s')], endpoints: [assignment('a')], routes: [route('c')] }));
      // Still held: the updated a is sent together with b.
      expect(sent.filter((r) => r.type_url === TypeUrl.cluster).at(-1)?.names.sort()).toEqual(['a', 'b']);
      expect(sent.at(-1)?.type_url).toBe(TypeUrl.route);
      request(TypeUrl.route, ['r'], sent.at(-1));
      expect(sent.at(-1)?.type_url).toBe(TypeUrl.cluster);
      expect(sent.at(-1)?.names).toEqual(['a']);
    });

    it('removes at once when nothing that names clusters is pending, and for a client without routes', () => {
      const { cache, sent } = settledClient();
      cache.setResources(resources({ clusters: [cluster('a')], endpoints: [assignment('a')], routes: [route('b')] }));
      expect(sent.map((r) => [r.type_url, r.names])).toEqual([[TypeUrl.cluster, ['a']]]);
    });

    it('does not share a held set with other clients of the same version', () => {
      const { cache, sent } = settledClient();
      cache.setResources(resources({ clusters: [cluster('a'), cluster('b', '3s')], endpoints: [assignment('a')], routes: [route('a')] }));
      cache.setResources(resources({ clusters: [cluster('a', '3s')], endpoints: [assignment('a')], routes: [route('a')] }));
      const last = sent.filter((r) => r.type_url === TypeUrl.cluster).at(-1);
      expect(last?.names.sort()).toEqual(['a', 'b']);
      expect(last?.version_info).not.toBe(cache.snapshot(TypeUrl.cluster)?.version);
    });
  });

  it('serves provider credentials to the ai-extension identity only, whatever the node says; certificates to anyone who names them', () => {
    const secrets: EnvoyResource[] = [
      { '@type': TypeUrl.secret, name: 'credential/ai/openai-key', generic_secret: { secret: { inline_string: 'sk-test' } } },
      { '@type': TypeUrl.secret, name: 'certificate/ai/tls', tls_certificate: { certificate_chain: { inline_string: 'pem' } } },
    ];
    const envoy = harness('switchyard-ai-extension', 'instant', ENVOY);
    envoy.cache.setResources(resources({ secrets }));
    envoy.request(TypeUrl.secret, ['credential/ai/openai-key', 'certificate/ai/tls']);
    expect(envoy.sent.at(-1)?.names).toEqual(['certificate/ai/tls']);

    const anonymous = harness('switchyard-ai-extension', 'instant', { role: 'anonymous', via: 'plaintext' });
    anonymous.cache.setResources(resources({ secrets }));
    anonymous.request(TypeUrl.secret, ['*']);
    expect(anonymous.sent.at(-1)?.names).toEqual(['certificate/ai/tls']);

    const extension = harness('gw', 'instant', { role: 'ai-extension', via: 'mtls' });
    extension.cache.setResources(resources({ secrets }));
    extension.request(TypeUrl.secret, ['credential/ai/openai-key']);
    expect(extension.sent.at(-1)?.names).toEqual(['credential/ai/openai-key']);
  });

  it('gives a wildcard set with a credential withheld its own version, never the shared body of the whole set', () => {
    const secrets: EnvoyResource[] = [
      { '@type': TypeUrl.secret, name: 'credential/ai/openai-key', generic_secret: { secret: { inline_string: 'sk-test' } } },
      { '@type': TypeUrl.secret, name: 'certificate/ai/tls', tls_certificate: { certificate_chain: { inline_string: 'pem' } } },
    ];
    const cache = new SnapshotCache();
    cache.setResources(resources({ secrets }));
    const bodies = new SharedResponseBodies();
    const sent = new Map<string, string[]>();
    for (const identity of [{ role: 'ai-extension', via: 'unix-socket' }, { role: 'envoy', via: 'mtls' }] as const) {
      const stream = sotwStreamOn({
        cache,
        identity,
        bodies,
        watchCache: false,
        receive: (json) => sent.set(identity.role, ((json['resources'] ?? []) as JsonObject[]).map((r) => `${String(r['name'])}@${String(json['version_info'])}`)),
      });
      stream.onRequest({ node: { id: identity.role, cluster: 'x', userAgent: 'test' }, typeUrl: TypeUrl.secret, resourceNames: ['*'], versionInfo: '', responseNonce: '', errorDetail: undefined });
    }
    const full = cache.snapshot(TypeUrl.secret)?.version;
    expect(sent.get('ai-extension')?.sort()).toEqual([`certificate/ai/tls@${full}`, `credential/ai/openai-key@${full}`]);
    expect(sent.get('envoy')?.map((n) => n.split('@')[0])).toEqual(['certificate/ai/tls']);
    expect(sent.get('envoy')?.[0]).not.toContain(`@${full}`);
  });

  describe('a client that stops reading', () => {
    it('keeps at most one response per type in flight and sends only the newest version once it reads again', () => {
      const { cache, sent, request, stream, flushAll } = harness('gw', 'held');
      cache.setResources(resources());
      request(TypeUrl.cluster, []);
      request(TypeUrl.endpoint, ['a', 'b']);
      expect(sent.map((r) => r.type_url)).toEqual([TypeUrl.cluster, TypeUrl.endpoint]);
      for (let i = 2; i <= 20; i++) cache.setResources(resources({ clusters: [cluster('a', `${i}s`), cluster('b')], endpoints: [assignment('a', 1000 + i), assignment('b')] }));
      // Nineteen changes, nothing more written: the stream only notes which types are due.
      expect(sent).toHaveLength(2);
      expect([...stream.backlog().due].sort()).toEqual([TypeUrl.cluster, TypeUrl.endpoint].sort());
      flushAll();
      const newest = cache.snapshot(TypeUrl.cluster)?.version;
      expect(sent.slice(2).map((r) => r.type_url)).toEqual([TypeUrl.cluster, TypeUrl.endpoint]);
      expect(sent[2]?.version_info).toBe(newest);
      expect(sent[3]?.version_info).toBe(cache.snapshot(TypeUrl.endpoint)?.version);
      // The ACK of the newest version is accepted as the ACK it is.
      flushAll();
      request(TypeUrl.cluster, [], sent[2]);
      expect(stream.backlog()).toEqual({ inFlight: [], due: [], congested: false });
    });

    it('pushes nothing while the transport reports a full buffer, and the newest version on resume()', () => {
      const cache = new SnapshotCache();
      const bodies = new SharedResponseBodies();
      const sent: string[] = [];
      let room = true;
      const stream = sotwStreamOn({
        cache,
        identity: ENVOY,
        bodies,
        receive: (json) => sent.push(String(json['version_info'])),
        transport: (flushed) => {
          flushed();
          return room;
        },
      });
      room = false;
      cache.setResources(resources());
      stream.onRequest({ versionInfo: '', node: { id: 'n', cluster: 'gw', userAgent: 't' }, resourceNames: [], typeUrl: TypeUrl.cluster, responseNonce: '', errorDetail: undefined });
      expect(sent).toHaveLength(1);
      for (let i = 2; i <= 5; i++) cache.setResources(resources({ clusters: [cluster('a', `${i}s`), cluster('b')] }));
      expect(sent).toHaveLength(1);
      room = true;
      stream.resume();
      expect(sent).toEqual([sent[0], cache.snapshot(TypeUrl.cluster)?.version]);
    });

    it('never lets a later type overtake an earlier one that waits', () => {
      const { cache, sent, request, flushAll } = harness('gw', 'held');
      cache.setResources(resources({ routes: [route('a')] }));
      request(TypeUrl.cluster, []);
      request(TypeUrl.route, ['r']);
      expect(sent.map((r) => r.type_url)).toEqual([TypeUrl.cluster, TypeUrl.route]);
      flushAll();
      // The cluster response is still in flight when the new cluster and the route naming it come.
      request(TypeUrl.cluster, [], sent[0]);
      request(TypeUrl.route, ['r'], sent[1]);
      cache.setResources(resources({ clusters: [cluster('a'), cluster('b'), cluster('c')], routes: [route('c')] }));
      expect(sent.slice(2).map((r) => r.type_url)).toEqual([TypeUrl.cluster, TypeUrl.route]);
      cache.setResources(resources({ clusters: [cluster('a'), cluster('b'), cluster('d')], routes: [route('d')] }));
      expect(sent).toHaveLength(4);
      flushAll();
      expect(sent.slice(4).map((r) => [r.type_url, r.names.sort()])).toEqual([
        [TypeUrl.cluster, ['a', 'b', 'c', 'd']],
        [TypeUrl.route, ['r']],
      ]);
    });
  });
});

describe('SotwStream, streams that send the same decoded request', () => {
  // A fleet's identical requests are decoded once (server.ts, RecentRequests): the streams then
  // share the name set, the selection and the map of what was sent, and none may change another's.
  function fleetOf(count: number) {
    const cache = new SnapshotCache();
    const bodies = new SharedResponseBodies();
    const streams = Array.from({ length: count }, (_, i) => {
      const sent: Response[] = [];
      // One watcher below feeds every stream after a single invalidation, as the server does.
      const stream = sotwStreamOn({ cache, identity: ENVOY, bodies, watchCache: false, receive: (json) => sent.push(summary(json)) });
      const request = (names: readonly string[], ack?: Response): void =>
        stream.onRequest({ versionInfo: ack?.version_info ?? '', node: { id: `envoy-${i}`, cluster: 'gw', userAgent: 'test' }, resourceNames: names as string[], typeUrl: TypeUrl.endpoint, responseNonce: ack?.nonce ?? '', errorDetail: undefined });
      return { stream, sent, request };
    });
    cache.watch((change) => {
      bodies.invalidate(change.changed);
      for (const { stream } of streams) stream.onCacheChange(change.changed);
    });
    return { cache, streams };
  }

  it('keeps each stream to its own subscription after one of them narrows it', () => {
    const { cache, streams } = fleetOf(2);
    const [one, two] = streams;
    if (!one || !two) throw new Error('two streams');
    cache.setResources(resources());
    const shared = ['a', 'b'];
    one.request(shared);
    two.request(shared);
    expect(one.sent.at(-1)?.names.sort()).toEqual(['a', 'b']);
    expect(two.sent.at(-1)?.names.sort()).toEqual(['a', 'b']);
    // One ACKs while dropping b; the other ACKs the shared set as it was.
    one.request(['a'], one.sent.at(-1));
    two.request(shared, two.sent.at(-1));

    cache.setResources(resources({ endpoints: [assignment('a'), assignment('b', 2000)] }));
    // Only the stream still subscribed to b is sent its new version.
    expect(one.sent).toHaveLength(1);
    expect(two.sent.at(-1)?.names).toEqual(['b']);

    // Asked for again, b is sent again to the stream that dropped it, and only b is new to it.
    one.request(shared, one.sent.at(-1));
    expect(one.sent.at(-1)?.names.sort()).toEqual(['b']);
    two.request(shared, two.sent.at(-1));
    expect(two.sent).toHaveLength(2);
  });
});

describe('SotwStream, a fleet sent a cluster update', () => {
  // Each stream of a fleet ACKs every response with the names it asked for (the same decoded
  // request at connect, server.ts RecentRequests), and an updated cluster makes each re-send its
  // assignment (resendAssignments). What the streams lack of the new EDS selection is then the
  // same for all of them: looked up once for the fleet, not once per stream and name.
  const CLUSTERS = 200;
  const STREAMS = 20;

  function fleetOfNamedEds() {
    const names = Array.from({ length: CLUSTERS }, (_, i) => `c${i}`);
    const configuration = (timeout: string, port = 1000) =>
      resources({ clusters: names.map((name, i) => cluster(name, i === 7 ? timeout : '1s')), endpoints: names.map((name, i) => assignment(name, i === 9 ? port : 1000)) });
    const cache = new SnapshotCache();
    const bodies = new SharedResponseBodies();
    cache.setResources(configuration('1s'));
    const streams = Array.from({ length: STREAMS }, (_, i) => {
      // Decoded when read, not while the lookups of a push are counted.
      const wire: WireMessage[] = [];
      const sent = {
        get all(): Response[] {
          return wire.map((message) => summary(decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', wireBytes(message))));
        },
        last: (typeUrl: string): Response | undefined => sent.all.filter((r) => r.type_url === typeUrl).at(-1),
        clear: () => (wire.length = 0),
      };
      const stream = new SotwStream({ cache, identity: ENVOY, bodies, hooks: recordingHooks().hooks, logger: pino({ level: 'silent' }), send: (messages, flushed) => (wire.push(...messages), flushed(), true) });
      const request = (typeUrl: string, resourceNames: readonly string[], ack?: Response): void =>
        stream.onRequest({ versionInfo: ack?.version_info ?? '', node: { id: `envoy-${i}`, cluster: 'gw', userAgent: 'test' }, resourceNames: resourceNames as string[], typeUrl, responseNonce: ack?.nonce ?? '', errorDetail: undefined });
      return { stream, sent, request };
    });
    for (const { request } of streams) {
      request(TypeUrl.cluster, []);
      request(TypeUrl.endpoint, names);
    }
    /** Every stream ACKs what it was sent last of each type, naming what it asked for. */
    const ackAll = (): void => {
      for (const { sent, request } of streams) {
        request(TypeUrl.cluster, [], sent.last(TypeUrl.cluster));
        request(TypeUrl.endpoint, names, sent.last(TypeUrl.endpoint));
      }
    };
    ackAll();
    /**
     * Map lookups made while every stream but the first was pushed the last change: the first
     * also makes what the fleet shares (the snapshot, the encoded resources, the response bodies).
     */
    const pushLookups = { count: 0, counting: undefined as (() => number) | undefined };
    // One watcher feeds every stream after a single invalidation, as the server does.
    cache.watch((change) => {
      bodies.invalidate(change.changed);
      streams[0]?.stream.onCacheChange(change.changed);
      const before = pushLookups.counting?.() ?? 0;
      for (const { stream } of streams.slice(1)) stream.onCacheChange(change.changed);
      pushLookups.count = (pushLookups.counting?.() ?? 0) - before;
    });
    return { cache, streams, configuration, ackAll, pushLookups };
  }

  it('sends every stream the re-sent assignment, and the changed one, with about one lookup per name for the fleet', () => {
    const { cache, streams, configuration, ackAll, pushLookups } = fleetOfNamedEds();
    const lookups = vi.spyOn(Map.prototype, 'get');
    pushLookups.counting = () => lookups.mock.calls.length;
    try {
      for (let edit = 1; edit <= 3; edit++) {
        for (const { sent } of streams) sent.clear();
        // Cluster c7 updated each time; the second edit also changes c9's assignment, the third keeps it.
        cache.setResources(configuration(`${edit + 1}s`, edit >= 2 ? 2000 : 1000));
        const perStream = pushLookups.count / (STREAMS - 1);
        for (const { sent } of streams) {
          expect(sent.all.map((r) => [r.type_url, r.type_url === TypeUrl.endpoint ? r.names.sort() : r.names.length])).toEqual([
            [TypeUrl.cluster, CLUSTERS],
            [TypeUrl.endpoint, edit === 2 ? ['c7', 'c9'] : ['c7']],
          ]);
        }
        // Per stream and name it was CLUSTERS lookups a stream (notSent); now a handful a stream.
        expect(perStream).toBeLessThan(CLUSTERS / 4);
        ackAll();
      }
    } finally {
      lookups.mockRestore();
    }
  });
});
