import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { canExec, longRunningRestart, MALLOC_ARENAS, MALLOC_MMAP_THRESHOLD, MALLOC_TRIM_THRESHOLD, SEMI_SPACE_MB } from '../../src/cli/memory-settings.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const MB = 1024 * 1024;

describe('longRunningRestart', () => {
  it('restarts serve, controller and ai-extension with the young generation capped, keeping loaders and arguments', () => {
    for (const command of ['serve', 'controller', 'ai-extension']) {
      const restart = longRunningRestart([command, '--config', 'x'], ['--import', 'tsx'], { PATH: '/bin' });
      expect(restart).toEqual({ execArgv: [`--max-semi-space-size=${SEMI_SPACE_MB}`, '--import', 'tsx'], env: { PATH: '/bin', MALLOC_ARENA_MAX: MALLOC_ARENAS, MALLOC_TRIM_THRESHOLD_: MALLOC_TRIM_THRESHOLD, MALLOC_MMAP_THRESHOLD_: MALLOC_MMAP_THRESHOLD } });
    }
  });

  it('leaves one-shot commands, and a process whose semi-space size is already chosen, as they are', () => {
    for (const command of ['translate', 'status', 'version', 'bootstrap', 'certs', 'drill']) {
      expect(longRunningRestart([command], [], {})).toBeUndefined();
    }
    expect(longRunningRestart([], [], {})).toBeUndefined();
    expect(longRunningRestart(['serve'], ['--max-semi-space-size=16'], {})).toBeUndefined();
    expect(longRunningRestart(['serve'], ['--max-semi-space-size', '16'], {})).toBeUndefined();
    expect(longRunningRestart(['serve'], [], { NODE_OPTIONS: '--enable-source-maps --max-semi-space-size=8' })).toBeUndefined();
  });

  it("keeps the user's MALLOC_ARENA_MAX, MALLOC_TRIM_THRESHOLD_ and MALLOC_MMAP_THRESHOLD_", () => {
    const env = longRunningRestart(['serve'], [], { MALLOC_ARENA_MAX: '8', MALLOC_TRIM_THRESHOLD_: '0', MALLOC_MMAP_THRESHOLD_: '65536' })?.env;
    expect(env?.['MALLOC_ARENA_MAX']).toBe('8');
    expect(env?.['MALLOC_TRIM_THRESHOLD_']).toBe('0');
    expect(env?.['MALLOC_MMAP_THRESHOLD_']).toBe('65536');
    // Set but empty is glibc's default, not a choice: ours applies.
    expect(longRunningRestart(['serve'], [], { MALLOC_TRIM_THRESHOLD_: '' })?.env['MALLOC_TRIM_THRESHOLD_']).toBe(MALLOC_TRIM_THRESHOLD);
  });
});

describe('canExec', () => {
  // A failed process.execve kills the process (a chroot without /proc: process.execPath is "node").
  it('restarts only with an absolute, executable node and a readable entry', () => {
    const entry = join(ROOT, 'bin/switchyard.js');
    expect(canExec(process.execPath, entry)).toBe(true);
    expect(canExec('node', entry)).toBe(false);
    expect(canExec(process.execPath, 'bin/switchyard.js')).toBe(false);
    expect(canExec('/nonexistent/node', entry)).toBe(false);
    expect(canExec(join(ROOT, 'package.json'), entry)).toBe(false);
  });
});

interface Result {
  starts: number[];
  pid: number;
  childPid: number | undefined;
  execArgv: string[];
  mallocArenaMax: string | null;
  mallocTrimThreshold: string | null;
  mallocMmapThreshold: string | null;
  newSpaceBytes: number;
}

function runEntry(command: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env['MALLOC_ARENA_MAX'];
    delete env['MALLOC_TRIM_THRESHOLD_'];
    delete env['MALLOC_MMAP_THRESHOLD_'];
    delete env['NODE_OPTIONS'];
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/support/memory-settings-entry.ts'), command], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => {
      const lines = out.trim().split('\n');
      const last = lines.at(-1) ?? '';
      if (code !== 0 || !last.startsWith('{')) {
        reject(new Error(`entry exited ${String(code)}: ${out}`));
        return;
      }
      const starts = lines.filter((l) => l.startsWith('start ')).map((l) => Number(l.slice(6)));
      resolve({ ...(JSON.parse(last) as Omit<Result, 'starts' | 'childPid'>), starts, childPid: child.pid });
    });
  });
}

describe('restartWithMemorySettings (what bin/switchyard.js runs first)', () => {
  it('serve runs again in the same process with a young generation of 2 x 2 MB; translate keeps growing it', async () => {
    const serve = await runEntry('serve');
    // Two starts, one pid: the process replaced itself, no child process stands in between.
    expect(serve.starts).toEqual([serve.childPid, serve.childPid]);
    expect(serve.pid).toBe(serve.childPid);
    expect(serve.execArgv.slice(0, 3)).toEqual([`--max-semi-space-size=${SEMI_SPACE_MB}`, '--import', 'tsx']);
    expect(serve.mallocArenaMax).toBe(MALLOC_ARENAS);
    expect(serve.mallocTrimThreshold).toBe(MALLOC_TRIM_THRESHOLD);
    expect(serve.mallocMmapThreshold).toBe(MALLOC_MMAP_THRESHOLD);
    expect(serve.newSpaceBytes).toBeLessThanOrEqual(2 * SEMI_SPACE_MB * MB);

    const translate = await runEntry('translate');
    expect(translate.starts).toEqual([translate.childPid]);
    expect(translate.execArgv).toEqual(['--import', 'tsx']);
    expect([translate.mallocArenaMax, translate.mallocTrimThreshold, translate.mallocMmapThreshold]).toEqual([null, null, null]);
    // The same allocation without the cap: V8's default grows far past it.
    expect(translate.newSpaceBytes).toBeGreaterThan(4 * SEMI_SPACE_MB * MB);
  });
});
