import { readFileSync } from 'node:fs';
import { DEFAULT_AI_EXTENSION_ADDRESS } from '../envoy/options.js';
import { createLogger } from '../observability/logger.js';
import { readXdsServerTls } from '../xds/tls.js';
import { parseFlags, UsageError } from './flags.js';
import { int, logLevel } from './flag-values.js';
import { GATEWAY_SERVER_OPTIONS, gatewayServerSettings, infrastructureChoice, INFRASTRUCTURE_OPTIONS } from './gateway-flags.js';
import { watchSignals } from './signals.js';

function namespaceList(value: string | undefined): string[] {
  if (value === undefined) return [];
  const names = value.split(',').map((n) => n.trim()).filter((n) => n !== '');
  const bad = names.filter((n) => !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(n) || n.length > 63);
  if (bad.length > 0) throw new UsageError(`--namespaces takes comma-separated namespace names; not a namespace name: ${bad.map((b) => `"${b}"`).join(', ')}`);
  return [...new Set(names)];
}

function readJsonFile(file: string, flag: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag} ${file}: cannot read it: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(`${flag} ${file}: not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export async function runController(args: string[]): Promise<number> {
  const { values } = parseFlags('controller', {
    args,
    options: {
      kubeconfig: { type: 'string' },
      namespaces: { type: 'string' },
      ...GATEWAY_SERVER_OPTIONS,
      'lease-namespace': { type: 'string' },
      'no-leader-election': { type: 'boolean' },
      'ai-extension-address': { type: 'string' },
      'ai-extension-port': { type: 'string' },
      'log-level': { type: 'string' },
      'xds-tls-dir': { type: 'string' },
      'xds-tls-secrets': { type: 'string' },
      'xds-tls-dns': { type: 'string' },
      'state-dir': { type: 'string' },
      ...INFRASTRUCTURE_OPTIONS,
      'data-plane': { type: 'string' },
    },
  });
  const dataPlaneFile = values['data-plane'];
  const dataPlane = dataPlaneFile === undefined ? undefined : (await import('../infrastructure/data-plane-objects.js')).parseDataPlaneSettings(readJsonFile(dataPlaneFile, '--data-plane'), dataPlaneFile);
  if (values['xds-tls-dir'] !== undefined && values['xds-tls-secrets'] !== undefined) {
    throw new UsageError('--xds-tls-dir and --xds-tls-secrets exclude each other: certificates from files, or issued and renewed by the controller');
  }
  const xdsTls = values['xds-tls-dir'] !== undefined ? readXdsServerTls(values['xds-tls-dir']) : undefined;
  const secretsPrefix = values['xds-tls-secrets'];
  if (secretsPrefix !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(secretsPrefix)) {
    throw new UsageError(`--xds-tls-secrets takes a Secret name prefix (lowercase letters, digits, '-'), got "${secretsPrefix}"`);
  }
  const dnsNames = (values['xds-tls-dns'] ?? '').split(',').map((n) => n.trim()).filter((n) => n !== '');
  if (secretsPrefix !== undefined && dnsNames.length === 0) {
    throw new UsageError('--xds-tls-secrets needs --xds-tls-dns: the names Envoy and the AI extension dial the controller by (its Service, e.g. switchyard.switchyard-system.svc)');
  }
  const { controller, defaultLeaseNamespace } = await import('../app/controller.js');
  const logger = createLogger({ level: logLevel(values['log-level']), name: 'switchyard' });
  const signals = watchSignals(logger);
  // In a cluster Envoy runs in its own pods: the controller runs Envoys only when asked.
  const infrastructure = await infrastructureChoice(values, 'none', logger);
  const stateDir = values['state-dir'];
  const server = await gatewayServerSettings(values);
  const aiExtension = {
    host: values['ai-extension-address'] ?? DEFAULT_AI_EXTENSION_ADDRESS.host,
    port: int(values['ai-extension-port'], '--ai-extension-port', DEFAULT_AI_EXTENSION_ADDRESS.port),
  };
  // As serve: the Envoys it runs reach the extension over a socket in the state directory, unless an address is asked for.
  const extProc = values['ai-extension-port'] !== undefined || values['ai-extension-address'] !== undefined ? 'tcp' as const : 'unix' as const;
  const running = await controller({
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
    namespaces: namespaceList(values.namespaces),
    ...server,
    ...(xdsTls ? { xdsTls } : {}),
    ...(secretsPrefix !== undefined ? { managedXdsTls: { namespace: defaultLeaseNamespace(), prefix: secretsPrefix, dnsNames } } : {}),
    envoy: { ...server.envoy, aiExtension },
    ...(dataPlane ? { dataPlane } : {}),
    leaderElection: values['no-leader-election'] ? false : { namespace: values['lease-namespace'] ?? defaultLeaseNamespace() },
    logger,
    ...(infrastructure ? { infrastructure: { ...infrastructure, extProc, ...(stateDir !== undefined ? { stateDir } : {}) } } : {}),
  });
  await signals.until(running);
  return 0;
}
