import { parseFlags, UsageError } from './flags.js';
import { durationFlag } from './flag-values.js';

/** Two polls of waitDrained (src/infrastructure/envoy-drain.ts). */
const DRAINED_LINGER_MS = 500;

export async function runEnvoyDrain(args: string[]): Promise<number> {
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
