import { createLogger } from '../observability/logger.js';
import { readXdsServerTls } from '../xds/tls.js';
import { parseFlags, UsageError } from './flags.js';
import { int, logLevel } from './flag-values.js';
import { accessLog, configLimits, infrastructureChoice, INFRASTRUCTURE_OPTIONS, LIMIT_OPTIONS, limitsRedisUrl, loadReporting, otlpEndpoint } from './gateway-flags.js';
import { watchSignals } from './signals.js';

export async function runServe(args: string[]): Promise<number> {
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
