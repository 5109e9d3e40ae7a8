/**
 * Bounds on what request messages not yet whole may hold in memory (gRPC message reassembly on
 * the xDS transport and the AI extension's ext_proc server, grpc-messages.ts).
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
 * ENHANCE_YOUR_CALM) and across the process's connections. A message that arrives whole in one
 * read is never counted: it is read where it lies.
 *
 * Across connections the bound is shared fairly by client (ReceivePeer): an anonymous TCP client
 * is its remote address, whatever number of connections it opens; a trusted one (a Unix socket's
 * connection, a verified client certificate) is counted on its own. When the shared bound would be
 * passed, the client that would hold the most is the one that loses: if another (untrusted) client
 * holds more than the asking one would after its take, that client's largest partial message is
 * reclaimed (its stream ended with RESOURCE_EXHAUSTED, "retry later"), and so on while the take
 * does not fit; when that cannot make room, nothing is reclaimed and the asking stream is refused. So a client holding the shared bound with partial
 * messages over many connections cannot keep another's multi-read request out: the one holding
 * the most gives way. A trusted client's messages are never reclaimed (an anonymous client must
 * not be able to end them); it still gives way by being refused when it holds the most.
 */

import type { Socket } from 'node:net';

/** Counted per buffer held besides its bytes (the buffer's and the call's bookkeeping objects). */
const BUFFER_OVERHEAD_BYTES = 256;
/** Smallest buffer a partial message starts with when more is declared: a DATA frame's worth. */
const FIRST_BUFFER_BYTES = 16 * 1024;

/**
 * Which bound refused a stream: this connection's, or the process's across connections; or
 * `reclaimed`: the stream's partial message was dropped for another client's (the process's
 * bound, this client holding the most).
 */
export type BudgetScope = 'connection' | 'process' | 'reclaimed';

/** The client a connection is counted for across connections (see the module comment). */
export interface ReceivePeer {
  /** The same for every connection of one client: `tcp:<address>`, `tls:<identity>`, a Unix connection's name. */
  readonly key: string;
  /** Its partial messages are never reclaimed for another client's. */
  readonly trusted: boolean;
}

/**
 * The client a connection is counted for: a Unix socket's connection on its own, trusted (a
 * local process: the node's Envoy); a verified client certificate's identity, trusted; else the
 * remote address, whatever its port.
 */
export function receivePeerOf(socket: Socket, connectionName: string, verifiedIdentity: string | undefined): ReceivePeer {
  if (socket.remotePort === undefined) return { key: connectionName, trusted: true };
  if (verifiedIdentity !== undefined) return { key: `tls:${verifiedIdentity}`, trusted: true };
  return { key: `tcp:${socket.remoteAddress ?? ''}`, trusted: false };
}

/** What one client holds across its connections. */
interface Holding {
  readonly trusted: boolean;
  used: number;
  readonly partials: Set<PartialMessage>;
}

/** What every connection of one server may hold in partial messages, together. */
export class SharedReceiveBudget {
  used = 0;
  /** Only clients holding something. */
  private readonly holdings = new Map<string, Holding>();

  constructor(readonly limitBytes: number) {}

  /** What the client `key` holds across its connections. */
  heldBy(key: string): number {
    return this.holdings.get(key)?.used ?? 0;
  }

  /** Takes `bytes` for `peer` (for `partial`, which may then be reclaimed); false when refused. */
  take(bytes: number, peer: ReceivePeer, partial: PartialMessage | undefined): boolean {
    if (this.used + bytes > this.limitBytes && !this.reclaimFor(bytes, peer)) return false;
    let holding = this.holdings.get(peer.key);
    if (holding === undefined) {
      holding = { trusted: peer.trusted, used: 0, partials: new Set() };
      this.holdings.set(peer.key, holding);
    }
    holding.used += bytes;
    if (partial !== undefined) holding.partials.add(partial);
    this.used += bytes;
    return true;
  }

  release(bytes: number, peer: ReceivePeer, partial: PartialMessage | undefined): void {
    this.used -= bytes;
    const holding = this.holdings.get(peer.key);
    if (holding === undefined) return;
    holding.used -= bytes;
    if (partial !== undefined) holding.partials.delete(partial);
    if (holding.used <= 0) this.holdings.delete(peer.key);
  }

  /**
   * Makes room for `bytes` of `peer` by reclaiming, largest first, the partial messages of the
   * untrusted client holding the most, while it holds more than `peer` would; false, reclaiming
   * nothing, when that would not make room (`peer` is then refused). Under pressure only: the
   * victims are chosen first by scans of the holders, then reclaimed.
   */
  private reclaimFor(bytes: number, peer: ReceivePeer): boolean {
    const after = this.heldBy(peer.key) + bytes;
    let over = this.used + bytes - this.limitBytes;
    const victims = new Set<PartialMessage>();
    /** What a holder chosen from would hold once its victims are gone. */
    const left = new Map<Holding, number>();
    while (over > 0) {
      let largest: Holding | undefined;
      let most = after;
      for (const [key, holding] of this.holdings) {
        if (key === peer.key || holding.trusted) continue;
        const holds = left.get(holding) ?? holding.used;
        if (holds > most) {
          largest = holding;
          most = holds;
        }
      }
      let victim: PartialMessage | undefined;
      if (largest !== undefined) for (const partial of largest.partials) if (!victims.has(partial) && (victim === undefined || partial.held > victim.held)) victim = partial;
      if (largest === undefined || victim === undefined) return false;
      victims.add(victim);
      left.set(largest, most - victim.held);
      over -= victim.held;
    }
    for (const victim of victims) victim.reclaim();
    return true;
  }
}

let anonymousBudgets = 0;

export class ConnectionReceiveBudget {
  used = 0;
  /** Streams refused for this connection's own bound. */
  refusals = 0;
  private reported = false;

  constructor(
    readonly limitBytes: number,
    readonly shared: SharedReceiveBudget,
    /** The first refusal or reclaim on this connection (log it: peer and limit, no header values). */
    private readonly onFirstRefusal: (scope: BudgetScope, limitBytes: number) => void,
    /** Its client; by default a client of its own, untrusted. */
    readonly peer: ReceivePeer = { key: `connection-${++anonymousBudgets}`, trusted: false },
  ) {}

  /** Takes `bytes` (for `partial`, when given); when a bound would be passed takes nothing and says which. */
  take(bytes: number, partial?: PartialMessage): BudgetScope | undefined {
    let scope: BudgetScope;
    if (this.used + bytes > this.limitBytes) scope = 'connection';
    else if (!this.shared.take(bytes, this.peer, partial)) scope = 'process';
    else {
      this.used += bytes;
      return undefined;
    }
    if (scope === 'connection') this.refusals++;
    this.report(scope);
    return scope;
  }

  release(bytes: number, partial?: PartialMessage): void {
    this.used -= bytes;
    this.shared.release(bytes, this.peer, partial);
  }

  /** The bound a refusal of `scope` passed. */
  limitOf(scope: BudgetScope): number {
    return scope === 'connection' ? this.limitBytes : this.shared.limitBytes;
  }

  /** A partial message of this connection was reclaimed for another client's. */
  reclaimed(): void {
    this.report('reclaimed');
  }

  private report(scope: BudgetScope): void {
    if (this.reported) return;
    this.reported = true;
    this.onFirstRefusal(scope, this.limitOf(scope));
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

  constructor(
    private readonly budget: ConnectionReceiveBudget | undefined,
    /** Its message was dropped to make room for another client's (SharedReceiveBudget); the call must end. */
    private readonly onReclaimed?: () => void,
  ) {}

  /** What it holds against the budget. */
  get held(): number {
    return this.charged;
  }

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
        const refused = this.budget.take(charge, this);
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
    if (this.charged > 0) this.budget?.release(this.charged, this);
    this.charged = 0;
    this.buffer = undefined;
    this.bytes = 0;
    this.expected = 0;
  }

  /** Drops the message for another client's (SharedReceiveBudget) and tells the call. */
  reclaim(): void {
    this.drop();
    this.budget?.reclaimed();
    this.onReclaimed?.();
  }
}
