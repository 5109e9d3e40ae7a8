/**
 * The five Envoy resource kinds Switchyard serves, in proto3 JSON form: snake_case field names
 * (what Envoy's /config_dump prints), `@type` on every Any, durations as "1.5s" strings,
 * google.protobuf.Struct as plain JSON, wrapper types (UInt32Value...) as bare values,
 * 64-bit integers as strings or numbers, enums by name.
 */
export const TypeUrl = {
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
} as const;

export type ResourceKind = keyof typeof TypeUrl;
export type TypeUrlValue = (typeof TypeUrl)[ResourceKind];

/** Order in which a change is pushed so Envoy never references what it has not received yet. */
export const PUSH_ORDER: readonly ResourceKind[] = ['cluster', 'endpoint', 'secret', 'listener', 'route'];

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** One Envoy resource in proto3 JSON form; always carries its `@type`. */
export type EnvoyResource = JsonObject & { '@type': string };

export interface XdsResources {
  listeners: readonly EnvoyResource[];
  routes: readonly EnvoyResource[];
  clusters: readonly EnvoyResource[];
  endpoints: readonly EnvoyResource[];
  secrets: readonly EnvoyResource[];
}

export const KIND_FIELD: Record<ResourceKind, keyof XdsResources> = {
  listener: 'listeners',
  route: 'routes',
  cluster: 'clusters',
  endpoint: 'endpoints',
  secret: 'secrets',
};

export function kindOfTypeUrl(typeUrl: string): ResourceKind | undefined {
  for (const [kind, url] of Object.entries(TypeUrl) as [ResourceKind, string][]) {
    if (url === typeUrl) return kind;
  }
  return undefined;
}

/** The xDS resource name: ClusterLoadAssignment is named by `cluster_name`, the rest by `name`. */
export function resourceName(resource: EnvoyResource): string {
  const name = resource['cluster_name'] ?? resource['name'];
  if (typeof name !== 'string' || name === '') {
    throw new Error(`Envoy resource of type ${resource['@type']} has no name`);
  }
  return name;
}

/**
 * `value`, frozen through and through: for a part that many resources share by reference
 * (built once instead of once per resource), so that an edit meant for one resource throws
 * instead of changing them all.
 */
export function deepFrozen<T extends JsonValue>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const item of Object.values(value)) deepFrozen(item);
    Object.freeze(value);
  }
  return value;
}
