import { gunzipSync, inflateSync } from 'node:zlib';
import { GrpcCode } from './grpc-status.js';
import { PartialMessage, type BudgetScope, type ConnectionReceiveBudget } from './receive-budget.js';

/**
 * Splits a gRPC call's request bytes into messages (gRPC over HTTP/2, "Length-Prefixed-Message":
 * a compressed flag, a 4-byte length, the message), for both servers on h2-connection.ts: the
 * xDS transport (src/xds/h2-transport.ts) and the AI extension's ext_proc server
 * (src/ai-extension/grpc-server.ts).
 *
 * A message whole in one read is handed on where it lies (offsets into the read, no copy: the
 * xDS server decodes an ACK in place). One spread over reads is assembled in a buffer of its own,
 * counted against the connection's and the process's receive budget (receive-budget.ts), which
 * may refuse it, or later reclaim it for another client's. A compressed message is inflated with
 * its output bounded by the call's maximum.
 */

export const GRPC_PREFIX_BYTES = 5;
const PREFIX = GRPC_PREFIX_BYTES;
/** Streams refused for the connection's bound before the connection is ended with ENHANCE_YOUR_CALM. */
export const MAX_BUDGET_REFUSALS = 10;

/** Request encodings read (grpc-encoding); the AI extension's calls are identity only. */
export type RequestEncoding = 'identity' | 'gzip' | 'deflate';

/** Why a call's requests are not read on: the call ends with this status. */
export interface ReadRefusal {
  readonly code: number;
  readonly message: string;
  /** Set when the connection is to be ended with GOAWAY ENHANCE_YOUR_CALM: why. */
  readonly calm?: string;
}

/** The status texts each server words its own way (its tests and clients know them). */
export interface ReaderTexts {
  /** A compressed flag the call cannot take: 1 on a call without grpc-encoding, or neither 0 nor 1. */
  readonly badFlag: (flag: number) => string;
  /** A declared length above the call's maximum. */
  readonly tooLarge: (length: number, limit: number) => string;
}

/** Hands on the whole (uncompressed) message at `data[start, end)`; false once the call has ended. */
export type MessageSink = (data: Buffer, start: number, end: number) => boolean;

export class GrpcMessageReader {
  private readonly partial: PartialMessage;

  constructor(
    private readonly maxMessageBytes: number,
    private readonly encoding: RequestEncoding,
    private readonly texts: ReaderTexts,
    private readonly deliver: MessageSink,
    /** What partial messages of the call's connection may hold; none: unbounded (tests). */
    private readonly budget: ConnectionReceiveBudget | undefined,
    /** The partial message was reclaimed for another client's: end the call with this status. */
    onReclaimed?: (refusal: ReadRefusal) => void,
  ) {
    this.partial = new PartialMessage(budget, onReclaimed === undefined ? undefined : () => onReclaimed(this.refusal('reclaimed')));
  }

  /** A message begun and not yet whole (a request ending here ends in the middle of one). */
  get midMessage(): boolean {
    return this.partial.bytes > 0;
  }

  /** The call ended: what it held is given back. */
  drop(): void {
    this.partial.drop();
  }

  /**
   * Reads the call's next bytes, handing on each message completed. Returns why the call must end
   * (it then holds nothing); undefined when reading goes on or the sink ended the call.
   */
  push(chunk: Buffer): ReadRefusal | undefined {
    let at = 0;
    const partial = this.partial;
    if (partial.bytes > 0) {
      // The message begun in an earlier read: its own buffer, counted against the budget.
      if (partial.expected === 0) {
        at = Math.min(PREFIX - partial.bytes, chunk.length);
        const refused = partial.append(chunk, 0, at);
        if (refused !== undefined) return this.refusal(refused);
        if (partial.bytes < PREFIX) return undefined;
        const length = this.checkPrefix(partial.view(), 0);
        if (typeof length !== 'number') {
          partial.drop();
          return length;
        }
        partial.expected = PREFIX + length;
      }
      const take = Math.min(partial.expected - partial.bytes, chunk.length - at);
      if (take > 0) {
        const refused = partial.append(chunk, at, at + take);
        if (refused !== undefined) return this.refusal(refused);
      }
      at += take;
      if (partial.bytes < partial.expected) return undefined;
      const message = partial.take();
      const read = this.deliverAt(message, PREFIX, message.length);
      if (read !== true) return read === false ? undefined : read;
    }
    while (chunk.length - at >= PREFIX) {
      const length = this.checkPrefix(chunk, at);
      if (typeof length !== 'number') return length;
      const end = at + PREFIX + length;
      if (end > chunk.length) {
        partial.expected = PREFIX + length;
        break;
      }
      const start = at + PREFIX;
      at = end;
      const read = this.deliverAt(chunk, start, end);
      if (read !== true) return read === false ? undefined : read;
    }
    // Kept past this read: copied, not a view holding the whole read.
    if (at < chunk.length) {
      const refused = partial.append(chunk, at, chunk.length);
      if (refused !== undefined) return this.refusal(refused);
    }
    return undefined;
  }

  /** Hands on the message at `data[start, end)`: true to read on, false when the call ended, or why it must. */
  private deliverAt(data: Buffer, start: number, end: number): boolean | ReadRefusal {
    if (data[start - PREFIX] === 0) return this.deliver(data, start, end);
    let inflated: Buffer;
    try {
      const options = { maxOutputLength: this.maxMessageBytes };
      const bytes = data.subarray(start, end);
      inflated = this.encoding === 'gzip' ? gunzipSync(bytes, options) : inflateSync(bytes, options);
    } catch (err) {
      const tooLarge = err instanceof RangeError || (err instanceof Error && 'code' in err && err.code === 'ERR_BUFFER_TOO_LARGE');
      return tooLarge
        ? { code: GrpcCode.RESOURCE_EXHAUSTED, message: `Received message larger than max once decompressed (limit ${this.maxMessageBytes})` }
        : { code: GrpcCode.INTERNAL, message: `a ${this.encoding} message could not be decompressed` };
    }
    return this.deliver(inflated, 0, inflated.length);
  }

  /** The message length the prefix at `at` declares, or why it is refused. */
  private checkPrefix(data: Buffer, at: number): number | ReadRefusal {
    const flag = data[at] as number;
    if (flag !== 0 && (flag !== 1 || this.encoding === 'identity')) return { code: GrpcCode.INTERNAL, message: this.texts.badFlag(flag) };
    const length = data.readUInt32BE(at + 1);
    if (length > this.maxMessageBytes) return { code: GrpcCode.RESOURCE_EXHAUSTED, message: this.texts.tooLarge(length, this.maxMessageBytes) };
    return length;
  }

  private refusal(scope: BudgetScope): ReadRefusal {
    const budget = this.budget as ConnectionReceiveBudget;
    const limit = budget.limitOf(scope);
    if (scope === 'process') return { code: GrpcCode.RESOURCE_EXHAUSTED, message: `partial request messages on this server above its limit of ${limit} bytes; retry later` };
    if (scope === 'reclaimed') return { code: GrpcCode.RESOURCE_EXHAUSTED, message: `partial request messages on this server above its limit of ${limit} bytes, this client holding the most: its partial message dropped; retry later` };
    const message = `partial request messages on this connection above its limit of ${limit} bytes`;
    return { code: GrpcCode.RESOURCE_EXHAUSTED, message, ...(budget.refusals > MAX_BUDGET_REFUSALS ? { calm: `more than ${MAX_BUDGET_REFUSALS} streams refused for ${message}` } : {}) };
  }
}
