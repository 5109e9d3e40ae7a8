/**
 * Translation rows: N multipool Backends (3 priorities × 2 openaiCompatible members, IP
 * hostOverride, SecretRef tokens, one Secret per member) and N HTTPRoutes (one per Backend) on one
 * Gateway. Measures manifest validation, then translate(), toXdsResources() and protobuf encoding
 * of every resource (`encodeResource`), each run doing all three in a row; the target is their sum.
 */
import { parseManifest } from '../src/api/manifest.js';
import { toXdsResources } from '../src/envoy/index.js';
import { TypeUrl, type EnvoyResource, type XdsResources } from '../src/envoy/resources.js';
import { translate } from '../src/translate/index.js';
import { addToInputs, emptyInputs, type Inputs } from '../src/translate/inputs.js';
import { heapUsedMB, median, settleHeap, timed, type BenchRow, type BenchSuite, type Timed } from './suite.js';

const PRIORITIES = 3;
const MEMBERS_PER_POOL = 2;
/** translate() + toXdsResources() + encoding every resource, for TARGET_N Backends, must take less than this (wall clock). */
export const PIPELINE_TARGET_MS = 2_000;
const TARGET_N = 10_000;
const LISTENER_ADDRESS = '0.0.0.0';

/** Manifest documents as a user would write them (plain objects, before validation). */
export function generateManifests(n: number): unknown[] {
  const docs: unknown[] = [
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'switchyard' }, spec: { controllerName: 'switchyard.dev/gateway-controller' } },
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'bench', namespace: 'bench' },
      spec: { gatewayClassName: 'switchyard', listeners: [{ name: 'http', protocol: 'HTTP', port: 10080 }] },
    },
  ];
  for (let i = 0; i < n; i++) {
    const name = `chat-${i}`;
    const priorities = [];
    for (let p = 0; p < PRIORITIES; p++) {
      const pool = [];
      for (let m = 0; m < MEMBERS_PER_POOL; m++) {
        const member = `p${p}-m${m}`;
        const secret = `${name}-${member}`;
        pool.push({
          name: member,
          provider: {
            openaiCompatible: {
              host: `${member}.${name}.llm.internal`, port: 443, model: `model-${p}`,
              authToken: { kind: 'SecretRef', secretRef: { name: secret } },
            },
          },
          // A distinct IP per member: every cluster is EDS, as with private endpoints.
          hostOverride: { host: `10.${p * MEMBERS_PER_POOL + m}.${Math.floor(i / 250)}.${(i % 250) + 1}`, port: 8443 },
        });
        docs.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: secret, namespace: 'bench' }, stringData: { Authorization: `Bearer sk-bench-${i}-${member}` } });
      }
      priorities.push({ pool });
    }
    docs.push({ apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name, namespace: 'bench' }, spec: { type: 'AI', ai: { multipool: { priorities } } } });
    docs.push({
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: 'bench' },
      spec: {
        parentRefs: [{ name: 'bench' }],
        rules: [{ matches: [{ path: { type: 'PathPrefix', value: `/${name}/v1` } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name }] }],
      },
    });
  }
  return docs;
}

/** Validates every document (parseManifest) and sorts the objects into Inputs. */
export function inputsFrom(docs: readonly unknown[]): Inputs {
  const inputs = emptyInputs();
  for (const doc of docs) {
    const r = parseManifest(doc);
    if (r.ok !== true) throw new Error(`bench manifest rejected: ${JSON.stringify(r)}`);
    addToInputs(inputs, r.object);
  }
  return inputs;
}

const KINDS = ['clusters', 'endpoints', 'secrets', 'listeners', 'routes'] as const;

function resourceCount(xds: XdsResources): number {
  return KINDS.reduce((n, k) => n + xds[k].length, 0);
}

type Encoder = (resource: EnvoyResource) => Uint8Array;

/** `encodeResource` from src/envoy/proto.ts, or undefined while that module does not provide it. */
async function loadEncoder(): Promise<Encoder | undefined> {
  try {
    const mod: Record<string, unknown> = await import('../src/envoy/proto.js');
    const fn = mod['encodeResource'];
    return typeof fn === 'function' ? (fn as Encoder) : undefined;
  } catch {
    return undefined;
  }
}

export interface TranslateBenchOptions {
  sizes: number[];
  /** Timed repetitions per size (the median is reported); a warm-up run comes first. */
  runs: number;
  log: (line: string) => void;
}

interface StageTime {
  ms: number;
  cpuMs: number;
}

/** One pass over the pipeline: wall and CPU ms of each stage. Results are dropped, so runs do not pile up in the heap. */
interface PipelineRun {
  translate: StageTime;
  xds: StageTime;
  resources: number;
  /** Absent without an encoder. */
  encode?: { ms: number; cpuMs: number; bytes: number; msByKind: Record<string, number> };
  /** Heap growth (MB) that the run's results keep reachable: IR, statuses, resources, bytes. */
  heapMB: number;
}

function runPipeline(inputs: Inputs, encode: Encoder | undefined): PipelineRun {
  settleHeap();
  const before = heapUsedMB();
  const tr = timed(() => translate(inputs));
  const xds = timed(() => toXdsResources(tr.value.ir, { listenerAddress: LISTENER_ADDRESS }));
  let encoded: PipelineRun['encode'];
  // Kept until the heap is read: the encoded bytes are what a cache would hold.
  const kept: Uint8Array[][] = [];
  if (encode) {
    const msByKind: Record<string, number> = {};
    encoded = { ms: 0, cpuMs: 0, bytes: 0, msByKind };
    for (const kind of KINDS) {
      const t = timed(() => xds.value[kind].map(encode));
      encoded.ms += t.ms;
      encoded.cpuMs += t.cpuMs;
      msByKind[kind] = t.ms;
      for (const b of t.value) encoded.bytes += b.length;
      kept.push(t.value);
    }
  }
  settleHeap();
  const heapMB = heapUsedMB() - before;
  kept.length = 0;
  const stageTime = (t: Timed<unknown>): StageTime => ({ ms: t.ms, cpuMs: t.cpuMs });
  return { translate: stageTime(tr), xds: stageTime(xds), resources: resourceCount(xds.value), ...(encoded ? { encode: encoded } : {}), heapMB };
}

/** Validated inputs for N Backends; the raw documents are dropped once parsed, as a provider does. */
function parsedInputs(n: number): { inputs: Inputs; row: BenchRow } {
  const docs = generateManifests(n);
  settleHeap();
  const heapBeforeParse = heapUsedMB();
  const parsed = timed(() => inputsFrom(docs));
  const row: BenchRow = {
    suite: 'translate', name: 'validate manifests (parseManifest)', n, ms: parsed.ms, cpuMs: parsed.cpuMs, runs: 1,
    heapMB: heapUsedMB() - heapBeforeParse, detail: `${docs.length} documents`,
  };
  return { inputs: parsed.value, row };
}

function spread(values: readonly number[]): string {
  return `wall min ${Math.min(...values).toFixed(0)} ms, max ${Math.max(...values).toFixed(0)} ms`;
}

export function translateSuite(options: TranslateBenchOptions): BenchSuite {
  return {
    name: 'translate',
    async run(): Promise<BenchRow[]> {
      const rows: BenchRow[] = [];
      const encode = await loadEncoder();
      for (const n of options.sizes) {
        options.log(`translate: generating ${n} Backends, ${n} HTTPRoutes, ${n * PRIORITIES * MEMBERS_PER_POOL} Secrets`);
        const { inputs, row: parseRow } = parsedInputs(n);
        rows.push(parseRow);

        options.log(`translate: N=${n}, a warm-up run and ${options.runs} timed runs of translate → toXdsResources → encode`);
        encode?.({ '@type': TypeUrl.cluster, name: 'warm-up' }); // loads the .proto files outside the timing
        // The warm-up run is what a controller pays once at start (JIT still cold); it is reported, not counted.
        const cold = runPipeline(inputs, encode);
        const samples: PipelineRun[] = [];
        for (let r = 0; r < options.runs; r++) samples.push(runPipeline(inputs, encode));
        const last = samples.at(-1);
        if (!last) throw new Error('no timed run');

        const stage = (name: string, pick: (s: PipelineRun) => { ms: number; cpuMs: number } | undefined, detail: string): BenchRow => {
          const picked = samples.map(pick).filter((p) => p !== undefined);
          return {
            suite: 'translate', name, n, ms: median(picked.map((p) => p.ms)), cpuMs: median(picked.map((p) => p.cpuMs)),
            runs: picked.length, heapMB: undefined, detail,
          };
        };
        rows.push(stage('translate()', (s) => s.translate, ''));
        rows.push(stage('toXdsResources()', (s) => s.xds, `${last.resources} resources`));
        const translateAndXds = samples.map((s) => s.translate.ms + s.xds.ms);
        rows.push({
          suite: 'translate', name: 'translate() + toXdsResources()', n, ms: median(translateAndXds),
          cpuMs: median(samples.map((s) => s.translate.cpuMs + s.xds.cpuMs)), runs: options.runs, heapMB: undefined,
          detail: spread(translateAndXds),
        });
        if (encode && last.encode && cold.encode) {
          const byKind = KINDS.map((kind) => `${kind} ${median(samples.map((s) => s.encode?.msByKind[kind] ?? 0)).toFixed(0)}`).join(', ');
          rows.push(stage('encode every resource (protobuf)', (s) => s.encode,
            `${last.resources} resources, ${(last.encode.bytes / 1024 / 1024).toFixed(1)} MB; ms by kind: ${byKind}; cold first run ${cold.encode.ms.toFixed(0)} ms`));
        } else {
          rows.push({ suite: 'translate', name: 'encode every resource (protobuf)', n, ms: undefined, runs: 0, heapMB: undefined, detail: 'skipped: src/envoy/proto.ts has no encodeResource yet' });
        }

        // The target (issue 2): translated AND encoded, the whole way from inputs to the bytes the xDS cache serves.
        const totals = samples.map((s) => s.translate.ms + s.xds.ms + (s.encode?.ms ?? 0));
        const total = median(totals);
        const row: BenchRow = {
          suite: 'translate', name: 'translate + toXdsResources + encode', n, ms: total,
          cpuMs: median(samples.map((s) => s.translate.cpuMs + s.xds.cpuMs + (s.encode?.cpuMs ?? 0))), runs: options.runs,
          heapMB: Math.max(...samples.map((s) => s.heapMB)),
          detail: `${spread(totals)}; cold first run ${(cold.translate.ms + cold.xds.ms + (cold.encode?.ms ?? 0)).toFixed(0)} ms${encode ? '' : '; encoding skipped'}`,
        };
        if (n === TARGET_N) {
          row.target = `< ${PIPELINE_TARGET_MS} ms`;
          row.verdict = total < PIPELINE_TARGET_MS ? 'PASS' : 'FAIL';
        }
        rows.push(row);
      }
      return rows;
    },
  };
}
