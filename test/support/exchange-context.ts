import { pino } from 'pino';
import { DrillNonces, DrillRejectionLog } from '../../src/ai-extension/drill.js';
import type { ExchangeContext } from '../../src/ai-extension/exchange.js';
import { createAiExtensionMetrics } from '../../src/ai-extension/metrics.js';
import { RequestMemory } from '../../src/ai-extension/request-memory.js';

/**
 * An AI extension's per-attempt context for tests that drive AttemptExchange directly: every
 * credential resolves to `credential` at once, fresh metrics and memory, a silent logger; `extra`
 * adds what a test exercises (warm-up orders, a span sink).
 */
export function exchangeContext(credential: string, extra: Partial<ExchangeContext> = {}): ExchangeContext {
  return {
    credentials: { resolve: () => Promise.resolve(credential) },
    memory: new RequestMemory(),
    metrics: createAiExtensionMetrics(),
    credentialHeaders: new Set(),
    credentialWaitMs: 10,
    logger: pino({ level: 'silent' }),
    drill: { nonces: new DrillNonces(), rejections: new DrillRejectionLog() },
    ...extra,
  };
}
