import type { RunningGateway } from '../app/gateway-runtime.js';
import { keepCompiledCode } from '../observability/code-flushing.js';
import { startIdleCompaction, type IdleCompactionOptions } from '../observability/idle-compaction.js';
import type { createLogger } from '../observability/logger.js';

/**
 * Listens for SIGINT and SIGTERM from before a command starts serving: a signal that arrives
 * while it starts (after its first log lines, say) would otherwise find no handler and kill the
 * process outright. `until(running)` serves until a signal, then stops cleanly; a signal that came
 * during start-up stops it as soon as it is up.
 */
export function watchSignals(logger: ReturnType<typeof createLogger>, compaction: Partial<IdleCompactionOptions> = {}): { until(running: Pick<RunningGateway, 'stop'> & Partial<Pick<RunningGateway, 'settled'>>): Promise<void> } {
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
        const idle = startIdleCompaction(logger.child({ component: 'memory' }), compaction);
        // An edit minutes after the last runs the code the start compiled, not its source again.
        keepCompiledCode();
        let stopping = false;
        void running.settled?.then(() => {
          if (!stopping) idle.afterStart();
        });
        const shutdown = (signal: string): void => {
          stopping = true;
          idle.stop();
          logger.info({ signal }, 'shutting down');
          running.stop().then(resolve, resolve);
        };
        if (received !== undefined) shutdown(received);
        else onSignal = shutdown;
      }),
  };
}
