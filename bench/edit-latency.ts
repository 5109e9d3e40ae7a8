/**
 * File-mode rows as users live them: `serve` (in this process, no Envoy, no AI extension)
 * started on N Backends spread over F files, timed from the call to the first CDS response on a
 * raw ADS stream; then one Backend edited in one file, timed from the end of the write to the
 * first byte of the first response carrying a new version, and to its last byte. The client
 * (bench/edit-latency-client.ts) runs in a process of its own: receiving 20 MB is its work, not
 * serve's. CPU is this process's, serve's alone.
 *
 *   node --import tsx bench/edit-latency.ts [backends=10000] [files=100] [edits=5]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { serve } from '../src/app/serve.js';
import { TypeUrl } from '../src/envoy/resources.js';
import { createLogger } from '../src/observability/logger.js';
import type { ClientReport } from './edit-latency-client.js';
import { generateManifests } from './translate.js';

type Doc = { kind: string; metadata: { name: string } } & Record<string, unknown>;

async function main(): Promise<void> {
  const backends = Number(process.argv[2] ?? 10_000);
  const fileCount = Number(process.argv[3] ?? 100);
  const edits = Number(process.argv[4] ?? 5);
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-edit-latency-'));
  const docs = generateManifests(backends) as Doc[];
  const files = new Map<string, Doc[]>();
  const perFile = Math.ceil(backends / fileCount);
  for (const doc of docs) {
    const match = /^chat-(\d+)/.exec(doc.metadata.name);
    const file = match ? `backends-${String(Math.floor(Number(match[1]) / perFile)).padStart(4, '0')}.yaml` : 'gateway.yaml';
    files.set(file, [...(files.get(file) ?? []), doc]);
  }
  // Each document's text, kept: an edit stringifies only the document it changes, so the bench's
  // own garbage (a whole file through the yaml package) is not collected on the edit's time.
  const texts = new Map<Doc, string>();
  const textOf = (d: Doc): string => texts.get(d) ?? texts.set(d, stringify(d)).get(d)!;
  const fileText = (file: string): string => (files.get(file) ?? []).map(textOf).join('---\n');
  for (const file of files.keys()) writeFileSync(join(dir, file), fileText(file));

  const logger = process.env['BENCH_LOG'] ? createLogger({ level: 'debug', name: 'switchyard' }) : createLogger({ level: 'info', name: 'switchyard' }, { write: () => undefined } as never);
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const running = await serve({ config: dir, xdsPort: 0, xdsHost: '127.0.0.1', metricsPort: 0, metricsHost: '127.0.0.1', envoy: {}, logger, aiExtension: false });
  const tServing = performance.now();
  let waiter: { since: number; seen: string; resolve: (r: { firstByte: number; complete: number }) => void } | undefined;
  let clusterVersion = '';
  const child: ChildProcess = fork(fileURLToPath(new URL('./edit-latency-client.ts', import.meta.url)), [String(running.xdsPort)], { execArgv: ['--import', 'tsx'] });
  child.on('exit', (code) => {
    if (code !== 0 && code !== null) console.error(`edit-latency-client exited with ${code}`);
  });
  child.on('message', (m: ClientReport) => {
    if (m.typeUrl !== TypeUrl.cluster) return;
    // The client's clock is the same epoch clock as ours.
    const origin = performance.timeOrigin;
    if (waiter && m.version !== waiter.seen) {
      waiter.resolve({ firstByte: m.firstByteAt - origin - waiter.since, complete: m.completeAt - origin - waiter.since });
      waiter = undefined;
    }
    clusterVersion = m.version;
  });
  const first = new Promise<{ firstByte: number; complete: number }>((resolve) => (waiter = { since: t0, seen: '', resolve }));
  const firstMs = (await first).firstByte;
  const startCpu = process.cpuUsage(cpu0);
  console.log(`backends ${backends} files ${fileCount}: serve() resolved in ${(tServing - t0).toFixed(0)} ms; first CDS response ${firstMs.toFixed(0)} ms after start (${((startCpu.user + startCpu.system) / 1000).toFixed(0)} CPU-ms)`);
  await new Promise((r) => setTimeout(r, 1_000));

  const samples: number[] = [];
  for (let i = 0; i < edits; i++) {
    const target = (7 + i * 13) % backends;
    const backend = (files.get(`backends-${String(Math.floor(target / perFile)).padStart(4, '0')}.yaml`) ?? []).find((d) => d.kind === 'Backend' && d.metadata.name === `chat-${target}`);
    if (!backend) throw new Error(`no Backend chat-${target}`);
    // Not 3: that is the default, and would change nothing.
    (backend['spec'] as Record<string, unknown>)['outlierDetection'] = { consecutive5xx: 11 + i };
    texts.delete(backend);
    const file = `backends-${String(Math.floor(target / perFile)).padStart(4, '0')}.yaml`;
    const text = fileText(file);
    const changed = new Promise<{ firstByte: number; complete: number }>((resolve) => (waiter = { since: 0, seen: clusterVersion, resolve }));
    const cpu = process.cpuUsage();
    writeFileSync(join(dir, file), text);
    if (waiter) waiter.since = performance.now();
    const { firstByte, complete } = await changed;
    const used = process.cpuUsage(cpu);
    samples.push(firstByte);
    console.log(`edit ${i + 1}: chat-${target} in ${file}: write -> first byte of the new CDS response ${firstByte.toFixed(1)} ms, whole response ${complete.toFixed(1)} ms (serve ${((used.user + used.system) / 1000).toFixed(0)} CPU-ms)`);
    await new Promise((r) => setTimeout(r, 500));
  }
  samples.sort((a, b) => a - b);
  console.log(`edit -> first byte: median ${samples[Math.floor(samples.length / 2)]?.toFixed(1)} ms, max ${samples.at(-1)?.toFixed(1)} ms`);
  child.disconnect();
  await running.stop();
  rmSync(dir, { recursive: true, force: true });
}

main().then(() => process.exit(0), (err: unknown) => { console.error(err); process.exit(1); });
