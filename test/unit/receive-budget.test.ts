import { describe, expect, it } from 'vitest';
import { ConnectionReceiveBudget, PartialMessage, SharedReceiveBudget } from '../../src/h2/receive-budget.js';

/** The accounting behind the bound on partial request messages (src/h2/receive-budget.ts). */
describe('receive budget', () => {
  it('charges a partial message what its buffer holds, grown by doubling up to the declared length, never the declared length ahead', () => {
    const shared = new SharedReceiveBudget(100 * 1024 * 1024);
    const budget = new ConnectionReceiveBudget(50 * 1024 * 1024, shared, () => undefined);
    const partial = new PartialMessage(budget);
    const head = Buffer.alloc(100);
    head.writeUInt32BE(16 * 1024 * 1024, 1);
    partial.expected = 5 + 16 * 1024 * 1024;
    partial.append(head, 0, head.length);
    // A first buffer of one frame's worth, not 16 MiB.
    expect(budget.used).toBe(16 * 1024 + 256);
    partial.append(Buffer.alloc(20_000), 0, 20_000);
    expect(budget.used).toBe(32 * 1024 + 256);
    expect(shared.used).toBe(budget.used);
    partial.drop();
    expect([budget.used, shared.used]).toEqual([0, 0]);
  });

  it('caps the buffer at the declared length, and hands the whole message back with the budget', () => {
    const shared = new SharedReceiveBudget(1024 * 1024);
    const budget = new ConnectionReceiveBudget(1024 * 1024, shared, () => undefined);
    const partial = new PartialMessage(budget);
    const message = Buffer.alloc(5 + 40_000, 7);
    message[0] = 0;
    message.writeUInt32BE(40_000, 1);
    partial.append(message, 0, 3);
    expect(partial.bytes).toBe(3);
    partial.append(message, 3, 5);
    partial.expected = 40_005;
    partial.append(message, 5, 30_000);
    partial.append(message, 30_000, 40_005);
    expect(budget.used).toBe(40_005 + 256);
    const whole = partial.take();
    expect(whole.equals(message)).toBe(true);
    expect(budget.used).toBe(0);
  });

  it('refuses past the connection bound, then past the shared one; reports the first refusal only; keeps nothing refused', () => {
    const shared = new SharedReceiveBudget(3000);
    const reports: string[] = [];
    const a = new ConnectionReceiveBudget(2000, shared, (scope, limit) => reports.push(`a ${scope} ${limit}`));
    const b = new ConnectionReceiveBudget(2000, shared, (scope, limit) => reports.push(`b ${scope} ${limit}`));
    expect(a.take(1500)).toBeUndefined();
    expect(a.take(600)).toBe('connection');
    expect(a.take(600)).toBe('connection');
    expect(a.refusals).toBe(2);
    expect(b.take(1400)).toBeUndefined();
    expect(b.take(200)).toBe('process');
    expect(b.refusals).toBe(0);
    expect([a.used, b.used, shared.used]).toEqual([1500, 1400, 2900]);
    expect(reports).toEqual(['a connection 2000', 'b process 3000']);
    const partial = new PartialMessage(b);
    expect(partial.append(Buffer.alloc(300), 0, 300)).toBe('process');
    expect([partial.bytes, b.used, shared.used]).toEqual([0, 1400, 2900]);
  });
});
