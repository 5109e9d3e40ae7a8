import { createRequire } from 'node:module';

/**
 * One gRPC frame per shared response, written as is to every stream.
 *
 * grpc-js frames each message it sends into a new Buffer (5-byte prefix + a copy of the body,
 * BaseServerInterceptingCall.serializeMessage), so a response shared by a thousand streams
 * would still cost a thousand copies, held until each client has read its own: at 10,000
 * Backends, 15 MB per client (issue 9). Node's HTTP/2 writes a Buffer without copying it, so a
 * message framed once here, and marked as framed, is passed through untouched instead.
 */

/** On a Buffer: it already holds the gRPC length prefix. Global, so every copy of this module agrees. */
const FRAMED = Symbol.for('switchyard.dev/grpc-framed-message');
const INSTALLED = Symbol.for('switchyard.dev/grpc-framing-installed');

type Serialize = (this: unknown, value: unknown) => Buffer;
interface CallPrototype {
  serializeMessage?: Serialize;
  [INSTALLED]?: true;
}

let active: boolean | undefined;

/**
 * Teaches grpc-js to pass framed messages through, once per process. False when this grpc-js
 * has no such hook (another major version): messages are then sent unframed, copied per
 * stream as grpc-js does by default.
 */
export function sharedFraming(): boolean {
  if (active !== undefined) return active;
  try {
    const require = createRequire(import.meta.url);
    const internals = require('@grpc/grpc-js/build/src/server-interceptors.js') as { BaseServerInterceptingCall?: { prototype: CallPrototype } };
    const proto = internals.BaseServerInterceptingCall?.prototype;
    const original = proto?.serializeMessage;
    if (proto === undefined || typeof original !== 'function') {
      active = false;
      return active;
    }
    if (proto[INSTALLED] !== true) {
      proto.serializeMessage = function serializeMessage(this: unknown, value: unknown): Buffer {
        if (value instanceof Buffer && (value as Buffer & { [FRAMED]?: true })[FRAMED] === true) return value;
        return original.call(this, value);
      };
      proto[INSTALLED] = true;
    }
    active = true;
  } catch {
    active = false;
  }
  return active;
}

const framedOnce = new WeakMap<Buffer, Buffer>();

/**
 * `message` as one gRPC frame (uncompressed, length-prefixed: gRPC over HTTP/2,
 * "Length-Prefixed-Message"), the same Buffer for the same message for as long as it lives.
 */
export function framed(message: Buffer): Buffer {
  let frame = framedOnce.get(message);
  if (frame === undefined) {
    frame = Buffer.allocUnsafe(message.length + 5);
    frame.writeUInt8(0, 0);
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    Object.defineProperty(frame, FRAMED, { value: true });
    framedOnce.set(message, frame);
  }
  return frame;
}
