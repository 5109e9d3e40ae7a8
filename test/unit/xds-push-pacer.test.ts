import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { LeadWrite, PacedFanOut, SlicedWork } from '../../src/xds/push-pacer.js';
import { SharedResponseBodies, SotwStream } from '../../src/xds/sotw.js';
import type { WireMessage } from '../../src/xds/wire.js';
import { recordingHooks, resources } from '../support/xds-stream.js';

describe('PacedFanOut', () => {
  it('pushes for one slice, the rest in later turns of the event loop, each stream once for every change it waited for', async () => {
    let now = 0;
    const pushed: string[] = [];
    const fanOut = new PacedFanOut<string, string>((stream, changed) => {
      pushed.push(`${stream}:${changed.join('+')}`);
      now += 6; // two pushes fit in a slice of 10 ms
    }, 10, () => now);
    for (const stream of ['a', 'b', 'c', 'd', 'e']) fanOut.add(stream, ['cds']);
    fanOut.run();
    expect(pushed).toEqual(['a:cds', 'b:cds']);
    // A second change before d and e had their turn: one push each, for both.
    for (const stream of ['a', 'd', 'e']) fanOut.add(stream, ['lds']);
    fanOut.forget('e');
    await nextTurn();
    expect(pushed).toEqual(['a:cds', 'b:cds', 'c:cds', 'd:cds+lds']);
    await nextTurn();
    expect(pushed).toEqual(['a:cds', 'b:cds', 'c:cds', 'd:cds+lds', 'a:lds']);
    expect(fanOut.longestSliceMs).toBe(12);
  });
});

describe('PacedFanOut first slice', () => {
  it('runs a first slice of the length asked for, at least one push, and the rest in slices of the usual length', async () => {
    let now = 0;
    const pushed: string[] = [];
    const fanOut = new PacedFanOut<string, string>((stream) => {
      pushed.push(stream);
      now += 3;
    }, 10, () => now);
    for (const stream of ['a', 'b', 'c', 'd', 'e', 'f']) fanOut.add(stream, ['cds']);
    fanOut.run(1);
    expect(pushed).toEqual(['a']);
    await nextTurn();
    expect(pushed).toEqual(['a', 'b', 'c', 'd', 'e']);
    await nextTurn();
    expect(pushed).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
  });
});

describe('PacedFanOut.whenSent', () => {
  it('calls back a turn after the slice that pushed to the last stream waiting when asked, not waiting for a later change', async () => {
    let now = 0;
    const events: string[] = [];
    const fanOut = new PacedFanOut<string, string>((stream, changed) => {
      events.push(`${stream}:${changed.join('+')}`);
      now += 6; // two pushes fit in a slice of 10 ms
      // What a slice wrote leaves at the next turn; this marks the turn after c's.
      if (stream === 'c') setImmediate(() => events.push('turn after c'));
    }, 10, () => now);
    for (const stream of ['a', 'b', 'c']) fanOut.add(stream, ['cds']);
    fanOut.run();
    fanOut.whenSent(() => events.push('sent'));
    // Queued in the turn of the change, as the status pass after a translation is: it ran right
    // after the fan-out's slice in the next turn, before that slice's writes left.
    setImmediate(() => events.push('queued with the change'));
    // A later change to other streams: changes that keep coming must not hold the listener for ever.
    for (const stream of ['d', 'e']) fanOut.add(stream, ['lds']);
    for (let i = 0; i < 5; i++) await nextTurn();
    expect(events).toEqual(['a:cds', 'b:cds', 'c:cds', 'd:lds', 'queued with the change', 'turn after c', 'e:lds', 'sent']);
  });

  it('with nothing waiting, calls back at the next turn, once for however many listeners', async () => {
    const fanOut = new PacedFanOut<string, string>(() => undefined);
    const calls: number[] = [];
    fanOut.whenSent(() => calls.push(1));
    fanOut.whenSent(() => calls.push(2));
    expect(calls).toEqual([]);
    await nextTurn();
    expect(calls).toEqual([1, 2]);
  });
});

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * A fresh Node with V8's test functions: run() compiled (TurboFan) after the changes of a queue
 * that never has a listener, as the push rehearsal's; then another queue's first change, with a
 * whenSent() listener waiting, as the real server's first edit with status work held. Whether
 * run()'s compiled code was kept through that change.
 */
const RUN_KEPT_SCRIPT = `
  import { setImmediate as nextTurn } from 'node:timers/promises';
  import { PacedFanOut } from './src/xds/push-pacer.ts';
  const natives = (body) => new Function('f', body);
  const prepare = natives('%PrepareFunctionForOptimization(f)');
  const optimize = natives('%OptimizeFunctionOnNextCall(f)');
  const status = natives('return %GetOptimizationStatus(f)');
  const OPTIMIZED = 16;
  const run = PacedFanOut.prototype.run;
  let now = 0;
  const clock = () => now;
  const push = () => { now += 6; };
  const streams = Array.from({ length: 8 }, (_, i) => ({ id: i }));
  async function change(fanOut) {
    for (const s of streams) fanOut.add(s, ['cds']);
    fanOut.run();
    while (fanOut.busy) await nextTurn();
  }
  prepare(run);
  const rehearsal = new PacedFanOut(push, 10, clock);
  for (let i = 0; i < 20; i++) await change(rehearsal);
  optimize(run);
  await change(rehearsal);
  const rehearsed = (status(run) & OPTIMIZED) !== 0;
  const real = new PacedFanOut(push, 10, clock);
  for (const s of streams) real.add(s, ['cds']);
  real.run();
  const sent = new Promise((resolve) => real.whenSent(resolve));
  while (real.busy) await nextTurn();
  const kept = (status(run) & OPTIMIZED) !== 0;
  await sent;
  process.stdout.write(JSON.stringify({ rehearsed, kept }));
`;

describe('PacedFanOut and V8', () => {
  it("keeps run()'s compiled code through the first change with a whenSent() listener after changes without one", () => {
    const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', '--input-type=module', '-e', RUN_KEPT_SCRIPT], { cwd: ROOT, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`node exited ${String(r.status)}: ${r.stderr}`);
    expect(JSON.parse(r.stdout)).toEqual({ rehearsed: true, kept: true });
  });
});

describe('SotW fan-out', () => {
  it('writes the very same bytes to every stream that gets the same response', () => {
    const cache = new SnapshotCache();
    const bodies = new SharedResponseBodies();
    const written: WireMessage[][] = [];
    const streams = Array.from({ length: 3 }, (_, i) => {
      const out: WireMessage[] = [];
      written.push(out);
      const stream = new SotwStream({
        cache,
        identity: { role: 'envoy', via: 'mtls' },
        bodies,
        hooks: recordingHooks().hooks,
        logger: pino({ level: 'silent' }),
        send: (messages, flushed) => {
          out.push(...messages);
          flushed();
          return true;
        },
      });
      stream.onRequest({ versionInfo: '', node: { id: `envoy-${i}`, cluster: 'gw', userAgent: 'test' }, resourceNames: [], typeUrl: TypeUrl.cluster, responseNonce: '', errorDetail: undefined });
      return stream;
    });
    cache.watch((change) => {
      bodies.invalidate(change.changed);
      for (const stream of streams) stream.onCacheChange(change.changed);
    });
    cache.setResources(resources());
    expect(written.map((out) => out.length)).toEqual([1, 1, 1]);
    expect(written[1]?.[0]).toBe(written[0]?.[0]);
    expect(written[2]?.[0]).toBe(written[0]?.[0]);
  });
});

describe('SlicedWork: a burst of requests in one read is answered in slices', () => {
  it('runs a lone task at once, defers what exceeds the slice to later turns in order, and lets the loop turn between slices', async () => {
    let clock = 0;
    const work = new SlicedWork(10, () => clock);
    const ran: number[] = [];
    work.add(() => ran.push(0));
    expect(ran).toEqual([0]);
    // Each task costs 4 ms: three fit a slice of 10 ms (the slice began at 0).
    for (let i = 1; i <= 7; i++) {
      work.add(() => {
        ran.push(i);
        clock += 4;
      });
    }
    expect(ran).toEqual([0, 1, 2, 3]);
    expect(work.waiting).toBe(4);
    await nextTurn();
    expect(ran).toEqual([0, 1, 2, 3, 4, 5, 6]);
    await nextTurn();
    expect(ran).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(work.waiting).toBe(0);
    expect(work.longestSliceMs).toBeLessThanOrEqual(12);
    // A later lone task runs at once again.
    work.add(() => ran.push(8));
    expect(ran.at(-1)).toBe(8);
  });

  it('holds tasks while the work it yields to (a push to the fleet) is under way, then runs them in order', async () => {
    let pushing = true;
    const work = new SlicedWork(10, () => 0, () => pushing);
    const ran: number[] = [];
    for (let i = 0; i < 3; i++) work.add(() => ran.push(i));
    expect(ran).toEqual([]);
    await nextTurn();
    await nextTurn();
    expect(ran).toEqual([]);
    expect(work.waiting).toBe(3);
    pushing = false;
    await nextTurn();
    expect(ran).toEqual([0, 1, 2]);
    work.add(() => ran.push(3));
    expect(ran.at(-1)).toBe(3);
  });
});

describe('PacedFanOut.busy', () => {
  it('says whether streams still wait for a push', async () => {
    let clock = 0;
    const fanOut = new PacedFanOut<string, string>(() => {
      clock += 6;
    }, 10, () => clock);
    expect(fanOut.busy).toBe(false);
    for (const s of ['a', 'b', 'c']) fanOut.add(s, ['x']);
    fanOut.run();
    expect(fanOut.busy).toBe(true);
    await nextTurn();
    expect(fanOut.busy).toBe(false);
  });
});

describe('PacedFanOut.hold', () => {
  it('ends the running slice after the push that held it and runs no slice until released', async () => {
    let now = 0;
    const pushed: string[] = [];
    let fanOut: PacedFanOut<string, string>;
    fanOut = new PacedFanOut<string, string>((stream) => {
      pushed.push(stream);
      now += 1;
      if (stream === 'a') fanOut.hold();
    }, 10, () => now);
    for (const stream of ['a', 'b', 'c']) fanOut.add(stream, ['cds']);
    fanOut.run(5);
    expect(pushed).toEqual(['a']);
    for (let i = 0; i < 3; i++) await nextTurn();
    expect(pushed).toEqual(['a']);
    expect(fanOut.busy).toBe(true);
    fanOut.release();
    expect(pushed).toEqual(['a']);
    await nextTurn();
    expect(pushed).toEqual(['a', 'b', 'c']);
    expect(fanOut.busy).toBe(false);
  });
});

describe('LeadWrite', () => {
  /** A fan-out that records what LeadWrite asks of it. */
  function recorder(): { calls: string[]; fanOut: { hold(): void; release(): void } } {
    const calls: string[] = [];
    return { calls, fanOut: { hold: () => calls.push('hold'), release: () => calls.push('release') } };
  }

  it('holds for a large write of a first slice until it is flushed; small writes and later slices hold nothing', () => {
    const { calls, fanOut } = recorder();
    const ended: boolean[] = [];
    const lead = new LeadWrite(fanOut, 1000, 60_000, (_ms, expired) => ended.push(expired));
    let flushes = 0;
    const flushed = (): void => {
      flushes++;
    };
    // Outside a first slice (a request answered, a later slice): the stream's own callback.
    expect(lead.track(5000, flushed)).toBe(flushed);
    let callback: () => void = flushed;
    lead.runFirstSlice(() => {
      expect(lead.track(999, flushed)).toBe(flushed);
      callback = lead.track(5000, flushed);
    });
    expect(callback).not.toBe(flushed);
    expect(calls).toEqual(['hold']);
    expect(lead.holding).toBe(true);
    callback();
    expect(flushes).toBe(1);
    expect(calls).toEqual(['hold', 'release']);
    expect(ended).toEqual([false]);
    // Called again (it never is by a transport): flushed again, nothing more released.
    callback();
    expect(calls).toEqual(['hold', 'release']);
  });

  it('lets go after its time limit, and a write of that hold flushed later releases nothing of the next', async () => {
    const { calls, fanOut } = recorder();
    const ended: boolean[] = [];
    const lead = new LeadWrite(fanOut, 1000, 20, (_ms, expired) => ended.push(expired));
    let late: () => void = () => undefined;
    lead.runFirstSlice(() => {
      late = lead.track(5000, () => undefined);
    });
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(calls).toEqual(['hold', 'release']);
    expect(ended).toEqual([true]);
    let next: () => void = () => undefined;
    lead.runFirstSlice(() => {
      next = lead.track(5000, () => undefined);
    });
    late();
    expect(lead.holding).toBe(true);
    expect(calls).toEqual(['hold', 'release', 'hold']);
    next();
    expect(calls).toEqual(['hold', 'release', 'hold', 'release']);
    expect(ended).toEqual([true, false]);
  });
});
