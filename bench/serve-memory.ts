/**
 * Where serve's memory goes (issue 9): `switchyard serve --no-envoy --no-ai-extension` from dist/
 * on the xds-e2e bench's configuration (one file per Backend), with bench/serve-memory-probe.mjs
 * preloaded to report V8's heap per space, external memory and array buffers over IPC. Stages:
 * started (one client served and gone), a fleet of C Go load-client streams ACKed, one Backend
 * edited and ACKed by all; each before and after a full GC, with serve's CPU for connecting and
 * for the push.
 *
 *   npm run build && node --import tsx bench/serve-memory.ts [BACKENDS] [CLIENTS] [sotw|delta]
 *
 * SERVE_MEMORY_NODE_FLAGS adds Node flags to serve's command line (e.g. --max-semi-space-size=1);
 * SERVE_MEMORY_SNAPSHOT=FILE writes a heap snapshot of serve there at the end;
 * SERVE_MEMORY_HOLD=SECONDS keeps serve running that long at the end (to inspect /proc/PID);
 * SERVE_MEMORY_LOG=FILE keeps serve's log (SERVE_MEMORY_LOG_LEVEL=debug: with its memory component's compactions) (with --trace-gc in SERVE_MEMORY_NODE_FLAGS: what V8 did when);
 * SERVE_MEMORY_TIMELINE=SECONDS prints serve's RSS every second that long after the edits, before any forced GC;
 * SERVE_MEMORY_EDITS=N edits N Backends one after the other instead of one (what edits leave behind);
 * SERVE_MEMORY_ALLOCATIONS=PREFIX writes the bytes serve allocated per function (V8's sampling heap profiler,
 * garbage included) up to the start's end and up to the edit's ACK to PREFIX.start.txt and PREFIX.edit.txt;
 * SERVE_MEMORY_BREAKDOWN=1 prints the RSS breakdown (see breakdown) at every stage, not only the last.
 * Every stage prints serve's RSS and its peak so far (VmHWM).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { buildGoBench, markFleet, processUsage, startLoadClient, type LineChild } from './gcp.js';
import { ConfigDir, waitFor } from './xds-e2e.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const MB = 1024 * 1024;
const GATEWAY = 'bench/bench';

interface Stats {
  memory: NodeJS.MemoryUsage;
  heap: { total_heap_size: number; used_heap_size: number; malloced_memory: number; external_memory: number };
  spaces: { space_name: string; space_size: number; space_used_size: number; physical_space_size: number }[];
  cpuMs: number;
  execArgv: string[];
}

let requests = 0;

/** One request to the probe in serve (bench/serve-memory-probe.mjs): a file, then SIGUSR2. */
async function ask<T>(probeDir: string, pid: number, request: Record<string, unknown>): Promise<T> {
  const id = ++requests;
  writeFileSync(join(probeDir, 'request.json'), JSON.stringify({ id, ...request }));
  process.kill(pid, 'SIGUSR2');
  return waitFor(`serve to answer ${String(request['cmd'])}`, () => {
    try {
      const answer = JSON.parse(readFileSync(join(probeDir, 'response.json'), 'utf8')) as T & { id: number };
      return answer.id === id ? answer : undefined;
    } catch {
      return undefined;
    }
  });
}


/** Serve's peak RSS so far (VmHWM: since its restart with the memory settings, execve starting a new count). */
function peakRss(pid: number): number {
  return Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? Number.NaN) * 1024;
}

function print(stage: string, pid: number, s: Stats): void {
  const rss = processUsage(pid).rssBytes;
  const f = (b: number): string => (b / MB).toFixed(1);
  const spaces = s.spaces.filter((sp) => sp.physical_space_size > 0).map((sp) => `${sp.space_name.replace(/_space$/, '')} ${f(sp.physical_space_size)}/${f(sp.space_used_size)}`).join(', ');
  console.log(`${stage.padEnd(24)} RSS ${f(rss)} MB (peak ${f(peakRss(pid))}) | heap ${f(s.heap.total_heap_size)} (used ${f(s.heap.used_heap_size)}) | external ${f(s.memory.external)} (arrayBuffers ${f(s.memory.arrayBuffers)}) | malloced ${f(s.heap.malloced_memory)}`);
  console.log(`${''.padEnd(24)} spaces (physical/used MB): ${spaces}`);
  if (process.env['SERVE_MEMORY_BREAKDOWN'] === '1') console.log(`${''.padEnd(24)} ${breakdown(pid, s)}`);
}

/** RSS per mapping from /proc/PID/smaps: the Node binary's pages, malloc's [heap], anonymous (V8's heap and the rest). */
function residentByMapping(pid: number): string {
  const kb = new Map<string, number>();
  let name = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) name = mapping[1] === '' || mapping[1] === undefined ? '[anonymous]' : mapping[1];
    else if (line.startsWith('Rss:')) kb.set(name, (kb.get(name) ?? 0) + Number(line.split(/\s+/)[1]));
  }
  return [...kb].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([n, k]) => `${n} ${(k / 1024).toFixed(1)} MB`).join(', ');
}

/**
 * RSS split by what holds it, from /proc/PID/smaps and the probe's figures: the Node binary's
 * resident pages (machine code, read-only data such as the builtins' sources and ICU, data),
 * shared libraries, malloc's main arena ([heap]) and anonymous memory (V8's heap pages, further
 * malloc arenas and large mmap'd blocks, thread stacks). Native is RSS - V8's heap - external:
 * what neither V8 nor the array buffers account for (code pages, OpenSSL, nghttp2, glibc).
 */
function breakdown(pid: number, s: Stats): string {
  const exe = readlinkSync(`/proc/${pid}/exe`);
  const kb = { code: 0, rodata: 0, data: 0, libraries: 0, mallocHeap: 0, anonymous: 0, other: 0 };
  let key: keyof typeof kb = 'other';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) {
      const [, perms = '', name = ''] = mapping;
      if (name === exe) key = perms.includes('x') ? 'code' : perms.includes('w') ? 'data' : 'rodata';
      else if (name === '[heap]') key = 'mallocHeap';
      else if (name === '') key = 'anonymous';
      else if (name.startsWith('/')) key = 'libraries';
      else key = 'other';
    } else if (line.startsWith('Rss:')) kb[key] += Number(line.split(/\s+/)[1]);
  }
  const f = (b: number): string => (b / MB).toFixed(1);
  const k = (n: number): string => f(n * 1024);
  const rss = processUsage(pid).rssBytes;
  const v8Heap = s.spaces.reduce((sum, sp) => sum + sp.physical_space_size, 0);
  const threads = /^Threads:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '?';
  return `RSS ${f(rss)} MB = Node binary ${k(kb.code + kb.rodata + kb.data)} (code ${k(kb.code)}, read-only data ${k(kb.rodata)}, data ${k(kb.data)})` +
    ` + libraries ${k(kb.libraries)} + malloc heap ${k(kb.mallocHeap)} + anonymous ${k(kb.anonymous)} (V8 heap ${f(v8Heap)}, the rest ${f(kb.anonymous * 1024 - v8Heap)}) + other ${k(kb.other)};` +
    ` external ${f(s.memory.external)} (array buffers ${f(s.memory.arrayBuffers)}); native (RSS - V8 heap - external) ${f(rss - v8Heap - s.memory.external)}; ${threads} threads`;
}

async function main(): Promise<void> {
  const [backends = 1000, clients = 10] = process.argv.slice(2, 4).map(Number);
  const mode = (process.argv[4] ?? 'sotw') as 'sotw' | 'delta';
  const edits = Number(process.env['SERVE_MEMORY_EDITS'] ?? 1);
  if (!Number.isInteger(edits) || edits < 1) throw new Error(`SERVE_MEMORY_EDITS must be a positive integer, got "${process.env['SERVE_MEMORY_EDITS'] ?? ''}"`);
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('run npm run build first');
  const bin = buildGoBench((line) => console.error(line));
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-serve-memory-'));
  let serve: ChildProcess | undefined;
  const fleets: LineChild[] = [];
  try {
    const config = new ConfigDir(dir, backends);
    const logFile = join(dir, 'serve.log');
    const fd = openSync(logFile, 'w');
    const flags = (process.env['SERVE_MEMORY_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');
    const probeDir = join(dir, 'probe');
    mkdirSync(probeDir);
    serve = spawn(process.execPath, [
      ...flags, '--import', join(ROOT, 'bench', 'serve-memory-probe.mjs'), join(ROOT, 'bin', 'switchyard.js'),
      'serve', '--config', config.path, '--no-envoy', '--no-ai-extension', '--xds-port', '0', '--xds-host', '127.0.0.1',
      '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--state-dir', join(dir, 'state'),
      ...(process.env['SERVE_MEMORY_LOG_LEVEL'] ? ['--log-level', process.env['SERVE_MEMORY_LOG_LEVEL']] : []),
    ], { cwd: ROOT, stdio: ['ignore', fd, fd], env: { ...process.env, SERVE_MEMORY_PROBE: probeDir } });
    closeSync(fd);
    const pid = serve.pid ?? -1;
    const stats = (gc: boolean | 'compact'): Promise<Stats> => ask<Stats>(probeDir, pid, { cmd: 'stats', gc });
    const port = await waitFor('serve to listen', () => {
      const m = /"xdsPort":(\d+)/.exec(readFileSync(logFile, 'utf8'));
      return m ? Number(m[1]) : undefined;
    });
    const probe = startLoadClient(bin, { port, streams: 1, mode, gateway: GATEWAY, name: 'probe' });
    await probe.next((e) => e.event === 'ready', 120_000, 'the first client');
    await probe.stop();
    const first = await stats(false);
    const allocationsTo = process.env['SERVE_MEMORY_ALLOCATIONS'];
    if (allocationsTo !== undefined) await ask(probeDir, pid, { cmd: 'allocations', file: `${allocationsTo}.start.txt` });
    console.log(`serve's Node flags: ${first.execArgv.filter((a) => !a.includes('serve-memory-probe')).join(' ')}; ${['MALLOC_ARENA_MAX', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_MMAP_THRESHOLD_'].map((name) => `${name} ${new RegExp(`(?:^|\\0)${name}=([^\\0]*)`).exec(readFileSync(`/proc/${pid}/environ`, 'utf8'))?.[1] ?? 'unset'}`).join(', ')}`);
    print('started', pid, first);
    const started = await stats(true);
    print('started, after GC', pid, started);

    const fleet = startLoadClient(bin, { port, streams: clients, mode, gateway: GATEWAY, name: 'fleet' });
    fleets.push(fleet);
    await fleet.next((e) => e.event === 'ready', 120_000, 'the fleet');
    const connected = await stats(false);
    print(`${clients} clients`, pid, connected);
    const connectedGc = await stats(true);
    print(`${clients} clients, after GC`, pid, connectedGc);

    // Each edit changes another Backend; every 10th, RSS and the heap after a full GC show what edits leave behind.
    for (let k = 1; k <= edits; k++) {
      await markFleet(fleet, `e${k}`, 'cds', 120_000);
      config.edit((Math.floor(backends / 2) + (k - 1) * 37) % backends, k + 1);
      await fleet.next((e) => e.event === 'done' && e['id'] === `e${k}`, 120_000, `edit ${k}`);
      if (k % 10 === 0 && k < edits) {
        const s = await stats(true);
        console.log(`after ${k} edits, after GC: RSS ${(processUsage(pid).rssBytes / MB).toFixed(1)} MB | heap used ${(s.heap.used_heap_size / MB).toFixed(1)} | array buffers ${(s.memory.arrayBuffers / MB).toFixed(1)}`);
      }
    }
    const pushed = await stats(false);
    if (allocationsTo !== undefined) await ask(probeDir, pid, { cmd: 'allocations', file: `${allocationsTo}.edit.txt` });
    print(`${edits === 1 ? 'edit' : `${edits} edits`} ACKed`, pid, pushed);
    const timeline = Number(process.env['SERVE_MEMORY_TIMELINE'] ?? 0);
    for (let t = 1; t <= timeline; t++) {
      await new Promise((r) => setTimeout(r, 1000));
      console.log(`${t} s after the edits: RSS ${(processUsage(pid).rssBytes / MB).toFixed(1)} MB (peak ${(peakRss(pid) / MB).toFixed(1)})`);
    }
    const pushedGc = await stats(true);
    print(`${edits === 1 ? 'edit' : `${edits} edits`} ACKed, after GC`, pid, pushedGc);
    const compacted = await stats('compact');
    print('after compacting GC', pid, compacted);
    console.log(`serve's resident memory by mapping: ${residentByMapping(pid)}`);
    console.log(`breakdown after the compacting GC: ${breakdown(pid, compacted)}`);
    const hold = Number(process.env['SERVE_MEMORY_HOLD'] ?? 0);
    if (hold > 0) {
      console.log(`serve (pid ${pid}) keeps running for ${hold} s`);
      await new Promise((r) => setTimeout(r, hold * 1000));
    }
    const snapshot = process.env['SERVE_MEMORY_SNAPSHOT'];
    if (snapshot !== undefined) {
      await ask(probeDir, pid, { cmd: 'snapshot', file: snapshot });
      console.log(`heap snapshot: ${snapshot}`);
    }
    console.log(`serve CPU: start ${started.cpuMs.toFixed(0)} ms, connect ${clients} ${(connected.cpuMs - started.cpuMs).toFixed(0)} ms, ${edits === 1 ? 'edit' : `${edits} edits`}->ACKed ${(pushed.cpuMs - connectedGc.cpuMs).toFixed(0)} ms`);
  } finally {
    const keepLog = process.env['SERVE_MEMORY_LOG'];
    if (keepLog !== undefined && existsSync(join(dir, 'serve.log'))) writeFileSync(keepLog, readFileSync(join(dir, 'serve.log')));
    for (const f of fleets) await f.stop();
    if (serve && serve.exitCode === null) {
      const exited = new Promise((r) => serve?.once('exit', r));
      serve.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
