/**
 * A stand-in for bin/switchyard.js (which runs dist/, not built for tests): restarts itself the
 * same way, then fills the young generation and prints what the process ended up with.
 */
import { writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { restartWithMemorySettings } from '../../src/cli/memory-settings.js';

// Synchronous: a buffered write to a pipe would be lost by the restart.
writeSync(1, `start ${process.pid}\n`);
restartWithMemorySettings(fileURLToPath(import.meta.url));

// A configuration's worth of objects kept alive, the allocation that makes V8 grow the young generation.
const kept: { index: number; name: string }[] = [];
for (let i = 0; i < 2_000_000; i++) {
  const o = { index: i, name: `member-${i}` };
  if (i % 20 === 0) kept.push(o);
}
const newSpace = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
writeSync(1, `${JSON.stringify({ pid: process.pid, execArgv: process.execArgv, mallocArenaMax: process.env['MALLOC_ARENA_MAX'] ?? null, mallocTrimThreshold: process.env['MALLOC_TRIM_THRESHOLD_'] ?? null, mallocMmapThreshold: process.env['MALLOC_MMAP_THRESHOLD_'] ?? null, newSpaceBytes: newSpace?.space_size ?? -1, kept: kept.length })}\n`);
