import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { JsonObject, JsonValue } from '../../src/envoy/resources.js';
import { StopWaiting, waitFor } from './wait.js';

export type EnvoyLogLevel = 'trace' | 'debug' | 'info' | 'warning' | 'error' | 'critical' | 'off';

export interface StartEnvoyOptions {
  /** Worker threads (default 1). */
  concurrency?: number;
  bootstrap: JsonObject;
  /** The admin port written in `bootstrap` (0 lets Envoy pick; `adminUrl` tells which). */
  adminPort: number;
  logLevel?: EnvoyLogLevel;
  /** e.g. `upstream:debug,router:debug`, passed as --component-log-level. */
  componentLogLevel?: string;
  /** A label for temp files and error messages, to tell several Envoys of one test apart. */
  id?: string;
  startTimeoutMs?: number;
  /** More command-line flags, e.g. `--file-flush-interval-msec 100` to see access log lines sooner. */
  extraArgs?: string[];
}

export interface ListenerStatus {
  name: string;
  address: string;
  port: number;
}

export interface EnvoyProcess {
  readonly id: string;
  readonly pid: number;
  /** e.g. `http://127.0.0.1:19000`, no trailing slash. */
  readonly adminUrl: string;
  /** GET on the admin API; throws with the body when the status is not 2xx. */
  admin(pathAndQuery: string): Promise<string>;
  configDump(opts?: { includeEds?: boolean }): Promise<JsonObject>;
  /** Counters and gauges by full name; histograms are left out. */
  stats(): Promise<Map<string, number>>;
  /** One counter or gauge; undefined while Envoy has not created it (e.g. `upstream_rq_200`). */
  stat(name: string): Promise<number | undefined>;
  /** Parsed `/clusters?format=json`. */
  clusters(): Promise<JsonObject>;
  listeners(): Promise<ListenerStatus[]>;
  /**
   * Resolves once listener `name` accepts connections: listed by `/listeners` and the workers
   * started. While Envoy initializes (its first CDS/EDS/LDS/RDS answers), `/listeners` already
   * lists a listener it has only bound: it calls listen() on it just before it starts its workers,
   * so a connection in between is refused. A listener added later is listed once listening.
   */
  waitForListener(name: string, timeoutMs?: number): Promise<ListenerStatus>;
  /** Resolves with the stat's value once it exists and `predicate` holds. */
  waitForStat(name: string, predicate: (value: number) => boolean, timeoutMs?: number): Promise<number>;
  /** Everything Envoy wrote to stdout and stderr so far (also after stop()). */
  logs(): string;
  /** Writes the last `lines` log lines to stderr, headed by the Envoy's id. */
  printLogs(lines?: number): void;
  /** Whether the process is still running. */
  running(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. Idempotent. */
  stop(graceMs?: number): Promise<void>;
  /**
   * Takes this Envoy away as a rolling upgrade takes an Envoy pod away (a drain before SIGTERM),
   * not as a crash: its listeners drain (connections are closed after their response in flight)
   * and stop, and the process is stopped once no downstream connection is left. Start it with
   * `--drain-time-s` and `--drain-strategy immediate` for a short drain.
   */
  leave(timeoutMs?: number): Promise<void>;
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function envoyBinaryPath(): string {
  return process.env['ENVOY_BIN'] ?? join(REPO_ROOT, '.toolchain', 'bin', 'envoy');
}

/** Envoys still running when the test worker exits are killed, so no run leaves one behind. */
const live = new Map<ChildProcess, string>();
process.once('exit', () => {
  for (const [child, dir] of live) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

let sequence = 0;

/** Returns the Envoy binary's path or throws the one message that says how to get it. */
export function requireEnvoyBinary(): string {
  const bin = envoyBinaryPath();
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(`Envoy binary not found at ${bin}: run scripts/ensure-envoy.sh (make envoy)`);
  }
  return bin;
}

export async function startEnvoy(opts: StartEnvoyOptions): Promise<EnvoyProcess> {
  const bin = requireEnvoyBinary();

  const id = opts.id ?? `envoy-${process.pid}-${++sequence}`;
  const dir = mkdtempSync(join(tmpdir(), `switchyard-${id}-`));
  const configPath = join(dir, 'bootstrap.json');
  const logPath = join(dir, 'envoy.log');
  const adminAddressPath = join(dir, 'admin-address');
  writeFileSync(configPath, JSON.stringify(opts.bootstrap, null, 2));

  const args = [
    '-c', configPath,
    '--concurrency', String(opts.concurrency ?? 1),
    '--disable-hot-restart',
    // Hot restart is off, so no shared memory is made; a dynamic base id still keeps every
    // base-id-derived name apart when several Envoys run at once.
    '--use-dynamic-base-id',
    '--admin-address-path', adminAddressPath,
    '--log-level', opts.logLevel ?? 'info',
  ];
  if (opts.componentLogLevel !== undefined) args.push('--component-log-level', opts.componentLogLevel);
  if (opts.extraArgs) args.push(...opts.extraArgs);

  // A file, not a pipe: a chatty Envoy must never block on a full pipe the test does not read.
  const logFd = openSync(logPath, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  live.set(child, dir);

  let exitCode: number | null = null;
  let exitSignal: NodeJS.Signals | null = null;
  let spawnError: Error | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitCode = code;
      exitSignal = signal;
      live.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      spawnError = err;
      live.delete(child);
      resolve();
    });
  });
  const isRunning = (): boolean => exitCode === null && exitSignal === null && spawnError === undefined;

  let cachedLogs: string | undefined;
  const logs = (): string => cachedLogs ?? readIfExists(logPath);
  const tail = (lines: number): string => logs().trimEnd().split('\n').slice(-lines).join('\n');

  let adminUrl: string;
  try {
    const address = await waitFor(
      () => {
        if (!isRunning()) {
          throw new StopWaiting(
            spawnError !== undefined
              ? `could not be spawned: ${spawnError.message}`
              : `exited during startup (code ${String(exitCode)}, signal ${String(exitSignal)})`,
          );
        }
        const text = readIfExists(adminAddressPath).trim();
        return text === '' ? undefined : text;
      },
      { what: `Envoy ${id} to write its admin address`, timeoutMs: opts.startTimeoutMs ?? 20_000, intervalMs: 25 },
    );
    adminUrl = `http://${address}`;
    if (opts.adminPort !== 0 && !address.endsWith(`:${opts.adminPort}`)) {
      throw new Error(`admin listens on ${address}, not on port ${opts.adminPort} as the caller expected`);
    }
    await waitFor(async () => (await fetch(`${adminUrl}/server_info`)).ok, {
      what: `Envoy ${id} admin API at ${adminUrl}`,
      timeoutMs: 10_000,
    });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    const reason = err instanceof Error ? err.message : String(err);
    const text = tail(60);
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`Envoy ${id} failed to start: ${reason}\n--- last lines of Envoy's log ---\n${text}`);
  }

  const admin = async (pathAndQuery: string): Promise<string> => {
    const res = await fetch(`${adminUrl}${pathAndQuery}`);
    const body = await res.text();
    if (!res.ok) throw new Error(`Envoy ${id} admin ${pathAndQuery}: HTTP ${res.status}: ${body.slice(0, 500)}`);
    return body;
  };
  const adminJson = async (pathAndQuery: string): Promise<JsonObject> => {
    const value = JSON.parse(await admin(pathAndQuery)) as JsonValue;
    if (!isObject(value)) throw new Error(`Envoy ${id} admin ${pathAndQuery}: expected a JSON object`);
    return value;
  };
  const statsMatching = async (filter?: string): Promise<Map<string, number>> => {
    const query = filter === undefined ? '' : `&filter=${encodeURIComponent(filter)}`;
    return parseStats(await adminJson(`/stats?format=json${query}`));
  };
  const listeners = async (): Promise<ListenerStatus[]> => {
    const body = await adminJson('/listeners?format=json');
    return parseListeners(body);
  };

  let stopping: Promise<void> | undefined;

  const envoy: EnvoyProcess = {
    id,
    pid: child.pid ?? -1,
    adminUrl,
    admin,
    configDump: (o) => adminJson(o?.includeEds === true ? '/config_dump?include_eds' : '/config_dump'),
    stats: () => statsMatching(),
    stat: async (name) => (await statsMatching(`^${escapeRegExp(name)}$`)).get(name),
    clusters: () => adminJson('/clusters?format=json'),
    listeners,
    waitForListener: (name, timeoutMs = 10_000) =>
      waitFor(async () => {
        const listener = (await listeners()).find((l) => l.name === name);
        return listener !== undefined && (await envoy.stat('listener_manager.workers_started')) === 1 ? listener : undefined;
      }, { what: `Envoy ${id} to have listener ${name} active and its workers started (accepting connections)`, timeoutMs }),
    waitForStat: async (name, predicate, timeoutMs = 10_000) => {
      let last: number | undefined;
      try {
        return await waitFor(
          async () => {
            last = await envoy.stat(name);
            return last !== undefined && predicate(last) ? last : undefined;
          },
          { what: `Envoy ${id} stat ${name} to satisfy ${predicate.toString()}`, timeoutMs },
        );
      } catch (err) {
        throw new Error(`${(err as Error).message}; last value: ${last === undefined ? 'absent' : String(last)}`);
      }
    },
    logs,
    printLogs: (lines = 80) => {
      process.stderr.write(`--- Envoy ${id}: last ${lines} log lines ---\n${tail(lines)}\n---\n`);
    },
    running: isRunning,
    leave: async (timeoutMs = 10_000) => {
      if (isRunning()) {
        const res = await fetch(`${adminUrl}/drain_listeners?graceful`, { method: 'POST' });
        if (!res.ok) throw new Error(`Envoy ${id} admin POST /drain_listeners?graceful: HTTP ${res.status}: ${(await res.text()).slice(0, 500)}`);
        await waitFor(async () => {
          const stats = await statsMatching('^listener_manager\\.listener_stopped$|^listener\\..*\\.downstream_cx_active$');
          let open = 0;
          for (const [name, value] of stats) if (name.endsWith('.downstream_cx_active') && !name.startsWith('listener.admin.') && !name.includes('.worker_')) open += value;
          return (stats.get('listener_manager.listener_stopped') ?? 0) > 0 && open === 0;
        }, { what: `Envoy ${id} to stop its listeners and see its last downstream connection closed`, timeoutMs });
      }
      await envoy.stop();
    },
    stop: (graceMs = 5_000) => {
      stopping ??= (async () => {
        if (isRunning()) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
          await exited;
          clearTimeout(timer);
        }
        cachedLogs = readIfExists(logPath);
        rmSync(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
  return envoy;
}

export function parseStats(body: JsonObject): Map<string, number> {
  const out = new Map<string, number>();
  const entries = body['stats'];
  if (!Array.isArray(entries)) return out;
  for (const entry of entries) {
    if (!isObject(entry)) continue;
    const { name, value } = entry;
    // Envoy prints 64-bit counters as JSON numbers; a histogram entry has no `value`.
    if (typeof name === 'string' && typeof value === 'number') out.set(name, value);
  }
  return out;
}

function parseListeners(body: JsonObject): ListenerStatus[] {
  const statuses = body['listener_statuses'];
  if (!Array.isArray(statuses)) return [];
  const out: ListenerStatus[] = [];
  for (const s of statuses) {
    if (!isObject(s) || typeof s['name'] !== 'string') continue;
    const local = s['local_address'];
    const sock = isObject(local) ? local['socket_address'] : undefined;
    out.push({
      name: s['name'],
      address: isObject(sock) && typeof sock['address'] === 'string' ? sock['address'] : '',
      port: isObject(sock) && typeof sock['port_value'] === 'number' ? sock['port_value'] : 0,
    });
  }
  return out;
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function readIfExists(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Envoy's ext_proc counters, summed over every ext_proc filter's stat prefix. */
export async function extProcCounters(envoy: Pick<EnvoyProcess, 'stats'>): Promise<{ streams: number; sent: number; received: number }> {
  const out = { streams: 0, sent: 0, received: 0 };
  for (const [name, value] of await envoy.stats()) {
    if (!name.includes('ext_proc.')) continue;
    if (name.endsWith('.streams_started')) out.streams += value;
    else if (name.endsWith('.stream_msgs_sent')) out.sent += value;
    else if (name.endsWith('.stream_msgs_received')) out.received += value;
  }
  return out;
}
