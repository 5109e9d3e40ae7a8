import { posix } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import type { XdsTarget } from '../ai-extension/credentials.js';
import { startAiExtension } from '../ai-extension/server.js';
import { DURATION_HINT, parseDuration } from '../api/duration.js';
import { formatProblem } from '../api/manifest.js';
import { removeExtensionRecord, writeExtensionRecord } from '../app/ai-extension-process.js';
import { controller, defaultLeaseNamespace } from '../app/controller.js';
import { DEFAULT_LOAD_REPORTING, type LoadReportingSettings, type RunningGateway } from '../app/gateway-runtime.js';
import { serve } from '../app/serve.js';
import { buildBootstrap } from '../envoy/bootstrap.js';
import { ACCESS_LOG_FORMATS, type AccessLogFormat } from '../envoy/access-log.js';
import { DEFAULT_ENVOY_OPTIONS } from '../envoy/options.js';
import { createLogger } from '../observability/logger.js';
import { runPipeline, translateReport } from '../pipeline.js';
import { FileProvider } from '../providers/file.js';
import { CONFIG_LIMIT_FLAGS, DEFAULT_CONFIG_LIMITS, formatBytes, type ConfigLimits } from '../providers/manifest-files.js';
import { CA_FILE, CERT_FILE, KEY_FILE, readXdsClientTls, readXdsServerTls, xdsChannelCredentials } from '../xds/tls.js';

const USAGE = `switchyard: Gateway API and AI Backends to Envoy, over xDS

Usage:
  switchyard serve --config PATH [--xds-port 18000] [--xds-host 0.0.0.0] [--metrics-port 9090]
                   [--metrics-host 0.0.0.0] [--listener-address 0.0.0.0] [--log-level info]
                   [--ai-extension-port 18001] [--ai-extension-address 127.0.0.1] [--no-ai-extension]
                   [--xds-tls-dir DIR] [--state-dir DIR] [--max-document-size 1.5Mi]
                   [--max-file-size 64Mi] [--max-config-size 128Mi] [--access-log json|off]
                   [--load-report-interval 2s] [--health-window 1m]
      Watch PATH (a file or directory of Kubernetes-style manifests), serve Envoy over ADS, and run
      the AI extension (ext_proc) that Envoy dials at --ai-extension-address:--ai-extension-port,
      as a process of its own that keeps serving if serve dies; a restarted serve adopts it through
      --state-dir (default: per config path, under $XDG_RUNTIME_DIR or a 0700 temp directory).
      A document, a file or the whole of PATH over its size limit is refused with an error naming
      it (sizes in bytes, or with Ki, Mi, Gi); what was served before keeps being served.
  switchyard ai-extension (--xds HOST:PORT [--xds-tls-dir DIR] | --xds-socket PATH) [--port 18001]
                          [--host 0.0.0.0] [--metrics-port 9091] [--log-level info] [--orphan-grace 10m]
      Run only the AI extension next to Envoy; provider keys come from the controller at --xds
      (over TLS with --xds-tls-dir: ca.crt verifies the controller, tls.crt/tls.key if present are
      the client certificate) and are kept while it is away. --orphan-grace: exit once neither the
      controller nor Envoy has been seen for that long (default: never).
  switchyard controller [--kubeconfig PATH] [--namespaces a,b] [--xds-port 18000] [--xds-host 0.0.0.0]
                        [--metrics-port 9090] [--metrics-host 0.0.0.0] [--listener-address 0.0.0.0]
                        [--ai-extension-address 127.0.0.1] [--ai-extension-port 18001]
                        [--lease-namespace NS] [--no-leader-election] [--xds-tls-dir DIR] [--log-level info]
                        [--access-log json|off] [--load-report-interval 2s] [--health-window 1m]
      Watch a Kubernetes API server (--kubeconfig, else $KUBECONFIG, the in-cluster service account,
      ~/.kube/config), serve Envoy over ADS; the replica holding the Lease writes status. The AI
      extension runs next to Envoy (switchyard ai-extension); --ai-extension-* say where Envoy dials it.
  switchyard translate -f PATH [-o json|yaml] [--access-log json|off] [--max-document-size ...] [--max-file-size ...]
                       [--max-config-size ...]
      Print what would be served (secrets redacted) and every object's status.
  switchyard bootstrap --xds HOST:PORT --node-id ID [--admin-port 9901] [--delta] [--xds-tls-dir DIR]
                       [--no-load-reporting] [-o json|yaml]
      Print an Envoy bootstrap that connects a stock Envoy to the controller; with --xds-tls-dir
      (as Envoy sees it) over mTLS: ca.crt verifies the controller, tls.crt/tls.key are Envoy's.

  --xds-tls-dir DIR on serve and controller serves xDS over TLS: DIR holds tls.crt and tls.key
  (like a kubernetes.io/tls Secret) and, optionally, ca.crt: client certificates are then
  required and verified against it (mTLS).
  --access-log json (default) makes every Gateway listener write one JSON line per request to
  Envoy's stdout: method, path (no query), response code and flags, route, Backend, the final
  attempt's member, priority and host, the attempt count, durations, request id; never a header
  that can carry a key. --access-log off writes none.
  --load-report-interval: how often each Envoy reports its per-endpoint load (LRS; the bootstrap
  enables it unless --no-load-reporting). --health-window: the sliding window over which Backend
  status counts each member's requests and errors and decides Degraded; status follows it at most
  every sixth of the window (10 s by default).
`;

class UsageError extends Error {}

function durationFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined) throw new UsageError(`${flag}: ${DURATION_HINT}, got "${value}"`);
  return ms;
}

function loadReporting(interval: string | undefined, window: string | undefined): LoadReportingSettings {
  const intervalMs = durationFlag(interval, '--load-report-interval') ?? DEFAULT_LOAD_REPORTING.intervalMs;
  const windowMs = durationFlag(window, '--health-window') ?? DEFAULT_LOAD_REPORTING.windowMs;
  if (intervalMs < 100) throw new UsageError(`--load-report-interval must be at least 100ms, got "${interval ?? ''}"`);
  if (windowMs < 2 * intervalMs) throw new UsageError(`--health-window must hold at least two load reports (twice --load-report-interval, ${intervalMs} ms), got "${window ?? ''}"`);
  return { intervalMs, windowMs, refreshMs: Math.max(intervalMs, Math.round(windowMs / 6)) };
}

function accessLog(value: string | undefined): AccessLogFormat {
  if (value === undefined) return DEFAULT_ENVOY_OPTIONS.accessLog;
  const known = ACCESS_LOG_FORMATS.find((f) => f === value);
  if (!known) throw new UsageError(`--access-log must be one of ${ACCESS_LOG_FORMATS.join(', ')}, got "${value}"`);
  return known;
}

function int(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`${flag} must be a port number (0-65535), got "${value}"`);
  return n;
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi)?$/;
const UNITS: Readonly<Record<string, number>> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 };

function size(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const m = SIZE.exec(value.trim());
  const bytes = m ? Math.floor(Number(m[1]) * (UNITS[m[2] ?? ''] ?? 1)) : Number.NaN;
  if (!Number.isFinite(bytes) || bytes <= 0) throw new UsageError(`${flag} is a size in bytes, or with Ki, Mi or Gi (e.g. 64Mi), got "${value}"`);
  return bytes;
}

const LIMIT_OPTIONS = {
  'max-document-size': { type: 'string' },
  'max-file-size': { type: 'string' },
  'max-config-size': { type: 'string' },
} as const;

/** The size limits of file mode from the flags (CONFIG_LIMIT_FLAGS), defaults for the rest. */
function configLimits(values: Partial<Record<keyof typeof LIMIT_OPTIONS, string>>): ConfigLimits {
  const limits: ConfigLimits = { ...DEFAULT_CONFIG_LIMITS };
  for (const key of Object.keys(CONFIG_LIMIT_FLAGS) as (keyof ConfigLimits)[]) {
    const flag = CONFIG_LIMIT_FLAGS[key];
    const bytes = size(values[flag.slice(2) as keyof typeof LIMIT_OPTIONS], flag);
    if (bytes !== undefined) limits[key] = bytes;
  }
  if (limits.documentBytes > limits.fileBytes || limits.fileBytes > limits.totalBytes) {
    throw new UsageError(
      `size limits must grow from document to file to configuration, got ${CONFIG_LIMIT_FLAGS.documentBytes} ${formatBytes(limits.documentBytes)}, ${CONFIG_LIMIT_FLAGS.fileBytes} ${formatBytes(limits.fileBytes)}, ${CONFIG_LIMIT_FLAGS.totalBytes} ${formatBytes(limits.totalBytes)}`,
    );
  }
  return limits;
}

function output(value: unknown, format: string | undefined): string {
  if (format === undefined || format === 'json') return `${JSON.stringify(value, null, 2)}\n`;
  if (format === 'yaml') return stringify(value, { lineWidth: 0, aliasDuplicateObjects: false });
  throw new UsageError(`-o must be json or yaml, got "${format}"`);
}

async function runServe(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      'xds-port': { type: 'string' },
      'xds-host': { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      'listener-address': { type: 'string' },
      'access-log': { type: 'string' },
      'load-report-interval': { type: 'string' },
      'health-window': { type: 'string' },
      'log-level': { type: 'string' },
      'ai-extension-port': { type: 'string' },
      'ai-extension-address': { type: 'string' },
      'no-ai-extension': { type: 'boolean' },
      'xds-tls-dir': { type: 'string' },
      ...LIMIT_OPTIONS,
      'state-dir': { type: 'string' },
    },
  });
  if (!values.config) throw new UsageError('serve needs --config PATH (a manifest file or a directory of them)');
  const limits = configLimits(values);
  const xdsTls = values['xds-tls-dir'] !== undefined ? readXdsServerTls(values['xds-tls-dir']) : undefined;
  const extensionPort = int(values['ai-extension-port'], '--ai-extension-port', 18001);
  const extensionAddress = values['ai-extension-address'] ?? '127.0.0.1';
  const level = logLevel(values['log-level']);
  const logger = createLogger({ level, name: 'switchyard' });
  const stateDir = values['state-dir'];
  const running = await serve({
    config: values.config,
    limits,
    xdsPort: int(values['xds-port'], '--xds-port', 18000),
    xdsHost: values['xds-host'] ?? '0.0.0.0',
    ...(xdsTls ? { xdsTls } : {}),
    metricsPort: int(values['metrics-port'], '--metrics-port', 9090),
    metricsHost: values['metrics-host'] ?? '0.0.0.0',
    envoy: {
      ...(values['listener-address'] ? { listenerAddress: values['listener-address'] } : {}),
      accessLog: accessLog(values['access-log']),
      // Without the in-process extension Envoy still needs to know where one runs.
      aiExtension: { host: extensionAddress, port: extensionPort },
    },
    loadReporting: loadReporting(values['load-report-interval'], values['health-window']),
    logger,
    // Bound on all interfaces when Envoy dials it from elsewhere. A process of its own, so that
    // Envoy keeps its AI routes while serve is down (src/app/ai-extension-process.ts).
    aiExtension: values['no-ai-extension']
      ? false
      : {
          port: extensionPort,
          host: extensionAddress === '127.0.0.1' ? '127.0.0.1' : '0.0.0.0',
          advertise: extensionAddress,
          child: { ...(stateDir !== undefined ? { stateDir } : {}), logLevel: level },
        },
  });
  await untilSignal(running, logger);
  return 0;
}

function hostPort(value: string | undefined, flag: string, what: string): { host: string; port: number } {
  const target = value ?? '';
  const sep = target.lastIndexOf(':');
  if (sep <= 0) throw new UsageError(`${flag} must be HOST:PORT (${what}), got "${target}"`);
  return { host: target.slice(0, sep).replace(/^\[|\]$/g, ''), port: int(target.slice(sep + 1), `${flag} port`, 0) };
}

async function runAiExtension(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      xds: { type: 'string' },
      'xds-socket': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      'log-level': { type: 'string' },
      'xds-tls-dir': { type: 'string' },
      'orphan-grace': { type: 'string' },
      'state-file': { type: 'string' },
    },
  });
  const socket = values['xds-socket'];
  if (socket !== undefined && (values.xds !== undefined || values['xds-tls-dir'] !== undefined)) {
    throw new UsageError('--xds-socket (serve\'s private Unix socket) excludes --xds and --xds-tls-dir');
  }
  let xds: XdsTarget;
  if (socket !== undefined) {
    xds = { socket };
  } else {
    const xdsAddress = hostPort(values.xds, '--xds', "the controller's xDS address, where provider keys come from");
    const tlsDir = values['xds-tls-dir'];
    xds = tlsDir !== undefined ? { ...xdsAddress, credentials: xdsChannelCredentials(readXdsClientTls(tlsDir)) } : xdsAddress;
  }
  const graceText = values['orphan-grace'];
  const orphanGraceMs = graceText === undefined ? undefined : parseDuration(graceText);
  if (graceText !== undefined && orphanGraceMs === undefined) throw new UsageError(`--orphan-grace: ${DURATION_HINT}, got "${graceText}"`);
  const host = values.host ?? '0.0.0.0';
  const logger = createLogger({ level: logLevel(values['log-level']), name: 'switchyard-ai-extension' });
  const running = await startAiExtension({
    port: int(values.port, '--port', 18001),
    host,
    xds,
    metricsPort: int(values['metrics-port'], '--metrics-port', 9091),
    metricsHost: values['metrics-host'] ?? '0.0.0.0',
    logger,
  });
  const stateFile = values['state-file'];
  if (stateFile !== undefined) {
    writeExtensionRecord(stateFile, { pid: process.pid, port: running.port, host, socket: socket ?? '', ...(running.metricsPort !== undefined ? { metricsPort: running.metricsPort } : {}) });
  }
  const stopping = untilSignal(running, logger);
  let orphanCheck: NodeJS.Timeout | undefined;
  const ended = new Promise<void>((resolve) => {
    if (orphanGraceMs === undefined) return;
    orphanCheck = setInterval(() => {
      const away = running.credentials.disconnectedForMs();
      const idle = running.idleForMs();
      if (away < orphanGraceMs || idle < orphanGraceMs) return;
      logger.warn({ controllerAwayMs: away, idleMs: idle }, 'ai-extension: neither the controller nor Envoy has been here for the orphan grace time; exiting');
      running.stop().then(resolve, resolve);
    }, Math.min(1_000, orphanGraceMs));
  });
  await Promise.race([stopping, ended]);
  clearInterval(orphanCheck);
  if (stateFile !== undefined) removeExtensionRecord(stateFile, process.pid);
  return 0;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

function logLevel(value: string | undefined): LogLevel {
  const level = value ?? 'info';
  const known = LOG_LEVELS.find((l) => l === level);
  if (!known) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  return known;
}

/** Serves until SIGINT or SIGTERM, then stops cleanly. */
function untilSignal(running: Pick<RunningGateway, 'stop'>, logger: ReturnType<typeof createLogger>): Promise<void> {
  return new Promise<void>((resolve) => {
    const shutdown = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      running.stop().then(resolve, resolve);
    };
    process.once('SIGINT', () => shutdown('SIGINT'));
    process.once('SIGTERM', () => shutdown('SIGTERM'));
  });
}

function namespaceList(value: string | undefined): string[] {
  if (value === undefined) return [];
  const names = value.split(',').map((n) => n.trim()).filter((n) => n !== '');
  const bad = names.filter((n) => !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(n) || n.length > 63);
  if (bad.length > 0) throw new UsageError(`--namespaces takes comma-separated namespace names; not a namespace name: ${bad.map((b) => `"${b}"`).join(', ')}`);
  return [...new Set(names)];
}

async function runController(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      kubeconfig: { type: 'string' },
      namespaces: { type: 'string' },
      'xds-port': { type: 'string' },
      'xds-host': { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      'listener-address': { type: 'string' },
      'access-log': { type: 'string' },
      'load-report-interval': { type: 'string' },
      'health-window': { type: 'string' },
      'lease-namespace': { type: 'string' },
      'no-leader-election': { type: 'boolean' },
      'ai-extension-address': { type: 'string' },
      'ai-extension-port': { type: 'string' },
      'log-level': { type: 'string' },
      'xds-tls-dir': { type: 'string' },
    },
  });
  const xdsTls = values['xds-tls-dir'] !== undefined ? readXdsServerTls(values['xds-tls-dir']) : undefined;
  const logger = createLogger({ level: logLevel(values['log-level']), name: 'switchyard' });
  const aiExtension = {
    host: values['ai-extension-address'] ?? DEFAULT_ENVOY_OPTIONS.aiExtension.host,
    port: int(values['ai-extension-port'], '--ai-extension-port', DEFAULT_ENVOY_OPTIONS.aiExtension.port),
  };
  const running = await controller({
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    namespaces: namespaceList(values.namespaces),
    xdsPort: int(values['xds-port'], '--xds-port', 18000),
    xdsHost: values['xds-host'] ?? '0.0.0.0',
    ...(xdsTls ? { xdsTls } : {}),
    metricsPort: int(values['metrics-port'], '--metrics-port', 9090),
    metricsHost: values['metrics-host'] ?? '0.0.0.0',
    envoy: { ...(values['listener-address'] ? { listenerAddress: values['listener-address'] } : {}), aiExtension, accessLog: accessLog(values['access-log']) },
    loadReporting: loadReporting(values['load-report-interval'], values['health-window']),
    leaderElection: values['no-leader-election'] ? false : { namespace: values['lease-namespace'] ?? defaultLeaseNamespace() },
    logger,
  });
  await untilSignal(running, logger);
  return 0;
}

async function runTranslate(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { file: { type: 'string', short: 'f' }, output: { type: 'string', short: 'o' }, 'access-log': { type: 'string' }, ...LIMIT_OPTIONS } });
  if (!values.file) throw new UsageError('translate needs -f PATH (a manifest file or a directory of them)');
  const provider = new FileProvider({ path: values.file, resyncIntervalMs: 0, limits: configLimits(values) });
  const snapshot = await provider.start();
  await provider.stop();
  const report = translateReport(runPipeline(snapshot.inputs, { accessLog: accessLog(values['access-log']) }));
  process.stdout.write(output(report, values.output));
  for (const p of snapshot.problems) process.stderr.write(`problem: ${formatProblem(p)}\n`);
  return snapshot.problems.length > 0 ? 1 : 0;
}

async function runBootstrap(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      xds: { type: 'string' },
      'node-id': { type: 'string' },
      'node-cluster': { type: 'string' },
      'admin-port': { type: 'string' },
      delta: { type: 'boolean' },
      'no-load-reporting': { type: 'boolean' },
      'xds-tls-dir': { type: 'string' },
      output: { type: 'string', short: 'o' },
    },
  });
  // Paths as Envoy sees them (often another machine or a container): not read here.
  const tlsDir = values['xds-tls-dir'];
  if (tlsDir === '') throw new UsageError('--xds-tls-dir must name a directory (as Envoy sees it)');

  const target = values.xds ?? '';
  const sep = target.lastIndexOf(':');
  if (sep <= 0) throw new UsageError(`bootstrap needs --xds HOST:PORT (the controller's xDS address), got "${target}"`);
  if (!values['node-id']) throw new UsageError('bootstrap needs --node-id ID (any name unique per Envoy)');
  const bootstrap = buildBootstrap({
    xds: { host: target.slice(0, sep).replace(/^\[|\]$/g, ''), port: int(target.slice(sep + 1), '--xds port', 18000) },
    nodeId: values['node-id'],
    ...(values['node-cluster'] ? { nodeCluster: values['node-cluster'] } : {}),
    adminPort: int(values['admin-port'], '--admin-port', 9901),
    delta: values.delta ?? false,
    loadReporting: values['no-load-reporting'] !== true,
    ...(tlsDir !== undefined ? { xdsTls: { caFile: posix.join(tlsDir, CA_FILE), certFile: posix.join(tlsDir, CERT_FILE), keyFile: posix.join(tlsDir, KEY_FILE) } } : {}),
  });
  process.stdout.write(output(bootstrap, values.output));
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await runServe(rest);
      case 'controller':
        return await runController(rest);
      case 'translate':
        return await runTranslate(rest);
      case 'bootstrap':
        return await runBootstrap(rest);
      case 'ai-extension':
        return await runAiExtension(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof UsageError || (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
      process.stderr.write(`switchyard: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
}

// Run when executed directly (tsx src/cli/main.ts); bin/switchyard.js imports main() instead.
if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`switchyard: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
