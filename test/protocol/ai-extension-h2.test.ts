import * as http2 from 'node:http2';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGrpcServer, type BidiCall, type RunningGrpcServer } from '../../src/ai-extension/grpc-server.js';
import { HpackDecoder, HpackError, encodeHeaderBlock } from '../../src/h2/hpack.js';
import { H2_PREFACE, h2Frame } from '../support/h2-frames.js';

/**
 * The AI extension's own HTTP/2 server (src/h2/h2-connection.ts, hpack.ts) against the
 * HTTP/2 stack Node ships (nghttp2, the library Envoy 1.40 uses too): header blocks as nghttp2
 * encodes them, flow control as it enforces it.
 */

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/gu, ''), 'hex');

describe('HPACK decoding', () => {
  it('decodes RFC 7541 C.4 (requests with Huffman coding, one dynamic table across them)', () => {
    const decoder = new HpackDecoder();
    expect(decoder.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'))).toEqual([
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'],
    ]);
    expect(decoder.decode(hex('8286 84be 5886 a8eb 1064 9cbf'))).toEqual([
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache'],
    ]);
    expect(decoder.decode(hex('8287 85bf 400a 6375 7374 6f6d 2d6b 6579 8925 a849 e95b b8e8 b4bf'))).toEqual([
      [':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value'],
    ]);
  });

  it('refuses an index beyond the tables, a bad Huffman padding and a table size above the one announced', () => {
    expect(() => new HpackDecoder().decode(hex('be'))).toThrow(HpackError);
    // 'a' is 00011 (5 bits); a padding of 0s instead of 1s.
    expect(() => new HpackDecoder().decode(hex('0001 61 81 18'))).toThrow(/padding/u);
    expect(() => new HpackDecoder().decode(hex('3fe21f'))).toThrow(/table size update/u);
  });

  it('reads its own encoder\'s blocks', () => {
    const block = encodeHeaderBlock([[':status', '200'], ['content-type', 'application/grpc'], ['grpc-status', '13'], ['grpc-message', 'x'.repeat(300)]]);
    expect(new HpackDecoder().decode(block)).toEqual([[':status', '200'], ['content-type', 'application/grpc'], ['grpc-status', '13'], ['grpc-message', 'x'.repeat(300)]]);
  });

  it('decodes what nghttp2 (Node\'s HTTP/2 client) sends over many requests on one connection', async () => {
    // A raw TCP server collects the HEADERS frames' blocks; each request has new and repeated
    // values, so the blocks use the dynamic table, Huffman coding and evictions.
    const blocks: Buffer[] = [];
    let socket: Socket | undefined;
    const raw: Server = createServer((s) => {
      socket = s;
      let data = Buffer.alloc(0);
      s.on('data', (chunk: Buffer) => {
        data = Buffer.concat([data, chunk]);
        let at = data.subarray(0, 24).toString('latin1').startsWith('PRI * HTTP/2.0') ? 24 : 0;
        while (data.length - at >= 9 && data.length - at >= 9 + data.readUIntBE(at, 3)) {
          const length = data.readUIntBE(at, 3);
          if (data[at + 3] === 0x1) blocks.push(Buffer.from(data.subarray(at + 9, at + 9 + length)));
          at += 9 + length;
        }
        data = data.subarray(at);
      });
      // The server's SETTINGS, so that the client sends its requests.
      s.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const port = (raw.address() as { port: number }).port;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const sent: Record<string, string>[] = [];
    for (let i = 0; i < 200; i++) {
      const headers = {
        ':method': 'POST',
        ':path': '/envoy.service.ext_proc.v3.ExternalProcessor/Process',
        'content-type': 'application/grpc',
        'x-request-id': `req-${i % 7}-${(i * 7919).toString(36)}`,
        'x-forwarded-for': `10.0.${i % 3}.${i}`,
        [`x-custom-${i % 5}`]: 'v'.repeat(i * 13 % 400),
      };
      session.request(headers, { endStream: true }).on('error', () => undefined);
      sent.push(headers);
    }
    await expect.poll(() => blocks.length, { timeout: 5_000 }).toBe(200);
    session.destroy();
    socket?.destroy();
    raw.close();
    const decoder = new HpackDecoder();
    blocks.forEach((block, i) => {
      const fields = decoder.decode(block);
      const got = Object.fromEntries(fields.filter(([n]) => n !== ':scheme' && n !== ':authority'));
      expect(got).toEqual(sent[i]);
    });
  });
});

describe('the extension\'s HTTP/2 server with Node\'s HTTP/2 client', () => {
  let server: RunningGrpcServer;
  let bigCalls = 0;
  beforeAll(async () => {
    server = await startGrpcServer({
      listen: { host: '127.0.0.1', port: 0 },
      maxMessageBytes: 4 * 1024 * 1024,
      methods: new Map([
        ['/test.Echo/Big', {
          kind: 'bidi',
          handle: (call: BidiCall) => {
            // Each message answered with that many KiB, then the call ended.
            call.onMessage((m) => {
              bigCalls++;
              call.write(Buffer.alloc(Number(m.toString()) * 1024, 'z'));
              call.end();
            });
          },
        }],
      ]),
    });
  });
  afterAll(() => server.close());

  function prefixed(text: string): Buffer {
    const body = Buffer.from(text);
    const out = Buffer.alloc(5 + body.length);
    out.writeUInt32BE(body.length, 1);
    body.copy(out, 5);
    return out;
  }

  it('keeps within the client\'s flow-control windows and frame size for an answer larger than both', async () => {
    // nghttp2 ends the connection (FLOW_CONTROL_ERROR) on a DATA frame beyond its window.
    const session = http2.connect(`http://127.0.0.1:${server.port}`, { settings: { initialWindowSize: 1000 } });
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/test.Echo/Big', 'content-type': 'application/grpc', te: 'trailers' });
      let received = 0;
      stream.on('data', (chunk: Buffer) => {
        received += chunk.length;
      });
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        stream.once('trailers', resolve);
        stream.once('error', reject);
      });
      stream.end(prefixed('300'));
      expect((await trailers)['grpc-status']).toBe('0');
      expect(received).toBe(5 + 300 * 1024);
    } finally {
      session.close();
    }
  });

  it('reads a request body larger than the default windows without waiting for them, and many calls on one connection', async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    try {
      const one = async (text: string): Promise<number> => {
        const stream = session.request({ ':method': 'POST', ':path': '/test.Echo/Big', 'content-type': 'application/grpc', te: 'trailers', 'x-pad': 'p'.repeat(text.length % 50) });
        let received = 0;
        stream.on('data', (chunk: Buffer) => {
          received += chunk.length;
        });
        await new Promise<void>((resolve, reject) => {
          stream.once('trailers', (t) => (t['grpc-status'] === '0' ? resolve() : reject(new Error(String(t['grpc-status'])))));
          stream.once('error', reject);
          stream.end(prefixed(text));
        });
        return received;
      };
      // 1 MiB of leading zeros parse as 1 KiB: the request itself is over the 64 KiB default.
      expect(await one(`${'0'.repeat(1024 * 1024)}1`)).toBe(5 + 1024);
      const sizes = await Promise.all(Array.from({ length: 300 }, (_, i) => one(String(i % 4))));
      expect(sizes).toEqual(Array.from({ length: 300 }, (_, i) => 5 + (i % 4) * 1024));
    } finally {
      session.close();
    }
  });

  it('stops reading a client that does not read its answers, and reads it again once it does', async () => {
    // A raw client with the largest windows, asking for a 40 MiB answer and then for another
    // call while it reads nothing: the second call must wait for it to read the first answer.
    const settings = Buffer.alloc(6);
    settings.writeUInt16BE(0x4, 0);
    settings.writeUInt32BE(2 ** 31 - 1, 2);
    const increment = Buffer.alloc(4);
    increment.writeUInt32BE(2 ** 31 - 1 - 65_535);
    const request = (stream: number, kib: number): Buffer => Buffer.concat([
      h2Frame(0x1, 0x4, stream, encodeHeaderBlock([[':method', 'POST'], [':scheme', 'http'], [':path', '/test.Echo/Big'], [':authority', 'x'], ['content-type', 'application/grpc']])),
      h2Frame(0x0, 0x1, stream, prefixed(String(kib))),
    ]);
    const socket = connect(server.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.pause();
    const before = bigCalls;
    socket.write(Buffer.concat([H2_PREFACE, h2Frame(0x4, 0, 0, settings), h2Frame(0x8, 0, 0, increment), request(1, 40 * 1024)]));
    await expect.poll(() => bigCalls).toBe(before + 1);
    socket.write(request(3, 1));
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(bigCalls).toBe(before + 1);
    let received = 0;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    socket.resume();
    await expect.poll(() => bigCalls, { timeout: 10_000 }).toBe(before + 2);
    expect(received).toBeGreaterThan(16 * 1024 * 1024);
    socket.destroy();
  });
});
