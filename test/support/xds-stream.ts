import { TypeUrl, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import type { StreamHooks } from '../../src/xds/client-state.js';

/** What the unit tests of one ADS stream (SotW and delta) serve, and how they see what it reports. */

/** An EDS cluster; another `timeout` gives it another version. */
export function cluster(name: string, timeout = '1s'): EnvoyResource {
  return { '@type': TypeUrl.cluster, name, type: 'EDS', connect_timeout: timeout, eds_cluster_config: { eds_config: { ads: {} } } };
}

/** The assignment of cluster `name`; another `port` gives it another version. */
export function assignment(name: string, port = 1000): EnvoyResource {
  return {
    '@type': TypeUrl.endpoint,
    cluster_name: name,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
  };
}

/** Clusters a and b with their assignments, and nothing else, unless overridden. */
export function resources(overrides: Partial<XdsResources> = {}): XdsResources {
  return { listeners: [], routes: [], clusters: [cluster('a'), cluster('b')], endpoints: [assignment('a'), assignment('b')], secrets: [], ...overrides };
}

/** Route configuration `r`, sending every request to `cluster`. */
export function route(cluster: string): EnvoyResource {
  return {
    '@type': TypeUrl.route,
    name: 'r',
    virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }],
  };
}

/** Hooks that note what a stream reports: `identify <node>`, `ack <Kind> <version>`, `nack <Kind> <version> <message>`. */
export function recordingHooks(): { hooks: StreamHooks; events: string[]; fleet: string[] } {
  const events: string[] = [];
  /** What the stream tells the fleet's ACK ledger: `ack|holds <Kind> <view version>`. */
  const fleet: string[] = [];
  const hooks: StreamHooks = {
    identify: (node) => events.push(`identify ${node.id}`),
    selected: () => undefined,
    sent: () => undefined,
    acked: (typeUrl, version, viewVersion) => {
      events.push(`ack ${typeUrl.split('.').pop()} ${version}`);
      fleet.push(`ack ${typeUrl.split('.').pop()} ${viewVersion}`);
    },
    holds: (typeUrl, viewVersion) => fleet.push(`holds ${typeUrl.split('.').pop()} ${viewVersion}`),
    nacked: (typeUrl, version, _viewVersion, detail) => events.push(`nack ${typeUrl.split('.').pop()} ${version} ${detail.message}`),
  };
  return { hooks, events, fleet };
}

/**
 * `count` EDS Clusters whose names are padded with `pad` characters, one of them carrying
 * `generation` in its timeout: a large CDS response that changes with the generation.
 */
export function paddedClusters(generation: number, count: number, pad: number): XdsResources {
  const list: EnvoyResource[] = Array.from({ length: count }, (_, i) => ({
    '@type': TypeUrl.cluster,
    name: `pool-${i}-${'x'.repeat(pad)}`,
    type: 'EDS',
    connect_timeout: i === 0 ? `${generation}s` : '1s',
    eds_cluster_config: { eds_config: { ads: {} } },
  }));
  return { listeners: [], routes: [], clusters: list, endpoints: [], secrets: [] };
}

/** One gRPC message frame: no compression flag, 4-byte length, the message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}
