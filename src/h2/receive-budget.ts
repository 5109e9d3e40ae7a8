/**
 * Bounds on what request messages not yet whole may hold in memory (gRPC message reassembly on
 * the xDS transport and the AI extension's ext_proc server).
 *
 * Why: flow control (h2-connection.ts onData) gives a stream's and the connection's window back
 * as DATA arrives, whatever the call did with it, and a gRPC message may be up to the call's
 * maximum (16 MiB on xDS). So a client could open a connection's 1,000 streams and send each a
 * message one byte short: the server held ~16 GB for one anonymous plaintext connection.
 * Windows granted only as messages are delivered would not do instead: a message larger than
 * the stream window (1 MiB on xDS) could then never complete.
 *
 * So the bytes held for partial messages are counted: per connection (past it, the stream asking
 * for more is refused with RESOURCE_EXHAUSTED; a connection that keeps going is ended with
 * ENHANCE_YOUR_CALM) and across the process's connections (past it, the stream is refused; the
 * connection, maybe innocent, stays). A message that arrives whole in one read is never counted:
 * it is read where it lies.
 */

/** Counted per buffer held besides its bytes (the buffer's and the call's bookkeeping objects). */
const BUFFER_OVERHEAD_BYTES = 256;
/** Smallest buffer a partial message starts with when more is declared: a DATA frame's worth. */
const FIRST_BUFFER_BYTES = 16 * 1024;

/** Which bound refused: this connection's, or the process's across connections. */
export type BudgetScope = 'connection' | 'process';

/** What every connection of one server may hold in partial messages, together. */
export class SharedReceiveBudget {
  used = 0;
  constructor(readonly limitBytes: number) {}
}

export class ConnectionReceiveBudget {
  used = 0;
  /** Streams refused for this connection's own bound. */
  refusals = 0;
  private reported = false;

  constructor(
    readonly limitBytes: number,
    readonly shared: SharedReceiveBudget,
    /** The first refusal on this connection (log it: peer and limit, no header values). */
    private readonly onFirstRefusal: (scope: BudgetScope, limitBytes: number) => void,
  ) {}

  /** Takes `bytes`; when a bound would be passed takes nothing and says which. */
  take(bytes: number): BudgetScope | undefined {
    let scope: BudgetScope;
    if (this.used + bytes > this.limitBytes) scope = 'connection';
    else if (this.shared.used + bytes > this.shared.limitBytes) scope = 'process';
    else {
      this.used += bytes;
      this.shared.used += bytes;
      return undefined;
    }
    if (scope === 'connection') this.refusals++;
    if (!this.reported) {
      this.reported = true;
      this.onFirstRefusal(scope, scope === 'connection' ? this.limitBytes : this.shared.limitBytes);
    }
    return scope;
  }

  release(bytes: number): void {
    this.used -= bytes;
    this.shared.used -= bytes;
  }
}

/**
 * One stream's message being assembled: a buffer of its own (never a view of a read, which would
 * hold the whole read, padding and other streams' frames included), grown by doubling up to the
 * declared length as bytes arrive (never allocated for a length only declared), each byte of it
 * counted against the budget while held.
 */
export class PartialMessage {
  /** Bytes in; 0 when no message is being assembled. */
  bytes = 0;
  /** Prefix and message length, once the prefix is in; else 0. */
  expected = 0;
  private buffer: Buffer | undefined;
  private charged = 0;

  constructor(private readonly budget: ConnectionReceiveBudget | undefined) {}

  /**
   * Appends `chunk[from, to)`; `expected` when known (else 0). Returns the refusing bound, with
   * nothing kept (the caller ends the call).
   */
  append(chunk: Buffer, from: number, to: number): BudgetScope | undefined {
    const need = this.bytes + (to - from);
    const capacity = this.buffer?.length ?? 0;
    if (need > capacity) {
      const grown = this.expected === 0 ? Math.max(need, 2 * capacity) : Math.min(this.expected, Math.max(need, 2 * capacity, FIRST_BUFFER_BYTES));
      const charge = grown + BUFFER_OVERHEAD_BYTES - this.charged;
      if (this.budget !== undefined) {
        const refused = this.budget.take(charge);
        if (refused !== undefined) {
          this.drop();
          return refused;
        }
      }
      this.charged += charge;
      // Its own memory: a pooled slice would keep a whole pool slab for a few bytes.
      const buffer = Buffer.allocUnsafeSlow(grown);
      if (this.buffer !== undefined) this.buffer.copy(buffer, 0, 0, this.bytes);
      this.buffer = buffer;
    }
    chunk.copy(this.buffer as Buffer, this.bytes, from, to);
    this.bytes = need;
    return undefined;
  }

  /** The bytes in so far (a view; valid until the next append or take). */
  view(): Buffer {
    return (this.buffer as Buffer).subarray(0, this.bytes);
  }

  /** The whole message with its prefix, handed over; the budget given back. */
  take(): Buffer {
    const whole = this.view();
    this.drop();
    return whole;
  }

  /** Forgets the message (the call ended); the budget given back. */
  drop(): void {
    if (this.charged > 0) this.budget?.release(this.charged);
    this.charged = 0;
    this.buffer = undefined;
    this.bytes = 0;
    this.expected = 0;
  }
}
