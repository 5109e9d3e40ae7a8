/**
 * Where the AI extension's added latency is (issue 11): the same fake provider through four
 * Backends served side by side by the real controller and Envoy, phases alternated at the same
 * open-loop rate as bench/ai-extension.ts:
 *
 *   static       a Static Backend: no upstream filter, no extension
 *   ai-bare      an AI Backend whose cluster keeps everything but its ext_proc filter (buffer
 *                filter, upstream codec, preconnect policy; the route's retry policy and body
 *                limit, the listener's access loggers): what the AI path costs besides the exchange
 *   ai           an AI Backend as served: every attempt through the extension (5 messages each way)
 *   ai-no-answer-body  the AI Backend with response_body_mode NONE (3 each way): not a usable
 *                configuration (no usage, no translation, no held answer), only a bound on what
 *                the answer's body messages cost, so on what a full-duplex response body could save
 *
 * The two variants are the translator's clusters rewritten before they are served
 * (testOnlyRewrite). The fake provider and the load generator run in a child process
 * (bench/ai-extension-load.ts), so this process's CPU is serve's.
 *
 *   npx tsx bench/ai-extension-split.ts     BENCH_AI_RPS (500), BENCH_AI_SECONDS (4), BENCH_AI_ROUNDS (3)
 */
import { fork } from 'node:child_process';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodedStandIn } from '../src/envoy/encoded.js';
import type { EnvoyResource, JsonObject, XdsResources } from '../src/envoy/resources.js';
import { NAMESPACE, aiBackend, gatewayManifests, httpRoute, secret, startGatewayFixture } from '../test/support/gateway-fixture.js';
import type { LoadReady, PhaseOrder, PhaseResult } from './ai-extension-load.js';
import { AI_EXTENSION_RPS } from './ai-extension.js';
import { processUsage } from './gcp.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const PATHS = ['static', 'ai-bare', 'ai', 'ai-no-answer-body'] as const;
type PathKind = (typeof PATHS)[number];

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** A served cluster as JSON, changed by `edit`, served again in its encoded form. */
function rewritten(cluster: EnvoyResource, edit: (filters: JsonObject[]) => JsonObject[]): EnvoyResource {
  const json = JSON.parse(JSON.stringify(cluster)) as JsonObject;
  const options = (json['typed_extension_protocol_options'] as JsonObject)[HTTP_PROTOCOL_OPTIONS] as JsonObject;
  options['http_filters'] = edit(options['http_filters'] as JsonObject[]);
  return encodedStandIn(json as EnvoyResource);
}

function isExtProc(filter: JsonObject): boolean {
  return filter['name'] === 'envoy.filters.http.ext_proc';
}

function variants(xds: XdsResources): XdsResources {
  return {
    ...xds,
    clusters: xds.clusters.map((cluster) => {
      const name = String(cluster['name']);
      if (name.endsWith('/ai-bare')) return rewritten(cluster, (filters) => filters.filter((f) => !isExtProc(f)));
      if (name.endsWith('/ai-no-answer-body')) {
        return rewritten(cluster, (filters) =>
          filters.map((f) => {
            if (!isExtProc(f)) return f;
            const config = f['typed_config'] as JsonObject;
            return { ...f, typed_config: { ...config, processing_mode: { ...(config['processing_mode'] as JsonObject), response_body_mode: 'NONE' } } };
          }),
        );
      }
      return cluster;
    }),
  };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const rps = Number(process.env['BENCH_AI_RPS']) || AI_EXTENSION_RPS;
  const seconds = Number(process.env['BENCH_AI_SECONDS']) || 4;
  const rounds = Number(process.env['BENCH_AI_ROUNDS']) || 3;
  const child = fork(join(HERE, 'ai-extension-load.ts'), [], { cwd: join(HERE, '..'), execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const fake = await new Promise<LoadReady>((resolve) => child.once('message', resolve));
  const phase = (order: PhaseOrder['phase']): Promise<PhaseResult> =>
    new Promise((resolve) => {
      child.once('message', resolve);
      child.send({ phase: order } satisfies PhaseOrder);
    });
  const member = { fake, hostname: 'provider.bench', model: 'gpt-4o', secret: 'bench-key' };
  const gw = await startGatewayFixture({
    id: 'bench-ai-split',
    providers: [],
    testOnlyRewrite: variants,
    manifests: ({ listenerPort }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        secret('bench-key', 'Bearer sk-bench-provider'),
        ...PATHS.filter((k) => k !== 'static').map((name) => aiBackend({ name, llm: true, priorities: [[member]] })),
        { apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name: 'static', namespace: NAMESPACE }, spec: { type: 'Static', static: { priorities: [{ hosts: [{ host: fake.host, port: fake.port }] }] } } },
      ],
      'routes.yaml': [httpRoute('bench', PATHS.map((k) => ({ path: `/${k}/v1`, rewritePrefix: '/v1', backend: k })))],
    }),
    waitForBackends: [...PATHS],
  });
  try {
    const port = gw.listenerPort;
    for (const k of PATHS) await phase({ port, path: `/${k}/v1/chat/completions`, rps, seconds: 1 });
    const totals = new Map<PathKind, { latencies: number[]; p50s: number[]; requests: number; failures: number; serveMs: number; envoyMs: number }>(
      PATHS.map((k) => [k, { latencies: [], p50s: [], requests: 0, failures: 0, serveMs: 0, envoyMs: 0 }]),
    );
    const loadBefore = loadavg()[0] ?? 0;
    for (let round = 0; round < rounds; round++) {
      for (const k of PATHS) {
        process.stderr.write(`ai-extension-split: ${k}, ${rps} rps for ${seconds} s (round ${round + 1}/${rounds})\n`);
        const cpu = process.cpuUsage();
        const envoy = processUsage(gw.envoy.pid).cpuMs;
        const r = await phase({ port, path: `/${k}/v1/chat/completions`, rps, seconds });
        const used = process.cpuUsage(cpu);
        const t = totals.get(k);
        if (t === undefined) continue;
        t.serveMs += (used.user + used.system) / 1000;
        t.envoyMs += processUsage(gw.envoy.pid).cpuMs - envoy;
        t.latencies.push(...r.latencies);
        t.p50s.push(percentile([...r.latencies].sort((a, b) => a - b), 50));
        t.requests += r.latencies.length + r.failures;
        t.failures += r.failures;
        if (r.firstFailure !== undefined) process.stderr.write(`  ${k}: ${r.failures} failed (first: ${r.firstFailure})\n`);
      }
    }
    const header = ['path', 'p50 ms', 'p50 per round', 'p90 ms', 'Envoy CPU µs/req', 'serve CPU µs/req', 'failed'];
    const rows = PATHS.map((k) => {
      const t = totals.get(k);
      if (t === undefined) return [];
      const sorted = t.latencies.sort((a, b) => a - b);
      return [k, percentile(sorted, 50).toFixed(3), t.p50s.map((p) => p.toFixed(2)).join(' '), percentile(sorted, 90).toFixed(2), ((t.envoyMs * 1000) / t.requests).toFixed(0), ((t.serveMs * 1000) / t.requests).toFixed(0), String(t.failures)];
    });
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    for (const line of [header, widths.map((w) => '-'.repeat(w)), ...rows]) process.stdout.write(`${line.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')}\n`);
    process.stdout.write(`${rps} rps, ${seconds} s per phase, ${rounds} rounds; 1-minute load average ${loadBefore.toFixed(1)} before, ${(loadavg()[0] ?? 0).toFixed(1)} after (2 CPUs shared: wall times inflated above 2)\n`);
  } finally {
    await gw.stop();
    child.send({ stop: true });
  }
}

void main();
