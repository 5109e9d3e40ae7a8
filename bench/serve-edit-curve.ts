/**
 * Serve's cost per edit along a fleet's life: `switchyard serve` (file mode, no Envoy) with C
 * streams of the Go load client connected, then N edits one after another (xds-e2e's edit: one
 * Backend's outlier detection, Clusters change only). For each edit: wall time to every stream
 * ACKed, and serve's CPU from /proc/<pid>/task/<tid>/schedstat (nanoseconds, not 10 ms ticks),
 * for the main thread and all threads, plus each other thread group by name (V8 workers: compile
 * and GC; libuv: file reads). xds-e2e times only a fleet's first few edits; this shows whether
 * they cost more than later ones.
 *
 *   node --import tsx bench/serve-edit-curve.ts [EDITS=20] [BACKENDS=50] [CLIENTS=1000] [MODE=delta]
 *
 * Serve runs from dist/ with BENCH_E2E_BUILT=1 (as xds-e2e), with BENCH_E2E_SERVE_NODE_ARGS.
 * Prints a table and writes JSON to BENCH_CURVE_JSON when set.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildGoBench, markFleet, sinceChange, startLoadClient, type GoEvent } from './gcp.js';
import { ConfigDir, Serve, settle } from './xds-e2e.js';
import { median } from './suite.js';

interface ThreadTimes {
  main: number;
  total: number;
  byName: Map<string, number>;
}

/** CPU ns per thread of `pid`, main thread apart, the rest summed by thread name. */
function threadTimes(pid: number): ThreadTimes {
  const byName = new Map<string, number>();
  let main = 0;
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let ns: number;
    let name: string;
    try {
      ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
    } catch {
      continue; // a thread that ended meanwhile
    }
    total += ns;
    if (tid === String(pid)) main = ns;
    else byName.set(name, (byName.get(name) ?? 0) + ns);
  }
  return { main, total, byName };
}

interface EditFigures {
  edit: number;
  ms: number;
  mainMs: number;
  totalMs: number;
  others: Record<string, number>;
}

async function main(): Promise<void> {
  const [edits = 20, backends = 50, clients = 1000] = process.argv.slice(2, 5).map(Number);
  const mode = (process.argv[5] ?? 'delta') as 'sotw' | 'delta';
  const bin = buildGoBench((l) => console.error(l));
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-edit-curve-'));
  const config = new ConfigDir(dir, backends);
  const serve = Serve.start(config.path, dir);
  const rows: EditFigures[] = [];
  try {
    const ports = await serve.ports(120_000);
    const fleet = startLoadClient(bin, { port: ports.xds, streams: clients, mode, gateway: 'bench/bench', name: 'fleet', window: 268_435_456 });
    try {
      const ready: GoEvent = await fleet.next((e) => e.event === 'ready', 180_000, 'the fleet');
      console.error(`fleet of ${clients} ${mode} streams ready after ${Number(ready['readyMs']).toFixed(0)} ms; load average ${loadavg()[0]?.toFixed(2)}`);
      for (let edit = 1; edit <= edits; edit++) {
        const index = (edit * 7919) % backends;
        await settle([serve.pid, fleet.child.pid ?? -1]);
        const write = config.prepareEdit(index, edit);
        const id = `e-${edit}`;
        const markedAt = await markFleet(fleet, id, 'cds', 60_000);
        const before = threadTimes(serve.pid);
        const changedAt = Date.now();
        write();
        const done = sinceChange(await fleet.next((e) => e.event === 'done' && e['id'] === id, 60_000, `edit ${edit}`), markedAt, changedAt);
        // The ACKs' bookkeeping (status, ledger) ends after the last ACK: count it to the edit.
        await settle([serve.pid]);
        const after = threadTimes(serve.pid);
        const others: Record<string, number> = {};
        for (const [name, ns] of after.byName) {
          const d = (ns - (before.byName.get(name) ?? 0)) / 1e6;
          if (d >= 0.05) others[name] = Number(d.toFixed(2));
        }
        const row = { edit, ms: Number(done['ms']), mainMs: (after.main - before.main) / 1e6, totalMs: (after.total - before.total) / 1e6, others };
        rows.push(row);
        console.log(`edit ${String(edit).padStart(2)}: ${row.ms.toFixed(0).padStart(4)} ms, serve CPU main ${row.mainMs.toFixed(1).padStart(6)} total ${row.totalMs.toFixed(1).padStart(6)} ms; ${Object.entries(others).map(([n, v]) => `${n} ${v}`).join(', ')}`);
      }
    } finally {
      await fleet.stop();
    }
  } finally {
    await serve.stop();
    if (process.env['BENCH_CURVE_KEEP_LOG']) writeFileSync(process.env['BENCH_CURVE_KEEP_LOG'], readFileSync(join(dir, 'serve.log')));
    rmSync(dir, { recursive: true, force: true });
  }
  const med = (from: number, to: number, pick: (r: EditFigures) => number): string => median(rows.filter((r) => r.edit >= from && r.edit <= to).map(pick)).toFixed(1);
  const late = edits >= 16 ? `; edits 16-${edits} wall ${med(16, edits, (r) => r.ms)} main ${med(16, edits, (r) => r.mainMs)} total ${med(16, edits, (r) => r.totalMs)}` : '';
  console.log(`medians: edits 1-5 wall ${med(1, 5, (r) => r.ms)} main ${med(1, 5, (r) => r.mainMs)} total ${med(1, 5, (r) => r.totalMs)}${late}; load ${loadavg()[0]?.toFixed(2)}`);
  if (process.env['BENCH_CURVE_JSON']) writeFileSync(process.env['BENCH_CURVE_JSON'], JSON.stringify(rows, null, 2));
}

await main();
