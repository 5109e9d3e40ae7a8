/**
 * CPU per request of the AI extension's own work, without the gRPC transport: the five ext_proc
 * messages of one non-streamed OpenAI attempt (bench/ai-extension-messages.ts) encoded as Envoy sends them, then
 * decoded, answered and encoded by the extension, as many times as it takes. Steadier than the
 * end-to-end row on a busy machine: one process, CPU time only.
 *
 *   npx tsx bench/ai-extension-cpu.ts [requests]
 */
import { pino } from 'pino';
import { DrillNonces, DrillRejectionLog } from '../src/ai-extension/drill.js';
import { AttemptExchange, type ExchangeContext } from '../src/ai-extension/exchange.js';
import { createAiExtensionMetrics } from '../src/ai-extension/metrics.js';
import { decodeProcessingRequest, encodeProcessingResponse } from '../src/ai-extension/protocol.js';
import { RequestMemory } from '../src/ai-extension/request-memory.js';
import { REQUEST_MESSAGES, attemptMessages } from './ai-extension-messages.js';

async function run(requests: number, ctx: ExchangeContext, wire: Buffer[][]): Promise<number> {
  const started = process.cpuUsage();
  for (let i = 0; i < requests; i++) {
    const exchange = new AttemptExchange(ctx);
    const messages = (wire[i % wire.length] ?? []).map((bytes) => decodeProcessingRequest(bytes));
    // As Envoy sends them: the request's together (full duplex), then the answer's three.
    for (const [index, message] of messages.entries()) {
      if (index === 0) for (const m of messages.slice(0, REQUEST_MESSAGES)) exchange.observe(m);
      if (index === REQUEST_MESSAGES) for (const m of messages.slice(REQUEST_MESSAGES)) exchange.observe(m);
      const phaseStarted = performance.now();
      const response = await exchange.handle(message);
      if (response.phase !== 'none') encodeProcessingResponse(response);
      ctx.metrics.processing.observe({ phase: 'request_headers' }, (performance.now() - phaseStarted) / 1000);
    }
    exchange.close();
  }
  const used = process.cpuUsage(started);
  return (used.user + used.system) / requests;
}

async function main(): Promise<void> {
  const requests = Number(process.argv[2]) || 20_000;
  const ctx: ExchangeContext = {
    credentials: { resolve: () => Promise.resolve('sk-bench-provider') },
    memory: new RequestMemory(),
    metrics: createAiExtensionMetrics(),
    credentialHeaders: new Set(),
    credentialWaitMs: 1_000,
    logger: pino({ level: 'info' }),
    drill: { nonces: new DrillNonces(), rejections: new DrillRejectionLog() },
  };
  const wire = Array.from({ length: 1000 }, (_, i) => attemptMessages(i));
  await run(requests / 4, ctx, wire);
  const runs: number[] = [];
  for (let i = 0; i < 3; i++) runs.push(await run(requests, ctx, wire));
  process.stdout.write(`extension CPU per request without transport: ${runs.map((us) => us.toFixed(1)).join(', ')} µs (${requests} requests a run)\n`);
}

void main();
