/**
 * Fans a cache change out to many streams without holding the event loop for long: streams are
 * pushed to in slices of at most `sliceMs`, and those left wait for a later turn of the loop, in
 * order. Between slices the sockets flush (freeing the transport's copies of what it wrote),
 * ACKs and new streams are read and keepalive pings answered. A stream still waiting when
 * another change comes is pushed to once, for both (it reads the cache when its turn comes).
 */
export class PacedFanOut<Stream, Change> {
  private readonly waiting = new Map<Stream, Set<Change>>();
  private turnScheduled = false;
  /** The longest time one slice held the event loop, in ms. */
  longestSliceMs = 0;

  constructor(
    private readonly push: (stream: Stream, changed: readonly Change[]) => void,
    private readonly sliceMs = PUSH_SLICE_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Queues `changed` for `stream`; run() pushes. */
  add(stream: Stream, changed: readonly Change[]): void {
    const queued = this.waiting.get(stream);
    if (queued === undefined) this.waiting.set(stream, new Set(changed));
    else for (const change of changed) queued.add(change);
  }

  /** `stream` went away: nothing more is pushed to it. */
  forget(stream: Stream): void {
    this.waiting.delete(stream);
  }

  /** Pushes to waiting streams for one slice now; the rest in later turns. */
  run(): void {
    const started = this.now();
    for (const [stream, changed] of this.waiting) {
      if (this.now() - started >= this.sliceMs) break;
      this.waiting.delete(stream);
      this.push(stream, [...changed]);
    }
    this.longestSliceMs = Math.max(this.longestSliceMs, this.now() - started);
    if (this.waiting.size > 0 && !this.turnScheduled) {
      this.turnScheduled = true;
      setImmediate(() => {
        this.turnScheduled = false;
        this.run();
      });
    }
  }
}

/** Long enough to push to dozens of streams; far below gRPC keepalive timeouts (seconds). */
export const PUSH_SLICE_MS = 10;
