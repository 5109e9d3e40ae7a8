import type { IR } from '../ir/model.js';
import { toClusterLoadAssignment, toEnvoyCluster } from './clusters.js';
import { toEnvoyListener } from './listeners.js';
import { DEFAULT_ENVOY_OPTIONS, type EnvoyOptions } from './options.js';
import type { XdsResources } from './resources.js';
import { toRouteConfiguration } from './routes.js';
import { toCertificateSecret, toCredentialSecret } from './secrets.js';

/** IR → the five xDS resource lists. Pure and deterministic: the same IR gives the same JSON. */
export function toXdsResources(ir: IR, options: Partial<EnvoyOptions> = {}): XdsResources {
  const opts = { ...DEFAULT_ENVOY_OPTIONS, ...options };
  return {
    listeners: ir.listeners.map((l) => toEnvoyListener(l, opts)),
    routes: ir.listeners.map(toRouteConfiguration),
    clusters: ir.clusters.map((c) => toEnvoyCluster(c, opts)),
    endpoints: ir.clusters.filter((c) => c.discovery === 'eds').map(toClusterLoadAssignment),
    secrets: [...ir.certificates.map(toCertificateSecret), ...ir.credentials.map(toCredentialSecret)],
  };
}
