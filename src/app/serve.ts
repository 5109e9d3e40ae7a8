import { registerAiExtensionMetrics } from '../ai-extension/metrics.js';
import { startAiExtension, type RunningAiExtension } from '../ai-extension/server.js';
import { FileProvider } from '../providers/file.js';
import { startGatewayRuntime, type RunningGateway, type ServingOptions } from './gateway-runtime.js';

/** The in-process AI extension needs no certificate: it reads its credentials over a private Unix socket. */
export interface ServeOptions extends ServingOptions {
  config: string;
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
  const { config, logger, aiExtension: extensionOptions = { port: 0 }, ...servers } = opts;
  let extension: RunningAiExtension | undefined;
  let envoy = servers.envoy;
  if (extensionOptions !== false) {
    // Bound first: its port goes into the configuration Envoy receives.
    extension = await startAiExtension({ port: extensionOptions.port, host: extensionOptions.host ?? '127.0.0.1', logger: logger.child({ component: 'ai-extension' }) });
    envoy = { ...envoy, aiExtension: { host: extensionOptions.advertise ?? '127.0.0.1', port: extension.port } };
  }
  let runtime: RunningGateway;
  try {
    runtime = await startGatewayRuntime({ ...servers, envoy, logger, provider: new FileProvider({ path: config, logger }), origin: { config } });
  } catch (err) {
    await extension?.stop();
    throw err;
  }
  if (extension) {
    // Credentials come from this process's own ADS server over its private Unix socket, TLS or
    // not: streams on it are the ai-extension identity (src/xds/identity.ts), and the TCP port
    // never carries a key.
    try {
      extension.connect({ socket: await runtime.xds.privateSocket() });
    } catch (err) {
      await extension.stop();
      await runtime.stop();
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
    },
  };
}
