/**
 * Per-stage CPU time of one edit among N Backends (100 per file), in memory, no server: the
 * manifest store, translation, the Envoy stage, the cache and the status book, each given its
 * previous state as serve does; "parse one file" is the edited file parsed again, given its
 * previous documents as the file provider does (the YAML text is generated before timing). Complements bench/edit-latency.ts, which times the real serve.
 * `route` edits one HTTPRoute's path match instead of a Backend; `gateways` spreads the routes
 * over that many Gateways (route i on Gateway i mod gateways).
 *
 * EDIT_STAGES_PROFILE=FILE writes a CPU profile of the edits (not of the initial load) to FILE;
 * with --expose-gc the heap kept at the end is printed.
 *
 *   node --import tsx bench/edit-stages.ts [backends=10000] [backend|route] [gateways=1]
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { stringify } from 'yaml';
import { toXdsResourcesReusing, type EnvoyState } from '../src/envoy/index.js';
import { ManifestStore, parseManifestFile, type ManifestFile } from '../src/providers/manifest-files.js';
import { translate, type TranslationState } from '../src/translate/index.js';
import { SnapshotCache } from '../src/xds/cache.js';
import { StatusBook } from '../src/status/book.js';
import { generateManifests } from './translate.js';
type Doc = { kind: string; metadata: { name: string; namespace?: string }; spec: Record<string, unknown> };
const n = Number(process.argv[2] ?? 10000); const perFile = 100;
const editKind = process.argv[3] === 'route' ? 'HTTPRoute' : 'Backend';
const gatewayCount = Number(process.argv[4] ?? 1);
const docs = generateManifests(n) as Doc[];
if (gatewayCount > 1) {
  const template = docs.find((d) => d.kind === 'Gateway');
  if (!template) throw new Error('no Gateway in the generated manifests');
  for (let g = 1; g < gatewayCount; g++) docs.push({ ...template, metadata: { ...template.metadata, name: `bench-${g}` } });
  docs.forEach((d, i) => {
    const m = /^chat-(\d+)$/.exec(d.metadata.name);
    if (d.kind !== 'HTTPRoute' || !m) return;
    const g = Number(m[1]) % gatewayCount;
    docs[i] = { ...d, spec: { ...d.spec, parentRefs: [{ name: g === 0 ? 'bench' : `bench-${g}` }] } };
  });
}
const groups = new Map<string, Doc[]>();
for (const d of docs) { const m = /^chat-(\d+)/.exec(d.metadata.name); const f = m ? `f${String(Math.floor(Number(m[1]) / perFile)).padStart(4, '0')}.yaml` : 'a.yaml'; let l = groups.get(f); if (!l) groups.set(f, (l = [])); l.push(d); }
const files = new Map<string, ManifestFile>();
for (const [f, l] of groups) files.set(f, { name: f, documents: parseManifestFile(f, l.map((d) => stringify(d)).join('---\n')) });
const store = new ManifestStore(); const cache = new SnapshotCache(); const book = new StatusBook();
let ts: TranslationState | undefined;
let es: EnvoyState | undefined;
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
/** `changed`: the file an edit rewrote, told to the store as the file provider tells it. */
function step(label: string, changed?: ManifestFile) {
  const t: Record<string, number> = {}; let c = cpu();
  const lap = (k: string) => { const x = cpu(); t[k] = Math.round(x - c); c = x; };
  const { inputs } = store.build([...files.values()].sort((a, b) => (a.name < b.name ? -1 : 1)), changed === undefined ? undefined : new Map([[changed.name, changed]])); lap('build');
  const tr = translate(inputs, ts); lap('translate');
  const b = toXdsResourcesReusing(tr.ir, {}, es); lap('envoy');
  cache.setResources(b.xds, b.planes); lap('cache');
  book.update(tr.statuses); lap('book');
  ts = tr.state; es = b.state;
  t['total'] = Object.values(t).reduce((s, x) => s + x, 0);
  console.log(label, JSON.stringify(t));
}
console.log(`${n} Backends, ${n} HTTPRoutes on ${gatewayCount} Gateway(s); editing a ${editKind}`);
step('initial');
const profileFile = process.env['EDIT_STAGES_PROFILE'];
const session = profileFile ? new Session() : undefined;
if (session) { session.connect(); await session.post('Profiler.enable'); await session.post('Profiler.start'); }
for (let i = 0; i < 3; i++) {
  const target = 7 + 13 * i; const f = `f${String(Math.floor(target / perFile)).padStart(4, '0')}.yaml`;
  const l = groups.get(f) ?? []; const at = l.findIndex((d) => d.kind === editKind && d.metadata.name === `chat-${target}`); const edited = l[at]; if (!edited) throw new Error(`no ${editKind} chat-${target}`);
  if (editKind === 'Backend') edited.spec['outlierDetection'] = { consecutive5xx: 20 + i };
  else l[at] = { ...edited, spec: { ...edited.spec, rules: [{ matches: [{ path: { type: 'PathPrefix', value: `/chat-${target}/v${2 + i}` } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: `chat-${target}` }] }] } };
  const text = l.map((d) => stringify(d)).join('---\n'); const c0 = cpu(); files.set(f, { name: f, documents: parseManifestFile(f, text, undefined, files.get(f)?.documents) }); const parseMs = Math.round(cpu() - c0);
  console.log('parse one file', parseMs, 'encodes', cache.encodedCount);
  step(`edit ${i}`, files.get(f));
}
console.log('encodes', cache.encodedCount);
// With --expose-gc: what the pipeline's states and the cache keep, after a full collection.
const gc = (globalThis as { gc?: () => void }).gc;
if (gc) { gc(); console.log('heap kept MB', Math.round(process.memoryUsage().heapUsed / 1e6), 'external MB', Math.round(process.memoryUsage().external / 1e6)); }
if (session && profileFile) { const { profile } = await session.post('Profiler.stop'); writeFileSync(profileFile, JSON.stringify(profile)); }
