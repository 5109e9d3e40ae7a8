/**
 * The client side of the ai-extension bench, in a process of its own (forked by
 * bench/ai-extension.ts): the fake provider and the open-loop load generator. Kept out of the
 * process that runs the controller and the extension so that their event loop carries only what
 * a real `serve` carries, and so that its CPU time per request is the extension's own.
 *
 * Protocol (IPC): the child sends `{ ready, host, port }` once the fake listens; each
 * `{ phase }` message is answered with a PhaseResult; `{ stop }` closes the fake and exits.
 */
import { Agent, request } from 'node:http';
import { startFakeProvider } from '../examples/demo/fake-provider.js';

export interface PhaseOrder {
  phase: { port: number; path: string; rps: number; seconds: number };
}

export interface PhaseResult {
  latencies: number[];
  failures: number;
  /** The first failure's message, to name what went wrong. */
  firstFailure?: string;
}

export interface LoadReady {
  ready: true;
  host: string;
  port: number;
}

const BODY = JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] });
const HEADERS = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(BODY)), authorization: 'Bearer sk-bench' };

/** One POST, its latency in ms; rejects on a non-200 answer. */
function post(agent: Agent, port: number, path: string): Promise<number> {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: HEADERS }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - started) / 1e6) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(BODY);
  });
}

/** Open loop: one request every 1000/rps ms whatever the answers do, for `seconds`. */
async function phase(agent: Agent, order: PhaseOrder['phase']): Promise<PhaseResult> {
  const latencies: number[] = [];
  let failures = 0;
  let firstFailure: string | undefined;
  const pending: Promise<void>[] = [];
  const interval = 1000 / order.rps;
  const start = performance.now();
  for (let i = 0; i < order.rps * order.seconds; i++) {
    const wait = start + i * interval - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      post(agent, order.port, order.path).then(
        (ms) => void latencies.push(ms),
        (err: unknown) => {
          failures++;
          firstFailure ??= err instanceof Error ? err.message : String(err);
        },
      ),
    );
  }
  await Promise.all(pending);
  return { latencies, failures, ...(firstFailure !== undefined ? { firstFailure } : {}) };
}

async function main(): Promise<void> {
  const send = process.send?.bind(process);
  if (send === undefined) throw new Error('bench/ai-extension-load.ts runs forked by bench/ai-extension.ts (it needs an IPC channel)');
  const fake = await startFakeProvider({ name: 'provider' });
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  process.on('message', (message: PhaseOrder | { stop: true }) => {
    if ('stop' in message) {
      agent.destroy();
      void fake.close().then(() => process.exit(0));
      return;
    }
    void phase(agent, message.phase).then((result) => send(result));
  });
  const ready: LoadReady = { ready: true, host: fake.host, port: fake.port };
  send(ready);
}

void main();
