/**
 * Generated Gateways, HTTPRoutes and Backends (many carrying values Envoy refuses) through the
 * pipeline and the real Envoy's `--mode validate`, `batch` cases per Envoy run. The target: every
 * served configuration is accepted (what the translator refuses is left out, never handed over).
 * test/property/envoy-accepts.test.ts runs a small sample of the same generator in CI.
 */
import { checkEnvoyAcceptance } from '../test/support/envoy-acceptance.js';
import type { BenchRow, BenchSuite } from './suite.js';

export function envoyAcceptanceSuite(opts: { runs: number; batch: number; seed: number; log: (line: string) => void }): BenchSuite {
  return {
    name: 'envoy-acceptance',
    async run(): Promise<BenchRow[]> {
      opts.log(`envoy-acceptance: ${opts.runs} generated cases, ${opts.batch} per Envoy run, seed ${opts.seed}`);
      const started = process.hrtime.bigint();
      const cpu = process.cpuUsage();
      const r = await checkEnvoyAcceptance({ runs: opts.runs, batch: opts.batch, seed: opts.seed });
      const used = process.cpuUsage(cpu);
      for (const f of r.failures) opts.log(`envoy-acceptance: Envoy rejected ${JSON.stringify(f.case)}: ${f.envoy.slice(0, 400)}`);
      return [{
        suite: 'envoy-acceptance',
        name: 'generated inputs, envoy --mode validate',
        n: r.generated,
        ms: Number(process.hrtime.bigint() - started) / 1e6,
        cpuMs: (used.user + used.system) / 1000,
        runs: 1,
        heapMB: undefined,
        detail: `generated ${r.generated}, with refusals ${r.withRefusals}, accepted as served ${r.nackFree}, NACKed ${r.failures.length}, envoy runs ${r.envoyRuns}, seed ${opts.seed}`,
        target: 'every served configuration accepted',
        verdict: r.failures.length === 0 && r.nackFree === r.generated ? 'PASS' : 'FAIL',
      }];
    },
  };
}
