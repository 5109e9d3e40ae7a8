import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultStateDir, lockStateDir, openStateDir } from '../../src/app/state-dir.js';

/**
 * serve's state directory holds the socket that hands out provider keys: it must be this user's
 * alone, stable for one configuration, and used by one serve at a time.
 */

const root = mkdtempSync(join(tmpdir(), 'switchyard-state-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('serve state directory', () => {
  it('is the same for one configuration and differs between two', () => {
    expect(defaultStateDir('examples')).toBe(defaultStateDir('./examples/'));
    expect(defaultStateDir('examples')).not.toBe(defaultStateDir('other-config'));
  });

  it('is created private (0700)', () => {
    const state = openStateDir(join(root, 'fresh', 'state'));
    expect(statSync(state.path).mode & 0o777).toBe(0o700);
    expect(state.socket).toBe(join(root, 'fresh', 'state', 'ads.sock'));
  });

  it('is refused when other users can enter it, naming the directory and the fix', () => {
    const dir = join(root, 'open');
    openStateDir(dir);
    chmodSync(dir, 0o755);
    expect(() => openStateDir(dir)).toThrow(`state directory ${dir} is open to other users (mode 755)`);
    expect(() => openStateDir(dir)).toThrow('chmod 700 it, or pass another --state-dir');
  });

  it('is refused when its socket path would be too long for the kernel', () => {
    expect(() => openStateDir(join(root, 'x'.repeat(100)))).toThrow('too long for a Unix socket path');
  });

  it('is locked by a live serve and taken over from a dead one', async () => {
    const state = openStateDir(join(root, 'locked'));
    // A process whose command line says serve, as a running `switchyard serve` would.
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', 'serve']);
    try {
      await new Promise((resolve) => other.once('spawn', resolve));
      writeFileSync(state.lock, `${other.pid}\n`);
      expect(() => lockStateDir(state)).toThrow(`another switchyard serve (pid ${other.pid}) is using state directory ${state.path}`);
    } finally {
      other.kill('SIGKILL');
      await new Promise((resolve) => other.once('exit', resolve));
    }
    const release = lockStateDir(state);
    expect(readFileSync(state.lock, 'utf8').trim()).toBe(String(process.pid));
    release();
    expect(() => readFileSync(state.lock)).toThrow();
  });
});
