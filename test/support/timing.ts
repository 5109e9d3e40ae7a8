/**
 * How much later than a configured timer (a per-try timeout, a Retry-After, an ejection, a drain)
 * an end-to-end test lets the event come before it calls the behaviour broken: a bound on failure
 * only, sized for a 2-core CI machine at load 10-18 (Envoy, the controller, the fakes and vitest
 * share it). Tests judge what happened and in which order; a bound on time separates two
 * behaviours (a timer honoured or not), it never measures speed. Speed belongs in bench/.
 */
export const E2E_LOAD_MARGIN_MS = 5_000;

/**
 * How long after a write on disk an edit may take to take effect and still count as brought by the
 * file provider's watch: the watch acts within its debounce (tens of ms), the provider's periodic
 * resync only after 30 s, and this bound, the load margin twice, tells the two apart.
 */
export const WATCHED_CHANGE_MS = 2 * E2E_LOAD_MARGIN_MS;

/** Prints a measured time next to the test's output, so a slow run is visible without failing it. */
export function logTiming(what: string, ms: number): void {
  process.stdout.write(`timing: ${what}: ${Math.round(ms)} ms\n`);
}
