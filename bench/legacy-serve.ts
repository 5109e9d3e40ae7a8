/**
 * Serving the legacy attempt facts form once it is built (an Envoy of the release before joining
 * the shared data plane of N AI Backends): the cache's overlay of the form's Clusters and
 * ClusterLoadAssignments over the configuration, then the setResources that serves it, as the
 * runtime does it (src/app/gateway-runtime.ts, buildLegacyForms): in slices of 20 ms where the
 * cache can prepare the overlay (SnapshotCache.prepareForms), else in one piece. Prints, per run,
 * each piece's wall and main-thread CPU time and the longest (on a busy machine the wall time of a
 * piece includes waiting for a core: its CPU time is what it holds the event loop for on an idle
 * one); the form itself is built before timing
 * (prebuildAttemptForms, already sliced). Each run: a fresh cache (the first older Envoy), a
 * translation while the form is served (one piece, as before), and the same cache again once the
 * form was dropped (an older Envoy coming back after the first left).
 *
 *   node --import tsx bench/legacy-serve.ts [backends=10000] [runs=3]
 */
import { stringify } from 'yaml';
import { prebuildAttemptForms, toAttemptFormResources, type AttemptFormsMemo } from '../src/envoy/attempt-forms.js';
import { toXdsResourcesReusing } from '../src/envoy/index.js';
import { ManifestStore, parseManifestFile } from '../src/providers/manifest-files.js';
import { translate } from '../src/translate/index.js';
import { SHARED_VIEW, SnapshotCache, type AttemptForms } from '../src/xds/cache.js';
import { generateManifests } from './translate.js';

const backends = Number(process.argv[2] ?? 10000);
const runs = Number(process.argv[3] ?? 3);
const SLICE_MS = 20;

const text = generateManifests(backends).map((d) => stringify(d)).join('---\n');
const { inputs } = new ManifestStore().build([{ name: 'bench.yaml', documents: parseManifestFile('bench.yaml', text) }]);
const { ir } = translate(inputs, undefined);
const envoy = { aiExtension: { host: '127.0.0.1', port: 18001 } };
const { xds, planes } = toXdsResourcesReusing(ir, envoy, undefined);
let memo: AttemptFormsMemo | undefined;
for (let done = false; !done; ) ({ memo, done } = prebuildAttemptForms(ir, envoy, 'legacy', memo, undefined, () => false));

/** The main thread's CPU time (V8's helper threads, concurrent GC marking included, are left out: they do not hold the event loop). */
const cpuMs = (): number => {
  const u = process.threadCpuUsage();
  return (u.user + u.system) / 1000;
};
interface Piece { wallMs: number; cpuMs: number }
function timed(work: () => void): Piece {
  const wall = performance.now();
  const cpu = cpuMs();
  work();
  return { wallMs: performance.now() - wall, cpuMs: cpuMs() - cpu };
}
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** One join: the form collected, its overlay in slices when the cache can, and the serving setResources. */
async function join(cache: SnapshotCache): Promise<{ pieces: Piece[]; sliced: boolean }> {
  const pieces: Piece[] = [];
  let forms: AttemptForms | undefined;
  const prepare = (cache as { prepareForms?: (f: AttemptForms) => { step(enough: () => boolean): boolean } }).prepareForms?.bind(cache);
  pieces.push(timed(() => {
    forms = { views: new Set([SHARED_VIEW]), resources: toAttemptFormResources(ir, envoy, 'legacy', memo, undefined).resources };
  }));
  if (forms === undefined) throw new Error('no forms');
  const served = forms;
  if (prepare !== undefined) {
    const overlay = prepare(served);
    for (let done = false; !done; ) {
      await turn();
      pieces.push(timed(() => {
        const start = performance.now();
        done = overlay.step(() => performance.now() - start >= SLICE_MS);
      }));
    }
  }
  await turn();
  pieces.push(timed(() => cache.setResources(xds, planes, served)));
  return { pieces, sliced: prepare !== undefined };
}

console.log(`${backends} AI Backends: ${xds.clusters.length} Clusters, ${xds.endpoints.length} ClusterLoadAssignments; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}`);
for (let run = 1; run <= runs; run++) {
  const cache = new SnapshotCache();
  cache.setResources(xds, planes);
  cache.view(undefined);
  for (const label of ['first older Envoy', 'again after it left']) {
    const { pieces, sliced } = await join(cache);
    if (label === 'first older Envoy') {
      // A translation while the form is served: the runtime serves the form again, collected afresh, in one piece.
      const forms: AttemptForms = { views: new Set([SHARED_VIEW]), resources: toAttemptFormResources(ir, envoy, 'legacy', memo, undefined).resources };
      const again = timed(() => cache.setResources(xds, planes, forms));
      console.log(`run ${run}, a translation while it is served: ${again.cpuMs.toFixed(1)} CPU-ms (${again.wallMs.toFixed(1)} ms) in one piece`);
    }
    cache.setResources(xds, planes);
    const longest = pieces.reduce((a, b) => (b.cpuMs > a.cpuMs ? b : a));
    const total = pieces.reduce((sum, p) => sum + p.cpuMs, 0);
    console.log(
      `run ${run}, ${label}: ${sliced ? `${pieces.length} pieces` : 'one piece (no prepareForms)'}, ${total.toFixed(0)} CPU-ms in all; ` +
        `longest ${longest.cpuMs.toFixed(1)} CPU-ms (${longest.wallMs.toFixed(1)} ms); ` +
        `the serving setResources ${pieces.at(-1)?.cpuMs.toFixed(1)} CPU-ms (${pieces.at(-1)?.wallMs.toFixed(1)} ms); ` +
        `CPU-ms per piece ${pieces.map((p) => p.cpuMs.toFixed(0)).join(' ')}`,
    );
  }
}
