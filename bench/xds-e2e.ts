/**
 * End-to-end xDS rows, measured the way users live them, side by side with go-control-plane
 * (issue 9). For each size (Backends x clients) and each protocol variant (SotW, delta):
 *
 * - `switchyard serve --no-envoy --no-ai-extension` watches a directory of manifests (one file
 *   per Backend, with its Secrets and HTTPRoute: translate.ts's shape); go-control-plane v0.14.0
 *   (bench/gcp/server) serves what `switchyard translate -o json` prints for the same directory.
 * - One Go load client program (bench/gcp/loadclient), one fleet of C streams per server, each
 *   stream on its own HTTP/2 connection, subscribing and ACKing as Envoy does.
 * - Rounds, interleaved: edit one Backend's file, time until every Switchyard stream has ACKed
 *   the new Clusters (file debounce, re-read, translation and push included); translate the same
 *   directory (untimed), hand the result to go-control-plane, time until every stream has ACKed.
 *
 * Extra rows: serve start -> first response to a client; an edit -> the first byte to a client;
 * connecting C streams (initial configuration ACKed); RSS per added client; the longest
 * event-loop stall inside serve (prom-client's nodejs_eventloop_lag_max_seconds, reset by a
 * scrape before the fleet connects and read once at the end).
 *
 * Env: BENCH_E2E_SIZES (e.g. "50x1000,1000x100"), BENCH_E2E_MODES ("sotw,delta"),
 * BENCH_E2E_ROUNDS (3), BENCH_E2E_TIMEOUT_S (per wait; 180), BENCH_E2E_BUILT=1 (serve from dist/),
 * BENCH_E2E_SERVE_LOG_LEVEL (serve's --log-level; debug logs every push and ACK), BENCH_E2E_KEEP_LOGS=DIR
 * (serve's log is copied there after each size), BENCH_E2E_WINDOW (the load clients' HTTP/2 receive window in bytes; Envoy's 268435456 by
 * default, 0 for gRPC-Go's 64 KiB growing with its bandwidth estimate), BENCH_E2E_SERVE_NODE_ARGS (Node and V8 flags
 * for serve alone, say `--trace-deopt`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { buildGoBench, markFleet, processUsage, sinceChange, startGoServer, startLoadClient, Timeout, type GoBinaries, type GoEvent, type LineChild } from './gcp.js';
import { median, type BenchRow, type BenchSuite } from './suite.js';
import { generateManifests } from './translate.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SUITE = 'xds-e2e';
const GATEWAY = 'bench/bench';
const STORM_TARGET_MS = 3_000;
const INITIAL_LOAD_TARGET_MS = 5_000;
const FIRST_BYTE_TARGET_MS = 100;
const LARGE_FLEET_TARGET_MS = 5_000;
const RSS_PER_CLIENT_TARGET_MB = 5;
/** Well under the keepalive timeouts gRPC deployments use (go-control-plane's example: 5 s; grpc-js: 20 s). */
const STALL_TARGET_MS = 1_000;
const MB = 1024 * 1024;

export interface E2eSize {
  backends: number;
  clients: number;
}

export type E2eMode = 'sotw' | 'delta';

export interface E2eOptions {
  sizes: E2eSize[];
  modes: E2eMode[];
  rounds: number;
  /** The load clients' fixed HTTP/2 receive window (BENCH_E2E_WINDOW, bytes; Envoy's default); gRPC's growing default without. */
  window?: number;
  timeoutMs: number;
  log: (line: string) => void;
}

function parseSizes(text: string): E2eSize[] {
  return text.split(',').map((part) => {
    const m = /^\s*(\d+)x(\d+)\s*$/.exec(part);
    if (!m) throw new Error(`BENCH_E2E_SIZES takes BACKENDSxCLIENTS separated by commas (e.g. 50x1000,1000x100), got "${part}"`);
    return { backends: Number(m[1]), clients: Number(m[2]) };
  });
}

/**
 * Envoy's initial_stream_window_size and initial_connection_window_size (256 MiB each): the load
 * client stands in for Envoys, so it lets a server send what Envoy would let it. With gRPC-Go's
 * own (64 KiB, grown by its bandwidth estimate) a thousand streams each wait for window updates
 * and finish together, late: 1,000 streams at 1,000 Backends ACKed after 21 s instead of 8 s, the
 * first after 4.7 s instead of 0.2 s (under load), and the client held 1.7 GB instead of 0.3.
 */
const ENVOY_WINDOW = 268_435_456;

export function windowFromEnv(text: string | undefined): { window?: number } {
  if (text === undefined) return { window: ENVOY_WINDOW };
  const v = Number(text);
  if (!Number.isInteger(v) || v < 0 || v > 2_147_483_647) throw new Error(`BENCH_E2E_WINDOW is bytes (0 for gRPC-Go's growing window, at most 2147483647), got "${text}"`);
  return v === 0 ? {} : { window: v };
}

export function e2eOptionsFromEnv(log: (line: string) => void): E2eOptions {
  const env = process.env;
  const modes = (env['BENCH_E2E_MODES'] ?? 'sotw,delta').split(',').map((m) => m.trim());
  for (const m of modes) if (m !== 'sotw' && m !== 'delta') throw new Error(`BENCH_E2E_MODES takes sotw and/or delta, got "${m}"`);
  const positive = (name: string, fallback: number): number => {
    const v = Number(env[name] ?? fallback);
    if (!Number.isInteger(v) || v <= 0) throw new Error(`${name} must be a positive integer, got "${env[name] ?? ''}"`);
    return v;
  };
  return {
    sizes: parseSizes(env['BENCH_E2E_SIZES'] ?? '50x1000,1000x100,1000x1000,10000x100'),
    modes: modes as E2eMode[],
    rounds: positive('BENCH_E2E_ROUNDS', 3),
    timeoutMs: positive('BENCH_E2E_TIMEOUT_S', 180) * 1000,
    ...windowFromEnv(env['BENCH_E2E_WINDOW']),
    log,
  };
}

/** A directory of manifests, one file per Backend (its Secrets, the Backend, its HTTPRoute), as users keep them. */
export class ConfigDir {
  readonly path: string;
  private readonly backends: Record<string, unknown>[][] = [];

  constructor(parent: string, n: number) {
    this.path = join(parent, 'config');
    mkdirSync(this.path);
    const docs = generateManifests(n) as Record<string, unknown>[];
    writeFileSync(join(this.path, '00-gateway.yaml'), docs.slice(0, 2).map((d) => stringify(d)).join('---\n'));
    for (let i = 2; i < docs.length; ) {
      const group: Record<string, unknown>[] = [];
      while (i < docs.length) {
        const doc = docs[i++] as Record<string, unknown>;
        group.push(doc);
        if (doc['kind'] === 'HTTPRoute') break;
      }
      this.backends.push(group);
      this.write(this.backends.length - 1);
    }
  }

  private write(index: number): void {
    this.writer(index)();
  }

  /** Writes a file's text, made beforehand: the bench's own YAML encoding is not the write's time. */
  private writer(index: number): () => void {
    const group = this.backends[index] ?? [];
    const text = group.map((d) => stringify(d)).join('---\n');
    const file = join(this.path, `chat-${index}.yaml`);
    return () => {
      writeFileSync(file, text);
    };
  }

  /** Changes one Backend's outlier detection (its Cluster changes, nothing else) and rewrites its file. */
  edit(index: number, generation: number): void {
    this.prepareEdit(index, generation)();
  }

  /**
   * edit() in two steps: the Backend is changed and its file's text made now, the file written
   * when the returned function is called. A timed edit starts its clock between the two, so that
   * it times the write and what serve does with it (as go-control-plane's side times SetSnapshot
   * after its decode), not the bench encoding YAML: 0.6-1.4 ms a file, and tens of ms when the
   * bench process was descheduled or collecting garbage meanwhile.
   */
  prepareEdit(index: number, generation: number): () => void {
    const backend = this.backends[index]?.find((d) => d['kind'] === 'Backend') as { spec: Record<string, unknown> } | undefined;
    if (!backend) throw new Error(`bench config has no Backend chat-${index}`);
    backend.spec['outlierDetection'] = { consecutive5xx: 5 + (generation % 50) };
    return this.writer(index);
  }
}

/** Runs `switchyard translate -o json` on the directory into `out`: what go-control-plane serves. */
function translateTo(config: string, out: string): void {
  const fd = openSync(out, 'w');
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'translate', '-f', config, '-o', 'json', '--allow-problems'], {
      cwd: ROOT, stdio: ['ignore', fd, 'pipe'], maxBuffer: 64 * MB,
    });
    if (r.status !== 0) throw new Error(`switchyard translate -f ${config} failed: ${r.stderr.toString().slice(0, 2000)}`);
  } finally {
    closeSync(fd);
  }
}

const KIND_TYPES: Record<string, string> = { clusters: 'cds', endpoints: 'eds', listeners: 'lds', routes: 'rds', secrets: 'sds' };

/**
 * Each resource of a translate report by kind and name, as a digest of its JSON: at 10,000
 * Backends a report is about 190 MB, and two parsed at once with their JSON strings kept would
 * take the bench process past its heap.
 */
function reportDigests(file: string): Map<string, Map<string, string>> {
  const xds = (JSON.parse(readFileSync(file, 'utf8')) as { xds: Record<string, Record<string, unknown>[]> }).xds;
  const digests = new Map<string, Map<string, string>>();
  for (const kind of Object.keys(KIND_TYPES)) {
    const byName = new Map<string, string>();
    for (const r of xds[kind] ?? []) byName.set(String(r['name'] ?? r['cluster_name']), createHash('sha256').update(JSON.stringify(r)).digest('base64'));
    digests.set(kind, byName);
  }
  return digests;
}

/** Which xDS types differ between two translate reports (cds, eds, ...). */
function changedTypes(before: string, after: string): string[] {
  const a = reportDigests(before);
  const b = reportDigests(after);
  const changed: string[] = [];
  for (const [kind, short] of Object.entries(KIND_TYPES)) {
    const left = a.get(kind) ?? new Map<string, string>();
    const right = b.get(kind) ?? new Map<string, string>();
    if (left.size !== right.size || [...right].some(([name, digest]) => left.get(name) !== digest)) changed.push(short);
  }
  return changed;
}

/**
 * How serve is started: from src under tsx (the default: always today's code, but its start
 * includes compiling src on the fly), or with BENCH_E2E_BUILT=1 from dist/ as users run it
 * (run `npm run build` first; a stale dist/ measures stale code).
 */
function serveEntry(): string[] {
  if (process.env['BENCH_E2E_BUILT'] !== '1') return ['--import', 'tsx', 'src/cli/main.ts'];
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('BENCH_E2E_BUILT=1 needs dist/ (npm run build)');
  return [join(ROOT, 'bin', 'switchyard.js')];
}

/**
 * BENCH_E2E_SERVE_NODE_ARGS: Node and V8 flags for serve alone, separated by spaces (say
 * `--trace-deopt --trace-opt`: V8 flags NODE_OPTIONS does not take, and which would trace the
 * bench and the translate runs too). Their output goes to serve's log.
 */
function serveNodeArgs(): string[] {
  return (process.env['BENCH_E2E_SERVE_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
}

/** Polls `probe` every 20 ms until it gives a value; throws naming `what` after `ms`. */
export async function waitFor<T>(what: string, probe: () => T | undefined, ms = 120_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `switchyard serve` in file mode without Envoy, its log in a file (as a service manager keeps it). */
export class Serve {
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess, private readonly logFile: string, readonly startedAt: bigint) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** `cpuProfileDir`: serve (and only serve) writes its V8 CPU profile there when it stops. */
  static start(config: string, dir: string, cpuProfileDir?: string): Serve {
    const logFile = join(dir, 'serve.log');
    const inherited = process.env['NODE_OPTIONS'];
    const env = cpuProfileDir === undefined ? process.env : { ...process.env, NODE_OPTIONS: `${inherited ?? ''} --cpu-prof --cpu-prof-dir=${cpuProfileDir}` };
    const fd = openSync(logFile, 'w');
    const startedAt = process.hrtime.bigint();
    const child = spawn(process.execPath, [
      ...serveNodeArgs(), ...serveEntry(), 'serve', '--config', config, '--no-envoy', '--no-ai-extension',
      '--xds-port', '0', '--xds-host', '127.0.0.1', '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--state-dir', join(dir, 'state'),
      ...(process.env['BENCH_E2E_SERVE_LOG_LEVEL'] ? ['--log-level', process.env['BENCH_E2E_SERVE_LOG_LEVEL']] : []),
    ], { cwd: ROOT, env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    return new Serve(child, logFile, startedAt);
  }

  /** Ports from serve's "switchyard listening" log line, polled: written once xDS listens, before the configuration is read (the probe then waits for its first response). */
  async ports(timeoutMs: number): Promise<{ xds: number; metrics: number }> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) throw new Error(`serve exited (code ${this.child.exitCode}); see ${this.logFile}`);
      const m = /"xdsPort":(\d+),.*"metricsPort":(\d+)/.exec(readFileSync(this.logFile, 'utf8'));
      if (m) return { xds: Number(m[1]), metrics: Number(m[2]) };
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Timeout(`serve: timed out after ${(timeoutMs / 1000).toFixed(0)} s waiting for it to listen`);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Max event-loop delay (ms) since the previous scrape, from serve's /metrics. */
export async function eventLoopLagMaxMs(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  const m = /^nodejs_eventloop_lag_max_seconds\s+([0-9.eE+-]+)$/m.exec(text);
  if (!m) throw new Error('serve /metrics has no nodejs_eventloop_lag_max_seconds');
  return Number(m[1]) * 1000;
}

/** One round's figures besides its time, for the progress line. */
function turnDetail(turn: Turn | undefined): string {
  return turn === undefined ? '-' : `first byte ${turn.firstMs.toFixed(0)}, p50 ${turn.p50Ms.toFixed(0)}, CPU ${turn.cpuMs.toFixed(0)}, client CPU ${turn.clientCpuMs.toFixed(0)}`;
}

interface Turn {
  ms: number;
  firstMs: number;
  p50Ms: number;
  cpuMs: number;
  /** The load client's own CPU: shows whether the yardstick, not the server, was the limit. */
  clientCpuMs: number;
  /** Streams the server broke so far (the load client reconnects them, as Envoy does). */
  errors: number;
}

/** Marks the fleet, runs `change`, waits until every stream has ACKed a new version of `types`. */
async function timedChange(fleet: LineChild, pid: number, id: string, types: string[], change: () => void, timeoutMs: number): Promise<Turn> {
  const markedAt = await markFleet(fleet, id, types.join(','), timeoutMs);
  const before = processUsage(pid).cpuMs;
  const clientBefore = processUsage(fleet.child.pid ?? -1).cpuMs;
  const changedAt = Date.now();
  change();
  const done = sinceChange(await waitDone(fleet, id, timeoutMs), markedAt, changedAt);
  return {
    ms: Number(done['ms']), firstMs: Number(done['firstMs']), p50Ms: Number(done['p50Ms']), cpuMs: processUsage(pid).cpuMs - before,
    clientCpuMs: processUsage(fleet.child.pid ?? -1).cpuMs - clientBefore, errors: Number(done['errors']),
  };
}

/** A fleet's wait that ran out: how far it got ("timed out, N of M"), for the row of the server that did finish. */
class FleetTimeout extends Timeout {
  constructor(message: string, readonly reached: number | undefined, readonly streams: number | undefined) {
    super(message);
  }

  get short(): string {
    return this.reached === undefined ? 'timed out' : `timed out, ${fmt(this.reached)} of ${fmt(this.streams ?? 0)}`;
  }
}

async function waitDone(fleet: LineChild, id: string, timeoutMs: number): Promise<GoEvent> {
  try {
    return await fleet.next((e) => e.event === 'done' && e['id'] === id, timeoutMs, `every stream to ACK change ${id}`);
  } catch (err) {
    if (!(err instanceof Timeout)) throw err;
    fleet.send(`status ${id}`);
    const status = await fleet.next((e) => e.event === 'status' && e['id'] === id, 10_000, 'a status').catch(() => undefined);
    const missing = status && Array.isArray(status['missing']) && status['missing'].length > 0 ? `; streams without it, as they stand: ${JSON.stringify(status['missing'])}` : '';
    throw new FleetTimeout(`${err.message}${status ? ` (${String(status['done'])} of ${String(status['streams'])} streams had it; ${String(status['errors'])} stream errors${missing})` : ''}`,
      status ? Number(status['done']) : undefined, status ? Number(status['streams']) : undefined);
  }
}

async function fleetReady(fleet: LineChild, timeoutMs: number, what: string): Promise<GoEvent> {
  try {
    return await fleet.next((e) => e.event === 'ready', timeoutMs, what);
  } catch (err) {
    if (!(err instanceof Timeout)) throw err;
    fleet.send('status none');
    const status = await fleet.next((e) => e.event === 'status', 10_000, 'a status').catch(() => undefined);
    throw new FleetTimeout(`${err.message}${status ? ` (${String(status['ready'])} of ${String(status['streams'])} streams ready; ${String(status['errors'])} stream errors)` : ''}`,
      status ? Number(status['ready']) : undefined, status ? Number(status['streams']) : undefined);
  }
}

/** "timed out, N of M" for a peer's wait that ran out; the error's message for anything else. */
function peerFailure(err: unknown): string {
  if (err instanceof FleetTimeout) return err.short;
  return err instanceof Error ? err.message : String(err);
}

/**
 * Waits (at most `limitMs`) until the given processes use under a tenth of a core: one server's
 * round must not be timed while the other, or a fleet, still works off the last one (status after
 * a fleet's ACKs, a fleet's bookkeeping, a translation's garbage collection).
 */
export async function settle(pids: readonly number[], limitMs = 20_000): Promise<void> {
  const windowMs = 300;
  const deadline = Date.now() + limitMs;
  // A fleet stopped after a timeout has no /proc entry any more: it counts as idle.
  const used = (pid: number): number => {
    try {
      return pid > 0 ? processUsage(pid).cpuMs : 0;
    } catch {
      return 0;
    }
  };
  const cpu = (): number => pids.reduce((sum, pid) => sum + used(pid), 0);
  while (Date.now() < deadline) {
    const before = cpu();
    await new Promise((resolve) => setTimeout(resolve, windowMs));
    if (cpu() - before < windowMs / 10) return;
  }
}

const fmt = (n: number): string => n.toLocaleString('en-US');
const sizeName = (s: E2eSize): string => `${fmt(s.backends)} Backends x ${fmt(s.clients)} clients`;
const mb = (bytes: number): string => (bytes / MB).toFixed(0);
/** CPU comes from /proc in 10 ms ticks: a zero is "under a tick", not a ratio of infinity. */
const ratio = (a: number, b: number): string => (b > 0 ? (a / b).toFixed(2) : '-');

function timedOutRow(name: string, n: number, err: unknown): BenchRow {
  const message = err instanceof Error ? err.message : String(err);
  return { suite: SUITE, name, n, ms: undefined, runs: 0, heapMB: undefined, detail: err instanceof Timeout ? `TIMED OUT: ${message}` : `FAILED: ${message}`, verdict: 'FAIL' };
}

/** Change -> all ACKed targets of issue 9, by size. */
function changeTarget(size: E2eSize): { text: string; relative: boolean; pass: (sy: number, gcp: number, syCpu: number, gcpCpu: number) => boolean } | undefined {
  if ((size.backends === 50 && size.clients === 1_000) || (size.backends === 1_000 && size.clients === 100)) {
    return { text: 'ratio <= 1.0, CPU <= gcp', relative: true, pass: (sy, gcp, syCpu, gcpCpu) => sy <= gcp && syCpu <= gcpCpu };
  }
  if (size.backends === 1_000 && size.clients === 1_000) return { text: `< ${fmt(LARGE_FLEET_TARGET_MS)} ms`, relative: false, pass: (sy) => sy < LARGE_FLEET_TARGET_MS };
  if (size.backends === 10_000 && size.clients === 100) return { text: 'converges', relative: false, pass: (sy) => Number.isFinite(sy) };
  return undefined;
}

async function runSize(bin: GoBinaries, size: E2eSize, mode: E2eMode, opts: E2eOptions, withStartupRows: boolean): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const { log, timeoutMs, window } = opts;
  const label = `${mode}, ${sizeName(size)}`;
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-e2e-'));
  const stops: (() => Promise<void>)[] = [];
  try {
    log(`xds-e2e: ${label}: writing the configuration and translating it for go-control-plane`);
    const config = new ConfigDir(dir, size.backends);
    const report = (round: number): string => join(dir, `translated-${round}.json`);
    translateTo(config.path, report(0));

    log(`xds-e2e: ${label}: starting serve (load average ${(loadavg()[0] ?? 0).toFixed(1)})`);
    const serve = Serve.start(config.path, dir);
    stops.push(() => serve.stop());
    const ports = await serve.ports(timeoutMs);
    // A single client right away: when does a fleet that is already waiting get its first byte?
    const probeStart = process.hrtime.bigint();
    const probe = startLoadClient(bin, { port: ports.xds, streams: 1, mode, gateway: GATEWAY, name: 'probe', ...(window !== undefined ? { window } : {}) });
    stops.push(() => probe.stop());
    const probeReady = await fleetReady(probe, timeoutMs, 'the first client to get its configuration');
    await probe.stop();
    const initialMs = Number(probeStart - serve.startedAt) / 1e6 + Number(probeReady['firstResponseMinMs']);
    if (withStartupRows) {
      rows.push({
        suite: SUITE, name: `serve start -> first response to a client (${fmt(size.backends)} Backends)`, n: size.backends, ms: initialMs, runs: 1, heapMB: undefined,
        detail: `${process.env['BENCH_E2E_BUILT'] === '1' ? 'serve from dist/' : 'serve under tsx (compiles src at start; BENCH_E2E_BUILT=1 runs dist/)'}; xDS listening after ${(Number(probeStart - serve.startedAt) / 1e6).toFixed(0)} ms; whole initial configuration ACKed after ${(Number(probeStart - serve.startedAt) / 1e6 + Number(probeReady['readyMs'])).toFixed(0)} ms`,
        ...(size.backends === 10_000 ? { target: `< ${fmt(INITIAL_LOAD_TARGET_MS)} ms`, verdict: initialMs < INITIAL_LOAD_TARGET_MS ? 'PASS' as const : 'FAIL' as const } : {}),
      });
    }
    await eventLoopLagMaxMs(ports.metrics); // resets the max: the stall row covers the fleet's run only
    const serveBefore = processUsage(serve.pid);

    const { server: gcp, port: gcpPort } = await startGoServer(bin, report(0), timeoutMs);
    stops.push(() => gcp.stop());
    const gcpBefore = processUsage(gcp.child.pid ?? -1);

    log(`xds-e2e: ${label}: connecting ${fmt(size.clients)} streams to serve`);
    const syFleetStart = process.hrtime.bigint();
    const syFleet = startLoadClient(bin, { port: ports.xds, streams: size.clients, mode, gateway: GATEWAY, name: 'fleet-switchyard', ...(window !== undefined ? { window } : {}) });
    stops.push(() => syFleet.stop());
    let syReady: GoEvent | undefined;
    try {
      syReady = await fleetReady(syFleet, timeoutMs, `${size.clients} streams to ACK their initial configuration`);
    } catch (err) {
      rows.push(timedOutRow(`${mode}: ${fmt(size.clients)} streams connect and ACK the initial configuration (switchyard, ${fmt(size.backends)} Backends)`, size.clients, err));
      // A fleet still retrying would load the machine while go-control-plane is timed.
      await syFleet.stop();
    }
    const serveWithFleet = processUsage(serve.pid);
    const syFleetCpuMs = processUsage(syFleet.child.pid ?? -1).cpuMs;
    const syFleetWallMs = Number(process.hrtime.bigint() - syFleetStart) / 1e6;
    await settle([serve.pid, syFleet.child.pid ?? -1]);

    log(`xds-e2e: ${label}: connecting ${fmt(size.clients)} streams to go-control-plane`);
    const gcpFleet = startLoadClient(bin, { port: gcpPort, streams: size.clients, mode, gateway: GATEWAY, name: 'fleet-gcp', ...(window !== undefined ? { window } : {}) });
    stops.push(() => gcpFleet.stop());
    let gcpReady: GoEvent | undefined;
    let gcpFailure: unknown;
    try {
      gcpReady = await fleetReady(gcpFleet, timeoutMs, `${size.clients} streams to ACK their initial configuration from go-control-plane`);
    } catch (err) {
      if (!(err instanceof Timeout)) throw err;
      // Switchyard's rounds still run and are reported; go-control-plane's row says how far it got.
      gcpFailure = err;
      rows.push(timedOutRow(`${mode}: ${fmt(size.clients)} streams connect and ACK the initial configuration (go-control-plane, ${fmt(size.backends)} Backends)`, size.clients, err));
      await gcpFleet.stop();
    }
    const gcpWithFleet = processUsage(gcp.child.pid ?? -1);
    const gcpStorm = gcpReady !== undefined
      ? `go-control-plane ${Number(gcpReady['readyMs']).toFixed(0)} ms`
      : `go-control-plane ${peerFailure(gcpFailure)}`;

    if (syReady) {
      const syMs = Number(syReady['readyMs']);
      const serveCpu = (serveWithFleet.cpuMs - serveBefore.cpuMs).toFixed(0);
      rows.push({
        suite: SUITE, name: `${mode}: ${fmt(size.clients)} streams connect and ACK the initial configuration (${fmt(size.backends)} Backends)`, n: size.clients, ms: syMs,
        runs: 1, heapMB: undefined,
        detail: `switchyard: connected ${Number(syReady['connectMaxMs']).toFixed(0)} ms, first byte ${syReady['firstByteMaxMs'] === undefined ? '-' : Number(syReady['firstByteMaxMs']).toFixed(0)} ms, first response ${Number(syReady['firstResponseMaxMs']).toFixed(0)} ms, ` +
          `serve CPU ${serveCpu} ms, load client CPU ${syFleetCpuMs.toFixed(0)} ms in ${syFleetWallMs.toFixed(0)} ms; ` +
          `${gcpStorm}${gcpReady !== undefined ? ` (ratio ${ratio(syMs, Number(gcpReady['readyMs']))}), CPU ${(gcpWithFleet.cpuMs - gcpBefore.cpuMs).toFixed(0)} ms` : ''}`,
        ...(size.clients >= 1_000 ? { target: `< ${fmt(STORM_TARGET_MS)} ms`, verdict: syMs < STORM_TARGET_MS ? 'PASS' as const : 'FAIL' as const } : {}),
      });
      // Issue 9's "connections accepted": every stream's connection taken and the first byte of
      // its first response on the wire; the row above waits until each has read and ACKed it all.
      if (syReady['firstByteMaxMs'] !== undefined) {
        const acceptedMs = Number(syReady['firstByteMaxMs']);
        rows.push({
          suite: SUITE, name: `${mode}: ${fmt(size.clients)} streams accepted, first byte of the first response to each (${fmt(size.backends)} Backends)`, n: size.clients, ms: acceptedMs,
          runs: 1, heapMB: undefined,
          detail: `switchyard: every connection taken after ${Number(syReady['connectMaxMs']).toFixed(0)} ms, every stream's first DATA frame after ${acceptedMs.toFixed(0)} ms` +
            (gcpReady?.['firstByteMaxMs'] !== undefined ? `; go-control-plane ${Number(gcpReady['firstByteMaxMs']).toFixed(0)} ms` : `; ${gcpStorm}`),
          ...(size.clients >= 1_000 ? { target: `< ${fmt(STORM_TARGET_MS)} ms`, verdict: acceptedMs < STORM_TARGET_MS ? 'PASS' as const : 'FAIL' as const } : {}),
        });
      }
      const perClient = (serveWithFleet.rssBytes - serveBefore.rssBytes) / size.clients;
      const gcpPerClient = (gcpWithFleet.rssBytes - gcpBefore.rssBytes) / size.clients;
      rows.push({
        suite: SUITE, name: `${mode}: RSS per added client (${fmt(size.backends)} Backends)`, n: size.clients, ms: undefined, runs: 1, heapMB: perClient / MB,
        detail: `heap MB column is RSS MB per client; switchyard ${mb(serveBefore.rssBytes)} -> ${mb(serveWithFleet.rssBytes)} MB with ${fmt(size.clients)} clients; ` +
          (gcpReady !== undefined ? `go-control-plane ${mb(gcpBefore.rssBytes)} -> ${mb(gcpWithFleet.rssBytes)} MB (${(gcpPerClient / MB).toFixed(2)} MB per client)` : gcpStorm),
        ...(size.backends === 10_000 ? { target: `< ${RSS_PER_CLIENT_TARGET_MB} MB per client`, verdict: perClient / MB < RSS_PER_CLIENT_TARGET_MB ? 'PASS' as const : 'FAIL' as const } : {}),
      });
    }

    // Interleaved rounds: the two servers see the same machine load, round by round.
    const sy: Turn[] = [];
    const gc: Turn[] = [];
    const gcpDecodeMs: number[] = [];
    let syFailure: unknown;
    for (let round = 1; round <= opts.rounds; round++) {
      const index = (round * 7919) % size.backends;
      await settle([serve.pid, gcp.child.pid ?? -1, syFleet.child.pid ?? -1, gcpFleet.child.pid ?? -1]);
      if (syReady && syFailure === undefined) {
        try {
          sy.push(await timedChange(syFleet, serve.pid, `sy-${round}`, ['cds'], config.prepareEdit(index, round), timeoutMs));
        } catch (err) {
          syFailure = err;
          config.edit(index, round);
          await syFleet.stop();
        }
      } else {
        config.edit(index, round);
      }
      translateTo(config.path, report(round));
      const types = changedTypes(report(round - 1), report(round));
      if (types.join(',') !== 'cds') throw new Error(`editing chat-${index}'s outlier detection changed ${types.join(',') || 'nothing'}; the bench expects Clusters only`);
      // Decoding the report (protojson) is go-control-plane's stand-in for translation: done
      // first and reported apart; the timed change is SetSnapshot -> every stream ACKed.
      gcp.send(`prepare ${report(round)}`);
      const prepared = await gcp.next((e) => e.event === 'prepared' || e.event === 'error', timeoutMs, 'go-control-plane to decode the report');
      if (prepared.event !== 'prepared') throw new Error(`gcp-server: ${String(prepared['message'])}`);
      gcpDecodeMs.push(Number(prepared['ms']));
      if (gcpFailure === undefined) {
        await settle([serve.pid, gcp.child.pid ?? -1, syFleet.child.pid ?? -1, gcpFleet.child.pid ?? -1]);
        try {
          gc.push(await timedChange(gcpFleet, gcp.child.pid ?? -1, `gcp-${round}`, types, () => gcp.send('commit'), timeoutMs));
        } catch (err) {
          if (!(err instanceof Timeout)) throw err;
          gcpFailure = err;
          await gcpFleet.stop();
        }
      } else {
        gcp.send('commit');
        await gcp.next((e) => e.event === 'committed' || e.event === 'error', timeoutMs, 'go-control-plane to take the snapshot');
      }
      log(`xds-e2e: ${label}: round ${round}: switchyard ${sy.at(-1)?.ms.toFixed(0) ?? '-'} ms, go-control-plane ${gc.at(-1)?.ms.toFixed(0) ?? '-'} ms (${turnDetail(sy.at(-1))}; ${turnDetail(gc.at(-1))})`);
    }
    const serveEnd = processUsage(serve.pid);
    const gcpEnd = processUsage(gcp.child.pid ?? -1);
    const stallMs = await eventLoopLagMaxMs(ports.metrics);

    const m = (turns: Turn[], pick: (t: Turn) => number): number => median(turns.map(pick));
    // With go-control-plane's rounds cut short, only the rounds both servers finished are compared.
    const gcpMs = gcpFailure === undefined ? m(gc, (t) => t.ms) : Number.NaN;
    const gcpCpu = gcpFailure === undefined ? m(gc, (t) => t.cpuMs) : Number.NaN;
    const peer = gcpFailure === undefined ? undefined : `go-control-plane ${peerFailure(gcpFailure)}`;
    const target = changeTarget(size);
    const changeName = `${mode}: edit one Backend -> all ACKed, ${sizeName(size)}`;
    if (syFailure !== undefined || sy.length === 0) {
      rows.push({ ...timedOutRow(`${changeName} (switchyard)`, size.backends, syFailure ?? new Error('the fleet never connected')), ...(target ? { target: target.text } : {}) });
    } else {
      const syMs = m(sy, (t) => t.ms);
      const syCpu = m(sy, (t) => t.cpuMs);
      rows.push({
        suite: SUITE, name: `${changeName} (switchyard)`, n: size.backends, ms: syMs, cpuMs: syCpu, runs: sy.length, heapMB: undefined,
        detail: `${peer === undefined ? `ratio ${ratio(syMs, gcpMs)}, CPU ratio ${ratio(syCpu, gcpCpu)} to go-control-plane` : `no ratio: ${peer}`}; first byte ${m(sy, (t) => t.firstMs).toFixed(0)} ms, p50 stream ${m(sy, (t) => t.p50Ms).toFixed(0)} ms; RSS ${mb(serveEnd.rssBytes)} MB; streams broken by the server ${sy.at(-1)?.errors ?? 0}; load client CPU ${m(sy, (t) => t.clientCpuMs).toFixed(0)} ms`,
        // A ratio target cannot be judged against a peer that did not finish: no verdict then.
        ...(target ? { target: target.text, ...(peer === undefined || !target.relative ? { verdict: target.pass(syMs, gcpMs, syCpu, gcpCpu) ? 'PASS' as const : 'FAIL' as const } : {}) } : {}),
      });
      if (size.backends === 10_000) {
        const first = m(sy, (t) => t.firstMs);
        rows.push({
          suite: SUITE, name: `${mode}: one edit among 10,000 Backends -> first byte to a client`, n: size.backends, ms: first, runs: sy.length, heapMB: undefined,
          detail: `file write to the first changed response on any of ${fmt(size.clients)} streams; ${peer ?? `go-control-plane (SetSnapshot to first byte) ${m(gc, (t) => t.firstMs).toFixed(0)} ms`}`,
          target: `< ${FIRST_BYTE_TARGET_MS} ms`, verdict: first < FIRST_BYTE_TARGET_MS ? 'PASS' : 'FAIL',
        });
      }
    }
    if (gcpFailure !== undefined) {
      rows.push(timedOutRow(`${changeName} (go-control-plane)`, size.backends, gcpFailure));
    } else rows.push({
      suite: SUITE, name: `${changeName} (go-control-plane)`, n: size.backends, ms: gcpMs, cpuMs: gcpCpu, runs: gc.length, heapMB: undefined,
      detail: `SetSnapshot to all ACKed (decoding the report before it: ${median(gcpDecodeMs).toFixed(0)} ms, not counted); first byte ${m(gc, (t) => t.firstMs).toFixed(0)} ms, p50 stream ${m(gc, (t) => t.p50Ms).toFixed(0)} ms; RSS ${mb(gcpEnd.rssBytes)} MB; streams broken by the server ${gc.at(-1)?.errors ?? 0}; load client CPU ${m(gc, (t) => t.clientCpuMs).toFixed(0)} ms`,
    });
    rows.push({
      suite: SUITE, name: `${mode}: longest event-loop stall in serve, ${sizeName(size)}`, n: size.backends, ms: stallMs, runs: 1, heapMB: undefined,
      detail: 'nodejs_eventloop_lag_max_seconds from the fleet connecting to the last round',
      target: `< ${fmt(STALL_TARGET_MS)} ms`, verdict: stallMs < STALL_TARGET_MS ? 'PASS' : 'FAIL',
    });
  } catch (err) {
    if (!(err instanceof Timeout)) throw err;
    rows.push(timedOutRow(`${mode}: ${sizeName(size)}`, size.backends, err));
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    const keep = process.env['BENCH_E2E_KEEP_LOGS'];
    if (keep !== undefined && keep !== '') {
      mkdirSync(keep, { recursive: true });
      const to = join(keep, `serve-${mode}-${sizeName(size).replace(/[^0-9a-z]+/gi, '_')}-${Date.now()}.log`);
      copyFileSync(join(dir, 'serve.log'), to);
      log(`xds-e2e: ${label}: serve's log kept at ${to}`);
    }
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

export function xdsE2eSuite(opts: E2eOptions): BenchSuite {
  return {
    name: SUITE,
    async run(): Promise<BenchRow[]> {
      let bin: GoBinaries;
      try {
        bin = buildGoBench(opts.log);
      } catch (err) {
        return [{ suite: SUITE, name: 'go-control-plane side by side', n: 0, ms: undefined, runs: 0, heapMB: undefined, detail: `skipped: ${err instanceof Error ? err.message : String(err)}` }];
      }
      const rows: BenchRow[] = [];
      const startup = new Set<number>();
      for (const size of opts.sizes) {
        for (const mode of opts.modes) {
          rows.push(...(await runSize(bin, size, mode, opts, !startup.has(size.backends))));
          startup.add(size.backends);
        }
      }
      return rows;
    },
  };
}
