import type { PeerCertificate } from 'node:tls';

/**
 * Who is at the other end of an ADS stream, decided once when the stream opens from how the
 * connection authenticated, never from what the client says (its node id and cluster are for
 * logs and status only):
 *
 * - a stream on the server's private Unix socket (`XdsServer.listenUnix`, in a directory only
 *   this user can enter) is the in-process AI extension of `serve`;
 * - a TLS stream whose client certificate the server verified against its CA (mTLS) has the role
 *   named by the certificate's URI SAN `spiffe://switchyard.dev/role/<role>`;
 * - anything else (plaintext TCP, TLS without a client certificate, a certificate without
 *   exactly one role URI) is anonymous.
 */

export const ROLES = ['controller', 'envoy', 'ai-extension'] as const;
export type Role = (typeof ROLES)[number];

/** The URI SAN prefix that names a role in a certificate Switchyard's CA issues. */
export const ROLE_URI_PREFIX = 'spiffe://switchyard.dev/role/';

/** The URI SAN of `role`'s certificates. */
export function roleUri(role: Role): string {
  return `${ROLE_URI_PREFIX}${role}`;
}

/** The node cluster the AI extension announces: for logs and status, it grants nothing. */
export const AI_EXTENSION_NODE_CLUSTER = 'switchyard-ai-extension';

export interface StreamIdentity {
  readonly role: Role | 'anonymous';
  /** How the stream authenticated (or did not), for logs. */
  readonly via: 'unix-socket' | 'mtls' | 'tls' | 'plaintext';
}

export const UNIX_SOCKET_IDENTITY: StreamIdentity = { role: 'ai-extension', via: 'unix-socket' };

/** Streams on the socket of the Envoys a process runs itself (XdsServer.listenEnvoySocket): Envoys, never the extension. */
export const ENVOY_SOCKET_IDENTITY: StreamIdentity = { role: 'envoy', via: 'unix-socket' };

/** What grpc-js tells about a TCP call's transport (`call.getAuthContext()`). */
export interface TransportAuth {
  readonly transportSecurityType?: string;
  readonly sslPeerCertificate?: Pick<PeerCertificate, 'subjectaltname'>;
}

/**
 * The identity of a call on the TCP port. grpc-js reports a peer certificate only when the
 * handshake verified it against the server's CA (`authorized`), so its SAN can be trusted.
 */
export function identityOfTcpCall(auth: TransportAuth): StreamIdentity {
  if (auth.transportSecurityType !== 'ssl') return { role: 'anonymous', via: 'plaintext' };
  const certificate = auth.sslPeerCertificate;
  if (certificate === undefined) return { role: 'anonymous', via: 'tls' };
  const role = roleOfSubjectAltName(certificate.subjectaltname);
  return { role: role ?? 'anonymous', via: 'mtls' };
}

/**
 * The role named in a certificate's subjectAltName as Node prints it
 * (`DNS:a, URI:spiffe://switchyard.dev/role/envoy`). Two role URIs name no role: a certificate
 * is one identity, and guessing which one was meant would grant the stronger.
 */
export function roleOfSubjectAltName(subjectAltName: string | undefined): Role | undefined {
  if (subjectAltName === undefined) return undefined;
  const roles = new Set<string>();
  for (const entry of subjectAltName.split(', ')) {
    // Node quotes a value that holds a comma or a quote (RFC 4514 style); such a value is no role URI.
    if (!entry.startsWith(`URI:${ROLE_URI_PREFIX}`)) continue;
    roles.add(entry.slice(`URI:${ROLE_URI_PREFIX}`.length));
  }
  if (roles.size !== 1) return undefined;
  const [name] = roles;
  return ROLES.find((role) => role === name);
}
