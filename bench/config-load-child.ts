/**
 * The measured half of bench/config-load.ts, in a fresh process so that its peak RSS is the
 * load's: loads the configuration at argv[2] with the FileProvider, as `serve` does at start.
 *
 *   run by bench/config-load.ts: node --import tsx --expose-gc bench/config-load-child.ts <path>
 */
import { FileProvider } from '../src/providers/file.js';

export interface ConfigLoadReport {
  ms: number;
  cpuMs: number;
  backends: number;
  problems: number;
  rssBeforeBytes: number;
  peakRssBytes: number;
  heapBeforeBytes: number;
  heapAfterBytes: number;
}

async function main(): Promise<void> {
  const path = process.argv[2];
  if (!process.send || path === undefined) throw new Error('config-load-child.ts is started by bench/config-load.ts');
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const rssBefore = process.memoryUsage().rss;
  const heapBefore = process.memoryUsage().heapUsed;
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  const provider = new FileProvider({ path, resyncIntervalMs: 0 });
  const snapshot = await provider.start();
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const used = process.cpuUsage(cpu);
  // maxRSS is the process's lifetime peak (KiB): the load's, since this process did nothing else.
  const peak = process.resourceUsage().maxRSS * 1024;
  await provider.stop();
  gc?.();
  const report: ConfigLoadReport = {
    ms,
    cpuMs: (used.user + used.system) / 1000,
    backends: snapshot.inputs.backends.length,
    problems: snapshot.problems.length,
    rssBeforeBytes: rssBefore,
    peakRssBytes: peak,
    heapBeforeBytes: heapBefore,
    heapAfterBytes: process.memoryUsage().heapUsed,
  };
  // The snapshot stays reachable until here: heapAfter is what serving it keeps.
  if (snapshot.inputs.backends.length < 0) process.stderr.write('unreachable');
  process.send(report, () => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`config-load-child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
