/**
 * `npm run bench`: runs the benchmark suites, prints one table and writes the rows as JSON to
 * bench/results/<timestamp>.json and bench/results/latest.json. Targets are reported as
 * PASS/FAIL; a missed target does not fail the process (benchmarks are not tests).
 *
 *   npm run bench                          every suite, default sizes
 *   npm run bench -- --suite translate     one suite
 *   npm run bench -- --sizes 1000,5000     translation sizes
 *   npm run bench -- --runs 5              timed runs per size (median reported)
 *   npm run bench -- --suite xds-fanout --clients 1,100,1000 --fanout-backends 50
 *   BENCH_SLOW_SECONDS=15 npm run bench -- --suite xds-slow-clients
 *   npm run bench -- --suite envoy-acceptance --acceptance-runs 500 --seed 1
 *   BENCH_E2E_SIZES=50x1000,1000x100 BENCH_E2E_MODES=sotw npm run bench -- --suite xds-e2e
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runAiExtensionBench } from './ai-extension.js';
import { aiFirstTokenSuite } from './ai-first-token.js';
import { configLoadSuite } from './config-load.js';
import { envoyAcceptanceSuite } from './envoy-acceptance.js';
import type { BenchRow, BenchSuite } from './suite.js';
import { translateSuite } from './translate.js';
import { xdsFanoutSuite } from './xds-fanout.js';
import { e2eOptionsFromEnv, xdsE2eSuite } from './xds-e2e.js';
import { slowClientsOptionsFromEnv, xdsSlowClientsSuite } from './xds-slow-clients.js';

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'results');

function positiveInts(text: string, flag: string): number[] {
  const values = text.split(',').map((s) => Number(s.trim()));
  if (values.length === 0 || values.some((v) => !Number.isInteger(v) || v <= 0)) {
    throw new Error(`${flag} takes positive integers separated by commas, got "${text}"`);
  }
  return values;
}

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

interface SuiteOptions {
  sizes: number[];
  runs: number;
  clients: number[];
  fanoutBackends: number;
  acceptanceRuns: number;
  seed: number;
}

/** Every suite, in the order they run. */
function suites(opts: SuiteOptions): BenchSuite[] {
  return [
    translateSuite({ sizes: opts.sizes, runs: opts.runs, log }),
    xdsFanoutSuite({ clients: opts.clients, backends: opts.fanoutBackends, runs: opts.runs, log }),
    // Durations and sizes from BENCH_SLOW_* (bench/xds-slow-clients.ts).
    xdsSlowClientsSuite(slowClientsOptionsFromEnv(log)),
    // Size from BENCH_CONFIG_BACKENDS (bench/config-load.ts).
    configLoadSuite(log),
    // The AI extension's added latency (bench/ai-extension.ts, owned with the extension).
    { name: 'ai-extension', run: () => runAiExtensionBench({ log }) },
    // Issue 11's first-token failover bound, through the real Envoy (bench/ai-first-token.ts).
    aiFirstTokenSuite(log),
    envoyAcceptanceSuite({ runs: opts.acceptanceRuns, batch: 50, seed: opts.seed, log }),
    // Side by side with go-control-plane; sizes, modes, rounds from BENCH_E2E_* (bench/xds-e2e.ts).
    xdsE2eSuite(e2eOptionsFromEnv(log)),
  ];
}

function table(rows: readonly BenchRow[]): string {
  const header = ['suite', 'row', 'N', 'wall ms', 'CPU ms', 'heap MB', 'target', 'result', 'detail'];
  const body = rows.map((r) => [
    r.suite,
    r.name,
    r.n.toLocaleString('en-US'),
    r.ms === undefined ? '-' : r.ms.toFixed(1),
    r.cpuMs === undefined ? '-' : r.cpuMs.toFixed(1),
    r.heapMB === undefined ? '-' : r.heapMB.toFixed(1),
    r.target ?? '',
    r.verdict ?? '',
    r.detail,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((cells) => (cells[i] ?? '').length)));
  const numeric = new Set([2, 3, 4, 5]);
  const line = (cells: string[]) => cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      suite: { type: 'string' },
      sizes: { type: 'string' },
      runs: { type: 'string' },
      clients: { type: 'string' },
      'fanout-backends': { type: 'string' },
      'acceptance-runs': { type: 'string' },
      seed: { type: 'string' },
    },
  });
  const opts: SuiteOptions = {
    sizes: values.sizes ? positiveInts(values.sizes, '--sizes') : [1_000, 10_000],
    runs: values.runs ? (positiveInts(values.runs, '--runs')[0] ?? 3) : 3,
    clients: values.clients ? positiveInts(values.clients, '--clients').sort((a, b) => a - b) : [1, 100, 1_000],
    fanoutBackends: values['fanout-backends'] ? (positiveInts(values['fanout-backends'], '--fanout-backends')[0] ?? 50) : 50,
    acceptanceRuns: values['acceptance-runs'] ? (positiveInts(values['acceptance-runs'], '--acceptance-runs')[0] ?? 500) : 500,
    seed: values.seed ? (positiveInts(values.seed, '--seed')[0] ?? 1) : 1,
  };
  const all = suites(opts);
  const selected = all.filter((s) => values.suite === undefined || s.name === values.suite);
  if (selected.length === 0) throw new Error(`no suite named "${values.suite ?? ''}"; suites: ${all.map((s) => s.name).join(', ')}`);

  const startedAt = new Date();
  const loadBefore = loadavg()[0] ?? 0;
  if (loadBefore > cpus().length) log(`load average ${loadBefore.toFixed(1)} on ${cpus().length} CPUs: wall times will be inflated; compare CPU ms`);
  const rows: BenchRow[] = [];
  for (const suite of selected) {
    log(`suite ${suite.name} (load average ${(loadavg()[0] ?? 0).toFixed(1)})`);
    rows.push(...(await suite.run()));
  }

  process.stdout.write(`${table(rows)}\n`);
  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryMB: Math.round(totalmem() / 1024 / 1024),
    /** 1-minute load average before and after: wall times are only comparable on a quiet machine. */
    loadAverage: { before: loadBefore, after: loadavg()[0] ?? 0 },
    rows,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  const json = `${JSON.stringify(report, null, 2)}\n`;
  writeFileSync(file, json);
  writeFileSync(join(RESULTS_DIR, 'latest.json'), json);
  process.stdout.write(`\nwrote ${file} and ${join(RESULTS_DIR, 'latest.json')}\n`);
  const failed = rows.filter((r) => r.verdict === 'FAIL');
  if (failed.length > 0) process.stdout.write(`${failed.length} target${failed.length > 1 ? 's' : ''} missed (reported, not fatal)\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
