/**
 * Protobuf wire format written into one growing buffer that is reused for every message: the
 * encoder allocates nothing per field and copies each finished message out once (a large one
 * that is kept takes the buffer itself instead; finishKept).
 *
 * Two choices keep it allocation-free and byte-identical to protobufjs' writer:
 * - A nested message gets one byte for its length and is written in place; in the rare case the
 *   body reaches 128 bytes it is moved right to make room for a longer varint (one memmove).
 * - Fields are written in the order the JSON lists them (so errors come in that order) and put
 *   in field-number order when their message closes, as protobuf encoders write them.
 */
export class ProtoWriter {
  private buf = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
  private pos = 0;
  /** Field number and start offset of every field of the open messages (a stack, innermost on top). */
  private readonly fieldIds: number[] = [];
  private readonly fieldStarts: number[] = [];
  private fieldTop = 0;
  private readonly order: number[] = [];
  /** Per field index, where reorder put it (followReorder). */
  private readonly moved: number[] = [];
  private keptSlab: Buffer | undefined;
  private keptUsed = 0;
  /**
   * Ranges of the message being written whose place is followed through the moves below (a
   * longer length, fields put in order), in the order they were tracked, with who asked for each:
   * where they are once the message is done (trackedRanges).
   */
  private readonly trackedOwners: object[] = [];
  private readonly trackedStarts: number[] = [];
  private readonly trackedLengths: number[] = [];

  /** Starts a new top-level message, dropping whatever an aborted encode left behind. */
  reset(): void {
    this.pos = 0;
    this.fieldTop = 0;
    this.untrack();
    this.shrink();
  }

  /** Forgets the tracked ranges (and so their owners, which the writer would otherwise keep alive until the next message). */
  untrack(): void {
    this.trackedOwners.length = 0;
    this.trackedStarts.length = 0;
    this.trackedLengths.length = 0;
  }

  /**
   * Follows the `length` bytes at `start` (written, and not inside a range tracked before) until
   * the message is done: trackedRanges then says where they are in it. A range is tracked once
   * its own message is closed, so that its bytes move only with the messages around it.
   */
  track(owner: object, start: number, length: number): void {
    this.trackedOwners.push(owner);
    this.trackedStarts.push(start);
    this.trackedLengths.push(length);
  }

  get trackedCount(): number {
    return this.trackedOwners.length;
  }

  /** Calls `each` with every range tracked since reset and where it is in the message written. */
  trackedRanges(each: (owner: object, start: number, length: number) => void): void {
    for (let i = 0; i < this.trackedOwners.length; i++) each(this.trackedOwners[i] as object, this.trackedStarts[i] as number, this.trackedLengths[i] as number);
  }

  /**
   * The first tracked range inside the message whose body starts after `at`: tracked in the
   * order written, the ranges of the message being closed are the last ones, and every range
   * before them lies before `at`.
   */
  private firstTrackedAfter(at: number): number {
    const starts = this.trackedStarts;
    let i = starts.length;
    while (i > 0 && (starts[i - 1] as number) >= at) i--;
    return i;
  }

  /**
   * Lets go of a buffer one large message grew: a RouteConfiguration of 10,000 routes grows it to
   * 16 MiB (twice the message, to put its fields in order), which would otherwise stay allocated
   * for as long as the process runs, for messages that are almost all a few KiB.
   */
  private shrink(): void {
    if (this.buf.length <= LARGE_SCRATCH_BYTES) return;
    // Freed now rather than at the next GC (see ensure).
    transferred(this.buf, 0);
    this.buf = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
    // Nothing written is left: a later written() or finish gives no bytes, never stale memory.
    this.pos = 0;
  }

  /** A copy of the bytes written since reset (pooled like protobufjs' Buffer results). */
  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    out.set(this.buf.subarray(0, this.pos));
    this.shrink();
    return out;
  }

  /**
   * A copy of the bytes written since reset (from `start` up to `end`), for bytes kept as long as a configuration is
   * served: packed into slabs that hold only such copies, so a short-lived buffer allocated in
   * between (Node's shared pool mixes them) never pins a slab, nor a kept copy a dead one.
   */
  finishKept(end = this.pos, start = 0): Buffer {
    if (this.buf.length > LARGE_SCRATCH_BYTES && end > LARGE_SCRATCH_BYTES) {
      // A large message keeps the scratch buffer it was written in rather than a copy (a
      // RouteConfiguration of 10,000 routes held 4.6 MB twice at the peak); the scratch grows by a
      // quarter past LARGE_SCRATCH_BYTES, so what it holds beyond the message is at most that, and
      // pages never written cost no RSS.
      const out = this.buf.subarray(start, end);
      this.buf = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
      this.pos = 0;
      return out;
    }
    const out = this.keptRange(start, end);
    // The message is done: a scratch buffer one large message grew is let go (keptRange alone
    // copies a piece out of a message still being written, and must not).
    this.shrink();
    return out;
  }

  /** The bytes written since reset, without a copy: valid until the next write or finish. */
  written(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  /** Where the next byte goes (an offset for keptRange). */
  get position(): number {
    return this.pos;
  }

  /** A kept copy (as finishKept's) of the bytes written from `start` to `end` (default: now). */
  keptRange(start: number, end = this.pos): Buffer {
    const length = end - start;
    if (length > KEPT_SLAB_BYTES / 4) {
      const own = Buffer.allocUnsafeSlow(length);
      this.buf.copy(own, 0, start, end);
      return own;
    }
    if (this.keptSlab === undefined || this.keptUsed + length > this.keptSlab.length) {
      this.keptSlab = Buffer.allocUnsafeSlow(keptSlabBytes(length));
      this.keptUsed = 0;
    }
    const out = this.keptSlab.subarray(this.keptUsed, this.keptUsed + length);
    this.buf.copy(out, 0, start, end);
    // 8-byte aligned, as Node aligns its pool.
    this.keptUsed += (length + 7) & ~7;
    return out;
  }

  /** How many bytes the writer holds for the next message (what shrink bounds). */
  get scratchBytes(): number {
    return this.buf.length;
  }

  /** Bytes encoded before, as they are. */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  // -- message structure ---------------------------------------------------------------------

  /** Opens a message body; returns the mark to pass to closeMessage. */
  openMessage(): number {
    return this.fieldTop;
  }

  /** Starts field `id` of the innermost open message: its tag and value follow. */
  field(id: number): void {
    this.fieldIds[this.fieldTop] = id;
    this.fieldStarts[this.fieldTop] = this.pos;
    this.fieldTop++;
  }

  /** Closes the message opened at `mark`, putting its fields in field-number order. */
  closeMessage(mark: number): void {
    const top = this.fieldTop;
    this.fieldTop = mark;
    const ids = this.fieldIds;
    let ordered = true;
    for (let i = mark + 1; i < top && ordered; i++) ordered = (ids[i] as number) > (ids[i - 1] as number);
    if (!ordered) this.reorder(mark, top);
  }

  private reorder(mark: number, top: number): void {
    const ids = this.fieldIds;
    const starts = this.fieldStarts;
    const begin = starts[mark] as number;
    const end = this.pos;
    // Insertion sort of the (few) field indexes by field number; a key appears once per object.
    const order = this.order;
    order.length = 0;
    for (let i = mark; i < top; i++) {
      let j = order.length;
      while (j > 0 && (ids[order[j - 1] as number] as number) > (ids[i] as number)) {
        order[j] = order[j - 1] as number;
        j--;
      }
      order[j] = i;
    }
    // The largest field is moved in place (copyWithin: a memmove); only the others are copied
    // past the message's end and back. A RouteConfiguration of 10,000 routes is one 4.8 MB
    // virtual_hosts field listed after small ones: copying it whole doubled the scratch buffer.
    // (Plain loops and fieldEnd, no closures: a message is put in order hundreds of thousands of
    // times at 10,000 Backends, and two closures and their context each time were 37 MB of garbage.)
    let largest = mark;
    for (let i = mark + 1; i < top; i++) if (fieldEnd(starts, i, top, end) - (starts[i] as number) > fieldEnd(starts, largest, top, end) - (starts[largest] as number)) largest = i;
    const largestStart = starts[largest] as number;
    const largestEnd = fieldEnd(starts, largest, top, end);
    const largestSize = largestEnd - largestStart;
    this.ensure(end - begin - largestSize);
    const buf = this.buf;
    // The other fields, in buffer order, at `end`: those before the largest, then those after it.
    buf.copyWithin(end, begin, largestStart);
    buf.copyWithin(end + (largestStart - begin), largestEnd, end);
    let at = begin;
    for (let k = 0; k < order.length; k++) {
      const i = order[k] as number;
      if (i === largest) break;
      at += fieldEnd(starts, i, top, end) - (starts[i] as number);
    }
    buf.copyWithin(at, largestStart, largestEnd);
    at = begin;
    for (let k = 0; k < order.length; k++) {
      const i = order[k] as number;
      const start = starts[i] as number;
      const size = fieldEnd(starts, i, top, end) - start;
      if (i !== largest) {
        // Where the field was saved past `end`.
        const saved = (start < largestStart ? start - begin : start - begin - largestSize) + end;
        buf.copyWithin(at, saved, saved + size);
      }
      at += size;
    }
    this.followReorder(mark, top, begin);
  }

  /** Moves the tracked ranges inside the fields just put in order (reorder) with their fields. */
  private followReorder(mark: number, top: number, begin: number): void {
    const tracked = this.trackedStarts;
    const first = this.firstTrackedAfter(begin);
    if (first === tracked.length) return;
    const starts = this.fieldStarts;
    const end = this.pos;
    // Where each field (by its index) starts now: the fields in `order`, one after the other.
    const moved = this.moved;
    const order = this.order;
    let at = begin;
    for (let k = 0; k < order.length; k++) {
      const i = order[k] as number;
      moved[i] = at;
      at += fieldEnd(starts, i, top, end) - (starts[i] as number);
    }
    for (let t = first; t < tracked.length; t++) {
      const start = tracked[t] as number;
      // The field holding it: the last that starts at or before it (fields are few).
      let i = top - 1;
      while (i > mark && (starts[i] as number) > start) i--;
      tracked[t] = (moved[i] as number) + start - (starts[i] as number);
    }
  }


  /** Reserves the length of a length-delimited value; pass the result to endLength. */
  beginLength(): number {
    this.ensure(1);
    return this.pos++;
  }

  endLength(at: number): void {
    const length = this.pos - at - 1;
    if (length < 128) {
      this.buf[at] = length;
      return;
    }
    const size = varintSize(length);
    this.ensure(size - 1);
    this.buf.copyWithin(at + size, at + 1, this.pos);
    const starts = this.trackedStarts;
    for (let i = this.firstTrackedAfter(at + 1); i < starts.length; i++) (starts[i] as number) += size - 1;
    this.pos += size - 1;
    const end = this.pos;
    this.pos = at;
    this.varint32(length);
    this.pos = end;
  }

  // -- values ----------------------------------------------------------------------------------

  varint32(value: number): void {
    this.ensure(5);
    const buf = this.buf;
    let v = value >>> 0;
    while (v > 127) {
      buf[this.pos++] = (v & 127) | 128;
      v >>>= 7;
    }
    buf[this.pos++] = v;
  }

  /** A 64-bit varint from its low and high 32 bits (unsigned). */
  varint64(low: number, high: number): void {
    this.ensure(10);
    const buf = this.buf;
    let lo = low >>> 0;
    let hi = high >>> 0;
    while (hi !== 0) {
      buf[this.pos++] = (lo & 127) | 128;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    while (lo > 127) {
      buf[this.pos++] = (lo & 127) | 128;
      lo >>>= 7;
    }
    buf[this.pos++] = lo;
  }

  /** int32 and enums: negative values take ten bytes, sign-extended to 64 bits. */
  int32(value: number): void {
    if (value < 0) this.int64(value);
    else this.varint32(value);
  }

  sint32(value: number): void {
    this.varint32(((value << 1) ^ (value >> 31)) >>> 0);
  }

  /** int64/uint64 from a JS integer or a decimal string (which may exceed 2^53). */
  int64(value: number | string): void {
    splitInt64(value);
    this.varint64(splitLow, splitHigh);
  }

  sint64(value: number | string): void {
    splitInt64(value);
    // ZigZag: the sign moves to bit 0 so small negative numbers stay short.
    const sign = splitHigh >> 31;
    const high = (((splitHigh << 1) | (splitLow >>> 31)) ^ sign) >>> 0;
    const low = ((splitLow << 1) ^ sign) >>> 0;
    this.varint64(low, high);
  }

  fixed32(value: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(value >>> 0, this.pos);
    this.pos += 4;
  }

  fixed64(value: number | string): void {
    splitInt64(value);
    this.fixed32(splitLow);
    this.fixed32(splitHigh);
  }

  float(value: number): void {
    this.ensure(4);
    this.buf.writeFloatLE(value, this.pos);
    this.pos += 4;
  }

  double(value: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(value, this.pos);
    this.pos += 8;
  }

  bool(value: boolean): void {
    this.ensure(1);
    this.buf[this.pos++] = value ? 1 : 0;
  }

  /**
   * A length-prefixed UTF-8 string. Short strings are encoded by hand (their length fits one
   * byte), long ones by Buffer: the same split as protobufjs' Node writer, so a lone surrogate
   * comes out exactly as it did before (3 bytes of its own when short, U+FFFD when long).
   */
  string(value: string): void {
    const n = value.length;
    if (n >= 40) {
      const length = Buffer.byteLength(value);
      this.varint32(length);
      this.ensure(length);
      this.pos += this.buf.write(value, this.pos, length, 'utf8');
      return;
    }
    this.ensure(1 + 3 * n);
    const buf = this.buf;
    const at = this.pos++;
    let pos = this.pos;
    for (let i = 0; i < n; i++) {
      let c = value.charCodeAt(i);
      if (c < 0x80) {
        buf[pos++] = c;
      } else if (c < 0x800) {
        buf[pos++] = (c >> 6) | 0xc0;
        buf[pos++] = (c & 0x3f) | 0x80;
      } else {
        const next = i + 1 < n ? value.charCodeAt(i + 1) : 0;
        if ((c & 0xfc00) === 0xd800 && (next & 0xfc00) === 0xdc00) {
          c = 0x10000 + ((c & 0x3ff) << 10) + (next & 0x3ff);
          i++;
          buf[pos++] = (c >> 18) | 0xf0;
          buf[pos++] = ((c >> 12) & 0x3f) | 0x80;
        } else {
          buf[pos++] = (c >> 12) | 0xe0;
        }
        buf[pos++] = ((c >> 6) & 0x3f) | 0x80;
        buf[pos++] = (c & 0x3f) | 0x80;
      }
    }
    buf[at] = pos - at - 1;
    this.pos = pos;
  }

  bytes(value: Uint8Array): void {
    this.varint32(value.length);
    this.ensure(value.length);
    this.buf.set(value, this.pos);
    this.pos += value.length;
  }

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    // The smaller buffer is freed at once instead of at the next GC: growing to a
    // RouteConfiguration of 10,000 routes left 16 MiB of them (64 KiB doubled up to 16 MiB) for
    // the GC, on top of the configuration's peak. Only the bytes written are copied, into memory
    // not zeroed: ArrayBuffer.transfer to a larger length touched every page of the new buffer
    // while the old one was still held (4 + 8 MiB resident at once for that RouteConfiguration;
    // untouched pages of a large allocation cost no RSS).
    const grown = Buffer.allocUnsafeSlow(Math.max(this.buf.length >= LARGE_SCRATCH_BYTES ? Math.ceil(this.buf.length * 1.25) : 2 * this.buf.length, this.pos + extra));
    this.buf.copy(grown, 0, 0, this.pos);
    transferred(this.buf, 0);
    this.buf = grown;
  }
}

/**
 * The bytes of `buf` (a Buffer of its own ArrayBuffer, as allocUnsafeSlow makes) moved to an
 * ArrayBuffer of `length`: `buf` is detached (its views read as empty) and its memory released.
 */
function transferred(buf: Buffer, length: number): ArrayBuffer {
  return (buf.buffer as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(length);
}

/** The buffer every message is written into, and the size past which it is let go once used (shrink). */
const SCRATCH_BYTES = 64 * 1024;
const LARGE_SCRATCH_BYTES = 1024 * 1024;

/** Slab size for finishKept: Node's own pool size, so a few survivors of an edit pin as little. */
const KEPT_SLAB_BYTES = 8 * 1024;

/**
 * The size of a new slab whose first copy is `length` bytes long. Copies of resources built
 * alike come in a row and differ by a few bytes (names, addresses): a slab of KEPT_SLAB_BYTES
 * left a hole where the next one did not fit, up to one copy long, an eighth of every slab of
 * the ClusterLoadAssignments of 10,000 Backends (1.8 KB each: 2.5 MiB of 19.5). Copies over an
 * eighth of a slab get one sized for as many of them as it holds, with a thirty-second more room
 * each (and no more than KEPT_SLAB_BYTES).
 */
function keptSlabBytes(length: number): number {
  const aligned = (length + 7) & ~7;
  if (aligned * 8 <= KEPT_SLAB_BYTES) return KEPT_SLAB_BYTES;
  const slot = (aligned + (aligned >> 5) + 7) & ~7;
  return Math.min(KEPT_SLAB_BYTES, Math.floor(KEPT_SLAB_BYTES / aligned) * slot);
}

function varintSize(value: number): number {
  if (value < 1 << 7) return 1;
  if (value < 1 << 14) return 2;
  if (value < 1 << 21) return 3;
  if (value < 1 << 28) return 4;
  return 5;
}

// splitInt64's result: two numbers in module state rather than a fresh object per 64-bit value.
let splitLow = 0;
let splitHigh = 0;

/** The two's-complement 64 bits of an integer (a JS number, or a decimal string of any size). */
function splitInt64(value: number | string): void {
  if (typeof value === 'string') {
    const number = Number(value);
    if (!Number.isSafeInteger(number)) {
      const bits = BigInt.asUintN(64, BigInt(value));
      splitLow = Number(bits & 0xffffffffn);
      splitHigh = Number(bits >> 32n);
      return;
    }
    value = number;
  }
  const negative = value < 0;
  const magnitude = negative ? -value : value;
  let low = magnitude >>> 0;
  let high = ((magnitude - low) / 4294967296) >>> 0;
  if (negative) {
    // Two's complement: invert, then add one with carry into the high word.
    low = ~low >>> 0;
    high = ~high >>> 0;
    low = (low + 1) >>> 0;
    if (low === 0) high = (high + 1) >>> 0;
  }
  splitLow = low;
  splitHigh = high;
}

/** Where field `i` of the open message whose fields end before `top` ends (the message ends at `end`). */
function fieldEnd(starts: readonly number[], i: number, top: number, end: number): number {
  return i + 1 < top ? (starts[i + 1] as number) : end;
}
