import type { AccessLogFormat } from '../api/gateway.js';
import type { OtlpEndpoint } from './tracing.js';

/** Deployment facts the Envoy stage needs that are not part of the user's objects. */
export interface EnvoyOptions {
  /** Address Envoy listeners bind to, unless gatewayAddresses names one for their Gateway. */
  listenerAddress: string;
  /**
   * "namespace/name" → the address that Gateway's listeners bind to: each Gateway's own Envoy on
   * its own IP (the Host infrastructure runs one per Gateway on a loopback address).
   */
  gatewayAddresses?: ReadonlyMap<string, string>;
  /** CA bundle, on Envoy's filesystem, used to verify provider certificates. */
  trustedCaFile: string;
  /** Where Envoy reaches the AI extension (ext_proc over gRPC) that adapts every attempt on an AI Backend. */
  aiExtension: { host: string; port: number };
  /** Per-request records on Envoy's stdout from every Gateway listener: `json` lines, or `off`. */
  accessLog: AccessLogFormat;
  /** OTLP/gRPC receiver for traces; absent: Envoy traces nothing. */
  otlp?: OtlpEndpoint;
}

export const DEFAULT_ENVOY_OPTIONS: EnvoyOptions = {
  listenerAddress: '0.0.0.0',
  trustedCaFile: '/etc/ssl/certs/ca-certificates.crt',
  // Next to Envoy: in the same pod (chart) or the same host (`switchyard serve`).
  aiExtension: { host: '127.0.0.1', port: 18001 },
  accessLog: 'json',
};
