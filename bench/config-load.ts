/**
 * Config-load row: file mode loading a large valid configuration (N Backends of the translate
 * bench's shape, with their Secrets and HTTPRoutes, as one YAML file), in a fresh process
 * (bench/config-load-child.ts), then translating it into Envoy resources cached for serving.
 * Reports the peak RSS growth of the whole way (and of the load alone) and the heap the loaded
 * configuration keeps, each against the size of the input. Target: peak at most 5x the input.
 *
 *   BENCH_CONFIG_BACKENDS  Backends in the file (default 10000: about 37 MiB of YAML)
 *   CONFIG_LOAD_SNAPSHOT   a file to write a heap snapshot of the loaded configuration to (see bench/config-load-child.ts)
 *   BENCH_E2E_BUILT=1      the child runs the modules from dist/ (npm run build), as users run serve; by default from src/ under tsx
 *   BENCH_CONFIG_MEMORY_SETTINGS=0  the child runs with Node's and glibc's defaults instead of serve's memory settings
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { longRunningRestart } from '../src/cli/memory-settings.js';
import type { ConfigLoadReport } from './config-load-child.js';
import type { BenchRow, BenchSuite } from './suite.js';
import { generateManifests } from './translate.js';

export const CONFIG_LOAD_TARGET_RATIO = 5;
const HERE = dirname(fileURLToPath(import.meta.url));

function backendsFromEnv(): number {
  const text = process.env['BENCH_CONFIG_BACKENDS'];
  if (text === undefined || text === '') return 10_000;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`BENCH_CONFIG_BACKENDS must be a positive integer, got "${text}"`);
  return n;
}

/**
 * serve's own memory settings (src/cli/memory-settings.ts: V8's semi-space cap, glibc's arenas
 * and trim threshold), which bin/switchyard.js restarts serve with, unless
 * BENCH_CONFIG_MEMORY_SETTINGS=0 (Node's and glibc's defaults, as this row measured up to peak16).
 */
function childSettings(): { execArgv: string[]; env: NodeJS.ProcessEnv; label: string } {
  const own = ['--import', 'tsx', '--expose-gc'];
  if (process.env['BENCH_CONFIG_MEMORY_SETTINGS'] === '0') return { execArgv: own, env: process.env, label: "Node's and glibc's default memory settings" };
  const restart = longRunningRestart(['serve'], own, process.env);
  if (restart === undefined) throw new Error('config-load: serve is a long-running command, with memory settings');
  return { execArgv: restart.execArgv, env: restart.env, label: `serve's memory settings (${restart.execArgv[0] ?? ''}, MALLOC_ARENA_MAX=${restart.env['MALLOC_ARENA_MAX'] ?? ''}, MALLOC_TRIM_THRESHOLD_=${restart.env['MALLOC_TRIM_THRESHOLD_'] ?? ''}, MALLOC_MMAP_THRESHOLD_=${restart.env['MALLOC_MMAP_THRESHOLD_'] ?? ''})` };
}

function load(path: string): Promise<ConfigLoadReport> {
  const { execArgv, env } = childSettings();
  return new Promise((resolve, reject) => {
    const child = fork(join(HERE, 'config-load-child.ts'), [path], {
      cwd: join(HERE, '..'),
      execArgv,
      env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.once('message', (report: ConfigLoadReport) => resolve(report));
    child.once('exit', (code) => reject(new Error(`config-load-child exited (${String(code)}) without a report`)));
  });
}

const mb = (bytes: number): number => bytes / 1024 / 1024;

/** What each stage keeps (heap + ArrayBuffers, after a full GC), and what the peak held beyond that. */
function liveBreakdown(r: ConfigLoadReport, peak: number): string {
  const { inputs, translation, envoy, cache } = r.live;
  const kept = inputs + translation + envoy + cache;
  return `kept after GC: inputs ${mb(inputs).toFixed(0)} + translation ${mb(translation).toFixed(0)} + Envoy stage ${mb(envoy).toFixed(0)} + cache ${mb(cache).toFixed(0)} = ${mb(kept).toFixed(0)} MiB; peak beyond that (garbage, V8 spaces, code) ${mb(peak - kept).toFixed(0)} MiB`;
}

export function configLoadSuite(log: (line: string) => void): BenchSuite {
  return {
    name: 'config-load',
    async run(): Promise<BenchRow[]> {
      const backends = backendsFromEnv();
      const dir = mkdtempSync(join(tmpdir(), 'switchyard-config-load-'));
      try {
        const file = join(dir, 'config.yaml');
        writeFileSync(file, generateManifests(backends).map((doc) => stringify(doc)).join('---\n'));
        const input = statSync(file).size;
        log(`config-load: ${backends} Backends, ${mb(input).toFixed(1)} MiB of YAML; loading in a fresh process`);
        const r = await load(file);
        if (r.backends !== backends || r.problems !== 0) throw new Error(`config-load: expected ${backends} Backends and no problems, got ${r.backends} and ${r.problems}`);
        const peak = r.peakRssBytes - r.rssBeforeBytes;
        const loadPeak = r.loadPeakRssBytes - r.rssBeforeBytes;
        const kept = r.heapAfterBytes - r.heapBeforeBytes;
        const row = (name: string, peakBytes: number, detail: string, ms: number): BenchRow => {
          const ratio = peakBytes / input;
          return {
            suite: 'config-load',
            name,
            n: backends,
            ms,
            runs: 1,
            heapMB: mb(kept),
            detail: `${process.env['BENCH_E2E_BUILT'] === '1' ? 'modules from dist/' : 'modules from src/ under tsx (BENCH_E2E_BUILT=1: dist/)'}, ${childSettings().label}; input ${mb(input).toFixed(1)} MiB; peak RSS +${mb(peakBytes).toFixed(0)} MiB = ${ratio.toFixed(1)}x input; ${detail}`,
            target: `<= ${CONFIG_LOAD_TARGET_RATIO}x input`,
            verdict: ratio <= CONFIG_LOAD_TARGET_RATIO ? 'PASS' : 'FAIL',
          };
        };
        return [
          { ...row('file mode: load one large file (peak RSS growth / input)', loadPeak, `heap kept by the loaded configuration ${mb(kept).toFixed(0)} MiB = ${(kept / input).toFixed(1)}x input`, r.ms), cpuMs: r.cpuMs },
          { ...row('file mode: load it, translate it and cache its xDS resources (peak RSS growth / input)', peak, `translate + xDS + cache ${r.pipelineMs.toFixed(0)} ms (CPU ${r.pipelineCpuMs.toFixed(0)} ms), ${r.resources} resources (encoded: Clusters ${mb(r.clusterBytes).toFixed(1)} MiB, ClusterLoadAssignments ${mb(r.endpointBytes).toFixed(1)} MiB); ${liveBreakdown(r, peak)}`, r.ms + r.pipelineMs), heapMB: undefined, cpuMs: r.cpuMs + r.pipelineCpuMs },
        ];
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
