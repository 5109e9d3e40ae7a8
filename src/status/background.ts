/**
 * What the status writer and the event recorder, which both write to the API server in the
 * background, share: the pace of their retries and how callers wait for them to be done.
 */

/** The wait before the next try after `failures` failures in a row: `baseMs`, doubled per further failure, at most `maxMs`. */
export function retryDelayMs(failures: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** (failures - 1));
}

/**
 * The callers of a component's `idle()`. They wait until `isIdle` holds; the component calls
 * `settle()` whenever a piece of work ends or is dropped.
 */
export class IdleWaiters {
  private waiters: (() => void)[] = [];

  constructor(private readonly isIdle: () => boolean) {}

  wait(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  settle(): void {
    if (this.waiters.length === 0 || !this.isIdle()) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
