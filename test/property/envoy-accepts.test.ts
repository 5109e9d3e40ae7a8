import { describe, expect, it } from 'vitest';
import { requireEnvoyBinary } from '../support/envoy.js';
import { checkEnvoyAcceptance } from '../support/envoy-acceptance.js';

/**
 * Property: whatever Switchyard serves, the real Envoy accepts. Generated Gateways, HTTPRoutes
 * (regex, header and query matches, header filters, rewrites, redirects, hostnames) and Backends,
 * many carrying values Envoy was measured to reject, go through the schema and the pipeline;
 * refused parts are left out, and what remains must pass `envoy --mode validate`. A fixed seed
 * keeps CI reproducible; `npm run bench` runs a larger sample (row "envoy-acceptance").
 */
describe('generated inputs: what the translator serves, Envoy accepts', () => {
  it('40 generated cases in two Envoy runs', async () => {
    requireEnvoyBinary();
    const report = await checkEnvoyAcceptance({ runs: 40, batch: 20, seed: 7 });
    expect(report.failures.map((f) => `${f.envoy}\n${JSON.stringify(f.case)}`)).toEqual([]);
    expect(report.nackFree).toBe(40);
    // The sample must exercise refusals, or it would prove nothing about them.
    expect(report.withRefusals).toBeGreaterThan(10);
    expect(report.withRefusals).toBeLessThan(40);
  });
});
