/**
 * Turns the xDS resources of one translation into a static Envoy bootstrap, so the real Envoy
 * can check them with `--mode validate` without an xDS server: RDS becomes an inline
 * route_config, EDS clusters get their ClusterLoadAssignment inline, SDS certificate
 * references point at static secrets.
 */
import { REGEX_PROGRAM_SIZE_LIMIT } from '../../src/api/httproute.js';
import type { EnvoyResource, JsonObject, JsonValue, XdsResources } from '../../src/envoy/resources.js';

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Static resources are typed fields, not Any: they must not carry `@type`. */
function untyped(resource: EnvoyResource): JsonObject {
  const { '@type': _type, ...rest } = structuredClone(resource);
  return rest;
}

function requireObject(v: JsonValue | undefined, what: string): JsonObject {
  if (!isObject(v)) throw new Error(`static bootstrap: expected ${what} to be an object`);
  return v;
}

function staticListener(listener: EnvoyResource, routes: ReadonlyMap<string, JsonObject>): JsonObject {
  const out = untyped(listener);
  const chains = out.filter_chains;
  if (!Array.isArray(chains)) throw new Error(`static bootstrap: listener ${String(out.name)} has no filter_chains`);
  for (const chain of chains) {
    const c = requireObject(chain, 'a filter chain');
    for (const filter of Array.isArray(c.filters) ? c.filters : []) {
      const hcm = requireObject(requireObject(filter, 'a filter').typed_config, 'typed_config');
      const rds = hcm.rds;
      if (isObject(rds)) {
        const name = String(rds.route_config_name);
        const route = routes.get(name);
        if (!route) throw new Error(`static bootstrap: listener ${String(out.name)} names route configuration ${name}, which the translation did not produce`);
        delete hcm.rds;
        hcm.route_config = structuredClone(route);
      }
    }
    const socket = c.transport_socket;
    if (isObject(socket)) {
      const common = requireObject(requireObject(socket.typed_config, 'transport_socket.typed_config').common_tls_context, 'common_tls_context');
      const sds = common.tls_certificate_sds_secret_configs;
      // An SdsSecretConfig without sds_config names a static secret.
      if (Array.isArray(sds)) common.tls_certificate_sds_secret_configs = sds.map((s) => ({ name: requireObject(s, 'an SDS secret config').name ?? '' }));
    }
  }
  return out;
}

function staticCluster(cluster: EnvoyResource, endpoints: ReadonlyMap<string, JsonObject>): JsonObject {
  const out = untyped(cluster);
  if (out.type !== 'EDS') return out;
  const name = String(out.name);
  const cla = endpoints.get(name);
  if (!cla) throw new Error(`static bootstrap: EDS cluster ${name} has no ClusterLoadAssignment in the translation`);
  delete out.eds_cluster_config;
  out.type = 'STATIC';
  out.load_assignment = structuredClone(cla);
  return out;
}

/** A real key pair for every serving certificate: Envoy parses PEM even in validate mode, golden inputs carry dummies. */
export interface PemPair {
  certificateChain: string;
  privateKey: string;
}

function staticSecret(secret: EnvoyResource, pem: PemPair | undefined): JsonObject {
  const out = untyped(secret);
  if (pem && isObject(out.tls_certificate)) {
    out.tls_certificate = { certificate_chain: { inline_string: pem.certificateChain }, private_key: { inline_string: pem.privateKey } };
  }
  return out;
}

export function staticBootstrap(xds: XdsResources, pem?: PemPair): JsonObject {
  const routes = new Map(xds.routes.map((r) => [String(r.name), untyped(r)]));
  const endpoints = new Map(xds.endpoints.map((e) => [String(e.cluster_name), untyped(e)]));
  return {
    node: { id: 'golden', cluster: 'golden' },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
    // As `switchyard bootstrap` sets it: the translator admits regexes up to this RE2 program size.
    layered_runtime: { layers: [{ name: 'static', static_layer: { 're2.max_program_size.error_level': REGEX_PROGRAM_SIZE_LIMIT } }] },
    static_resources: {
      listeners: xds.listeners.map((l) => staticListener(l, routes)),
      clusters: xds.clusters.map((c) => staticCluster(c, endpoints)),
      secrets: xds.secrets.map((s) => staticSecret(s, pem)),
    },
  };
}
