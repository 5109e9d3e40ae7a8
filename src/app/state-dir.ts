import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Where `serve` keeps what must survive its own crash: the Unix socket its AI extension reads
 * credentials from, and the extension's pid and port, so that a restarted serve re-binds the same
 * socket and adopts the running extension (Envoy's configuration names its port). Anyone who can
 * connect to that socket receives provider keys: the directory is this user's alone (0700).
 */
export interface StateDir {
  path: string;
  /** serve's ADS server for its AI extension. */
  socket: string;
  /** The running extension's pid and ports (written by the extension itself). */
  extensionRecord: string;
  /** The extension's stdout and stderr: a pipe to serve would break when serve dies. */
  extensionLog: string;
  /** serve's pid: one serve per directory. */
  lock: string;
  /** serve's ADS server for the Envoys it runs (infrastructure host): no provider key goes there. */
  envoySocket: string;
  /**
   * The AI extension's ext_proc server, when serve runs the Envoys: its answers carry provider
   * keys, so only this user (the directory's owner, whom those Envoys run as) may connect.
   */
  extProcSocket: string;
}

/** Unix socket paths longer than this are refused by the kernel (sun_path is 108 bytes on Linux). */
const MAX_SOCKET_PATH = 107;

/** `$XDG_RUNTIME_DIR/switchyard/<config key>`, else `<tmp>/switchyard-<uid>/<config key>`: stable across restarts of one configuration. */
export function defaultStateDir(config: string): string {
  const key = createHash('sha256').update(resolve(config)).digest('hex').slice(0, 16);
  const runtime = process.env['XDG_RUNTIME_DIR'];
  const base = runtime !== undefined && runtime !== '' ? join(runtime, 'switchyard') : join(tmpdir(), `switchyard-${process.getuid?.() ?? 'user'}`);
  return join(base, key);
}

/** Creates (0700) or checks the directory; throws naming the directory and the fix when another user could enter it. */
export function openStateDir(path: string): StateDir {
  const dir = resolve(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new Error(`state directory ${dir} belongs to uid ${st.uid}, not to this user (${uid}): pass --state-dir with a directory of your own`);
  }
  if ((st.mode & 0o077) !== 0) {
    throw new Error(`state directory ${dir} is open to other users (mode ${(st.mode & 0o777).toString(8)}); the AI extension's credential socket lives there: chmod 700 it, or pass another --state-dir`);
  }
  const socket = join(dir, 'ads.sock');
  const envoySocket = join(dir, 'envoy.sock');
  const extProcSocket = join(dir, 'ext-proc.sock');
  for (const path of [socket, envoySocket, extProcSocket]) {
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
      throw new Error(`state directory ${dir} is too long for a Unix socket path (${path} exceeds ${MAX_SOCKET_PATH} bytes): pass a shorter --state-dir`);
    }
  }
  return { path: dir, socket, extensionRecord: join(dir, 'ai-extension.json'), extensionLog: join(dir, 'ai-extension.log'), lock: join(dir, 'serve.pid'), envoySocket, extProcSocket };
}

/** Whether a process with this pid exists (one of another user counts). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The process's command line, where /proc tells it; undefined elsewhere or when it is gone. */
export function commandLineOf(pid: number): string | undefined {
  return commandArgsOf(pid)?.join(' ');
}

/** A live process's argv, or undefined when it is gone (or not visible). */
export function commandArgsOf(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return undefined;
  }
}

/** Claims the directory for this serve; refuses while another live serve holds it. Returns the release. */
export function lockStateDir(state: StateDir): () => void {
  let holder: number | undefined;
  try {
    holder = Number.parseInt(readFileSync(state.lock, 'utf8'), 10);
  } catch {
    holder = undefined;
  }
  if (holder !== undefined && Number.isInteger(holder) && holder !== process.pid && isAlive(holder)) {
    // A pid reused by an unrelated process after a crash must not lock serve out.
    const cmd = commandLineOf(holder);
    if (cmd === undefined || cmd.includes('serve')) {
      throw new Error(`another switchyard serve (pid ${holder}) is using state directory ${state.path}: stop it, or give this one its own --state-dir`);
    }
  }
  writeFileSync(state.lock, `${process.pid}\n`, { mode: 0o600 });
  return () => {
    try {
      if (Number.parseInt(readFileSync(state.lock, 'utf8'), 10) === process.pid) rmSync(state.lock, { force: true });
    } catch {
      // Already gone.
    }
  };
}
