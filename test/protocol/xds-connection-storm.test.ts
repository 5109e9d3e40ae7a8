import { execFileSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/resources.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { H2_PREFACE } from '../support/h2-frames.js';

/**
 * A fleet that connects at once (a controller restart, a rollout) is accepted at once. grpc-js
 * listened with Node's default accept queue (511): the kernel dropped the handshakes past it, and
 * those Envoys waited for TCP's SYN retransmissions (1 s, then 3, 7, 15 s) while the server idled;
 * at 1,000 streams the last first requests reached serve 14 s after the first.
 */

/** Past the old queue of 511 by a margin; two sockets each (client and server side) in this process. */
const CONNECTIONS = 800;
/** TCP's first SYN retransmission comes after 1 s: a connect that took this long was dropped once. */
const RETRANSMITTED_MS = 900;
/** An empty SETTINGS frame: length 0, type 4, no flags, stream 0. */
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

function openFiles(): number {
  const limit = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  return limit === 'unlimited' ? Number.POSITIVE_INFINITY : Number(limit);
}

interface Attempt {
  connectMs: number;
  /** The server's first HTTP/2 frame (its SETTINGS) arrived: grpc-js serves the connection. */
  answered: boolean;
}

function attempt(port: number, sockets: Socket[]): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let connectMs = -1;
    const socket = connect({ host: '127.0.0.1', port }, () => {
      connectMs = performance.now() - started;
      socket.write(Buffer.concat([H2_PREFACE, EMPTY_SETTINGS]));
    });
    sockets.push(socket);
    socket.once('data', (bytes) => resolve({ connectMs, answered: bytes.length >= 9 && bytes[3] === 4 }));
    socket.once('error', reject);
    socket.setTimeout(30_000, () => reject(new Error(`connection to the xDS server not answered in 30 s (connected after ${connectMs.toFixed(0)} ms)`)));
  });
}

/** Both ends of every connection live in this process. Too few is a failure, never a skip: `make test` raises the soft limit to the hard one. */
const FILES_NEEDED = 2 * CONNECTIONS + 200;

describe(`xDS server: ${CONNECTIONS} connections at once`, () => {
  const cache = new SnapshotCache();
  cache.setResources({
    listeners: [],
    routes: [],
    clusters: [{ '@type': TypeUrl.cluster, name: 'storm', type: 'STATIC', connect_timeout: '1s' }],
    endpoints: [],
    secrets: [],
  });
  const server = new XdsServer({ cache });
  let port = 0;
  const sockets: Socket[] = [];

  beforeAll(async () => {
    const files = openFiles();
    if (files < FILES_NEEDED) throw new Error(`this test opens ${FILES_NEEDED} files but \`ulimit -n\` is ${files}: raise it (ulimit -n ${FILES_NEEDED}) before running the tests`);
    port = await server.start({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await server.stop();
  });

  it('accepts every one without a TCP retransmission and answers each with HTTP/2 SETTINGS', async () => {
    const attempts = await Promise.all(Array.from({ length: CONNECTIONS }, () => attempt(port, sockets)));
    const retransmitted = attempts.filter((a) => a.connectMs >= RETRANSMITTED_MS);
    expect(retransmitted.length, `connections that waited for a SYN retransmission (slowest ${Math.max(...attempts.map((a) => a.connectMs)).toFixed(0)} ms)`).toBe(0);
    expect(attempts.filter((a) => !a.answered)).toEqual([]);
  }, 60_000);
});
