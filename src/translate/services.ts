import { isIP } from 'node:net';
import { endpointUsable, SERVICE_NAME_LABEL, type EndpointPort, type EndpointSlice } from '../api/endpointslice.js';
import { servicePort, type Service, type ServicePort } from '../api/service.js';
import type { ClusterIR, MemberIR, RetryPlan } from '../ir/model.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from './backends.js';
import { DEFAULT_BACKOFF_MS, DEFAULT_HOST_SELECTION_ATTEMPTS } from './retry.js';

/** Retries after the first attempt when an HTTPRoute rule has a `retry` block without `attempts`. */
export const DEFAULT_SERVICE_RETRY_ATTEMPTS = 2;

export function clusterNameForService(namespace: string, name: string, port: number): string {
  return `service/${namespace}/${name}/${port}`;
}

export type ServiceResolution =
  | { ok: true; cluster: ClusterIR }
  | { ok: false; reason: 'BackendNotFound' | 'UnsupportedValue'; message: string };

/**
 * The retry plan a Service starts from. A Service is one pool of equivalent endpoints, not a
 * failover chain, so it gets no retries unless the HTTPRoute rule asks for them (`retry`).
 */
export function serviceRetryPlan(routeAsksForRetries: boolean): RetryPlan {
  return {
    attempts: routeAsksForRetries ? DEFAULT_SERVICE_RETRY_ATTEMPTS : 0,
    retryOn: ['connect-failure', 'refused-stream', 'reset'],
    statusCodes: [],
    backoff: { baseMs: DEFAULT_BACKOFF_MS },
    avoidPreviousHosts: true,
    hostSelectionAttempts: DEFAULT_HOST_SELECTION_ATTEMPTS,
  };
}

/**
 * The EndpointSlice port that carries a Service port. The EndpointSlice controller names slice
 * ports after the Service port (unnamed: ""); slices written by hand may instead give only the
 * target port number.
 */
function slicePortFor(ports: readonly EndpointPort[], sp: ServicePort): number | undefined {
  const tcp = ports.filter((p) => (p.protocol ?? 'TCP') === 'TCP' && typeof p.port === 'number');
  const byName = tcp.find((p) => (p.name ?? '') === (sp.name ?? ''));
  if (byName?.port) return byName.port;
  const target = typeof sp.targetPort === 'number' ? sp.targetPort : sp.targetPort === undefined ? sp.port : undefined;
  return target === undefined ? undefined : tcp.find((p) => p.port === target)?.port ?? undefined;
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Core Services and their EndpointSlices, turned into one EDS cluster per referenced Service
 * port (`service/<namespace>/<name>/<port>`) with a single priority level of usable endpoints.
 * Pure: the same Services and slices give the same clusters.
 */
export class ServiceBackends {
  private readonly services = new Map<string, Service>();
  private readonly slices = new Map<string, EndpointSlice[]>();
  private readonly resolved = new Map<string, ServiceResolution>();

  constructor(services: readonly Service[], endpointSlices: readonly EndpointSlice[]) {
    for (const s of services) this.services.set(`${s.metadata.namespace}/${s.metadata.name}`, s);
    for (const slice of endpointSlices) {
      const owner = slice.metadata.labels?.[SERVICE_NAME_LABEL];
      if (!owner) continue;
      const key = `${slice.metadata.namespace}/${owner}`;
      const list = this.slices.get(key);
      if (list) list.push(slice);
      else this.slices.set(key, [slice]);
    }
    for (const list of this.slices.values()) list.sort((a, b) => byCodeUnits(a.metadata.name, b.metadata.name));
  }

  /** The cluster for Service `namespace/name` port `port`, or why there is none. */
  resolve(namespace: string, name: string, port: number | undefined): ServiceResolution {
    const key = `${namespace}/${name}/${port ?? ''}`;
    let r = this.resolved.get(key);
    if (!r) {
      r = this.build(namespace, name, port);
      this.resolved.set(key, r);
    }
    return r;
  }

  /** The clusters among those resolved so far whose names are in `names`. */
  clustersNamed(names: ReadonlySet<string>): ClusterIR[] {
    const out: ClusterIR[] = [];
    for (const r of this.resolved.values()) if (r.ok && names.has(r.cluster.name)) out.push(r.cluster);
    return out;
  }

  private build(namespace: string, name: string, port: number | undefined): ServiceResolution {
    const where = `backendRef Service ${namespace}/${name}`;
    const service = this.services.get(`${namespace}/${name}`);
    if (!service) return { ok: false, reason: 'BackendNotFound', message: `${where} not found` };
    if (port === undefined) {
      return { ok: false, reason: 'UnsupportedValue', message: `${where} has no port: a backendRef to a Service must set port (one of ${portList(service)})` };
    }
    const sp = servicePort(service, port);
    if (!sp) {
      return { ok: false, reason: 'BackendNotFound', message: `${where}: the Service has no TCP port ${port} (it exposes ${portList(service)})` };
    }
    const members: MemberIR[] = [];
    const seen = new Set<string>();
    const key = `${namespace}/${name}`;
    for (const slice of this.slices.get(key) ?? []) {
      // FQDN slices would need DNS resolution per endpoint; EDS endpoints are IP addresses.
      if (slice.addressType === 'FQDN') continue;
      const target = slicePortFor(slice.ports, sp);
      if (target === undefined) continue;
      for (const e of slice.endpoints) {
        const address = e.addresses[0];
        if (address === undefined || isIP(address) === 0 || !endpointUsable(e)) continue;
        const id = `${address}:${target}`;
        if (seen.has(id)) continue;
        seen.add(id);
        members.push({
          name: id,
          address,
          port: target,
          // No hostname: the client's Host header goes to a Service unchanged.
          hostname: '',
          weight: 1,
          tls: false,
          metadata: { backend: key, member: e.targetRef?.name ?? id, priority: 0 },
        });
      }
    }
    members.sort((a, b) => byCodeUnits(a.address, b.address) || a.port - b.port);
    return {
      ok: true,
      cluster: {
        name: clusterNameForService(namespace, name, port),
        backend: { kind: 'Service', namespace, name },
        discovery: 'eds',
        connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
        // No usable endpoint still gets a cluster: Envoy answers 503 "no healthy upstream".
        priorities: members.length > 0 ? [{ level: 0, members }] : [],
      },
    };
  }
}

function portList(service: Service): string {
  const ports = (service.spec.ports ?? []).map((p) => (p.name ? `${p.port} (${p.name})` : String(p.port)));
  return ports.length > 0 ? ports.join(', ') : 'no ports';
}
