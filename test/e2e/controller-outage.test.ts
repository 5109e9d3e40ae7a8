import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { startFakeProvider, type FakeProvider } from '../../examples/demo/fake-provider.js';
import { MAX_RECONNECT_MS } from '../../src/ai-extension/credentials.js';
import { buildBootstrap } from '../../src/envoy/bootstrap.js';
import { createPki, type Pki } from '../support/certs.js';
import { startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { NAMESPACE, aiBackend, gatewayManifests, httpRoute, secret, staticBackend, type Manifest } from '../support/gateway-fixture.js';
import { freePort } from '../support/ports.js';
import { E2E_LOAD_MARGIN_MS, logTiming, WATCHED_CHANGE_MS } from '../support/timing.js';
import { sleep, StopWaiting, waitFor } from '../support/wait.js';

/**
 * kill -9 of the controller under load loses no request, with the real Envoy and the real
 * `switchyard` processes:
 * - `serve`: its AI extension is a process of its own that keeps serving with the keys it has; the
 *   restarted serve adopts it (same pid, same port, so Envoy's configuration versions are the
 *   same), the extension is back on serve's Unix socket within its reconnect timer, and a Secret
 *   edited after the restart reaches the provider through the file watch.
 * - cluster shape (no Kubernetes): `serve --no-ai-extension` as the controller over mTLS, a
 *   standalone `switchyard ai-extension` over mTLS TCP, Envoy over mTLS; a Secret rotated while
 *   the controller is down is used only after its return, once the extension is back.
 * Judged by what happens in which order: Envoy sees the controller go, keeps answering both routes
 * all through the outage, reconnects once it is back; the extension reconnects, then gets the
 * key, then the provider sees it. The only time bounds are a configured timer plus
 * E2E_LOAD_MARGIN_MS (the extension's reconnect back-off, the file watch against the resync); how
 * fast each step was is printed, not judged (bench/ measures speed).
 * Load: OUTAGE_RPS requests per second per route (default 100, so 200 in all) on an AI route
 * and a Static route.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RPS_PER_ROUTE = Number(process.env['OUTAGE_RPS'] ?? '100');
/**
 * How long the controller stays dead. Long enough for the extension's reconnect back-off to reach
 * its cap (100, 200, 400 ms, then MAX_RECONNECT_MS apart), so its return is judged at that cap, and
 * for each half of the outage to carry requests on both routes.
 */
const OUTAGE_MS = Number(process.env['OUTAGE_MS'] ?? '3000');
const REQUEST_GIVE_UP_MS = 60_000;
/** Restarts under tsx take seconds on a loaded machine; the outage and the last requests' give-up time are added. */
const TEST_TIMEOUT_MS = OUTAGE_MS + REQUEST_GIVE_UP_MS + 90_000;
const OLD_KEY = 'sk-outage-old-key-0001';
const NEW_KEY = 'sk-outage-new-key-0002';
const AI_HOST = 'llm.outage.test';

/** Pino's JSON lines of a process's log file. */
interface LogLine {
  time: number;
  msg: string;
  [key: string]: unknown;
}

function logLines(path: string): LogLine[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const lines: LogLine[] = [];
  for (const raw of text.split('\n')) {
    if (!raw.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(raw) as LogLine);
    } catch {
      // A line cut by kill -9.
    }
  }
  return lines;
}

/** The first of `lines` with message `msg` logged at or after `from` (ms since the epoch). */
function lineAt(lines: readonly LogLine[], msg: string, from: number): LogLine | undefined {
  return lines.find((l) => l.msg === msg && l.time >= from);
}

const LISTENING = 'switchyard listening; reading the configuration';
const EXTENSION_CONNECTED = 'ai-extension: connected to the controller';
const CREDENTIALS_UPDATED = 'ai-extension: credentials updated';

/** A `switchyard` command run from source as its own process (what a user runs, not serve() in this worker). */
interface SwitchyardProcess {
  child: ChildProcess;
  logPath: string;
  exited(): boolean;
  lines(): LogLine[];
  tail(): string;
}

function startSwitchyard(args: string[], logPath: string): SwitchyardProcess {
  const out = openSync(logPath, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, stdio: ['ignore', out, out] });
  closeSync(out);
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  return {
    child,
    logPath,
    exited: () => exited,
    lines: () => logLines(logPath),
    tail: () => readFileSync(logPath, 'utf8').split('\n').slice(-30).join('\n'),
  };
}

async function untilReady(p: SwitchyardProcess, metricsPort: number): Promise<void> {
  await waitFor(
    async () => {
      if (p.exited()) throw new StopWaiting(`switchyard exited:\n${p.tail()}`);
      return (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).ok;
    },
    { what: `switchyard ${p.child.spawnargs.slice(4, 5).join('')} to be ready on :${metricsPort}`, timeoutMs: 90_000, intervalMs: 100 },
  );
}

/** SIGTERM and wait; the graceful stop. */
async function terminate(p: SwitchyardProcess | undefined): Promise<void> {
  if (p === undefined || p.exited()) return;
  const gone = new Promise<void>((resolve) => p.child.once('exit', () => resolve()));
  p.child.kill('SIGTERM');
  await Promise.race([gone, sleep(10_000)]);
  if (!p.exited()) p.child.kill('SIGKILL');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Outcome {
  route: string;
  at: number;
  status: number;
  detail: string;
}

/** A steady stream of requests per route, each one's outcome kept: nothing may fail. */
class Load {
  readonly outcomes: Outcome[] = [];
  private running = true;
  private readonly loops: Promise<void>[] = [];

  constructor(
    private readonly port: number,
    private readonly routes: readonly string[],
  ) {
    for (const route of routes) this.loops.push(this.drive(route));
  }

  private async drive(route: string): Promise<void> {
    const started = performance.now();
    const inflight = new Set<Promise<void>>();
    let sent = 0;
    while (this.running) {
      const due = Math.floor(((performance.now() - started) / 1000) * RPS_PER_ROUTE);
      // Paced, not closed-loop: a stall anywhere shows as failures, not as a slower client.
      while (sent < due && inflight.size < 200) {
        sent++;
        const p = this.one(route).finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await sleep(5);
    }
    await Promise.all(inflight);
  }

  private async one(route: string): Promise<void> {
    const at = Date.now();
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}${route}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-client' },
        body: JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] }),
        // A give-up bound, not a latency limit: Envoy's own timers (the route's, ext_proc's) decide
        // when a request fails; on a starved machine a 15 s client timeout cut answers still coming.
        signal: AbortSignal.timeout(REQUEST_GIVE_UP_MS),
      });
      const body = await res.text();
      this.outcomes.push({ route, at, status: res.status, detail: res.status === 200 ? '' : body.slice(0, 200) });
    } catch (err) {
      this.outcomes.push({ route, at, status: 0, detail: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  count(route: string, from = 0, to = Number.POSITIVE_INFINITY): number {
    return this.outcomes.filter((o) => o.route === route && o.at >= from && o.at < to).length;
  }

  /** Requests on `route` sent in [from, to) and answered 200. */
  answered(route: string, from: number, to: number): number {
    return this.outcomes.filter((o) => o.route === route && o.status === 200 && o.at >= from && o.at < to).length;
  }

  /** Waits until `n` requests sent at or after `from` have an outcome on every route (answered or not: failures() judges that). */
  async settled(n: number, from: number, what: string): Promise<void> {
    await waitFor(() => this.routes.every((r) => this.count(r, from) >= n), { what: `${n} requests on each route ${what}`, timeoutMs: 30_000, intervalMs: 20 });
  }

  failures(): Outcome[] {
    return this.outcomes.filter((o) => o.status !== 200);
  }
}

interface Scene {
  root: string;
  config: string;
  listenerPort: number;
  ai: FakeProvider;
  web: FakeProvider;
  writeSecret(key: string): number;
}

async function startScene(id: string): Promise<Scene> {
  const root = mkdtempSync(join(tmpdir(), `switchyard-outage-${id}-`));
  const config = join(root, 'config');
  mkdirSync(config);
  const ai = await startFakeProvider({ name: `${id}-ai` });
  const web = await startFakeProvider({ name: `${id}-web` });
  const listenerPort = await freePort();
  const write = (file: string, docs: Manifest[]): number => {
    const tmp = join(config, `.${file}.tmp`);
    writeFileSync(tmp, docs.map((d) => stringify(d)).join('---\n'));
    renameSync(tmp, join(config, file));
    return Date.now();
  };
  write('gateway.yaml', gatewayManifests(listenerPort));
  write('backends.yaml', [
    aiBackend({ name: 'chat', priorities: [[{ fake: ai, hostname: AI_HOST, secret: 'llm-key', model: 'outage-model' }]], llm: true }),
    // Two pools with a fallback: the extension may stand in on its attempts, so serve warms it.
    // Members at different addresses: see src/ai-extension/README.md, "Warm-up requests", on
    // pools that share one.
    withFallback(aiBackend({ name: 'warm', priorities: [[{ name: 'first', fake: ai, hostname: AI_HOST, secret: 'llm-key' }], [{ name: 'second', fake: web, hostname: 'web.llm.test', secret: 'llm-key' }]] })),
    staticBackend('web', web),
  ]);
  write('routes.yaml', [httpRoute('routes', [{ path: '/ai', backend: 'chat', rewritePrefix: '/v1' }, { path: '/static', backend: 'web' }, { path: '/warm', backend: 'warm', rewritePrefix: '/v1' }])]);
  const writeSecret = (key: string): number => write('secrets.yaml', [secret('llm-key', `Bearer ${key}`)]);
  writeSecret(OLD_KEY);
  return { root, config, listenerPort, ai, web, writeSecret };
}

function withFallback(backend: Manifest): Manifest {
  const spec = backend['spec'] as { ai: { multipool: { priorities: Record<string, unknown>[] } } };
  Object.assign(spec.ai.multipool.priorities[0] ?? {}, { contextWindowFallback: 'NextPool' });
  return backend;
}

const keyOf = (headers: Record<string, string>): string | undefined => headers['authorization']?.replace(/^Bearer /, '');

/** Whether a serve logged that Envoy has a connection ready to ai/warm's member (its warm-up went through the extension). */
const warmed = (p: SwitchyardProcess): boolean => p.lines().some((l) => l.backend === 'ai/warm' && l.msg.startsWith('ai-warmup: Envoy has a connection ready'));

/** The longest time the provider went without receiving a request: how long the data path stalled on a loaded machine. */
function longestArrivalGap(received: readonly { time: number }[]): number {
  let gap = 0;
  for (let i = 1; i < received.length; i++) gap = Math.max(gap, (received[i]?.time ?? 0) - (received[i - 1]?.time ?? 0));
  return gap;
}

/** Envoy's config versions (hashes of the version strings): equal means the restart served the same configuration. */
async function versions(envoy: EnvoyProcess): Promise<string> {
  const stats = await envoy.stats();
  return ['cluster_manager.cds.version', 'listener_manager.lds.version'].map((s) => `${s}=${stats.get(s) ?? 'none'}`).join(' ');
}

async function waitForTraffic(envoy: EnvoyProcess, listenerPort: number): Promise<void> {
  await envoy.waitForListener(`${NAMESPACE}/ai-gateway/${listenerPort}`, 60_000);
  for (const route of ['/ai', '/static']) {
    await waitFor(
      async () => (await fetch(`http://127.0.0.1:${listenerPort}${route}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"m","messages":[]}' })).ok,
      { what: `${route} to answer through Envoy`, timeoutMs: 30_000, intervalMs: 100 },
    );
  }
}

function report(label: string, figures: Record<string, number | string>): void {
  process.stderr.write(`${label}: ${Object.entries(figures).map(([k, v]) => `${k}=${typeof v === 'number' ? Math.round(v) : v}`).join(' ')}\n`);
}

/** When Envoy's ADS connection reaches `state` (1 up, 0 down), polled: the time is when the test saw it, a little after Envoy did. */
async function envoyConnected(envoy: EnvoyProcess, state: 0 | 1, what: string): Promise<number> {
  await waitFor(async () => (await envoy.stat('control_plane.connected_state')) === state, { what, timeoutMs: 60_000, intervalMs: 20 });
  return Date.now();
}

/**
 * Envoy answered both routes all through the outage: requests sent after it saw the controller go
 * and before the controller was started again were answered, in the first half and in the second.
 */
function expectServedThroughout(load: Load, downAt: number, restartedAt: number): void {
  const middle = (downAt + restartedAt) / 2;
  for (const route of ['/ai', '/static']) {
    const halves = [load.answered(route, downAt, middle), load.answered(route, middle, restartedAt)];
    expect(Math.min(...halves), `requests on ${route} answered in the outage's halves: ${halves.join(', ')}`).toBeGreaterThan(0);
  }
}

/**
 * The extension came back to the restarted controller within its reconnect timer: while the
 * controller is away it retries at most MAX_RECONNECT_MS apart, so it is connected at most that
 * long after the controller listens, plus the load margin. Its line is found from the restart on,
 * so it cannot be the connection to the controller that was killed.
 */
function expectReturnWithinReconnectTimer(reconnected: LogLine, listening: LogLine): void {
  logTiming('the extension reconnected after the controller listened', reconnected.time - listening.time);
  expect(reconnected.time - listening.time).toBeLessThanOrEqual(MAX_RECONNECT_MS + E2E_LOAD_MARGIN_MS);
}

describe('kill -9 of serve under load', () => {
  let scene: Scene;
  let envoy: EnvoyProcess | undefined;
  let first: SwitchyardProcess | undefined;
  let second: SwitchyardProcess | undefined;
  let stateDir: string;
  let xdsPort: number;
  let metricsPort: number;

  const serveArgs = (): string[] => [
    'serve', '--config', scene.config, '--state-dir', stateDir,
    '--xds-port', String(xdsPort), '--xds-host', '127.0.0.1', '--metrics-port', String(metricsPort), '--metrics-host', '127.0.0.1',
    '--listener-address', '127.0.0.1', '--ai-extension-port', '0',
    // This test runs its own Envoy, bootstrapped by hand.
    '--no-envoy',
  ];
  const extensionRecord = (): { pid: number; port: number } => JSON.parse(readFileSync(join(stateDir, 'ai-extension.json'), 'utf8')) as { pid: number; port: number };

  beforeAll(async () => {
    scene = await startScene('serve');
    stateDir = join(scene.root, 'state');
    // A port picked free can be taken by a parallel test before serve binds it: pick again then.
    for (let attempt = 1; ; attempt++) {
      xdsPort = await freePort();
      metricsPort = await freePort();
      first = startSwitchyard(serveArgs(), join(scene.root, `serve-1.${attempt}.log`));
      try {
        await untilReady(first, metricsPort);
        break;
      } catch (err) {
        if (attempt >= 3 || !/is in use/.test(first.tail())) throw err;
      }
    }
    const adminPort = await freePort();
    envoy = await startEnvoy({ id: 'outage-serve', adminPort, bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: xdsPort }, nodeId: 'outage-serve', adminPort }) });
    await waitForTraffic(envoy, scene.listenerPort);
  });

  afterAll(async () => {
    await envoy?.stop();
    await terminate(second);
    await terminate(first);
    // Whatever happened above, no extension outlives the test.
    try {
      const { pid } = extensionRecord();
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    } catch {
      // No record: nothing running.
    }
    await Promise.all([scene?.ai.close(), scene?.web.close()]);
    if (scene) rmSync(scene.root, { recursive: true, force: true });
  });

  it('loses no request on the AI and the Static route; the restarted serve adopts the extension and serves the same versions', async () => {
    if (envoy === undefined || first === undefined) throw new Error('setup failed');
    const before = extensionRecord();
    const versionsBefore = await versions(envoy);
    scene.ai.clear();
    const load = new Load(scene.listenerPort, ['/ai', '/static']);
    const extensionLines = (): LogLine[] => logLines(join(stateDir, 'ai-extension.log'));
    try {
      // The load is under way on both routes before the kill, and serve has warmed the Backend
      // (checked below for both serves): its warm-up comes after the configuration.
      await load.settled(RPS_PER_ROUTE / 2, 0, 'before the kill');
      await waitFor(() => warmed(first!), { what: 'the first serve to warm ai/warm', timeoutMs: 30_000, intervalMs: 100 });
      const killedAt = Date.now();
      first.child.kill('SIGKILL');
      await waitFor(() => first?.exited(), { what: 'serve to die' });
      expect(isAlive(before.pid)).toBe(true);
      const downAt = await envoyConnected(envoy, 0, 'Envoy to see serve gone');
      // A sleep on purpose: the outage itself, in which nothing may fail (see OUTAGE_MS).
      await sleep(OUTAGE_MS);
      const restartedAt = Date.now();
      second = startSwitchyard(serveArgs(), join(scene.root, 'serve-2.log'));
      await untilReady(second, metricsPort);
      const readyAt = Date.now();
      const reconnected = await waitFor(() => lineAt(extensionLines(), EXTENSION_CONNECTED, restartedAt), { what: 'the extension to reconnect to the restarted serve', timeoutMs: 60_000, intervalMs: 20 });
      const upAt = await envoyConnected(envoy, 1, 'Envoy to reconnect to the restarted serve');

      // Written once the extension is back, so the key comes to it as a change, through the watch.
      const writtenAt = scene.writeSecret(NEW_KEY);
      const firstNew = await waitFor(() => scene.ai.received().find((r) => keyOf(r.headers) === NEW_KEY), { what: 'a request with the rotated key at the provider', timeoutMs: WATCHED_CHANGE_MS, intervalMs: 10 });
      // Requests sent after the new key was in use are answered too.
      await load.settled(RPS_PER_ROUTE / 2, firstNew.time, 'after the rotated key reached the provider');
      await load.stop();

      const failures = load.failures();
      const listening = lineAt(second.lines(), LISTENING, restartedAt);
      if (listening === undefined) throw new Error(`the restarted serve logged no "${LISTENING}":\n${second.tail()}`);
      const adoption = second.lines().find((l) => l.msg === 'serve: the AI extension runs in its own process');
      const updated = lineAt(extensionLines(), CREDENTIALS_UPDATED, writtenAt);
      report('serve kill -9', {
        rps: RPS_PER_ROUTE * 2,
        requests: load.outcomes.length,
        failed: failures.length,
        aiDuringOutage: load.count('/ai', killedAt, readyAt),
        staticDuringOutage: load.count('/static', killedAt, readyAt),
        envoySawKillMs: downAt - killedAt,
        restartToReadyMs: readyAt - restartedAt,
        extensionReconnectMs: reconnected.time - listening.time,
        envoyReconnectMs: upAt - listening.time,
        credentialsUpdatedMs: updated ? updated.time - writtenAt : 'never',
        rotationMs: firstNew.time - writtenAt,
        aiArrivalGapMaxMs: longestArrivalGap(scene.ai.received()),
        failedAtMsAfterKill: failures.map((f) => f.at - killedAt).join(',') || 'none',
      });

      if (failures.length > 0) {
        const stats = await envoy.stats();
        process.stderr.write(`${[...stats].filter(([k, v]) => v !== 0 && (k.includes('keepalive') || k.includes('cx_destroy') || k.includes('rx_reset') || k.includes('tx_reset') || k.includes('goaway'))).map(([k, v]) => `${k}=${v}`).join('\n')}\n`);
        envoy.printLogs(60);
        process.stderr.write(`--- ai-extension log ---\n${readFileSync(join(stateDir, 'ai-extension.log'), 'utf8').split('\n').slice(-20).join('\n')}\n`);
        process.stderr.write(`--- serve 2 ---\n${second.tail()}\n`);
      }
      expect(failures.slice(0, 5)).toEqual([]);
      expectServedThroughout(load, downAt, restartedAt);
      // Every AI request carried a key, the old one until the rotation.
      expect(scene.ai.received().filter((r) => keyOf(r.headers) !== OLD_KEY && keyOf(r.headers) !== NEW_KEY)).toEqual([]);
      // Envoy cycled its connections to the extension (every 500 attempts) instead of being cut
      // off by Node's HTTP/2 rapid-reset guard, which dropped a connection after ~1000 attempts.
      expect(await envoy.stat('cluster.switchyard/ai-extension.upstream_cx_max_requests')).toBeGreaterThan(0);
      expect(adoption?.['adopted']).toBe(true);
      // Both serves warmed the Backend through the extension: the restarted one signs with the
      // adopted extension's key, kept in the state directory.
      await waitFor(() => warmed(second!), { what: 'the restarted serve to warm ai/warm', timeoutMs: 30_000, intervalMs: 100 });
      expect(warmed(first)).toBe(true);
      // serve's /metrics still carries the extension's series, read from the adopted process.
      expect(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()).toMatch(/^switchyard_ai_requests_total\{backend="ai\/chat".* \d+/m);
      expect(extensionRecord()).toEqual(before);
      expect(await versions(envoy)).toBe(versionsBefore);
      expectReturnWithinReconnectTimer(reconnected, listening);
      // The Secret written reached the extension through the watch (read from its log: the next
      // request's arrival at the provider adds the data path's gaps under load), then the provider.
      expect(updated, 'the extension logged no credentials update after the write').toBeDefined();
      expect(updated!.time - writtenAt).toBeLessThan(WATCHED_CHANGE_MS);
      expect(firstNew.time).toBeGreaterThanOrEqual(updated!.time);
    } finally {
      await load.stop();
    }
  }, TEST_TIMEOUT_MS);

  it('an extension that dies while serve runs is started again on the same port', async () => {
    const before = extensionRecord();
    process.kill(before.pid, 'SIGKILL');
    const after = await waitFor(() => {
      const record = extensionRecord();
      return record.pid !== before.pid ? record : undefined;
    }, { what: 'serve to start a new AI extension', timeoutMs: 60_000, intervalMs: 100 });
    expect(after.port).toBe(before.port);
    const res = await waitFor(async () => {
      const r = await fetch(`http://127.0.0.1:${scene.listenerPort}/ai/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"m","messages":[]}' });
      return r.ok ? r : undefined;
    }, { what: 'AI requests to be answered through the new extension', timeoutMs: 10_000, intervalMs: 100 });
    expect(res.headers.get('x-fake-provider')).toBe('serve-ai');
    expect(keyOf(scene.ai.received().at(-1)?.headers ?? {})).toBe(NEW_KEY);
  });

  it('a graceful stop of serve stops the extension too', async () => {
    const { pid } = extensionRecord();
    await terminate(second);
    expect(second?.exited()).toBe(true);
    await waitFor(() => !isAlive(pid), { what: `the AI extension (pid ${pid}) to end with serve`, timeoutMs: 10_000 });
  });
});

describe('kill -9 of the controller in the cluster shape (standalone extension over mTLS)', () => {
  let scene: Scene;
  let pki: Pki;
  let envoy: EnvoyProcess | undefined;
  let controllers: SwitchyardProcess[] = [];
  let extension: SwitchyardProcess | undefined;
  let xdsPort: number;
  let metricsPort: number;
  let extensionPort: number;
  let serverDir: string;

  const controllerArgs = (): string[] => [
    'serve', '--config', scene.config, '--no-ai-extension', '--xds-tls-dir', serverDir,
    '--xds-port', String(xdsPort), '--xds-host', '127.0.0.1', '--metrics-port', String(metricsPort), '--metrics-host', '127.0.0.1',
    '--listener-address', '127.0.0.1', '--ai-extension-port', String(extensionPort),
    '--no-envoy',
  ];

  beforeAll(async () => {
    scene = await startScene('cluster');
    pki = createPki('outage');
    serverDir = pki.issue('controller', { san: ['IP:127.0.0.1'], usage: ['serverAuth'], withCa: true });
    const envoyDir = pki.issue('envoy', { san: ['URI:spiffe://switchyard.dev/role/envoy'], usage: ['clientAuth'] });
    const extensionDir = pki.issue('ai-extension', { san: ['URI:spiffe://switchyard.dev/role/ai-extension'], usage: ['clientAuth'] });
    xdsPort = await freePort();
    metricsPort = await freePort();
    extensionPort = await freePort();
    const extensionMetrics = await freePort();
    controllers = [startSwitchyard(controllerArgs(), join(scene.root, 'controller-1.log'))];
    extension = startSwitchyard(
      ['ai-extension', '--xds', `127.0.0.1:${xdsPort}`, '--xds-tls-dir', extensionDir, '--port', String(extensionPort), '--host', '127.0.0.1', '--metrics-port', String(extensionMetrics), '--metrics-host', '127.0.0.1'],
      join(scene.root, 'ai-extension.log'),
    );
    await untilReady(controllers[0] as SwitchyardProcess, metricsPort);
    await untilReady(extension, extensionMetrics);
    const adminPort = await freePort();
    envoy = await startEnvoy({
      id: 'outage-cluster',
      adminPort,
      bootstrap: buildBootstrap({
        xds: { host: '127.0.0.1', port: xdsPort },
        nodeId: 'outage-cluster',
        adminPort,
        xdsTls: { caFile: join(envoyDir, 'ca.crt'), certFile: join(envoyDir, 'tls.crt'), keyFile: join(envoyDir, 'tls.key') },
      }),
    });
    await waitForTraffic(envoy, scene.listenerPort);
  });

  afterAll(async () => {
    await envoy?.stop();
    for (const c of controllers) await terminate(c);
    await terminate(extension);
    await Promise.all([scene?.ai.close(), scene?.web.close()]);
    pki?.remove();
    if (scene) rmSync(scene.root, { recursive: true, force: true });
  });

  it('loses no request; a Secret rotated during the outage is used only after the return: the extension reconnects, gets it, then the provider does', async () => {
    if (envoy === undefined || extension === undefined) throw new Error('setup failed');
    const [firstController] = controllers;
    if (firstController === undefined) throw new Error('setup failed');
    const versionsBefore = await versions(envoy);
    scene.ai.clear();
    const load = new Load(scene.listenerPort, ['/ai', '/static']);
    try {
      await load.settled(RPS_PER_ROUTE / 2, 0, 'before the kill');
      const killedAt = Date.now();
      firstController.child.kill('SIGKILL');
      await waitFor(() => firstController.exited(), { what: 'the controller to die' });
      const downAt = await envoyConnected(envoy, 0, 'Envoy to see the controller gone');
      // The extension saw it too, so the rotation below happens while both run without it.
      await waitFor(() => lineAt(extension!.lines(), 'ai-extension: credential stream to the controller broke; reconnecting, keeping the credentials it sent', killedAt), { what: 'the extension to see the controller gone', timeoutMs: 30_000, intervalMs: 20 });
      // Sleeps on purpose: the outage itself, in which nothing may fail, with the rotation in its
      // middle, which must not reach the provider before the controller is back (see OUTAGE_MS).
      await sleep(OUTAGE_MS / 2);
      const writtenAt = scene.writeSecret(NEW_KEY);
      await sleep(OUTAGE_MS / 2);
      const restartedAt = Date.now();
      const restarted = startSwitchyard(controllerArgs(), join(scene.root, 'controller-2.log'));
      controllers.push(restarted);
      await untilReady(restarted, metricsPort);
      const readyAt = Date.now();
      const firstNew = await waitFor(() => scene.ai.received().find((r) => keyOf(r.headers) === NEW_KEY), { what: 'a request with the rotated key at the provider', timeoutMs: 30_000, intervalMs: 10 });
      const upAt = await envoyConnected(envoy, 1, 'Envoy to reconnect to the restarted controller');
      // Requests sent after the new key was in use are answered too.
      await load.settled(RPS_PER_ROUTE / 2, firstNew.time, 'after the rotated key reached the provider');
      await load.stop();

      const failures = load.failures();
      const listening = lineAt(restarted.lines(), LISTENING, restartedAt);
      if (listening === undefined) throw new Error(`the restarted controller logged no "${LISTENING}":\n${restarted.tail()}`);
      const reconnected = lineAt(extension.lines(), EXTENSION_CONNECTED, restartedAt);
      const updated = lineAt(extension.lines(), CREDENTIALS_UPDATED, restartedAt);
      report('cluster kill -9', {
        rps: RPS_PER_ROUTE * 2,
        requests: load.outcomes.length,
        failed: failures.length,
        aiDuringOutage: load.count('/ai', killedAt, readyAt),
        staticDuringOutage: load.count('/static', killedAt, readyAt),
        envoySawKillMs: downAt - killedAt,
        extensionReconnectMs: reconnected ? reconnected.time - listening.time : 'never',
        envoyReconnectMs: upAt - listening.time,
        credentialsUpdatedMs: updated ? updated.time - listening.time : 'never',
        aiArrivalGapMaxMs: longestArrivalGap(scene.ai.received()),
        rotatedKeyAfterReturnMs: firstNew.time - listening.time,
        failedAtMsAfterKill: failures.map((f) => f.at - killedAt).join(',') || 'none',
      });

      expect(failures.slice(0, 5)).toEqual([]);
      expectServedThroughout(load, downAt, restartedAt);
      expect(scene.ai.received().filter((r) => keyOf(r.headers) !== OLD_KEY && keyOf(r.headers) !== NEW_KEY)).toEqual([]);
      // The outage kept the old key in use, from before the write until the controller returned:
      // the extension reconnected, then had the new key, then the provider saw it (Issue 7).
      expect(scene.ai.received().filter((r) => r.time >= writtenAt && r.time < restartedAt).map((r) => keyOf(r.headers))).not.toContain(NEW_KEY);
      expect(scene.ai.received().some((r) => r.time >= writtenAt && r.time < restartedAt)).toBe(true);
      expect(reconnected, 'the extension logged no reconnect after the restart').toBeDefined();
      expect(updated, 'the extension logged no credentials update after the restart').toBeDefined();
      expectReturnWithinReconnectTimer(reconnected!, listening);
      expect(updated!.time).toBeGreaterThanOrEqual(reconnected!.time);
      expect(firstNew.time).toBeGreaterThanOrEqual(updated!.time);
      expect(await versions(envoy)).toBe(versionsBefore);
    } finally {
      await load.stop();
    }
  }, TEST_TIMEOUT_MS);
});

describe('an orphaned AI extension', () => {
  it('ends itself once neither the controller nor Envoy has been seen for the orphan grace time', async () => {
    const root = mkdtempSync(join(tmpdir(), 'switchyard-orphan-'));
    const stateFile = join(root, 'ai-extension.json');
    const p = startSwitchyard(
      ['ai-extension', '--xds-socket', join(root, 'nobody.sock'), '--port', '0', '--host', '127.0.0.1', '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--orphan-grace', '2s', '--state-file', stateFile],
      join(root, 'ai-extension.log'),
    );
    try {
      const record = await waitFor(() => {
        if (p.exited()) throw new StopWaiting(`the extension exited early:\n${p.tail()}`);
        return JSON.parse(readFileSync(stateFile, 'utf8')) as { pid: number };
      }, { what: 'the extension to write its state file', timeoutMs: 60_000 });
      expect(record.pid).toBe(p.child.pid);
      const code = await new Promise<number | null>((resolve) => p.child.once('exit', (c) => resolve(c)));
      expect(code).toBe(0);
      expect(p.lines().some((l) => l.msg.includes('neither the controller nor Envoy has been here for the orphan grace time'))).toBe(true);
      // Its record goes with it, so no serve tries to adopt a dead extension.
      expect(() => readFileSync(stateFile)).toThrow();
    } finally {
      if (!p.exited()) p.child.kill('SIGKILL');
      rmSync(root, { recursive: true, force: true });
    }
  });
});
