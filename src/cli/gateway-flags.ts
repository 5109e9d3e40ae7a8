import type { LoadReportingSettings } from '../app/gateway-runtime.js';
import type { HostInfrastructureChoice } from '../app/serve.js';
import type { AccessLogFormat } from '../envoy/access-log.js';
import { DEFAULT_ENVOY_OPTIONS } from '../envoy/options.js';
import { parseOtlpEndpoint, type OtlpEndpoint } from '../envoy/tracing.js';
import type { createLogger } from '../observability/logger.js';
import type { ConfigLimits } from '../providers/manifest-files.js';
import { durationFlag, int } from './flag-values.js';
import { UsageError } from './flags.js';

// The flags of the commands that configure Envoys (serve, controller, translate) and of the AI extension.

/** The flags of the commands that serve xDS and metrics to the Envoys they configure (serve, controller). */
export const GATEWAY_SERVER_OPTIONS = {
  'xds-port': { type: 'string' },
  'xds-host': { type: 'string' },
  'metrics-port': { type: 'string' },
  'metrics-host': { type: 'string' },
  'listener-address': { type: 'string' },
  'access-log': { type: 'string' },
  'load-report-interval': { type: 'string' },
  'health-window': { type: 'string' },
  'otlp-endpoint': { type: 'string' },
} as const;

/** What GATEWAY_SERVER_OPTIONS ask for, in the shape serve and controller take it, defaults for the flags not given. */
export async function gatewayServerSettings(values: Partial<Record<keyof typeof GATEWAY_SERVER_OPTIONS, string>>): Promise<{
  xdsPort: number;
  xdsHost: string;
  metricsPort: number;
  metricsHost: string;
  envoy: { listenerAddress?: string; accessLog: AccessLogFormat; otlp?: OtlpEndpoint };
  loadReporting: LoadReportingSettings;
}> {
  const otlp = otlpEndpoint(values['otlp-endpoint']);
  return {
    xdsPort: int(values['xds-port'], '--xds-port', 18000),
    xdsHost: values['xds-host'] ?? '0.0.0.0',
    metricsPort: int(values['metrics-port'], '--metrics-port', 9090),
    metricsHost: values['metrics-host'] ?? '0.0.0.0',
    envoy: {
      ...(values['listener-address'] ? { listenerAddress: values['listener-address'] } : {}),
      accessLog: await accessLog(values['access-log']),
      ...(otlp !== undefined ? { otlp } : {}),
    },
    loadReporting: await loadReporting(values['load-report-interval'], values['health-window']),
  };
}

export async function loadReporting(interval: string | undefined, window: string | undefined): Promise<LoadReportingSettings> {
  const { DEFAULT_LOAD_REPORTING } = await import('../app/gateway-runtime.js');
  const intervalMs = durationFlag(interval, '--load-report-interval') ?? DEFAULT_LOAD_REPORTING.intervalMs;
  const windowMs = durationFlag(window, '--health-window') ?? DEFAULT_LOAD_REPORTING.windowMs;
  if (intervalMs < 100) throw new UsageError(`--load-report-interval must be at least 100ms, got "${interval ?? ''}"`);
  if (windowMs < 2 * intervalMs) throw new UsageError(`--health-window must hold at least two load reports (twice --load-report-interval, ${intervalMs} ms), got "${window ?? ''}"`);
  return { intervalMs, windowMs, refreshMs: Math.max(intervalMs, Math.round(windowMs / 6)) };
}

export async function accessLog(value: string | undefined): Promise<AccessLogFormat> {
  if (value === undefined) return DEFAULT_ENVOY_OPTIONS.accessLog;
  const { ACCESS_LOG_FORMATS } = await import('../envoy/access-log.js');
  const known = ACCESS_LOG_FORMATS.find((f) => f === value);
  if (!known) throw new UsageError(`--access-log must be one of ${ACCESS_LOG_FORMATS.join(', ')}, got "${value}"`);
  return known;
}

/** --limits-redis: where the AI extensions share member limit counts. */
export function limitsRedisUrl(value: string | undefined): string | undefined {
  if (value !== undefined && !/^redis:\/\/[^/\s]+/.test(value)) throw new UsageError(`--limits-redis: give redis://HOST:PORT, e.g. redis://127.0.0.1:6379, got "${value}"`);
  return value;
}

export function otlpEndpoint(value: string | undefined): OtlpEndpoint | undefined {
  if (value === undefined) return undefined;
  const parsed = parseOtlpEndpoint(value);
  if ('error' in parsed) throw new UsageError(parsed.error);
  return parsed;
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

export const LIMIT_OPTIONS = {
  'max-document-size': { type: 'string' },
  'max-file-size': { type: 'string' },
  'max-config-size': { type: 'string' },
} as const;

/** The size limits of file mode from the flags (CONFIG_LIMIT_FLAGS), defaults for the rest. */
export async function configLimits(values: Partial<Record<keyof typeof LIMIT_OPTIONS, string>>): Promise<ConfigLimits> {
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

export const INFRASTRUCTURE_OPTIONS = {
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
export async function infrastructureChoice(
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
