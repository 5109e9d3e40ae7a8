import { createLogger } from '../observability/logger.js';
import { readXdsServerTls } from '../xds/tls.js';
import { parseFlags, UsageError } from './flags.js';
import { int, logLevel } from './flag-values.js';
import { configLimits, GATEWAY_SERVER_OPTIONS, gatewayServerSettings, infrastructureChoice, INFRASTRUCTURE_OPTIONS, LIMIT_OPTIONS, limitsRedisUrl } from './gateway-flags.js';
import { watchSignals } from './signals.js';

export async function runServe(args: string[]): Promise<number> {
  const { values } = parseFlags('serve', {
    args,
    options: {
      config: { type: 'string', short: 'c' },
      ...GATEWAY_SERVER_OPTIONS,
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
  const server = await gatewayServerSettings(values);
  const limitsRedis = limitsRedisUrl(values['limits-redis']);
  const { serve } = await import('../app/serve.js');
  const running = await serve({
    config: values.config,
    limits,
    ...server,
    ...(xdsTls ? { xdsTls } : {}),
    // Without the in-process extension Envoy still needs to know where one runs.
    envoy: { ...server.envoy, aiExtension: { host: extensionAddress, port: extensionPort } },
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
