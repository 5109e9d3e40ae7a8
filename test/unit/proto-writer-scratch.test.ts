import { describe, expect, it } from 'vitest';
import { ProtoWriter } from '../../src/envoy/proto-writer.js';

/** A message of one bytes field (number 1) of `size` bytes, each byte `fill`. */
function writeBytes(w: ProtoWriter, size: number, fill: number): void {
  w.reset();
  w.varint32((1 << 3) | 2);
  w.bytes(new Uint8Array(size).fill(fill));
}

describe('ProtoWriter scratch memory', () => {
  it('lets go of the buffer a large message grew once that message is copied out, and gives its bytes intact', () => {
    const w = new ProtoWriter();
    const small = w.scratchBytes;
    writeBytes(w, 8 * 1024 * 1024, 7);
    expect(w.scratchBytes).toBeGreaterThan(8 * 1024 * 1024);
    const kept = w.finishKept();
    expect(kept.length).toBeGreaterThan(8 * 1024 * 1024);
    expect(kept[kept.length - 1]).toBe(7);
    expect(w.scratchBytes).toBe(small);
    // Nothing of the large message is left to hand out again.
    expect(w.written().length).toBe(0);
  });

  it('keeps the large buffer while a written message is only read (hashed), until the next message starts', () => {
    const w = new ProtoWriter();
    writeBytes(w, 4 * 1024 * 1024, 3);
    const view = w.written();
    expect(view[view.length - 1]).toBe(3);
    expect(w.scratchBytes).toBeGreaterThan(4 * 1024 * 1024);
    writeBytes(w, 10, 5);
    expect(w.scratchBytes).toBeLessThanOrEqual(1024 * 1024);
    expect([...w.finish()]).toEqual([(1 << 3) | 2, 10, ...new Array<number>(10).fill(5)]);
  });

  it('frees each smaller buffer as it grows, instead of leaving them to the GC, and keeps what was written', () => {
    const w = new ProtoWriter();
    const chunk = new Uint8Array(1024 * 1024);
    const before = process.memoryUsage().arrayBuffers;
    w.reset();
    for (let i = 0; i < 12; i++) {
      w.varint32((1 << 3) | 2);
      w.bytes(chunk.fill(i));
    }
    const grown = process.memoryUsage().arrayBuffers - before;
    // 64 KiB doubled to 16 MiB: the buffers it outgrew were as much again.
    expect(w.scratchBytes).toBeGreaterThanOrEqual(12 * 1024 * 1024);
    expect(grown).toBeLessThan(w.scratchBytes + 2 * 1024 * 1024);
    const bytes = w.finishKept();
    const field = 1 + 3 + chunk.length;
    for (let i = 0; i < 12; i++) expect([bytes[i * field + 4], bytes[(i + 1) * field - 1]]).toEqual([i, i]);
  });

  it('hands a large kept message the buffer it was written in, at most a quarter larger than the message, and writes the next message elsewhere', () => {
    const w = new ProtoWriter();
    const chunk = new Uint8Array(64 * 1024);
    const chunks = 80;
    w.reset();
    for (let i = 0; i < chunks; i++) {
      w.varint32((1 << 3) | 2);
      w.bytes(chunk.fill(i + 1));
    }
    const kept = w.finishKept();
    const field = 1 + 3 + chunk.length;
    expect(kept.length).toBe(chunks * field);
    // Not a copy (a copy is exactly its length), and what the buffer holds beyond the message is bounded.
    expect(kept.buffer.byteLength).toBeGreaterThan(kept.length);
    expect(kept.buffer.byteLength).toBeLessThanOrEqual(1.25 * kept.length);
    writeBytes(w, 3 * 1024 * 1024, 0xee);
    w.finishKept();
    for (let i = 0; i < chunks; i++) expect([kept[i * field], kept[i * field + 4], kept[(i + 1) * field - 1]]).toEqual([(1 << 3) | 2, i + 1, i + 1]);
  });

  it('puts fields listed out of order in field-number order, whichever of them is the largest, without room for a second copy of it', () => {
    const sizes = [5, 3 * 1024 * 1024, 17, 300];
    const field = (w: ProtoWriter, id: number): void => {
      w.field(id);
      w.varint32((id << 3) | 2);
      w.bytes(new Uint8Array(sizes[id - 1] as number).fill(id));
    };
    const expected = new ProtoWriter();
    expected.reset();
    for (const id of [1, 2, 3, 4]) field(expected, id);
    const want = Buffer.from(expected.finish());
    for (const listed of [[2, 1, 4, 3], [4, 3, 1, 2], [1, 4, 2, 3], [3, 2, 4, 1]]) {
      const w = new ProtoWriter();
      w.reset();
      const mark = w.openMessage();
      for (const id of listed) field(w, id);
      w.closeMessage(mark);
      // The 3 MiB field moved in place: the buffer grew to 6 MiB (doubled once past the message), not to 12 for a second copy.
      expect(w.scratchBytes, `listed ${listed.join(',')}`).toBeLessThan(8 * 1024 * 1024);
      expect(Buffer.from(w.finish()).equals(want), `listed ${listed.join(',')}`).toBe(true);
    }
  });
});
