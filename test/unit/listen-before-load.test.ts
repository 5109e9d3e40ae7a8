import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { generateManifests, inputsFrom } from '../../bench/translate.js';
import { FIRST_RECEIPT_WAIT_MS, startGatewayRuntime, type RunningGateway, type SnapshotProvider } from '../../src/app/gateway-runtime.js';
import { GATEWAY_NODE_METADATA } from '../../src/envoy/bootstrap.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import type { Snapshot } from '../../src/providers/manifest-files.js';
import { closeAdsStream, openAdsStream, sotwRequest, sotwResponse, type AdsConnection } from '../support/ads-client.js';
import { MemoryProvider } from '../support/memory-provider.js';
import { waitFor } from '../support/wait.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';

/**
 * The xDS server listens before the configuration is read (issue 9): an Envoy that connects
 * meanwhile waits, answered nothing (never an empty configuration that would replace the one it
 * holds), and is sent the configuration as soon as it is translated.
 */

/** A provider whose first snapshot is handed over when the test says so. */
class SlowProvider implements SnapshotProvider {
  private release: ((s: Snapshot) => void) | undefined;
  private fail: ((err: Error) => void) | undefined;
  private readonly first = new Promise<Snapshot>((resolve, reject) => {
    this.release = resolve;
    this.fail = reject;
  });
  stopped = false;
  start(): Promise<Snapshot> {
    return this.first;
  }
  loaded(snapshot: Snapshot): void {
    this.release?.(snapshot);
  }
  failed(err: Error): void {
    this.fail?.(err);
  }
  onChange(): () => void {
    return () => undefined;
  }
  stop(): Promise<void> {
    this.stopped = true;
    return Promise.resolve();
  }
}

/** A logger whose lines the test reads (JSON objects). */
function capturedLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

const running: RunningGateway[] = [];
const streams: AdsConnection[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) closeAdsStream(s);
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

describe('serving before the configuration is read', () => {
  it('holds a client that connected during the load and sends it the whole first configuration, nothing before', async () => {
    const provider = new SlowProvider();
    const { logger, lines } = capturedLogger();
    const starting = startGatewayRuntime({
      provider,
      origin: { test: 'listen-before-load' },
      ...LOOPBACK_SERVE_PORTS,
      envoy: {},
      logger,
    });
    const listening = await waitFor(() => lines.find((l) => l['msg'] === 'switchyard listening; reading the configuration'), { what: 'the xDS server to listen', timeoutMs: 10_000, intervalMs: 5 });
    const port = Number(listening['xdsPort']);

    const stream = openAdsStream(port);
    streams.push(stream);
    const responses: { json: Record<string, unknown>; afterLoad: boolean }[] = [];
    let loadHandedOver = false;
    stream.call.on('data', (bytes: Buffer) => responses.push({ json: sotwResponse(bytes), afterLoad: loadHandedOver }));
    stream.call.on('error', () => undefined);
    // An Envoy of the Gateway the configuration will have: before it is read, that Gateway is unknown.
    stream.call.write(sotwRequest({ node: { id: 'early-envoy', metadata: { [GATEWAY_NODE_METADATA]: 'bench/bench' } }, type_url: TypeUrl.cluster }));
    await waitFor(() => lines.find((l) => l['msg'] === 'Envoy connected'), { what: 'the server to read the early client\'s request', timeoutMs: 10_000, intervalMs: 5 });
    // Turns of the event loop in which a premature (empty) response would have been written.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(responses).toEqual([]);

    loadHandedOver = true;
    provider.loaded({ inputs: inputsFrom(generateManifests(10)), problems: [] });
    const runtime = await starting;
    running.push(runtime);
    await waitFor(() => responses.length > 0, { what: 'the first configuration to reach the early client', timeoutMs: 10_000, intervalMs: 5 });

    const first = responses[0]!;
    expect(first.afterLoad).toBe(true);
    expect(first.json['version_info']).toBe(runtime.cache.view('bench/bench').snapshot(TypeUrl.cluster)?.version);
    expect((first.json['resources'] as unknown[]).length).toBe(runtime.cache.view('bench/bench').snapshot(TypeUrl.cluster)?.resources.size);
    expect((first.json['resources'] as unknown[]).length).toBeGreaterThanOrEqual(10);
    // The Gateway was merely not read yet: no warning that it does not exist.
    expect(lines.filter((l) => String(l['msg']).includes('not in the configuration'))).toEqual([]);
    expect(lines.some((l) => l['msg'] === 'switchyard serving')).toBe(true);
  });

  it('stops listening and stops the provider when the configuration cannot be read', async () => {
    const provider = new SlowProvider();
    const { logger, lines } = capturedLogger();
    const starting = startGatewayRuntime({ provider, origin: { test: 'listen-before-load' }, ...LOOPBACK_SERVE_PORTS, envoy: {}, logger });
    const listening = await waitFor(() => lines.find((l) => l['msg'] === 'switchyard listening; reading the configuration'), { what: 'the xDS server to listen', timeoutMs: 10_000, intervalMs: 5 });
    provider.failed(new Error('config: no such file'));
    await expect(starting).rejects.toThrow('config: no such file');
    expect(provider.stopped).toBe(true);
    // Both ports are free again: a second runtime binds them.
    const again = new SlowProvider();
    const second = startGatewayRuntime({ provider: again, origin: { test: 'listen-before-load' }, xdsPort: Number(listening['xdsPort']), xdsHost: '127.0.0.1', metricsPort: Number(listening['metricsPort']), metricsHost: '127.0.0.1', envoy: {}, logger: pino({ level: 'silent' }) });
    again.loaded({ inputs: inputsFrom(generateManifests(1)), problems: [] });
    const runtime = await second;
    running.push(runtime);
    expect(runtime.xdsPort).toBe(Number(listening['xdsPort']));
  });

  it('holds the first statuses and the edit rehearsal until the first client has read its response (its ACK), not only handed it over', async () => {
    let writes = 0;
    const { logger, lines } = capturedLogger();
    const runtime = await startGatewayRuntime({
      provider: new MemoryProvider({ inputs: inputsFrom(generateManifests(10)), problems: [] }),
      origin: { test: 'listen-before-load' }, ...LOOPBACK_SERVE_PORTS, envoy: {}, logger,
      statusSink: { statuses: () => void writes++, warnings: () => undefined },
      loadReporting: { refreshMs: 600_000 }, firstStatusWaitMs: 60_000, rehearsalMinObjects: 0,
    });
    running.push(runtime);
    const stream = openAdsStream(runtime.xdsPort);
    streams.push(stream);
    const responses: Record<string, unknown>[] = [];
    stream.call.on('data', (bytes: Buffer) => responses.push(sotwResponse(bytes)));
    stream.call.on('error', () => undefined);
    const sentAt = Date.now();
    stream.call.write(sotwRequest({ node: { id: 'slow-reader' }, type_url: TypeUrl.cluster }));
    await waitFor(() => responses.length > 0, { what: 'the first response', timeoutMs: 10_000, intervalMs: 5 });
    // Read, not yet ACKed: neither statuses nor the rehearsal may have run.
    await new Promise((resolve) => setTimeout(resolve, 200));
    if (Date.now() - sentAt < FIRST_RECEIPT_WAIT_MS) {
      expect(writes).toBe(0);
      expect(lines.some((l) => String(l['msg']).startsWith('start: an edit rehearsed'))).toBe(false);
    }
    const first = responses[0]!;
    stream.call.write(sotwRequest({ version_info: String(first['version_info']), response_nonce: String(first['nonce']), type_url: TypeUrl.cluster }));
    await waitFor(() => writes > 0, { what: 'the first statuses after the ACK', timeoutMs: 10_000, intervalMs: 5 });
    await waitFor(() => lines.some((l) => String(l['msg']).startsWith('start: an edit rehearsed')), { what: 'the rehearsal after the ACK', timeoutMs: 10_000, intervalMs: 5 });
  });
});
