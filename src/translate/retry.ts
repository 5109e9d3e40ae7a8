import type { RetrySpec } from '../api/backend.js';
import { parseDuration } from '../api/duration.js';
import type { HTTPRouteRetry } from '../api/httproute.js';
import { ABANDONED_HEADER, type RetryPlan } from '../ir/model.js';

export const DEFAULT_RETRY_ON = ['connect-failure', 'refused-stream', 'reset', 'retriable-status-codes'];
export const DEFAULT_RETRY_CODES = [429, 500, 502, 503, 504];
export const DEFAULT_BACKOFF_MS = 25;
export const DEFAULT_HOST_SELECTION_ATTEMPTS = 3;
/** Longest Retry-After a single-pool Backend waits by default; longer values fall back to the normal back-off. */
export const DEFAULT_RATE_LIMITED_MAX_MS = 30_000;

function ms(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseDuration(text);
}

/** Envoy rejects a zero base_interval (the whole RouteConfiguration with it): "0s" means "as soon as possible". */
function backoffBase(text: string | undefined): number | undefined {
  const value = ms(text);
  return value === undefined ? undefined : Math.max(1, value);
}

/**
 * The retry plan of a Backend: DESIGN.md's defaults, then the fields its `retry` sets.
 * With more than one priority a 429 must move to the next priority at once, so Retry-After is
 * only honoured by default when there is no other priority to go to.
 */
export function backendRetryPlan(spec: RetrySpec | undefined, priorityCount: number, abandons = false): RetryPlan {
  const multi = priorityCount > 1;
  const plan: RetryPlan = {
    attempts: spec?.attempts ?? Math.max(2, priorityCount - 1),
    // Copies, never the spec's own lists: the plan is shared and frozen (translateBackend), the spec is not.
    retryOn: [...(spec?.retryOn ?? DEFAULT_RETRY_ON)],
    statusCodes: [...(spec?.statusCodes ?? DEFAULT_RETRY_CODES)],
    backoff: { baseMs: backoffBase(spec?.backoff?.baseInterval) ?? DEFAULT_BACKOFF_MS },
    avoidPreviousHosts: true,
    hostSelectionAttempts: DEFAULT_HOST_SELECTION_ATTEMPTS,
  };
  const maxBackoff = ms(spec?.backoff?.maxInterval);
  // Envoy rejects max_interval < base_interval, and with it every route of the listener.
  if (maxBackoff !== undefined && maxBackoff >= plan.backoff.baseMs) plan.backoff.maxMs = maxBackoff;
  const perTry = ms(spec?.perTryTimeout);
  if (perTry !== undefined) plan.perTryTimeoutMs = perTry;
  if (multi) plan.attemptsPerPriority = spec?.attemptsPerPriority ?? 1;
  if (spec?.rateLimitedBackoff) {
    plan.rateLimited = {
      resetHeaders: spec.rateLimitedBackoff.resetHeaders.map((h) => ({ name: h.name, format: h.format })),
      maxMs: ms(spec.rateLimitedBackoff.maxInterval) ?? DEFAULT_RATE_LIMITED_MAX_MS,
    };
  } else if (!multi) {
    plan.rateLimited = { resetHeaders: [{ name: 'retry-after', format: 'Seconds' }], maxMs: DEFAULT_RATE_LIMITED_MAX_MS };
  }
  if (plan.statusCodes.length > 0 && !plan.retryOn.includes('retriable-status-codes')) {
    plan.retryOn = [...plan.retryOn, 'retriable-status-codes'];
  }
  // An attempt the AI extension abandons (first-token deadline) is retried whatever statusCodes says.
  if (abandons) {
    plan.retriableHeaders = [ABANDONED_HEADER];
    if (!plan.retryOn.includes('retriable-headers')) plan.retryOn = [...plan.retryOn, 'retriable-headers'];
  }
  return plan;
}

/** GEP-1731: an HTTPRoute rule's `retry` overrides only the fields it sets. */
export function withRouteRetry(plan: RetryPlan, route: HTTPRouteRetry | undefined, backendRequestMs: number | undefined): RetryPlan {
  const next: RetryPlan = { ...plan, backoff: { ...plan.backoff }, retryOn: [...plan.retryOn], statusCodes: [...plan.statusCodes] };
  if (plan.retriableHeaders) next.retriableHeaders = [...plan.retriableHeaders];
  if (plan.namedFallback) next.namedFallback = { ...plan.namedFallback };
  if (route?.attempts !== undefined) next.attempts = route.attempts;
  if (route?.codes !== undefined) {
    next.statusCodes = [...route.codes];
    if (!next.retryOn.includes('retriable-status-codes')) next.retryOn.push('retriable-status-codes');
  }
  const backoff = backoffBase(route?.backoff);
  if (backoff !== undefined) {
    next.backoff.baseMs = backoff;
    if (next.backoff.maxMs !== undefined && next.backoff.maxMs < backoff) delete next.backoff.maxMs;
  }
  if (backendRequestMs !== undefined) next.perTryTimeoutMs = backendRequestMs;
  return next;
}
