/**
 * Slow-client row: ADS clients that connect, ask for every Cluster (CDS wildcard) and never
 * read again, as Envoys behind a congested link or a stuck process. The server process
 * (bench/xds-fanout-server.ts, N Backends) gets a change every few seconds; the row reports how
 * much its RSS grew from the moment every client was served its first response. With per-stream
 * back-pressure (src/xds/ads-stream.ts) a stalled stream keeps at most one response per type in
 * flight and skips versions, so the growth does not scale with clients x changes.
 *
 * The clients are raw HTTP/2 streams in the bench process (a paused stream stops reading, so
 * flow control closes its window: the server's writes stay in flight, as with a real stalled peer).
 *
 *   BENCH_SLOW_SECONDS  how long changes are applied (default 60)
 *   BENCH_SLOW_CLIENTS  non-reading clients (default 500)
 *   BENCH_SLOW_BACKENDS Backends served (default 1000)
 *   BENCH_SLOW_EVERY_MS time between changes (default 3000)
 *   BENCH_SLOW_WARMUP   changes applied before the baseline (default 2): the first translations
 *                       grow the heap once whatever the clients do; that is not what is measured
 */
import * as http2 from 'node:http2';
import { encodeMessage } from '../src/envoy/proto.js';
import { TypeUrl } from '../src/envoy/resources.js';
import type { BenchRow, BenchSuite } from './suite.js';
import { FanoutServer, withTimeout } from './xds-fanout.js';
import type { FanoutReport } from './xds-fanout-server.js';

/** RSS the server may gain while stalled clients miss changes. */
export const SLOW_CLIENTS_TARGET_MB = 50;
const ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

export interface SlowClientsOptions {
  seconds: number;
  clients: number;
  backends: number;
  everyMs: number;
  warmup: number;
  log: (line: string) => void;
}

function envInt(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${text}"`);
  return n;
}

export function slowClientsOptionsFromEnv(log: (line: string) => void): SlowClientsOptions {
  return {
    seconds: envInt('BENCH_SLOW_SECONDS', 60),
    clients: envInt('BENCH_SLOW_CLIENTS', 500),
    backends: envInt('BENCH_SLOW_BACKENDS', 1_000),
    everyMs: envInt('BENCH_SLOW_EVERY_MS', 3_000),
    warmup: envInt('BENCH_SLOW_WARMUP', 2),
    log,
  };
}

/** One client that sends its CDS request and then never reads. */
function stalledClient(port: number, id: number): http2.ClientHttp2Session {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  const stream = session.request({ ':method': 'POST', ':path': ADS_PATH, 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => undefined);
  stream.pause();
  const message = encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', { node: { id: `stalled-${id}` }, type_url: TypeUrl.cluster });
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  stream.write(frame);
  return session;
}

async function memory(server: FanoutServer): Promise<Extract<FanoutReport, { type: 'memory' }>> {
  const report = server.next('memory');
  server.send({ type: 'memory' });
  return withTimeout(report, 30_000, 'the server to report its memory');
}

async function change(server: FanoutServer): Promise<void> {
  const changed = server.next('changed');
  server.send({ type: 'change', clients: 0 });
  await withTimeout(changed, 60_000, 'the server to apply a change');
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const mb = (bytes: number): number => bytes / 1024 / 1024;

export function xdsSlowClientsSuite(options: SlowClientsOptions): BenchSuite {
  return {
    name: 'xds-slow-clients',
    async run(): Promise<BenchRow[]> {
      const { seconds, clients, backends, everyMs, log } = options;
      log(`xds-slow-clients: starting the server process (${backends} Backends)`);
      const { server, ready } = await FanoutServer.start(backends);
      const sessions: http2.ClientHttp2Session[] = [];
      try {
        for (let i = 0; i < clients; i++) sessions.push(stalledClient(ready.port, i));
        log(`xds-slow-clients: ${clients} non-reading clients connecting`);
        const deadline = Date.now() + 120_000;
        let served = 0;
        while (served < clients) {
          if (Date.now() > deadline) throw new Error(`only ${served} of ${clients} clients were sent their first response in 120 s`);
          await sleep(500);
          served = (await memory(server)).served;
        }
        for (let i = 0; i < options.warmup; i++) {
          await change(server);
          await sleep(everyMs);
        }
        const base = await memory(server);
        log(`xds-slow-clients: every client served; baseline RSS ${mb(base.rssBytes).toFixed(0)} MB; a change every ${everyMs} ms for ${seconds} s`);
        let peak = base.rssBytes;
        let changes = 0;
        const started = Date.now();
        while (Date.now() - started < seconds * 1_000) {
          await change(server);
          changes++;
          await sleep(everyMs);
          const now = await memory(server);
          peak = Math.max(peak, now.rssBytes);
          log(`xds-slow-clients: ${changes} changes, RSS ${mb(now.rssBytes).toFixed(0)} MB (heap ${mb(now.heapUsedBytes).toFixed(0)} MB)`);
        }
        const end = await memory(server);
        const growth = mb(Math.max(peak, end.rssBytes) - base.rssBytes);
        const cpuMs = end.cpuMs - base.cpuMs;
        return [
          {
            suite: 'xds-slow-clients',
            name: `RSS growth, ${clients} non-reading ADS clients, a change every ${everyMs / 1000} s for ${seconds} s`,
            n: clients,
            ms: Date.now() - started,
            cpuMs,
            runs: 1,
            heapMB: mb(end.heapUsedBytes - base.heapUsedBytes),
            detail:
              `server RSS ${mb(base.rssBytes).toFixed(0)} -> ${mb(end.rssBytes).toFixed(0)} MB (peak ${mb(peak).toFixed(0)}), growth ${growth.toFixed(1)} MB; ` +
              `${options.warmup} warm-up changes before the baseline, then ${changes} changes, server CPU ${(cpuMs / changes).toFixed(0)} ms per change; ${backends} Backends, ` +
              `${(ready.responseBytes / 1024).toFixed(0)} KB per CDS response`,
            target: `< ${SLOW_CLIENTS_TARGET_MB} MB`,
            verdict: growth < SLOW_CLIENTS_TARGET_MB ? 'PASS' : 'FAIL',
          },
        ];
      } finally {
        for (const session of sessions) session.destroy();
        await server.stop();
      }
    },
  };
}
