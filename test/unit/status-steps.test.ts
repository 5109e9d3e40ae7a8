import { describe, expect, it } from 'vitest';
import { runSteps, SlicedRun, type Steps } from '../../src/status/steps.js';

/** A clock that moves only when a step says so: slices are counted in steps, not in machine speed. */
function steppedClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 0;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

/** `count` steps of `ms` each; `done` lists what ran, and 'closed' when the generator was closed early. */
function* work(count: number, ms: number, clock: { advance: (ms: number) => void }, done: string[]): Steps<void> {
  try {
    for (let i = 0; i < count; i++) {
      clock.advance(ms);
      done.push(`step ${i}`);
      yield;
    }
    done.push('end');
  } finally {
    if (done.at(-1) !== 'end') done.push('closed');
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('SlicedRun', () => {
  it('runs a pass longer than a slice over several turns of the event loop, others running between', async () => {
    const clock = steppedClock();
    const done: string[] = [];
    const run = new SlicedRun((err) => { throw err; }, 10, clock.now);
    let ended = false;
    run.start(work(10, 4, clock, done), () => (ended = true));
    // 4 ms steps in 10 ms slices: three steps in the first slice, the rest later.
    expect(done).toEqual(['step 0', 'step 1', 'step 2']);
    // Work queued after the start runs before the pass ends.
    const seen = new Promise<string[]>((resolve) => setImmediate(() => resolve([...done])));
    while (!ended) await turn();
    expect(await seen).toEqual(['step 0', 'step 1', 'step 2', 'step 3', 'step 4', 'step 5']);
    expect(done.at(-1)).toBe('end');
    expect(run.slices).toBe(4);
    expect(run.longestSliceMs).toBe(12);
    expect(run.running).toBe(false);
  });

  it('runs no slice while held, a pass started meanwhile included, and goes on at the release', async () => {
    const clock = steppedClock();
    const done: string[] = [];
    const run = new SlicedRun((err) => { throw err; }, 10, clock.now);
    run.start(work(6, 4, clock, done));
    expect(done).toEqual(['step 0', 'step 1', 'step 2']);
    const release = run.hold();
    for (let i = 0; i < 5; i++) await turn();
    expect(done).toEqual(['step 0', 'step 1', 'step 2']);
    release();
    while (run.running) await turn();
    expect(done.at(-1)).toBe('end');

    const second: string[] = [];
    const releaseAgain = run.hold();
    run.start(work(2, 4, clock, second));
    for (let i = 0; i < 5; i++) await turn();
    expect(second).toEqual([]);
    // A reader still has a held pass finished at once.
    run.finish();
    expect(second.at(-1)).toBe('end');
    releaseAgain();
    await turn();
    expect(run.running).toBe(false);
  });

  it('finishes what is left of a pass at once when asked', () => {
    const clock = steppedClock();
    const done: string[] = [];
    const run = new SlicedRun((err) => { throw err; }, 10, clock.now);
    let ended = false;
    run.start(work(10, 4, clock, done), () => (ended = true));
    expect(ended).toBe(false);
    run.finish();
    expect(ended).toBe(true);
    expect(done).toHaveLength(11);
    expect(done.at(-1)).toBe('end');
  });

  it('drops a pass where it stands: it runs no further and its end is never reported', async () => {
    const clock = steppedClock();
    const done: string[] = [];
    const run = new SlicedRun((err) => { throw err; }, 10, clock.now);
    let ended = false;
    run.start(work(10, 4, clock, done), () => (ended = true));
    run.drop();
    await turn();
    await turn();
    expect(done).toEqual(['step 0', 'step 1', 'step 2', 'closed']);
    expect(ended).toBe(false);
    expect(run.running).toBe(false);
    // A new pass may start at once.
    run.start(work(1, 1, clock, []));
    expect(run.running).toBe(false);
  });

  it('reports a pass that throws and ends it', () => {
    const errors: unknown[] = [];
    const run = new SlicedRun((err) => errors.push(err), 10, () => 0);
    let ended = false;
    run.start((function* (): Steps<void> {
      yield;
      throw new Error('broken status');
    })(), () => (ended = true));
    expect(errors.map((e) => (e as Error).message)).toEqual(['broken status']);
    expect(ended).toBe(true);
    expect(run.running).toBe(false);
  });

  it('runSteps gives the result of steps at once', () => {
    const done: string[] = [];
    function* sum(): Steps<number> {
      let total = 0;
      for (let i = 1; i <= 4; i++) {
        total += i;
        done.push(String(i));
        yield;
      }
      return total;
    }
    expect(runSteps(sum())).toBe(10);
    expect(done).toEqual(['1', '2', '3', '4']);
  });
});
