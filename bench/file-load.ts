/**
 * The file provider's first load alone (what serve does before translating), in this process:
 * N Backends one file each (the xds-e2e layout) or in F files; CPU and wall of FileProvider.start().
 *
 *   node --import tsx bench/file-load.ts [BACKENDS=10000] [FILES=BACKENDS] [RUNS=3]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { FileProvider } from '../src/providers/file.js';
import { generateManifests } from './translate.js';

const backends = Number(process.argv[2] ?? 10_000);
const fileCount = Number(process.argv[3] ?? backends);
const runs = Number(process.argv[4] ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'switchyard-file-load-'));
const config = join(dir, 'config');
mkdirSync(config);
const docs = generateManifests(backends) as { kind: string; metadata: { name: string } }[];
const files = new Map<string, string[]>();
const perFile = Math.ceil(backends / fileCount);
for (const doc of docs) {
  const match = /^chat-(\d+)/.exec(doc.metadata.name);
  const file = match ? `chat-${Math.floor(Number(match[1]) / perFile)}.yaml` : '00-gateway.yaml';
  files.set(file, [...(files.get(file) ?? []), stringify(doc)]);
}
for (const [file, texts] of files) writeFileSync(join(config, file), texts.join('---\n'));
for (let i = 0; i < runs; i++) {
  const provider = new FileProvider({ path: config, resyncIntervalMs: 0 });
  const cpu = process.cpuUsage();
  const t0 = performance.now();
  const snapshot = await provider.start();
  const ms = performance.now() - t0;
  const used = process.cpuUsage(cpu);
  console.log(`run ${i + 1}: ${files.size} files, ${snapshot.inputs.backends.length} Backends: start ${ms.toFixed(0)} ms wall, ${((used.user + used.system) / 1000).toFixed(0)} CPU-ms`);
  await provider.stop();
}
rmSync(dir, { recursive: true, force: true });
