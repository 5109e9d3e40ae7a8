import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChunkedList } from '../../src/translate/chunked-list.js';

describe('ChunkedList', () => {
  it('holds what an array with the same replacements holds, and leaves the list it came from as it was', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer(), { maxLength: 1200 }),
        fc.array(fc.tuple(fc.nat(), fc.integer()), { maxLength: 20 }),
        (items, edits) => {
          const list = ChunkedList.from(items);
          const expected = items.slice();
          const replaced = new Map<number, number>();
          for (const [at, value] of edits) {
            if (items.length === 0) break;
            const i = at % items.length;
            replaced.set(i, value);
            expected[i] = value;
          }
          const next = list.with(replaced);
          expect([...next]).toEqual(expected);
          expect(next.toArray()).toEqual(expected);
          expect(next.length).toBe(expected.length);
          const seen: number[] = [];
          next.forEach((v, i) => {
            expect(i).toBe(seen.length);
            seen.push(v);
          });
          expect(seen).toEqual(expected);
          for (let i = 0; i < expected.length; i += 97) expect(next.at(i)).toBe(expected[i]);
          expect([...list]).toEqual(items);
        },
      ),
    );
  });

  it('is the same list when nothing is replaced, and refuses an index outside it', () => {
    const list = ChunkedList.from(['a', 'b', 'c']);
    expect(list.with(new Map())).toBe(list);
    expect(() => list.at(3)).toThrow(/index 3 is outside a list of 3/);
    expect(() => list.with(new Map([[-1, 'x']]))).toThrow(/index -1 is outside a list of 3/);
  });
});
