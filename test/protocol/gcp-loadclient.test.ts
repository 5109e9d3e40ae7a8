import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildGoBench, markFleet, startLoadClient, type LineChild } from '../../bench/gcp.js';
import { generateManifests, inputsFrom } from '../../bench/translate.js';
import { toXdsResources } from '../../src/envoy/index.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { translate } from '../../src/translate/index.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { waitFor } from '../support/wait.js';

/**
 * The yardstick of `npm run bench -- --suite xds-e2e` (the Go load client in bench/gcp) against
 * our real xDS server: it must report "all ACKed" only once every stream really has ACKed the
 * change, as the server itself saw it. `make test` builds bench/gcp first (`make bench-tools`, a
 * minute or more on a cold machine, then cached); run alone, this file builds it itself.
 */

const STREAMS = 3;

describe.each(['sotw', 'delta'] as const)('Go load client, %s, 2 Backends x 3 streams', (mode) => {
  const inputs = inputsFrom(generateManifests(2));
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  const acked = new Map<string, Set<number>>();
  let fleet: LineChild;

  beforeAll(async () => {
    const bin = buildGoBench((line) => console.log(line));
    cache.setResources(toXdsResources(translate(inputs).ir));
    server.on('ack', (ack) => {
      if (ack.typeUrl !== TypeUrl.cluster) return;
      const streams = acked.get(ack.version) ?? new Set<number>();
      streams.add(ack.streamId);
      acked.set(ack.version, streams);
    });
    const port = await server.start({ port: 0, host: '127.0.0.1' });
    fleet = startLoadClient(bin, { port, streams: STREAMS, mode, name: `loadclient-${mode}` });
  }, 600_000);

  afterAll(async () => {
    await fleet.stop();
    await server.stop();
  });

  it('reports every stream ready once each has ACKed the initial Clusters', async () => {
    const ready = await fleet.next((e) => e.event === 'ready', 20_000, 'ready');
    expect(ready['streams']).toBe(STREAMS);
    // Each stream's first DATA frame comes after its connection was taken and no later than its
    // whole first response was read (the connection-storm row reports both).
    expect(Number(ready['firstByteMaxMs'])).toBeGreaterThanOrEqual(Number(ready['connectMaxMs']));
    expect(Number(ready['firstByteMaxMs'])).toBeLessThanOrEqual(Number(ready['firstResponseMaxMs']));
    const initial = cache.snapshot(TypeUrl.cluster)?.version ?? '';
    // The client reports once it has sent its ACKs; the server reads them a moment later.
    await waitFor(() => acked.get(initial)?.size === STREAMS, { what: `the server to see ${STREAMS} ACKs of version ${initial}` });
  });

  it('reports a change done only when every stream has ACKed it, and not for a type that did not change', async () => {
    // The change is made only once the client has noted what each stream holds: made before,
    // it could reach a stream first and be counted in that stream's baseline (the bench then
    // waited for a change that never came).
    const markedAt = await markFleet(fleet, 'clusters', 'cds', 20_000);
    expect(markedAt).toBeGreaterThan(0);
    const backend = inputs.backends[0];
    if (!backend) throw new Error('no Backend');
    backend.spec.outlierDetection = { consecutive5xx: 7 };
    cache.setResources(toXdsResources(translate(inputs).ir));
    const version = cache.snapshot(TypeUrl.cluster)?.version ?? '';

    const done = await fleet.next((e) => e.event === 'done', 20_000, 'done');
    expect(done['id']).toBe('clusters');
    // "done" must not come before the server has even sent the change to every stream.
    const sent = server.clients().map((c) => c.types.find((t) => t.typeUrl === TypeUrl.cluster)?.sentVersion);
    expect(sent).toEqual(Array.from({ length: STREAMS }, () => version));
    await waitFor(() => acked.get(version)?.size === STREAMS, { what: `the server to see ${STREAMS} ACKs of version ${version}` });
    expect(Number(done['ms'])).toBeGreaterThan(0);
    expect(Number(done['firstMs'])).toBeLessThanOrEqual(Number(done['ms']));

    // Listeners did not change: a mark on them stays open.
    await markFleet(fleet, 'listeners', 'lds', 20_000);
    fleet.send('status listeners');
    const status = await fleet.next((e) => e.event === 'status', 5_000, 'status');
    expect(status['done']).toBe(0);
  });
});
