/**
 * What every benchmark module provides: a suite that returns rows. bench/run.ts prints the rows
 * as one table and writes them as JSON. A suite that needs its own process (xDS fan-out to many
 * clients) spawns it inside run() and still returns rows.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface BenchRow {
  suite: string;
  name: string;
  /** Problem size (objects, clients). */
  n: number;
  /** Median wall-clock milliseconds; undefined when the row was skipped. */
  ms: number | undefined;
  /** Median CPU milliseconds of this process (user + system, GC threads included): steadier than wall time on a busy machine. */
  cpuMs?: number;
  runs: number;
  /** Heap growth in MB that the measured work left reachable; undefined when not measured. */
  heapMB: number | undefined;
  detail: string;
  target?: string;
  verdict?: 'PASS' | 'FAIL';
}

export interface BenchSuite {
  name: string;
  run(): Promise<BenchRow[]>;
}

// `npm run bench` starts Node without --expose-gc; the flag can still be set before first use.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as (() => void) | undefined;

/** Runs the garbage collector (twice, for objects freed by finalizers) so heap readings compare. */
export function settleHeap(): void {
  if (typeof collect !== 'function') return;
  collect();
  collect();
}

export function heapUsedMB(): number {
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

export interface Timed<T> {
  value: T;
  ms: number;
  cpuMs: number;
}

export function timed<T>(fn: () => T): Timed<T> {
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  const value = fn();
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const used = process.cpuUsage(cpu);
  return { value, ms, cpuMs: (used.user + used.system) / 1000 };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}
