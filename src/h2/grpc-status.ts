import { encodeHeaderBlock } from './hpack.js';

/**
 * A gRPC call's status as gRPC over HTTP/2 carries it, for the two servers on h2-connection.ts
 * (the xDS server's src/xds/h2-transport.ts and the AI extension's grpc-server.ts).
 */

/** gRPC status codes used here (grpc/doc/statuscodes.md). */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** grpc-message: bytes outside printable ASCII, and '%', percent-encoded (gRPC over HTTP/2, "Responses"). */
export function encodeGrpcMessage(message: string): string {
  return message.replace(/[^\x20-\x24\x26-\x7e]+/gu, (run) => [...Buffer.from(run)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

const TRAILERS_OK = encodeHeaderBlock([['grpc-status', '0']]);

/** The trailers of a call that answered: its status, and grpc-message when `message` is given. */
export function grpcTrailers(code: number, message: string | undefined): Buffer {
  if (code === GrpcCode.OK && message === undefined) return TRAILERS_OK;
  return encodeHeaderBlock(message === undefined ? [['grpc-status', String(code)]] : [['grpc-status', String(code)], ['grpc-message', encodeGrpcMessage(message)]]);
}

/** The one header block of a call that fails before any answer (gRPC "Trailers-Only"). */
export function trailersOnlyBlock(code: number, message: string): Buffer {
  return encodeHeaderBlock([
    [':status', '200'],
    ['content-type', 'application/grpc'],
    ['grpc-status', String(code)],
    ['grpc-message', encodeGrpcMessage(message)],
  ]);
}
