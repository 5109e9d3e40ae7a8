import { assertPortFree } from '../app/ports.js';
import { createLogger } from '../observability/logger.js';
import { parseFlags, UsageError } from './flags.js';
import { durationFlag, int, logLevel } from './flag-values.js';
import { watchSignals } from './signals.js';

export async function runDrainSidecar(args: string[]): Promise<number> {
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

/**
 * GET /envoy/drained on the extension's metrics port (or the drain sidecar's port): waits until
 * the Envoy beside it has drained (listeners stopped, nothing in flight) or is gone, at most
 * `waitMs`. It starts nothing, so whoever reaches the port can only wait: the Envoy container's
 * preStop waits here while this container's preStop runs `switchyard envoy-drain`
 * (src/infrastructure/data-plane-objects.ts).
 */
export async function envoyDrainedRoute(adminUrl: string, waitMs: number | undefined, logger: ReturnType<typeof createLogger>): Promise<Map<string, () => Promise<{ status: number; body: string }>>> {
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
