/**
 * Issue 9's two file-mode rows at 10,000 Backends, alone: `switchyard serve --no-envoy
 * --no-ai-extension` (a process of its own, as xds-e2e runs it) on the xds-e2e configuration
 * (one file per Backend), timed from the spawn to the first response on a Go load-client stream
 * started as soon as serve logs its ports; then E edits of one Backend's file, each timed from
 * the write (after the load client noted the mark) to the first byte of the changed CDS response on a one-stream
 * fleet, with serve's CPU (from /proc) for the start and for each edit.
 *
 *   node --import tsx bench/serve-start.ts [BACKENDS=10000] [EDITS=5] [sotw|delta]
 *
 * SERVE_START_PROFILE=DIR writes serve's CPU profile there (node --cpu-prof) when it stops;
 * BENCH_E2E_BUILT=1 runs serve from dist/ as users run it (by default from src under tsx);
 * BENCH_E2E_WINDOW as in xds-e2e (the load client's receive window; Envoy's by default).
 * SERVE_START_NODE_FLAGS: more flags for serve's Node (say --trace-gc); SERVE_START_KEEP_LOG=FILE
 * keeps serve's log (with what those flags print) there, BENCH_E2E_SERVE_LOG_LEVEL its level. With a profile, each edit prints its
 * window (`window START END`, monotonic µs, the clock of V8's profiles: write -> first byte).
 */
import { spawn } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildGoBench, markFleet, processUsage, sinceChange, startLoadClient } from './gcp.js';
import { ConfigDir, waitFor, windowFromEnv } from './xds-e2e.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const GATEWAY = 'bench/bench';


async function main(): Promise<void> {
  const backends = Number(process.argv[2] ?? 10_000);
  const edits = Number(process.argv[3] ?? 5);
  const mode = (process.argv[4] ?? 'sotw') as 'sotw' | 'delta';
  const bin = buildGoBench((line) => console.error(line));
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-serve-start-'));
  const config = new ConfigDir(dir, backends);
  const built = process.env['BENCH_E2E_BUILT'] === '1';
  if (built && !existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) throw new Error('BENCH_E2E_BUILT=1 needs dist/ (npm run build)');
  const profileDir = process.env['SERVE_START_PROFILE'];
  const flags = [
    ...(profileDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : []),
    ...(process.env['SERVE_START_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== ''),
  ];
  const keepLog = process.env['SERVE_START_KEEP_LOG'];
  const entry = built ? [join(ROOT, 'bin', 'switchyard.js')] : ['--import', 'tsx', 'src/cli/main.ts'];
  const logFile = join(dir, 'serve.log');
  const fd = openSync(logFile, 'w');
  const startedAt = process.hrtime.bigint();
  const spawnedAt = Date.now();
  const serve = spawn(process.execPath, [
    ...flags, ...entry, 'serve', '--config', config.path, '--no-envoy', '--no-ai-extension',
    '--xds-port', '0', '--xds-host', '127.0.0.1', '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--state-dir', join(dir, 'state'),
    ...(process.env['BENCH_E2E_SERVE_LOG_LEVEL'] ? ['--log-level', process.env['BENCH_E2E_SERVE_LOG_LEVEL']] : []),
  ], { cwd: ROOT, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise((r) => serve.once('exit', r));
  const pid = serve.pid ?? -1;
  try {
    const port = await waitFor('serve to listen', () => {
      if (serve.exitCode !== null) throw new Error(`serve exited (code ${serve.exitCode}); see ${logFile}`);
      const m = /"xdsPort":(\d+)/.exec(readFileSync(logFile, 'utf8'));
      return m ? Number(m[1]) : undefined;
    }, 180_000);
    const probeStart = process.hrtime.bigint();
    const listeningMs = Number(probeStart - startedAt) / 1e6;
    // Envoy's receive window unless BENCH_E2E_WINDOW says otherwise, as in xds-e2e.
    const fleet = startLoadClient(bin, { port, streams: 1, mode, gateway: GATEWAY, name: 'probe', ...windowFromEnv(process.env['BENCH_E2E_WINDOW']) });
    try {
      const ready = await fleet.next((e) => e.event === 'ready', 180_000, 'the first client');
      const firstMs = listeningMs + Number(ready['firstResponseMinMs']);
      const startCpu = processUsage(pid).cpuMs;
      console.log(`${backends} Backends, one file each (${built ? 'dist/' : 'src under tsx'}, ${mode}): serve start -> listening ${listeningMs.toFixed(0)} ms, -> first response ${firstMs.toFixed(0)} ms, -> initial configuration ACKed ${(listeningMs + Number(ready['readyMs'])).toFixed(0)} ms; serve CPU by then ${startCpu.toFixed(0)} ms`);
      // serve's own milestones (pino's time), for finding where the start goes.
      const milestones = readFileSync(logFile, 'utf8').split('\n').flatMap((line) => {
        const m = /"time":(\d+).*"msg":"([^"]*)"/.exec(line);
        return m && /listening|loaded|translated|serving|statuses|connected/.test(m[2] ?? '') ? [`${m[2]} +${Number(m[1]) - spawnedAt} ms`] : [];
      });
      console.log(`  serve's log: ${milestones.slice(0, 8).join('; ')}`);
      // The epoch of the spawn, to put the first response among the kept log's lines (their "time").
      if (keepLog !== undefined) console.log(`  spawned at ${spawnedAt} (epoch ms): first response at ${spawnedAt + Math.round(firstMs)}`);
      const samples: number[] = [];
      for (let i = 0; i < edits; i++) {
        // Apart enough that the previous edit's status pass and collections are over, as a user's next save would be.
        await new Promise((r) => setTimeout(r, 1_000));
        const index = (7 + i * 13) % backends;
        const before = processUsage(pid).cpuMs;
        const markedAt = await markFleet(fleet, `e${i}`, 'cds', 180_000);
        const write = config.prepareEdit(index, i + 1);
        const changedAt = Date.now();
        const writtenUs = process.hrtime.bigint() / 1000n;
        write();
        const done = sinceChange(await fleet.next((e) => e.event === 'done' && e['id'] === `e${i}`, 180_000, `edit ${i + 1}`), markedAt, changedAt);
        const cpu = processUsage(pid).cpuMs - before;
        samples.push(Number(done['firstMs']));
        console.log(`edit ${i + 1} (chat-${index}): -> first byte ${Number(done['firstMs']).toFixed(1)} ms, -> ACKed ${Number(done['ms']).toFixed(1)} ms (serve ${cpu.toFixed(0)} CPU-ms, 10 ms ticks)`);
        // Monotonic microseconds, the clock of V8's CPU profiles: from the write to its first byte, in serve's profile.
        if (profileDir !== undefined) console.log(`window ${writtenUs} ${writtenUs + BigInt(Math.round(Number(done['firstMs']) * 1000))}`);
        if (keepLog !== undefined) console.log(`  written ${changedAt - spawnedAt} ms after the spawn`);
      }
    } finally {
      await fleet.stop();
    }
  } finally {
    serve.kill('SIGTERM');
    await exited;
    if (keepLog !== undefined) copyFileSync(logFile, keepLog);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err: unknown) => { console.error(err); process.exit(1); });
