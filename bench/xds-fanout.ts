/**
 * xDS fan-out rows: one configuration change pushed (SotW) to 1, 100 and 1,000 concurrent ADS
 * clients. The server runs in its own process (bench/xds-fanout-server.ts, started with tsx);
 * the clients are raw @grpc/grpc-js duplex streams in this process, each on its own HTTP/2
 * connection as a fleet of Envoys would be, subscribed to every Cluster (CDS wildcard). Each
 * client reads only the envelope of a response (version and nonce; the Clusters stay bytes,
 * so the clients cost little next to the server) and ACKs it at once.
 *
 * Measured from the change command until every client has received the new version (per-client
 * arrival: p50 and max) and the server has every ACK (the row's time, against the target).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { encodeMessage, messageType } from '../src/envoy/proto.js';
import { TypeUrl } from '../src/envoy/resources.js';
import { median, type BenchRow, type BenchSuite } from './suite.js';
import type { FanoutCommand, FanoutReport } from './xds-fanout-server.js';

/** One change must reach every client (received and ACKed) in less than this, wall clock. */
export const FANOUT_TARGET_MS = 2_000;
/** Issue 9: 1,000 connections accepted and served in under 3 s. */
const CONNECT_TARGET_MS_PER_1000 = 3_000;
const HERE = dirname(fileURLToPath(import.meta.url));
const SERVER_SCRIPT = join(HERE, 'xds-fanout-server.ts');
const ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const DISCOVERY_RESPONSE = 'envoy.service.discovery.v3.DiscoveryResponse';
const DISCOVERY_REQUEST = 'envoy.service.discovery.v3.DiscoveryRequest';
const CONNECT_TIMEOUT_MS = 120_000;
const CHANGE_TIMEOUT_MS = 60_000;

export interface FanoutBenchOptions {
  /** Concurrent clients per row, ascending (clients are added, never reconnected). */
  clients: number[];
  /** Backends whose Clusters are served: the size of every CDS response. */
  backends: number;
  runs: number;
  log: (line: string) => void;
}

/** When each version reached how many clients; resolves waiters as counts complete. */
class Arrivals {
  private readonly times = new Map<string, bigint[]>();
  private readonly waiters = new Map<string, { count: number; resolve: () => void }>();

  record(version: string, at: bigint): void {
    let list = this.times.get(version);
    if (list === undefined) {
      list = [];
      this.times.set(version, list);
    }
    list.push(at);
    const waiter = this.waiters.get(version);
    if (waiter !== undefined && list.length >= waiter.count) {
      this.waiters.delete(version);
      waiter.resolve();
    }
  }

  /** Resolves once `count` clients have received `version`. */
  reach(version: string, count: number, timeoutMs: number, what: string): Promise<bigint[]> {
    return withTimeout(
      new Promise<void>((resolve) => {
        if ((this.times.get(version)?.length ?? 0) >= count) resolve();
        else this.waiters.set(version, { count, resolve });
      }).then(() => this.times.get(version) ?? []),
      timeoutMs,
      what,
    );
  }

  forget(version: string): void {
    this.times.delete(version);
  }
}

/** A fake Envoy: one connection, one ADS stream, CDS wildcard, ACKs every response. */
class FanoutClient {
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<Buffer, Buffer>;

  constructor(port: number, id: number, arrivals: Arrivals, envelope: EnvelopeReader) {
    // A local subchannel pool gives every client its own connection instead of a shared one.
    this.client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': -1,
    });
    this.call = this.client.makeBidiStreamRequest<Buffer, Buffer>(ADS_PATH, (b) => b, (b) => b);
    this.call.on('data', (bytes: Buffer) => {
      const at = process.hrtime.bigint();
      const { version, nonce } = envelope(bytes);
      arrivals.record(version, at);
      this.call.write(request({ version_info: version, response_nonce: nonce, type_url: TypeUrl.cluster }));
    });
    this.call.on('error', () => undefined);
    this.call.write(request({ node: { id: `bench-envoy-${id}` }, type_url: TypeUrl.cluster }));
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

function request(json: Parameters<typeof encodeMessage>[1]): Buffer {
  return Buffer.from(encodeMessage(DISCOVERY_REQUEST, json));
}

type EnvelopeReader = (bytes: Uint8Array) => { version: string; nonce: string };

/** Reads version_info and nonce of a DiscoveryResponse, skipping the resources undecoded, as Envoy's first look does. */
function envelopeReader(): EnvelopeReader {
  const fields = messageType(DISCOVERY_RESPONSE).fields;
  const versionId = fields['version_info']?.id;
  const nonceId = fields['nonce']?.id;
  if (versionId === undefined || nonceId === undefined) throw new Error(`${DISCOVERY_RESPONSE} has no version_info or nonce`);
  return (bytes) => {
    const reader = protobuf.Reader.create(bytes);
    let version = '';
    let nonce = '';
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const id = tag >>> 3;
      if (id === versionId) version = reader.string();
      else if (id === nonceId) nonce = reader.string();
      else reader.skipType(tag & 7);
    }
    return { version, nonce };
  };
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The server process and its reports, one awaitable at a time per type. */
export class FanoutServer {
  private readonly waiting = new Map<FanoutReport['type'], (report: FanoutReport) => void>();
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (report: FanoutReport) => {
      const resolve = this.waiting.get(report.type);
      this.waiting.delete(report.type);
      resolve?.(report);
    });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** Starts bench/xds-fanout-server.ts under tsx and waits until it serves. */
  static async start(backends: number): Promise<{ server: FanoutServer; ready: Extract<FanoutReport, { type: 'ready' }> }> {
    const child = fork(SERVER_SCRIPT, [String(backends)], {
      cwd: join(HERE, '..'),
      // --expose-gc: memory reports (bench/xds-slow-clients.ts) collect first, so heap figures compare.
      execArgv: ['--import', 'tsx', '--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const server = new FanoutServer(child);
    const exitedEarly = server.exited.then(() => {
      throw new Error('the fan-out server exited before it was ready (see its output above)');
    });
    const ready = await withTimeout(Promise.race([server.next('ready'), exitedEarly]), CONNECT_TIMEOUT_MS, 'the fan-out server to start');
    return { server, ready };
  }

  next<T extends FanoutReport['type']>(type: T): Promise<Extract<FanoutReport, { type: T }>> {
    return new Promise((resolve) => {
      this.waiting.set(type, (report) => resolve(report as Extract<FanoutReport, { type: T }>));
    });
  }

  send(command: FanoutCommand): void {
    this.child.send(command);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.send({ type: 'stop' });
    await withTimeout(this.exited, 10_000, 'the fan-out server to exit').catch(() => this.child.kill('SIGKILL'));
  }
}

function ms(from: bigint, to: bigint): number {
  return Number(to - from) / 1e6;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

interface PushSample {
  version: string;
  /** Change command to the last client's receipt of the new version. */
  receivedMs: number;
  /** Change command to the server's last ACK of it. */
  ackedMs: number;
  p50Ms: number;
  maxMs: number;
  applyMs: number;
  serverCpuMs: number;
  clientCpuMs: number;
}

async function pushOnce(server: FanoutServer, arrivals: Arrivals, clients: number): Promise<PushSample> {
  const changed = server.next('changed');
  const acked = server.next('acked');
  const clientCpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  server.send({ type: 'change', clients });
  const change = await withTimeout(changed, CHANGE_TIMEOUT_MS, 'the server to apply the change');
  const times = await arrivals.reach(change.version, clients, CHANGE_TIMEOUT_MS, `${clients} clients to receive version ${change.version}`);
  const ack = await withTimeout(acked, CHANGE_TIMEOUT_MS, `${clients} ACKs of version ${change.version}`);
  const usedByClients = process.cpuUsage(clientCpu);
  const arrival = times.map((t) => ms(start, t)).sort((a, b) => a - b);
  return {
    version: change.version,
    receivedMs: arrival.at(-1) ?? Number.NaN,
    ackedMs: ms(start, BigInt(ack.at)),
    p50Ms: percentile(arrival, 50),
    maxMs: arrival.at(-1) ?? Number.NaN,
    applyMs: change.applyMs,
    serverCpuMs: ack.cpuMs,
    clientCpuMs: (usedByClients.user + usedByClients.system) / 1000,
  };
}

export function xdsFanoutSuite(options: FanoutBenchOptions): BenchSuite {
  return {
    name: 'xds-fanout',
    async run(): Promise<BenchRow[]> {
      const rows: BenchRow[] = [];
      options.log(`xds-fanout: starting the server process (${options.backends} Backends)`);
      const { server, ready } = await FanoutServer.start(options.backends);
      const arrivals = new Arrivals();
      const envelope = envelopeReader();
      const clients: FanoutClient[] = [];
      /** The version every connected client has: new clients get it in their first response. */
      let served = ready.version;
      try {
        for (const count of options.clients) {
          options.log(`xds-fanout: connecting clients ${clients.length + 1}..${count}`);
          const newClients = count - clients.length;
          const connectStart = process.hrtime.bigint();
          while (clients.length < count) clients.push(new FanoutClient(ready.port, clients.length, arrivals, envelope));
          // Every client has the current version before a change is timed: initial responses done.
          await arrivals.reach(served, count, CONNECT_TIMEOUT_MS, `${count} clients to receive the initial CDS response`);
          const connectMs = ms(connectStart, process.hrtime.bigint());
          options.log(`xds-fanout: ${count} clients connected; ${options.runs} timed pushes`);
          rows.push({
            suite: 'xds-fanout', name: 'new connections accepted and served (initial CDS)', n: newClients, ms: connectMs, cpuMs: undefined,
            runs: 1, heapMB: undefined,
            detail: `clients ${count - newClients + 1}..${count}, each on its own connection; ${(ready.responseBytes / 1024).toFixed(0)} KB per response`,
            target: `< ${CONNECT_TARGET_MS_PER_1000 * Math.max(1, newClients / 1000)} ms`,
            verdict: connectMs < CONNECT_TARGET_MS_PER_1000 * Math.max(1, newClients / 1000) ? 'PASS' : 'FAIL',
          });
          const samples: PushSample[] = [];
          for (let r = 0; r < options.runs; r++) {
            const sample = await pushOnce(server, arrivals, count);
            arrivals.forget(served);
            served = sample.version;
            samples.push(sample);
          }
          const m = (pick: (s: PushSample) => number): number => median(samples.map(pick));
          const total = m((s) => s.ackedMs);
          rows.push({
            suite: 'xds-fanout', name: 'SotW push of one change (received + ACKed)', n: count, ms: total, cpuMs: m((s) => s.serverCpuMs),
            runs: samples.length, heapMB: undefined,
            detail:
              `arrival p50 ${m((s) => s.p50Ms).toFixed(1)} ms, max ${m((s) => s.maxMs).toFixed(1)} ms; ` +
              `server apply ${m((s) => s.applyMs).toFixed(1)} ms (translate+cache+push); ` +
              `${ready.clusters} Clusters, ${(ready.responseBytes / 1024).toFixed(0)} KB per response; ` +
              `CPU ms: server (row), clients ${m((s) => s.clientCpuMs).toFixed(0)}`,
            target: `< ${FANOUT_TARGET_MS} ms`,
            verdict: total < FANOUT_TARGET_MS ? 'PASS' : 'FAIL',
          });
          const memory = server.next('memory');
          server.send({ type: 'memory' });
          const used = await withTimeout(memory, CHANGE_TIMEOUT_MS, 'the server\'s memory report');
          rows.push({
            suite: 'xds-fanout', name: 'server RSS after the pushes', n: count, ms: undefined, cpuMs: undefined, runs: 1,
            heapMB: used.heapUsedBytes / 2 ** 20,
            detail: `RSS ${(used.rssBytes / 2 ** 20).toFixed(0)} MB; longest push slice ${used.longestPushSliceMs.toFixed(1)} ms (event loop held by pushing)`,
          });
        }
      } finally {
        for (const client of clients) client.close();
        await server.stop();
      }
      return rows;
    },
  };
}
