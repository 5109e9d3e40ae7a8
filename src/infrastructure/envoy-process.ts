import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { commandLineOf, isAlive } from '../app/state-dir.js';
import { DEFAULT_DRAIN_TIMEOUT_MS, drainEnvoy } from './envoy-drain.js';

export type EnvoyState = 'starting' | 'ready' | 'restarting' | 'stopped';

export interface EnvoyProcessOptions {
  /** The Envoy binary. */
  envoyPath: string;
  /** This Envoy's own directory: bootstrap, log, admin address, pid record. */
  dir: string;
  /** The bootstrap, as JSON text. */
  bootstrap: string;
  /** --concurrency; absent: Envoy's default (one worker per core). */
  concurrency?: number;
  logLevel?: string;
  /** Back-off before a restart: doubles from initialMs up to maxMs; reset once Envoy was ready for resetAfterMs. */
  backoff?: { initialMs: number; maxMs: number; resetAfterMs: number };
  /**
   * stop() drains first (src/infrastructure/envoy-drain.ts): listeners stop at once, requests in
   * flight get up to this long to end before SIGTERM. 0: SIGTERM at once. Default 60 s.
   */
  drainTimeMs?: number;
  logger: Logger;
  /** Called on every change of state(), pid or admin address. */
  onChange: () => void;
}

export interface EnvoyProcessView {
  state: EnvoyState;
  pid?: number;
  adminUrl?: string;
  restarts: number;
  /** The last exit, while restarting or after. */
  lastExit?: string;
  log: string;
}

const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 30_000, resetAfterMs: 30_000 };
const POLL_STARTING_MS = 200;
const POLL_READY_MS = 2_000;
const STOP_GRACE_MS = 5_000;

/**
 * One Envoy process, kept running: spawned detached (its own process group, its output in a file)
 * so that a crash of serve leaves it serving, and adopted by the next serve through the pid record
 * when it still runs with the same bootstrap. Restarted with back-off when it exits; ready when
 * its admin /ready says LIVE (it has its listeners from xDS).
 */
export class EnvoyProcess {
  private readonly paths: { bootstrap: string; log: string; adminAddress: string; record: string };
  private readonly backoff: { initialMs: number; maxMs: number; resetAfterMs: number };
  private child: ChildProcess | undefined;
  private pid: number | undefined;
  private adminUrl: string | undefined;
  private state: EnvoyState = 'starting';
  private restarts = 0;
  private delayMs: number;
  private readySince: number | undefined;
  private lastExit: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  private exited: (() => void) | undefined;

  constructor(private readonly opts: EnvoyProcessOptions) {
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    this.paths = {
      bootstrap: join(opts.dir, 'bootstrap.json'),
      log: join(opts.dir, 'envoy.log'),
      adminAddress: join(opts.dir, 'admin-address'),
      record: join(opts.dir, 'envoy.pid'),
    };
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.delayMs = this.backoff.initialMs;
  }

  view(): EnvoyProcessView {
    return {
      state: this.state,
      ...(this.pid !== undefined ? { pid: this.pid } : {}),
      ...(this.adminUrl !== undefined ? { adminUrl: this.adminUrl } : {}),
      restarts: this.restarts,
      ...(this.lastExit !== undefined ? { lastExit: this.lastExit } : {}),
      log: this.paths.log,
    };
  }

  /** Adopts the Envoy a previous serve left running with this very bootstrap, else starts one. */
  start(): void {
    this.reapRetired();
    const adopted = this.adopt();
    if (adopted !== undefined) {
      this.pid = adopted;
      this.opts.logger.info({ pid: adopted, log: this.paths.log }, 'envoy: adopted the Envoy a previous serve left running');
      this.setState('starting');
      this.poll();
      return;
    }
    this.spawn();
  }

  /**
   * Drain (new connections refused, requests in flight finish, up to drainTimeMs), then SIGTERM,
   * SIGKILL after a grace period; resolves once the process is gone. Idempotent.
   * `onListenersStopped`: called as soon as this Envoy accepts no more connections (at the latest
   * when it is gone): a successor may then start in the same directory while this one still drains.
   */
  async stop(opts: { onListenersStopped?: () => void } = {}): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    let told = false;
    const listenersStopped = (): void => {
      if (told) return;
      told = true;
      opts.onListenersStopped?.();
    };
    await this.drain(listenersStopped);
    listenersStopped();
    await this.retiring;
    const pid = this.pid;
    if (pid !== undefined && isAlive(pid)) {
      const gone = new Promise<void>((resolve) => {
        this.exited = resolve;
      });
      signal(pid, 'SIGTERM');
      const deadline = Date.now() + STOP_GRACE_MS;
      // An adopted Envoy is no child of ours: no exit event, so its pid is watched.
      while (isAlive(pid) && !this.childExited(pid)) {
        if (Date.now() > deadline) signal(pid, 'SIGKILL');
        await Promise.race([gone, new Promise((r) => setTimeout(r, 50))]);
      }
    }
    // A successor started in this directory while this one drained has written its own.
    if (pid === undefined || readPid(this.paths.record) === pid) rmSync(this.paths.record, { force: true });
    if (pid !== undefined) rmSync(this.retiredRecord(pid), { force: true });
    this.pid = undefined;
    this.adminUrl = undefined;
    this.setState('stopped');
  }

  private draining: Promise<void> | undefined;
  /** The drain and end of a foreign Envoy this one replaced (retireForeign); stop() waits for it. */
  private retiring: Promise<void> | undefined;

  private drain(onListenersStopped: () => void): Promise<void> {
    this.draining ??= (async () => {
      const timeoutMs = this.opts.drainTimeMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
      const adminUrl = this.adminUrl ?? this.readAdminAddress();
      const pid = this.pid;
      if (timeoutMs <= 0 || adminUrl === undefined || pid === undefined || !isAlive(pid)) return;
      // Should this process die while the Envoy drains (a successor then owns envoy.pid), the
      // next start finds the drained Envoy by this record and ends it (reapRetired). Its second
      // line is this process: while it lives, the drain is its own business.
      writeFileSync(this.retiredRecord(pid), `${pid}\n${process.pid}\n`, { mode: 0o600 });
      // No longer the Envoy of this directory: a successor must neither adopt nor replace it.
      if (readPid(this.paths.record) === pid) rmSync(this.paths.record, { force: true });
      try {
        const r = await drainEnvoy({ adminUrl, acceptMs: 0, timeoutMs, onListenersStopped });
        if (!r.envoyGone) this.opts.logger.info({ pid: this.pid, tookMs: r.tookMs, cutRequests: r.inFlight }, r.drained ? 'envoy: drained before stopping' : 'envoy: drain time over; stopping with requests in flight');
      } catch (err) {
        this.opts.logger.warn({ pid: this.pid, err: err instanceof Error ? err.message : String(err) }, 'envoy: could not drain; stopping at once');
      }
    })();
    return this.draining;
  }

  private retiredRecord(pid: number): string {
    return join(this.opts.dir, `retired-${pid}.pid`);
  }

  /** Envoys of this directory left draining by a process that died meanwhile: their drain is long over. */
  private reapRetired(): void {
    for (const entry of readdirSync(this.opts.dir)) {
      if (!/^retired-\d+\.pid$/.test(entry)) continue;
      const file = join(this.opts.dir, entry);
      const [pid, owner] = readPids(file);
      // Still drained by a live process (this one, for a successor started meanwhile): leave it.
      if (owner !== undefined && isAlive(owner)) continue;
      // A pid reused by another process is not ours to end.
      if (pid !== undefined && isAlive(pid) && commandLineOf(pid)?.includes(this.paths.bootstrap) === true) {
        this.opts.logger.info({ pid }, 'envoy: ending an Envoy left draining by a previous run');
        signal(pid, 'SIGTERM');
      }
      rmSync(file, { force: true });
    }
  }

  private readAdminAddress(): string | undefined {
    try {
      const text = readFileSync(this.paths.adminAddress, 'utf8').trim();
      return text === '' ? undefined : `http://${text}`;
    } catch {
      return undefined;
    }
  }

  private childExited(pid: number): boolean {
    return this.child?.pid === pid && this.child.exitCode !== null;
  }

  private adopt(): number | undefined {
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(this.paths.record, 'utf8'), 10);
    } catch {
      return undefined;
    }
    if (!Number.isInteger(pid) || !isAlive(pid)) return undefined;
    const cmd = commandLineOf(pid);
    // A pid reused by another process, or an Envoy of another bootstrap, is not ours to keep.
    if (cmd === undefined || !cmd.includes(this.paths.bootstrap)) return undefined;
    let written = '';
    try {
      written = readFileSync(this.paths.bootstrap, 'utf8');
    } catch {
      // Gone: not adoptable.
    }
    if (written !== this.opts.bootstrap) {
      this.opts.logger.info({ pid }, 'envoy: the running Envoy has another bootstrap (serve was upgraded?); replacing it, draining it first');
      this.retireForeign(pid);
      return undefined;
    }
    return pid;
  }

  /**
   * Drains, then ends, an Envoy of this directory this process did not start (one of another
   * bootstrap), in the background: its listeners stop at once and its successor binds the same
   * address (Envoy listeners share a port with SO_REUSEPORT), while the requests it carries end.
   */
  private retireForeign(pid: number): void {
    const adminUrl = this.readAdminAddress();
    writeFileSync(this.retiredRecord(pid), `${pid}\n${process.pid}\n`, { mode: 0o600 });
    rmSync(this.paths.record, { force: true });
    const timeoutMs = this.opts.drainTimeMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
    const drained = adminUrl === undefined || timeoutMs <= 0 ? Promise.resolve() : drainEnvoy({ adminUrl, acceptMs: 0, timeoutMs }).then(
      (r) => this.opts.logger.info({ pid, tookMs: r.tookMs, cutRequests: r.inFlight }, 'envoy: the replaced Envoy drained'),
      (err: unknown) => this.opts.logger.warn({ pid, err: err instanceof Error ? err.message : String(err) }, 'envoy: could not drain the replaced Envoy'),
    );
    this.retiring = drained.then(() => {
      signal(pid, 'SIGTERM');
      rmSync(this.retiredRecord(pid), { force: true });
    });
  }

  private spawn(): void {
    if (this.stopping) return;
    writeFileSync(this.paths.bootstrap, this.opts.bootstrap, { mode: 0o600 });
    rmSync(this.paths.adminAddress, { force: true });
    const args = [
      '-c', this.paths.bootstrap,
      '--disable-hot-restart',
      // No shared memory without hot restart; a dynamic base id still keeps several Envoys apart.
      '--use-dynamic-base-id',
      '--admin-address-path', this.paths.adminAddress,
      '--log-level', this.opts.logLevel ?? 'info',
      // Files (the outlier event log) are written at this pace; Envoy's default is 10 s.
      '--file-flush-interval-msec', '1000',
      // A drain (stop(), or a listener replaced over xDS) tells every connection to close at its
      // next response at once, rather than a growing share of them over --drain-time-s.
      '--drain-strategy', 'immediate',
      ...(this.opts.concurrency !== undefined ? ['--concurrency', String(this.opts.concurrency)] : []),
    ];
    // A file, not a pipe: a pipe to serve would break when serve dies, and Envoy with it.
    const out = openSync(this.paths.log, 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.opts.envoyPath, args, { detached: true, stdio: ['ignore', out, out] });
    } finally {
      closeSync(out);
    }
    child.unref();
    this.child = child;
    this.adminUrl = undefined;
    this.readySince = undefined;
    child.once('error', (err) => this.onExit(child, `could not be started: ${err.message}`));
    child.once('exit', (code, sig) => this.onExit(child, sig !== null ? `killed by ${sig}` : `exited with code ${String(code)}`));
    if (child.pid !== undefined) {
      this.pid = child.pid;
      writeFileSync(this.paths.record, `${child.pid}\n`, { mode: 0o600 });
      this.opts.logger.info({ pid: child.pid, log: this.paths.log }, 'envoy: started');
    }
    this.setState('starting');
    this.poll();
  }

  private onExit(child: ChildProcess, how: string): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.exitedNow(how);
  }

  private exitedNow(how: string): void {
    this.exited?.();
    this.exited = undefined;
    this.pid = undefined;
    this.adminUrl = undefined;
    if (this.stopping) return;
    clearTimeout(this.timer);
    if (this.readySince !== undefined && Date.now() - this.readySince >= this.backoff.resetAfterMs) this.delayMs = this.backoff.initialMs;
    this.readySince = undefined;
    this.lastExit = how;
    this.restarts++;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.backoff.maxMs);
    this.opts.logger.warn({ restartInMs: delay, log: this.paths.log }, `envoy: ${how}; restarting`);
    this.setState('restarting');
    this.timer = setTimeout(() => this.spawn(), delay);
  }

  /** Watches admin /ready (and, for an adopted Envoy, that its pid lives). */
  private poll(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.check().then(
        () => {
          if (!this.stopping && this.pid !== undefined) this.poll();
        },
        () => undefined,
      );
    }, this.state === 'ready' ? POLL_READY_MS : POLL_STARTING_MS);
  }

  private async check(): Promise<void> {
    const pid = this.pid;
    if (pid === undefined || this.stopping) return;
    if (this.child === undefined && !isAlive(pid)) {
      this.exitedNow('exited (adopted process)');
      return;
    }
    if (this.adminUrl === undefined) {
      let text = '';
      try {
        text = readFileSync(this.paths.adminAddress, 'utf8').trim();
      } catch {
        // Not written yet.
      }
      if (text === '') return;
      this.adminUrl = `http://${text}`;
      this.opts.onChange();
    }
    let ready = false;
    try {
      const res = await fetch(`${this.adminUrl}/ready`, { signal: AbortSignal.timeout(1_000) });
      ready = res.ok;
      await res.body?.cancel();
    } catch {
      ready = false;
    }
    if (this.pid !== pid || this.stopping) return;
    if (ready && this.state !== 'ready') {
      this.readySince = Date.now();
      this.setState('ready');
    } else if (!ready && this.state === 'ready') {
      this.readySince = undefined;
      this.setState('starting');
    }
  }

  private setState(state: EnvoyState): void {
    this.state = state;
    this.opts.onChange();
  }
}

/** The pids a record file holds, one a line (a pid record: one; a retirement record: Envoy's, then its owner's). */
function readPids(file: string): (number | undefined)[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => {
    const pid = Number.parseInt(l, 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  });
}

function readPid(file: string): number | undefined {
  return readPids(file)[0];
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}
