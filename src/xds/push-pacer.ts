/**
 * Fans a cache change out to many streams without holding the event loop for long: streams are
 * pushed to in slices of at most `sliceMs`, and those left wait for a later turn of the loop, in
 * order. Between slices the sockets flush (freeing the transport's copies of what it wrote),
 * ACKs and new streams are read and keepalive pings answered. A stream still waiting when
 * another change comes is pushed to once, for both (it reads the cache when its turn comes).
 */
export class PacedFanOut<Stream, Change> {
  /** Stream → what changed for it, in order. A change's list is shared by every stream it reaches until one of them gets another. */
  private readonly waiting = new Map<Stream, readonly Change[]>();
  private turnScheduled = false;
  /** The longest time one slice held the event loop, in ms. */
  longestSliceMs = 0;

  constructor(
    private readonly push: (stream: Stream, changed: readonly Change[]) => void,
    private readonly sliceMs = PUSH_SLICE_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Streams a change still has to be pushed to. */
  get busy(): boolean {
    return this.waiting.size > 0;
  }

  /** Queues `changed` for `stream`; run() pushes. */
  add(stream: Stream, changed: readonly Change[]): void {
    const queued = this.waiting.get(stream);
    if (queued === undefined) this.waiting.set(stream, changed);
    else if (queued !== changed) this.waiting.set(stream, [...new Set([...queued, ...changed])]);
  }

  /** `stream` went away: nothing more is pushed to it. */
  forget(stream: Stream): void {
    this.waiting.delete(stream);
  }

  /** Pushes to waiting streams for one slice now (of `sliceMs`, at least one push); the rest in later turns, in slices of the usual length. */
  run(sliceMs = this.sliceMs): void {
    const started = this.now();
    // Keys, not entries: no [stream, changed] pair made per stream.
    for (const stream of this.waiting.keys()) {
      if (this.now() - started >= sliceMs) break;
      const changed = this.waiting.get(stream) as readonly Change[];
      this.waiting.delete(stream);
      this.push(stream, changed);
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

/**
 * The first slice of a change's fan-out, run where the change is made. Node's HTTP/2 sends what a
 * slice wrote only once the slice has returned to the event loop: a short first slice puts the
 * first streams' bytes on the wire at once instead of after a whole slice of pushes.
 */
export const FIRST_PUSH_SLICE_MS = 1;

/**
 * Runs work that arrives in bursts (the first requests of a fleet that connects at once: each
 * selects and answers a whole configuration) in slices of at most `sliceMs` per turn of the
 * event loop, in arrival order. A request that finds the current slice spent waits for the next
 * turn, so that connections are accepted, responses written and keepalives answered between
 * slices. One at a time, work runs at once, as without the queue.
 *
 * While `yieldTo()` says other work goes first (a change being pushed to the fleet), tasks wait
 * for a turn when it no longer does: the ACKs of the first streams pushed to would otherwise
 * be handled between the slices of the push, and the last streams get the change that much later.
 */
export class SlicedWork {
  private readonly queue: (() => void)[] = [];
  private head = 0;
  /** A slice is open until the next turn of the loop; it began at `sliceStart`. */
  private sliceOpen = false;
  private sliceStart = 0;
  /** The longest time one slice held the event loop, in ms. */
  longestSliceMs = 0;

  constructor(
    private readonly sliceMs = PUSH_SLICE_MS,
    private readonly now: () => number = () => performance.now(),
    private readonly yieldTo: () => boolean = () => false,
  ) {}

  /** Runs `task` now when the slice has room and nothing waits; else after what waits. */
  add(task: () => void): void {
    if (!this.sliceOpen) this.open();
    if (this.head === this.queue.length && this.now() - this.sliceStart < this.sliceMs && !this.yieldTo()) {
      task();
      this.longestSliceMs = Math.max(this.longestSliceMs, this.now() - this.sliceStart);
      return;
    }
    this.queue.push(task);
  }

  /** Tasks waiting for a later turn. */
  get waiting(): number {
    return this.queue.length - this.head;
  }

  private open(): void {
    this.sliceOpen = true;
    this.sliceStart = this.now();
    setImmediate(() => this.turn());
  }

  private turn(): void {
    this.sliceOpen = false;
    if (this.head === this.queue.length) return;
    this.open();
    // Looked at again next turn; whatever it yields to takes turns of its own meanwhile.
    if (this.yieldTo()) return;
    while (this.head < this.queue.length && this.now() - this.sliceStart < this.sliceMs) {
      const task = this.queue[this.head]!;
      this.queue[this.head++] = noop;
      task();
    }
    this.longestSliceMs = Math.max(this.longestSliceMs, this.now() - this.sliceStart);
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    }
  }
}

function noop(): void {}
