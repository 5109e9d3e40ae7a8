/**
 * A list never changed once made, kept in chunks: a copy with a few items replaced shares every
 * chunk but those that hold them. Translation keeps one result per Backend and per route across
 * edits; with a plain array, an edit of one Backend among 10,000 copied all 10,000 references,
 * and the copy outlived the edit (it is the next translation's state), so it became old-generation
 * garbage at the edit after. Here it copies the chunk table and one chunk.
 */
export class ChunkedList<T> implements Iterable<T> {
  private constructor(
    private readonly chunks: readonly (readonly T[])[],
    readonly length: number,
  ) {}

  static readonly EMPTY = new ChunkedList<never>([], 0);

  static from<T>(items: readonly T[]): ChunkedList<T> {
    if (items.length === 0) return ChunkedList.EMPTY;
    const chunks: T[][] = [];
    for (let i = 0; i < items.length; i += CHUNK) chunks.push(items.slice(i, i + CHUNK));
    return new ChunkedList(chunks, items.length);
  }

  /** The item at `i` (0 <= i < length). */
  at(i: number): T {
    if (i < 0 || i >= this.length) throw new RangeError(`index ${i} is outside a list of ${this.length}`);
    return (this.chunks[i >>> SHIFT] as readonly T[])[i & MASK] as T;
  }

  /** This list with the items at the given indexes replaced (0 <= index < length); this list itself when there is none. */
  with(replaced: ReadonlyMap<number, T>): ChunkedList<T> {
    if (replaced.size === 0) return this;
    const chunks = this.chunks.slice();
    const copied = new Set<number>();
    for (const [i, item] of replaced) {
      if (i < 0 || i >= this.length) throw new RangeError(`index ${i} is outside a list of ${this.length}`);
      const c = i >>> SHIFT;
      if (!copied.has(c)) {
        copied.add(c);
        chunks[c] = (chunks[c] as readonly T[]).slice();
      }
      (chunks[c] as T[])[i & MASK] = item;
    }
    return new ChunkedList(chunks, this.length);
  }

  /** The chunks themselves, in order (each CHUNK items but the last), for a scan of plain loops where a call per item costs too much. */
  get parts(): readonly (readonly T[])[] {
    return this.chunks;
  }

  /** Calls `f` with each item and its index, in order (a loop over chunks, without an iterator's cost per item). */
  forEach(f: (item: T, index: number) => void): void {
    let i = 0;
    for (const chunk of this.chunks) for (const item of chunk) f(item, i++);
  }

  *[Symbol.iterator](): Iterator<T> {
    for (const chunk of this.chunks) yield* chunk;
  }

  /** The items as a new array. */
  toArray(): T[] {
    return ([] as T[]).concat(...this.chunks);
  }
}

/** 256 items a chunk: 40 chunks at 10,000 Backends, 235 at 60,000 items. */
const SHIFT = 8;
const CHUNK = 1 << SHIFT;
const MASK = CHUNK - 1;
