import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { generateManifests, inputsFrom } from '../../bench/translate.js';
import { parseManifest } from '../../src/api/manifest.js';
import { startGatewayRuntime, type RunningGateway, type StatusWork } from '../../src/app/gateway-runtime.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import type { Inputs } from '../../src/translate/inputs.js';
import type { ObjectStatus } from '../../src/translate/status.js';
import { closeAdsStream, openAdsStream, sotwRequest as request, sotwResponse, type AdsConnection } from '../support/ads-client.js';
import { waitFor } from '../support/wait.js';
import { MemoryProvider } from '../support/memory-provider.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';

/**
 * Status work proportional to what changed (issue 9): after one Backend is edited among N, and
 * after the fleet ACKs that edit, the status passes look at the objects the edit and the ACK
 * moved, the same number at 100 Backends as at 1,000, not at every object. The real pipeline
 * (translation, cache, xDS server on loopback) on an in-memory provider, with a raw ADS client
 * that ACKs like Envoy, so that Programmed goes Pending and True again as it would.
 */

/** CDS and EDS wildcard, ACKing every response as Envoy does. */
function connect(port: number): AdsConnection & { acked: Map<string, string> } {
  const { client, call } = openAdsStream(port);
  const acked = new Map<string, string>();
  call.on('data', (bytes: Buffer) => {
    const response = sotwResponse(bytes);
    const typeUrl = String(response['type_url']);
    const version = String(response['version_info']);
    call.write(request({ version_info: version, response_nonce: String(response['nonce']), type_url: typeUrl, resource_names: ['*'] }));
    acked.set(typeUrl, version);
  });
  call.on('error', () => undefined);
  call.write(request({ node: { id: 'envoy-1' }, type_url: TypeUrl.cluster, resource_names: ['*'] }));
  call.write(request({ type_url: TypeUrl.endpoint, resource_names: ['*'] }));
  return { client, call, acked };
}

const running: { runtime: RunningGateway; envoy: AdsConnection }[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    closeAdsStream(r.envoy);
    await r.runtime.stop();
  }
});

function programmed(all: readonly ObjectStatus[], name: string): { status?: string; observedGeneration?: number } {
  const s = all.find((x) => x.kind === 'Backend' && x.name === name);
  return (s && 'conditions' in s ? s.conditions.find((c) => c.type === 'Programmed') : undefined) ?? {};
}

/** `inputs` (from `docs`) with Backend `name`'s outlier detection changed and its generation moved on; every other object the same. */
function edited(inputs: Inputs, docs: readonly unknown[], name: string): Inputs {
  const doc = structuredClone(docs.find((d) => (d as { kind: string; metadata: { name: string } }).kind === 'Backend' && (d as { metadata: { name: string } }).metadata.name === name)) as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
  doc.metadata['generation'] = 2;
  doc.spec['outlierDetection'] = { consecutive5xx: 9 };
  const parsed = parseManifest(doc);
  if (parsed.ok !== true) throw new Error(`edited ${name} rejected: ${JSON.stringify(parsed)}`);
  const backend = parsed.object;
  if (backend.kind !== 'Backend') throw new Error(`edited ${name} is a ${backend.kind}`);
  return { ...inputs, backends: inputs.backends.map((b) => (b.metadata.name === name ? backend.value : b)) };
}

/** What status passes looked at for one edit among `n` Backends, from the edit until the fleet ACKed it and the Backend is Programmed again. */
async function workOfOneEdit(n: number): Promise<{ work: StatusWork; statuses: number }> {
  const docs = generateManifests(n);
  const first = inputsFrom(docs);
  const provider = new MemoryProvider({ inputs: first, problems: [] });
  const runtime = await startGatewayRuntime({
    provider, origin: { test: 'status-work' }, ...LOOPBACK_SERVE_PORTS, envoy: {}, logger: pino({ level: 'silent' }), firstStatusWaitMs: 0,
  });
  const envoy = connect(runtime.xdsPort);
  running.push({ runtime, envoy });
  const all = await waitFor(() => {
    const statuses = runtime.statuses();
    return statuses.filter((s) => s.kind === 'Backend').every((s) => programmed([s], s.name).status === 'True') && statuses;
  }, { what: `every one of ${n} Backends Programmed`, timeoutMs: 60_000 });
  const clusters = envoy.acked.get(TypeUrl.cluster);
  const before = runtime.statusWork();
  provider.emit({ inputs: edited(first, docs, 'chat-7'), problems: [] });
  await waitFor(() => envoy.acked.get(TypeUrl.cluster) !== clusters, { what: 'the edit ACKed', timeoutMs: 30_000 });
  await waitFor(() => {
    const p = programmed(runtime.statuses(), 'chat-7');
    return p.status === 'True' && p.observedGeneration === 2;
  }, { what: 'chat-7 Programmed at generation 2', timeoutMs: 30_000 });
  const after = runtime.statusWork();
  return {
    work: { passes: after.passes - before.passes, programmed: after.programmed - before.programmed, health: after.health - before.health, book: after.book - before.book },
    statuses: all.length,
  };
}

describe('status work after one edit among N Backends', () => {
  it('looks at the objects the edit and its ACK moved, as many at 1,000 Backends as at 100', async () => {
    const small = await workOfOneEdit(100);
    const large = await workOfOneEdit(1_000);
    expect(large.statuses).toBeGreaterThan(2_000);
    expect(small.work.passes).toBeGreaterThan(0);
    for (const stage of ['programmed', 'health', 'book'] as const) {
      // A few objects per pass (the Backend, its Gateway), whatever N is; today's whole-list pass looked at every status.
      expect(large.work[stage], `${stage}: ${JSON.stringify(large.work)}`).toBeLessThanOrEqual(8 * large.work.passes);
      expect(large.work[stage], `${stage}: ${JSON.stringify({ small: small.work, large: large.work })}`).toBeLessThanOrEqual(small.work[stage] + 8);
    }
  }, 120_000);
});
