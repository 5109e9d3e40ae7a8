/**
 * Translation rows: N multipool Backends (3 priorities × 2 openaiCompatible members, IP
 * hostOverride, SecretRef tokens, one Secret per member) and N HTTPRoutes (one per Backend) on one
 * Gateway. Measures manifest validation, translate() + toXdsResources() (the target), and
 * protobuf encoding of every resource when src/envoy/proto.ts provides `encodeResource`.
 */
import { parseManifest } from '../src/api/manifest.js';
import { toXdsResources } from '../src/envoy/index.js';
import type { EnvoyResource, XdsResources } from '../src/envoy/resources.js';
import { translate } from '../src/translate/index.js';
import { addToInputs, emptyInputs, type Inputs } from '../src/translate/inputs.js';
import { heapUsedMB, median, settleHeap, timed, type BenchRow, type BenchSuite } from './suite.js';

const PRIORITIES = 3;
const MEMBERS_PER_POOL = 2;
/** translate() + toXdsResources() for TARGET_N Backends must take less than this (wall clock). */
export const TRANSLATE_TARGET_MS = 2_000;
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

function encodeRow(n: number, xds: XdsResources, encode: Encoder): BenchRow {
  const first = xds.clusters[0] ?? xds.listeners[0];
  if (first) encode(first); // loads the .proto files outside the timing
  settleHeap();
  const before = heapUsedMB();
  const perKind: string[] = [];
  let ms = 0;
  let cpuMs = 0;
  let bytes = 0;
  // Kept until the heap is read: the encoded bytes are what a cache would hold.
  const kept: Uint8Array[][] = [];
  for (const kind of KINDS) {
    const t = timed(() => xds[kind].map(encode));
    ms += t.ms;
    cpuMs += t.cpuMs;
    for (const b of t.value) bytes += b.length;
    kept.push(t.value);
    perKind.push(`${kind} ${t.ms.toFixed(0)}`);
  }
  const heapMB = heapUsedMB() - before;
  kept.length = 0;
  return {
    suite: 'translate', name: 'encode every resource (protobuf)', n, ms, cpuMs, runs: 1, heapMB,
    detail: `${resourceCount(xds)} resources, ${(bytes / 1024 / 1024).toFixed(1)} MB; ms by kind: ${perKind.join(', ')}`,
  };
}

export function translateSuite(options: TranslateBenchOptions): BenchSuite {
  return {
    name: 'translate',
    async run(): Promise<BenchRow[]> {
      const rows: BenchRow[] = [];
      const encode = await loadEncoder();
      for (const n of options.sizes) {
        options.log(`translate: generating ${n} Backends, ${n} HTTPRoutes, ${n * PRIORITIES * MEMBERS_PER_POOL} Secrets`);
        const docs = generateManifests(n);

        settleHeap();
        const heapBeforeParse = heapUsedMB();
        const parsed = timed(() => inputsFrom(docs));
        const inputs = parsed.value;
        rows.push({
          suite: 'translate', name: 'validate manifests (parseManifest)', n, ms: parsed.ms, cpuMs: parsed.cpuMs, runs: 1,
          heapMB: heapUsedMB() - heapBeforeParse, detail: `${docs.length} documents`,
        });

        options.log(`translate: N=${n}, a warm-up run and ${options.runs} timed runs`);
        toXdsResources(translate(inputs).ir, { listenerAddress: LISTENER_ADDRESS });
        const samples: { translate: number; translateCpu: number; xds: number; xdsCpu: number }[] = [];
        let heapMB = 0;
        let last: XdsResources | undefined;
        for (let r = 0; r < options.runs; r++) {
          last = undefined;
          settleHeap();
          const before = heapUsedMB();
          const tr = timed(() => translate(inputs));
          const xd = timed(() => toXdsResources(tr.value.ir, { listenerAddress: LISTENER_ADDRESS }));
          // What one translation keeps reachable: IR, statuses and Envoy resources.
          settleHeap();
          heapMB = Math.max(heapMB, heapUsedMB() - before);
          last = xd.value;
          samples.push({ translate: tr.ms, translateCpu: tr.cpuMs, xds: xd.ms, xdsCpu: xd.cpuMs });
        }
        if (!last) throw new Error('no timed run');
        const totals = samples.map((s) => s.translate + s.xds);
        const total = median(totals);
        rows.push({ suite: 'translate', name: 'translate()', n, ms: median(samples.map((s) => s.translate)), cpuMs: median(samples.map((s) => s.translateCpu)), runs: options.runs, heapMB: undefined, detail: '' });
        rows.push({ suite: 'translate', name: 'toXdsResources()', n, ms: median(samples.map((s) => s.xds)), cpuMs: median(samples.map((s) => s.xdsCpu)), runs: options.runs, heapMB: undefined, detail: `${resourceCount(last)} resources` });
        const row: BenchRow = {
          suite: 'translate', name: 'translate() + toXdsResources()', n, ms: total,
          cpuMs: median(samples.map((s) => s.translateCpu + s.xdsCpu)), runs: options.runs, heapMB,
          detail: `wall min ${Math.min(...totals).toFixed(0)} ms, max ${Math.max(...totals).toFixed(0)} ms`,
        };
        if (n === TARGET_N) {
          row.target = `< ${TRANSLATE_TARGET_MS} ms`;
          row.verdict = total < TRANSLATE_TARGET_MS ? 'PASS' : 'FAIL';
        }
        rows.push(row);

        rows.push(encode
          ? encodeRow(n, last, encode)
          : { suite: 'translate', name: 'encode every resource (protobuf)', n, ms: undefined, runs: 0, heapMB: undefined, detail: 'skipped: src/envoy/proto.ts has no encodeResource yet' });
      }
      return rows;
    },
  };
}
