import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { decodeMessage } from '../../src/envoy/proto.js';
import { TypeUrl, type JsonObject } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { DeltaStream } from '../../src/xds/delta.js';
import { wireBytes } from '../../src/xds/wire.js';
import { assignment, cluster, recordingHooks, resources, route } from '../support/xds-stream.js';

interface Response {
  system_version_info: string;
  nonce: string;
  type_url: string;
  /** name@version of each resource sent. */
  resources: string[];
  removed: string[];
}

interface Request {
  typeUrl: string;
  subscribe?: string[];
  unsubscribe?: string[];
  initial?: Record<string, string>;
  nonce?: string;
  error?: string;
}

/** `transport`: as in xds-sotw.test.ts, `held` keeps responses in flight until `flushAll()`. */
function harness(transport: 'instant' | 'held' = 'instant') {
  const waiting: Array<() => void> = [];
  const cache = new SnapshotCache();
  const sent: Response[] = [];
  const { hooks, events } = recordingHooks();
  const stream = new DeltaStream({
    cache,
    identity: { role: 'envoy', via: 'mtls' },
    hooks,
    logger: pino({ level: 'silent' }),
    send: (messages, flushed) => {
      for (const message of messages) {
        const json = decodeMessage('envoy.service.discovery.v3.DeltaDiscoveryResponse', wireBytes(message));
        const list = (json['resources'] ?? []) as JsonObject[];
        sent.push({
          system_version_info: String(json['system_version_info'] ?? ''),
          nonce: String(json['nonce']),
          type_url: String(json['type_url']),
          resources: list.map((entry) => {
            const resource = entry['resource'] as JsonObject;
            expect(resource['name'] ?? resource['cluster_name']).toBe(entry['name']);
            return `${String(entry['name'])}@${String(entry['version'])}`;
          }),
          removed: ((json['removed_resources'] ?? []) as string[]).slice(),
        });
      }
      if (transport === 'instant') flushed();
      else waiting.push(flushed);
      return true;
    },
  });
  cache.watch((change) => stream.onCacheChange(change.changed));
  const request = (r: Request): void =>
    stream.onRequest({
      node: { id: 'envoy-d', cluster: 'gw', userAgent: 'test' },
      typeUrl: r.typeUrl,
      subscribe: r.subscribe ?? [],
      unsubscribe: r.unsubscribe ?? [],
      initialResourceVersions: new Map(Object.entries(r.initial ?? {})),
      responseNonce: r.nonce ?? '',
      errorDetail: r.error === undefined ? undefined : { code: 13, message: r.error },
    });
  const versionOf = (typeUrl: string, name: string): string => cache.snapshot(typeUrl)?.resources.get(name)?.version ?? 'missing';
  const flushAll = (): void => {
    for (const flushed of waiting.splice(0)) flushed();
  };
  return { cache, sent, events, request, versionOf, stream, flushAll };
}

const names = (response: Response | undefined): string[] => (response?.resources ?? []).map((entry) => entry.split('@')[0] ?? '').sort();

describe('DeltaStream', () => {
  it('sends every cluster to a wildcard client, then only what changed, and removals by name', () => {
    const { cache, sent, request, versionOf } = harness();
    cache.setResources(resources());
    request({ typeUrl: TypeUrl.cluster });
    expect(names(sent[0])).toEqual(['a', 'b']);
    expect(sent[0]?.resources).toContain(`a@${versionOf(TypeUrl.cluster, 'a')}`);
    request({ typeUrl: TypeUrl.cluster, nonce: sent[0]?.nonce });

    cache.setResources(resources({ clusters: [cluster('a', '2s')] }));
    expect(sent).toHaveLength(2);
    expect(names(sent[1])).toEqual(['a']);
    expect(sent[1]?.removed).toEqual(['b']);
    expect(sent[1]?.system_version_info).toBe(cache.snapshot(TypeUrl.cluster)?.version);
  });

  it('keeps the last 64 unanswered responses: a reply to an older one is ignored, to any kept one is an ACK of it, in any order', () => {
    const { cache, sent, request, events } = harness();
    cache.setResources(resources());
    request({ typeUrl: TypeUrl.cluster });
    for (let i = 1; i <= 70; i++) cache.setResources(resources({ clusters: [cluster('a', `${i + 1}s`)] }));
    expect(sent).toHaveLength(71);
    const acks = (): string[] => events.filter((e) => e.startsWith('ack '));
    // The first 7 were forgotten (71 sent, 64 kept).
    request({ typeUrl: TypeUrl.cluster, nonce: sent[6]?.nonce });
    expect(acks()).toEqual([]);
    request({ typeUrl: TypeUrl.cluster, nonce: sent[40]?.nonce });
    request({ typeUrl: TypeUrl.cluster, nonce: sent[7]?.nonce });
    request({ typeUrl: TypeUrl.cluster, nonce: sent[70]?.nonce });
    expect(acks()).toEqual([sent[40], sent[7], sent[70]].map((r) => `ack Cluster ${r?.system_version_info}`));
    // Each is answered once.
    request({ typeUrl: TypeUrl.cluster, nonce: sent[40]?.nonce });
    expect(acks()).toHaveLength(3);
  });

  it('sends nothing the client already holds according to initial_resource_versions', () => {
    const { cache, sent, request, versionOf } = harness();
    cache.setResources(resources());
    request({ typeUrl: TypeUrl.endpoint, subscribe: ['a', 'b'], initial: { a: versionOf(TypeUrl.endpoint, 'a'), b: 'stale', gone: 'x' } });
    expect(sent).toHaveLength(1);
    expect(names(sent[0])).toEqual(['b']);
    expect(sent[0]?.removed).toEqual([]);
    const wildcard = harness();
    wildcard.cache.setResources(resources());
    wildcard.request({ typeUrl: TypeUrl.cluster, initial: { a: wildcard.versionOf(TypeUrl.cluster, 'a'), gone: 'x' } });
    expect(names(wildcard.sent[0])).toEqual(['b']);
    expect(wildcard.sent[0]?.removed).toEqual(['gone']);
  });

  it('follows subscribe and unsubscribe, and resends after a resubscription', () => {
    const { cache, sent, request } = harness();
    cache.setResources(resources({ endpoints: [assignment('a')] }));
    request({ typeUrl: TypeUrl.endpoint, subscribe: ['a', 'b'] });
    expect(names(sent[0])).toEqual(['a']);
    cache.setResources(resources());
    expect(names(sent[1])).toEqual(['b']);
    request({ typeUrl: TypeUrl.endpoint, unsubscribe: ['a'] });
    cache.setResources(resources({ endpoints: [assignment('a', 2), assignment('b')] }));
    expect(sent).toHaveLength(2);
    request({ typeUrl: TypeUrl.endpoint, subscribe: ['a'] });
    expect(names(sent[2])).toEqual(['a']);
  });

  it('records ACK and NACK by nonce and does not resend a rejected resource', () => {
    const { cache, sent, events, request } = harness();
    cache.setResources(resources());
    request({ typeUrl: TypeUrl.cluster });
    request({ typeUrl: TypeUrl.cluster, nonce: sent[0]?.nonce });
    expect(events.at(-1)).toBe(`ack Cluster ${sent[0]?.system_version_info}`);
    cache.setResources(resources({ clusters: [cluster('a', '5s'), cluster('b')] }));
    request({ typeUrl: TypeUrl.cluster, nonce: sent[1]?.nonce, error: 'cluster a: bad' });
    expect(events.at(-1)).toBe(`nack Cluster ${sent[1]?.system_version_info} cluster a: bad`);
    expect(sent).toHaveLength(2);
    cache.setResources(resources({ clusters: [cluster('a', '5s'), cluster('b', '3s')] }));
    expect(names(sent[2])).toEqual(['b']);
  });

  it('answers a wildcard client once even when the first snapshot arrives later and is empty', () => {
    const { cache, sent, request } = harness();
    request({ typeUrl: TypeUrl.listener });
    cache.setResources(resources());
    expect(sent.map((r) => [r.type_url, r.resources, r.removed])).toEqual([[TypeUrl.listener, [], []]]);
    cache.setResources(resources({ clusters: [] }));
    expect(sent).toHaveLength(1);
  });

  it('honours the explicit wildcard and its removal', () => {
    const { cache, sent, request } = harness();
    cache.setResources(resources());
    request({ typeUrl: TypeUrl.endpoint, subscribe: ['*'] });
    expect(names(sent[0])).toEqual(['a', 'b']);
    request({ typeUrl: TypeUrl.endpoint, unsubscribe: ['*'] });
    cache.setResources(resources({ endpoints: [assignment('a', 7), assignment('b', 7)] }));
    expect(sent).toHaveLength(1);
  });

  it('resends only the assignment of the EDS cluster that was updated', () => {
    const { cache, sent, request } = harness();
    cache.setResources(resources());
    request({ typeUrl: TypeUrl.cluster });
    request({ typeUrl: TypeUrl.endpoint, subscribe: ['a', 'b'] });
    sent.length = 0;
    cache.setResources(resources({ clusters: [cluster('a'), cluster('b', '9s')] }));
    expect(sent.map((r) => [r.type_url, names(r)])).toEqual([
      [TypeUrl.cluster, ['b']],
      [TypeUrl.endpoint, ['b']],
    ]);
  });

  describe('make-before-break on removal', () => {
    function settledClient() {
      const h = harness();
      h.cache.setResources(resources({ routes: [route('b')] }));
      h.request({ typeUrl: TypeUrl.cluster });
      h.request({ typeUrl: TypeUrl.endpoint, subscribe: ['a', 'b'] });
      h.request({ typeUrl: TypeUrl.route, subscribe: ['r'] });
      for (const response of h.sent) h.request({ typeUrl: response.type_url, nonce: response.nonce });
      h.sent.length = 0;
      return h;
    }

    it('sends the removal of a cluster, and of its assignment, only after the route that stops naming it is ACKed', () => {
      const { cache, sent, request } = settledClient();
      cache.setResources(resources({ clusters: [cluster('a')], endpoints: [assignment('a')], routes: [route('a')] }));
      expect(sent.map((r) => [r.type_url, names(r), r.removed])).toEqual([[TypeUrl.route, ['r'], []]]);
      request({ typeUrl: TypeUrl.route, nonce: sent[0]?.nonce });
      expect(sent.slice(1).map((r) => [r.type_url, names(r), r.removed])).toEqual([
        [TypeUrl.cluster, [], ['b']],
        [TypeUrl.endpoint, [], ['b']],
      ]);
      expect(sent[1]?.system_version_info).toBe(cache.snapshot(TypeUrl.cluster)?.version);
    });

    it('keeps the hold while the route update is rejected', () => {
      const { cache, sent, request } = settledClient();
      cache.setResources(resources({ clusters: [cluster('a')], endpoints: [assignment('a')], routes: [route('a')] }));
      request({ typeUrl: TypeUrl.route, nonce: sent[0]?.nonce, error: 'bad route' });
      expect(sent).toHaveLength(1);
      cache.setResources(resources({ clusters: [cluster('a')], endpoints: [assignment('a')], routes: [route('c')] }));
      request({ typeUrl: TypeUrl.route, nonce: sent[1]?.nonce });
      expect(sent.slice(2).map((r) => [r.type_url, r.removed])).toEqual([
        [TypeUrl.cluster, ['b']],
        [TypeUrl.endpoint, ['b']],
      ]);
    });

    it('removes at once when no route or listener update is pending', () => {
      const { cache, sent } = settledClient();
      cache.setResources(resources({ clusters: [cluster('a')], endpoints: [assignment('a')], routes: [route('b')] }));
      expect(sent.map((r) => [r.type_url, r.removed])).toEqual([
        [TypeUrl.cluster, ['b']],
        [TypeUrl.endpoint, ['b']],
      ]);
    });
  });

  it('keeps one response per type in flight to a client that stops reading, then sends what it lacks at the newest version', () => {
    const { cache, sent, events, request, versionOf, stream, flushAll } = harness('held');
    cache.setResources(resources());
    request({ typeUrl: TypeUrl.cluster });
    expect(sent).toHaveLength(1);
    for (let i = 2; i <= 10; i++) cache.setResources(resources({ clusters: [cluster('a', `${i}s`), cluster('b')] }));
    cache.setResources(resources({ clusters: [cluster('a', '99s')] }));
    expect(sent).toHaveLength(1);
    expect(stream.backlog().due).toEqual([TypeUrl.cluster]);
    flushAll();
    expect(sent).toHaveLength(2);
    expect(sent[1]?.resources).toEqual([`a@${versionOf(TypeUrl.cluster, 'a')}`]);
    expect(sent[1]?.removed).toEqual(['b']);
    expect(sent[1]?.system_version_info).toBe(cache.snapshot(TypeUrl.cluster)?.version);
    // Both nonces stay answerable: the client ACKs each response it reads.
    request({ typeUrl: TypeUrl.cluster, nonce: sent[0]?.nonce });
    request({ typeUrl: TypeUrl.cluster, nonce: sent[1]?.nonce });
    expect(events.filter((e) => e.startsWith('ack'))).toHaveLength(2);
  });
});
