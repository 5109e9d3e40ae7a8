import type { IR } from '../ir/model.js';
import { aiExtensionCluster } from './ai-extension.js';
import { toClusterLoadAssignment, toEnvoyCluster } from './clusters.js';
import { toEnvoyListener } from './listeners.js';
import { DEFAULT_ENVOY_OPTIONS, type EnvoyOptions } from './options.js';
import type { XdsResources } from './resources.js';
import { toRouteConfiguration } from './routes.js';
import { toCertificateSecret, toCredentialSecret } from './secrets.js';
import { otlpCluster } from './tracing.js';

export { toDataPlanes, type DataPlanes, type ResourceNames } from './data-planes.js';

/** IR → the five xDS resource lists. Pure and deterministic: the same IR gives the same JSON. */
export function toXdsResources(ir: IR, options: Partial<EnvoyOptions> = {}): XdsResources {
  const opts = { ...DEFAULT_ENVOY_OPTIONS, ...options };
  const ai = ir.clusters.filter((c) => c.ai !== undefined);
  const bodyLimits = new Map(ai.map((c) => [c.name, c.ai?.requestBodyLimitBytes ?? 0]));
  return {
    listeners: ir.listeners.map((l) => toEnvoyListener(l, opts, { aiExtension: ai.length > 0 })),
    routes: ir.listeners.map((l) => toRouteConfiguration(l, bodyLimits)),
    clusters: [
      ...ir.clusters.map((c) => toEnvoyCluster(c, opts)),
      ...(ai.length > 0 ? [aiExtensionCluster(opts)] : []),
      ...(opts.otlp !== undefined && ir.listeners.length > 0 ? [otlpCluster(opts.otlp, opts)] : []),
    ],
    endpoints: ir.clusters.filter((c) => c.discovery === 'eds').map((c) => toClusterLoadAssignment(c, opts)),
    secrets: [...ir.certificates.map(toCertificateSecret), ...ir.credentials.map(toCredentialSecret)],
  };
}
