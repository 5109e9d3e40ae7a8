import { posix } from 'node:path';
import { parseFlags, UsageError } from './flags.js';
import { int, output } from './flag-values.js';

export async function runBootstrap(args: string[]): Promise<number> {
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
  // The file names only: xds/tls.ts also loads @grpc/grpc-js, which a bootstrap without TLS does without.
  const tlsFiles = tlsDir === undefined ? undefined : await import('../xds/tls.js');
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
    ...(tlsDir !== undefined && tlsFiles !== undefined ? { xdsTls: { caFile: posix.join(tlsDir, tlsFiles.CA_FILE), certFile: posix.join(tlsDir, tlsFiles.CERT_FILE), keyFile: posix.join(tlsDir, tlsFiles.KEY_FILE) } } : {}),
  });
  process.stdout.write(await output(bootstrap, values.output));
  return 0;
}
