import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { encodeMessage } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { closeAdsStream, deltaRequest, deltaResponse, openAdsStream, type AdsConnection } from '../support/ads-client.js';
import { waitFor } from '../support/wait.js';
import { assignment, cluster } from '../support/xds-stream.js';

/**
 * Delta streams that hold the same snapshot are sent one response, encoded once: the same bytes
 * on every stream (issue 9: delta responses built per stream cost 2.4 to 3.7 MB per client). A
 * stream whose subscription differs still gets exactly what it lacks.
 */

const STREAMS = 40;
const CLUSTERS = 100;
const names = Array.from({ length: CLUSTERS }, (_, i) => `pool-${i}`);

function configuration(edited: readonly number[], generation: number, endpointsEdited = true): XdsResources {
  const clusters = names.map((name, i) => cluster(name, edited.includes(i) ? `${generation + 1}s` : '1s'));
  const endpoints = names.map((name, i) => assignment(name, endpointsEdited && edited.includes(i) ? 9000 + generation : 8080));
  const listeners: EnvoyResource[] = [{ '@type': TypeUrl.listener, name: 'l', address: { socket_address: { address: '0.0.0.0', port_value: 10000 } } }];
  return { listeners, routes: [], clusters, endpoints, secrets: [] };
}

interface Received {
  readonly typeUrl: string;
  readonly nonce: string;
  readonly names: string[];
  readonly removed: string[];
  readonly bytes: Buffer;
}

interface DeltaClient extends AdsConnection {
  readonly received: Received[];
  send(json: Parameters<typeof encodeMessage>[1]): void;
}

describe(`delta: ${STREAMS} streams x ${CLUSTERS} clusters share their responses`, () => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache });
  const clients: DeltaClient[] = [];
  let generation = 0;

  const settled = (): Promise<unknown> =>
    waitFor(() => server.clients().filter((c) => c.types.every((t) => t.state === 'acked')).length === STREAMS, { what: 'every stream to ACK', timeoutMs: 30_000, intervalMs: 20 });

  beforeAll(async () => {
    cache.setResources(configuration([], 0));
    const port = await server.start({ port: 0, host: '127.0.0.1' });
    for (let i = 0; i < STREAMS; i++) {
      const { client, call } = openAdsStream(port, 'delta');
      const send = (json: Parameters<typeof encodeMessage>[1]): void => {
        call.write(deltaRequest(json));
      };
      const received: Received[] = [];
      call.on('data', (bytes: Buffer) => {
        const response = deltaResponse(bytes);
        const resources = (response['resources'] ?? []) as { name: string }[];
        const typeUrl = String(response['type_url']);
        const nonce = String(response['nonce']);
        received.push({ typeUrl, nonce, names: resources.map((r) => r.name), removed: (response['removed_resources'] ?? []) as string[], bytes });
        send({ type_url: typeUrl, response_nonce: nonce });
      });
      call.on('error', () => undefined);
      // Every other stream also asks for listeners first, so the streams' own counters differ.
      if (i % 2 === 1) send({ node: { id: `envoy-${i}` }, type_url: TypeUrl.listener });
      send({ ...(i % 2 === 0 ? { node: { id: `envoy-${i}` } } : {}), type_url: TypeUrl.cluster });
      send({ type_url: TypeUrl.endpoint, resource_names_subscribe: names });
      clients.push({ client, call, received, send });
    }
    await waitFor(() => server.clients().filter((c) => c.types.some((t) => t.typeUrl === TypeUrl.endpoint) && c.types.every((t) => t.state === 'acked')).length === STREAMS, {
      what: `${STREAMS} streams to ACK their clusters and assignments`,
      timeoutMs: 60_000,
      intervalMs: 20,
    });
  }, 120_000);

  afterAll(async () => {
    clients.forEach(closeAdsStream);
    await server.stop();
  });

  /** Applies an edit of `edited` and returns, per stream, what it was sent because of it. */
  async function edit(edited: readonly number[], endpointsEdited = true): Promise<Received[][]> {
    const before = clients.map((c) => c.received.length);
    cache.setResources(configuration(edited, ++generation, endpointsEdited));
    await waitFor(() => clients.every((c, i) => c.received.slice(before[i]).some((r) => r.typeUrl === TypeUrl.endpoint && r.names.length > 0)), {
      what: 'every stream to be sent the edited assignments',
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    await settled();
    return clients.map((c, i) => c.received.slice(before[i]));
  }

  it('sends the initial clusters and every edit in the same bytes to every stream, whatever its own nonces', async () => {
    const initial = clients.map((c) => c.received.find((r) => r.typeUrl === TypeUrl.cluster));
    expect(initial.every((r) => r?.names.length === CLUSTERS)).toBe(true);
    expect(initial.every((r) => r?.bytes.equals(initial[0]?.bytes as Buffer))).toBe(true);

    const sent = await edit([3]);
    for (const responses of sent) {
      const clusters = responses.filter((r) => r.typeUrl === TypeUrl.cluster);
      expect(clusters.map((r) => r.names)).toEqual([['pool-3']]);
    }
    const cds = sent.map((responses) => responses.find((r) => r.typeUrl === TypeUrl.cluster)?.bytes);
    expect(cds.every((bytes) => bytes?.equals(cds[0] as Buffer))).toBe(true);
  });

  it('sends a stream that unsubscribed only what it still watches, and the others still share', async () => {
    const odd = clients[1] as DeltaClient;
    odd.send({ type_url: TypeUrl.endpoint, resource_names_unsubscribe: ['pool-5'] });
    // Requests on a stream are handled in order: once the (empty) answer to this one is in, so is the unsubscription.
    odd.send({ type_url: TypeUrl.secret, resource_names_subscribe: ['*'] });
    await waitFor(() => odd.received.some((r) => r.typeUrl === TypeUrl.secret), { what: 'the answer to a secrets wildcard' });
    const sent = await edit([5, 6]);
    const assignments = (responses: Received[]): string[] => responses.filter((r) => r.typeUrl === TypeUrl.endpoint).flatMap((r) => r.names).sort();
    // pool-3, edited before, is back to what it was: a change too.
    expect(assignments(sent[1] as Received[])).toEqual(['pool-3', 'pool-6']);
    for (const [i, responses] of sent.entries()) if (i !== 1) expect(assignments(responses)).toEqual(['pool-3', 'pool-5', 'pool-6']);
    const eds = sent.filter((_, i) => i !== 1).map((responses) => responses.filter((r) => r.typeUrl === TypeUrl.endpoint).map((r) => r.bytes.toString('base64')).join());
    expect(new Set(eds).size).toBe(1);
    // Subscribing again brings the assignment back at once, alone.
    const before = odd.received.length;
    odd.send({ type_url: TypeUrl.endpoint, resource_names_subscribe: ['pool-5'] });
    await waitFor(() => odd.received.slice(before).some((r) => r.typeUrl === TypeUrl.endpoint), { what: 'pool-5 to be sent again' });
    expect(odd.received.slice(before).map((r) => r.names)).toEqual([['pool-5']]);
  });

  it('sends the unchanged assignment that an edited cluster waits for in the same bytes to every stream', async () => {
    // Puts the assignments edited before back as they were, so the next edits change clusters only.
    await edit([7], false);
    const sent = await edit([7], false);
    const resent = sent.map((responses) => responses.filter((r) => r.typeUrl === TypeUrl.endpoint));
    // Envoy keeps an updated EDS cluster warming until its assignment comes again (assignmentNamesOf).
    for (const responses of resent) expect(responses.map((r) => r.names)).toEqual([['pool-7']]);
    const bytes = resent.map((responses) => responses[0]?.bytes.toString('base64'));
    expect(new Set(bytes).size).toBe(1);
    // A second edit of the same cluster resends it again, to streams that ACKed the first resend.
    const again = await edit([7], false);
    for (const responses of again) expect(responses.filter((r) => r.typeUrl === TypeUrl.endpoint).map((r) => r.names)).toEqual([['pool-7']]);
  });
});
