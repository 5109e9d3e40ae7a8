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
  aiExtension: AiExtensionAddress;
  /** Per-request records on Envoy's stdout from every Gateway listener: `json` lines, or `off`. */
  accessLog: AccessLogFormat;
  /** OTLP/gRPC receiver for traces; absent: Envoy traces nothing. */
  otlp?: OtlpEndpoint;
}

/**
 * TCP, or a Unix socket (`socket`, a path on Envoy's host): `serve` running its own Envoys puts the
 * extension on a socket in its private state directory, so no other local user can ask it for an
 * attempt's key (README, "Security model").
 */
export type AiExtensionAddress = { host: string; port: number } | { socket: string };

/** The extension's TCP address by default: beside Envoy, in the same pod (chart) or on the same host. */
export const DEFAULT_AI_EXTENSION_ADDRESS = { host: '127.0.0.1', port: 18001 } as const;

export const DEFAULT_ENVOY_OPTIONS: EnvoyOptions = {
  listenerAddress: '0.0.0.0',
  trustedCaFile: '/etc/ssl/certs/ca-certificates.crt',
  aiExtension: DEFAULT_AI_EXTENSION_ADDRESS,
  accessLog: 'json',
};
