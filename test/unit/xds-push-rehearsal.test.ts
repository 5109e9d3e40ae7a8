import { describe, expect, it, vi } from 'vitest';
import { PUSH_ORDER, resourceName, TypeUrl, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { DELTA_CLIENT, rehearsePushes, type RehearsalStreams } from '../../src/xds/push-rehearsal.js';
import { XdsServer } from '../../src/xds/server.js';
import { closeAdsStream, deltaRequest, deltaResponse, openAdsStream, sotwRequest, sotwResponse } from '../support/ads-client.js';
import { sleep, waitFor } from '../support/wait.js';
import { resources } from '../support/xds-stream.js';

/**
 * The rehearsal of an edit's push (push-rehearsal.ts) warms the code a fleet's first edit runs,
 * on a private server and cache: it must push and have ACKed what a cluster edit makes a delta
 * stream be sent, and leave the real server, its cache and its streams exactly as they were.
 */

const EVENTS = ['connected', 'disconnected', 'sent', 'ack', 'nack', 'fleet', 'attemptForms'] as const;

describe('push rehearsal', () => {
  // Each edit, in either protocol: the edited Cluster (delta) or every Cluster (SotW), and the
  // assignment Envoy then waits for, to every stream, each ACKed.
  it.each(['delta', 'sotw'] as const)("pushes every %s stand-in stream an edit's Clusters and assignment, and leaves the server's cache, ledger and events alone", async (protocol) => {
    const cache = new SnapshotCache();
    cache.setResources(resources());
    const versions = PUSH_ORDER.map((kind) => cache.snapshot(TypeUrl[kind])?.version);
    const server = new XdsServer({ cache, rehearsePushes: false });
    const heard: string[] = [];
    for (const event of EVENTS) server.on(event, () => heard.push(event));
    try {
      const result = await server.rehearsePushes({ streams: 5, edits: 4 }, protocol);
      // `collected` too when a core was free (collectAfterPushRehearsal).
      expect(result).toMatchObject({ pushed: 5 * 2 * 4, edits: 4, completed: true });
      expect(server.rehearsedProtocols).toEqual(new Set([protocol]));
      expect(heard).toEqual([]);
      expect(server.clients()).toEqual([]);
      expect(server.fleet().size).toBe(0);
      expect(PUSH_ORDER.map((kind) => cache.snapshot(TypeUrl[kind])?.version)).toEqual(versions);
    } finally {
      await server.stop();
    }
  });

  // Real edits change one Backend's Cluster after another, each followed by the resend of that
  // Cluster's assignment: the rehearsal's edits do the same, so that the code that builds a new
  // resend has run with type feedback before the fleet's first edit (it had run once, and the
  // first real edit threw its compiled code away).
  it.each(['delta', 'sotw'] as const)('edits a different Cluster each time in %s, one per edit, each pushed and ACKed', async (protocol) => {
    const original = SnapshotCache.prototype.setResources;
    const served: XdsResources[] = [];
    const spy = vi.spyOn(SnapshotCache.prototype, 'setResources').mockImplementation(function (this: SnapshotCache, resources, planes, forms) {
      served.push(resources);
      return original.call(this, resources, planes, forms);
    });
    const server = new XdsServer({ cache: new SnapshotCache(), rehearsePushes: false });
    try {
      const edits = 6;
      const result = await server.rehearsePushes({ streams: 2, edits }, protocol);
      expect(result).toMatchObject({ pushed: 2 * 2 * edits, edits, completed: true });
      // The private cache's first configuration, then one per edit.
      expect(served).toHaveLength(1 + edits);
      const editedClusters = served.slice(1).map((after, i) => {
        const before = new Set((served[i] as XdsResources).clusters);
        return after.clusters.filter((c) => !before.has(c)).map(resourceName);
      });
      expect(editedClusters.every((names) => names.length === 1)).toBe(true);
      expect(new Set(editedClusters.flat()).size).toBe(edits);
    } finally {
      spy.mockRestore();
      await server.stop();
    }
  });

  /** A stream that ACKs whatever it is sent, as Envoy does, in either protocol. */
  const ACKING = {
    sotw: {
      decode: sotwResponse,
      ack: (r: Record<string, unknown>) => sotwRequest({ type_url: String(r['type_url']), response_nonce: String(r['nonce']), version_info: String(r['version_info']) }),
      first: () => sotwRequest({ node: { id: 'envoy-1' }, type_url: TypeUrl.cluster }),
    },
    delta: {
      decode: deltaResponse,
      ack: (r: Record<string, unknown>) => deltaRequest({ type_url: String(r['type_url']), response_nonce: String(r['nonce']) }),
      first: () => deltaRequest({ node: { id: 'envoy-1' }, type_url: TypeUrl.cluster }),
    },
  } as const;

  it.each(['sotw', 'delta'] as const)('runs once a %s stream is connected and the server idles, in its protocol, and sends that stream nothing', async (protocol) => {
    const cache = new SnapshotCache();
    cache.setResources(resources());
    const server = new XdsServer({ cache });
    const port = await server.start({ port: 0, host: '127.0.0.1' });
    const connection = openAdsStream(port, protocol);
    const wire = ACKING[protocol];
    const received: string[] = [];
    try {
      expect(server.pushRehearsal).toBe('waiting');
      connection.call.on('data', (bytes: Buffer) => {
        const response = wire.decode(bytes);
        received.push(String(response['type_url']));
        connection.call.write(wire.ack(response));
      });
      connection.call.on('error', () => undefined);
      connection.call.write(wire.first());
      await waitFor(() => server.clients()[0]?.types.every((t) => t.state === 'acked') === true && received.length === 1, { what: 'the stream to ACK its clusters', timeoutMs: 10_000 });
      const before = JSON.stringify(server.clients());
      await waitFor(() => server.pushRehearsal === 'done', { what: 'the rehearsal to run', timeoutMs: 30_000, intervalMs: 20 });
      // The push rehearsed is the one the fleet's protocol runs.
      expect(server.rehearsedProtocols).toEqual(new Set([protocol]));
      // The stream is sent nothing by the rehearsal (an absence: a short look after it is done).
      await sleep(50);
      expect(received).toEqual([TypeUrl.cluster]);
      expect(JSON.stringify(server.clients())).toBe(before);
      // A real edit afterwards reaches the stream as ever.
      cache.setResources(resources({ clusters: resources().clusters.map((c) => ({ ...c, connect_timeout: '7s' })) }));
      await waitFor(() => received.length === 2, { what: 'the edit to reach the stream', timeoutMs: 10_000 });
    } finally {
      closeAdsStream(connection);
      await server.stop();
    }
  });

  it('is not run when the server is told not to', async () => {
    const server = new XdsServer({ cache: new SnapshotCache(), rehearsePushes: false });
    expect(server.pushRehearsal).toBe('off');
    await server.stop();
  });

  it('waits while the real server has work, and ends without completing once it stops', async () => {
    const cache = new SnapshotCache();
    let busyAnswers = 0;
    let stopped = false;
    const streams: RehearsalStreams = {
      cache,
      client: DELTA_CLIENT,
      // Stand-in clients whose requests go nowhere: nothing is ever pushed to them.
      open: () => () => undefined,
      busy: () => {
        busyAnswers++;
        if (busyAnswers === 3) stopped = true;
        return true;
      },
      settled: () => true,
      cancelled: () => stopped,
    };
    let collections = 0;
    const result = await rehearsePushes(streams, { streams: 2, edits: 3 }, () => {
      collections++;
      return undefined;
    });
    expect(result).toEqual({ pushed: 0, edits: 0, completed: false });
    expect(busyAnswers).toBe(3);
    // A full GC is for a server that idles: this one stayed busy.
    expect(collections).toBe(0);
  });

  it('gives up when its stand-in clients are pushed nothing', async () => {
    const cache = new SnapshotCache();
    const streams: RehearsalStreams = {
      cache,
      client: DELTA_CLIENT,
      open: () => () => undefined,
      busy: () => false,
      settled: () => true,
      cancelled: () => false,
    };
    const result = await rehearsePushes(streams, { streams: 2, edits: 3 });
    expect(result.completed).toBe(false);
    expect(result.edits).toBe(0);
  });
});
