import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerAiExtensionMetrics } from '../ai-extension/metrics.js';
import { startAiExtension, type RunningAiExtension } from '../ai-extension/server.js';
import { FileProvider } from '../providers/file.js';
import type { ConfigLimits } from '../providers/manifest-files.js';
import { startGatewayRuntime, type RunningGateway, type ServingOptions } from './gateway-runtime.js';

/** With `xdsTls` the in-process AI extension needs no certificate: it reads its credentials over a private Unix socket. */
export interface ServeOptions extends ServingOptions {
  config: string;
  /** Size limits of the configuration (DEFAULT_CONFIG_LIMITS for what is not given). */
  limits?: Partial<ConfigLimits>;
  /**
   * The AI extension, run in this process unless false (Envoy then expects one at
   * `envoy.aiExtension`). `port` 0 picks a free one; `advertise` is the address Envoy dials
   * (default 127.0.0.1: Envoy on this host). Default: `{port: 0}`.
   */
  aiExtension?: false | { port: number; host?: string; advertise?: string };
}

export type RunningServe = RunningGateway & {
  /** The in-process AI extension, unless disabled. */
  aiExtension: RunningAiExtension | undefined;
};

/**
 * `switchyard serve`: the file provider feeding the shared pipeline (gateway-runtime.ts) and,
 * in the same process, the AI extension that Envoy calls for every attempt on an AI Backend.
 */
export async function serve(opts: ServeOptions): Promise<RunningServe> {
  const { config, limits, logger, aiExtension: extensionOptions = { port: 0 }, ...servers } = opts;
  let extension: RunningAiExtension | undefined;
  let envoy = servers.envoy;
  if (extensionOptions !== false) {
    // Bound first: its port goes into the configuration Envoy receives.
    extension = await startAiExtension({ port: extensionOptions.port, host: extensionOptions.host ?? '127.0.0.1', logger: logger.child({ component: 'ai-extension' }) });
    envoy = { ...envoy, aiExtension: { host: extensionOptions.advertise ?? '127.0.0.1', port: extension.port } };
  }
  let runtime: RunningGateway;
  try {
    runtime = await startGatewayRuntime({ ...servers, envoy, logger, provider: new FileProvider({ path: config, logger, ...(limits ? { limits } : {}) }), origin: { config } });
  } catch (err) {
    await extension?.stop();
    throw err;
  }
  let socketDir: string | undefined;
  if (extension) {
    // Credentials come from this process's own ADS server. When its port requires TLS, over a
    // Unix socket in a directory only this user can enter (mkdtemp: mode 0700) instead.
    try {
      if (servers.xdsTls) {
        socketDir = mkdtempSync(join(tmpdir(), 'switchyard-xds-'));
        const socket = join(socketDir, 'ads.sock');
        await runtime.xds.listenUnix(socket);
        extension.connect({ socket });
      } else {
        extension.connect({ host: dialable(servers.xdsHost), port: runtime.xdsPort });
      }
    } catch (err) {
      await extension.stop();
      await runtime.stop();
      if (socketDir) rmSync(socketDir, { recursive: true, force: true });
      throw err;
    }
    registerAiExtensionMetrics(extension.metrics, runtime.metrics.registry);
  }
  const running = extension;
  return {
    ...runtime,
    aiExtension: extension,
    async stop() {
      await running?.stop();
      await runtime.stop();
      if (socketDir) rmSync(socketDir, { recursive: true, force: true });
    },
  };
}

/** An address this process can dial for a server bound to `host` (a wildcard means loopback). */
function dialable(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}
