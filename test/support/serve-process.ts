import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './cli-run.js';
import { processesMentioning, stopChild } from './processes.js';
import { StopWaiting, waitFor } from './wait.js';

/**
 * `switchyard serve` as its own process (the tests of what serve runs and supervises: Envoys per
 * Gateway, the AI extension), its stdout and stderr appended to `logPath`.
 */
export function spawnServe(args: readonly string[], logPath: string): ChildProcess {
  const out = openSync(logPath, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/cli/main.ts'), 'serve', ...args], { cwd: REPO_ROOT, stdio: ['ignore', out, out] });
  closeSync(out);
  return child;
}

/**
 * Until serve answers 200 on its metrics port's /readyz (`what` names what that means here); if
 * serve exits meanwhile, fails at once with the last lines of its log.
 */
export async function untilServeReady(child: ChildProcess, metricsPort: number, logPath: string, what: string): Promise<void> {
  await waitFor(
    async () => {
      if (child.exitCode !== null) {
        const tail = readFileSync(logPath, 'utf8').split('\n').slice(-30).join('\n');
        throw new StopWaiting(`serve exited (${String(child.exitCode)}):\n${tail}`);
      }
      try {
        return (await fetch(`http://127.0.0.1:${metricsPort}/readyz`, { signal: AbortSignal.timeout(2_000) })).status === 200;
      } catch {
        return false;
      }
    },
    { what, timeoutMs: 90_000, intervalMs: 200 },
  );
}

/**
 * Stops serve gracefully, then kills whatever still names its state directory (its Envoys, its
 * extension): nothing a failed test started outlives the test.
 */
export async function stopServeAndLeftovers(child: ChildProcess | undefined, stateDir: string): Promise<void> {
  await stopChild(child);
  for (const pid of processesMentioning(stateDir)) process.kill(pid, 'SIGKILL');
}
