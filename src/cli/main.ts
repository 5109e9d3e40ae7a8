import { existsSync, readFileSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import type { XdsTarget } from '../ai-extension/credentials.js';
import { DURATION_HINT, parseDuration } from '../api/duration.js';
import { readWarmupKey, removeExtensionRecord, writeExtensionRecord } from '../app/ai-extension-process.js';
import type { LoadReportingSettings, RunningGateway } from '../app/gateway-runtime.js';
import { AddressInUseError, assertPortFree, type ServerRole } from '../app/ports.js';
import type { HostInfrastructureChoice } from '../app/serve.js';
import type { AccessLogFormat } from '../envoy/access-log.js';
import { parseOtlpEndpoint, type OtlpEndpoint } from '../envoy/tracing.js';
import { DEFAULT_AI_EXTENSION_ADDRESS, DEFAULT_ENVOY_OPTIONS } from '../envoy/options.js';
import { createLogger } from '../observability/logger.js';
import { startIdleCompaction } from '../observability/idle-compaction.js';
import type { ConfigLimits } from '../providers/manifest-files.js';
import { CA_FILE, CERT_FILE, KEY_FILE, clientCertificateRole, readXdsClientTls, readXdsServerTls, xdsChannelCredentials } from '../xds/tls.js';
import { closest, HelpRequested, parseFlags, UsageError } from './flags.js';
import { DRILL_USAGE } from './drill-usage.js';
import { badConditions } from './status-view.js';
import { formatVersion, versionInfo } from './version.js';

/** Each command's usage: printed by `switchyard CMD --help` and after a usage error of CMD. */
const COMMAND_USAGE: Readonly<Record<string, string>> = {
  serve: `  switchyard serve --config PATH [--xds-port 18000] [--xds-host 0.0.0.0] [--metrics-port 9090]
                   [--metrics-host 0.0.0.0] [--listener-address 0.0.0.0] [--log-level info]
                   [--ai-extension-port 18001] [--ai-extension-address 127.0.0.1] [--no-ai-extension]
                   [--xds-tls-dir DIR] [--state-dir DIR] [--max-document-size 1.5Mi]
                   [--max-file-size 64Mi] [--max-config-size 128Mi] [--access-log json|off]
                   [--infrastructure host|none | --no-envoy] [--envoy-path PATH] [--envoy-concurrency N]
                   [--drain-time 60s] [--load-report-interval 2s] [--health-window 1m] [--otlp-endpoint URL]
                   [--limits-redis redis://HOST:PORT] [--no-ai-warmup]
      Watch PATH (a file or directory of Kubernetes-style manifests), serve Envoy over ADS, and run
      the AI extension (ext_proc) as a process of its own that keeps serving if serve dies; a
      restarted serve adopts it through --state-dir (default: per config path, under
      $XDG_RUNTIME_DIR or a 0700 temp directory). With the Envoys serve runs, they reach the
      extension over a Unix socket in that directory (no TCP port: its answers carry provider
      keys); with --no-envoy, or when --ai-extension-address or --ai-extension-port is given,
      Envoy dials it at --ai-extension-address:--ai-extension-port.
      A document, a file or the whole of PATH over its size limit is refused with an error naming
      it (sizes in bytes, or with Ki, Mi, Gi); what was served before keeps being served.
      --infrastructure host (the default when an Envoy binary is found: --envoy-path, else
      .toolchain/bin/envoy, else envoy on PATH) runs one Envoy per Gateway, each on a loopback
      address of its own (spec.addresses in 127.0.0.0/8, else 127.0.10.1 upwards, kept across
      restarts), restarted when it exits; its address is in the Gateway's status.addresses and
      its admin URL in /statusz. --no-envoy (--infrastructure none) leaves Envoy to you.
      An Envoy serve stops (serve stops, its Gateway is gone or moves) drains first: its listeners
      stop accepting at once, requests in flight get up to --drain-time (default 60s, 0s: none) to
      end, then it gets SIGTERM.
      --xds-tls-dir DIR serves xDS over TLS: DIR holds tls.crt and tls.key (like a kubernetes.io/tls
      Secret) and, optionally, ca.crt: client certificates are then required and verified (mTLS).
      --no-ai-warmup: do not send the warm-up requests that keep Envoy connected to every member
      of AI Backends whose attempts the extension may answer itself (skips, drills), after each
      configuration and every 20 minutes; without them such a skip to a member Envoy has no
      connection to waits for Envoy's connect timeout (5 s).
`,
  'ai-extension': `  switchyard ai-extension (--xds HOST:PORT [--xds-tls-dir DIR] | --xds-socket PATH)
                          [--port 18001 [--host 0.0.0.0] | --listen-socket PATH] [--metrics-port 9091]
                          [--log-level info] [--orphan-grace 10m]
                          [--otlp-endpoint URL] [--limits-redis redis://HOST:PORT] [--warmup-key-file PATH]
                          [--warmup-envoy-admin http://127.0.0.1:19000 | --warmup-envoys-dir DIR]
                          [--drain-envoy-admin http://127.0.0.1:19000 [--drain-wait 60s]]
      Run only the AI extension next to Envoy; provider keys come from the controller at --xds,
      which sends them only over mTLS to a client certificate of role ai-extension (URI SAN
      spiffe://switchyard.dev/role/ai-extension): --xds-tls-dir holds ca.crt (verifies the
      controller) and that certificate as tls.crt/tls.key; they are kept while it is away.
      --listen-socket: serve ext_proc on this Unix socket (a free path) instead of TCP; Envoy must
      run as a user who may connect to it (what serve does with the Envoys it runs). --orphan-grace: exit once neither the
      controller nor Envoy has been seen for that long (default: never). --limits-redis: the Redis
      where every extension (every Envoy replica) shares members' per-minute limit counts (default:
      counted in this process only); while it is unreachable limits are not enforced (fail open).
      --warmup-key-file: the key serve signs its warm-up requests with (serve passes it to the
      extension it runs; default: a random key, so only an extension inside serve is warmed).
      --warmup-envoy-admin: the admin API of the Envoy beside this extension (same pod): the
      extension then warms that Envoy's AI members itself, as serve does for its own, with
      requests signed by its own key; what to warm is read from the admin API every 15 s.
      --warmup-envoys-dir: the same for every Envoy \`controller --infrastructure host\` runs on this
      machine: DIR is the envoy/ folder of its --state-dir (each Envoy's admin address is there).
      --drain-envoy-admin URL [--drain-wait 60s]: GET /envoy/drained on the metrics port waits (at
      most --drain-wait) until that Envoy's listeners are stopped and nothing is in flight: a data
      plane pod's Envoy container waits there in its preStop while \`switchyard envoy-drain\` drains it.
`,
  controller: `  switchyard controller [--kubeconfig PATH] [--namespaces a,b] [--xds-port 18000] [--xds-host 0.0.0.0]
                        [--metrics-port 9090] [--metrics-host 0.0.0.0] [--listener-address 0.0.0.0]
                        [--ai-extension-address 127.0.0.1] [--ai-extension-port 18001]
                        [--lease-namespace NS] [--no-leader-election] [--xds-tls-dir DIR] [--log-level info]
                        [--access-log json|off] [--xds-tls-secrets PREFIX --xds-tls-dns NAMES]
                        [--infrastructure none|host] [--envoy-path PATH] [--envoy-concurrency N] [--state-dir DIR]
                        [--drain-time 60s] [--data-plane FILE] [--load-report-interval 2s] [--health-window 1m]
                        [--otlp-endpoint URL]
      Watch a Kubernetes API server (--kubeconfig, else $KUBECONFIG, the in-cluster service account,
      ~/.kube/config), serve Envoy over ADS; the replica holding the Lease writes status and Events
      (with --no-leader-election this replica writes them: run only one). The AI extension runs next
      to Envoy (switchyard ai-extension); --ai-extension-* say where Envoy dials it. --xds-tls-dir as
      for serve; --xds-tls-secrets PREFIX: the controller issues and renews the CA and a certificate
      per role itself, in Secrets PREFIX-{ca,controller,envoy,ai-extension} of its namespace, its
      own naming NAMES (--xds-tls-dns). --infrastructure host runs one Envoy per Gateway on this
      machine, as serve does (default none; each drains for up to --drain-time before it stops);
      they reach the AI extension on STATE_DIR/ext-proc.sock (0700 directory, no TCP port; its
      answers carry provider keys) unless --ai-extension-* are given: run it as the same user with
      \`switchyard ai-extension --xds-socket STATE_DIR/ads.sock --listen-socket STATE_DIR/ext-proc.sock
      --warmup-envoys-dir STATE_DIR/envoy\` (the controller logs the line). --data-plane FILE (JSON: namespace, xds, envoy,
      aiExtension; the chart writes it): the leader creates an Envoy Deployment, Service,
      ServiceAccount and ConfigMap per Gateway, and Gateway status.addresses come from that Service.
`,
  certs: `  switchyard certs --out DIR [--dns NAMES]
      Issue (or renew, when in the last third of their lifetime) an xDS CA and one certificate per
      role in DIR/{ca,controller,envoy,ai-extension}, each laid out for --xds-tls-dir; NAMES
      (comma-separated, default localhost) are the names clients dial the controller by.
`,
  translate: `  switchyard translate -f PATH [-o json|yaml] [--allow-problems] [--access-log json|off]
                       [--max-document-size ...] [--max-file-size ...] [--max-config-size ...]
      Print what would be served (secrets redacted) and every object's status. Exits 1, naming
      them on stderr, when an object has a condition that is False or the configuration has
      problems; --allow-problems exits 0 all the same.
`,
  status: `  switchyard status (-f PATH | --from http://HOST:9090 | --kubeconfig PATH [--namespaces a,b])
                    [-o table|json|yaml]
      Every Gateway, HTTPRoute and Backend with its conditions; for Backends, each priority and
      member (usable, or why not). -f translates PATH as translate does; --from reads a running
      serve or controller's /statusz (its --metrics-port); --kubeconfig reads .status from the API
      server (all namespaces, or --namespaces a,b).
`,
  drill: DRILL_USAGE,
  bootstrap: `  switchyard bootstrap --xds HOST:PORT --node-id ID [--gateway NS/NAME] [--admin-port 9901] [--delta]
                       [--xds-tls-dir DIR] [--no-load-reporting] [-o json|yaml]
      Print an Envoy bootstrap that connects a stock Envoy to the controller; with --xds-tls-dir
      (as Envoy sees it) over mTLS: ca.crt verifies the controller, tls.crt/tls.key are Envoy's.
      --gateway: this Envoy is the data plane of that one Gateway and gets only its configuration;
      without it, it serves every Gateway (a port two Gateways use goes to the older one).
`,
  'envoy-drain': `  switchyard envoy-drain --admin http://127.0.0.1:19000 [--accept-time 0s] [--drain-time 60s]
      Drain the Envoy whose admin API is at --admin before it is stopped (a data plane pod's
      preStop runs it; the Envoy image has no HTTP client): every connection is told to close at
      its next response, listeners keep accepting for --accept-time (while a load balancer stops
      sending here) and then stop, and requests in flight get up to --drain-time to end. Exits 0
      once none is left (or Envoy is gone), 1 when the drain time ran out first.
`,
  'drain-sidecar': `  switchyard drain-sidecar --admin http://127.0.0.1:19000 [--port 19002] [--host 0.0.0.0]
                           [--drain-wait 60s] [--log-level info]
      Run beside an Envoy whose pod has no AI extension (where there is one, the extension does
      this), until SIGTERM: GET /envoy/drained on --port waits (at most --drain-wait) until the
      Envoy at --admin has stopped its listeners and has nothing in flight, and starts nothing;
      /healthz and /readyz answer the probes. The pod's Envoy container waits on /envoy/drained in
      its preStop while this container's preStop runs \`switchyard envoy-drain\`, so Envoy gets
      SIGTERM once its requests in flight have ended. It holds no key and reaches no controller.
`,
  version: `  switchyard version [-o json|yaml]   (also: switchyard --version)
      Print Switchyard's version, the Node version it runs on and the Envoy version it expects.
`,
};

const USAGE = `switchyard: Gateway API and AI Backends to Envoy, over xDS

Usage:
${Object.values(COMMAND_USAGE).join('')}
  --xds-tls-dir DIR on serve and controller serves xDS over TLS: DIR holds tls.crt and tls.key
  (like a kubernetes.io/tls Secret) and, optionally, ca.crt: client certificates are then
  required and verified against it (mTLS), and each stream's identity is the role in its
  certificate's URI SAN (spiffe://switchyard.dev/role/{controller,envoy,ai-extension}); provider
  keys go to the ai-extension role only.
  --access-log json (default) makes every Gateway listener write one JSON line per request to
  Envoy's stdout: method, path (no query), response code and flags, route, Backend, the final
  attempt's member, priority and host, the attempt count, durations, request id; never a header
  that can carry a key. --access-log off writes none.
  --otlp-endpoint URL (serve, controller, ai-extension; default: off) turns tracing on: every
  Gateway listener's Envoy and the AI extension send OpenTelemetry spans over OTLP/gRPC to URL
  (http://HOST:4317, or https:// for TLS verified against the system CAs): Envoy one span per
  request and per attempt, the extension one GenAI span per attempt (member, priority, models,
  tokens, failure cause), all in the request's trace. No header or key is ever put in a span.
  --load-report-interval: how often each Envoy reports its per-endpoint load (LRS; the bootstrap
  enables it unless --no-load-reporting). --health-window: the sliding window over which Backend
  status counts each member's requests and errors and decides Degraded; status follows it at most
  every sixth of the window (10 s by default).

Run "switchyard COMMAND --help" for one command's usage.
`;

function commandUsage(command: string): string {
  const usage = COMMAND_USAGE[command];
  return usage === undefined ? USAGE : `Usage:\n${usage}`;
}

/** The synopsis of a command (its usage without the description), shown after a usage error. */
function commandSynopsis(command: string): string {
  const usage = COMMAND_USAGE[command] ?? '';
  const lines = usage.split('\n');
  // Descriptions are indented six spaces; a synopsis' continuation lines, more.
  const end = lines.findIndex((l) => /^ {6}\S/.test(l));
  return `Usage:\n${lines.slice(0, end < 0 ? lines.length : end).join('\n')}\n`;
}

function durationFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined) throw new UsageError(`${flag}: ${DURATION_HINT}, got "${value}"`);
  return ms;
}

async function loadReporting(interval: string | undefined, window: string | undefined): Promise<LoadReportingSettings> {
  const { DEFAULT_LOAD_REPORTING } = await import('../app/gateway-runtime.js');
  const intervalMs = durationFlag(interval, '--load-report-interval') ?? DEFAULT_LOAD_REPORTING.intervalMs;
  const windowMs = durationFlag(window, '--health-window') ?? DEFAULT_LOAD_REPORTING.windowMs;
  if (intervalMs < 100) throw new UsageError(`--load-report-interval must be at least 100ms, got "${interval ?? ''}"`);
  if (windowMs < 2 * intervalMs) throw new UsageError(`--health-window must hold at least two load reports (twice --load-report-interval, ${intervalMs} ms), got "${window ?? ''}"`);
  return { intervalMs, windowMs, refreshMs: Math.max(intervalMs, Math.round(windowMs / 6)) };
}

async function accessLog(value: string | undefined): Promise<AccessLogFormat> {
  if (value === undefined) return DEFAULT_ENVOY_OPTIONS.accessLog;
  const { ACCESS_LOG_FORMATS } = await import('../envoy/access-log.js');
  const known = ACCESS_LOG_FORMATS.find((f) => f === value);
  if (!known) throw new UsageError(`--access-log must be one of ${ACCESS_LOG_FORMATS.join(', ')}, got "${value}"`);
  return known;
}

/** --limits-redis: where the AI extensions share member limit counts. */
function limitsRedisUrl(value: string | undefined): string | undefined {
  if (value !== undefined && !/^redis:\/\/[^/\s]+/.test(value)) throw new UsageError(`--limits-redis: give redis://HOST:PORT, e.g. redis://127.0.0.1:6379, got "${value}"`);
  return value;
}

function otlpEndpoint(value: string | undefined): OtlpEndpoint | undefined {
  if (value === undefined) return undefined;
  const parsed = parseOtlpEndpoint(value);
  if ('error' in parsed) throw new UsageError(parsed.error);
  return parsed;
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
async function configLimits(values: Partial<Record<keyof typeof LIMIT_OPTIONS, string>>): Promise<ConfigLimits> {
  const { CONFIG_LIMIT_FLAGS, DEFAULT_CONFIG_LIMITS, formatBytes } = await import('../providers/manifest-files.js');
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

async function output(value: unknown, format: string | undefined): Promise<string> {
  if (format === undefined || format === 'json') return `${JSON.stringify(value, null, 2)}\n`;
  if (format === 'yaml') return (await import('yaml')).stringify(value, { lineWidth: 0, aliasDuplicateObjects: false });
  throw new UsageError(`-o must be json or yaml, got "${format}"`);
}

async function runServe(args: string[]): Promise<number> {
  const { values } = parseFlags('serve', {
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
      'otlp-endpoint': { type: 'string' },
      'limits-redis': { type: 'string' },
      'log-level': { type: 'string' },
      'ai-extension-port': { type: 'string' },
      'ai-extension-address': { type: 'string' },
      'no-ai-extension': { type: 'boolean' },
      'no-ai-warmup': { type: 'boolean' },
      'xds-tls-dir': { type: 'string' },
      ...LIMIT_OPTIONS,
      'state-dir': { type: 'string' },
      ...INFRASTRUCTURE_OPTIONS,
    },
  });
  if (!values.config) throw new UsageError('serve needs --config PATH (a manifest file or a directory of them)');
  const limits = await configLimits(values);
  const xdsTls = values['xds-tls-dir'] !== undefined ? readXdsServerTls(values['xds-tls-dir']) : undefined;
  const extensionPort = int(values['ai-extension-port'], '--ai-extension-port', 18001);
  const extensionAddress = values['ai-extension-address'] ?? '127.0.0.1';
  // An address asked for is one an Envoy elsewhere dials: TCP even with the Envoys serve runs.
  const extensionOnTcp = values['ai-extension-port'] !== undefined || values['ai-extension-address'] !== undefined;
  const level = logLevel(values['log-level']);
  const logger = createLogger({ level, name: 'switchyard' });
  const signals = watchSignals(logger);
  const stateDir = values['state-dir'];
  const infrastructure = await infrastructureChoice(values, 'auto', logger);
  const otlp = otlpEndpoint(values['otlp-endpoint']);
  const limitsRedis = limitsRedisUrl(values['limits-redis']);
  const { serve } = await import('../app/serve.js');
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
      accessLog: await accessLog(values['access-log']),
      ...(otlp !== undefined ? { otlp } : {}),
      // Without the in-process extension Envoy still needs to know where one runs.
      aiExtension: { host: extensionAddress, port: extensionPort },
    },
    loadReporting: await loadReporting(values['load-report-interval'], values['health-window']),
    logger,
    // Bound on all interfaces when Envoy dials it from elsewhere. A process of its own, so that
    // Envoy keeps its AI routes while serve is down (src/app/ai-extension-process.ts).
    aiExtension: values['no-ai-extension']
      ? false
      : {
          port: extensionPort,
          host: extensionAddress === '127.0.0.1' ? '127.0.0.1' : '0.0.0.0',
          advertise: extensionAddress,
          ...(extensionOnTcp ? { transport: 'tcp' as const } : {}),
          child: { ...(stateDir !== undefined ? { stateDir } : {}), logLevel: level },
          ...(limitsRedis !== undefined ? { limitsRedis } : {}),
        },
    ...(values['no-ai-warmup'] ? { aiWarmup: false as const } : {}),
    ...(infrastructure ? { infrastructure: { ...infrastructure, ...(stateDir !== undefined ? { stateDir } : {}) } } : {}),
  });
  await signals.until(running);
  return 0;
}

const INFRASTRUCTURE_OPTIONS = {
  infrastructure: { type: 'string' },
  'no-envoy': { type: 'boolean' },
  'envoy-path': { type: 'string' },
  'envoy-concurrency': { type: 'string' },
  'drain-time': { type: 'string' },
} as const;

/**
 * Whether serve runs the Envoys: `host` when asked (an error naming --envoy-path when no binary is
 * found), `none` when asked; by default (`auto`) host when a binary is found, else none, said in the log.
 */
async function infrastructureChoice(
  values: { infrastructure?: string | undefined; 'no-envoy'?: boolean | undefined; 'envoy-path'?: string | undefined; 'envoy-concurrency'?: string | undefined; 'drain-time'?: string | undefined },
  fallback: 'auto' | 'none',
  logger: ReturnType<typeof createLogger>,
): Promise<HostInfrastructureChoice | undefined> {
  const asked = values.infrastructure;
  if (asked !== undefined && asked !== 'host' && asked !== 'none') throw new UsageError(`--infrastructure must be host or none, got "${asked}"`);
  if (values['no-envoy'] && asked === 'host') throw new UsageError('--no-envoy contradicts --infrastructure host: give one of them');
  const mode = values['no-envoy'] ? 'none' : (asked ?? (values['envoy-path'] !== undefined ? 'host' : fallback));
  if (mode === 'none') return undefined;
  const { ENVOY_SEARCH, findEnvoyBinary } = await import('../infrastructure/host.js');
  const concurrencyText = values['envoy-concurrency'];
  const concurrency = concurrencyText === undefined ? undefined : Number(concurrencyText);
  if (concurrency !== undefined && (!Number.isInteger(concurrency) || concurrency < 1)) throw new UsageError(`--envoy-concurrency must be a whole number of worker threads (1 or more), got "${concurrencyText}"`);
  let envoyPath: string | undefined;
  try {
    envoyPath = findEnvoyBinary(values['envoy-path']);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  if (envoyPath === undefined) {
    if (mode === 'host') throw new UsageError(`--infrastructure host needs an Envoy binary and found none (${ENVOY_SEARCH.join(', ')}): pass --envoy-path PATH, or run scripts/ensure-envoy.sh`);
    logger.info(`no Envoy binary found (${ENVOY_SEARCH.join(', ')}): Envoy is left to you (switchyard bootstrap); pass --envoy-path to have serve run one per Gateway`);
    return undefined;
  }
  const drainTimeMs = durationFlag(values['drain-time'], '--drain-time');
  return { kind: 'host', envoyPath, ...(concurrency !== undefined ? { concurrency } : {}), ...(drainTimeMs !== undefined ? { drainTimeMs } : {}) };
}

function hostPort(value: string | undefined, flag: string, what: string): { host: string; port: number } {
  const target = value ?? '';
  const sep = target.lastIndexOf(':');
  if (sep <= 0) throw new UsageError(`${flag} must be HOST:PORT (${what}), got "${target}"`);
  return { host: target.slice(0, sep).replace(/^\[|\]$/g, ''), port: int(target.slice(sep + 1), `${flag} port`, 0) };
}

async function runAiExtension(args: string[]): Promise<number> {
  const { values } = parseFlags('ai-extension', {
    args,
    options: {
      xds: { type: 'string' },
      'xds-socket': { type: 'string' },
      'listen-socket': { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      'log-level': { type: 'string' },
      'xds-tls-dir': { type: 'string' },
      'orphan-grace': { type: 'string' },
      'state-file': { type: 'string' },
      'otlp-endpoint': { type: 'string' },
      'limits-redis': { type: 'string' },
      'warmup-key-file': { type: 'string' },
      'warmup-envoy-admin': { type: 'string' },
      'warmup-envoys-dir': { type: 'string' },
      'drain-envoy-admin': { type: 'string' },
      'drain-wait': { type: 'string' },
    },
  });
  const socket = values['xds-socket'];
  const drainAdmin = values['drain-envoy-admin'];
  if (drainAdmin !== undefined && !/^http:\/\/[^/\s]+$/.test(drainAdmin)) {
    throw new UsageError(`--drain-envoy-admin ${drainAdmin}: give the admin address of the Envoy beside this extension as http://HOST:PORT (no path), e.g. http://127.0.0.1:19000`);
  }
  const drainWaitMs = durationFlag(values['drain-wait'], '--drain-wait');
  if (drainWaitMs !== undefined && drainAdmin === undefined) throw new UsageError('--drain-wait needs --drain-envoy-admin (the Envoy whose drain /envoy/drained waits for)');
  const envoyAdmin = values['warmup-envoy-admin'];
  if (envoyAdmin !== undefined && !/^http:\/\/[^/\s]+$/.test(envoyAdmin)) {
    throw new UsageError(`--warmup-envoy-admin ${envoyAdmin}: give the admin address of the Envoy beside this extension as http://HOST:PORT (no path), e.g. http://127.0.0.1:19000`);
  }
  const envoysDir = values['warmup-envoys-dir'];
  if (envoysDir !== undefined && envoyAdmin !== undefined) throw new UsageError('--warmup-envoys-dir (every Envoy a controller runs here) excludes --warmup-envoy-admin (one Envoy); give one of them');
  if (envoysDir !== undefined && !isDirectory(envoysDir)) {
    throw new UsageError(`--warmup-envoys-dir ${envoysDir}: no such directory; give the envoy/ folder of the state directory of \`switchyard controller --infrastructure host\` (its --state-dir)`);
  }
  if (socket !== undefined && (values.xds !== undefined || values['xds-tls-dir'] !== undefined)) {
    throw new UsageError('--xds-socket (serve\'s private Unix socket) excludes --xds and --xds-tls-dir');
  }
  let xds: XdsTarget;
  if (socket !== undefined) {
    xds = { socket };
  } else {
    const xdsAddress = hostPort(values.xds, '--xds', "the controller's xDS address, where provider keys come from");
    const tlsDir = values['xds-tls-dir'];
    const tls = tlsDir !== undefined ? readXdsClientTls(tlsDir) : undefined;
    const role = tls ? clientCertificateRole(tls) : undefined;
    xds = tls ? { ...xdsAddress, credentials: xdsChannelCredentials(tls), ...(role ? { certificateRole: role } : {}) } : xdsAddress;
  }
  const graceText = values['orphan-grace'];
  const orphanGraceMs = graceText === undefined ? undefined : parseDuration(graceText);
  if (graceText !== undefined && orphanGraceMs === undefined) throw new UsageError(`--orphan-grace: ${DURATION_HINT}, got "${graceText}"`);
  const listenSocket = values['listen-socket'];
  if (listenSocket !== undefined && (values.port !== undefined || values.host !== undefined)) {
    throw new UsageError('--listen-socket (ext_proc on a Unix socket) excludes --port and --host (ext_proc on TCP); give one of them');
  }
  const host = values.host ?? '0.0.0.0';
  const logger = createLogger({ level: logLevel(values['log-level']), name: 'switchyard-ai-extension' });
  const signals = watchSignals(logger);
  const port = int(values.port, '--port', 18001);
  const metricsPort = int(values['metrics-port'], '--metrics-port', 9091);
  const metricsHost = values['metrics-host'] ?? '0.0.0.0';
  if (listenSocket === undefined) await assertPortFree('ai-extension', host, port);
  else if (existsSync(listenSocket)) throw new UsageError(`--listen-socket ${listenSocket}: the path exists; remove it if no extension serves there, or give another path`);
  await assertPortFree('metrics', metricsHost, metricsPort);
  const otlp = otlpEndpoint(values['otlp-endpoint']);
  const limitsRedis = limitsRedisUrl(values['limits-redis']);
  const { startAiExtension } = await import('../ai-extension/server.js');
  const warmupKeyFile = values['warmup-key-file'];
  const warmupKey = warmupKeyFile === undefined ? undefined : readWarmupKey(warmupKeyFile);
  const routes = drainAdmin === undefined ? undefined : await envoyDrainedRoute(drainAdmin, drainWaitMs, logger);
  const running = await startAiExtension({ port, host, ...(listenSocket !== undefined ? { socket: listenSocket } : {}), xds, metricsPort, metricsHost, logger, ...(otlp !== undefined ? { otlp } : {}), ...(limitsRedis !== undefined ? { limitsRedis } : {}), ...(warmupKey !== undefined ? { warmupKey } : {}), ...(routes !== undefined ? { routes } : {}) });
  const stateFile = values['state-file'];
  if (stateFile !== undefined) {
    writeExtensionRecord(stateFile, { pid: process.pid, port: running.port, host, socket: socket ?? '', ...(listenSocket !== undefined ? { listenSocket } : {}), ...(running.metricsPort !== undefined ? { metricsPort: running.metricsPort } : {}) });
  }
  const besideEnvoys = envoyAdmin !== undefined ? { adminUrl: envoyAdmin } : envoysDir !== undefined ? { adminDir: envoysDir } : undefined;
  const beside = besideEnvoys === undefined ? undefined : (await import('../app/ai-warmup.js')).warmupBesideEnvoy({ ...besideEnvoys, key: running.warmupKey, logger: logger.child({ component: 'ai-warmup' }) });
  const stopping = signals.until(running);
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
  beside?.stop();
  clearInterval(orphanCheck);
  if (stateFile !== undefined) removeExtensionRecord(stateFile, process.pid);
  return 0;
}

/**
 * GET /envoy/drained on the extension's metrics port (or the drain sidecar's port): waits until
 * the Envoy beside it has drained (listeners stopped, nothing in flight) or is gone, at most
 * `waitMs`. It starts nothing, so whoever reaches the port can only wait: the Envoy container's
 * preStop waits here while this container's preStop runs `switchyard envoy-drain`
 * (src/infrastructure/data-plane-objects.ts).
 */
async function envoyDrainedRoute(adminUrl: string, waitMs: number | undefined, logger: ReturnType<typeof createLogger>): Promise<Map<string, () => Promise<{ status: number; body: string }>>> {
  const { DEFAULT_DRAIN_TIMEOUT_MS, waitDrained } = await import('../infrastructure/envoy-drain.js');
  const maxMs = waitMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
  return new Map([
    ['/envoy/drained', async () => {
      const started = Date.now();
      const how = await waitDrained(adminUrl, maxMs);
      logger.info({ envoyAdmin: adminUrl, waitedMs: Date.now() - started, how }, 'waited for the Envoy beside this container to drain');
      return { status: 200, body: `${how}\n` };
    }],
  ]);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

function logLevel(value: string | undefined): LogLevel {
  const level = value ?? 'info';
  const known = LOG_LEVELS.find((l) => l === level);
  if (!known) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  return known;
}

/**
 * Listens for SIGINT and SIGTERM from before a command starts serving: a signal that arrives
 * while it starts (after its first log lines, say) would otherwise find no handler and kill the
 * process outright. `until(running)` serves until a signal, then stops cleanly; a signal that came
 * during start-up stops it as soon as it is up.
 */
function watchSignals(logger: ReturnType<typeof createLogger>): { until(running: Pick<RunningGateway, 'stop'> & Partial<Pick<RunningGateway, 'settled'>>): Promise<void> } {
  let received: string | undefined;
  let onSignal: ((signal: string) => void) | undefined;
  const take = (signal: string): void => {
    if (received !== undefined) {
      // A second signal while stopping (a wrapper such as tsx or a supervisor relays the one its
      // process group got too): the handlers stay, so it cannot kill the process in the middle of
      // draining its Envoys (which would leave them running); SIGKILL stops it at once.
      logger.warn({ signal, stoppingOn: received }, 'already shutting down (draining Envoys); SIGKILL stops at once, without the drain');
      return;
    }
    received = signal;
    onSignal?.(signal);
  };
  process.on('SIGINT', () => take('SIGINT'));
  process.on('SIGTERM', () => take('SIGTERM'));
  return {
    until: (running) =>
      new Promise<void>((resolve) => {
        // While serving, not while starting: a start is all work, never idle.
        const compaction = startIdleCompaction(logger.child({ component: 'memory' }));
        let stopping = false;
        void running.settled?.then(() => {
          if (!stopping) compaction.afterStart();
        });
        const shutdown = (signal: string): void => {
          stopping = true;
          compaction.stop();
          logger.info({ signal }, 'shutting down');
          running.stop().then(resolve, resolve);
        };
        if (received !== undefined) shutdown(received);
        else onSignal = shutdown;
      }),
  };
}

function namespaceList(value: string | undefined): string[] {
  if (value === undefined) return [];
  const names = value.split(',').map((n) => n.trim()).filter((n) => n !== '');
  const bad = names.filter((n) => !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(n) || n.length > 63);
  if (bad.length > 0) throw new UsageError(`--namespaces takes comma-separated namespace names; not a namespace name: ${bad.map((b) => `"${b}"`).join(', ')}`);
  return [...new Set(names)];
}

function readJsonFile(file: string, flag: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag} ${file}: cannot read it: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(`${flag} ${file}: not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

async function runController(args: string[]): Promise<number> {
  const { values } = parseFlags('controller', {
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
      'otlp-endpoint': { type: 'string' },
      'lease-namespace': { type: 'string' },
      'no-leader-election': { type: 'boolean' },
      'ai-extension-address': { type: 'string' },
      'ai-extension-port': { type: 'string' },
      'log-level': { type: 'string' },
      'xds-tls-dir': { type: 'string' },
      'xds-tls-secrets': { type: 'string' },
      'xds-tls-dns': { type: 'string' },
      'state-dir': { type: 'string' },
      ...INFRASTRUCTURE_OPTIONS,
      'data-plane': { type: 'string' },
    },
  });
  const dataPlaneFile = values['data-plane'];
  const dataPlane = dataPlaneFile === undefined ? undefined : (await import('../infrastructure/data-plane-objects.js')).parseDataPlaneSettings(readJsonFile(dataPlaneFile, '--data-plane'), dataPlaneFile);
  if (values['xds-tls-dir'] !== undefined && values['xds-tls-secrets'] !== undefined) {
    throw new UsageError('--xds-tls-dir and --xds-tls-secrets exclude each other: certificates from files, or issued and renewed by the controller');
  }
  const xdsTls = values['xds-tls-dir'] !== undefined ? readXdsServerTls(values['xds-tls-dir']) : undefined;
  const secretsPrefix = values['xds-tls-secrets'];
  if (secretsPrefix !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(secretsPrefix)) {
    throw new UsageError(`--xds-tls-secrets takes a Secret name prefix (lowercase letters, digits, '-'), got "${secretsPrefix}"`);
  }
  const dnsNames = (values['xds-tls-dns'] ?? '').split(',').map((n) => n.trim()).filter((n) => n !== '');
  if (secretsPrefix !== undefined && dnsNames.length === 0) {
    throw new UsageError('--xds-tls-secrets needs --xds-tls-dns: the names Envoy and the AI extension dial the controller by (its Service, e.g. switchyard.switchyard-system.svc)');
  }
  const { controller, defaultLeaseNamespace } = await import('../app/controller.js');
  const logger = createLogger({ level: logLevel(values['log-level']), name: 'switchyard' });
  const signals = watchSignals(logger);
  // In a cluster Envoy runs in its own pods: the controller runs Envoys only when asked.
  const infrastructure = await infrastructureChoice(values, 'none', logger);
  const stateDir = values['state-dir'];
  const otlp = otlpEndpoint(values['otlp-endpoint']);
  const aiExtension = {
    host: values['ai-extension-address'] ?? DEFAULT_AI_EXTENSION_ADDRESS.host,
    port: int(values['ai-extension-port'], '--ai-extension-port', DEFAULT_AI_EXTENSION_ADDRESS.port),
  };
  // As serve: the Envoys it runs reach the extension over a socket in the state directory, unless an address is asked for.
  const extProc = values['ai-extension-port'] !== undefined || values['ai-extension-address'] !== undefined ? 'tcp' as const : 'unix' as const;
  const running = await controller({
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    namespaces: namespaceList(values.namespaces),
    xdsPort: int(values['xds-port'], '--xds-port', 18000),
    xdsHost: values['xds-host'] ?? '0.0.0.0',
    ...(xdsTls ? { xdsTls } : {}),
    ...(secretsPrefix !== undefined ? { managedXdsTls: { namespace: defaultLeaseNamespace(), prefix: secretsPrefix, dnsNames } } : {}),
    metricsPort: int(values['metrics-port'], '--metrics-port', 9090),
    metricsHost: values['metrics-host'] ?? '0.0.0.0',
    envoy: {
      ...(values['listener-address'] ? { listenerAddress: values['listener-address'] } : {}),
      aiExtension,
      accessLog: await accessLog(values['access-log']),
      ...(otlp !== undefined ? { otlp } : {}),
    },
    ...(dataPlane ? { dataPlane } : {}),
    loadReporting: await loadReporting(values['load-report-interval'], values['health-window']),
    leaderElection: values['no-leader-election'] ? false : { namespace: values['lease-namespace'] ?? defaultLeaseNamespace() },
    logger,
    ...(infrastructure ? { infrastructure: { ...infrastructure, extProc, ...(stateDir !== undefined ? { stateDir } : {}) } } : {}),
  });
  await signals.until(running);
  return 0;
}

async function runCerts(args: string[]): Promise<number> {
  const { values } = parseFlags('certs', { args, options: { out: { type: 'string' }, dns: { type: 'string' } } });
  if (!values.out) throw new UsageError('certs needs --out DIR (where the CA and the certificate of each role are written)');
  const dnsNames = (values.dns ?? 'localhost').split(',').map((n) => n.trim()).filter((n) => n !== '');
  const { directoryStore, ensurePki, pkiNames } = await import('../app/xds-pki.js');
  const state = await ensurePki({ store: directoryStore(values.out), names: pkiNames(''), controllerDnsNames: dnsNames, now: new Date() });
  const lines = [
    `xDS certificates in ${values.out} (${state.written.length > 0 ? `written: ${state.written.join(', ')}` : 'all current, nothing written'}):`,
    `  ca/             the CA (keep ca.key private; it is only needed to issue again)`,
    `  controller/     serve --xds-tls-dir / controller --xds-tls-dir (names: ${dnsNames.join(', ')})`,
    `  envoy/          switchyard bootstrap --xds-tls-dir (Envoy gets no provider key)`,
    `  ai-extension/   ai-extension --xds-tls-dir (the only identity that gets provider keys)`,
    `Run again to renew what is in the last third of its lifetime.`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

async function runTranslate(args: string[]): Promise<number> {
  const { values } = parseFlags('translate', { args, options: { file: { type: 'string', short: 'f' }, output: { type: 'string', short: 'o' }, 'allow-problems': { type: 'boolean' }, 'access-log': { type: 'string' }, ...LIMIT_OPTIONS } });
  if (!values.file) throw new UsageError('translate needs -f PATH (a manifest file or a directory of them)');
  const limits = await configLimits(values);
  const [{ FileProvider }, { runPipeline, translateReport }, { formatProblem }] = await Promise.all([import('../providers/file.js'), import('../pipeline.js'), import('../api/manifest.js')]);
  const provider = new FileProvider({ path: values.file, resyncIntervalMs: 0, limits });
  const snapshot = await provider.start();
  await provider.stop();
  const report = translateReport(runPipeline(snapshot.inputs, { accessLog: await accessLog(values['access-log']) }));
  process.stdout.write(await output(report, values.output));
  for (const p of snapshot.problems) process.stderr.write(`problem: ${formatProblem(p)}\n`);
  const bad = badConditions(report.statuses);
  for (const b of bad) process.stderr.write(`not ok: ${b}\n`);
  if (bad.length === 0 && snapshot.problems.length === 0) return 0;
  process.stderr.write(`switchyard translate: ${summary(bad.length, snapshot.problems.length)}${values['allow-problems'] ? ' (--allow-problems: exit 0)' : '; exit 1 (--allow-problems to exit 0)'}\n`);
  return values['allow-problems'] ? 0 : 1;
}

function summary(objects: number, problems: number): string {
  const parts = [
    ...(objects > 0 ? [`${objects} object${objects === 1 ? '' : 's'} with a False condition`] : []),
    ...(problems > 0 ? [`${problems} configuration problem${problems === 1 ? '' : 's'}`] : []),
  ];
  return parts.join(' and ');
}

async function runBootstrap(args: string[]): Promise<number> {
  const { values } = parseFlags('bootstrap', {
    args,
    options: {
      xds: { type: 'string' },
      'node-id': { type: 'string' },
      'node-cluster': { type: 'string' },
      gateway: { type: 'string' },
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
  const { buildBootstrap, gatewayKeyProblem } = await import('../envoy/bootstrap.js');
  const gatewayProblem = values.gateway === undefined ? undefined : gatewayKeyProblem(values.gateway);
  if (gatewayProblem !== undefined) throw new UsageError(`--gateway: ${gatewayProblem} (the Gateway this Envoy serves, e.g. --gateway default/edge)`);
  const bootstrap = buildBootstrap({
    xds: { host: target.slice(0, sep).replace(/^\[|\]$/g, ''), port: int(target.slice(sep + 1), '--xds port', 18000) },
    nodeId: values['node-id'],
    ...(values['node-cluster'] ? { nodeCluster: values['node-cluster'] } : {}),
    ...(values.gateway !== undefined ? { gateway: values.gateway } : {}),
    adminPort: int(values['admin-port'], '--admin-port', 9901),
    delta: values.delta ?? false,
    loadReporting: values['no-load-reporting'] !== true,
    ...(tlsDir !== undefined ? { xdsTls: { caFile: posix.join(tlsDir, CA_FILE), certFile: posix.join(tlsDir, CERT_FILE), keyFile: posix.join(tlsDir, KEY_FILE) } } : {}),
  });
  process.stdout.write(await output(bootstrap, values.output));
  return 0;
}

/**
 * The commands: each parses its own flags (parseFlags) and returns the exit code. Those that talk
 * to a Kubernetes API server load its client when run: importing @kubernetes/client-node alone
 * cost serve some 55 MB of RSS (issue 9). Likewise the pipeline, the YAML readers and writer, the
 * manifest schemas and the Envoy bootstrap are loaded by the commands that use them: the AI
 * extension (serve's child process, or on its own next to Envoy) starts without them, 3 MB less
 * resident, and one-shot commands such as `version` start faster.
 */
const COMMANDS: Readonly<Record<string, (args: string[]) => Promise<number>>> = {
  serve: runServe,
  controller: runController,
  translate: runTranslate,
  status: async (args) => (await import('./status.js')).runStatus(args),
  drill: async (args) => (await import('./drill.js')).runDrill(args),
  bootstrap: runBootstrap,
  'ai-extension': runAiExtension,
  certs: runCerts,
  'envoy-drain': runEnvoyDrain,
  'drain-sidecar': runDrainSidecar,
  version: runVersion,
};

/** Two polls of waitDrained (src/infrastructure/envoy-drain.ts). */
const DRAINED_LINGER_MS = 500;

async function runEnvoyDrain(args: string[]): Promise<number> {
  const { values } = parseFlags('envoy-drain', { args, options: { admin: { type: 'string' }, 'accept-time': { type: 'string' }, 'drain-time': { type: 'string' } } });
  const admin = values.admin;
  if (admin === undefined || !/^http:\/\/[^/\s]+$/.test(admin)) {
    throw new UsageError(`envoy-drain needs --admin http://HOST:PORT (the admin API of the Envoy to drain, no path), got "${admin ?? ''}"`);
  }
  const { DEFAULT_DRAIN_TIMEOUT_MS, drainEnvoy } = await import('../infrastructure/envoy-drain.js');
  const result = await drainEnvoy({
    adminUrl: admin,
    acceptMs: durationFlag(values['accept-time'], '--accept-time') ?? 0,
    timeoutMs: durationFlag(values['drain-time'], '--drain-time') ?? DEFAULT_DRAIN_TIMEOUT_MS,
    onProgress: (line) => process.stderr.write(`switchyard envoy-drain: ${line}\n`),
  });
  if (result.envoyGone) process.stderr.write(`switchyard envoy-drain: Envoy's admin API at ${admin} does not answer: nothing to drain\n`);
  // In a pod, this container gets SIGTERM as soon as this ends: first let the Envoy container's
  // preStop (GET /envoy/drained here, polling at the same pace) see the drain done and be answered.
  else if (result.drained) await new Promise((resolve) => setTimeout(resolve, DRAINED_LINGER_MS));
  return result.drained ? 0 : 1;
}

async function runDrainSidecar(args: string[]): Promise<number> {
  const { values } = parseFlags('drain-sidecar', {
    args,
    options: { admin: { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, 'drain-wait': { type: 'string' }, 'log-level': { type: 'string' } },
  });
  const admin = values.admin;
  if (admin === undefined || !/^http:\/\/[^/\s]+$/.test(admin)) {
    throw new UsageError(`drain-sidecar needs --admin http://HOST:PORT (the admin API of the Envoy in this pod, no path), got "${admin ?? ''}"`);
  }
  const drainWaitMs = durationFlag(values['drain-wait'], '--drain-wait');
  const port = int(values.port, '--port', 19002);
  const host = values.host ?? '0.0.0.0';
  const logger = createLogger({ level: logLevel(values['log-level']), name: 'switchyard-drain-sidecar' });
  const signals = watchSignals(logger);
  await assertPortFree('metrics', host, port);
  const routes = await envoyDrainedRoute(admin, drainWaitMs, logger);
  const { startHealthServer } = await import('../observability/health.js');
  // Ready once it serves: Envoy's own probe says whether Envoy is. No /metrics: prom-client alone
  // would double what this container adds to every such pod.
  const server = await startHealthServer({ port, host, ready: () => true, routes });
  logger.info({ port: server.port, envoyAdmin: admin }, 'drain-sidecar: serving /envoy/drained for the Envoy beside it');
  await signals.until({ stop: () => server.close() });
  return 0;
}

async function runVersion(args: string[]): Promise<number> {
  const { values } = parseFlags('version', { args, options: { output: { type: 'string', short: 'o' } } });
  const info = versionInfo();
  process.stdout.write(values.output === undefined ? formatVersion(info) : await output(info, values.output));
  return 0;
}

/** Which flag sets the port of each server, per command (for "address in use"). */
const PORT_FLAGS: Readonly<Record<string, Partial<Record<ServerRole, string>>>> = {
  serve: { xds: '--xds-port', metrics: '--metrics-port', 'ai-extension': '--ai-extension-port' },
  controller: { xds: '--xds-port', metrics: '--metrics-port', 'ai-extension': '--ai-extension-port' },
  'ai-extension': { metrics: '--metrics-port', 'ai-extension': '--port' },
  'drain-sidecar': { metrics: '--port' },
};

function addressInUseMessage(err: AddressInUseError, command: string): string {
  const flag = PORT_FLAGS[command]?.[err.role];
  const what = `address ${err.address} is in use (another switchyard or Envoy?)`;
  return flag ? `${flag} ${err.port}: ${what}; pick another port with ${flag}` : `the ${err.role} server's ${what}`;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
      case '-h': {
        const topic = rest[0];
        process.stdout.write(topic !== undefined && COMMAND_USAGE[topic] !== undefined ? commandUsage(topic) : USAGE);
        return command === undefined ? 2 : 0;
      }
      case '--version':
      case '-v':
        return await runVersion(rest);
      default: {
        const run = COMMANDS[command];
        if (run !== undefined) return await run(rest);
        const guess = closest(command, Object.keys(COMMANDS));
        throw new UsageError(`unknown command "${command}"${guess ? `; did you mean "${guess}"?` : ''}`);
      }
    }
  } catch (err) {
    const known = command !== undefined && COMMANDS[command] !== undefined ? command : undefined;
    if (err instanceof HelpRequested) {
      process.stdout.write(commandUsage(err.command));
      return 0;
    }
    if (err instanceof UsageError) {
      const about = err.command ?? known;
      const hint = about !== undefined ? `${commandSynopsis(about)}Run "switchyard ${about} --help" for details.\n` : `Run "switchyard --help" for the commands.\n`;
      process.stderr.write(`switchyard: ${err.message}\n\n${hint}`);
      return 2;
    }
    if (err instanceof AddressInUseError) {
      process.stderr.write(`switchyard: ${addressInUseMessage(err, known ?? '')}\n`);
      return 1;
    }
    process.stderr.write(`switchyard: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
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
