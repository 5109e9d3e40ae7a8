import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { generateManifests, inputsFrom } from '../../bench/translate.js';
import { startGatewayRuntime, STATUS_COALESCE_MS, type RunningGateway } from '../../src/app/gateway-runtime.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { sotwRequest, sotwResponse } from '../support/ads-client.js';
import { MemoryProvider } from '../support/memory-provider.js';
import { waitFor } from '../support/wait.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';

/**
 * An edit's status pass waits until the change has been pushed to every stream and those writes
 * have left (issue 9): Node's HTTP/2 sends what a turn of the event loop wrote at the next
 * turn, so a status slice in the turn of the fan-out's last slice held the last streams' bytes
 * back. The real pipeline on loopback; many streams over a few connections, so that the push
 * takes more than its first slice.
 */

const CONNECTIONS = 8;
const STREAMS_PER_CONNECTION = 60;
const STREAMS = CONNECTIONS * STREAMS_PER_CONNECTION;

const running: RunningGateway[] = [];
const clients: grpc.Client[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

describe('the status pass after an edit', () => {
  it('runs a turn after the fan-out has pushed to the last stream, not in the same turn', async () => {
    const provider = new MemoryProvider({ inputs: inputsFrom(generateManifests(10)), problems: [] });
    const events: string[] = [];
    const runtime = await startGatewayRuntime({
      provider,
      origin: { test: 'status-after-fanout' },
      ...LOOPBACK_SERVE_PORTS,
      envoy: {},
      logger: pino({ level: 'silent' }),
      statusSink: { statuses: () => events.push('published'), warnings: () => undefined },
    });
    running.push(runtime);

    let acked = 0;
    for (let c = 0; c < CONNECTIONS; c++) {
      // A local subchannel pool: this client's streams share one connection of its own.
      const client = new grpc.Client(`127.0.0.1:${runtime.xdsPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
      clients.push(client);
      for (let s = 0; s < STREAMS_PER_CONNECTION; s++) {
        const call = client.makeBidiStreamRequest<Buffer, Buffer>('/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', (b) => b, (b) => b);
        let first = true;
        call.on('data', (bytes: Buffer) => {
          const response = sotwResponse(bytes);
          if (first) acked++;
          first = false;
          call.write(sotwRequest({ version_info: String(response['version_info']), response_nonce: String(response['nonce']), type_url: TypeUrl.cluster }));
        });
        call.on('error', () => undefined);
        call.write(sotwRequest({ node: { id: `envoy-${c}-${s}` }, type_url: TypeUrl.cluster }));
      }
    }
    await waitFor(() => acked === STREAMS, { what: `${STREAMS} streams to get their clusters`, timeoutMs: 30_000, intervalMs: 20 });
    // The fleet's ACKs folded into status; the edit starts from a quiet loop.
    await new Promise((resolve) => setTimeout(resolve, STATUS_COALESCE_MS * 4));
    events.length = 0;

    // Each push of the edit, and the turn after each turn that pushed.
    let turnMarked = false;
    runtime.xds.on('sent', () => {
      events.push('sent');
      if (turnMarked) return;
      turnMarked = true;
      setImmediate(() => {
        turnMarked = false;
        events.push('next turn');
      });
    });
    // One more Backend and its route: a new cluster for every stream, new statuses to publish.
    provider.emit({ inputs: inputsFrom(generateManifests(11)), problems: [] });
    await waitFor(() => events.includes('published'), { what: 'the edit\'s statuses to be published', timeoutMs: 10_000, intervalMs: 5 });

    const sent = events.filter((e) => e === 'sent').length;
    expect(sent).toBe(STREAMS);
    const lastSent = events.lastIndexOf('sent');
    // The push took more than one turn: else this test would not show the order it is about.
    expect(events.slice(events.indexOf('sent'), lastSent)).toContain('next turn');
    const published = events.indexOf('published');
    expect(published).toBeGreaterThan(lastSent);
    // The turn that sends the last slice's writes came before status work.
    expect(events.slice(lastSent, published)).toContain('next turn');
  }, 60_000);
});
