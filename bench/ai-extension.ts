/**
 * The AI extension's added latency per request: the real controller with its in-process
 * extension, the real Envoy and one fake provider reached two ways — through an AI Backend (every
 * attempt goes through the extension: credential, path, model, usage) and through a Static
 * Backend (no extension) — at a steady open-loop rate. Added latency = p50(AI) − p50(Static),
 * phases alternated so both see the same machine load. A third path, an AI Backend with a
 * firstTokenTimeout, measures what holding each answer's headers for its first token adds. The extension's own time per message
 * (its processing histogram) is reported alongside.
 */
import { Agent, request } from 'node:http';
import { NAMESPACE, aiBackend, gatewayManifests, httpRoute, secret, startGatewayFixture, type GatewayFixture, type Manifest } from '../test/support/gateway-fixture.js';
import type { BenchRow } from './suite.js';

export const AI_EXTENSION_TARGET_MS = 2;

export interface AiExtensionBenchOptions {
  /** Requests per second in each phase. */
  rps?: number;
  /** Seconds per phase; phases alternate Static, AI, Static, AI. */
  phaseSeconds?: number;
  log?: (line: string) => void;
}

const BODY = JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] });

function withDeadline(backend: Manifest): Manifest {
  (backend['spec'] as { ai: { firstTokenTimeout?: string } }).ai.firstTokenTimeout = '10s';
  return backend;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** One POST, its latency in ms; rejects on a non-200 answer. */
function post(agent: Agent, port: number, path: string): Promise<number> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - started) / 1e6) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(BODY);
  });
}

/** Open loop: one request every 1000/rps ms whatever the answers do, for `seconds`. */
async function phase(agent: Agent, port: number, path: string, rps: number, seconds: number): Promise<{ latencies: number[]; failures: number }> {
  const latencies: number[] = [];
  let failures = 0;
  const pending: Promise<void>[] = [];
  const interval = 1000 / rps;
  const start = performance.now();
  for (let i = 0; i < rps * seconds; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(post(agent, port, path).then((ms) => void latencies.push(ms), () => void failures++));
  }
  await Promise.all(pending);
  return { latencies, failures };
}

/** Mean seconds per message of the extension's processing histogram, from Prometheus text. */
function meanProcessingMs(metrics: string): number {
  let sum = 0;
  let count = 0;
  for (const line of metrics.split('\n')) {
    if (line.startsWith('switchyard_ai_extension_processing_seconds_sum')) sum += Number(line.split(' ').at(-1));
    if (line.startsWith('switchyard_ai_extension_processing_seconds_count')) count += Number(line.split(' ').at(-1));
  }
  return count === 0 ? Number.NaN : (sum / count) * 1000;
}

export async function runAiExtensionBench(opts: AiExtensionBenchOptions = {}): Promise<BenchRow[]> {
  const rps = opts.rps ?? 200;
  const seconds = opts.phaseSeconds ?? 4;
  const log = opts.log ?? (() => undefined);
  let gw: GatewayFixture | undefined;
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  try {
    gw = await startGatewayFixture({
      id: 'bench-ai-extension',
      providers: ['provider'],
      manifests: ({ listenerPort, fakes }) => {
        const fake = fakes['provider'];
        if (!fake) throw new Error('fake provider missing');
        return {
          'gateway.yaml': gatewayManifests(listenerPort),
          'backends.yaml': [
            secret('bench-key', 'Bearer sk-bench-provider'),
            aiBackend({ name: 'ai', llm: true, priorities: [[{ fake, hostname: 'provider.bench', model: 'gpt-4o', secret: 'bench-key' }]] }),
            // The same with a first-token deadline: each answer's headers wait for its first content.
            withDeadline(aiBackend({ name: 'deadline', llm: true, priorities: [[{ fake, hostname: 'provider.bench', model: 'gpt-4o', secret: 'bench-key' }]] })),
            {
              apiVersion: 'switchyard.dev/v1alpha1',
              kind: 'Backend',
              metadata: { name: 'static', namespace: NAMESPACE },
              spec: { type: 'Static', static: { priorities: [{ hosts: [{ host: fake.host, port: fake.port }] }] } },
            },
          ],
          'routes.yaml': [
            httpRoute('bench', [
              { path: '/ai/v1', rewritePrefix: '/v1', backend: 'ai' },
              { path: '/static/v1', rewritePrefix: '/v1', backend: 'static' },
              { path: '/deadline/v1', rewritePrefix: '/v1', backend: 'deadline' },
            ]),
          ],
        };
      },
      waitForBackends: ['ai', 'static', 'deadline'],
    });
    const port = gw.listenerPort;
    // Warm both paths (connections, JIT) before measuring.
    await phase(agent, port, '/static/v1/chat/completions', rps, 1);
    await phase(agent, port, '/ai/v1/chat/completions', rps, 1);
    await phase(agent, port, '/deadline/v1/chat/completions', rps, 1);
    const results = { static: [] as number[], ai: [] as number[], deadline: [] as number[] };
    let failures = 0;
    for (let round = 0; round < 2; round++) {
      for (const kind of ['static', 'ai', 'deadline'] as const) {
        log(`ai-extension: ${kind} path, ${rps} rps for ${seconds} s (round ${round + 1}/2)`);
        const r = await phase(agent, port, `/${kind}/v1/chat/completions`, rps, seconds);
        results[kind].push(...r.latencies);
        failures += r.failures;
      }
    }
    const processing = meanProcessingMs(await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/metrics`)).text());
    const s = results.static.sort((a, b) => a - b);
    const a = results.ai.sort((a2, b) => a2 - b);
    const d = results.deadline.sort((a2, b) => a2 - b);
    const added = percentile(a, 50) - percentile(s, 50);
    const row = (name: string, ms: number, detail: string, target?: boolean): BenchRow => ({
      suite: 'ai-extension',
      name,
      n: rps,
      ms,
      runs: 2,
      heapMB: undefined,
      detail,
      ...(target === undefined ? {} : { target: `< ${AI_EXTENSION_TARGET_MS} ms`, verdict: target ? 'PASS' : 'FAIL' }),
    });
    return [
      row(
        'added latency p50',
        added,
        `p50 ${percentile(a, 50).toFixed(2)} ms through the extension vs ${percentile(s, 50).toFixed(2)} ms without; ${a.length + s.length} requests, ${failures} failed`,
        added < AI_EXTENSION_TARGET_MS && failures === 0,
      ),
      row(
        'added latency p99',
        percentile(a, 99) - percentile(s, 99),
        `p99 ${percentile(a, 99).toFixed(2)} ms vs ${percentile(s, 99).toFixed(2)} ms; p90 ${percentile(a, 90).toFixed(2)} ms vs ${percentile(s, 90).toFixed(2)} ms (the tail follows machine load: controller, extension, fake and load generator share this process)`,
      ),
      row(
        'added latency p50, firstTokenTimeout set',
        percentile(d, 50) - percentile(s, 50),
        `p50 ${percentile(d, 50).toFixed(2)} ms with the answer's headers held for its first token vs ${percentile(s, 50).toFixed(2)} ms without the extension; p99 ${percentile(d, 99).toFixed(2)} ms`,
      ),
      row('extension time per message', processing, 'mean time the extension spent answering one ext_proc message (4 per request: request headers and body, response headers and body), warm-up included'),
    ];
  } finally {
    agent.destroy();
    await gw?.stop();
  }
}
