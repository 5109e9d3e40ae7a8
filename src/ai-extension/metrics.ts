import { Counter, Registry } from 'prom-client';
import { HotCounter, HotHistogram } from '../observability/hot-metrics.js';

/** Why an attempt on a member failed, as the extension saw it. */
export type FailureCause = 'status_4xx' | 'status_5xx' | 'ratelimited' | 'timeout' | 'reset' | 'credential_unavailable' | 'first_token_timeout' | 'context_length_exceeded' | 'content_policy' | 'skipped_by_fallback';

export interface AiExtensionMetrics {
  registry: Registry;
  /** Attempts sent to a member (a retry counts again, on the member it went to). */
  requests: HotCounter<'backend' | 'member' | 'provider'>;
  failures: Counter<'backend' | 'member' | 'cause'>;
  /** Attempts that followed a failed attempt of the same request on another member. */
  failovers: Counter<'backend' | 'from' | 'to'>;
  tokens: HotCounter<'backend' | 'member' | 'direction'>;
  /** Attempts a signed drill header made the extension fail without calling the provider. */
  drillFailures: Counter<'backend' | 'member' | 'priority'>;
  /** Answers to drill requests, by the member that gave them; outcome answered or error. */
  drillAnswers: Counter<'backend' | 'priority' | 'member' | 'outcome'>;
  /**
   * Attempts of serve's warm-up requests (warmup.ts), answered by the extension itself; outcome
   * `ready` (Envoy had a connection), `connecting` (it was making one) or `passed` (an earlier
   * pool, stood in for on the way to the warmed one).
   */
  warmups: Counter<'backend' | 'member' | 'priority' | 'outcome'>;
  /** Time the extension spends answering Envoy for one message (its own added latency). */
  processing: HotHistogram<'phase'>;
  /** From an attempt reaching the extension to the first bytes of its member's successful answer. */
  timeToFirstToken: HotHistogram<MemberLabel>;
  /** From the request's first attempt to the end of the answer the client got (failover included). */
  requestDuration: HotHistogram<MemberLabel>;
  /** Tokens of one answer, by the member that gave it; type input or output. */
  requestTokens: HotHistogram<MemberLabel | 'type'>;
}

/**
 * Labels of the per-member histograms. Bounded by configuration: `model` is the member's
 * configured model (empty when it takes the client's), never a value a client sends.
 */
export type MemberLabel = 'backend' | 'priority' | 'member' | 'model';
const MEMBER_LABELS: MemberLabel[] = ['backend', 'priority', 'member', 'model'];

/** The extension's series, in `registry` (its own, or the controller's when both run in one process). */
export function createAiExtensionMetrics(registry = new Registry()): AiExtensionMetrics {
  const registers = [registry];
  return {
    registry,
    // Every attempt records in these (hot-metrics.ts): the rare ones stay prom-client's.
    requests: new HotCounter({
      name: 'switchyard_ai_requests_total',
      help: 'Attempts the AI extension adapted, by Backend, pool member and provider.',
      labelNames: ['backend', 'member', 'provider'],
      registers,
    }),
    failures: new Counter({
      name: 'switchyard_ai_failures_total',
      help: 'Failed attempts by member and cause: status_4xx, status_5xx, ratelimited (429), timeout (408/504), reset (no answer: refused, reset or timed out), credential_unavailable, first_token_timeout (no content token within the member\'s firstTokenTimeout; the attempt was abandoned before the client got a byte), context_length_exceeded and content_policy (a refusal the pool hands on: a 400, or a 200 refused before any content), skipped_by_fallback (an attempt failed by the extension, its provider never called, because a refusal named a later pool).',
      labelNames: ['backend', 'member', 'cause'],
      registers,
    }),
    failovers: new Counter({
      name: 'switchyard_ai_failovers_total',
      help: 'Retries of a request that moved from one pool member to another.',
      labelNames: ['backend', 'from', 'to'],
      registers,
    }),
    tokens: new HotCounter({
      name: 'switchyard_ai_tokens_total',
      help: 'Tokens reported in the providers\' usage fields, by member and direction (in: prompt, out: completion).',
      labelNames: ['backend', 'member', 'direction'],
      registers,
    }),
    drillFailures: new Counter({
      name: 'switchyard_ai_drill_failures_total',
      help: 'Attempts failed by the AI extension for a signed failover drill (switchyard drill), by Backend, member and priority; the provider was not called. Drill traffic is counted here, never in switchyard_ai_failures_total.',
      labelNames: ['backend', 'member', 'priority'],
      registers,
    }),
    drillAnswers: new Counter({
      name: 'switchyard_ai_drill_answers_total',
      help: 'Answers to failover drill requests (switchyard drill), by Backend and the priority and member that gave them; outcome answered (2xx) or error.',
      labelNames: ['backend', 'priority', 'member', 'outcome'],
      registers,
    }),
    warmups: new Counter({
      name: 'switchyard_ai_warmup_attempts_total',
      help: 'Attempts of the warm-up requests serve sends so that Envoy keeps a connection ready to every AI member, by Backend, member and priority; outcome ready, connecting or passed. Answered by the AI extension, the provider never called; counted here, never in switchyard_ai_requests_total.',
      labelNames: ['backend', 'member', 'priority', 'outcome'],
      registers,
    }),
    processing: new HotHistogram({
      name: 'switchyard_ai_extension_processing_seconds',
      help: 'Time the AI extension took to answer one ext_proc message, by phase.',
      labelNames: ['phase'],
      // Sub-millisecond work unless a credential must be fetched first.
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
      registers,
    }),
    timeToFirstToken: new HotHistogram({
      name: 'switchyard_ai_time_to_first_token_seconds',
      help: 'Time from an attempt reaching the AI extension to the first bytes of its successful answer (streamed: the first chunk), by Backend, priority, member and configured model.',
      labelNames: MEMBER_LABELS,
      buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    requestDuration: new HotHistogram({
      name: 'switchyard_ai_request_duration_seconds',
      help: 'Time from a request\'s first attempt to the end of the answer the client got (failed attempts included), by the member that answered.',
      labelNames: MEMBER_LABELS,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    }),
    requestTokens: new HotHistogram({
      name: 'switchyard_ai_request_tokens',
      help: 'Tokens of one answer as its provider reported them (type input: prompt, output: completion), by member.',
      labelNames: [...MEMBER_LABELS, 'type'],
      buckets: [16, 64, 256, 1024, 4096, 16384, 65536, 262144],
      registers,
    }),
  };
}

/** Serves the extension's series from another registry too (the controller's, in one process). */
export function registerAiExtensionMetrics(metrics: AiExtensionMetrics, registry: Registry): void {
  // In the order createAiExtensionMetrics made them, which is the order a scrape lists them in.
  metrics.requests.registerIn(registry);
  registry.registerMetric(metrics.failures);
  registry.registerMetric(metrics.failovers);
  metrics.tokens.registerIn(registry);
  registry.registerMetric(metrics.drillFailures);
  registry.registerMetric(metrics.drillAnswers);
  registry.registerMetric(metrics.warmups);
  metrics.processing.registerIn(registry);
  metrics.timeToFirstToken.registerIn(registry);
  metrics.requestDuration.registerIn(registry);
  metrics.requestTokens.registerIn(registry);
}

export function failureCause(status: number): FailureCause | undefined {
  if (status === 429) return 'ratelimited';
  if (status === 408 || status === 504) return 'timeout';
  if (status >= 500) return 'status_5xx';
  if (status >= 400) return 'status_4xx';
  return undefined;
}
