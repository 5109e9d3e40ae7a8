/**
 * The longest event-loop stall in `serve` (in this process, no Envoy, no AI extension) from the
 * moment it listens until its first statuses are published, on N Backends in one directory:
 * gaps between turns of a setImmediate chain (the longest one is what an Envoy connecting then,
 * or a keepalive ping, waits), and the CPU of that stretch.
 *
 *   node --import tsx bench/status-stall.ts [backends=10000] [runs=3]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { serve } from '../src/app/serve.js';
import { createLogger } from '../src/observability/logger.js';
import { generateManifests } from './translate.js';

async function once(dir: string): Promise<{ stallMs: number; turns: number; publishedMs: number; cpuMs: number }> {
  let published: (() => void) | undefined;
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (chunk.includes('statuses changed')) published?.();
      done();
    },
  });
  const logger = createLogger({ level: 'info', name: 'switchyard' }, sink as never);
  const statusesOut = new Promise<void>((resolve) => (published = resolve));
  const running = await serve({ config: dir, xdsPort: 0, xdsHost: '127.0.0.1', metricsPort: 0, metricsHost: '127.0.0.1', envoy: {}, logger, aiExtension: false });
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  let last = t0;
  let stallMs = 0;
  let turns = 0;
  let done = false;
  const tick = (): void => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last);
    last = now;
    turns++;
    if (!done) setImmediate(tick);
  };
  setImmediate(tick);
  await statusesOut;
  const publishedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  // The turn that published counts too.
  await new Promise((r) => setImmediate(r));
  done = true;
  await running.stop();
  return { stallMs, turns, publishedMs, cpuMs: (cpu.user + cpu.system) / 1000 };
}

async function main(): Promise<void> {
  const backends = Number(process.argv[2] ?? 10_000);
  const runs = Number(process.argv[3] ?? 3);
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-status-stall-'));
  writeFileSync(join(dir, 'all.yaml'), generateManifests(backends).map((d) => stringify(d)).join('---\n'));
  for (let i = 0; i < runs; i++) {
    const r = await once(dir);
    console.log(`backends ${backends} run ${i + 1}: listening -> statuses published ${r.publishedMs.toFixed(0)} ms (${r.cpuMs.toFixed(0)} CPU-ms), longest event-loop stall ${r.stallMs.toFixed(1)} ms over ${r.turns} turns`);
  }
  rmSync(dir, { recursive: true, force: true });
}

main().then(() => process.exit(0), (err: unknown) => { console.error(err); process.exit(1); });
