/**
 * The server half of the xDS fan-out bench, in a process of its own as in production (the
 * Envoys are elsewhere): serves the resources of N translated multipool Backends over XdsServer
 * and, on each `change` command from bench/xds-fanout.ts (fork IPC), edits one Backend,
 * translates again and sets the cache, which pushes one changed Cluster to every SotW client.
 * It reports when every client has ACKed the new version, with a monotonic timestamp
 * (process.hrtime is CLOCK_MONOTONIC: comparable across processes on one machine).
 *
 *   run by bench/xds-fanout.ts: node --import tsx bench/xds-fanout-server.ts <backends>
 */
import { toXdsResources } from '../src/envoy/index.js';
import { TypeUrl } from '../src/envoy/resources.js';
import { translate } from '../src/translate/index.js';
import type { Inputs } from '../src/translate/inputs.js';
import { SnapshotCache } from '../src/xds/cache.js';
import { XdsServer } from '../src/xds/server.js';
import { generateManifests, inputsFrom } from './translate.js';

/** Commands from the bench. `clients`: how many ACKs of the new version to wait for (0: none). */
export type FanoutCommand = { type: 'change'; clients: number } | { type: 'memory' } | { type: 'stop' };

export type FanoutReport =
  | { type: 'ready'; port: number; version: string; clusters: number; responseBytes: number }
  /** The change is in the cache and every push is written; applyMs is translate + encode + fan-out. */
  | { type: 'changed'; version: string; applyMs: number }
  /** `at`: process.hrtime.bigint() (as a string) when the last ACK arrived; cpuMs: this process, change to last ACK. */
  | { type: 'acked'; version: string; at: string; cpuMs: number }
  /** This process's memory and CPU so far; `served`: streams that were sent a CDS response. */
  | { type: 'memory'; rssBytes: number; heapUsedBytes: number; cpuMs: number; served: number; longestPushSliceMs: number };

const CHANGED_BACKEND = 'chat-0';

function send(report: FanoutReport): void {
  process.send?.(report);
}

/** Every change edits one Backend's outlier detection: its Cluster changes, nothing else does. */
function applyChange(inputs: Inputs, generation: number): void {
  const backend = inputs.backends.find((b) => b.metadata.name === CHANGED_BACKEND);
  if (!backend) throw new Error(`fan-out server: no Backend ${CHANGED_BACKEND}`);
  backend.spec.outlierDetection = { consecutive5xx: 3 + (generation % 100) };
}

function responseBytes(cache: SnapshotCache): number {
  let bytes = 0;
  for (const resource of cache.snapshot(TypeUrl.cluster)?.resources.values() ?? []) bytes += resource.any.length;
  return bytes;
}

async function main(): Promise<void> {
  if (!process.send) throw new Error('xds-fanout-server.ts is started by bench/xds-fanout.ts (it needs an IPC channel)');
  const backends = Number(process.argv[2] ?? '50');
  const inputs = inputsFrom(generateManifests(backends));
  const cache = new SnapshotCache();
  cache.setResources(toXdsResources(translate(inputs).ir));
  const server = new XdsServer({ cache });
  const port = await server.start({ port: 0, host: '127.0.0.1' });

  let generation = 0;
  let pending: { version: string; clients: number; acked: Set<number>; cpu: NodeJS.CpuUsage } | undefined;
  server.on('ack', (ack) => {
    if (pending === undefined || ack.typeUrl !== TypeUrl.cluster || ack.version !== pending.version) return;
    pending.acked.add(ack.streamId);
    if (pending.acked.size < pending.clients) return;
    const at = process.hrtime.bigint();
    const used = process.cpuUsage(pending.cpu);
    send({ type: 'acked', version: pending.version, at: String(at), cpuMs: (used.user + used.system) / 1000 });
    pending = undefined;
  });

  process.on('message', (command: FanoutCommand) => {
    if (command.type === 'stop') {
      void server.stop().then(() => process.exit(0));
      return;
    }
    if (command.type === 'memory') {
      (globalThis as { gc?: () => void }).gc?.();
      const cpu = process.cpuUsage();
      const served = server.clients().filter((c) => c.types.some((t) => t.typeUrl === TypeUrl.cluster && t.sentVersion !== undefined)).length;
      send({ type: 'memory', rssBytes: process.memoryUsage().rss, heapUsedBytes: process.memoryUsage().heapUsed, cpuMs: (cpu.user + cpu.system) / 1000, served, longestPushSliceMs: server.longestPushSliceMs });
      return;
    }
    const cpu = process.cpuUsage();
    const start = process.hrtime.bigint();
    applyChange(inputs, ++generation);
    // The ACK listener above runs on later turns of the event loop, after `pending` is set.
    cache.setResources(toXdsResources(translate(inputs).ir));
    const version = cache.snapshot(TypeUrl.cluster)?.version ?? '';
    pending = command.clients > 0 ? { version, clients: command.clients, acked: new Set(), cpu } : undefined;
    send({ type: 'changed', version, applyMs: Number(process.hrtime.bigint() - start) / 1e6 });
  });

  const clusters = cache.snapshot(TypeUrl.cluster)?.resources.size ?? 0;
  send({ type: 'ready', port, version: cache.snapshot(TypeUrl.cluster)?.version ?? '', clusters, responseBytes: responseBytes(cache) });
}

main().catch((err: unknown) => {
  process.stderr.write(`xds-fanout-server: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
