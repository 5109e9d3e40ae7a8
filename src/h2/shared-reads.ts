import { Socket } from 'node:net';

/**
 * Socket reads into one buffer for the whole process, for the HTTP/2 servers (h2-connection.ts).
 *
 * A socket read the usual way ('data') costs libuv a 64 KiB allocation, a realloc to the bytes
 * read, then an ArrayBuffer and a Buffer to collect: at an xDS push to a thousand streams, each
 * ACK is one read, one of each. Node's `onread` option reads into a buffer given instead, but
 * only a Socket constructed by the caller takes it (net.createServer has no such option for the
 * sockets it accepts): an accepted socket, created paused (`pauseOnConnect`), has its handle
 * taken over by a Socket constructed with it and `onread`, the route Node's own `net` takes to
 * build the accepted one. One buffer serves every connection: a read is handled to its end, on
 * the main thread, before the next one lands. So whatever keeps bytes past the read copies them
 * (see isSharedRead).
 */

/** As large as libuv's own read (64 KiB): an ACK storm reads no more often than before. */
const READ_BUFFER_BYTES = 64 * 1024;
const shared = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);

/** Called with each read: `bytes[0, length)`, valid until the call returns. */
export type ReadSink = (bytes: Buffer, length: number) => void;

interface Route {
  sink: ReadSink | undefined;
}

const routes = new WeakMap<Socket, Route>();

/** The private parts of net.Socket this module relies on; checked before use. */
interface SocketInternals {
  _handle?: { readStart?: unknown; useUserBuffer?: unknown } | null;
  _server?: unknown;
  server?: unknown;
}

/**
 * The socket a server accepted paused, now reading into the shared buffer: a new Socket on its
 * handle (use it, not `accepted`, from here on). When that cannot be done (a TLS socket, a Node
 * without these internals) `accepted` itself, resumed, reading as usual.
 */
export function withSharedReads(accepted: Socket): Socket {
  const internals = accepted as unknown as SocketInternals;
  const handle = internals._handle;
  if ((accepted as Socket & { encrypted?: boolean }).encrypted === true || handle == null || typeof handle.useUserBuffer !== 'function' || typeof handle.readStart !== 'function') {
    accepted.resume();
    return accepted;
  }
  const route: Route = { sink: undefined };
  // The accepted Socket lets go of the handle: nothing of it may close or read it any more.
  internals._handle = null;
  const socket = new Socket({
    handle,
    allowHalfOpen: accepted.allowHalfOpen,
    readable: true,
    writable: true,
    onread: {
      buffer: shared,
      callback: (length: number): boolean => {
        route.sink?.(shared, length);
        return true;
      },
    },
  } as unknown as ConstructorParameters<typeof Socket>[0]);
  // The server counts its connections down as each socket closes (server.close() waits for 0):
  // it counted the accepted one, which never closes now; this one does.
  const adopted = socket as unknown as SocketInternals;
  adopted._server = internals._server;
  adopted.server = internals.server;
  routes.set(socket, route);
  return socket;
}

/** Hands the socket's reads to `sink` when it reads into the shared buffer (withSharedReads); false otherwise. */
export function routeSharedReads(socket: Socket, sink: ReadSink): boolean {
  const route = routes.get(socket);
  if (route === undefined) return false;
  route.sink = sink;
  return true;
}

/** Bytes that are a view of the shared read buffer: copy them to keep them past the read. */
export function isSharedRead(bytes: Uint8Array): boolean {
  return bytes.buffer === shared.buffer;
}
