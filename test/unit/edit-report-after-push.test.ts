import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { generateManifests, inputsFrom } from '../../bench/translate.js';
import { startGatewayRuntime, type RunningGateway } from '../../src/app/gateway-runtime.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { closeAdsStream, openAdsStream, sotwRequest as request, sotwResponse, type AdsConnection } from '../support/ads-client.js';
import { MemoryProvider } from '../support/memory-provider.js';
import { waitFor } from '../support/wait.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';

/**
 * An edit's log lines and metrics come after its push has been handed to the streams, in a later
 * turn of the event loop (issue 9): the log is written synchronously, and HTTP/2 sends what a
 * turn wrote only once that turn is over, so a line written in the edit's turn held the first
 * byte to Envoy back by its write.
 */

const running: { runtime: RunningGateway; envoy: AdsConnection }[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    closeAdsStream(r.envoy);
    await r.runtime.stop();
  }
});

describe("an edit's log lines and metrics", () => {
  it('are written after its push, in a later turn; those of the first load at once', async () => {
    const events: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n')) {
          if (line === '') continue;
          const msg = String((JSON.parse(line) as { msg: unknown }).msg);
          if (msg === 'configuration translated' || msg === 'configuration problem') events.push(`logged: ${msg}`);
        }
        done();
      },
    });
    const docs = generateManifests(3);
    const provider = new MemoryProvider({ inputs: inputsFrom(docs), problems: [] });
    const runtime = await startGatewayRuntime({ provider, origin: { test: 'edit-report-after-push' }, ...LOOPBACK_SERVE_PORTS, envoy: {}, logger: pino({ level: 'info' }, sink) });
    expect(events, 'the first load').toEqual(['logged: configuration translated']);
    const { client, call } = openAdsStream(runtime.xdsPort);
    const envoy = { client, call };
    running.push({ runtime, envoy });
    let responses = 0;
    call.on('data', (bytes: Buffer) => {
      const response = sotwResponse(bytes);
      responses++;
      call.write(request({ version_info: String(response['version_info']), response_nonce: String(response['nonce']), type_url: TypeUrl.cluster }));
    });
    call.on('error', () => undefined);
    call.write(request({ node: { id: 'envoy-1' }, type_url: TypeUrl.cluster }));
    await waitFor(() => responses === 1, { what: 'the first response', timeoutMs: 10_000 });
    const translations = async (): Promise<string> => (await runtime.metrics.registry.getSingleMetricAsString('switchyard_translations_total')).split('\n').find((l) => l.startsWith('switchyard_translations_total ')) ?? '';
    expect(await translations()).toBe('switchyard_translations_total 1');
    events.length = 0;
    runtime.xds.on('sent', () => events.push('sent'));

    // One more Backend and its route (a new cluster for the stream), with a problem to report.
    provider.emit({ inputs: inputsFrom(generateManifests(4)), problems: [{ source: 'extra.yaml', field: 'spec', message: 'a problem to log' }] });
    expect(events, 'in the turn of the edit').toEqual(['sent']);
    expect(await translations(), 'counted in the turn of the edit').toBe('switchyard_translations_total 1');
    await waitFor(() => events.length === 3, { what: "the edit's log lines", timeoutMs: 5_000, intervalMs: 5 });
    expect(events).toEqual(['sent', 'logged: configuration problem', 'logged: configuration translated']);
    expect(await translations()).toBe('switchyard_translations_total 2');
    await waitFor(() => responses === 2, { what: 'the edit at the client', timeoutMs: 10_000 });
  });
});
