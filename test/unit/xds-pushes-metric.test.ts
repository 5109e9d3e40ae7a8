import * as grpc from '@grpc/grpc-js';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serve, type RunningServe } from '../../src/app/serve.js';
import { encodeMessage, messageType } from '../../src/envoy/proto.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { waitFor } from '../support/wait.js';
import { quietLogger } from './status-fakes.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';

/** switchyard_xds_pushes_total on /metrics counts the responses a client really received, per type. */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const request = (json: Parameters<typeof encodeMessage>[1]): Buffer => Buffer.from(encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', json));

let dir = '';
let running: RunningServe;
let client: grpc.Client;
let call: grpc.ClientDuplexStream<Buffer, Buffer>;
const received = new Map<string, number>();

async function pushes(): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${running.metricsPort}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^switchyard_xds_pushes_total\{type_url="([^"]+)"\} (\d+)$/gm)) out.set(m[1] ?? '', Number(m[2]));
  return out;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'switchyard-pushes-'));
  cpSync(join(ROOT, 'examples'), dir, { recursive: true, filter: (src) => !src.includes('/demo') });
  running = await serve({ config: dir, ...LOOPBACK_SERVE_PORTS, envoy: {}, logger: quietLogger, aiExtension: false });
});

afterAll(async () => {
  call?.cancel();
  client?.close();
  await running?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('switchyard_xds_pushes_total', () => {
  it('is absent before any client, then counts each response sent, by type URL, including later pushes', async () => {
    expect((await pushes()).size).toBe(0);
    client = new grpc.Client(`127.0.0.1:${running.xdsPort}`, grpc.credentials.createInsecure());
    call = client.makeBidiStreamRequest<Buffer, Buffer>(ADS_PATH, (b) => b, (b) => b);
    call.on('data', (bytes: Buffer) => {
      const response = messageType('envoy.service.discovery.v3.DiscoveryResponse').decode(bytes).toJSON();
      const typeUrl = String(response['type_url']);
      received.set(typeUrl, (received.get(typeUrl) ?? 0) + 1);
      call.write(request({ version_info: String(response['version_info']), response_nonce: String(response['nonce']), type_url: typeUrl }));
    });
    call.on('error', () => undefined);
    call.write(request({ node: { id: 'pushes-test' }, type_url: TypeUrl.cluster }));
    call.write(request({ node: { id: 'pushes-test' }, type_url: TypeUrl.listener }));
    await waitFor(() => received.has(TypeUrl.cluster) && received.has(TypeUrl.listener), { what: 'CDS and LDS responses' });
    await waitFor(async () => (await pushes()).get(TypeUrl.cluster) === received.get(TypeUrl.cluster), { what: 'the CDS count on /metrics' });
    expect((await pushes()).get(TypeUrl.listener)).toBe(received.get(TypeUrl.listener));
    expect((await pushes()).has(TypeUrl.route)).toBe(false);

    // A change to a Backend is pushed as a new CDS response: the counter follows.
    const before = received.get(TypeUrl.cluster) ?? 0;
    const chat = join(dir, 'chat.yaml');
    writeFileSync(chat, readFileSync(chat, 'utf8').replace('baseEjectionTime: 5s', 'baseEjectionTime: 7s'));
    await waitFor(() => (received.get(TypeUrl.cluster) ?? 0) > before, { what: 'a second CDS response', timeoutMs: 15_000 });
    await waitFor(async () => (await pushes()).get(TypeUrl.cluster) === received.get(TypeUrl.cluster), { what: 'the new CDS count on /metrics' });
  });
});
