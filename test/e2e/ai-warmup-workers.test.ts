import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeProvider, type FakeProvider } from '../../examples/demo/fake-provider.js';
import { serve } from '../../src/app/serve.js';
import { warmupBesideEnvoy } from '../../src/app/ai-warmup.js';
import { createLogger } from '../../src/observability/logger.js';
import { requireEnvoyBinary } from '../support/envoy.js';
import { freePort, LOOPBACK_SERVE_PORTS } from '../support/ports.js';
import { waitFor } from '../support/wait.js';
import { gatewayManifests, httpRoute, startGatewayFixture, type GatewayFixture } from '../support/gateway-fixture.js';
import { skippingBackend, standInsHeld } from '../support/skipping-backend.js';

/**
 * Warm-up per Envoy worker (issue 11): each worker thread of Envoy has connection pools of its
 * own, so a warm-up through one downstream connection leaves the other workers cold (the first
 * skip there took 5.16 s). Here Envoy runs two workers; the sender opens connections until the
 * extension's answers have named both workers, and walks every pool on each. Then a skip over a
 * never-used member is answered at once on either worker: the skipped attempt found a connection
 * ready there.
 */

const WORKERS = 2;

let gw: GatewayFixture;
let fakes: Record<'p0' | 'p1' | 'p2', FakeProvider>;
let logLines: string[] = [];

/** A fixture whose Envoy runs two workers; serve itself warms it when `serveWarms`. */
function withFixture(id: string, serveWarms: boolean): void {
  beforeAll(async () => {
    logLines = [];
    gw = await startGatewayFixture({
      id,
      providers: ['p0', 'p1', 'p2'],
      envoyConcurrency: WORKERS,
      logLines,
      aiWarmup: serveWarms,
      manifests: ({ listenerPort, fakes: f }) => ({
        'gateway.yaml': gatewayManifests(listenerPort),
        'backends.yaml': [skippingBackend('workers', f)],
        'routes.yaml': [httpRoute('chat', [{ path: '/workers/v1', rewritePrefix: '/v1', backend: 'workers' }])],
      }),
      waitForBackends: ['workers'],
    });
    fakes = gw.fakes as typeof fakes;
  });

  afterAll(async () => {
    await gw?.stop();
  });
}

/** Downstream connections each worker of the listener accepted so far, by worker index. */
async function acceptedByWorker(): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const [name, value] of await gw.envoy.stats()) {
    const m = /^listener\.127\.0\.0\.1_(\d+)\.worker_(\d+)\.downstream_cx_total$/.exec(name);
    if (m !== null && Number(m[1]) === gw.listenerPort) out.set(Number(m[2]), value);
  }
  return out;
}

interface Answer {
  status: number;
  body: string;
  elapsedMs: number;
}

/** One request over `agent`'s connection; a GET when no body is given. */
function send(agent: Agent, path: string, body?: string): Promise<Answer> {
  const started = performance.now();
  const headers = body === undefined ? {} : { 'content-type': 'application/json', authorization: 'Bearer sk-client', 'content-length': String(Buffer.byteLength(body)) };
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: gw.listenerPort, path, method: body === undefined ? 'GET' : 'POST', agent, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), elapsedMs: performance.now() - started }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * A keep-alive connection that Envoy's worker `worker` accepted: connections are opened (each
 * sends one GET no route matches, which Envoy answers 404 and keeps the connection) until that
 * worker's accepted count moves.
 */
async function connectionOnWorker(worker: number): Promise<Agent> {
  for (let i = 0; i < 64; i++) {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const before = await acceptedByWorker();
    const probe = await send(agent, '/no-such-route');
    expect(probe.status).toBe(404);
    const after = await acceptedByWorker();
    if ((after.get(worker) ?? 0) > (before.get(worker) ?? 0)) return agent;
    agent.destroy();
  }
  throw new Error(`no connection landed on Envoy worker ${worker} in 64 tries`);
}

const chat = JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] });

/**
 * The first skip on each worker, over a connection that worker accepted: answered at once
 * (a skip to a member with no connection ready on its worker waits out Envoy's connect timeout,
 * 5 s, and the extension says so), the skipped pool never called.
 */
async function firstSkipOnEachWorker(): Promise<void> {
  const received = Object.values(fakes).map((f) => f.received().length);
  await fakes.p0.setMode({ kind: 'refusal', refusal: 'context_length' });
  const skips: { worker: number; status: number; body: string; elapsedMs: number; sameConnection: boolean; notReady: { member: string; waitMs: number }[] }[] = [];
  for (let worker = 0; worker < WORKERS; worker++) {
    const agent = await connectionOnWorker(worker);
    const acceptedBefore = await acceptedByWorker();
    const linesBefore = logLines.length;
    const answer = await send(agent, '/workers/v1/chat/completions', chat);
    const accepted = await acceptedByWorker();
    agent.destroy();
    process.stdout.write(`worker ${worker}: first skip ${Math.round(answer.elapsedMs)} ms\n`);
    skips.push({ worker, ...answer, sameConnection: JSON.stringify([...accepted]) === JSON.stringify([...acceptedBefore]), notReady: standInsHeld(logLines.slice(linesBefore), 'ai/workers') });
  }
  for (const skip of skips) {
    // The request went over the connection the worker accepted, and no worker accepted another;
    // warmed on its worker, the skip found a connection ready and was not held for the connect timeout.
    expect(skip, `worker ${skip.worker}`).toMatchObject({ status: 200, sameConnection: true, notReady: [] });
    expect(skip.body).toContain('answered by p2');
  }
  // The warm-up called no provider; the skips called the refusing primary once each, never the skipped pool.
  expect(received).toEqual([0, 0, 0]);
  expect(fakes.p1.received()).toHaveLength(0);
  expect(fakes.p0.received()).toHaveLength(WORKERS);
}

const warmupReport = (lines: readonly string[]): Record<string, unknown> | undefined =>
  lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['backend'] === 'ai/workers' && l['warmup'] === true);

describe('warm-up of every Envoy worker thread, beside Envoy (the worker count from its admin API)', () => {
  withFixture('ai-warmup-workers', false);

  it('names both workers of a two-worker Envoy; the first skip on each worker then finds a connection ready and calls no skipped provider', async () => {
    expect((await acceptedByWorker()).size).toBe(WORKERS);
    const key = gw.controller.aiExtension?.warmupKey ?? '';
    expect(key).not.toBe('');
    const senderLog: string[] = [];
    const sender = warmupBesideEnvoy({ adminUrl: gw.envoy.adminUrl, key, pollMs: 60_000, logger: createLogger({ level: 'info', name: 'workers' }, { write: (l: string) => void senderLog.push(l) }) });
    let report: Record<string, unknown>;
    try {
      report = await waitFor(() => warmupReport(senderLog), { what: 'the sender to report on backend/ai/workers', timeoutMs: 60_000, intervalMs: 100 });
    } finally {
      sender.stop();
    }
    process.stdout.write(`warm-up of ${WORKERS} workers beside Envoy: ${JSON.stringify({ requests: report['requests'], workersWarmed: report['workersWarmed'] })}\n`);
    // The sender's own word first: a skip on a worker it says it left cold proves nothing more.
    expect(report, JSON.stringify(report)).toMatchObject({ msg: expect.stringMatching(/connection ready to every member/), envoyWorkers: WORKERS, workersWarmed: WORKERS });
    await firstSkipOnEachWorker();
  });
});

describe('warm-up of every Envoy worker thread, by serve (an Envoy it does not run: the worker count unknown)', () => {
  withFixture('ai-warmup-workers-serve', true);

  it('opens connections until several in a row meet no new worker: both workers are warm', async () => {
    const report = await waitFor(() => warmupReport(logLines), { what: 'serve to report on backend/ai/workers', timeoutMs: 60_000, intervalMs: 100 });
    process.stdout.write(`warm-up of ${WORKERS} workers by serve: ${JSON.stringify({ requests: report['requests'], workersWarmed: report['workersWarmed'] })}\n`);
    expect(report, JSON.stringify(report)).toMatchObject({ msg: expect.stringMatching(/connection ready to every member/), workersWarmed: WORKERS });
    expect(report['envoyWorkers']).toBeUndefined();
    await firstSkipOnEachWorker();
  });
});

describe('warm-up of every Envoy worker thread, by serve of the Envoys it runs (the worker count from their admin API)', () => {
  it('knows a two-worker Envoy of its Host infrastructure has two workers, and warms both', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-e2e-workers-host-'));
    const lines: string[] = [];
    const started: FakeProvider[] = [];
    let running: Awaited<ReturnType<typeof serve>> | undefined;
    try {
      const f: Record<string, FakeProvider> = {};
      for (const name of ['p0', 'p1', 'p2']) {
        f[name] = await startFakeProvider({ name });
        started.push(f[name]);
      }
      const config = join(dir, 'config');
      const docs = [...gatewayManifests(await freePort()), skippingBackend('workers', f), httpRoute('chat', [{ path: '/workers/v1', rewritePrefix: '/v1', backend: 'workers' }])];
      mkdirSync(config);
      writeFileSync(join(config, 'all.yaml'), docs.map((d) => stringify(d)).join('---\n'));
      running = await serve({
        config,
        ...LOOPBACK_SERVE_PORTS,
        envoy: {},
        infrastructure: { kind: 'host', envoyPath: requireEnvoyBinary(), concurrency: WORKERS, stateDir: join(dir, 'state') },
        logger: createLogger({ level: 'info', name: 'workers-host' }, { write: (l: string) => void lines.push(l) }),
      });
      const report = await waitFor(() => warmupReport(lines), { what: 'serve to report on backend/ai/workers', timeoutMs: 90_000, intervalMs: 200 });
      process.stdout.write(`warm-up by serve of its own Envoy: ${JSON.stringify({ requests: report['requests'], envoyWorkers: report['envoyWorkers'], workersWarmed: report['workersWarmed'] })}\n`);
      expect(report['msg']).toMatch(/connection ready to every member/);
      expect(report['envoyWorkers']).toBe(WORKERS);
      expect(report['workersWarmed']).toBe(WORKERS);
      for (const fake of started) expect(fake.received()).toHaveLength(0);
    } finally {
      await running?.stop();
      for (const fake of started) await fake.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
