import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { GrpcMessageReader, type ReadRefusal, type ReaderTexts, type RequestEncoding } from '../../src/h2/grpc-messages.js';
import { GrpcCode } from '../../src/h2/grpc-status.js';
import { ConnectionReceiveBudget, SharedReceiveBudget } from '../../src/h2/receive-budget.js';

/** The one gRPC message reader of the xDS transport and the ext_proc server (src/h2/grpc-messages.ts). */

const TEXTS: ReaderTexts = { badFlag: (flag) => `flag ${flag}`, tooLarge: (length, limit) => `${length} > ${limit}` };

function frame(message: Buffer, flag = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flag;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

function reader(opts: { encoding?: RequestEncoding; max?: number; budget?: ConnectionReceiveBudget; stopAfter?: number } = {}) {
  const seen: { data: Buffer; start: number; end: number }[] = [];
  const reclaimed: ReadRefusal[] = [];
  const r = new GrpcMessageReader(
    opts.max ?? 1024 * 1024,
    opts.encoding ?? 'identity',
    TEXTS,
    (data, start, end) => {
      seen.push({ data, start, end });
      return seen.length < (opts.stopAfter ?? Infinity);
    },
    opts.budget,
    (refusal) => reclaimed.push(refusal),
  );
  const messages = (): string[] => seen.map((m) => m.data.subarray(m.start, m.end).toString());
  return { r, seen, messages, reclaimed };
}

describe('GrpcMessageReader', () => {
  it('hands on the messages whole in a read where they lie, uncopied and uncounted', () => {
    const shared = new SharedReceiveBudget(1024 * 1024);
    const budget = new ConnectionReceiveBudget(1024 * 1024, shared, () => undefined);
    const { r, seen, messages } = reader({ budget });
    const read = Buffer.concat([frame(Buffer.from('first')), frame(Buffer.from('')), frame(Buffer.from('third'))]);
    expect(r.push(read)).toBeUndefined();
    expect(messages()).toEqual(['first', '', 'third']);
    expect(seen.every((m) => m.data === read)).toBe(true);
    expect([r.midMessage, shared.used]).toEqual([false, 0]);
  });

  it('assembles a message spread over reads (the prefix split too), counted while partial, and gives the budget back', () => {
    const shared = new SharedReceiveBudget(1024 * 1024);
    const budget = new ConnectionReceiveBudget(1024 * 1024, shared, () => undefined);
    const { r, messages } = reader({ budget });
    const body = Buffer.alloc(40_000, 0x62);
    const bytes = Buffer.concat([frame(body), frame(Buffer.from('next'))]);
    for (const [from, to] of [[0, 3], [3, 20_000], [20_000, bytes.length - 2]] as const) {
      expect(r.push(bytes.subarray(from, to))).toBeUndefined();
      expect(r.midMessage).toBe(true);
      expect(shared.used).toBeGreaterThan(0);
    }
    expect(r.push(bytes.subarray(bytes.length - 2))).toBeUndefined();
    expect(messages()).toEqual([body.toString(), 'next']);
    expect([r.midMessage, shared.used]).toEqual([false, 0]);
  });

  it("refuses a flag the call cannot take and a length above the maximum, in the server's own words", () => {
    expect(reader().r.push(frame(Buffer.from('x'), 1))).toEqual({ code: GrpcCode.INTERNAL, message: 'flag 1' });
    expect(reader({ encoding: 'gzip' }).r.push(frame(Buffer.from('x'), 2))).toEqual({ code: GrpcCode.INTERNAL, message: 'flag 2' });
    const head = Buffer.alloc(5);
    head.writeUInt32BE(101, 1);
    expect(reader({ max: 100 }).r.push(head)).toEqual({ code: GrpcCode.RESOURCE_EXHAUSTED, message: '101 > 100' });
    // The prefix split over reads is checked once whole.
    const split = reader({ max: 100 });
    expect(split.r.push(head.subarray(0, 2))).toBeUndefined();
    expect(split.r.push(head.subarray(2))).toEqual({ code: GrpcCode.RESOURCE_EXHAUSTED, message: '101 > 100' });
    expect(split.r.midMessage).toBe(false);
  });

  it('inflates a compressed message, its output bounded by the maximum', () => {
    const { r, messages } = reader({ encoding: 'gzip', max: 1000 });
    expect(r.push(frame(gzipSync(Buffer.from('hello')), 1))).toBeUndefined();
    expect(messages()).toEqual(['hello']);
    const bomb = gzipSync(Buffer.alloc(100_000));
    expect(bomb.length).toBeLessThan(1000);
    expect(reader({ encoding: 'gzip', max: 1000 }).r.push(frame(bomb, 1))).toEqual({ code: GrpcCode.RESOURCE_EXHAUSTED, message: 'Received message larger than max once decompressed (limit 1000)' });
    expect(reader({ encoding: 'deflate' }).r.push(frame(Buffer.from('not deflate'), 1))).toEqual({ code: GrpcCode.INTERNAL, message: 'a deflate message could not be decompressed' });
  });

  it('stops reading once the sink says the call ended', () => {
    const { r, messages } = reader({ stopAfter: 1 });
    expect(r.push(Buffer.concat([frame(Buffer.from('a')), frame(Buffer.from('b'))]))).toBeUndefined();
    expect(messages()).toEqual(['a']);
  });

  it("tells the call when its partial message is reclaimed for another client's", () => {
    const shared = new SharedReceiveBudget(64 * 1024);
    const hostile = reader({ budget: new ConnectionReceiveBudget(64 * 1024, shared, () => undefined, { key: 'tcp:10.0.0.1', trusted: false }) });
    const head = Buffer.alloc(40_000);
    head.writeUInt32BE(100_000, 1);
    expect(hostile.r.push(head)).toBeUndefined();
    const newcomer = reader({ budget: new ConnectionReceiveBudget(64 * 1024, shared, () => undefined, { key: 'tcp:10.0.0.2', trusted: false }) });
    const begun = Buffer.alloc(30_000, 0x63);
    begun[0] = 0;
    begun.writeUInt32BE(50_000, 1);
    expect(newcomer.r.push(begun)).toBeUndefined();
    expect(newcomer.r.midMessage).toBe(true);
    expect(hostile.r.midMessage).toBe(false);
    expect(hostile.reclaimed).toHaveLength(1);
    expect(hostile.reclaimed[0]?.code).toBe(GrpcCode.RESOURCE_EXHAUSTED);
    expect(hostile.reclaimed[0]?.message).toMatch(/above its limit of 65536 bytes, this client holding the most: its partial message dropped; retry later$/u);
  });
});
