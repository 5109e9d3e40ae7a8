import type { JsonObject } from './resources.js';

export const READINESS_LISTENER_NAME = 'switchyard-readiness';
const ADMIN_CLUSTER_NAME = 'switchyard-admin';

/**
 * A static listener on `readyPort` (all addresses) that answers GET /ready from Envoy's admin
 * API and nothing else: a kubelet probe reaches the pod IP, but the admin API stays on loopback
 * because it can stop Envoy and dump its configuration. Admin /ready answers 200 only once Envoy
 * is LIVE, i.e. after its first listeners and clusters arrived over xDS, which a probe on a
 * Gateway listener port cannot tell (and a Gateway may have no listener yet).
 * Merge into the bootstrap's `static_resources`.
 */
export function readinessResources(adminPort: number, readyPort: number): { listener: JsonObject; cluster: JsonObject } {
  const listener: JsonObject = {
    name: READINESS_LISTENER_NAME,
    address: { socket_address: { address: '0.0.0.0', port_value: readyPort } },
    filter_chains: [{
      filters: [{
        name: 'envoy.filters.network.http_connection_manager',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
          stat_prefix: READINESS_LISTENER_NAME,
          route_config: {
            name: READINESS_LISTENER_NAME,
            virtual_hosts: [{
              name: 'readiness',
              domains: ['*'],
              routes: [{ match: { path: '/ready', headers: [{ name: ':method', string_match: { exact: 'GET' } }] }, route: { cluster: ADMIN_CLUSTER_NAME } }],
            }],
          },
          http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
        },
      }],
    }],
  };
  const cluster: JsonObject = {
    name: ADMIN_CLUSTER_NAME,
    type: 'STATIC',
    connect_timeout: '1s',
    load_assignment: {
      cluster_name: ADMIN_CLUSTER_NAME,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } } }] }],
    },
  };
  return { listener, cluster };
}
