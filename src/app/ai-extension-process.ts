import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { otlpUrl, type OtlpEndpoint } from '../envoy/tracing.js';
import { assertPortFree } from './ports.js';
import { commandArgsOf, commandLineOf, isAlive, type StateDir } from './state-dir.js';

/**
 * `serve`'s AI extension as a child process of its own, so that Envoy keeps adapting and
 * authenticating AI requests while serve is down (a crash, kill -9, an upgrade):
 *
 * - It runs detached (its own process group): a kill of serve, or of serve's group, leaves it.
 * - It reads credentials over serve's Unix socket in the state directory, and keeps the last ones
 *   it was given while that socket is gone; a restarted serve binds the same path and the
 *   extension is back within a second (src/ai-extension/credentials.ts).
 * - It writes its pid and port (or its ext_proc socket) to the state directory; a restarted serve
 *   adopts it when that pid is alive, is an extension of this directory and accepts connections
 *   there, so Envoy's configuration (which names that address) and every version stay the same.
 * - A graceful stop of serve (SIGTERM, SIGINT, stop()) stops it. Left alone, it ends itself once
 *   both serve and Envoy have been silent for `orphanGraceMs` (default 10 min): a serve that is
 *   never coming back does not leave it running forever, and it never ends while Envoy still
 *   sends it requests or during any plausible restart.
 * - serve restarts it, on the same port or socket, if it dies while serve runs.
 */

export const DEFAULT_ORPHAN_GRACE_MS = 10 * 60_000;

/** What the extension writes once it listens, for serve to adopt it after a restart. */
export interface ExtensionRecord {
  pid: number;
  /** The ext_proc TCP port; 0 with `listenSocket`. */
  port: number;
  host: string;
  /** serve's ADS socket it reads credentials from. */
  socket: string;
  /** The Unix socket it serves ext_proc on instead of TCP. */
  listenSocket?: string;
  metricsPort?: number;
}

/**
 * A record as the extension writes it, else undefined (a file from another version, or edited).
 * Checked by hand: the extension writes it, and it loads no schema library (zod) for that.
 */
function asExtensionRecord(value: unknown): ExtensionRecord | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { pid, port, host, socket, listenSocket, metricsPort } = value as Record<string, unknown>;
  const integer = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n);
  if (!integer(pid) || pid <= 0 || !integer(port)) return undefined;
  if (listenSocket !== undefined && (typeof listenSocket !== 'string' || listenSocket === '')) return undefined;
  if (listenSocket === undefined && (port < 1 || port > 65535)) return undefined;
  if (typeof host !== 'string' || typeof socket !== 'string') return undefined;
  if (metricsPort !== undefined && !integer(metricsPort)) return undefined;
  return { pid, port, host, socket, ...(listenSocket !== undefined ? { listenSocket } : {}), ...(metricsPort !== undefined ? { metricsPort } : {}) };
}

/** Written by the extension once it listens (atomically: a reader never sees half a file). */
export function writeExtensionRecord(path: string, record: ExtensionRecord): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

/** Removes the record if it still names `pid` (a successor's record is left alone). */
export function removeExtensionRecord(path: string, pid: number): void {
  if (readExtensionRecord(path)?.pid === pid) rmSync(path, { force: true });
}

function readExtensionRecord(path: string): ExtensionRecord | undefined {
  try {
    return asExtensionRecord(JSON.parse(readFileSync(path, 'utf8')));
  } catch {
    return undefined;
  }
}

/** Shortest warm-up key an extension accepts from a file (serve writes 64 hex digits). */
const MIN_WARMUP_KEY_LENGTH = 32;

/** Where serve keeps the key its warm-up requests are signed with (src/app/ai-warmup.ts). */
export function warmupKeyPath(state: StateDir): string {
  return join(state.path, 'ai-warmup.key');
}

/**
 * The warm-up key of this state directory, made on first use. A file, not an argument: a
 * restarted serve must sign with the key of the extension it adopts, and argv is readable by
 * every user of the host.
 */
export function ensureWarmupKey(state: StateDir): string {
  const path = warmupKeyPath(state);
  try {
    writeFileSync(path, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return readWarmupKey(path);
}

/** The key in a --warmup-key-file; an error naming the file and the fix when it holds none. */
export function readWarmupKey(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`--warmup-key-file ${path}: cannot read it (${err instanceof Error ? err.message : String(err)}); serve writes it in its state directory, give that file or leave the flag out`);
  }
  const key = text.trim();
  if (key.length < MIN_WARMUP_KEY_LENGTH) throw new Error(`--warmup-key-file ${path}: holds no key of at least ${MIN_WARMUP_KEY_LENGTH} characters; remove the file and restart serve to make a new one`);
  return key;
}

/**
 * How to run `switchyard` again: this Node with its loader flags (tsx when run from source) and
 * the CLI entry next to this module (`.ts` in source, `.js` when built).
 */
export function defaultSwitchyardCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  const entry = fileURLToPath(new URL(`../cli/main${extname(here)}`, import.meta.url));
  return [process.execPath, ...process.execArgv, entry];
}

export interface AiExtensionProcessOptions {
  state: StateDir;
  /** The ext_proc port Envoy dials: 0 reuses the last extension's port, or takes a free one. */
  port: number;
  host: string;
  /**
   * Serve ext_proc on this Unix socket instead (port and host unused): state.extProcSocket, when
   * serve runs the Envoys.
   */
  socket?: string;
  /** argv that runs `switchyard` (default: defaultSwitchyardCommand()). */
  command?: readonly string[];
  orphanGraceMs?: number;
  logLevel?: string;
  /** Where the extension sends its spans (tracing off when absent). */
  otlp?: OtlpEndpoint;
  /** Where extensions share member limit counts (--limits-redis); absent: in the extension only. */
  limitsRedis?: string;
  logger: Logger;
  /** How long a new extension may take to listen (tsx compiles at start). */
  startTimeoutMs?: number;
}

export interface AiExtensionProcess {
  /** The ext_proc port, stable across restarts of serve and of the extension; 0 on a socket. */
  readonly port: number;
  /** The ext_proc Unix socket, when it serves on one (the same path across restarts). */
  readonly socket: string | undefined;
  /** The current extension's pid (changes if serve had to restart it). */
  pid(): number;
  /** Its series (text format) from its own /metrics on loopback; '' while it cannot be read. */
  metrics(): Promise<string>;
  /** The key serve's warm-up requests are signed with (kept in the state directory, shared with the extension). */
  readonly warmupKey: string;
  /** Whether this serve found the extension already running and adopted it. */
  readonly adopted: boolean;
  /** Stops supervising and ends the extension (SIGTERM, SIGKILL after 5 s). */
  stop(): Promise<void>;
}

export async function startAiExtensionProcess(opts: AiExtensionProcessOptions): Promise<AiExtensionProcess> {
  const log = opts.logger;
  const { state } = opts;
  const command = opts.command ?? defaultSwitchyardCommand();
  const previous = readExtensionRecord(state.extensionRecord);
  const warmupKey = ensureWarmupKey(state);

  let current: ExtensionRecord | undefined;
  let adopted = false;
  if (previous !== undefined && isOurs(previous, state) && (await listening(previous))) {
    const sameListener = opts.socket !== undefined
      ? previous.listenSocket === opts.socket
      : previous.listenSocket === undefined && previous.host === opts.host && (opts.port === 0 || opts.port === previous.port);
    const sameAddress = sameListener && previous.socket === state.socket;
    if (sameAddress && tracesTo(previous.pid) === (opts.otlp !== undefined ? otlpUrl(opts.otlp) : undefined)) {
      current = previous;
      adopted = true;
      log.info({ extensionPid: previous.pid, ...listenerOf(previous) }, 'ai-extension: adopted the extension that kept running while serve was down');
    } else {
      log.info({ extensionPid: previous.pid, ...listenerOf(previous), ...(opts.socket !== undefined ? { wantSocket: opts.socket } : { wantPort: opts.port, wantHost: opts.host }) }, 'ai-extension: replacing the running extension: its address or its --otlp-endpoint differs from the one asked for');
      await terminate(previous.pid);
    }
  } else if (previous !== undefined && isOurs(previous, state)) {
    // Alive but not answering: wedged. A fresh one takes its place (and its port or socket).
    await terminate(previous.pid);
  }
  if (current === undefined) {
    const wanted = opts.socket !== undefined ? 0 : opts.port !== 0 ? opts.port : (previous?.port ?? 0);
    if (opts.socket === undefined && opts.port !== 0) await assertPortFree('ai-extension', opts.host, opts.port);
    current = await spawnExtension(opts, command, wanted).catch(async (err: unknown) => {
      // The last extension's port may have been taken meanwhile; a port the user chose may not be swapped.
      if (opts.socket !== undefined || opts.port !== 0 || wanted === 0) throw err;
      log.warn({ port: wanted, err: err instanceof Error ? err.message : String(err) }, 'ai-extension: could not take the previous port back; taking a free one');
      return spawnExtension(opts, command, 0);
    });
    log.info({ extensionPid: current.pid, ...listenerOf(current), log: state.extensionLog }, 'ai-extension: started as a child process that outlives serve');
  }

  const port = current.port;
  const socket = current.listenSocket;
  let stopping = false;
  let restarting = false;
  let restartDelayMs = 500;
  // A poll, not the child's 'exit' event: an adopted extension is not our child.
  const watchdog = setInterval(() => {
    if (stopping || restarting || current === undefined || isAlive(current.pid)) return;
    restarting = true;
    log.error({ extensionPid: current.pid, ...listenerOf(current), log: state.extensionLog }, 'ai-extension: the extension process ended; starting a new one on the same port or socket');
    setTimeout(() => {
      if (stopping) return;
      spawnExtension(opts, command, port).then(
        (record) => {
          current = record;
          restarting = false;
          restartDelayMs = 500;
          log.info({ extensionPid: record.pid, ...listenerOf(record) }, 'ai-extension: restarted');
        },
        (err: unknown) => {
          restarting = false;
          restartDelayMs = Math.min(restartDelayMs * 2, 30_000);
          log.error({ err: err instanceof Error ? err.message : String(err), retryInMs: restartDelayMs }, 'ai-extension: could not restart the extension');
        },
      );
    }, restartDelayMs);
  }, 500);
  watchdog.unref();

  return {
    port,
    socket,
    adopted,
    warmupKey,
    pid: () => current?.pid ?? 0,
    metrics: async () => {
      const metricsPort = current?.metricsPort;
      if (metricsPort === undefined || restarting) return '';
      try {
        const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(2_000) });
        return res.ok ? await res.text() : '';
      } catch {
        // A scrape during a restart of the extension shows serve's own series only.
        return '';
      }
    },
    async stop() {
      stopping = true;
      clearInterval(watchdog);
      if (current === undefined) return;
      await terminate(current.pid);
      removeExtensionRecord(state.extensionRecord, current.pid);
    },
  };
}

/** Alive, and (where /proc says) an extension started for this state directory: a reused pid is not adopted or killed. */
function isOurs(record: ExtensionRecord, state: StateDir): boolean {
  if (!isAlive(record.pid)) return false;
  const cmd = commandLineOf(record.pid);
  return cmd === undefined || (cmd.includes('ai-extension') && cmd.includes(state.extensionRecord));
}

/** Where a record's extension serves ext_proc, for logs. */
function listenerOf(record: ExtensionRecord): { socket: string } | { port: number } {
  return record.listenSocket !== undefined ? { socket: record.listenSocket } : { port: record.port };
}

function listening(record: ExtensionRecord): Promise<boolean> {
  const { host, port, listenSocket } = record;
  const address = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return new Promise((resolve) => {
    const socket = listenSocket !== undefined ? connect({ path: listenSocket }) : connect({ host: address, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function terminate(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + 5_000;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  if (isAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}

/** The --otlp-endpoint a running extension was started with (undefined: tracing off). */
function tracesTo(pid: number): string | undefined {
  const args = commandArgsOf(pid) ?? [];
  const at = args.indexOf('--otlp-endpoint');
  return at < 0 ? undefined : args[at + 1];
}

async function spawnExtension(opts: AiExtensionProcessOptions, command: readonly string[], port: number): Promise<ExtensionRecord> {
  const { state } = opts;
  const [file, ...prefix] = command;
  if (file === undefined) throw new Error('ai-extension: empty command to run switchyard');
  const args = [
    ...prefix,
    'ai-extension',
    '--xds-socket', state.socket,
    ...(opts.socket !== undefined ? ['--listen-socket', opts.socket] : ['--port', String(port), '--host', opts.host]),
    '--metrics-port', '0',
    '--metrics-host', '127.0.0.1',
    '--orphan-grace', durationFlag(opts.orphanGraceMs ?? DEFAULT_ORPHAN_GRACE_MS),
    '--state-file', state.extensionRecord,
    '--log-level', opts.logLevel ?? 'info',
    '--warmup-key-file', warmupKeyPath(state),
    ...(opts.otlp !== undefined ? ['--otlp-endpoint', otlpUrl(opts.otlp)] : []),
    ...(opts.limitsRedis !== undefined ? ['--limits-redis', opts.limitsRedis] : []),
  ];
  rmSync(state.extensionRecord, { force: true });
  // Left behind by an extension that was killed (or ended on its own): none serves on it now.
  if (opts.socket !== undefined) rmSync(opts.socket, { force: true });
  // A file, not a pipe to serve: a pipe breaks when serve dies, and writing to it would end the extension.
  const out = openSync(state.extensionLog, 'w', 0o600);
  const child = spawn(file, args, { detached: true, stdio: ['ignore', out, out], env: process.env });
  closeSync(out);
  child.unref();
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    exited = signal !== null ? `killed by ${signal}` : `exited with code ${String(code)}`;
  });
  child.once('error', (err) => {
    exited = `could not be started: ${err.message}`;
  });
  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  for (;;) {
    const record = readExtensionRecord(state.extensionRecord);
    if (record !== undefined && record.pid === child.pid) return record;
    if (exited !== undefined || Date.now() > deadline) {
      if (exited === undefined) child.kill('SIGKILL');
      throw new Error(`the AI extension (${[file, ...args].join(' ')}) ${exited ?? 'did not start listening in time'}; its log ${state.extensionLog}:\n${tail(state.extensionLog)}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A duration flag within GEP-2257's five digits per unit. */
function durationFlag(ms: number): string {
  const whole = Math.max(1, Math.round(ms));
  return whole % 1000 === 0 ? `${whole / 1000}s` : `${whole}ms`;
}

function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(empty)';
  }
}
