/**
 * The measured half of bench/config-load.ts, in a fresh process so that its peak RSS is the
 * load's: loads the configuration at argv[2] with the FileProvider, then translates it, builds
 * its Envoy resources and puts them in the xDS cache (encoded, ready to serve), as `serve` does
 * at start.
 *
 *   run by bench/config-load.ts: node --import tsx --expose-gc bench/config-load-child.ts <path>
 *
 * CONFIG_LOAD_SNAPSHOT=FILE writes a heap snapshot when the loaded configuration alone is left
 * (for bench/heap-owners.ts, e.g. with the names store,parsed,snapshot), after every figure
 * but the inputs' (which writing it may shift by a little). With CONFIG_LOAD_SNAPSHOT_AT=served
 * the snapshot is written instead once everything is kept (inputs, translation, Envoy stage and
 * cache, after a full GC: e.g. the names cache,built,translation,snapshot), after the peak but
 * before the figures of what each stage keeps (which writing it shifts).
 */
import { existsSync } from 'node:fs';
import { writeHeapSnapshot } from 'node:v8';
import type * as Encoded from '../src/envoy/encoded.js';
import type * as EnvoyStage from '../src/envoy/index.js';
import type * as Resources from '../src/envoy/resources.js';
import type * as YoungGeneration from '../src/observability/young-generation.js';
import type * as File from '../src/providers/file.js';
import type { Snapshot } from '../src/providers/manifest-files.js';
import type * as Translate from '../src/translate/index.js';
import type * as Cache from '../src/xds/cache.js';

/**
 * BENCH_E2E_BUILT=1: the modules as users run them, from dist/ (npm run build), as serve-start
 * and xds-e2e run serve; by default from src/ under tsx. The difference is not only compiling:
 * from src/, the first encode parses Envoy's .proto files (about 9 MiB more at the peak and
 * 0.3 s of CPU) where the build loads the compact descriptor it wrote (src/envoy/proto.ts).
 */
const BUILT = process.env['BENCH_E2E_BUILT'] === '1';
const HERE = new URL('.', import.meta.url);
if (BUILT && !existsSync(new URL('../dist/envoy/index.js', HERE))) throw new Error('BENCH_E2E_BUILT=1 needs dist/ (npm run build)');
const from = <T>(module: string): Promise<T> => import(new URL(`../${BUILT ? 'dist' : 'src'}/${module}.js`, HERE).href) as Promise<T>;
const { EncodedResource } = await from<typeof Encoded>('envoy/encoded');
const { toXdsResourcesReusing } = await from<typeof EnvoyStage>('envoy/index');
const { PUSH_ORDER, TypeUrl } = await from<typeof Resources>('envoy/resources');
const { holdYoungGeneration } = await from<typeof YoungGeneration>('observability/young-generation');
const { FileProvider } = await from<typeof File>('providers/file');
const { translate } = await from<typeof Translate>('translate/index');
const { SnapshotCache } = await from<typeof Cache>('xds/cache');
type Translation = Translate.Translation;
type SnapshotCache = Cache.SnapshotCache;
type FileProvider = File.FileProvider;

export interface ConfigLoadReport {
  ms: number;
  cpuMs: number;
  backends: number;
  problems: number;
  rssBeforeBytes: number;
  /** Lifetime peak once the configuration is loaded (FileProvider.start). */
  loadPeakRssBytes: number;
  /** Lifetime peak once it is also translated and cached: the whole way to being served. */
  peakRssBytes: number;
  pipelineMs: number;
  /** CPU time (user + system) of translate + Envoy stage + cache. */
  pipelineCpuMs: number;
  resources: number;
  /** Encoded bytes of the cached Clusters and of the ClusterLoadAssignments (Any-wrapped, as served). */
  clusterBytes: number;
  endpointBytes: number;
  heapBeforeBytes: number;
  heapAfterBytes: number;
  /**
   * Heap and ArrayBuffer bytes each stage's output keeps alive on its own, measured after the
   * peak (so as not to change it) by letting go of the cache, then the Envoy stage's output and
   * state, then the translation, then the loaded configuration, with a full GC after each.
   */
  live: { inputs: number; translation: number; envoy: number; cache: number };
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
  let provider: FileProvider | undefined = new FileProvider({ path, resyncIntervalMs: 0 });
  let snapshot: Snapshot | undefined = await provider.start();
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const used = process.cpuUsage(cpu);
  // maxRSS is the process's lifetime peak (KiB): the load's, since this process did nothing else.
  const loadPeak = process.resourceUsage().maxRSS * 1024;
  // As serve does (src/app/gateway-runtime.ts): the young generation is held while the
  // configuration is translated, and the Envoy stage also builds the state it keeps for the next
  // edit to reuse. Held from here: serve runs no GC between its load and its first translation,
  // but the full GC below (which measures the heap the loaded configuration keeps) ran with V8's
  // growth factor restored, and in some runs V8 doubled the young generation in it (16 to 32 MiB,
  // main alike), which the translation then filled: 20 MiB more at the peak than serve has.
  const release = holdYoungGeneration();
  await provider.stop();
  gc?.();
  const heapAfter = process.memoryUsage().heapUsed;
  const pipelineStart = process.hrtime.bigint();
  const pipelineCpu = process.cpuUsage();
  let translation: Translation | undefined = translate(snapshot.inputs, undefined);
  let built: ReturnType<typeof toXdsResourcesReusing> | undefined = toXdsResourcesReusing(translation.ir, {}, undefined);
  let cache: SnapshotCache | undefined = new SnapshotCache();
  cache.setResources(built.xds, built.planes);
  release();
  const pipelineMs = Number(process.hrtime.bigint() - pipelineStart) / 1e6;
  const pipelineUsed = process.cpuUsage(pipelineCpu);
  const peak = process.resourceUsage().maxRSS * 1024;
  const resources = PUSH_ORDER.reduce((n, kind) => n + (cache?.snapshot(TypeUrl[kind])?.resources.size ?? 0), 0);
  // byteLength, not any.length: asking for the bytes whole joins a record's shared frame and its
  // own bytes into a copy of its own, which the figures of what each stage keeps then counted.
  const servedBytes = (typeUrl: string): number => {
    let n = 0;
    for (const r of cache?.snapshot(typeUrl)?.resources.values() ?? []) n += r instanceof EncodedResource ? r.byteLength : r.any.length;
    return n;
  };
  const clusterBytes = servedBytes(TypeUrl.cluster);
  const endpointBytes = servedBytes(TypeUrl.endpoint);
  const backends = snapshot.inputs.backends.length;
  const problems = snapshot.problems.length;
  const held = (): number => {
    gc?.();
    gc?.();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const snapshotFile = process.env['CONFIG_LOAD_SNAPSHOT'];
  const snapshotServed = process.env['CONFIG_LOAD_SNAPSHOT_AT'] === 'served';
  if (snapshotFile !== undefined && snapshotFile !== '' && snapshotServed) {
    gc?.();
    writeHeapSnapshot(snapshotFile);
  }
  const all = held();
  cache = undefined;
  const withoutCache = held();
  built = undefined;
  const withoutEnvoy = held();
  translation = undefined;
  const withoutTranslation = held();
  if (snapshotFile !== undefined && snapshotFile !== '' && !snapshotServed) writeHeapSnapshot(snapshotFile);
  snapshot = undefined;
  provider = undefined;
  const withoutInputs = held();
  const report: ConfigLoadReport = {
    ms,
    cpuMs: (used.user + used.system) / 1000,
    backends,
    problems,
    rssBeforeBytes: rssBefore,
    loadPeakRssBytes: loadPeak,
    peakRssBytes: peak,
    pipelineMs,
    pipelineCpuMs: (pipelineUsed.user + pipelineUsed.system) / 1000,
    resources,
    clusterBytes,
    endpointBytes,
    heapBeforeBytes: heapBefore,
    heapAfterBytes: heapAfter,
    live: { inputs: withoutTranslation - withoutInputs, translation: withoutEnvoy - withoutTranslation, envoy: withoutCache - withoutEnvoy, cache: all - withoutCache },
  };
  // The stages' outputs were let go above only to measure them.
  void [provider, snapshot, translation, built, cache];
  process.send(report, () => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`config-load-child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
