import { accessSync, constants, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { condition } from '../api/conditions.js';
import { buildBootstrap } from '../envoy/bootstrap.js';
import { OutlierEventTail, type OutlierEvent, type OutlierEventSource } from '../observability/outlier-events.js';
import type { GatewayIR } from '../ir/model.js';
import type { Readiness } from '../observability/health.js';
import type { GatewayStatus, ObjectStatus } from '../translate/status.js';
import { DEFAULT_DRAIN_TIMEOUT_MS, drainEnvoy } from './envoy-drain.js';
import { EnvoyProcess, type EnvoyProcessOptions, type EnvoyProcessView } from './envoy-process.js';
import { gatewayKey, placeGateways } from './loopback.js';

/**
 * The Host infrastructure provider: one real Envoy process per Gateway on this machine, each on
 * a loopback address of its own, configured over xDS by this process through a Unix socket.
 * It acts on translation output (the Gateways of each snapshot), never inside translation.
 */

const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Where the Envoy binary is looked for, in order, when no path is given. */
export const ENVOY_SEARCH = ['.toolchain/bin/envoy (this package, then the working directory)', 'envoy on PATH'] as const;

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The Envoy binary: `explicit` (--envoy-path), else `.toolchain/bin/envoy` of this package or of
 * the working directory, else `envoy` on PATH; undefined when none is found. An explicit path
 * that is not executable throws, naming the flag.
 */
export function findEnvoyBinary(explicit?: string, flag = '--envoy-path'): string | undefined {
  if (explicit !== undefined) {
    if (!executable(explicit)) throw new Error(`${flag} ${explicit}: no executable file there; give the path of an Envoy binary (scripts/ensure-envoy.sh installs the pinned one)`);
    return explicit;
  }
  for (const root of [PACKAGE_ROOT, process.cwd()]) {
    const candidate = join(root, '.toolchain', 'bin', 'envoy');
    if (executable(candidate)) return candidate;
  }
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir !== '' && executable(join(dir, 'envoy'))) return join(dir, 'envoy');
  }
  return undefined;
}

export interface HostInfrastructureOptions {
  envoyPath: string;
  /** serve's state directory (0700): addresses, and per Gateway its Envoy's bootstrap, log and pid. */
  stateDir: string;
  logger: Logger;
  concurrency?: number;
  envoyLogLevel?: string;
  backoff?: EnvoyProcessOptions['backoff'];
  /** How long a stopping Envoy's requests in flight get to end (EnvoyProcessOptions.drainTimeMs; default 60 s). */
  drainTimeMs?: number;
  /** First address given to Gateways without spec.addresses (default 127.0.10.1). */
  firstAddress?: string;
}

/** What /statusz shows per Gateway. */
export interface DataPlaneView extends Partial<EnvoyProcessView> {
  gateway: string;
  address?: string;
  /** Why the Gateway has no Envoy (its spec.addresses cannot be bound here). */
  unusable?: string;
}

interface Running {
  address: string;
  envoy: EnvoyProcess;
  /** Follows its outlier event log (a member's cool-down). */
  ejections: OutlierEventTail;
}

export class HostInfrastructure {
  private readonly addressFile: string;
  private readonly envoysDir: string;
  private placement: { addresses: Map<string, string>; unusable: Map<string, string> } = { addresses: new Map(), unusable: new Map() };
  private readonly running = new Map<string, Running>();
  /** Gateways whose previous Envoy still accepts or is gone but not yet stopped: the next one starts after (same directory). */
  private readonly stopping = new Map<string, Promise<void>>();
  /** Every Envoy being stopped, draining included: stop() waits for them. */
  private readonly retiring = new Set<Promise<void>>();
  /** Directories of gone Gateways whose leftover Envoy is draining (removeStaleDirs). */
  private readonly removing = new Set<string>();
  private readonly listeners = new Set<() => void>();
  private xds: { socket: string } | undefined;
  private stopped = false;
  private outlierSink: ((e: OutlierEvent, from: OutlierEventSource) => void) | undefined;

  constructor(private readonly opts: HostInfrastructureOptions) {
    this.addressFile = join(opts.stateDir, 'gateway-addresses.json');
    this.envoysDir = join(opts.stateDir, 'envoy');
    mkdirSync(this.envoysDir, { recursive: true, mode: 0o700 });
  }

  /** The listener address of each Gateway in this translation: computed before the Envoy stage, kept across restarts. */
  addresses(gateways: readonly GatewayIR[]): ReadonlyMap<string, string> {
    const placement = placeGateways(gateways, this.remembered(), this.opts.firstAddress);
    this.placement = placement;
    this.remember(placement.addresses);
    for (const [gateway, why] of placement.unusable) this.opts.logger.warn({ gateway }, `Gateway ${gateway}: no Envoy runs for it: ${why}`);
    return placement.addresses;
  }

  /** Starts, restarts and stops Envoys to match the last addresses() (call once the cache serves that snapshot). */
  apply(): void {
    if (this.stopped || this.xds === undefined) return;
    const wanted = this.placement.addresses;
    for (const [gateway, run] of this.running) {
      if (wanted.get(gateway) === run.address) continue;
      // Envoy cannot move a listener to another address in place: a new process binds the new one.
      this.running.delete(gateway);
      run.ejections.stop();
      const moving = wanted.has(gateway);
      this.opts.logger.info({ gateway, address: run.address }, moving ? 'envoy: the Gateway changed address; replacing its Envoy' : 'envoy: the Gateway is gone; stopping its Envoy');
      // A moving Gateway's successor (same directory, another address) starts once the old Envoy
      // accepts no more, while that one still drains what it carries; a gone Gateway's directory
      // is removed only once its Envoy is.
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        this.stopping.delete(gateway);
        this.apply();
      };
      const stopped = run.envoy.stop(moving ? { onListenersStopped: release } : {}).then(() => {
        this.retiring.delete(stopped);
        release();
      });
      this.retiring.add(stopped);
      this.stopping.set(gateway, stopped);
    }
    for (const [gateway, address] of wanted) {
      if (this.running.has(gateway) || this.stopping.has(gateway)) continue;
      const dir = join(this.envoysDir, dirName(gateway));
      const eventLog = join(dir, 'outlier-events.log');
      const envoy = new EnvoyProcess({
        envoyPath: this.opts.envoyPath,
        dir,
        bootstrap: `${JSON.stringify(buildBootstrap({ xds: this.xds, nodeId: `host/${gateway}`, gateway, adminPort: 0, outlierEventLog: eventLog }), null, 2)}\n`,
        ...(this.opts.concurrency !== undefined ? { concurrency: this.opts.concurrency } : {}),
        ...(this.opts.envoyLogLevel !== undefined ? { logLevel: this.opts.envoyLogLevel } : {}),
        ...(this.opts.backoff !== undefined ? { backoff: this.opts.backoff } : {}),
        ...(this.opts.drainTimeMs !== undefined ? { drainTimeMs: this.opts.drainTimeMs } : {}),
        logger: this.opts.logger.child({ gateway, address }),
        onChange: () => this.changed(),
      });
      // Its admin API tells apart the members an event's address may be (src/observability/outlier-events.ts).
      const ejections = new OutlierEventTail(eventLog, (e) => this.outlierSink?.(e, { adminUrl: envoy.view().adminUrl }));
      this.running.set(gateway, { address, envoy, ejections });
      envoy.start();
      ejections.start();
    }
    this.removeStaleDirs();
    this.changed();
  }

  /** Where the Envoys reach xDS; Envoys start from here on. */
  start(xds: { socket: string }): void {
    this.xds = xds;
    this.apply();
  }

  /** Where the Envoys' outlier events (members ejected and back) go. */
  onOutlierEvent(sink: (e: OutlierEvent, from: OutlierEventSource) => void): void {
    this.outlierSink = sink;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  views(): DataPlaneView[] {
    const out: DataPlaneView[] = [];
    for (const [gateway, address] of this.placement.addresses) out.push({ gateway, address, ...(this.running.get(gateway)?.envoy.view() ?? { state: 'starting' as const, restarts: 0 }) });
    for (const [gateway, unusable] of this.placement.unusable) out.push({ gateway, unusable });
    return out.sort((a, b) => (a.gateway < b.gateway ? -1 : 1));
  }

  /** Ready when every Gateway that can have an Envoy has a ready one. */
  readiness(): Readiness {
    const waiting = this.views().filter((v) => v.unusable === undefined && v.state !== 'ready');
    if (waiting.length === 0) return true;
    return { ready: false, reason: `waiting for the Envoy of Gateway ${waiting.map((v) => `${v.gateway} (${v.state ?? 'starting'})`).join(', ')}` };
  }

  /** Gateway statuses with their address while their Envoy is ready, Programmed=False while it is not. */
  statuses(all: readonly ObjectStatus[]): ObjectStatus[] {
    return withDataPlaneStatus(all, new Map(this.views().map((v) => [v.gateway, v])));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const all = [...this.running.values()];
    this.running.clear();
    for (const r of all) r.ejections.stop();
    await Promise.all([...all.map((r) => r.envoy.stop()), ...this.retiring]);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  private remembered(): Map<string, string> {
    try {
      const parsed: unknown = JSON.parse(readFileSync(this.addressFile, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null) return new Map();
      return new Map(Object.entries(parsed).filter((e): e is [string, string] => typeof e[1] === 'string'));
    } catch {
      return new Map();
    }
  }

  private remember(addresses: ReadonlyMap<string, string>): void {
    const text = `${JSON.stringify(Object.fromEntries([...addresses].sort()), null, 2)}\n`;
    let before = '';
    try {
      before = readFileSync(this.addressFile, 'utf8');
    } catch {
      // First run.
    }
    if (before === text) return;
    const tmp = `${this.addressFile}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, this.addressFile);
  }

  /**
   * Directories of Gateways gone while serve was down: their Envoy, if still running, was adopted
   * by nobody. It is drained (its clients' requests in flight end) before it is ended and its
   * directory removed.
   */
  private removeStaleDirs(): void {
    const wanted = new Set([...this.running.keys(), ...this.stopping.keys()].map(dirName));
    for (const entry of readdirSync(this.envoysDir)) {
      if (wanted.has(entry) || this.removing.has(entry)) continue;
      const dir = join(this.envoysDir, entry);
      endRetiredEnvoys(dir);
      let pid: number | undefined;
      try {
        const recorded = Number.parseInt(readFileSync(join(dir, 'envoy.pid'), 'utf8'), 10);
        if (Number.isInteger(recorded) && readFileSync(`/proc/${recorded}/cmdline`, 'utf8').includes(join(dir, 'bootstrap.json'))) pid = recorded;
      } catch {
        // No record or no such process.
      }
      if (pid === undefined) {
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      const envoyPid = pid;
      let adminUrl: string | undefined;
      try {
        const text = readFileSync(join(dir, 'admin-address'), 'utf8').trim();
        if (text !== '') adminUrl = `http://${text}`;
      } catch {
        // Never written: nothing to drain through.
      }
      this.opts.logger.info({ pid: envoyPid, dir }, 'envoy: the Envoy of a Gateway gone while this process was down; draining and stopping it');
      this.removing.add(entry);
      const timeoutMs = this.opts.drainTimeMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
      const removed = (adminUrl === undefined || timeoutMs <= 0 ? Promise.resolve() : drainEnvoy({ adminUrl, acceptMs: 0, timeoutMs }).then(() => undefined, () => undefined)).then(() => {
        try {
          process.kill(envoyPid, 'SIGTERM');
        } catch {
          // Gone already.
        }
        rmSync(dir, { recursive: true, force: true });
        this.removing.delete(entry);
        this.retiring.delete(removed);
      });
      this.retiring.add(removed);
    }
  }
}

/** Envoys left draining in `dir` by a process that died meanwhile (EnvoyProcess retirement records): their drain is over. */
function endRetiredEnvoys(dir: string): void {
  let entries: string[] = [];
  try {
    entries = readdirSync(dir).filter((e) => /^retired-\d+\.pid$/.test(e));
  } catch {
    return;
  }
  for (const entry of entries) {
    try {
      const [pid, owner] = readFileSync(join(dir, entry), 'utf8').split('\n').map((l) => Number.parseInt(l, 10));
      const ownerAlive = owner !== undefined && Number.isInteger(owner) && existsSync(`/proc/${owner}`);
      if (!ownerAlive && pid !== undefined && Number.isInteger(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(join(dir, 'bootstrap.json'))) process.kill(pid, 'SIGTERM');
    } catch {
      // No such process.
    }
  }
}

/** A directory name per Gateway: namespaces and names hold no "_". */
function dirName(gateway: string): string {
  return gateway.replace('/', '_');
}

/** Reasons (Gateway API GatewayConditionReason) for a Gateway whose Envoy is not serving. */
function notProgrammed(v: DataPlaneView): { reason: string; message: string } {
  if (v.unusable !== undefined) return { reason: 'AddressNotUsable', message: v.unusable };
  const where = `its Envoy on ${v.address ?? '?'}`;
  switch (v.state) {
    case 'restarting':
      return { reason: 'Pending', message: `${where} ${v.lastExit ?? 'exited'} and is being restarted (restarts so far: ${v.restarts ?? 0}; log ${v.log ?? ''})` };
    case 'stopped':
      return { reason: 'Pending', message: `${where} is stopped` };
    default:
      return { reason: 'Pending', message: `${where} is starting${v.pid !== undefined ? ` (pid ${v.pid})` : ''} and has not reported ready yet` };
  }
}

/**
 * Pure: each Gateway with a data plane gets status.addresses while its Envoy is ready, none
 * otherwise, and Programmed=False (Pending or AddressNotUsable) while it is not: a Gateway is
 * programmed only when something serves its address. Other verdicts (Invalid) are left alone.
 */
export function withDataPlaneStatus(all: readonly ObjectStatus[], planes: ReadonlyMap<string, DataPlaneView>): ObjectStatus[] {
  return all.map((s) => {
    if (s.kind !== 'Gateway' || !('listeners' in s)) return s;
    const plane = planes.get(gatewayKey(s));
    if (plane === undefined) return s;
    if (plane.state === 'ready' && plane.address !== undefined) {
      return { ...s, addresses: [{ type: 'IPAddress', value: plane.address }] } satisfies GatewayStatus;
    }
    const why = notProgrammed(plane);
    const conditions = s.conditions.map((c) =>
      c.type === 'Programmed' && (c.status === 'True' || c.reason === 'Pending') ? condition('Programmed', false, why.reason, why.message, c.observedGeneration) : c,
    );
    return { ...s, conditions, addresses: [] } satisfies GatewayStatus;
  });
}
