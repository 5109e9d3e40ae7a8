import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayRuntime, type RunningGateway } from '../../src/app/gateway-runtime.js';
import { ATTEMPT_FACTS_ATTRIBUTE, legacyAttemptAttribute } from '../../src/envoy/ai-extension.js';
import { ATTEMPT_FACTS_NODE_METADATA } from '../../src/envoy/bootstrap.js';
import { TypeUrl } from '../../src/envoy/resources.js';

type JsonValue = Parameters<typeof sotwRequest>[0][string];
import { snapshotOf } from '../golden/render.js';
import { sotwRequest, sotwResponse } from '../support/ads-client.js';
import { MemoryProvider } from '../support/memory-provider.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';

/**
 * An older Envoy (no attempt facts node metadata) joining: its data plane's per-key form is built
 * off the request path while the server holds its stream, so the first Cluster response it gets
 * is already in the form its extension reads, never the facts string; an Envoy of this release
 * keeps the facts string until the form is served.
 */

const HERE = dirname(fileURLToPath(import.meta.url));
const PER_KEY = legacyAttemptAttribute('member');
const PACKED = ATTEMPT_FACTS_ATTRIBUTE;

let runtime: RunningGateway;

beforeAll(async () => {
  const name = 'ai-named-fallbacks';
  const snapshot = snapshotOf([{ name: `test/golden/${name}.in.yaml`, text: readFileSync(join(HERE, '..', 'golden', `${name}.in.yaml`), 'utf8') }]);
  runtime = await startGatewayRuntime({
    provider: new MemoryProvider(snapshot),
    origin: { test: 'xds-legacy-join' },
    ...LOOPBACK_SERVE_PORTS,
    // The extension's address: AI clusters get its ext_proc filter, which names the attributes read.
    envoy: { aiExtension: { host: '127.0.0.1', port: 18001 } },
    logger: pino({ level: 'silent' }),
  });
});

afterAll(async () => {
  await runtime?.stop();
});

/** The first Cluster response a SotW stream gets, as raw bytes, for an Envoy of this release or of the one before. */
async function firstClusters(older: boolean): Promise<{ bytes: Buffer; close(): void }> {
  const client = new grpc.Client(`127.0.0.1:${runtime.xdsPort}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const call = client.makeBidiStreamRequest<Buffer, Buffer>('/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', (b) => b, (b) => b);
  call.on('error', () => undefined);
  const close = (): void => {
    call.cancel();
    client.close();
  };
  const first = new Promise<Buffer>((resolve) => call.on('data', (b: Buffer) => {
    const response = sotwResponse(b);
    if ((response['type_url'] ?? response['typeUrl']) === TypeUrl.cluster) resolve(b);
  }));
  const node: Record<string, JsonValue> = { id: older ? 'older' : 'current', cluster: 'c', user_agent_name: 'envoy' };
  // protobufjs takes a Struct as a plain object.
  if (!older) node['metadata'] = { [ATTEMPT_FACTS_NODE_METADATA]: '1' };
  call.write(sotwRequest({ node, type_url: TypeUrl.cluster }));
  return { bytes: await first, close };
}

const text = (b: Buffer): string => b.toString('latin1');

describe('an older Envoy joining', () => {
  it('gets its first Cluster response in the per-key form, built off the request path; a second one after it left finds the form kept', async () => {
    const current = await firstClusters(false);
    expect(text(current.bytes)).toContain(PACKED);
    expect(text(current.bytes)).not.toContain(PER_KEY);
    current.close();

    for (const round of [1, 2]) {
      const older = await firstClusters(true);
      expect(text(older.bytes), `round ${round}`).toContain(PER_KEY);
      // The legacy form asks for the facts string too (src/envoy/ai-extension.ts, aiExtensionFilter).
      expect(text(older.bytes), `round ${round}`).toContain(PACKED);
      older.close();
      // Its data plane goes back to the facts string once it has left.
      await expect.poll(async () => {
        const again = await firstClusters(false);
        again.close();
        return text(again.bytes).includes(PER_KEY);
      }, { timeout: 10_000 }).toBe(false);
    }
  });
});
