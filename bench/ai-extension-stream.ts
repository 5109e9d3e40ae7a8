/**
 * How long a streamed answer's chunks take to cross the AI path (issue 11): an SSE provider
 * writes ten content events 10 ms apart, each carrying the time it was written, and streaming
 * clients read each one's delay, through an AI Backend (every chunk answered by the extension)
 * and through a Static one (no extension), phases alternated, both through the same Envoy and
 * provider. Meanwhile open-loop non-streamed requests through the AI Backend keep serve's event
 * loop as busy as traffic would: a chunk's answer that waits for a turn of that loop shows here,
 * where the non-streamed rows (bench/ai-extension.ts) never wait for it. The provider and the
 * clients run in a child process (bench/ai-extension-stream-load.ts).
 *
 *   npx tsx bench/ai-extension-stream.ts   BENCH_STREAM_RPS (300), BENCH_STREAM_STREAMS (8),
 *                                          BENCH_STREAM_SECONDS (6), BENCH_STREAM_ROUNDS (2)
 */
import { fork } from 'node:child_process';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGatewayFixture } from '../test/support/gateway-fixture.js';
import { aiBenchManifests } from './ai-extension.js';
import type { StreamPhaseOrder, StreamPhaseResult } from './ai-extension-stream-load.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const PATHS = ['static', 'ai'] as const;

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const rps = Number(process.env['BENCH_STREAM_RPS']) || 300;
  const streams = Number(process.env['BENCH_STREAM_STREAMS']) || 8;
  const seconds = Number(process.env['BENCH_STREAM_SECONDS']) || 6;
  const rounds = Number(process.env['BENCH_STREAM_ROUNDS']) || 2;
  const child = fork(join(HERE, 'ai-extension-stream-load.ts'), [], { cwd: join(HERE, '..'), execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const fake = { host: '127.0.0.1', port: await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port))) };
  const gw = await startGatewayFixture({
    id: 'bench-ai-extension-stream',
    providers: [],
    manifests: ({ listenerPort }) => aiBenchManifests(listenerPort, fake),
    waitForBackends: ['ai', 'static'],
  });
  const phase = (order: StreamPhaseOrder): Promise<StreamPhaseResult> =>
    new Promise((resolve) => {
      child.once('message', resolve);
      child.send(order);
    });
  try {
    const order = (path: (typeof PATHS)[number], s: number): StreamPhaseOrder => ({ port: gw.listenerPort, streamPath: `/${path}/v1/chat/completions`, backgroundPath: '/ai/v1/chat/completions', seconds: s, rps, streams });
    // Connections, JIT.
    for (const path of PATHS) await phase(order(path, 1));
    const loadBefore = loadavg()[0] ?? 0;
    const delays = new Map<string, number[]>(PATHS.map((p) => [p, []]));
    let failures = 0;
    for (let round = 0; round < rounds; round++) {
      for (const path of PATHS) {
        process.stderr.write(`ai-extension-stream: ${path} streams, round ${round + 1}/${rounds}\n`);
        const r = await phase(order(path, seconds));
        delays.get(path)?.push(...r.delays);
        failures += r.failures;
      }
    }
    const header = ['streams through', 'chunk delay p50 ms', 'p90 ms', 'p99 ms', 'chunks'];
    const rows = PATHS.map((path) => {
      const sorted = (delays.get(path) ?? []).sort((a, b) => a - b);
      return [path, percentile(sorted, 50).toFixed(3), percentile(sorted, 90).toFixed(2), percentile(sorted, 99).toFixed(2), String(sorted.length)];
    });
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    for (const line of [header, widths.map((w) => '-'.repeat(w)), ...rows]) process.stdout.write(`${line.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')}\n`);
    process.stdout.write(`${streams} streams in flight, ${rps} non-streamed rps through the extension behind them, ${seconds} s per phase, ${rounds} rounds, ${failures} failed; 1-minute load average ${loadBefore.toFixed(1)} before, ${(loadavg()[0] ?? 0).toFixed(1)} after (2 CPUs shared: wall times inflated above 2)\n`);
  } finally {
    await gw.stop();
    child.send('stop');
  }
}

void main();
