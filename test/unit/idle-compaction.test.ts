import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { collectAfterPushRehearsal, collectBeforeRehearsal, collectGarbage, collectsAfterStart, collectsBeforeRehearsal, compactHeap, decideCompaction, DEFAULT_IDLE_COMPACTION, runnableThreads, startIdleCompaction, type HeapSample } from '../../src/observability/idle-compaction.js';
import { createLogger } from '../../src/observability/logger.js';
import { AI_EXTENSION_IDLE_COMPACTION } from '../../src/cli/ai-extension.js';

const MB = 1024 * 1024;
const quiet: HeapSample = { utilization: 0.01, physicalBytes: 60 * MB, usedBytes: 50 * MB, nowMs: 10_000 };
const fresh = { physicalAfterBytes: 0, notBeforeMs: 0 };

describe('decideCompaction', () => {
  it('compacts a quiet process whose heap grew since the last compaction', () => {
    expect(decideCompaction(quiet, fresh, DEFAULT_IDLE_COMPACTION)).toBe('compact');
    expect(decideCompaction(quiet, { physicalAfterBytes: 55 * MB, notBeforeMs: 9_000 }, DEFAULT_IDLE_COMPACTION)).toBe('compact');
  });

  it('leaves a busy event loop, a heap that did not grow, a large heap and a recent compaction alone', () => {
    expect(decideCompaction({ ...quiet, utilization: 0.2 }, fresh, DEFAULT_IDLE_COMPACTION)).toBe('busy');
    expect(decideCompaction(quiet, { physicalAfterBytes: 57 * MB, notBeforeMs: 0 }, DEFAULT_IDLE_COMPACTION)).toBe('no-growth');
    expect(decideCompaction({ ...quiet, usedBytes: 200 * MB, physicalBytes: 220 * MB }, fresh, DEFAULT_IDLE_COMPACTION)).toBe('heap-too-large');
    expect(decideCompaction(quiet, { physicalAfterBytes: 40 * MB, notBeforeMs: 12_000 }, DEFAULT_IDLE_COMPACTION)).toBe('too-soon');
  });

  it('waits for a free core: a pause on a machine with more runnable threads than cores lasts several times its CPU', () => {
    expect(decideCompaction({ ...quiet, runnable: { threads: 9, cores: 2 } }, fresh, DEFAULT_IDLE_COMPACTION)).toBe('machine-busy');
    expect(decideCompaction({ ...quiet, runnable: { threads: 2, cores: 2 } }, fresh, DEFAULT_IDLE_COMPACTION)).toBe('compact');
  });
});

describe('decideCompaction, a heap too large to compact', () => {
  const large: HeapSample = { ...quiet, usedBytes: 240 * MB, physicalBytes: 260 * MB };

  it("collects a quiet heap grown since V8's last full GC, with a core free: V8 would otherwise collect it in the next edit", () => {
    expect(decideCompaction(large, { ...fresh, usedLowBytes: 208 * MB }, DEFAULT_IDLE_COMPACTION)).toBe('collect');
    expect(decideCompaction({ ...large, runnable: { threads: 2, cores: 2 } }, { ...fresh, usedLowBytes: 208 * MB }, DEFAULT_IDLE_COMPACTION)).toBe('collect');
    // On a machine with no core free, the pause lasts several times its CPU: V8 is left to it.
    expect(decideCompaction({ ...large, runnable: { threads: 15, cores: 2 } }, { ...fresh, usedLowBytes: 208 * MB }, DEFAULT_IDLE_COMPACTION)).toBe('machine-busy');
  });

  it('leaves it alone while busy, when it grew little, before any full GC was seen, and too soon after the last collection', () => {
    expect(decideCompaction({ ...large, utilization: 0.2 }, { ...fresh, usedLowBytes: 208 * MB }, DEFAULT_IDLE_COMPACTION)).toBe('busy');
    expect(decideCompaction(large, { ...fresh, usedLowBytes: 230 * MB }, DEFAULT_IDLE_COMPACTION)).toBe('heap-too-large');
    expect(decideCompaction(large, fresh, DEFAULT_IDLE_COMPACTION)).toBe('heap-too-large');
    expect(decideCompaction(large, { ...fresh, usedLowBytes: 208 * MB, notBeforeMs: 12_000 }, DEFAULT_IDLE_COMPACTION)).toBe('too-soon');
  });
});

describe('runnableThreads', () => {
  it("reads the threads runnable now from Linux's /proc/loadavg", () => {
    expect(runnableThreads('13.27 12.54 12.76 19/349 123456\n')).toBe(19);
    expect(runnableThreads('')).toBeUndefined();
  });
});

/** Old-space objects, one in four kept: what a load or an edit leaves behind, pages mostly empty. */
function fragmentHeap(): unknown[] {
  const all: { id: number; name: string; list: number[] }[] = [];
  for (let i = 0; i < 400_000; i++) all.push({ id: i, name: `member-${i}`, list: [i, i + 1] });
  return all.filter((_, i) => i % 4 === 0);
}

describe('compactHeap', () => {
  it("gives back V8's half-empty pages, which an ordinary full GC keeps", () => {
    const kept = fragmentHeap();
    setFlagsFromString('--expose-gc');
    const ordinaryGc = runInNewContext('gc') as () => void;
    ordinaryGc();
    const before = getHeapStatistics().total_physical_size;
    const result = compactHeap();
    expect(result).toBeDefined();
    expect(result?.physicalBeforeBytes).toBeGreaterThanOrEqual(before - MB);
    // The surviving quarter fits in far fewer pages.
    expect((result?.physicalBeforeBytes ?? 0) - (result?.physicalAfterBytes ?? 0)).toBeGreaterThan(10 * MB);
    expect(kept.length).toBe(100_000);
  });
});

describe('collectsAfterStart', () => {
  it('collects at the end of a start with a core free, or where the system does not say, and leaves it to V8 on a busy machine', () => {
    expect(collectsAfterStart({ threads: 2, cores: 2 })).toBe(true);
    expect(collectsAfterStart(undefined)).toBe(true);
    expect(collectsAfterStart({ threads: 9, cores: 2 })).toBe(false);
  });
});

describe('collectGarbage', () => {
  it('collects what a start left behind at once, whatever the size of the heap', () => {
    let garbage: unknown[] | undefined = fragmentHeap();
    const kept = garbage.slice(0, 1_000);
    garbage = undefined;
    const result = collectGarbage();
    expect(result).toBeDefined();
    // Three quarters of 400,000 small records and their lists, gone in one call.
    expect((result?.usedBeforeBytes ?? 0) - (result?.usedAfterBytes ?? 0)).toBeGreaterThan(20 * MB);
    expect(kept.length).toBe(1_000);
    expect(garbage).toBeUndefined();
  });
});

describe('collectBeforeRehearsal', () => {
  it("collects a small heap's garbage before the start's rehearsal, and leaves a heap over the bound to V8", () => {
    expect(collectsBeforeRehearsal(38 * MB)).toBe(true);
    expect(collectsBeforeRehearsal(DEFAULT_IDLE_COMPACTION.maxHeapBytes + 1)).toBe(false);
    expect(collectBeforeRehearsal(getHeapStatistics().used_heap_size - 1)).toBeUndefined();
    let garbage: unknown[] | undefined = fragmentHeap();
    const kept = garbage.slice(0, 1_000);
    garbage = undefined;
    const result = collectBeforeRehearsal(Number.MAX_SAFE_INTEGER);
    expect((result?.usedBeforeBytes ?? 0) - (result?.usedAfterBytes ?? 0)).toBeGreaterThan(20 * MB);
    expect(kept.length).toBe(1_000);
    expect(garbage).toBeUndefined();
  });
});

describe('collectAfterPushRehearsal', () => {
  it("collects a small heap's garbage after the push rehearsal (what a fleet's connecting left), and leaves a heap over the bound to V8", () => {
    expect(collectAfterPushRehearsal(getHeapStatistics().used_heap_size - 1)).toBeUndefined();
    let garbage: unknown[] | undefined = fragmentHeap();
    const kept = garbage.slice(0, 1_000);
    garbage = undefined;
    const result = collectAfterPushRehearsal(Number.MAX_SAFE_INTEGER);
    expect((result?.usedBeforeBytes ?? 0) - (result?.usedAfterBytes ?? 0)).toBeGreaterThan(20 * MB);
    expect(kept.length).toBe(1_000);
    expect(garbage).toBeUndefined();
  });
});

describe('collectAfterPushRehearsal, with the idle compaction running', () => {
  it('compacts where a quiet check would (the heap grew since the last compaction), counted by the checks, and collects otherwise', () => {
    const kept = fragmentHeap();
    // No check runs during the test: what happens is collectAfterPushRehearsal's doing.
    const compaction = startIdleCompaction(createLogger({ level: 'silent' }), { checkEveryMs: 600_000, maxHeapBytes: 2 ** 40, freeCoreOnly: false });
    try {
      const before = getHeapStatistics().total_physical_size;
      const first = collectAfterPushRehearsal(2 ** 40);
      expect(compaction.count).toBe(1);
      expect(before - getHeapStatistics().total_physical_size).toBeGreaterThan(10 * MB);
      expect(first?.usedAfterBytes).toBeLessThanOrEqual(first?.usedBeforeBytes ?? 0);
      // Nothing grew since: a collection, no second compaction.
      expect(collectAfterPushRehearsal(2 ** 40)).toBeDefined();
      expect(compaction.count).toBe(1);
      expect(compaction.collections).toBe(0);
    } finally {
      compaction.stop();
    }
    // Stopped: the collection alone, as without it.
    expect(collectAfterPushRehearsal(2 ** 40)).toBeDefined();
    expect(compaction.count).toBe(1);
    expect(kept.length).toBe(100_000);
  });
});

describe('IdleCompaction.afterStart', () => {
  it("compacts a small heap at once when the start is over, giving back the start's half-empty pages", () => {
    const kept = fragmentHeap();
    // No check runs during the test: what happens is afterStart's own doing.
    const compaction = startIdleCompaction(createLogger({ level: 'silent' }), { checkEveryMs: 600_000, maxHeapBytes: 2 ** 40, freeCoreOnly: false });
    try {
      const before = getHeapStatistics().total_physical_size;
      compaction.afterStart();
      expect(compaction.count).toBe(1);
      expect(compaction.collections).toBe(0);
      expect(before - getHeapStatistics().total_physical_size).toBeGreaterThan(10 * MB);
    } finally {
      compaction.stop();
    }
    expect(kept.length).toBe(100_000);
  });

  it("keeps the young generation at V8's initial size after the compaction, until stopped", () => {
    const compaction = startIdleCompaction(createLogger({ level: 'silent' }), { checkEveryMs: 600_000, maxHeapBytes: 2 ** 40, freeCoreOnly: false });
    const newSpace = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? -1;
    let kept: unknown[] = [];
    try {
      compaction.afterStart();
      // What makes V8 grow its young generation: allocation that survives it (a fleet connecting, an edit).
      for (let i = 0; i < 2_000_000; i++) {
        const o = { index: i, name: `member-${i}` };
        if (i % 20 === 0) kept.push(o);
      }
      // V8's initial young generation (two semi-spaces of 1 MB), where V8's default cap (16 MB each, in this process) is far above.
      expect(newSpace()).toBeLessThanOrEqual(2 * MB);
    } finally {
      compaction.stop();
    }
    kept = [];
    expect(kept).toEqual([]);
  });

  it('lets the young generation grow again after the compaction when told not to hold it (the AI extension\'s process)', () => {
    expect(AI_EXTENSION_IDLE_COMPACTION.holdYoungGeneration).toBe(false);
    const compaction = startIdleCompaction(createLogger({ level: 'silent' }), { checkEveryMs: 600_000, maxHeapBytes: 2 ** 40, freeCoreOnly: false, ...AI_EXTENSION_IDLE_COMPACTION });
    const newSpace = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? -1;
    let kept: unknown[] = [];
    try {
      compaction.afterStart();
      expect(compaction.count).toBe(1);
      // The same surviving allocation as above: V8 grows the young generation past its initial 2 MB.
      for (let i = 0; i < 2_000_000; i++) {
        const o = { index: i, name: `member-${i}` };
        if (i % 20 === 0) kept.push(o);
      }
      expect(newSpace()).toBeGreaterThan(2 * MB);
    } finally {
      compaction.stop();
    }
    kept = [];
    expect(kept).toEqual([]);
  });

  it('collects a heap above maxHeapBytes at the end of the start, without compacting it', () => {
    const compaction = startIdleCompaction(createLogger({ level: 'silent' }), { checkEveryMs: 600_000, maxHeapBytes: 1, freeCoreOnly: false });
    try {
      compaction.afterStart();
      expect(compaction.count).toBe(0);
    } finally {
      compaction.stop();
    }
  });
});

describe('startIdleCompaction', () => {
  it("collects a heap too large to compact once quiet after it grew past V8's last full GC, then not again while nothing grows", async () => {
    const compaction = startIdleCompaction(createLogger({ level: 'silent' }), { checkEveryMs: 100, idleUtilization: 0.5, maxShare: 1, maxHeapBytes: 1, collectGrowthBytes: 8 * MB, freeCoreOnly: false });
    try {
      // A full GC, seen by a check, sets where growth is counted from; then garbage, as a fleet's connecting leaves.
      setFlagsFromString('--expose-gc');
      (runInNewContext('gc') as () => void)();
      await new Promise((r) => setTimeout(r, 250));
      // Kept past a few turns, so it lives in the old generation, then dropped: garbage only a full GC frees.
      let garbage: unknown[] | undefined = fragmentHeap();
      await new Promise((r) => setTimeout(r, 250));
      garbage = undefined;
      const deadline = Date.now() + 10_000;
      while (compaction.collections === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(compaction.collections).toBe(1);
      expect(compaction.count).toBe(0);
      await new Promise((r) => setTimeout(r, 500));
      expect(compaction.collections).toBe(1);
      expect(garbage).toBeUndefined();
    } finally {
      compaction.stop();
    }
  });

  it('compacts once the event loop is quiet after work, then not again while nothing grows', async () => {
    const kept = fragmentHeap();
    const compaction = startIdleCompaction(createLogger({ level: 'silent' }), { checkEveryMs: 100, idleUtilization: 0.5, maxShare: 1, maxHeapBytes: 2 ** 40, freeCoreOnly: false });
    try {
      const deadline = Date.now() + 10_000;
      while (compaction.count === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(compaction.count).toBe(1);
      await new Promise((r) => setTimeout(r, 500));
      expect(compaction.count).toBe(1);
    } finally {
      compaction.stop();
    }
    expect(kept.length).toBe(100_000);
  });
});
