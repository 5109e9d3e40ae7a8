import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SharedReceiveBudget } from '../../src/h2/receive-budget.js';
import { createLogger } from '../../src/observability/logger.js';
import { H2Call, H2GrpcConnections, plaintextServer } from '../../src/xds/h2-transport.js';
import { waitFor } from '../support/wait.js';

/**
 * The process-wide bound on partial request messages (src/h2/receive-budget.ts), lowered: 4 MiB
 * a connection, 6 MiB across connections. A connection refused for the shared bound is not at
 * fault: its stream gets RESOURCE_EXHAUSTED ("retry later"), the connection stays, and once the
 * other connection's messages complete a new stream of it is served. Each connection's first
 * refusal is logged at warn, once, with its name and the limit.
 */

const MiB = 1024 * 1024;
const PATH = '/test.Echo/Bidi';
const A_LENGTH = 1.5 * MiB;

describe('partial request messages across connections', () => {
  const lines: string[] = [];
  const shared = new SharedReceiveBudget(6 * MiB);
  const received: number[] = [];
  const connections = new H2GrpcConnections({
    methods: new Map([
      [
        PATH,
        {
          decode: (bytes: Buffer) => bytes.length,
          open: (call: H2Call) => {
            call.on('data', (length: number) => {
              received.push(length);
              call.write(Buffer.from('ok'));
            });
          },
        },
      ],
    ]),
    auth: () => ({ transportSecurityType: 'insecure' }) as never,
    logger: createLogger({ level: 'warn' }, { write: (line: string) => void lines.push(line) }),
    receiveBudget: { connectionBytes: 4 * MiB, shared },
  });
  const server = plaintextServer(connections);
  let port = 0;

  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    await connections.close(100);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function session(): Promise<http2.ClientHttp2Session> {
    const s = http2.connect(`http://127.0.0.1:${port}`);
    s.on('error', () => undefined);
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    return s;
  }

  function open(s: http2.ClientHttp2Session): { stream: http2.ClientHttp2Stream; status: () => { code: string; message: string } | undefined; answers: () => number } {
    const stream = s.request({ ':method': 'POST', ':path': PATH, 'content-type': 'application/grpc', te: 'trailers' });
    let status: { code: string; message: string } | undefined;
    let answers = 0;
    const record = (h: http2.IncomingHttpHeaders): void => {
      if (h['grpc-status'] !== undefined) status ??= { code: String(h['grpc-status']), message: decodeURIComponent(String(h['grpc-message'] ?? '')) };
    };
    stream.on('response', record);
    stream.on('trailers', record);
    stream.on('data', () => answers++);
    stream.on('error', () => undefined);
    return { stream, status: () => status, answers: () => answers };
  }

  /** Sends the first `sent` bytes of a message of `length`; resolves once the server has read them. */
  async function begin(s: http2.ClientHttp2Session, length: number, sent: number): Promise<ReturnType<typeof open>> {
    const c = open(s);
    const head = Buffer.alloc(sent);
    head.writeUInt32BE(length, 1);
    await new Promise<void>((resolve) => c.stream.write(head, () => resolve()));
    await new Promise<void>((resolve, reject) => s.ping((err) => (err === null ? resolve() : reject(err))));
    return c;
  }

  it('a stream past the shared bound is refused, its connection kept; served again once the others complete', async () => {
    const a = await session();
    const b = await session();
    try {
      // A: three messages of 1.5 MiB, 1 MiB - 1 KiB of each in (a 1 MiB buffer each).
      const aCalls = [await begin(a, A_LENGTH, MiB - 1024), await begin(a, A_LENGTH, MiB - 1024), await begin(a, A_LENGTH, MiB - 1024)];
      // B: two fit the shared 6 MiB (3 + 2 MiB and a little), the third does not.
      const bCalls = [await begin(b, 2 * MiB, MiB - 1024), await begin(b, 2 * MiB, MiB - 1024)];
      expect(shared.used).toBeGreaterThan(5 * MiB);
      const third = await begin(b, 2 * MiB, MiB - 1024);
      await waitFor(() => third.status(), { what: 'the third stream of B to be refused' });
      expect(third.status()?.code).toBe('8');
      expect(third.status()?.message).toMatch(/on this server above its limit of 6291456 bytes; retry later/u);
      expect([...aCalls, ...bCalls].map((c) => c.status())).toEqual(Array(5).fill(undefined));

      // A completes its messages: the bytes are given back, and B is served on a new stream.
      // One after the other: each grows its buffer to 1.5 MiB within A's 4 MiB, then gives it back.
      for (const c of aCalls) {
        c.stream.write(Buffer.alloc(A_LENGTH + 5 - (MiB - 1024)));
        await waitFor(() => (c.answers() === 1 ? true : undefined), { what: "A's message to be answered" });
      }
      expect(received.filter((n) => n === A_LENGTH)).toHaveLength(3);
      const again = await begin(b, 1000, 1005);
      await waitFor(() => (again.answers() === 1 ? true : undefined), { what: "B's new stream to be served" });
      // Another refusal on B: logged once only.
      await begin(b, 2 * MiB, MiB - 1024);
      const more = await begin(b, 2 * MiB, MiB - 1024);
      await waitFor(() => more.status(), { what: 'a later stream of B to be refused' });

      const warnings = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => /refused \(RESOURCE_EXHAUSTED\)/u.test(String(l['msg'])));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ scope: 'process', limitBytes: 6 * MiB });
      expect(String(warnings[0]?.['connection'])).toMatch(/^127\.0\.0\.1:\d+$/u);
      expect(JSON.stringify(warnings)).not.toMatch(/application\/grpc|test\.Echo/u);
    } finally {
      a.destroy();
      b.destroy();
    }
    await waitFor(() => (shared.used === 0 ? true : undefined), { what: 'every partial message to be given back once the connections are gone' });
  });
});
