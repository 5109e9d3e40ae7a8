/**
 * The last real outcome of each member this extension has seen (its own answers and resets, never
 * a stand-in), so that a skipped (or drilled) attempt can carry it to Envoy's outlier detection.
 *
 * Envoy hands a stand-in's status to the picked host's outlier detector like any upstream answer,
 * and every non-5xx resets its consecutive_5xx and consecutive_gateway_failure counters (seen with
 * Envoy 1.40, test/e2e/ai-fallbacks.test.ts): a skip answered 424 between a member's 503s kept it
 * from ever being ejected. A skip of a member whose last real answer was a failure is therefore
 * answered with a 503: the counters then read the attempts since its last real success, as if the
 * skipped requests had failed like the one before them.
 */
export class MemberVerdicts {
  /** `backend member` of the members whose last real outcome was a failure. */
  private readonly failing = new Set<string>();

  /** A real outcome: a 5xx (or a reset, which Envoy counts as one) or anything else. */
  note(backend: string, member: string, failed: boolean): void {
    const key = `${backend} ${member}`;
    if (failed) this.failing.add(key);
    else this.failing.delete(key);
  }

  lastFailed(backend: string, member: string): boolean {
    return this.failing.has(`${backend} ${member}`);
  }
}

/** One per extension context, made on first use, so contexts built by tests need nothing new. */
const byContext = new WeakMap<object, MemberVerdicts>();

export function memberVerdicts(ctx: object): MemberVerdicts {
  let verdicts = byContext.get(ctx);
  if (verdicts === undefined) {
    verdicts = new MemberVerdicts();
    byContext.set(ctx, verdicts);
  }
  return verdicts;
}
