import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from './logger.js';
import { holdYoungGeneration } from './young-generation.js';

/**
 * Gives V8's heap back to the system once a long-running command has gone quiet (issue 9).
 *
 * After a load, an edit or a fleet connecting, V8 keeps the pages that work used: its ordinary
 * full GCs free objects but move none, so half-empty pages and the grown young generation stay
 * resident. Only its memory reducer compacts, and that waits 8 s (a fixed delay in V8 13) after
 * the heap has grown by 10% or 10 MB, which a one-Backend edit never does. At 1,000 Backends x 10
 * clients a compacting GC after an edit gives back about 10 MB (serve's V8 heap 54 -> 45 MB:
 * young generation 4 -> 0.3, old space 40.5 -> 36, code and trusted spaces 2 more) that nothing
 * else would (bench/serve-memory.ts).
 *
 * The compaction is V8's "last resort" GC (what a low-memory notification runs: two full GCs that
 * compact and shrink every space) and synchronous: whatever arrives during it waits, so it runs
 * only when little is likely to:
 * - the event loop was idle over the last check (under `idleUtilization` busy);
 * - the machine has a core free (Linux: no more threads runnable right now than cores, this one
 *   included): on a machine with two cores and 8 to 24 runnable threads, the pause lasted five to
 *   ten times its CPU (0.8-1.8 s), the longest event-loop stall of the bench; without a free core
 *   the memory stays where it is, as it would without compaction;
 * - the heap grew by `minGrowthBytes` since the last compaction (nothing to gain otherwise);
 * - the heap holds under `maxHeapBytes`: the pause grows with the live heap (at 1,000 Backends,
 *   45 MB, 177 ms of CPU, which a machine with a load average of 16 on 2 cores stretched to
 *   0.8-1.8 s of wall time: the bench's longest event-loop stall); above it V8's incremental
 *   memory reducer is left to do its work;
 * - compactions take at most `maxShare` of the time: an edit every few seconds is not followed by
 *   a compaction each (the next waits duration / maxShare after the last).
 *
 * A heap above `maxHeapBytes` is not compacted but collected (an ordinary full GC, V8 compacting
 * only the pages it judges worth it) once quiet, when what it holds grew by `collectGrowthBytes`
 * since V8's last full GC, with a core free as a compaction. V8 begins a full GC when the old
 * generation reaches a limit set from what its last one left, and in a quiet control plane what
 * next allocates enough to reach it is an edit: at 10,000 Backends the garbage of a fleet's
 * connecting (29 MB over a live 208 MB) waited through a minute of quiet and then V8's marking
 * began with the first edit, 650 ms of marking steps and a pause of 135 ms on a busy machine
 * between its file event and its first byte (bench xds-e2e, round 1); collected in the quiet,
 * the next full GC is far off. Without a free core the collection (0.33-0.47 CPU-s at 10,000
 * Backends) held the event loop 1.1-2.8 s on a 2-core machine at a load of 14-25, over the
 * bench's bound on a stall (1 s): there V8 is left to it, as before (and round 1 may meet it).
 */
export interface IdleCompactionOptions {
  checkEveryMs: number;
  idleUtilization: number;
  minGrowthBytes: number;
  maxHeapBytes: number;
  /** A heap above maxHeapBytes is collected once it grew by this since V8's last full GC (CompactionHistory.usedLowBytes; see above). */
  collectGrowthBytes: number;
  maxShare: number;
  /** Compact only with a core free (see above); tests on a busy machine turn it off. */
  freeCoreOnly: boolean;
  /**
   * After a compaction, keep the young generation at the size it left (young-generation.ts) until
   * the heap passes maxHeapBytes: right for a control plane, whose work comes in bursts (a fleet
   * connecting regrew it for good). Not for the AI extension's process, which allocates on every
   * attempt (about 50 KB) with a heap of some 22 MB that never reaches maxHeapBytes: held at
   * V8's initial 1 MB semi-spaces it scavenged every ~14 attempts, 145 and 146 times in the 2,000
   * attempts of an AI phase of bench/ai-extension.ts, against 4 and 28 on 6e200df (before the hold).
   */
  holdYoungGeneration: boolean;
}

export const DEFAULT_IDLE_COMPACTION: IdleCompactionOptions = {
  checkEveryMs: 1_000,
  idleUtilization: 0.05,
  minGrowthBytes: 4 * 1024 * 1024,
  maxHeapBytes: 64 * 1024 * 1024,
  collectGrowthBytes: 16 * 1024 * 1024,
  maxShare: 0.05,
  freeCoreOnly: true,
  holdYoungGeneration: true,
};

/** What one check sees. */
export interface HeapSample {
  /** Event-loop utilization (0..1) since the previous check. */
  utilization: number;
  /** V8's resident heap (total_physical_size). */
  physicalBytes: number;
  /** V8's heap in use, garbage not yet collected included (used_heap_size). */
  usedBytes: number;
  nowMs: number;
  /** Threads runnable on the machine now and its cores; undefined where the system does not say. */
  runnable?: { threads: number; cores: number };
}

/** What the checks remember of the compactions so far. */
export interface CompactionHistory {
  /** Resident heap right after the last compaction (0 before the first). */
  physicalAfterBytes: number;
  /** No compaction before this time (ms, the sample's clock). */
  notBeforeMs: number;
  /**
   * The lowest heap in use a check has seen since the last collection (or the heap a collection
   * left): about what V8's last full GC left, the heap in use dropping in nothing else. Undefined before the first check.
   */
  usedLowBytes?: number;
}

/** Why a check compacts, collects or neither: one word for logs and tests. */
export type CompactionDecision = 'compact' | 'collect' | 'busy' | 'machine-busy' | 'no-growth' | 'heap-too-large' | 'too-soon';

export function decideCompaction(sample: HeapSample, history: CompactionHistory, opts: IdleCompactionOptions): CompactionDecision {
  if (sample.utilization >= opts.idleUtilization) return 'busy';
  if (sample.usedBytes > opts.maxHeapBytes) {
    if (history.usedLowBytes === undefined || sample.usedBytes - history.usedLowBytes < opts.collectGrowthBytes) return 'heap-too-large';
    if (sample.nowMs < history.notBeforeMs) return 'too-soon';
    return sample.runnable !== undefined && sample.runnable.threads > sample.runnable.cores ? 'machine-busy' : 'collect';
  }
  if (sample.physicalBytes - history.physicalAfterBytes < opts.minGrowthBytes) return 'no-growth';
  if (sample.nowMs < history.notBeforeMs) return 'too-soon';
  if (sample.runnable !== undefined && sample.runnable.threads > sample.runnable.cores) return 'machine-busy';
  return 'compact';
}

/**
 * Whether the end of a start collects its garbage (IdleCompaction.afterStart): not without a free
 * core, for the reason compactions wait for one (see IdleCompactionOptions): at 10,000 Backends
 * that GC is 0.2-0.3 CPU-s, and on a 2-core machine with a load average of 15-20 it held the event
 * loop 0.6-1.1 s; V8's own incremental marking is left to it then, as before.
 */
export function collectsAfterStart(runnable: HeapSample['runnable']): boolean {
  return runnable === undefined || runnable.threads <= runnable.cores;
}

/**
 * Whether the start collects its garbage before its edit rehearsal and first status pass
 * (collectBeforeRehearsal): only a heap in use of at most `maxHeapBytes`, whose full GC costs
 * about 45 ms of CPU at 1,000 Backends (38 MB live); at 10,000 Backends it would cost 0.2-0.3 CPU-s.
 */
export function collectsBeforeRehearsal(usedBytes: number, maxHeapBytes: number = DEFAULT_IDLE_COMPACTION.maxHeapBytes): boolean {
  return usedBytes <= maxHeapBytes;
}

/**
 * The start's peak RSS (issue 9): once the first configuration is served, what reading and
 * translating it left is garbage, most of it promoted to the old generation (semi-spaces of 2 MB
 * promote whatever lives across 4 MB of allocation), and V8's first full GC after its boot is
 * only due near 48 MB. The edit rehearsal and the first status pass then grew the heap from about
 * 44 to 51 MB on new pages, the start's peak: at 1,000 Backends x 10 clients serve's RSS rose
 * 112 -> 123 MB in those 150 ms (sampled every 3 ms). An ordinary full GC first (44-49 CPU-ms,
 * 42-46 -> 36-38 MB in use) lets them reuse the pages it frees: serve's RSS once started (its
 * peak so far) median 118.6 MB against 121.9 (SotW) and 119.1 against 123.8 (delta), 6 runs each
 * alternated with main 3d67177 (bench/serve-memory.ts 1000 10, load 2.4-6). It costs the start
 * about 95 CPU-ms at 1,000 Backends (median 1,267 against 1,172 ms, 5 pairs): the GC, and the
 * rehearsal after it 32-44 ms instead of 20-29 (it sweeps what the GC freed). Only a small heap:
 * see collectsBeforeRehearsal. Undefined when nothing was collected.
 */
export function collectBeforeRehearsal(maxHeapBytes: number = DEFAULT_IDLE_COMPACTION.maxHeapBytes): CollectionResult | undefined {
  return collectsBeforeRehearsal(getHeapStatistics().used_heap_size, maxHeapBytes) ? collectGarbage() : undefined;
}

/**
 * The garbage of a fleet's connecting, collected in the quiet after the push rehearsal
 * (src/xds/push-rehearsal.ts), which runs once a fleet has connected and the server idles: the
 * last quiet moment before the fleet's first edit. At 50 Backends x 1,000 delta streams the
 * connecting and the rehearsal took the heap in use from about 33 to 50-57 MB, up to where V8
 * begins its next full GC, and V8 began it within edits 2 to 4 in 11 of 18 runs of 4-8 edits
 * (bench/serve-edit-curve.ts, --trace-gc "finalize incremental marking", 57 -> 46 MB): 65-85 ms
 * of concurrent marking on V8's threads inside that edit, beside its 45-55 ms of main thread, on a
 * machine whose other core runs the fleet. Collected here it is one ordinary full GC while nothing
 * waits (30-32 ms, 56-62 CPU-ms, 50-55 -> 45-46 MB), and the next one is far off: an edit leaves a
 * fraction of a MB. As before the start's edit rehearsal (collectBeforeRehearsal), only a heap of
 * at most `maxHeapBytes`, whose pause stays short, and without waiting for a free core: the moment
 * is the rehearsal's end or none.
 *
 * With the idle compaction running (startIdleCompaction) this is also the moment for the
 * compaction its checks would otherwise make at their first quiet second after the fleet connected
 * (the heap grew since the start's): in the bench that second fell between the fleet's first
 * edits, two full GCs of 80-95 ms that an edit arriving meanwhile waits for. When a check would
 * compact now (decideCompaction, the loop taken as idle: a core free, not too soon after the last)
 * the heap is compacted instead of collected, and the checks count it as theirs.
 * Undefined when nothing was collected.
 */
export function collectAfterPushRehearsal(maxHeapBytes: number = DEFAULT_IDLE_COMPACTION.maxHeapBytes): CollectionResult | undefined {
  return atQuietMoment !== undefined ? atQuietMoment(maxHeapBytes) : collectBeforeRehearsal(maxHeapBytes);
}

/** The running idle compaction's way with collectAfterPushRehearsal; undefined while none runs. */
let atQuietMoment: ((maxHeapBytes: number) => CollectionResult | undefined) | undefined;

/** Runnable threads from Linux's /proc/loadavg ("1.2 0.9 0.8 3/412 1234": 3 runnable now). */
export function runnableThreads(loadavg: string): number | undefined {
  const match = /^\S+ \S+ \S+ (\d+)\//.exec(loadavg);
  return match ? Number(match[1]) : undefined;
}

function runnableNow(): HeapSample['runnable'] {
  let threads: number | undefined;
  try {
    threads = runnableThreads(readFileSync('/proc/loadavg', 'utf8'));
  } catch {
    return undefined;
  }
  return threads === undefined ? undefined : { threads, cores: availableParallelism() };
}

/** V8's gc() with options; flavor 'last-resort' compacts and shrinks every space, 'regular' (the default) is an ordinary full GC. */
type V8Gc = (options: { type: 'major'; execution: 'sync'; flavor?: 'regular' | 'last-resort' }) => void;

let lastResortGc: V8Gc | undefined | null;

/**
 * V8's gc() with options (type, execution, flavor: "last-resort" compacts, shrinks the young
 * generation and releases the pages). Without --expose-gc on the command line, the flag set at
 * run time exposes gc() to contexts created after it: one throwaway context hands it over. Null
 * when this Node's V8 refuses.
 */
function lastResort(): V8Gc | null {
  if (lastResortGc !== undefined) return lastResortGc;
  const own: unknown = (globalThis as { gc?: unknown }).gc;
  if (typeof own === 'function') return (lastResortGc = own as V8Gc);
  try {
    setFlagsFromString('--expose-gc');
    const fromContext: unknown = runInNewContext('gc');
    lastResortGc = typeof fromContext === 'function' ? (fromContext as V8Gc) : null;
  } catch {
    lastResortGc = null;
  }
  return lastResortGc;
}

export interface CompactionResult {
  ms: number;
  cpuMs: number;
  physicalBeforeBytes: number;
  physicalAfterBytes: number;
}

/**
 * One synchronous major GC of `flavor`, timed, with `read` (a heap statistic) before and after;
 * undefined when this Node offers no way to.
 */
function timedMajorGc(flavor: 'regular' | 'last-resort', read: () => number): { ms: number; cpuMs: number; before: number; after: number } | undefined {
  const gc = lastResort();
  if (gc === null) return undefined;
  const before = read();
  const cpu = process.cpuUsage();
  const started = performance.now();
  gc({ type: 'major', execution: 'sync', flavor });
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return { ms, cpuMs: (used.user + used.system) / 1000, before, after: read() };
}

/** Compacts V8's heap now (synchronous); undefined when this Node offers no way to. */
export function compactHeap(): CompactionResult | undefined {
  const r = timedMajorGc('last-resort', () => getHeapStatistics().total_physical_size);
  return r && { ms: r.ms, cpuMs: r.cpuMs, physicalBeforeBytes: r.before, physicalAfterBytes: r.after };
}

/**
 * An ordinary full GC now (synchronous; V8 compacts only the pages it judges worth it), or
 * undefined when this Node offers no way to. For the end of a start (see IdleCompaction.afterStart).
 */
/** MB with one decimal, for the debug lines of collections and compactions. */
function mb(bytes: number): number {
  return Math.round(bytes / 104857.6) / 10;
}

/** What a debug line says of a collection (collectGarbage, collectBeforeRehearsal). */
export function collectionLogFields(result: CollectionResult): { ms: number; cpuMs: number; usedBeforeMB: number; usedAfterMB: number } {
  return { ms: Math.round(result.ms), cpuMs: Math.round(result.cpuMs), usedBeforeMB: mb(result.usedBeforeBytes), usedAfterMB: mb(result.usedAfterBytes) };
}

export function collectGarbage(): CollectionResult | undefined {
  const r = timedMajorGc('regular', () => getHeapStatistics().used_heap_size);
  return r && { ms: r.ms, cpuMs: r.cpuMs, usedBeforeBytes: r.before, usedAfterBytes: r.after };
}

export interface CollectionResult {
  ms: number;
  cpuMs: number;
  /** V8's heap in use (used_heap_size) before and after. */
  usedBeforeBytes: number;
  usedAfterBytes: number;
}

export interface IdleCompaction {
  /** Compactions run so far. */
  readonly count: number;
  /** Collections of a heap too large to compact run so far (IdleCompactionOptions.collectGrowthBytes). */
  readonly collections: number;
  /**
   * The start is over (its configuration served, statuses published): a heap under maxHeapBytes
   * is compacted now, what idle checks would do at the first quiet one, a second or more later,
   * while a fleet connecting after the start found the start's pages still resident: the grown
   * young generation, half-empty pages, and the pages V8's full GCs freed, which it keeps in a
   * pool (resident) until a GC that reduces memory (up to 15 MB of them after a start at 1,000
   * Backends, --trace-gc "pooled"). After a compaction the young generation stays at V8's
   * initial size (2 MB instead of serve's 4; young-generation.ts) until the heap grows past
   * maxHeapBytes: a fleet connecting after it regrew it (serve at 1,000 Backends after 10 clients connected 112.8-118.8 MB
   * against 116.2-122.5 without, 3 runs each, the same CPU to connect and to push an edit).
   * A larger heap has its garbage collected now, in one full GC.
   * V8 sets when its next full GC begins from the heap its last one left, and the last one of a
   * large start ran half way through it: at 10,000 Backends the heap grew from about 110 MB to
   * 260 MB after it, and the next full GC, over all of that, began during
   * the first edits (hundreds of ms of marking steps and a pause of 100-200 ms on a busy 2-core
   * machine, in front of the edit's first byte; issue 9). Collected while nothing waits, the
   * next one is far off: edits leave little behind.
   */
  afterStart(): void;
  stop(): void;
}

/** Checks every `checkEveryMs` whether to compact (decideCompaction); the timer keeps no process alive. */
export function startIdleCompaction(logger: Logger, options: Partial<IdleCompactionOptions> = {}): IdleCompaction {
  const opts = { ...DEFAULT_IDLE_COMPACTION, ...options };
  const history: CompactionHistory = { physicalAfterBytes: 0, notBeforeMs: 0 };
  let count = 0;
  let collections = 0;
  let waitSaid = false;
  let since: EventLoopUtilization = performance.eventLoopUtilization();
  /** Set while the young generation keeps the size a compaction left it (IdleCompaction.afterStart). */
  let releaseYoung: (() => void) | undefined;
  /** A compaction done (at a quiet check or once the start is over): counted, the young generation kept at its size, the next one spaced out, logged. */
  const compacted = (result: CompactionResult, message: string): void => {
    count++;
    if (opts.holdYoungGeneration) releaseYoung ??= holdYoungGeneration();
    waitSaid = false;
    history.physicalAfterBytes = result.physicalAfterBytes;
    history.notBeforeMs = performance.now() + result.ms / opts.maxShare;
    // The compaction's own time is not the next check's idleness to judge.
    since = performance.eventLoopUtilization();
    logger.debug({ ms: Math.round(result.ms), cpuMs: Math.round(result.cpuMs), heapBeforeMB: mb(result.physicalBeforeBytes), heapAfterMB: mb(result.physicalAfterBytes) }, message);
  };
  const quietMoment = (maxHeapBytes: number): CollectionResult | undefined => {
    const heap = getHeapStatistics();
    if (!collectsBeforeRehearsal(heap.used_heap_size, Math.min(maxHeapBytes, opts.maxHeapBytes))) return undefined;
    const sample: HeapSample = { utilization: 0, physicalBytes: heap.total_physical_size, usedBytes: heap.used_heap_size, nowMs: performance.now() };
    const runnable = opts.freeCoreOnly ? runnableNow() : undefined;
    if (decideCompaction(runnable === undefined ? sample : { ...sample, runnable }, history, opts) === 'compact') {
      const result = compactHeap();
      if (result !== undefined) {
        const usedAfterBytes = getHeapStatistics().used_heap_size;
        history.usedLowBytes = usedAfterBytes;
        compacted(result, 'push rehearsal over: V8 heap compacted');
        return { ms: result.ms, cpuMs: result.cpuMs, usedBeforeBytes: heap.used_heap_size, usedAfterBytes };
      }
    }
    const result = collectGarbage();
    if (result !== undefined) {
      history.usedLowBytes = result.usedAfterBytes;
      since = performance.eventLoopUtilization();
    }
    return result;
  };
  atQuietMoment = quietMoment;
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const utilization = performance.eventLoopUtilization(now, since).utilization;
    since = now;
    const heap = getHeapStatistics();
    const sample: HeapSample = { utilization, physicalBytes: heap.total_physical_size, usedBytes: heap.used_heap_size, nowMs: performance.now() };
    // A heap grown past what is compacted is V8's to size, young generation included.
    if (releaseYoung !== undefined && sample.usedBytes > opts.maxHeapBytes) {
      releaseYoung();
      releaseYoung = undefined;
    }
    // The heap in use only drops in a full GC (or ours): its lowest reading is about what V8's last one left.
    history.usedLowBytes = Math.min(history.usedLowBytes ?? sample.usedBytes, sample.usedBytes);
    // The runnable threads are read last: only when everything else says compact or collect.
    let decision = decideCompaction(sample, history, opts);
    if (decision !== 'compact' && decision !== 'collect') return;
    const runnable = opts.freeCoreOnly ? runnableNow() : undefined;
    decision = decideCompaction(runnable === undefined ? sample : { ...sample, runnable }, history, opts);
    if (decision === 'machine-busy') {
      if (!waitSaid) logger.debug({ runnable: runnable?.threads, cores: runnable?.cores }, 'idle: V8 heap compaction waits for a free core');
      waitSaid = true;
      return;
    }
    if (decision === 'collect') {
      const result = collectGarbage();
      if (result === undefined) return;
      collections++;
      waitSaid = false;
      history.usedLowBytes = result.usedAfterBytes;
      history.notBeforeMs = performance.now() + result.ms / opts.maxShare;
      since = performance.eventLoopUtilization();
      logger.debug(collectionLogFields(result), 'idle: V8 heap collected (its next full GC is then far from the next edit)');
      return;
    }
    const result = compactHeap();
    if (result === undefined) {
      clearInterval(timer);
      return;
    }
    compacted(result, 'idle: V8 heap compacted');
  }, opts.checkEveryMs);
  timer.unref();
  return {
    get count() {
      return count;
    },
    get collections() {
      return collections;
    },
    afterStart: () => {
      const runnable = opts.freeCoreOnly ? runnableNow() : undefined;
      if (!collectsAfterStart(runnable)) {
        logger.debug({ runnable: runnable?.threads, cores: runnable?.cores }, "start over: its garbage left to V8's own collections (no free core)");
        return;
      }
      if (getHeapStatistics().used_heap_size <= opts.maxHeapBytes) {
        // Small enough to compact: at once, rather than collected now and compacted at the first quiet check.
        const result = compactHeap();
        if (result !== undefined) {
          history.usedLowBytes = getHeapStatistics().used_heap_size;
          compacted(result, 'start over: V8 heap compacted');
          return;
        }
      }
      const result = collectGarbage();
      if (result === undefined) return;
      history.usedLowBytes = result.usedAfterBytes;
      // Its own time is not the next check's idleness to judge.
      since = performance.eventLoopUtilization();
      logger.debug(collectionLogFields(result), 'start over: its garbage collected');
    },
    stop: () => {
      clearInterval(timer);
      if (atQuietMoment === quietMoment) atQuietMoment = undefined;
      releaseYoung?.();
      releaseYoung = undefined;
    },
  };
}
