/**
 * Per-stage CPU time of one edit among N Backends (100 per file), in memory, no server: the
 * manifest store, translation, the Envoy stage, the cache and the status book, each given its
 * previous state as serve does; "parse one file" is the edited file parsed again, given its
 * previous documents as the file provider does (the YAML text is generated before timing). Complements bench/edit-latency.ts, which times the real serve.
 *
 *   node --import tsx bench/edit-stages.ts [backends=10000]
 */
import { stringify } from 'yaml';
import { toXdsResourcesReusing, type EnvoyState } from '../src/envoy/index.js';
import { ManifestStore, parseManifestFile, type ManifestFile } from '../src/providers/manifest-files.js';
import { translate, type TranslationState } from '../src/translate/index.js';
import { SnapshotCache } from '../src/xds/cache.js';
import { StatusBook } from '../src/status/book.js';
import { generateManifests } from './translate.js';
type Doc = { kind: string; metadata: { name: string }; spec: Record<string, unknown> };
const n = Number(process.argv[2] ?? 10000); const perFile = 100;
const docs = generateManifests(n) as Doc[];
const groups = new Map<string, Doc[]>();
for (const d of docs) { const m = /^chat-(\d+)/.exec(d.metadata.name); const f = m ? `f${String(Math.floor(Number(m[1]) / perFile)).padStart(4, '0')}.yaml` : 'a.yaml'; let l = groups.get(f); if (!l) groups.set(f, (l = [])); l.push(d); }
const files = new Map<string, ManifestFile>();
for (const [f, l] of groups) files.set(f, { name: f, documents: parseManifestFile(f, l.map((d) => stringify(d)).join('---\n')) });
const store = new ManifestStore(); const cache = new SnapshotCache(); const book = new StatusBook();
let ts: TranslationState | undefined;
let es: EnvoyState | undefined;
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
function step(label: string) {
  const t: Record<string, number> = {}; let c = cpu();
  const lap = (k: string) => { const x = cpu(); t[k] = Math.round(x - c); c = x; };
  const { inputs } = store.build([...files.values()].sort((a, b) => (a.name < b.name ? -1 : 1))); lap('build');
  const tr = translate(inputs, ts); lap('translate');
  const b = toXdsResourcesReusing(tr.ir, {}, es); lap('envoy');
  cache.setResources(b.xds, b.planes); lap('cache');
  book.update(tr.statuses); lap('book');
  ts = tr.state; es = b.state;
  console.log(label, JSON.stringify(t));
}
step('initial');
for (let i = 0; i < 3; i++) {
  const target = 7 + 13 * i; const f = `f${String(Math.floor(target / perFile)).padStart(4, '0')}.yaml`;
  const l = groups.get(f) ?? []; const edited = l.find((d) => d.kind === 'Backend' && d.metadata.name === `chat-${target}`); if (!edited) throw new Error(`no Backend chat-${target}`); edited.spec['outlierDetection'] = { consecutive5xx: 20 + i };
  const text = l.map((d) => stringify(d)).join('---\n'); const c0 = cpu(); files.set(f, { name: f, documents: parseManifestFile(f, text, undefined, files.get(f)?.documents) }); const parseMs = Math.round(cpu() - c0);
  console.log('parse one file', parseMs, 'encodes', cache.encodedCount);
  step(`edit ${i}`);
}
console.log('encodes', cache.encodedCount);
