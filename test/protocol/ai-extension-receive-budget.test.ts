import * as http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGrpcServer, type RunningGrpcServer } from '../../src/ai-extension/grpc-server.js';
import { SharedReceiveBudget } from '../../src/h2/receive-budget.js';
import { waitFor } from '../support/wait.js';

/**
 * The AI extension's ext_proc server bounds partial request messages as the xDS transport does
 * (src/h2/receive-budget.ts), here lowered to 4 MiB a connection: a client that opens streams
 * and sends each the first MiB of a 32 MiB message is refused RESOURCE_EXHAUSTED past the bound,
 * then cut with GOAWAY ENHANCE_YOUR_CALM after 10 refusals; another connection is served
 * throughout. A unary call sent message after message is refused at the second, not kept.
 */

const MiB = 1024 * 1024;
const BIDI = '/test.Echo/Bidi';
const UNARY = '/test.Echo/Unary';

describe('the ext_proc server bounds what partial request messages hold', () => {
  const shared = new SharedReceiveBudget(64 * MiB);
  const refusals: { connection: string; scope: string; limitBytes: number }[] = [];
  let server: RunningGrpcServer;

  beforeAll(async () => {
    server = await startGrpcServer({
      listen: { host: '127.0.0.1', port: 0 },
      methods: new Map([
        [BIDI, { kind: 'bidi', handle: (call) => call.onMessage((m) => call.write(Buffer.from(String(m.length)))) }],
        [UNARY, { kind: 'unary', handle: async (request) => Buffer.from(String(request.length)) }],
      ]),
      maxMessageBytes: 64 * MiB,
      receiveBudget: { connectionBytes: 4 * MiB, shared },
      onReceiveRefused: (event) => refusals.push(event),
    });
  });

  afterAll(async () => {
    await server.close();
  });

  async function session(): Promise<http2.ClientHttp2Session> {
    const s = http2.connect(`http://127.0.0.1:${server.port}`);
    s.on('error', () => undefined);
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    return s;
  }

  function open(s: http2.ClientHttp2Session, path = BIDI): { stream: http2.ClientHttp2Stream; status: () => string | undefined; answers: () => number } {
    const stream = s.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    let status: string | undefined;
    let answers = 0;
    const record = (h: http2.IncomingHttpHeaders): void => {
      if (h['grpc-status'] !== undefined) status ??= `${String(h['grpc-status'])} ${decodeURIComponent(String(h['grpc-message'] ?? ''))}`;
    };
    stream.on('response', record);
    stream.on('trailers', record);
    stream.on('data', () => answers++);
    stream.on('error', () => undefined);
    return { stream, status: () => status, answers: () => answers };
  }

  async function pinged(s: http2.ClientHttp2Session): Promise<void> {
    await new Promise<void>((resolve, reject) => s.ping((err) => (err === null ? resolve() : reject(err))));
  }

  /** A stream sent the first MiB - 1 KiB of a 32 MiB message; resolves once the server has read it. */
  async function partial(s: http2.ClientHttp2Session): Promise<ReturnType<typeof open>> {
    const c = open(s);
    const head = Buffer.alloc(MiB - 1024);
    head.writeUInt32BE(32 * MiB, 1);
    await new Promise<void>((resolve) => c.stream.write(head, () => resolve()));
    await pinged(s);
    return c;
  }

  it('refuses streams past the connection bound, then ends the connection; another is served', async () => {
    const hostile = await session();
    let goaway: number | undefined;
    hostile.on('goaway', (code) => (goaway = code));
    const good = await session();
    try {
      // Three hold 1 MiB (and 256 bytes) each; the fourth cannot grow to its second MiB.
      const held = [await partial(hostile), await partial(hostile), await partial(hostile)];
      for (let i = 0; i < 10; i++) {
        const c = await partial(hostile);
        await waitFor(() => c.status(), { what: `refusal ${i + 1}` });
        expect(c.status()).toBe('8 partial request messages on this connection above its limit of 4194304 bytes');
      }
      expect(held.map((c) => c.status())).toEqual([undefined, undefined, undefined]);
      expect(shared.used).toBeGreaterThan(3 * MiB);
      expect(shared.used).toBeLessThanOrEqual(4 * MiB);
      expect(goaway).toBeUndefined();
      expect(refusals).toHaveLength(1);
      expect(refusals[0]).toMatchObject({ scope: 'connection', limitBytes: 4 * MiB });

      // Another connection: a message of 3 MiB, sent in parts, is served.
      const c = open(good);
      const message = Buffer.alloc(5 + 3 * MiB);
      message.writeUInt32BE(3 * MiB, 1);
      for (let at = 0; at < message.length; at += 100_000) c.stream.write(message.subarray(at, at + 100_000));
      await waitFor(() => (c.answers() === 1 ? true : undefined), { what: 'the good client to be answered' });

      // The 11th refusal ends the hostile connection; what it held is given back.
      await partial(hostile).catch(() => undefined);
      await waitFor(() => goaway, { what: 'GOAWAY to the hostile client' });
      expect(goaway).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      await waitFor(() => (shared.used === 0 ? true : undefined), { what: 'the partial messages to be given back' });
    } finally {
      hostile.destroy();
      good.destroy();
    }
  });

  it('refuses a unary call sent a second message at once', async () => {
    const s = await session();
    try {
      const c = open(s, UNARY);
      const one = Buffer.alloc(5 + 1000);
      one.writeUInt32BE(1000, 1);
      c.stream.write(one);
      await pinged(s);
      expect(c.status()).toBeUndefined();
      c.stream.write(one);
      await waitFor(() => c.status(), { what: 'the unary call to be refused' });
      expect(c.status()).toBe('13 a unary call takes exactly one message; received more');
    } finally {
      s.destroy();
    }
  });
});
