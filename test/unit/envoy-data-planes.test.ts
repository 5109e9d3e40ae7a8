import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AI_EXTENSION_CLUSTER } from '../../src/envoy/ai-extension.js';
import { runPipeline } from '../../src/pipeline.js';
import { snapshotOf } from '../golden/render.js';

/** What each Gateway's data plane receives, on the golden inputs. */

function pipelineOf(golden: string): ReturnType<typeof runPipeline> {
  const name = `test/golden/${golden}.in.yaml`;
  return runPipeline(snapshotOf([{ name, text: readFileSync(name, 'utf8') }]).inputs);
}

describe('toDataPlanes', () => {
  it('gives a Gateway with AI Backends the AI extension\'s cluster, and never a provider credential', () => {
    const { xds, planes } = pipelineOf('multipool-providers');
    expect(xds.secrets.some((s) => String(s['name']).startsWith('credential/'))).toBe(true);
    expect(planes.gateways.size).toBeGreaterThan(0);
    for (const [gateway, names] of planes.gateways) {
      expect(names.clusters, gateway).toContain(AI_EXTENSION_CLUSTER);
      expect(names.secrets.filter((s) => s.startsWith('credential/')), gateway).toEqual([]);
      // Every name it lists exists, so a view never waits for a resource that is not there.
      for (const cluster of names.clusters) expect(xds.clusters.map((c) => c['name'])).toContain(cluster);
    }
  });

  it('gives a Gateway the certificates of its HTTPS listeners only, and no AI extension without AI Backends', () => {
    const { xds, planes } = pipelineOf('gateway-listeners');
    const certificates = [...planes.gateways.values()].flatMap((n) => n.secrets);
    expect(certificates.length).toBeGreaterThan(0);
    for (const [gateway, names] of planes.gateways) {
      const own = xds.listeners.filter((l) => names.listeners.includes(String(l['name'])));
      expect(own.every((l) => String(l['name']).startsWith(`${gateway}/`)), gateway).toBe(true);
      // The certificate names the Gateway's listeners reference over SDS, exactly.
      const referenced = [...JSON.stringify(own).matchAll(/"tls_certificate_sds_secret_configs":\[([^\]]*)\]/g)].flatMap((m) => [...(m[1] ?? '').matchAll(/"name":"([^"]+)"/g)].map((n) => n[1]));
      expect([...names.secrets].sort(), gateway).toEqual([...new Set(referenced)].sort());
      expect(names.clusters).not.toContain(AI_EXTENSION_CLUSTER);
    }
  });
});
