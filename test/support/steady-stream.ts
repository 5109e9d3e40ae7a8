import { sleep } from './wait.js';

/**
 * Calls `send` `ratePerSecond` times a second, without waiting for its outcomes, while `during`
 * runs and for `tailMs` after it; resolves with every outcome once all have settled.
 *
 * Each tick sends what is due since the start: on a loaded machine ticks come late, and one call
 * per tick fell short of the rate (29 requests in 2 s once, at load average 17).
 */
export async function steadyStream<T>(send: () => Promise<T>, ratePerSecond: number, during: () => Promise<void>, tailMs: number): Promise<T[]> {
  const inFlight: Promise<T>[] = [];
  const started = Date.now();
  const timer = setInterval(() => {
    const due = Math.floor(((Date.now() - started) * ratePerSecond) / 1000);
    while (inFlight.length < due) inFlight.push(send());
  }, 1000 / ratePerSecond);
  try {
    await during();
    await sleep(tailMs);
  } finally {
    clearInterval(timer);
  }
  return Promise.all(inFlight);
}
