import * as http2 from 'node:http2';
import { connect as connectTcp, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as connectTls, createServer as createTlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage } from '../../src/envoy/proto.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { H2Error } from '../../src/h2/h2-connection.js';
import { HpackDecoder, encodeHeaderBlock, type HeaderList } from '../../src/h2/hpack.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { tlsAuth } from '../../src/xds/h2-transport.js';
import { identityOfTcpCall, roleUri } from '../../src/xds/identity.js';
import { XdsServer } from '../../src/xds/server.js';
import { createPki, type Pki } from '../support/certs.js';
import { H2_FRAME as T, H2_PREFACE, h2Frame, parseFrames, type H2ReadFrame as Frame } from '../support/h2-frames.js';
import { waitFor } from '../support/wait.js';
import { grpcFrame, paddedClusters } from '../support/xds-stream.js';

/**
 * The xDS server's own gRPC over HTTP/2 transport (src/xds/h2-transport.ts) against clients no
 * library would be: each hostile one is cut or refused while a well-behaved client on the same
 * server keeps being served; large responses respect a small client window; keepalive cuts a
 * peer that answers no PING (and only it); TLS grants nothing for a certificate the handshake did
 * not verify.
 */

const SOTW_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const REQUEST_HEADERS = encodeHeaderBlock([[':method', 'POST'], [':scheme', 'http'], [':path', SOTW_PATH], [':authority', 'xds'], ['content-type', 'application/grpc'], ['te', 'trailers']]);
const START = Buffer.concat([H2_PREFACE, h2Frame(T.SETTINGS, 0, 0), h2Frame(T.SETTINGS, 1, 0)]);
const CLUSTERS = 10_000;

/** A raw TCP client that reads everything and keeps it; it answers nothing (no PING, no SETTINGS ack beyond START). */
async function rawClient(port: number): Promise<{ socket: Socket; frames: () => Frame[]; closed: Promise<void> }> {
  const socket = connectTcp(port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, frames: () => parseFrames(Buffer.concat(chunks)), closed };
}

function goawayCode(frames: Frame[]): number | undefined {
  return frames.find((f) => f.type === T.GOAWAY)?.payload.readUInt32BE(4);
}

const cdsRequest = (node: string): Buffer => grpcFrame(encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', { node: { id: node }, type_url: TypeUrl.cluster }));

/** A SotW CDS stream on node:http2 (which answers PINGs): the responses' cluster counts, and the status when it ends. */
function sotwStream(session: http2.ClientHttp2Session, node: string, headers: http2.OutgoingHttpHeaders = {}): { counts: number[]; status: Promise<{ code: string; message: string }>; stream: http2.ClientHttp2Stream } {
  const stream = session.request({ ':method': 'POST', ':path': SOTW_PATH, 'content-type': 'application/grpc', te: 'trailers', ...headers });
  const counts: number[] = [];
  let pending = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const length = pending.readUInt32BE(1);
      const response = decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', pending.subarray(5, 5 + length));
      counts.push(Array.isArray(response['resources']) ? response['resources'].length : 0);
      pending = pending.subarray(5 + length);
    }
  });
  const status = new Promise<{ code: string; message: string }>((resolve, reject) => {
    const fromHeaders = (h: http2.IncomingHttpHeaders): boolean => {
      if (h['grpc-status'] === undefined) return false;
      resolve({ code: String(h['grpc-status']), message: decodeURIComponent(String(h['grpc-message'] ?? '')) });
      return true;
    };
    stream.once('response', (h) => fromHeaders(h));
    stream.once('trailers', (h) => fromHeaders(h));
    stream.once('error', reject);
    stream.once('close', () => reject(new Error(`the stream closed without a status (RST_STREAM ${stream.rstCode})`)));
  });
  status.catch(() => undefined);
  return { counts, status, stream };
}

async function session(port: number, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  const s = http2.connect(`http://127.0.0.1:${port}`, { settings });
  s.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('error', reject);
  });
  return s;
}

describe("the xDS server's own HTTP/2 transport", () => {
  const cache = new SnapshotCache();
  const server = new XdsServer({ cache, rehearsePushes: false, keepalive: { timeMs: 200, timeoutMs: 400 } });
  let port = 0;
  /** A well-behaved client on the same server all along, whose stream must keep being served. */
  let good: http2.ClientHttp2Session;
  let goodStream: ReturnType<typeof sotwStream>;
  let generation = 1;

  /** Pushes a change and waits for the good client to have it: the server still serves. */
  async function stillServes(): Promise<void> {
    const before = goodStream.counts.length;
    cache.setResources(paddedClusters(++generation, 3, 10));
    goodStream.stream.write(cdsRequest('good'));
    await waitFor(() => goodStream.counts.length > before, { what: 'the well-behaved client to be pushed the change' });
  }

  beforeAll(async () => {
    cache.setResources(paddedClusters(generation, 3, 10));
    port = await server.start({ port: 0, host: '127.0.0.1' });
    good = await session(port);
    goodStream = sotwStream(good, 'good');
    goodStream.stream.write(cdsRequest('good'));
    await waitFor(() => goodStream.counts.length === 1, { what: 'the well-behaved client to get its first response' });
  });

  afterAll(async () => {
    good.destroy();
    await server.stop();
  });

  it('a multi-MB response over a client window of 64 KiB arrives whole, in frames of the size the client allows', async () => {
    cache.setResources(paddedClusters(++generation, CLUSTERS, 60));
    const s = await session(port, { initialWindowSize: 65_535, maxFrameSize: 16_384 });
    try {
      const stream = sotwStream(s, 'small-window');
      stream.stream.write(cdsRequest('small-window'));
      await waitFor(() => stream.counts.length === 1, { what: 'the multi-MB response', timeoutMs: 30_000 });
      expect(stream.counts).toEqual([CLUSTERS]);
    } finally {
      s.destroy();
    }
    await stillServes();
  }, 60_000);

  it('a message above 16 MiB ends its call with RESOURCE_EXHAUSTED; the connection and the other streams go on', async () => {
    const s = await session(port);
    try {
      const stream = sotwStream(s, 'oversized');
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(16 * 1024 * 1024 + 1, 1);
      stream.stream.write(prefix);
      const status = await stream.status;
      expect(status.code).toBe('8');
      const again = sotwStream(s, 'after-oversized');
      again.stream.write(cdsRequest('after-oversized'));
      await waitFor(() => again.counts.length === 1, { what: 'a new stream on the same connection to be served' });
    } finally {
      s.destroy();
    }
    await stillServes();
  });

  it('a compressed message without grpc-encoding ends its call with an error status', async () => {
    const s = await session(port);
    try {
      const stream = sotwStream(s, 'compressed');
      const message = cdsRequest('compressed');
      message[0] = 1;
      stream.stream.write(message);
      const status = await stream.status;
      expect(status.code).toBe('13');
      expect(status.message).toMatch(/compressed/u);
    } finally {
      s.destroy();
    }
  });

  it('an unknown method is answered UNIMPLEMENTED in the trailers', async () => {
    const s = await session(port);
    try {
      const stream = s.request({ ':method': 'POST', ':path': '/envoy.service.discovery.v3.AggregatedDiscoveryService/Nope', 'content-type': 'application/grpc', te: 'trailers' });
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('response', resolve));
      expect(headers['grpc-status']).toBe('12');
      stream.close();
    } finally {
      s.destroy();
    }
  });

  it('a rapid-reset client (streams opened and reset at once, past the budget) gets GOAWAY ENHANCE_YOUR_CALM and is cut', async () => {
    const client = await rawClient(port);
    const frames: Buffer[] = [START];
    const rst = Buffer.alloc(4);
    rst.writeUInt32BE(H2Error.CANCEL);
    // Budget: 1,000 resets then 33 a second; 1,500 in one write is past it whatever the timing.
    for (let i = 0; i < 1_500; i++) {
      const id = 2 * i + 1;
      frames.push(h2Frame(T.HEADERS, 0x4, id, REQUEST_HEADERS), h2Frame(T.RST_STREAM, 0, id, rst));
    }
    client.socket.write(Buffer.concat(frames));
    await client.closed;
    expect(goawayCode(client.frames())).toBe(H2Error.ENHANCE_YOUR_CALM);
    await stillServes();
  });

  it('a CONTINUATION flood (empty frames, no byte limit reached) gets GOAWAY ENHANCE_YOUR_CALM and is cut', async () => {
    const client = await rawClient(port);
    const flood = Array.from({ length: 200 }, () => h2Frame(T.CONTINUATION, 0, 1));
    client.socket.write(Buffer.concat([START, h2Frame(T.HEADERS, 0, 1, REQUEST_HEADERS.subarray(0, 3)), ...flood]));
    await client.closed;
    expect(goawayCode(client.frames())).toBe(H2Error.ENHANCE_YOUR_CALM);
    await stillServes();
  });

  it('keepalive cuts a peer that answers no PING, and keeps one that does', async () => {
    const silent = await rawClient(port);
    silent.socket.write(Buffer.concat([START, h2Frame(T.HEADERS, 0x4, 1, REQUEST_HEADERS), h2Frame(T.DATA, 0, 1, cdsRequest('silent'))]));
    await silent.closed;
    const pings = silent.frames().filter((f) => f.type === T.PING && (f.flags & 1) === 0);
    expect(pings.length).toBeGreaterThan(0);
    // The well-behaved client was connected through the same PINGs (node:http2 answers them).
    expect(good.closed || good.destroyed).toBe(false);
    await stillServes();
  });

  it('stop() ends each call with OK and sends GOAWAY before the connection closes', async () => {
    const other = new XdsServer({ cache, rehearsePushes: false });
    const otherPort = await other.start({ port: 0, host: '127.0.0.1' });
    const client = await rawClient(otherPort);
    client.socket.write(Buffer.concat([START, h2Frame(T.HEADERS, 0x4, 1, REQUEST_HEADERS), h2Frame(T.DATA, 0, 1, cdsRequest('stopped'))]));
    await waitFor(() => client.frames().some((f) => f.type === T.DATA && f.stream === 1), { what: 'the first response' });
    await other.stop();
    await client.closed;
    const frames = client.frames();
    const decoder = new HpackDecoder(4096, 64 * 1024);
    let status: string | undefined;
    let trailersAt = -1;
    frames.forEach((f, i) => {
      if (f.type !== T.HEADERS) return;
      const fields: HeaderList = decoder.decode(f.payload);
      const code = fields.find(([n]) => n === 'grpc-status')?.[1];
      if (code !== undefined) {
        status = code;
        trailersAt = i;
      }
    });
    expect(status).toBe('0');
    const goawayAt = frames.findIndex((f) => f.type === T.GOAWAY);
    expect(goawayAt).toBeGreaterThan(-1);
    expect(goawayCode(frames)).toBe(H2Error.NO_ERROR);
    expect(trailersAt).toBeLessThan(goawayAt);
  });
});

describe('TLS transport facts', () => {
  let pki: Pki;
  let otherPki: Pki;
  beforeAll(() => {
    pki = createPki('h2-tls');
    otherPki = createPki('h2-tls-other');
  });
  afterAll(() => {
    pki.remove();
    otherPki.remove();
  });

  async function authOf(clientDir: string): Promise<ReturnType<typeof tlsAuth>> {
    const serverDir = pki.issue(`server-${Math.random().toString(36).slice(2)}`, { san: ['IP:127.0.0.1'], usage: ['serverAuth'] });
    const read = (dir: string, file: string): Buffer => readFileSync(join(dir, file));
    // A server that asks for a certificate but lets the handshake through unverified: the facts must still grant nothing.
    const server = createTlsServer({ cert: read(serverDir, 'tls.crt'), key: read(serverDir, 'tls.key'), ca: readFileSync(pki.caFile), requestCert: true, rejectUnauthorized: false });
    const auth = new Promise<ReturnType<typeof tlsAuth>>((resolve) => server.once('secureConnection', (socket) => {
      resolve(tlsAuth(socket));
      socket.destroy();
    }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const socket = connectTls({ host: '127.0.0.1', port: typeof address === 'object' && address !== null ? address.port : 0, cert: read(clientDir, 'tls.crt'), key: read(clientDir, 'tls.key'), rejectUnauthorized: false });
    socket.on('error', () => undefined);
    try {
      return await auth;
    } finally {
      socket.destroy();
      server.close();
    }
  }

  it('a client certificate the handshake did not verify (another CA) gives no peer certificate: anonymous', async () => {
    const forged = otherPki.issue('forged-ai-extension', { san: [`URI:${roleUri('ai-extension')}`], usage: ['clientAuth'] });
    const auth = await authOf(forged);
    expect(auth.sslPeerCertificate).toBeUndefined();
    expect(identityOfTcpCall(auth)).toEqual({ role: 'anonymous', via: 'tls' });
  });

  it('one the handshake verified names its role', async () => {
    const real = pki.issue('real-ai-extension', { san: [`URI:${roleUri('ai-extension')}`], usage: ['clientAuth'] });
    const auth = await authOf(real);
    expect(identityOfTcpCall(auth)).toEqual({ role: 'ai-extension', via: 'mtls' });
  });
});
