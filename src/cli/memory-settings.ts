/**
 * Memory settings of the commands that run for days (issue 9), which only take effect when the
 * process starts: bin/switchyard.js restarts itself once with them (process.execve: same pid,
 * same stdio). Nothing here may import more than Node's own modules: it runs before the CLI loads.
 *
 * - V8 grows its young generation (two semi-spaces) to 32 MB each while a configuration loads,
 *   and never gives the pages back: more than 60 MB of serve's RSS held empty. A cap of 2 MB
 *   per semi-space keeps serve at 1,000 Backends x 10 clients near 160 MB instead of 215 MB
 *   (bench/serve-memory.ts); V8 flags set at run time (v8.setFlagsFromString) no longer resize it.
 * - glibc gives each thread that allocates its own malloc arena, and Node's compiler, GC and libuv
 *   threads each keep a few MB resident in theirs: two arenas saved some 13 MB over glibc's default,
 *   one (small blocks still come from per-thread caches, without the arena's lock) saves more.
 * - glibc raises its mmap threshold to the size of each large block freed (up to 32 MB) and its
 *   trim threshold to twice that, so after a load blocks of hundreds of KB (file reads, encoded
 *   responses) come from the heap and the space they leave stays resident. A fixed trim threshold
 *   also fixes the mmap threshold (at 128 KB, its default, before the next point lowered it):
 *   such blocks are mapped and unmapped on their own, and free space at the top of the heap goes
 *   back to the system.
 *   One arena and the fixed threshold keep serve 5 MB lower at 1,000 Backends x 10 clients
 *   (146 -> 140.5 MB, 3 runs each), with the same CPU to start, connect and push.
 * - V8's compilers (Maglev and TurboFan on background threads, the parser on the main one) take
 *   their working memory in zone segments of up to 32 KB from malloc, hundreds of MB of them over
 *   a start, and free them when a compile ends; in the one arena, long-lived blocks allocated
 *   meanwhile land between them, and the arena held 7 MB free but resident after a start at
 *   1,000 Backends (mallinfo2: 18-20 MB arena, 12-13 MB in use). Blocks of 32 KB and more are
 *   mapped on their own instead (a mmap threshold of 32 KB; the segments are exactly that): what
 *   a compile frees goes back to the system as the compile ends, and the arena stays closer to what is in
 *   use. About 7,700 such blocks over the bench's start, connect and edit; the malloc heap after
 *   it 11-19 MB (median 15.1) instead of 17-27 (median 21.8), 6 runs each alternated, with the
 *   same CPU to start (median 1,216 vs 1,214 ms) and to push an edit.
 */
import { accessSync, constants } from 'node:fs';
import { isAbsolute } from 'node:path';

/** Commands that keep serving; one-shot commands (translate, status, ...) keep Node's defaults. */
export const LONG_RUNNING_COMMANDS: readonly string[] = ['serve', 'controller', 'ai-extension', 'drain-sidecar'];

/** MB per semi-space (V8's --max-semi-space-size). */
export const SEMI_SPACE_MB = 2;

/** glibc's MALLOC_ARENA_MAX, unless the environment sets one. */
export const MALLOC_ARENAS = '1';

/** glibc's MALLOC_TRIM_THRESHOLD_ in bytes (its initial default), unless the environment sets one. */
export const MALLOC_TRIM_THRESHOLD = '131072';

/** glibc's MALLOC_MMAP_THRESHOLD_ in bytes, unless the environment sets one: V8's largest zone segment (see above). */
export const MALLOC_MMAP_THRESHOLD = '32768';

const SEMI_SPACE_FLAG = '--max-semi-space-size';

export interface Restart {
  /** Node's flags for the restarted process: the cap first, then this process's own (loaders, ...). */
  execArgv: string[];
  env: Record<string, string | undefined>;
}

/**
 * How to restart `switchyard ARGV` with its memory settings, or undefined when it needs no
 * restart: a one-shot command, or the semi-space size already chosen (this is the restarted
 * process, or the user passed the flag, on the command line or in NODE_OPTIONS).
 */
export function longRunningRestart(
  argv: readonly string[],
  execArgv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Restart | undefined {
  const command = argv[0];
  if (command === undefined || !LONG_RUNNING_COMMANDS.includes(command)) return undefined;
  const chosen = (arg: string): boolean => arg === SEMI_SPACE_FLAG || arg.startsWith(`${SEMI_SPACE_FLAG}=`);
  if (execArgv.some(chosen) || (env['NODE_OPTIONS'] ?? '').split(/\s+/).some(chosen)) return undefined;
  const own = (name: string, fallback: string): string => {
    const value = env[name];
    return value !== undefined && value !== '' ? value : fallback;
  };
  return {
    execArgv: [`${SEMI_SPACE_FLAG}=${SEMI_SPACE_MB}`, ...execArgv],
    env: {
      ...env,
      MALLOC_ARENA_MAX: own('MALLOC_ARENA_MAX', MALLOC_ARENAS),
      MALLOC_TRIM_THRESHOLD_: own('MALLOC_TRIM_THRESHOLD_', MALLOC_TRIM_THRESHOLD),
      MALLOC_MMAP_THRESHOLD_: own('MALLOC_MMAP_THRESHOLD_', MALLOC_MMAP_THRESHOLD),
    },
  };
}

/**
 * Replaces this process (same pid, same stdio) with `node <settings> <this process's flags>
 * ENTRY <this process's arguments>` when longRunningRestart asks for it; returns otherwise, on a
 * Node without process.execve (before 22.15 and 23.11; Windows) and when the restart fails: the
 * command then runs with Node's defaults.
 * `entry`: the script to run again (bin/switchyard.js).
 */
export function restartWithMemorySettings(entry: string): void {
  const restart = longRunningRestart(process.argv.slice(2), process.execArgv, process.env);
  if (restart === undefined || typeof process.execve !== 'function' || !canExec(process.execPath, entry)) return;
  try {
    process.execve(process.execPath, [process.execPath, ...restart.execArgv, entry, ...process.argv.slice(2)], restart.env);
  } catch {
    // The settings save memory; they are not worth failing the command over: it runs as it is.
  }
}

/**
 * Whether execve can start `node` again. A failed process.execve is not an exception Node lets us
 * catch: it kills the process (seen in a chroot without /proc, where Node cannot learn its own
 * path and process.execPath is the bare "node" execve cannot find). So every cause we can foresee
 * is checked first: an absolute, executable node and a readable entry script.
 */
export function canExec(execPath: string, entry: string): boolean {
  if (!isAbsolute(execPath) || !isAbsolute(entry)) return false;
  try {
    accessSync(execPath, constants.X_OK);
    accessSync(entry, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}
