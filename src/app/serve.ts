import { rmSync } from 'node:fs';
import { registerLimitMetrics } from '../ai-extension/limits-health.js';
import type { IR } from '../ir/model.js';
import { OutlierEventTail, ejectionReporter, type OutlierEventSource } from '../observability/outlier-events.js';
import { registerAiExtensionMetrics } from '../ai-extension/metrics.js';
import type { RunningAiExtension } from '../ai-extension/server.js';
import { assertConfigPathReadable, FileProvider } from '../providers/file.js';
import type { ConfigLimits } from '../providers/manifest-files.js';
import { startAiExtensionProcess, type AiExtensionProcess } from './ai-extension-process.js';
import { DEFAULT_ENVOY_OPTIONS, type AiExtensionAddress } from '../envoy/options.js';
import { AiWarmup, loopbackFor, type AiWarmupOptions } from './ai-warmup.js';
import { assertPortFree, assertServingPortsFree } from './ports.js';
import { startGatewayRuntime, type GatewayRuntimeOptions, type RunningGateway, type ServingOptions } from './gateway-runtime.js';
import { HostInfrastructure, type HostInfrastructureOptions } from '../infrastructure/host.js';
import { defaultStateDir, lockStateDir, openStateDir, type StateDir } from './state-dir.js';

/** The AI extension needs no certificate: in process or as a child, it reads its credentials over a private Unix socket. */
export interface ServeOptions extends ServingOptions {
  config: string;
  /** Size limits of the configuration (DEFAULT_CONFIG_LIMITS for what is not given). */
  limits?: Partial<ConfigLimits>;
  /**
   * The AI extension, run in this process unless false (Envoy then expects one at
   * `envoy.aiExtension`). Default: `{port: 0}`.
   */
  aiExtension?: false | ServeAiExtensionOptions;
  /**
   * The Host infrastructure: one Envoy per Gateway, run and supervised by serve
   * (src/infrastructure/host.ts). Absent: Envoy is left to the user (`switchyard bootstrap`).
   */
  infrastructure?: HostInfrastructureChoice;
  /**
   * Outlier event logs of Envoys this serve does not run (bootstrap outlierEventLog): each
   * member's ejections are logged and counted (the Envoys serve runs are followed anyway). With
   * the admin URL of the Envoy that writes it, members sharing an address are told apart.
   */
  outlierEventLogs?: readonly (string | ({ path: string } & OutlierEventSource))[];
  /**
   * Warm-up of AI members through the Envoys (src/app/ai-warmup.ts), on unless false. Its key is
   * shared in memory with an extension in this process, or through the state directory with one
   * in a child process.
   */
  aiWarmup?: false | Pick<AiWarmupOptions, 'refreshMs' | 'giveUpAfterMs'>;
}

export interface ServeAiExtensionOptions {
  /**
   * How Envoy reaches it. `unix`: a socket in the state directory (mode 0700), reachable by this
   * user only, no TCP port; the default when serve runs the Envoys (`infrastructure`), and only
   * then (an Envoy of yours is given TCP). `tcp`: `host`:`port`, what an Envoy elsewhere needs.
   */
  transport?: 'unix' | 'tcp';
  /** TCP port; 0 picks a free one. */
  port: number;
  host?: string;
  /** The address Envoy dials over TCP (default 127.0.0.1: Envoy on this host). */
  advertise?: string;
  child?: AiExtensionChildOptions;
  limitsRedis?: string;
}

export interface HostInfrastructureChoice {
  kind: 'host';
  envoyPath: string;
  /** Addresses, Envoy bootstraps, logs and pids (default: the AI extension's, else defaultStateDir(config)). */
  stateDir?: string;
  concurrency?: number;
  envoyLogLevel?: string;
  backoff?: HostInfrastructureOptions['backoff'];
  firstAddress?: string;
  /** How long a stopping Envoy's requests in flight get (HostInfrastructureOptions.drainTimeMs). */
  drainTimeMs?: number;
}

/**
 * The AI extension as a child process that outlives serve (src/app/ai-extension-process.ts): what
 * the CLI runs, so a crash of serve loses no request. Absent: the extension runs in this process.
 */
export interface AiExtensionChildOptions {
  /** Sockets and extension pid/port live here (default: defaultStateDir(config)); a restarted serve must be given the same one. */
  stateDir?: string;
  /** argv that runs `switchyard` (default: this Node, its loader flags and the CLI entry). */
  command?: readonly string[];
  /** The extension ends itself after this long with neither serve nor Envoy (default 10 min). */
  orphanGraceMs?: number;
  logLevel?: string;
}

export type RunningServe = RunningGateway & {
  /** The Envoys serve runs, with infrastructure host. */
  hostInfrastructure: HostInfrastructure | undefined;
  /** The in-process AI extension, unless disabled or run as a child. */
  aiExtension: RunningAiExtension | undefined;
  /** The AI extension's process, when run as a child. */
  aiExtensionProcess: AiExtensionProcess | undefined;
};

/**
 * `switchyard serve`: the file provider feeding the shared pipeline (gateway-runtime.ts) and,
 * in the same process, the AI extension that Envoy calls for every attempt on an AI Backend.
 */
export async function serve(opts: ServeOptions): Promise<RunningServe> {
  const { config, limits, logger, aiExtension: extensionOptions = { port: 0 }, infrastructure: hostChoice, ...servers } = opts;
  // Before the AI extension starts: a wrong path or a taken port is then one line, nothing to unwind.
  await assertConfigPathReadable(config);
  await assertServingPortsFree(servers);
  if (extensionOptions !== false && extensionOptions.transport === 'unix' && hostChoice === undefined) {
    throw new Error('serve: aiExtension.transport unix needs the Envoys serve runs (infrastructure host): an Envoy of yours reaches the extension over TCP; leave transport out or set it to tcp');
  }
  if (extensionOptions !== false && extensionOptions.child !== undefined) return serveWithExtensionProcess(opts, extensionOptions.child);
  let host: { state: StateDir; unlock: () => void; infrastructure: HostInfrastructure } | undefined;
  if (hostChoice) {
    const state = openStateDir(hostChoice.stateDir ?? defaultStateDir(config));
    const unlock = lockStateDir(state);
    host = { state, unlock, infrastructure: hostInfrastructure(hostChoice, state, logger) };
  }
  try {
    return await serveInProcess(opts, extensionOptions, host);
  } catch (err) {
    await host?.infrastructure.stop();
    host?.unlock();
    throw err;
  }
}

function hostInfrastructure(choice: HostInfrastructureChoice, state: StateDir, logger: ServeOptions['logger']): HostInfrastructure {
  return new HostInfrastructure({
    envoyPath: choice.envoyPath,
    stateDir: state.path,
    logger: logger.child({ component: 'host-infrastructure' }),
    ...(choice.concurrency !== undefined ? { concurrency: choice.concurrency } : {}),
    ...(choice.envoyLogLevel !== undefined ? { envoyLogLevel: choice.envoyLogLevel } : {}),
    ...(choice.backoff !== undefined ? { backoff: choice.backoff } : {}),
    ...(choice.firstAddress !== undefined ? { firstAddress: choice.firstAddress } : {}),
    ...(choice.drainTimeMs !== undefined ? { drainTimeMs: choice.drainTimeMs } : {}),
  });
}

/**
 * The Envoys reach serve's ADS over a Unix socket of their own in the state directory: no port
 * to expose, no TLS to set up, and the envoy identity (never a provider key), unlike the AI
 * extension's private socket.
 */
async function startEnvoys(runtime: RunningGateway, host: { state: StateDir; infrastructure: HostInfrastructure }): Promise<void> {
  host.infrastructure.start({ socket: await runtime.xds.listenEnvoySocket(host.state.envoySocket) });
}

/** The shared pipeline (gateway-runtime.ts) fed by the file provider watching `opts.config`. */
async function startFileRuntime(
  opts: ServeOptions,
  envoy: ServingOptions['envoy'],
  extra: Pick<GatewayRuntimeOptions, 'infrastructure' | 'extraMetrics' | 'onTranslated'>,
): Promise<RunningGateway> {
  const { config, limits, logger, aiExtension: _extension, infrastructure: _host, outlierEventLogs = [], aiWarmup: _warmup, ...servers } = opts;
  let ir: IR | undefined;
  const runtime = await startGatewayRuntime({
    ...servers,
    envoy,
    logger,
    provider: new FileProvider({ path: config, logger, ...(limits ? { limits } : {}) }),
    origin: { config },
    ...extra,
    onTranslated: (latest) => {
      ir = latest;
      extra.onTranslated?.(latest);
    },
  });
  const host = extra.infrastructure instanceof HostInfrastructure ? extra.infrastructure : undefined;
  if (outlierEventLogs.length === 0 && host === undefined) return runtime;
  const report = ejectionReporter({ logger: logger.child({ component: 'outlier-events' }), registry: runtime.metrics.registry, ir: () => ir });
  // The Envoys serve runs write their ejections where it follows them (src/infrastructure/host.ts).
  host?.onOutlierEvent(report);
  const tails = outlierEventLogs.map((log) => {
    const { path, ...from }: { path: string } & OutlierEventSource = typeof log === 'string' ? { path: log } : log;
    return new OutlierEventTail(path, (e) => report(e, from));
  });
  for (const t of tails) t.start();
  return {
    ...runtime,
    stop: async () => {
      for (const t of tails) t.stop();
      await runtime.stop();
    },
  };
}

/** The extension's ext_proc socket when it gets one (see ServeAiExtensionOptions.transport), else undefined: TCP. */
function extProcSocketOf(extensionOptions: ServeAiExtensionOptions, state: StateDir | undefined, runsEnvoys: boolean): string | undefined {
  const transport = extensionOptions.transport ?? (runsEnvoys ? 'unix' : 'tcp');
  return transport === 'unix' && state !== undefined ? state.extProcSocket : undefined;
}

/** What Envoy is told about the extension: its socket, or the TCP address it advertises. */
function extensionAddress(extensionOptions: ServeAiExtensionOptions, listener: { socket: string | undefined; port: number }): AiExtensionAddress {
  return listener.socket !== undefined ? { socket: listener.socket } : { host: extensionOptions.advertise ?? '127.0.0.1', port: listener.port };
}

async function serveInProcess(
  opts: ServeOptions,
  extensionOptions: false | ServeAiExtensionOptions,
  host: { state: StateDir; unlock: () => void; infrastructure: HostInfrastructure } | undefined,
): Promise<RunningServe> {
  const { logger } = opts;
  let extension: RunningAiExtension | undefined;
  let envoy = opts.envoy;
  if (extensionOptions !== false) {
    const socket = extProcSocketOf(extensionOptions, host?.state, host !== undefined);
    // Bound first: its address goes into the configuration Envoy receives.
    if (socket === undefined) await assertPortFree('ai-extension', extensionOptions.host ?? '127.0.0.1', extensionOptions.port);
    // Left behind by a serve that was killed; the lock says no live serve owns it.
    else rmSync(socket, { force: true });
    // Loaded only here: a serve whose extension runs in a child process, or not at all, does not carry its code.
    const { startAiExtension } = await import('../ai-extension/server.js');
    extension = await startAiExtension({
      port: extensionOptions.port,
      host: extensionOptions.host ?? '127.0.0.1',
      ...(socket !== undefined ? { socket } : {}),
      logger: logger.child({ component: 'ai-extension' }),
      ...(opts.envoy.otlp !== undefined ? { otlp: opts.envoy.otlp } : {}),
      ...(extensionOptions.limitsRedis !== undefined ? { limitsRedis: extensionOptions.limitsRedis } : {}),
    });
    envoy = { ...envoy, aiExtension: extensionAddress(extensionOptions, extension) };
  }
  let runtime: RunningGateway | undefined;
  const warmup = extension !== undefined && opts.aiWarmup !== false ? startWarmup(opts, extension.warmupKey, envoy, () => runtime, host?.infrastructure) : undefined;
  try {
    runtime = await startFileRuntime(opts, envoy, { ...(host ? { infrastructure: host.infrastructure } : {}), ...(warmup ? { onTranslated: (ir: IR) => warmup.update(ir) } : {}) });
  } catch (err) {
    warmup?.stop();
    await extension?.stop();
    throw err;
  }
  if (host) {
    try {
      await startEnvoys(runtime, host);
    } catch (err) {
      await extension?.stop();
      await runtime.stop();
      throw err;
    }
  }
  if (extension) {
    // Credentials come from this process's own ADS server over its private Unix socket, TLS or
    // not: streams on it are the ai-extension identity (src/xds/identity.ts), and the TCP port
    // never carries a key.
    try {
      extension.connect({ socket: await runtime.xds.privateSocket() });
    } catch (err) {
      await extension.stop();
      await runtime.stop();
      throw err;
    }
    registerAiExtensionMetrics(extension.metrics, runtime.metrics.registry);
    registerLimitMetrics(extension.limitMetrics, runtime.metrics.registry);
  }
  const running = extension;
  return {
    ...runtime,
    aiExtension: extension,
    aiExtensionProcess: undefined,
    hostInfrastructure: host?.infrastructure,
    async stop() {
      warmup?.stop();
      await host?.infrastructure.stop();
      await running?.stop();
      await runtime.stop();
      host?.unlock();
    },
  };
}

/**
 * The warm-up sender for the in-process extension. A Gateway run by the Host infrastructure is
 * reached at the address in its status; otherwise at the listener address, from this host.
 */
function startWarmup(opts: ServeOptions, key: string, envoy: ServingOptions['envoy'], runtime: () => RunningGateway | undefined, host?: HostInfrastructure): AiWarmup {
  const addressOf = (gateway: string): string => {
    const status = runtime()?.statuses().find((s) => s.kind === 'Gateway' && `${s.namespace}/${s.name}` === gateway);
    const placed = status !== undefined && 'addresses' in status ? status.addresses?.[0]?.value : undefined;
    return loopbackFor(placed ?? envoy.gatewayAddresses?.get(gateway) ?? envoy.listenerAddress ?? DEFAULT_ENVOY_OPTIONS.listenerAddress);
  };
  // The Envoys serve runs say how many worker threads to warm; an Envoy of yours is probed until its workers stop being new.
  const envoyAdminOf = host === undefined ? undefined : (gateway: string): string | undefined => host.views().find((v) => v.gateway === gateway)?.adminUrl;
  return new AiWarmup({ key, logger: opts.logger.child({ component: 'ai-warmup' }), addressOf, ...(envoyAdminOf !== undefined ? { envoyAdminOf } : {}), ...(opts.aiWarmup || {}) });
}

/**
 * serve with its AI extension in a process of its own: the extension first (its port or socket
 * goes into Envoy's configuration), adopted if one kept running across a crash of serve; then the
 * pipeline; then the Unix socket the extension reads credentials from, at the same path as before.
 */
async function serveWithExtensionProcess(opts: ServeOptions, child: AiExtensionChildOptions): Promise<RunningServe> {
  const { config, logger, aiExtension: extensionOptions, infrastructure: hostChoice } = opts;
  if (extensionOptions === false || extensionOptions === undefined) throw new Error('serve: no AI extension options');
  const state = openStateDir(child.stateDir ?? hostChoice?.stateDir ?? defaultStateDir(config));
  const unlock = lockStateDir(state);
  let extension: AiExtensionProcess | undefined;
  let runtime: RunningGateway | undefined;
  let warmup: AiWarmup | undefined;
  const infrastructure = hostChoice ? hostInfrastructure(hostChoice, state, logger) : undefined;
  try {
    const socket = extProcSocketOf(extensionOptions, state, infrastructure !== undefined);
    extension = await startAiExtensionProcess({
      state,
      port: extensionOptions.port,
      host: extensionOptions.host ?? '127.0.0.1',
      ...(socket !== undefined ? { socket } : {}),
      ...(child.command ? { command: child.command } : {}),
      ...(child.orphanGraceMs !== undefined ? { orphanGraceMs: child.orphanGraceMs } : {}),
      ...(child.logLevel ? { logLevel: child.logLevel } : {}),
      ...(opts.envoy.otlp !== undefined ? { otlp: opts.envoy.otlp } : {}),
      ...(extensionOptions.limitsRedis !== undefined ? { limitsRedis: extensionOptions.limitsRedis } : {}),
      logger: logger.child({ component: 'ai-extension' }),
    });
    const envoy = { ...opts.envoy, aiExtension: extensionAddress(extensionOptions, extension) };
    const running = extension;
    const started = opts.aiWarmup !== false ? startWarmup(opts, extension.warmupKey, envoy, () => runtime, infrastructure) : undefined;
    warmup = started;
    runtime = await startFileRuntime(opts, envoy, { extraMetrics: () => running.metrics(), ...(infrastructure ? { infrastructure } : {}), ...(started ? { onTranslated: (ir: IR) => started.update(ir) } : {}) });
    // Left behind by a serve that was killed; the lock says no live serve owns it.
    rmSync(state.socket, { force: true });
    await runtime.xds.listenUnix(state.socket);
    if (infrastructure) await startEnvoys(runtime, { state, infrastructure });
  } catch (err) {
    warmup?.stop();
    await infrastructure?.stop();
    await extension?.stop();
    await runtime?.stop();
    unlock();
    throw err;
  }
  const running = runtime;
  const extensionProcess = extension;
  logger.info({ stateDir: state.path, aiExtensionPid: extensionProcess.pid(), ...(extensionProcess.socket !== undefined ? { aiExtensionSocket: extensionProcess.socket } : { aiExtensionPort: extensionProcess.port }), adopted: extensionProcess.adopted }, 'serve: the AI extension runs in its own process');
  return {
    ...running,
    aiExtension: undefined,
    aiExtensionProcess: extensionProcess,
    hostInfrastructure: infrastructure,
    async stop() {
      warmup?.stop();
      await infrastructure?.stop();
      await extensionProcess.stop();
      await running.stop();
      rmSync(state.socket, { force: true });
      unlock();
    },
  };
}
