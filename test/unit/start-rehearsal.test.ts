import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { generateManifests, inputsFrom } from '../../bench/translate.js';
import { parseManifest, SCHEMAS, warmSchemas } from '../../src/api/manifest.js';
import { SETTLE_AFTER_EDIT_MS, startGatewayRuntime, type RunningGateway } from '../../src/app/gateway-runtime.js';
import { PUSH_ORDER, TypeUrl } from '../../src/envoy/resources.js';
import type { Inputs } from '../../src/translate/inputs.js';
import type { ObjectStatus } from '../../src/translate/status.js';
import { closeAdsStream, openAdsStream, sotwRequest as request, sotwResponse, type AdsConnection } from '../support/ads-client.js';
import { MemoryProvider } from '../support/memory-provider.js';
import { waitFor } from '../support/wait.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';

/**
 * After its start, the runtime rehearses an edit of a large configuration (issue 9: the first
 * edits among 10,000 Backends ran code never run before and cost 2-3 times the later ones): the
 * same configuration is translated again through every stage, and nothing a user or an Envoy
 * sees may change. A low threshold makes a small configuration count as large here.
 */

/** CDS wildcard, ACKing every response as Envoy does, counting the responses. */
function connect(port: number): AdsConnection & { responses: string[] } {
  const { client, call } = openAdsStream(port);
  const responses: string[] = [];
  call.on('data', (bytes: Buffer) => {
    const response = sotwResponse(bytes);
    const version = String(response['version_info']);
    responses.push(version);
    call.write(request({ version_info: version, response_nonce: String(response['nonce']), type_url: TypeUrl.cluster, resource_names: ['*'] }));
  });
  call.on('error', () => undefined);
  call.write(request({ node: { id: 'envoy-1' }, type_url: TypeUrl.cluster, resource_names: ['*'] }));
  return { client, call, responses };
}

const running: { runtime: RunningGateway; envoy?: AdsConnection }[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    if (r.envoy) closeAdsStream(r.envoy);
    await r.runtime.stop();
  }
});

async function start(inputs: Inputs, rehearsalMinObjects: number, firstStatusWaitMs = 5_000, startCollectionMaxHeapBytes?: number): Promise<{ runtime: RunningGateway; lines: Record<string, unknown>[]; provider: MemoryProvider }> {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const provider = new MemoryProvider({ inputs, problems: [] });
  const runtime = await startGatewayRuntime({
    provider, origin: { test: 'start-rehearsal' }, ...LOOPBACK_SERVE_PORTS, envoy: {},
    logger: pino({ level: 'debug' }, sink), firstStatusWaitMs, rehearsalMinObjects, startCollectionMaxHeapBytes,
  });
  running.push({ runtime });
  return { runtime, lines, provider };
}

function versions(runtime: RunningGateway): (string | undefined)[] {
  return PUSH_ORDER.map((kind) => runtime.cache.snapshot(TypeUrl[kind])?.version);
}

function backendStatus(all: readonly ObjectStatus[], name: string): ObjectStatus | undefined {
  return all.find((s) => s.kind === 'Backend' && s.name === name);
}

describe('the edit rehearsed after the start', () => {
  it('changes nothing served, sent, counted or published, and the next edit is served as without it', async () => {
    const docs = generateManifests(20);
    const inputs = inputsFrom(docs);
    const plain = await start(inputs, Number.POSITIVE_INFINITY);
    const plainEnvoy = connect(plain.runtime.xdsPort);
    running[running.length - 1]!.envoy = plainEnvoy;
    const rehearsed = await start(inputs, 0);
    const envoy = connect(rehearsed.runtime.xdsPort);
    running[running.length - 1]!.envoy = envoy;
    await Promise.all([plain.runtime.settled, rehearsed.runtime.settled]);
    const said = (msg: string): boolean => rehearsed.lines.some((l) => l['msg'] === msg);
    expect(said('start: an edit rehearsed (the same configuration translated again)')).toBe(true);
    expect(plain.lines.some((l) => String(l['msg']).startsWith('start: an edit rehearsed'))).toBe(false);

    // What the Envoy was served is what a start without the rehearsal serves, sent once.
    expect(versions(rehearsed.runtime)).toEqual(versions(plain.runtime));
    await new Promise((r) => setTimeout(r, 200));
    expect(envoy.responses).toEqual([rehearsed.runtime.cache.view(undefined).snapshot(TypeUrl.cluster)?.version]);
    expect(envoy.responses).toEqual(plainEnvoy.responses);
    expect(rehearsed.lines.filter((l) => l['msg'] === 'configuration translated')).toHaveLength(1);
    expect(rehearsed.lines.some((l) => String(l['msg']).startsWith('an edit rehearsed after the start changed'))).toBe(false);
    const metrics = await rehearsed.runtime.metrics.registry.getSingleMetricAsString('switchyard_translations_total');
    expect(metrics).toMatch(/switchyard_translations_total 1$/m);
    // Statuses as a start without the rehearsal publishes them, transition times aside.
    const strip = (all: readonly ObjectStatus[]): string => JSON.stringify(all, (k, v: unknown) => (k === 'lastTransitionTime' ? undefined : v));
    await waitFor(() => strip(rehearsed.runtime.statuses()) === strip(plain.runtime.statuses()), { what: 'the same statuses with and without the rehearsal', timeoutMs: 10_000 });
    expect(rehearsed.lines.filter((l) => l['msg'] === 'status changed' && l['object'] === 'Backend bench/chat-0')).toEqual(plain.lines.filter((l) => l['msg'] === 'status changed' && l['object'] === 'Backend bench/chat-0').map((l) => ({ ...l, time: expect.any(Number) as number })));

    // An edit afterwards is translated, served and published as always.
    const doc = structuredClone(docs.find((d) => (d as { kind: string; metadata: { name: string } }).kind === 'Backend' && (d as { metadata: { name: string } }).metadata.name === 'chat-7')) as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
    doc.metadata['generation'] = 2;
    doc.spec['outlierDetection'] = { consecutive5xx: 9 };
    const parsed = parseManifest(doc);
    if (parsed.ok !== true || parsed.object.kind !== 'Backend') throw new Error('the edited Backend was rejected');
    const edited = parsed.object.value;
    const next = { ...inputs, backends: inputs.backends.map((b) => (b.metadata.name === 'chat-7' ? edited : b)) };
    rehearsed.provider.emit({ inputs: next, problems: [] });
    plain.provider.emit({ inputs: next, problems: [] });
    await waitFor(() => envoy.responses.length === 2 && plainEnvoy.responses.length === 2, { what: 'the edit pushed', timeoutMs: 10_000 });
    expect(envoy.responses).toEqual(plainEnvoy.responses);
    expect(versions(rehearsed.runtime)).toEqual(versions(plain.runtime));
    await waitFor(() => {
      const s = backendStatus(rehearsed.runtime.statuses(), 'chat-7');
      return s !== undefined && 'conditions' in s && s.conditions.every((c) => c.observedGeneration === 2);
    }, { what: 'chat-7 at generation 2', timeoutMs: 10_000 });
  }, 60_000);

  it("comes after a full GC of the start's garbage (issue 9: the start's peak RSS), unless the heap is too large to collect", async () => {
    const inputs = inputsFrom(generateManifests(20));
    const collected = await start(inputs, 0, 5_000, Number.MAX_SAFE_INTEGER);
    running[running.length - 1]!.envoy = connect(collected.runtime.xdsPort);
    const tooLarge = await start(inputs, 0, 5_000, 0);
    running[running.length - 1]!.envoy = connect(tooLarge.runtime.xdsPort);
    await Promise.all([collected.runtime.settled, tooLarge.runtime.settled]);
    const at = (lines: Record<string, unknown>[], msg: string): number => lines.findIndex((l) => l['msg'] === msg);
    const gc = at(collected.lines, 'start: its garbage collected before the edit rehearsal');
    expect(gc).toBeGreaterThanOrEqual(0);
    expect(gc).toBeLessThan(at(collected.lines, 'start: an edit rehearsed (the same configuration translated again)'));
    const line = collected.lines[gc]!;
    expect(line['usedAfterMB'] as number).toBeLessThanOrEqual(line['usedBeforeMB'] as number);
    expect(at(tooLarge.lines, 'start: its garbage collected before the edit rehearsal')).toBe(-1);
    expect(at(tooLarge.lines, 'start: an edit rehearsed (the same configuration translated again)')).toBeGreaterThanOrEqual(0);
  }, 60_000);

  it('is left out below the threshold, and the start settles all the same', async () => {
    const { runtime, lines } = await start(inputsFrom(generateManifests(5)), 1_000, 0);
    await runtime.settled;
    expect(lines.some((l) => String(l['msg']).startsWith('start: an edit rehearsed'))).toBe(false);
  });
});

describe('the end of the start (RunningGateway.settled)', () => {
  it('comes once the status work is done, or, while someone is editing, once the edits pause', async () => {
    const docs = generateManifests(5);
    const quiet = await start(inputsFrom(docs), 1_000, 0);
    const quietFrom = Date.now();
    await quiet.runtime.settled;
    expect(Date.now() - quietFrom).toBeLessThan(SETTLE_AFTER_EDIT_MS);

    const busy = await start(inputsFrom(docs), 1_000, 0);
    const inputs = inputsFrom(docs);
    let settledAt: number | undefined;
    void busy.runtime.settled.then(() => (settledAt = Date.now()));
    let editedAt = 0;
    // The first edit comes as the start ends (before its first status pass), the others 300 ms apart.
    for (let i = 0; i < 3; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 300));
      expect(settledAt, `settled during the edits (edit ${i + 1})`).toBeUndefined();
      busy.provider.emit({ inputs: { ...inputs, backends: inputs.backends.map((b, at) => (at === 0 ? { ...b, spec: { ...b.spec, outlierDetection: { consecutive5xx: 3 + i } } } : b)) }, problems: [] });
      editedAt = Date.now();
    }
    await busy.runtime.settled;
    expect(settledAt! - editedAt).toBeGreaterThanOrEqual(SETTLE_AFTER_EDIT_MS - 50);
  }, 30_000);
});

describe('warmSchemas', () => {
  it('runs the schema of each kind parseManifest reads without it, on what parseManifest returns, which the schema accepts', () => {
    const inputs = inputsFrom(generateManifests(1));
    const asked: string[] = [];
    warmSchemas((kind) => {
      asked.push(kind);
      return kind === 'Backend' ? inputs.backends[0] : kind === 'Secret' ? inputs.secrets[0] : inputs.httpRoutes[0];
    });
    expect(asked.sort()).toEqual(['Backend', 'HTTPRoute', 'Secret']);
    // A sample the schema refused would run its error path, not what an edit runs.
    expect(SCHEMAS.Backend.safeParse(inputs.backends[0]).success).toBe(true);
    expect(SCHEMAS.Secret.safeParse(inputs.secrets[0]).success).toBe(true);
    expect(SCHEMAS.HTTPRoute.safeParse(inputs.httpRoutes[0]).success).toBe(true);
  });
});
