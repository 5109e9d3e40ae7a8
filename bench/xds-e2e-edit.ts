/**
 * One Backend edited again and again against one serve and a fleet of C streams, for finding
 * where the xds-e2e change row's time and CPU go without go-control-plane beside it: per edit,
 * the time from the write until every stream ACKed the new Clusters, the first stream's first
 * byte, and serve's and the load client's CPU. Prints the median and the per-edit rows. Serve's
 * CPU is given twice: up to the last ACK (as the suite's row counts it) and until serve is idle
 * again, the edit's whole cost: work moved after the last ACK (the ACKs read and handled once
 * the fan-out is done) shows in the first and not in the second.
 *
 * EDIT_SERVE_PROFILE=DIR: serve writes a V8 CPU profile into DIR when it stops (the fleet's
 * connection is in it too: compare against a profile with 0 edits).
 * EDIT_PRINT_WINDOWS=1: prints each edit's window too (for a profiler attached from outside, `perf record -k CLOCK_MONOTONIC`).
 * EDIT_KEEP_LOG=FILE: serve's log is copied there (BENCH_E2E_SERVE_LOG_LEVEL=debug for every push and ACK in it).
 * EDIT_TIMEOUT_S: how long an edit may take to reach every stream (120). EDIT_SIGNAL_SERVE=1: serve gets SIGUSR2 once the fleet is
 * settled before the first edit and again after the last (a preloaded probe can start and stop a profile on it).
 * BENCH_E2E_BUILT=1 and BENCH_E2E_WINDOW as in the suite.
 *
 *   node --import tsx bench/xds-e2e-edit.ts [backends=50] [clients=1000] [sotw|delta] [edits=10]
 */
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGoBench, markFleet, processUsage, sinceChange, startLoadClient } from './gcp.js';
import { ConfigDir, Serve, settle, windowFromEnv } from './xds-e2e.js';

const backends = Number(process.argv[2] ?? 50);
const clients = Number(process.argv[3] ?? 1000);
const mode = process.argv[4] === 'sotw' ? 'sotw' : 'delta';
const edits = Number(process.argv[5] ?? 10);
const window = windowFromEnv(process.env['BENCH_E2E_WINDOW']);
const EDIT_TIMEOUT_MS = Number(process.env['EDIT_TIMEOUT_S'] ?? 120) * 1000;

const bin = buildGoBench((line) => console.error(line));
const dir = mkdtempSync(join(tmpdir(), 'switchyard-edit-'));
const serveProfile = process.env['EDIT_SERVE_PROFILE'];
const config = new ConfigDir(dir, backends);
const serve = Serve.start(config.path, dir, serveProfile);
/**
 * A process's CPU in ms to the nanosecond: the run time the scheduler gives each of its threads
 * (/proc/PID/task/TID/schedstat), where /proc/PID/stat counts 10 ms ticks, too coarse for an
 * edit that costs serve 30-60 ms. NaN where the kernel has no schedstat.
 */
function schedCpuMs(pid: number): number {
  try {
    let ns = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    return ns / 1e6;
  } catch {
    return Number.NaN;
  }
}
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
try {
  const ports = await serve.ports(300_000);
  const fleet = startLoadClient(bin, { port: ports.xds, streams: clients, mode, gateway: 'bench/bench', name: 'edit', ...window });
  try {
    await fleet.next((e) => e.event === 'ready', 600_000, 'every stream to ACK its initial configuration');
    console.log(`${backends} Backends, ${clients} ${mode} streams, ${edits} edits (load ${(loadavg()[0] ?? 0).toFixed(1)})`);
    const rows: { ms: number; firstMs: number; serveCpuMs: number; clientCpuMs: number; wholeCpuMs: number; serveSchedMs: number; wholeSchedMs: number }[] = [];
    // Serve's own work after a fleet connected (its push rehearsal, src/xds/push-rehearsal.ts,
    // begins once it has read no request for 100 ms) is over before the first edit, as it is for
    // an edit made a second or more after the Envoys connected.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    for (let edit = 1; edit <= edits; edit++) {
      await settle([serve.pid, fleet.child.pid ?? -1]);
      if (edit === 1 && process.env['EDIT_SIGNAL_SERVE'] === '1') process.kill(serve.pid, 'SIGUSR2');
      const id = `e${edit}`;
      const markedAt = await markFleet(fleet, id, 'cds', EDIT_TIMEOUT_MS);
      const write = config.prepareEdit(edit % backends, edit);
      const serveBefore = processUsage(serve.pid).cpuMs;
      const serveSchedBefore = schedCpuMs(serve.pid);
      const clientBefore = processUsage(fleet.child.pid ?? -1).cpuMs;
      const startedUs = process.hrtime.bigint() / 1000n;
      const writtenAt = Date.now();
      if (process.env['EDIT_KEEP_LOG'] !== undefined) console.log(`edit ${edit} written at ${writtenAt}`);
      write();
      const done = sinceChange(await fleet.next((e) => e.event === 'done' && e['id'] === id, EDIT_TIMEOUT_MS, `every stream to ACK edit ${edit}`).catch(async (err: unknown) => {
        // Which streams lack the edit and what they hold: a server that does not deliver told from a client that does not notice.
        fleet.send(`status ${id}`);
        const status = await fleet.next((e) => e.event === 'status' && e['id'] === id, 10_000, 'a status').catch(() => undefined);
        console.log(`edit ${edit} written at ${writtenAt} timed out: ${JSON.stringify(status)}`);
        throw err;
      }), markedAt, writtenAt);
      const serveCpuMs = processUsage(serve.pid).cpuMs - serveBefore;
      const serveSchedMs = schedCpuMs(serve.pid) - serveSchedBefore;
      const clientCpuMs = processUsage(fleet.child.pid ?? -1).cpuMs - clientBefore;
      // Until idle: settle() returns after a quiet window, whose few ms of idle CPU every edit counts alike.
      await settle([serve.pid]);
      const row = {
        ms: Number(done['ms']), firstMs: Number(done['firstMs']), serveCpuMs, clientCpuMs, wholeCpuMs: processUsage(serve.pid).cpuMs - serveBefore,
        serveSchedMs, wholeSchedMs: schedCpuMs(serve.pid) - serveSchedBefore,
      };
      rows.push(row);
      // Monotonic microseconds, the clock of V8's CPU profiles: the edit's window in serve's profile.
      if (serveProfile !== undefined || process.env['EDIT_PRINT_WINDOWS'] === '1') console.log(`window ${startedUs} ${process.hrtime.bigint() / 1000n}`);
      console.log(`edit ${edit} (load ${(loadavg()[0] ?? 0).toFixed(1)}): all ACKed ${row.ms.toFixed(0)} ms, first byte ${row.firstMs.toFixed(0)} ms, CPU serve ${row.serveCpuMs.toFixed(0)} ms (until idle ${row.wholeCpuMs.toFixed(0)} ms; by schedstat ${row.serveSchedMs.toFixed(1)}, until idle ${row.wholeSchedMs.toFixed(1)}), load client ${row.clientCpuMs.toFixed(0)} ms`);
    }
    if (process.env['EDIT_SIGNAL_SERVE'] === '1') {
      process.kill(serve.pid, 'SIGUSR2');
      await new Promise((resolve) => setTimeout(resolve, 3_000));
    }
    const mean = (values: number[]): number => values.reduce((sum, v) => sum + v, 0) / values.length;
    console.log(
      `mean: CPU serve ${mean(rows.map((r) => r.serveCpuMs)).toFixed(1)} ms (until idle ${mean(rows.map((r) => r.wholeCpuMs)).toFixed(1)} ms; by schedstat ${mean(rows.map((r) => r.serveSchedMs)).toFixed(1)}, until idle ${mean(rows.map((r) => r.wholeSchedMs)).toFixed(1)}), load client ${mean(rows.map((r) => r.clientCpuMs)).toFixed(1)} ms`,
    );
    console.log(
      `median: all ACKed ${median(rows.map((r) => r.ms)).toFixed(0)} ms, first byte ${median(rows.map((r) => r.firstMs)).toFixed(0)} ms, ` +
        `CPU serve ${median(rows.map((r) => r.serveCpuMs)).toFixed(0)} ms, load client ${median(rows.map((r) => r.clientCpuMs)).toFixed(0)} ms`,
    );
  } finally {
    await fleet.stop();
  }
} finally {
  await serve.stop();
  if (process.env['EDIT_KEEP_LOG'] !== undefined) copyFileSync(join(dir, 'serve.log'), process.env['EDIT_KEEP_LOG']);
  rmSync(dir, { recursive: true, force: true });
}
