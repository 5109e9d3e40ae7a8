/**
 * The Go half of the end-to-end xDS bench (bench/gcp/): builds go-control-plane's server and
 * the Go ADS load client once per source hash into a cache outside the repository, and drives
 * them as child processes that speak one JSON object a line on stdout.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const GO_DIR = join(dirname(fileURLToPath(import.meta.url)), 'gcp');

export interface GoBinaries {
  server: string;
  loadclient: string;
}

function sources(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...sources(path));
    else if (entry.name.endsWith('.go') || entry.name === 'go.mod' || entry.name === 'go.sum') found.push(path);
  }
  return found.sort();
}

/** Where the binaries of this exact source live: a rebuild happens only when go.mod, go.sum or a .go file changed. */
export function goBinaryDir(): string {
  const hash = createHash('sha256');
  for (const file of sources(GO_DIR)) {
    hash.update(relative(GO_DIR, file));
    hash.update('\0');
    hash.update(readFileSync(file));
  }
  const cache = process.env['SWITCHYARD_CACHE'] ?? join(homedir(), '.cache', 'switchyard');
  return join(cache, `bench-gcp-${hash.digest('hex').slice(0, 16)}`);
}

/** Builds bench/gcp with the machine's Go (modules from the Go module proxy), or reuses the cached build. */
export function buildGoBench(log: (line: string) => void): GoBinaries {
  const dir = goBinaryDir();
  const binaries = { server: join(dir, 'server'), loadclient: join(dir, 'loadclient') };
  if (existsSync(binaries.server) && existsSync(binaries.loadclient)) return binaries;
  log(`gcp: building go-control-plane server and load client into ${dir} (a minute or more the first time)`);
  // Built beside the final directory and renamed into place, so a half-built cache is never reused.
  const partial = `${dir}.partial-${process.pid}`;
  mkdirSync(partial, { recursive: true });
  const built = spawnSync('go', ['build', '-trimpath', '-o', partial, './server', './loadclient'], {
    cwd: GO_DIR, stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, GOFLAGS: '-mod=readonly -buildvcs=false' },
  });
  if (built.error !== undefined || built.status !== 0) {
    rmSync(partial, { recursive: true, force: true });
    const why = built.error?.message ?? `exit ${String(built.status)}`;
    throw new Error(`building bench/gcp failed (${why}): it needs Go (the version in bench/gcp/go.mod or newer) on PATH and the Go module proxy (go env GOPROXY)`);
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(partial, dir);
  return binaries;
}

export type GoEvent = Record<string, unknown> & { event: string };

/** A child that writes one JSON event a line on stdout and takes commands on stdin. */
export class LineChild {
  private readonly backlog: GoEvent[] = [];
  private readonly waiters: { match: (e: GoEvent) => boolean; resolve: (e: GoEvent) => void }[] = [];
  readonly exited: Promise<number | null>;

  constructor(readonly name: string, readonly child: ChildProcess) {
    if (child.stdout === null) throw new Error(`${name}: started without a stdout pipe`);
    createInterface({ input: child.stdout }).on('line', (line) => {
      let event: GoEvent;
      try {
        event = JSON.parse(line) as GoEvent;
      } catch {
        process.stderr.write(`[${name}] ${line}\n`);
        return;
      }
      const i = this.waiters.findIndex((w) => w.match(event));
      if (i >= 0) this.waiters.splice(i, 1)[0]?.resolve(event);
      else this.backlog.push(event);
    });
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  send(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }

  /** The next event `match` accepts (an earlier unclaimed one first); rejects after `ms` or when the process exits. */
  next(match: (e: GoEvent) => boolean, ms: number, what: string): Promise<GoEvent> {
    const i = this.backlog.findIndex(match);
    if (i >= 0) return Promise.resolve(this.backlog.splice(i, 1)[0] as GoEvent);
    return new Promise<GoEvent>((resolve, reject) => {
      const waiter = { match, resolve: (e: GoEvent) => { clearTimeout(timer); resolve(e); } };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Timeout(`${this.name}: timed out after ${(ms / 1000).toFixed(0)} s waiting for ${what}`));
      }, ms);
      this.waiters.push(waiter);
      void this.exited.then((code) => {
        if (!this.waiters.includes(waiter)) return;
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (code ${String(code)}) while waiting for ${what}`));
      });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.send('quit');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * Sends `mark ID TYPES` and waits until the load client has noted what every stream holds: only
 * then may the change be made. A change sent right after the mark (as the bench did) could reach
 * streams before the client read the mark, under load; it was then in their baseline and they
 * waited for another change that never came (a 1,000 x 10 round in which no stream "got" the
 * edit, 917 of 1,000 streams at 50 x 1,000: serve's log showed every stream sent and ACKing it).
 * Returns the mark's time (wall clock, µs) for sinceChange().
 */
export async function markFleet(fleet: LineChild, id: string, types: string, ms: number): Promise<number> {
  fleet.send(`mark ${id} ${types}`);
  const marked = await fleet.next((e) => (e.event === 'marked' && e['id'] === id) || e.event === 'error', ms, `the load client to note mark ${id}`);
  if (marked.event !== 'marked') throw new Error(`${fleet.name}: mark ${id}: ${String(marked['message'])}`);
  return Number(marked['atUnixUs']);
}

/**
 * A `done` event's times (ms, firstMs, p50Ms: from the mark) from `changedAtMs` (Date.now() when
 * the change was made) instead: the mark's round trip to the load client is not the change's time.
 */
export function sinceChange(done: GoEvent, markedAtUs: number, changedAtMs: number): GoEvent {
  const offsetMs = Math.max(0, changedAtMs - markedAtUs / 1000);
  const shift = (key: string): number => Math.max(0, Number(done[key]) - offsetMs);
  return { ...done, ms: shift('ms'), firstMs: shift('firstMs'), p50Ms: shift('p50Ms') };
}

/** A wait that ran out of time: the row reports it instead of failing the bench. */
export class Timeout extends Error {}

export async function startGoServer(bin: GoBinaries, resources: string, timeoutMs: number): Promise<{ server: LineChild; port: number }> {
  const server = new LineChild('gcp-server', spawn(bin.server, ['-resources', resources], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const ready = await server.next((e) => e.event === 'ready' || e.event === 'error', timeoutMs, 'go-control-plane to load and listen');
  if (ready.event !== 'ready') throw new Error(`gcp-server: ${String(ready['message'])}`);
  return { server, port: Number(ready['port']) };
}

export interface LoadClientOptions {
  port: number;
  streams: number;
  mode: 'sotw' | 'delta';
  /** node.metadata["switchyard.dev/gateway"] of every stream. */
  gateway?: string;
  name: string;
  /** Fixed HTTP/2 receive window per stream and connection, bytes (Envoy's default: 256 MiB); gRPC's growing 64 KiB without. */
  window?: number;
  /** Write the load client's CPU profile (pprof) to this file when it quits. */
  cpuProfile?: string;
}

export function startLoadClient(bin: GoBinaries, opts: LoadClientOptions): LineChild {
  const args = ['-addr', `127.0.0.1:${opts.port}`, '-n', String(opts.streams), '-mode', opts.mode, '-name', opts.name];
  if (opts.gateway !== undefined) args.push('-gateway', opts.gateway);
  if (opts.window !== undefined) args.push('-window', String(opts.window));
  if (opts.cpuProfile !== undefined) args.push('-cpuprofile', opts.cpuProfile);
  const readBuffer = process.env['BENCH_LOADCLIENT_READBUFFER'];
  if (readBuffer !== undefined && readBuffer !== '') args.push('-readbuffer', readBuffer);
  // Every response on stderr: for finding out why a wait does not end.
  if (process.env['BENCH_LOADCLIENT_TRACE'] === '1') args.push('-v');
  return new LineChild(opts.name, spawn(bin.loadclient, args, { stdio: ['pipe', 'pipe', 'inherit'] }));
}

/** CPU ms (user + system) and RSS of a process, from /proc. */
export function processUsage(pid: number): { cpuMs: number; rssBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return { cpuMs: (ticks * 1000) / clockTicks(), rssBytes: rssKb * 1024 };
}

let ticksPerSecond: number | undefined;
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    const out = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    ticksPerSecond = Number(out.stdout.trim()) || 100;
  }
  return ticksPerSecond;
}
