import { TypeUrl, type EnvoyResource, type JsonObject } from '../../src/envoy/resources.js';

/**
 * An HTTP listener on 127.0.0.1:`port`, written out by hand (the protocol tests exercise the
 * xDS server, not the translator). `routeSpecifier` is the connection manager's route_specifier:
 * `rdsOverAds(name)`, or `{ route_config: {...} }` inline.
 */
export function httpListener(name: string, port: number, statPrefix: string, routeSpecifier: JsonObject): EnvoyResource {
  return {
    '@type': TypeUrl.listener,
    name,
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: statPrefix,
              ...routeSpecifier,
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
            },
          },
        ],
      },
    ],
  };
}

/** Routes from route configuration `name`, asked for over the ADS stream. */
export function rdsOverAds(name: string): JsonObject {
  return { rds: { route_config_name: name, config_source: { ads: {}, resource_api_version: 'V3' } } };
}
