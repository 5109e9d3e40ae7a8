/** Deployment facts the Envoy stage needs that are not part of the user's objects. */
export interface EnvoyOptions {
  /** Address Envoy listeners bind to. */
  listenerAddress: string;
  /** CA bundle, on Envoy's filesystem, used to verify provider certificates. */
  trustedCaFile: string;
}

export const DEFAULT_ENVOY_OPTIONS: EnvoyOptions = {
  listenerAddress: '0.0.0.0',
  trustedCaFile: '/etc/ssl/certs/ca-certificates.crt',
};
