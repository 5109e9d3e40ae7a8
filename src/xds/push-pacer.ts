/**
 * Fans a cache change out to many streams without holding the event loop for long: streams are
 * pushed to in slices of at most `sliceMs`, and those left wait for a later turn of the loop, in
 * order. Between slices the sockets flush (freeing the transport's copies of what it wrote),
 * ACKs and new streams are read and keepalive pings answered. A stream still waiting when
 * another change comes is pushed to once, for both (it reads the cache when its turn comes).
 */
export class PacedFanOut<Stream, Change> {
  /**
   * The streams waiting, in order, from `head` to `tail`: slots are overwritten, never dropped, so
   * that a change to a thousand streams grows no table and no array once the first has (a Map of
   * the waiting streams was grown and shrunk again on every change). A forgotten stream's slot
   * stays and is skipped. It holds object elements from the start (one empty slot): filled first by
   * a change, it would change its elements kind then, and code V8 compiled for a queue of objects
   * (the push rehearsal's, push-rehearsal.ts) would be thrown away at the first edit.
   */
  private readonly queue: (Stream | undefined)[] = [undefined];
  private head = 0;
  private tail = 0;
  private waitingCount = 0;
  private turnScheduled = false;
  /** Queue slots ever filled and ever passed (pushed or skipped): whenSent() waits for a count of the second. */
  private slotsAdded = 0;
  private slotsPassed = 0;
  /** Called once the streams waiting at whenSent() have been pushed and their writes handed to the sockets. */
  private sentListeners: { listener: () => void; until: number }[] = [];
  /**
   * The least `until` of `sentListeners`; when there is none, `slotsPassed` at the last turn for
   * them, so that it is due again at the next slice. run() asks for a turn after every slice this
   * is due at, listeners or not, and so runs the same code in every queue: the push rehearsal's
   * (push-rehearsal.ts) never has a listener, and when run() read the array (its length, then the
   * listeners') only when the real server had one, V8 threw run()'s compiled code away at a
   * fleet's first edit ("wrong map" on the array, then "insufficient type feedback" on the call)
   * and compiled it again, 8-12 ms of a V8 thread inside the edit. The turn finds no listener then
   * and only moves this on: a field run() reads that no queue ever changed is one V8 takes for a
   * constant, and a first change of it throws run()'s code away too ("field type constness").
   */
  private sentUntil = 0;
  /** How many `sentListeners` wait: what the turn asks, not the array's length (the array's map differs once it holds one). */
  private sentWaiting = 0;
  /** `slotsPassed` when the turn for the listeners was asked for: it calls those due then, not those a slice of its own turn reached. */
  private sentPassedAt = 0;
  private sentTurnScheduled = false;
  /**
   * The longest time one slice held the event loop, in ms. Starts as -0, a number V8 keeps as a
   * double (0 would be a small integer until the first slice wrote a fraction): the real server's
   * queue first runs at an edit, after the push rehearsal's queue (push-rehearsal.ts) changed the
   * field's representation, and code compiled for the rehearsal's would be thrown away then.
   */
  longestSliceMs = -0;
  /** hold(): no slice runs until release(). */
  private held = false;

  /**
   * `pending`: where what changed for a waiting stream is kept (a field of the stream, say); by
   * default a Map. A change's list is shared by every stream it reaches until one of them gets another.
   */
  constructor(
    private readonly push: (stream: Stream, changed: readonly Change[]) => void,
    private readonly sliceMs = PUSH_SLICE_MS,
    private readonly now: () => number = monotonicNow,
    private readonly pending: PendingChanges<Stream, Change> = new MapOfPending(),
  ) {}

  /** Streams a change still has to be pushed to. */
  get busy(): boolean {
    return this.waitingCount > 0;
  }

  /** Queues `changed` for `stream`; run() pushes. */
  add(stream: Stream, changed: readonly Change[]): void {
    const queued = this.pending.get(stream);
    if (queued === undefined) {
      this.pending.set(stream, changed);
      this.queue[this.tail++] = stream;
      this.slotsAdded++;
      this.waitingCount++;
    } else if (queued !== changed) this.pending.set(stream, [...new Set([...queued, ...changed])]);
  }

  /** `stream` went away: nothing more is pushed to it. */
  forget(stream: Stream): void {
    if (this.pending.get(stream) === undefined) return;
    this.pending.set(stream, undefined);
    this.waitingCount--;
  }

  /**
   * The streams still waiting wait until release(): the running slice ends after its current push
   * and no later one runs. A change's first stream then has the event loop and the sockets to
   * itself until its response has left (server.ts, LeadWrite).
   */
  hold(): void {
    this.held = true;
  }

  /** Ends hold(): the streams waiting are pushed to from the next turn on. */
  release(): void {
    if (!this.held) return;
    this.held = false;
    this.scheduleTurn();
  }

  /** Pushes to waiting streams for one slice now (of `sliceMs`, at least one push); the rest in later turns, in slices of the usual length. */
  run(sliceMs = this.sliceMs): void {
    const started = this.now();
    while (this.head < this.tail) {
      if (this.held || this.now() - started >= sliceMs) break;
      const stream = this.queue[this.head] as Stream;
      this.queue[this.head++] = undefined;
      this.slotsPassed++;
      const changed = this.pending.get(stream);
      if (changed === undefined) continue;
      this.pending.set(stream, undefined);
      this.waitingCount--;
      this.push(stream, changed);
    }
    if (this.head === this.tail) {
      this.head = 0;
      this.tail = 0;
    }
    this.longestSliceMs = Math.max(this.longestSliceMs, this.now() - started);
    this.scheduleTurn();
    this.scheduleSent();
  }

  private scheduleTurn(): void {
    if (this.waitingCount === 0 || this.turnScheduled || this.held) return;
    this.turnScheduled = true;
    setImmediate(() => {
      this.turnScheduled = false;
      // Held since it was scheduled: release() schedules the next.
      if (!this.held) this.run();
    });
  }

  /**
   * Calls `listener` once every stream waiting now has been pushed to and the writes of that slice
   * have left for the sockets: a turn of the event loop after the slice (Node's HTTP/2 sends what
   * a turn wrote at the start of the next check phase, before the callbacks queued with
   * setImmediate in that turn run). Nothing waiting: at the next turn. Streams a later change
   * queues are not waited for, so that changes that keep coming do not hold the listener for ever.
   * For work that is not on the Envoys' path (status), which would otherwise run in the turn of
   * the last slice and hold its writes back.
   */
  whenSent(listener: () => void): void {
    const until = this.waitingCount === 0 ? this.slotsPassed : this.slotsAdded;
    if (this.sentWaiting === 0 || until < this.sentUntil) this.sentUntil = until;
    this.sentListeners.push({ listener, until });
    this.sentWaiting = this.sentListeners.length;
    this.scheduleSent();
  }

  /** A turn for the listeners when the first is due (and after every slice when there is none: see sentUntil). */
  private scheduleSent(): void {
    if (this.sentTurnScheduled || this.sentUntil > this.slotsPassed) return;
    this.sentTurnScheduled = true;
    this.sentPassedAt = this.slotsPassed;
    setImmediate(() => {
      this.sentTurnScheduled = false;
      // None waits: the field moves on all the same, in every queue (see sentUntil).
      if (this.sentWaiting === 0) this.sentUntil = this.slotsPassed;
      else this.callSentListeners();
    });
  }

  private callSentListeners(): void {
    const passed = this.sentPassedAt;
    const due = this.sentListeners.filter((l) => l.until <= passed);
    this.sentListeners = this.sentListeners.filter((l) => l.until > passed);
    this.sentWaiting = this.sentListeners.length;
    this.sentUntil = this.sentWaiting === 0 ? this.slotsPassed : Math.min(...this.sentListeners.map((l) => l.until));
    // Those a slice reached after the turn was asked for (in this turn, before it): the next turn.
    if (this.sentWaiting > 0) this.scheduleSent();
    for (const l of due) l.listener();
  }
}

/** What changed for each waiting stream of a PacedFanOut; undefined: the stream is not waiting. */
export interface PendingChanges<Stream, Change> {
  get(stream: Stream): readonly Change[] | undefined;
  set(stream: Stream, changed: readonly Change[] | undefined): void;
}

class MapOfPending<Stream, Change> implements PendingChanges<Stream, Change> {
  private readonly map = new Map<Stream, readonly Change[]>();

  get(stream: Stream): readonly Change[] | undefined {
    return this.map.get(stream);
  }

  set(stream: Stream, changed: readonly Change[] | undefined): void {
    if (changed === undefined) this.map.delete(stream);
    else this.map.set(stream, changed);
  }
}

/**
 * The default clock: one function for every queue, so that the call in a queue's loop has one
 * target whichever queue runs it (a closure per queue made V8 drop the loop's compiled code when
 * the real server's fan-out first ran after the push rehearsal's).
 */
function monotonicNow(): number {
  return performance.now();
}

/** Long enough to push to dozens of streams; far below gRPC keepalive timeouts (seconds). */
export const PUSH_SLICE_MS = 10;

/**
 * The slices of a change's fan-out after the first. Every turn of the event loop between two
 * slices also reads the ACKs of the streams already pushed to (Node reads every ready socket
 * before it runs the next slice), so the last streams waited for the first ones' ACKs: at 50
 * Backends x 1,000 delta streams, with 50 ms slices instead of 10, serve's CPU from the edit to
 * the last stream's ACK fell from about 57 to 48 ms and the time itself from about 150 to 120 ms
 * (under load, issue 9; the ACKs are read and handled right after: an edit's whole CPU is the same).
 * Bounded all the same: a larger fleet or configuration still yields well within keepalive
 * timeouts and the event-loop stall target (1 s).
 */
export const FANOUT_SLICE_MS = 50;

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
  /**
   * Tasks waiting from `head` to `tail`, with their arguments at the same index: a task per stream
   * and its request, not a closure per request. Slots are overwritten, never dropped: the ACKs of a
   * thousand streams wait here during every push, and emptied arrays would grow again each time.
   */
  private readonly queue: ((arg: unknown) => void)[] = [];
  private readonly args: unknown[] = [];
  private head = 0;
  private tail = 0;
  /** A slice is open until the next turn of the loop; it began at `sliceStart`. */
  private sliceOpen = false;
  private sliceStart = 0;
  /** The longest time one slice held the event loop, in ms. */
  longestSliceMs = 0;

  constructor(
    private readonly sliceMs = PUSH_SLICE_MS,
    private readonly now: () => number = monotonicNow,
    private readonly yieldTo: () => boolean = () => false,
  ) {}

  /** Runs `task(arg)` now when the slice has room and nothing waits; else after what waits. */
  add(task: () => void): void;
  add<T>(task: (arg: T) => void, arg: T): void;
  add<T>(task: (arg: T) => void, arg?: T): void {
    if (!this.sliceOpen) this.open();
    if (this.head === this.tail && this.now() - this.sliceStart < this.sliceMs && !this.yieldTo()) {
      task(arg as T);
      this.longestSliceMs = Math.max(this.longestSliceMs, this.now() - this.sliceStart);
      return;
    }
    this.queue[this.tail] = task as (arg: unknown) => void;
    this.args[this.tail++] = arg;
  }

  /** Tasks waiting for a later turn. */
  get waiting(): number {
    return this.tail - this.head;
  }

  private open(): void {
    this.sliceOpen = true;
    this.sliceStart = this.now();
    setImmediate(() => this.turn());
  }

  private turn(): void {
    this.sliceOpen = false;
    if (this.head === this.tail) return;
    this.open();
    // Looked at again next turn; whatever it yields to takes turns of its own meanwhile.
    if (this.yieldTo()) return;
    while (this.head < this.tail && this.now() - this.sliceStart < this.sliceMs) {
      const task = this.queue[this.head]!;
      const arg = this.args[this.head];
      this.queue[this.head] = noop;
      this.args[this.head++] = undefined;
      task(arg);
    }
    this.longestSliceMs = Math.max(this.longestSliceMs, this.now() - this.sliceStart);
    if (this.head === this.tail) {
      this.head = 0;
      this.tail = 0;
    }
  }
}

function noop(): void {}

/**
 * A write of a change's first slice at least this large holds the rest of the fan-out until it
 * has left (LeadWrite): about what a socket takes in one go, so that a response that leaves at
 * once (a delta update, a small configuration) holds nothing.
 */
export const LEAD_WRITE_BYTES = 1024 * 1024;

/**
 * How long at most a change's lead write holds the rest of the fan-out: a client that reads
 * slowly (or not at all) delays the fleet by this much, once per change at most.
 */
export const LEAD_HOLD_MS = 100;

/**
 * The first stream a change reaches gets its response before the rest of the fleet is pushed to,
 * when that response is large. A response written to a socket that cannot take it whole (9.3 MB
 * of Clusters at 10,000 Backends) leaves in pieces, one each time the event loop polls the
 * socket; while the fan-out pushes to the other streams in 50 ms slices, with their own megabytes
 * in the same turns, the first client got its last byte after several slices (issue 9: about 160
 * ms from the edit at 100 SotW streams, against 30-90 with one). So a large write made in a
 * change's first slice holds the fan-out (PacedFanOut.hold) until the transport says it has left
 * or `maxHoldMs` has passed, whichever comes first.
 */
export class LeadWrite {
  private firstSlice = false;
  /** Lead writes not yet flushed, of the hold `generation`. */
  private pending = 0;
  private generation = 0;
  private timer: NodeJS.Timeout | undefined;
  private heldAt = 0;
  /** The bytes of the hold's lead writes. */
  private bytes = 0;

  /** `ended`: told how long each hold lasted and whether it ran out of time (a debug log line, say). */
  constructor(
    private readonly fanOut: { hold(): void; release(): void },
    private readonly minBytes = LEAD_WRITE_BYTES,
    private readonly maxHoldMs = LEAD_HOLD_MS,
    private readonly ended: (heldMs: number, expired: boolean, bytes: number) => void = () => undefined,
  ) {}

  /** Runs a change's first slice: the large writes made in it are lead writes. */
  runFirstSlice(slice: () => void): void {
    this.firstSlice = true;
    try {
      slice();
    } finally {
      this.firstSlice = false;
    }
  }

  /**
   * The callback to write `bytes` with, for a write whose transport calls `flushed` once it has
   * left: `flushed` itself, unless the write is a lead write, which holds the fan-out until then.
   */
  track(bytes: number, flushed: () => void): () => void {
    if (!this.firstSlice || bytes < this.minBytes) return flushed;
    if (this.pending === 0) {
      this.fanOut.hold();
      this.heldAt = performance.now();
      this.bytes = 0;
      this.timer = setTimeout(this.expire, this.maxHoldMs).unref();
    }
    this.pending++;
    this.bytes += bytes;
    const generation = this.generation;
    let called = false;
    return () => {
      flushed();
      if (called) return;
      called = true;
      // A write of a hold that already ended (its time ran out) holds nothing now.
      if (generation === this.generation && --this.pending === 0) this.end(false);
    };
  }

  /** Whether a lead write holds the fan-out now; for tests. */
  get holding(): boolean {
    return this.pending > 0;
  }

  private readonly expire = (): void => {
    if (this.pending > 0) this.end(true);
  };

  private end(expired: boolean): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = 0;
    this.generation++;
    this.fanOut.release();
    this.ended(performance.now() - this.heldAt, expired, this.bytes);
  }
}
