import { existsSync, statSync } from 'node:fs';
import type { XdsTarget } from '../ai-extension/credentials.js';
import { DURATION_HINT, parseDuration } from '../api/duration.js';
import { readWarmupKey, removeExtensionRecord, writeExtensionRecord } from '../app/ai-extension-process.js';
import { assertPortFree } from '../app/ports.js';
import { createLogger } from '../observability/logger.js';
import { clientCertificateRole, readXdsClientTls, xdsChannelCredentials } from '../xds/tls.js';
import { envoyDrainedRoute } from './drain-sidecar.js';
import { parseFlags, UsageError } from './flags.js';
import { durationFlag, int, logLevel } from './flag-values.js';
import { limitsRedisUrl, otlpEndpoint } from './gateway-flags.js';
import type { IdleCompactionOptions } from '../observability/idle-compaction.js';
import { watchSignals } from './signals.js';

/**
 * The extension's heap is compacted when quiet like every long-running command's, but its young
 * generation is not held at the size the compaction left: it allocates on every attempt, and held
 * at V8's initial size it scavenged ~10x as often under load (IdleCompactionOptions.holdYoungGeneration).
 */
export const AI_EXTENSION_IDLE_COMPACTION: Partial<IdleCompactionOptions> = { holdYoungGeneration: false };

function hostPort(value: string | undefined, flag: string, what: string): { host: string; port: number } {
  const target = value ?? '';
  const sep = target.lastIndexOf(':');
  if (sep <= 0) throw new UsageError(`${flag} must be HOST:PORT (${what}), got "${target}"`);
  return { host: target.slice(0, sep).replace(/^\[|\]$/g, ''), port: int(target.slice(sep + 1), `${flag} port`, 0) };
}

export async function runAiExtension(args: string[]): Promise<number> {
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
  const signals = watchSignals(logger, AI_EXTENSION_IDLE_COMPACTION);
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

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
