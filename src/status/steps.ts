/**
 * Work over every object (a status pass at 10,000 Backends is a quarter of a CPU-second) written
 * as a generator that yields where it may pause, so that it can run in slices with turns of the
 * event loop between them (Envoys connecting, ACKs read, keepalive pings answered), or at once.
 * A yield is only a place to pause: steps commit what they change at their end, so steps dropped
 * half way leave nothing half done.
 */
export type Steps<T> = Generator<void, T, void>;

/** Objects handled between two places where steps may pause: far below a slice's worth, enough that pausing costs nothing. */
export const OBJECTS_PER_STEP = 64;

/** Long enough for hundreds of objects; far below gRPC keepalive timeouts (seconds), like xDS fan-out's slices. */
export const STATUS_SLICE_MS = 10;

/** Runs `steps` to their end now: for callers that need the result at once. */
export function runSteps<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/**
 * Runs one pass of steps at a time in slices of at most `sliceMs`, each in a turn of the event
 * loop of its own. A pass can be finished now (a reader that needs its result) or dropped (a
 * newer pass supersedes it).
 */
export class SlicedRun {
  private pass: { steps: Steps<void>; onEnd: () => void } | undefined;
  private turn: NodeJS.Immediate | undefined;
  /** Inside a slice: a generator cannot be resumed from within itself. */
  private inSlice = false;
  /** The longest time one slice held the event loop, in ms. */
  longestSliceMs = 0;
  /** Slices run, over every pass. */
  slices = 0;
  /** Holds in force (hold()): the running pass waits for their release. */
  private holds = 0;
  /** A slice was due while held: it runs at the release. */
  private dueWhileHeld = false;

  constructor(
    /** A pass that throws ends there; what it had not committed is lost. */
    private readonly onError: (err: unknown) => void,
    private readonly sliceMs = STATUS_SLICE_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get running(): boolean {
    return this.pass !== undefined;
  }

  /** Starts `steps` and runs their first slice now; `onEnd` is called once they end or throw (not when dropped). */
  start(steps: Steps<void>, onEnd: () => void = () => undefined): void {
    if (this.pass !== undefined) throw new Error('SlicedRun.start: a pass is running; finish() or drop() it first');
    this.pass = { steps, onEnd };
    if (this.holds > 0) {
      this.dueWhileHeld = true;
      return;
    }
    this.slice(this.sliceMs);
  }

  /**
   * Keeps the running pass (and one started meanwhile) from running slices until the returned
   * release is called (holds nest): work that must not queue behind status, such as a change on
   * its way to Envoy, goes first. finish() still runs a held pass to its end.
   */
  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.holds > 0 || !this.dueWhileHeld) return;
      this.dueWhileHeld = false;
      if (this.pass !== undefined && this.turn === undefined) this.schedule();
    };
  }

  /** Runs what is left of the running pass now, to its end (called from within the pass itself: nothing). */
  finish(): void {
    if (this.inSlice) return;
    clearImmediate(this.turn);
    this.turn = undefined;
    if (this.pass !== undefined) this.slice(Infinity);
  }

  private schedule(): void {
    this.turn = setImmediate(() => {
      this.turn = undefined;
      if (this.holds > 0) {
        this.dueWhileHeld = true;
        return;
      }
      this.slice(this.sliceMs);
    });
  }

  /** Drops the running pass where it stands (called from within it: once its current step ends). */
  drop(): void {
    clearImmediate(this.turn);
    this.turn = undefined;
    const pass = this.pass;
    this.pass = undefined;
    // A generator that is running cannot be closed; the slice stops at its next step instead.
    if (!this.inSlice) pass?.steps.return();
  }

  private slice(budgetMs: number): void {
    const pass = this.pass;
    if (pass === undefined) return;
    const started = this.now();
    let ended = false;
    const outer = this.inSlice;
    this.inSlice = true;
    try {
      do {
        if (pass.steps.next().done === true) {
          ended = true;
          break;
        }
      } while (this.pass === pass && this.now() - started < budgetMs);
    } catch (err) {
      ended = true;
      this.onError(err);
    } finally {
      this.inSlice = outer;
    }
    this.slices++;
    this.longestSliceMs = Math.max(this.longestSliceMs, this.now() - started);
    if (this.pass !== pass) return;
    if (!ended) {
      this.schedule();
      return;
    }
    this.pass = undefined;
    pass.onEnd();
  }
}
