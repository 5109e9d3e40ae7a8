export interface WaitOptions {
  /** What is awaited, in words: it names the failure ("waiting for listener gw-80 ..."). */
  what: string;
  timeoutMs?: number;
  intervalMs?: number;
}

/** Thrown by a probe when waiting longer cannot help (the process it waits on has exited). */
export class StopWaiting extends Error {
  override name = 'StopWaiting';
}

/** A probe result that means "not yet". */
type NotYet = undefined | null | false;

/**
 * Calls `probe` until it returns something other than undefined/null/false and returns that.
 * A probe that throws counts as "not yet" (a server still starting refuses connections), except
 * with StopWaiting, which ends the wait at once; the last error and the last value are quoted in the timeout message so a failure explains itself.
 */
export async function waitFor<T>(
  probe: () => T | NotYet | Promise<T | NotYet>,
  { what, timeoutMs = 10_000, intervalMs = 50 }: WaitOptions,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  let lastValue: unknown;
  let attempts = 0;
  for (;;) {
    attempts++;
    try {
      const value = await probe();
      if (value !== undefined && value !== null && value !== false) return value;
      lastValue = value;
      lastError = undefined;
    } catch (err) {
      if (err instanceof StopWaiting) throw new Error(`gave up waiting for ${what}: ${err.message}`, { cause: err });
      lastError = err;
    }
    if (Date.now() >= deadline) break;
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
  const detail =
    lastError !== undefined ? `last error: ${describeError(lastError)}` : `last result: ${String(lastValue)}`;
  throw new Error(`timed out after ${timeoutMs} ms (${attempts} attempts) waiting for ${what}; ${detail}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // fetch hides the interesting part (ECONNREFUSED...) in `cause`.
  const cause = err.cause instanceof Error ? ` (cause: ${err.cause.message})` : '';
  return `${err.message}${cause}`;
}
