import { describe, expect, it } from 'vitest';
import { ConnectionReceiveBudget, PartialMessage, SharedReceiveBudget, type BudgetScope, type ReceivePeer } from '../../src/h2/receive-budget.js';

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

  describe('shared by client', () => {
    const KiB = 1024;
    /** A partial message of `bytes` (a buffer of exactly that many, no prefix known) on `budget`; `reclaimed` records it going. */
    function hold(budget: ConnectionReceiveBudget, bytes: number, reclaimed: string[], name: string): PartialMessage {
      const partial = new PartialMessage(budget, () => reclaimed.push(name));
      partial.append(Buffer.alloc(bytes), 0, bytes);
      return partial;
    }
    const anonymous = (address: string): ReceivePeer => ({ key: `tcp:${address}`, trusted: false });

    it("counts a client's connections together", () => {
      const shared = new SharedReceiveBudget(1024 * KiB);
      const a1 = new ConnectionReceiveBudget(512 * KiB, shared, () => undefined, anonymous('10.0.0.1'));
      const a2 = new ConnectionReceiveBudget(512 * KiB, shared, () => undefined, anonymous('10.0.0.1'));
      const one = hold(a1, 100 * KiB, [], 'one');
      hold(a2, 50 * KiB, [], 'two');
      expect(shared.heldBy('tcp:10.0.0.1')).toBe(150 * KiB + 512);
      expect([a1.used, a2.used]).toEqual([100 * KiB + 256, 50 * KiB + 256]);
      one.drop();
      expect(shared.heldBy('tcp:10.0.0.1')).toBe(50 * KiB + 256);
    });

    it('past the shared bound, reclaims the largest partial messages of the client holding the most until the take fits, and reports it once per connection', () => {
      const shared = new SharedReceiveBudget(1000 * KiB);
      const reports: string[] = [];
      const reclaimed: string[] = [];
      const report = (who: string) => (scope: BudgetScope, limit: number) => reports.push(`${who} ${scope} ${limit}`);
      // A client over two connections: 750 KiB in five messages; a trusted one: 200 KiB.
      const h1 = new ConnectionReceiveBudget(600 * KiB, shared, report('h1'), anonymous('10.0.0.1'));
      const h2 = new ConnectionReceiveBudget(600 * KiB, shared, report('h2'), anonymous('10.0.0.1'));
      const kept = [hold(h1, 100 * KiB, reclaimed, '100'), hold(h1, 160 * KiB, reclaimed, '160'), hold(h2, 140 * KiB, reclaimed, '140')];
      hold(h1, 180 * KiB, reclaimed, '180');
      hold(h2, 170 * KiB, reclaimed, '170');
      hold(new ConnectionReceiveBudget(600 * KiB, shared, report('local'), { key: 'unix-1', trusted: true }), 200 * KiB, reclaimed, 'local');
      expect(shared.used).toBe(950 * KiB + 6 * 256);
      const other = new ConnectionReceiveBudget(600 * KiB, shared, report('other'), anonymous('10.0.0.2'));
      // 500 KiB would not fit even with the others' two largest gone (the client would then hold less): refused, nothing reclaimed.
      expect(new PartialMessage(other).append(Buffer.alloc(500 * KiB), 0, 500 * KiB)).toBe('process');
      expect(reclaimed).toEqual([]);
      // 350 KiB: the 180 KiB message goes, then the 170 KiB one.
      const newcomer = hold(other, 350 * KiB, reclaimed, 'newcomer');
      expect(newcomer.bytes).toBe(350 * KiB);
      expect(reclaimed).toEqual(['180', '170']);
      expect(reports).toEqual([`other process ${1000 * KiB}`, `h1 reclaimed ${1000 * KiB}`, `h2 reclaimed ${1000 * KiB}`]);
      expect([shared.heldBy('tcp:10.0.0.1'), shared.heldBy('tcp:10.0.0.2'), shared.heldBy('unix-1')]).toEqual([400 * KiB + 768, 350 * KiB + 256, 200 * KiB + 256]);
      expect([h1.used, h2.used]).toEqual([260 * KiB + 512, 140 * KiB + 256]);
      expect(shared.used).toBeLessThanOrEqual(shared.limitBytes);
      expect(kept.map((p) => p.bytes)).toEqual([100 * KiB, 160 * KiB, 140 * KiB]);
    });

    it('refuses the asking client, reclaiming nothing, when no other untrusted client holds more than it would', () => {
      const shared = new SharedReceiveBudget(1000 * KiB);
      const reclaimed: string[] = [];
      const hostile = new ConnectionReceiveBudget(1000 * KiB, shared, () => undefined, anonymous('10.0.0.1'));
      const local = new ConnectionReceiveBudget(1000 * KiB, shared, () => undefined, { key: 'unix-1', trusted: true });
      hold(hostile, 400 * KiB, reclaimed, 'hostile');
      hold(local, 500 * KiB, reclaimed, 'local');
      // The hostile client asks for more: it holds the most of the untrusted ones, so it is refused.
      const more = new PartialMessage(hostile);
      expect(more.append(Buffer.alloc(200 * KiB), 0, 200 * KiB)).toBe('process');
      // A third client asking 450 KiB would hold more than the hostile one: refused too.
      const third = new ConnectionReceiveBudget(1000 * KiB, shared, () => undefined, anonymous('10.0.0.3'));
      expect(new PartialMessage(third).append(Buffer.alloc(450 * KiB), 0, 450 * KiB)).toBe('process');
      // The trusted client's message is never reclaimed: the hostile one's is, for a newcomer asking less than it holds.
      const newcomer = new PartialMessage(third);
      expect(newcomer.append(Buffer.alloc(200 * KiB), 0, 200 * KiB)).toBeUndefined();
      expect(reclaimed).toEqual(['hostile']);
      expect([shared.heldBy('tcp:10.0.0.1'), shared.heldBy('unix-1'), shared.heldBy('tcp:10.0.0.3')]).toEqual([0, 500 * KiB + 256, 200 * KiB + 256]);
    });
  });
});
