/** Deployment facts the Envoy stage needs that are not part of the user's objects. */
export interface EnvoyOptions {
  /** Address Envoy listeners bind to. */
  listenerAddress: string;
  /** CA bundle, on Envoy's filesystem, used to verify provider certificates. */
  trustedCaFile: string;
  /** Where Envoy reaches the AI extension (ext_proc over gRPC) that adapts every attempt on an AI Backend. */
  aiExtension: { host: string; port: number };
  /**
   * "namespace/name" of a Gateway -> the IP its listeners bind, for Gateways whose data plane has
   * an address of its own (the Host infrastructure's loopback addresses); others bind `listenerAddress`.
   */
  gatewayAddresses?: ReadonlyMap<string, string>;
}

export const DEFAULT_ENVOY_OPTIONS: EnvoyOptions = {
  listenerAddress: '0.0.0.0',
  trustedCaFile: '/etc/ssl/certs/ca-certificates.crt',
  // Next to Envoy: in the same pod (chart) or the same host (`switchyard serve`).
  aiExtension: { host: '127.0.0.1', port: 18001 },
};
