import { describe, expect, it } from 'vitest';
import type { RetrySpec } from '../../src/api/backend.js';
import type { RetryPlan } from '../../src/ir/model.js';
import { backendRetryPlan, withRouteRetry } from '../../src/translate/retry.js';

const FAILOVER_CONDITIONS = ['connect-failure', 'refused-stream', 'reset', 'retriable-status-codes'];
const FAILOVER_CODES = [429, 500, 502, 503, 504];

describe('backendRetryPlan back-off Envoy would reject', () => {
  it('drops a maxInterval below baseInterval rather than configure max < base', () => {
    expect(backendRetryPlan({ backoff: { baseInterval: '1s', maxInterval: '100ms' } }, 2).backoff).toEqual({ baseMs: 1_000 });
  });

  it('turns a zero baseInterval into the smallest base Envoy accepts', () => {
    expect(backendRetryPlan({ backoff: { baseInterval: '0s' } }, 2).backoff).toEqual({ baseMs: 1 });
  });
});

describe('backendRetryPlan defaults (no retry block)', () => {
  it('fails over across priorities: attempts = priorities - 1, at least 2', () => {
    expect([1, 2, 3, 4, 6, 16].map((n) => backendRetryPlan(undefined, n).attempts)).toEqual([2, 2, 2, 3, 5, 15]);
  });

  it('retries connect failures, resets and 429/5xx with a 25 ms back-off, avoiding hosts that already failed', () => {
    const plan = backendRetryPlan(undefined, 3);
    expect(plan.retryOn).toEqual(FAILOVER_CONDITIONS);
    expect(plan.statusCodes).toEqual(FAILOVER_CODES);
    expect(plan.backoff).toEqual({ baseMs: 25 });
    expect(plan.avoidPreviousHosts).toBe(true);
    expect(plan.hostSelectionAttempts).toBeGreaterThanOrEqual(3);
    expect(plan.perTryTimeoutMs).toBeUndefined();
  });

  it('moves to the next priority after every failed attempt when there is one', () => {
    expect(backendRetryPlan(undefined, 2).attemptsPerPriority).toBe(1);
    expect(backendRetryPlan(undefined, 1).attemptsPerPriority).toBeUndefined();
  });

  it('honours Retry-After only when no other priority can answer', () => {
    expect(backendRetryPlan(undefined, 1).rateLimited).toEqual({ resetHeaders: [{ name: 'retry-after', format: 'Seconds' }], maxMs: 30_000 });
    expect(backendRetryPlan(undefined, 2).rateLimited).toBeUndefined();
  });

  it('returns fresh lists: changing one plan does not change the defaults of the next', () => {
    const first = backendRetryPlan(undefined, 2);
    first.retryOn.push('5xx');
    first.statusCodes.push(418);
    expect(backendRetryPlan(undefined, 2).retryOn).toEqual(FAILOVER_CONDITIONS);
    expect(backendRetryPlan(undefined, 2).statusCodes).toEqual(FAILOVER_CODES);
  });
});

describe('backendRetryPlan with a retry block', () => {
  const full: RetrySpec = {
    attempts: 4,
    retryOn: ['5xx', 'reset'],
    statusCodes: [429],
    perTryTimeout: '10s',
    backoff: { baseInterval: '50ms', maxInterval: '2s' },
    rateLimitedBackoff: { resetHeaders: [{ name: 'x-ratelimit-reset', format: 'UnixTimestamp' }], maxInterval: '1m' },
    attemptsPerPriority: 2,
  };

  it('takes every field it sets', () => {
    const plan = backendRetryPlan(full, 3);
    expect(plan).toMatchObject({
      attempts: 4,
      statusCodes: [429],
      perTryTimeoutMs: 10_000,
      backoff: { baseMs: 50, maxMs: 2_000 },
      rateLimited: { resetHeaders: [{ name: 'x-ratelimit-reset', format: 'UnixTimestamp' }], maxMs: 60_000 },
      attemptsPerPriority: 2,
    });
  });

  it('adds retriable-status-codes to retryOn when status codes are set, so the codes take effect', () => {
    expect(backendRetryPlan(full, 3).retryOn).toEqual(['5xx', 'reset', 'retriable-status-codes']);
    expect(backendRetryPlan({ retryOn: ['5xx'], statusCodes: [] }, 3).retryOn).toEqual(['5xx']);
  });

  it('keeps the defaults for the fields it leaves out', () => {
    const plan = backendRetryPlan({ attempts: 1 }, 3);
    expect(plan.attempts).toBe(1);
    expect(plan.retryOn).toEqual(FAILOVER_CONDITIONS);
    expect(plan.statusCodes).toEqual(FAILOVER_CODES);
    expect(plan.backoff).toEqual({ baseMs: 25 });
    expect(plan.attemptsPerPriority).toBe(1);
  });

  it('accepts attempts: 0 (no retries) instead of the default', () => {
    expect(backendRetryPlan({ attempts: 0 }, 3).attempts).toBe(0);
  });

  it('ignores attemptsPerPriority with one priority (previous_priorities has nothing to do)', () => {
    expect(backendRetryPlan({ attemptsPerPriority: 3 }, 1).attemptsPerPriority).toBeUndefined();
  });

  it('uses a 30 s ceiling for Retry-After when rateLimitedBackoff gives none, even with several priorities', () => {
    const plan = backendRetryPlan({ rateLimitedBackoff: { resetHeaders: [{ name: 'retry-after', format: 'Seconds' }] } }, 3);
    expect(plan.rateLimited?.maxMs).toBe(30_000);
  });
});

describe('withRouteRetry (GEP-1731: the HTTPRoute rule overrides only what it sets)', () => {
  const base: RetryPlan = backendRetryPlan(
    { attempts: 4, retryOn: ['5xx'], statusCodes: [503], perTryTimeout: '10s', backoff: { baseInterval: '50ms', maxInterval: '2s' } },
    3,
  );

  it('changes nothing without a retry block or timeout', () => {
    expect(withRouteRetry(base, undefined, undefined)).toEqual(base);
  });

  it('codes replace the Backend status codes; everything else stays', () => {
    const plan = withRouteRetry(base, { codes: [429, 502] }, undefined);
    expect(plan.statusCodes).toEqual([429, 502]);
    expect(plan.attempts).toBe(4);
    expect(plan.backoff).toEqual({ baseMs: 50, maxMs: 2_000 });
    expect(plan.perTryTimeoutMs).toBe(10_000);
    expect(plan.attemptsPerPriority).toBe(1);
  });

  it('codes turn on retriable-status-codes when the Backend retryOn lacks it', () => {
    const plain = backendRetryPlan({ retryOn: ['gateway-error'], statusCodes: [] }, 2);
    expect(withRouteRetry(plain, { codes: [429] }, undefined).retryOn).toEqual(['gateway-error', 'retriable-status-codes']);
  });

  it('attempts replace the Backend attempts, 0 included', () => {
    expect(withRouteRetry(base, { attempts: 7 }, undefined).attempts).toBe(7);
    expect(withRouteRetry(base, { attempts: 0 }, undefined).attempts).toBe(0);
  });

  it('backoff sets the base interval and keeps a maxInterval that is still larger', () => {
    expect(withRouteRetry(base, { backoff: '100ms' }, undefined).backoff).toEqual({ baseMs: 100, maxMs: 2_000 });
  });

  it('backoff 0s becomes the smallest base Envoy accepts (it rejects a zero base_interval)', () => {
    expect(withRouteRetry(base, { backoff: '0s' }, undefined).backoff.baseMs).toBe(1);
  });

  it('backoff above the Backend maxInterval drops the max rather than configure max < base', () => {
    expect(withRouteRetry(base, { backoff: '5s' }, undefined).backoff).toEqual({ baseMs: 5_000 });
  });

  it('timeouts.backendRequest becomes the per-try timeout', () => {
    expect(withRouteRetry(base, undefined, 20_000).perTryTimeoutMs).toBe(20_000);
  });

  it('does not modify the Backend plan it starts from (other rules share it)', () => {
    const before = structuredClone(base);
    withRouteRetry(base, { codes: [429], attempts: 1, backoff: '5s' }, 1_000);
    expect(base).toEqual(before);
  });
});
