import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Backend } from '../../src/api/backend.js';
import type { DestinationStream } from 'pino';
import { createLogger } from '../../src/observability/logger.js';
import type { Snapshot } from '../../src/providers/file.js';
import type { FileProviderOptions } from '../../src/providers/file.js';
import { FileProvider } from '../../src/providers/file.js';
import { sleep, waitFor } from '../support/wait.js';

const GATEWAYS = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: switchyard}
spec: {controllerName: switchyard.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: ai}
spec:
  gatewayClassName: switchyard
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated, namespace: ai}
data: {a: b}
`;

const ROUTE = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat, namespace: ai}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{group: switchyard.dev, kind: Backend, name: chat}]
`;

function chatBackend(model: string, pool = `
        - provider:
            openai: {model: ${model}, authToken: {kind: SecretRef, secretRef: {name: openai-key}}}`): string {
  return `
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: chat, namespace: ai}
spec:
  type: AI
  ai:
    multipool:
      priorities:
      - pool:${pool}
      - pool:
        - provider:
            openaiCompatible: {host: fallback.internal, port: 8000, tls: false}
`;
}

const STATIC_BACKEND = `
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: legacy, namespace: ai}
spec:
  type: Static
  static:
    priorities: [{hosts: [{host: legacy.internal, port: 8080}]}]
`;

const SECRET = `
apiVersion: v1
kind: Secret
metadata: {name: openai-key, namespace: ai}
stringData: {Authorization: sk-live-do-not-log}
`;

const backends = (chatModel: string) => `${chatBackend(chatModel)}---${STATIC_BACKEND}`;

let dir: string;
const providers: FileProvider[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'switchyard-file-'));
});

afterEach(async () => {
  await Promise.all(providers.splice(0).map((p) => p.stop()));
  await rm(dir, { recursive: true, force: true });
});

function provider(target: string, options: Partial<FileProviderOptions> = {}): FileProvider {
  const p = new FileProvider({ path: target, sourceRoot: dir, resyncIntervalMs: 0, ...options });
  providers.push(p);
  return p;
}

/** Records every change the provider reports. */
function record(p: FileProvider): Snapshot[] {
  const seen: Snapshot[] = [];
  p.onChange((s) => seen.push(s));
  return seen;
}

/** The assertion behind "edits are picked up within a second". */
async function nthChange(seen: Snapshot[], n: number): Promise<Snapshot> {
  return waitFor(() => seen[n - 1], { what: `change #${n} from the file provider`, timeoutMs: 1000, intervalMs: 10 });
}

function backend(snap: Snapshot, name: string): Backend | undefined {
  return snap.inputs.backends.find((b) => b.metadata.name === name);
}

function modelOf(b: Backend | undefined): string | undefined {
  return b?.spec.ai?.multipool?.priorities[0]?.pool[0]?.provider.openai?.model;
}

async function writeTree(): Promise<void> {
  await mkdir(path.join(dir, 'routes'));
  await writeFile(path.join(dir, 'gateways.yaml'), GATEWAYS);
  await writeFile(path.join(dir, 'routes', 'chat.yml'), ROUTE);
  await writeFile(path.join(dir, 'backends.yaml'), backends('gpt-4o'));
  await writeFile(path.join(dir, 'secrets.yaml'), SECRET);
  // Neither is a manifest: an editor swap file and a note.
  await writeFile(path.join(dir, '.backends.yaml.swp'), 'garbage: [');
  await writeFile(path.join(dir, 'README.txt'), 'not yaml: [');
}

describe('FileProvider on a directory', () => {
  it('loads every kind from nested files, ignores other kinds and non-manifest files', async () => {
    await writeTree();
    const snap = await provider(dir).start();
    const { inputs, problems } = snap;
    expect(problems).toEqual([]);
    expect(inputs.gatewayClasses.map((o) => o.metadata.name)).toEqual(['switchyard']);
    expect(inputs.gateways.map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).toEqual(['ai/edge']);
    expect(inputs.httpRoutes.map((o) => `${o.metadata.namespace}/${o.metadata.name}`)).toEqual(['ai/chat']);
    expect(inputs.backends.map((o) => o.metadata.name)).toEqual(['chat', 'legacy']);
    expect(inputs.secrets.map((o) => o.stringData?.Authorization)).toEqual(['sk-live-do-not-log']);
    expect(inputs.invalid).toEqual([]);
    expect(modelOf(backend(snap, 'chat'))).toBe('gpt-4o');
    // Every object gets a generation so statuses can carry observedGeneration.
    const all = [...inputs.gatewayClasses, ...inputs.gateways, ...inputs.httpRoutes, ...inputs.backends, ...inputs.secrets];
    expect(all.map((o) => o.metadata.generation)).toEqual([1, 1, 1, 1, 1, 1]);
  });

  it('sees a burst of edits to one Backend as its first save at once and one change for the rest, and bumps only its generation', async () => {
    await writeTree();
    // A debounce well above the gaps between writes, so a loaded CI machine cannot split the burst.
    const p = provider(dir, { debounceMs: 200 });
    const before = await p.start();
    const seen = record(p);

    // A burst of saves with different content, 25 ms apart: the first is served at once, then
    // only the last one is worth a snapshot.
    const file = path.join(dir, 'backends.yaml');
    for (const model of ['gpt-4.1-draft1', 'gpt-4.1-draft2', 'gpt-4.1']) {
      await writeFile(file, backends(model));
      await sleep(25);
    }
    const first = await nthChange(seen, 1);
    const after = await nthChange(seen, 2);
    await sleep(400);
    expect(seen).toHaveLength(2);

    expect(modelOf(backend(first, 'chat'))).toBe('gpt-4.1-draft1');
    expect(modelOf(backend(after, 'chat'))).toBe('gpt-4.1');
    expect(backend(after, 'chat')?.metadata.generation).toBe(3);
    expect(backend(after, 'legacy')?.metadata.generation).toBe(1);
    expect(after.inputs.gateways).toEqual(before.inputs.gateways);
    expect(after.inputs.httpRoutes).toEqual(before.inputs.httpRoutes);
  });

  it("logs a change it publishes after its listeners' turn: the change's push leaves before the line is written", async () => {
    await writeTree();
    const lines: string[] = [];
    const sink: DestinationStream = { write: (line: string) => void lines.push(line) };
    const p = provider(dir, { debounceMs: 5_000, logger: createLogger({ level: 'info' }, sink) });
    await p.start();
    const loaded = (): number => lines.filter((l) => l.includes('file provider: configuration loaded')).length;
    expect(loaded(), 'the first load is logged at once').toBe(1);
    // What a listener (the runtime, pushing the change to Envoy) finds logged when it is called, and a turn later.
    const atListener: number[] = [];
    const turnAfter: number[] = [];
    p.onChange(() => {
      atListener.push(loaded());
      setImmediate(() => turnAfter.push(loaded()));
    });
    await writeFile(path.join(dir, 'backends.yaml'), backends('gpt-4.1'));
    await waitFor(() => turnAfter[0], { what: 'the turn after the change', timeoutMs: 2_000, intervalMs: 5 });
    expect(atListener).toEqual([1]);
    expect(turnAfter).toEqual([2]);
  });

  it('serves a single save at once, without waiting out the debounce', async () => {
    await writeTree();
    const p = provider(dir, { debounceMs: 5_000 });
    await p.start();
    const seen = record(p);
    const saved = Date.now();
    await writeFile(path.join(dir, 'backends.yaml'), backends('gpt-4.1'));
    // nthChange gives up after a second, far below the debounce.
    const after = await nthChange(seen, 1);
    expect(modelOf(backend(after, 'chat'))).toBe('gpt-4.1');
    expect(Date.now() - saved).toBeLessThan(1_000);
  });

  it('serves a save caught truncated at the write that completes it, without waiting out the debounce, judged against what was served', async () => {
    await writeTree();
    const p = provider(dir, { debounceMs: 5_000 });
    const before = await p.start();
    const seen = record(p);
    const file = path.join(dir, 'backends.yaml');
    // What a writer that truncates and then writes leaves between its two system calls.
    await writeFile(file, '');
    await sleep(150);
    expect(seen, 'nothing is published while the file is empty').toHaveLength(0);
    const written = Date.now();
    await writeFile(file, backends('gpt-4.1'));
    // nthChange gives up after a second, far below the debounce.
    const after = await nthChange(seen, 1);
    expect(Date.now() - written).toBeLessThan(1_000);
    expect(modelOf(backend(after, 'chat'))).toBe('gpt-4.1');
    expect(backend(after, 'chat')?.metadata.generation).toBe(2);
    expect(backend(after, 'legacy')?.metadata.generation).toBe(1);
    // The document that did not change is the one served, not parsed again.
    expect(backend(after, 'legacy')).toBe(backend(before, 'legacy'));
    expect(after.problems).toEqual([]);
  });

  it('reads a save caught half done again at once only while it has not changed since: a save still half done at the next write waits for the debounced pass', async () => {
    await writeTree();
    const debounceMs = 600;
    const p = provider(dir, { debounceMs });
    await p.start();
    const seen = record(p);
    const file = path.join(dir, 'backends.yaml');
    const whole = backends('gpt-4.1');
    await writeFile(file, '');
    await sleep(100);
    // Read again at once, and still not whole: no third leading pass.
    await writeFile(file, whole.slice(0, whole.indexOf('static:') + 'static:'.length));
    await sleep(100);
    const written = Date.now();
    await writeFile(file, whole);
    await sleep(debounceMs / 2);
    expect(seen, 'the completing write waits for the debounced pass').toHaveLength(0);
    const after = await waitFor(() => seen[0], { what: 'the debounced pass', timeoutMs: 3_000, intervalMs: 10 });
    // The timer's clock is the event loop's, a few ms behind Date.now() at most.
    expect(Date.now() - written).toBeGreaterThanOrEqual(debounceMs - 50);
    expect(modelOf(backend(after, 'chat'))).toBe('gpt-4.1');
    expect(backend(after, 'chat')?.metadata.generation).toBe(2);
  });

  it('never publishes a save caught half done (truncated, cut inside a document, renamed away): the debounced pass takes it whole', async () => {
    await writeTree();
    const debounceMs = 400;
    const p = provider(dir, { debounceMs });
    await p.start();
    const seen = record(p);
    const file = path.join(dir, 'backends.yaml');
    const whole = backends('gpt-4.1');
    // Each first step leaves the file as an editor or a slow writer may between two system calls;
    // the second completes the save after the leading pass has read the first.
    const halfDone: [string, () => Promise<void>][] = [
      ['truncated, not yet written', () => writeFile(file, '')],
      ['cut inside its second document', () => writeFile(file, whole.slice(0, whole.indexOf('static:') + 'static:'.length))],
      ['cut inside its first document', () => writeFile(file, whole.slice(0, whole.indexOf('multipool:')))],
      ['renamed away, not yet replaced', () => rename(file, `${file}.bak`)],
    ];
    let n = 0;
    for (const [what, firstStep] of halfDone) {
      await firstStep();
      await sleep(150);
      expect(seen, `nothing is published while the file is ${what}`).toHaveLength(n);
      await writeFile(file, backends(`model-${n}`));
      const snap = await waitFor(() => seen[n], { what: `the save completed after the file was ${what}`, timeoutMs: 3_000, intervalMs: 10 });
      n++;
      expect(modelOf(backend(snap, 'chat'))).toBe(`model-${n - 1}`);
      expect(backend(snap, 'legacy')?.metadata.generation, `legacy stays generation 1 after the file was ${what}`).toBe(1);
      expect(backend(snap, 'chat')?.metadata.generation).toBe(n + 1);
      expect(snap.problems).toEqual([]);
      // Quiet again, so the next first step gets a leading pass of its own.
      await sleep(debounceMs + 100);
      expect(seen).toHaveLength(n);
    }
  });

  it('does not report a change when a file is rewritten with the same content', async () => {
    await writeTree();
    const p = provider(dir);
    await p.start();
    const seen = record(p);
    await writeFile(path.join(dir, 'backends.yaml'), backends('gpt-4o'));
    await sleep(400);
    expect(seen).toEqual([]);
  });

  it('keeps serving the last good version of an object whose edit is invalid, and says where and why', async () => {
    await writeTree();
    const p = provider(dir);
    await p.start();
    const seen = record(p);

    await writeFile(path.join(dir, 'backends.yaml'), `${chatBackend('gpt-4o', ' []')}---${STATIC_BACKEND}`);
    const broken = await nthChange(seen, 1);
    expect(modelOf(backend(broken, 'chat'))).toBe('gpt-4o');
    expect(backend(broken, 'chat')?.metadata.generation).toBe(1);
    expect(broken.inputs.invalid).toEqual([
      expect.objectContaining({ kind: 'Backend', namespace: 'ai', name: 'chat', generation: 2, servingLastGood: true }),
    ]);
    expect(broken.problems).toEqual([
      expect.objectContaining({ source: 'backends.yaml#0', field: 'spec.ai.multipool.priorities[0].pool' }),
    ]);

    // Fixed: the new version is served and nothing is reported any more.
    await writeFile(path.join(dir, 'backends.yaml'), backends('o3'));
    const fixed = await nthChange(seen, 2);
    expect(modelOf(backend(fixed, 'chat'))).toBe('o3');
    expect(backend(fixed, 'chat')?.metadata.generation).toBe(3);
    expect(fixed.inputs.invalid).toEqual([]);
    expect(fixed.problems).toEqual([]);
  });

  it('lists an object that was never valid as invalid without serving anything for it', async () => {
    await writeFile(path.join(dir, 'backends.yaml'), STATIC_BACKEND.replace('port: 8080', 'port: 0'));
    const snap = await provider(dir).start();
    expect(snap.inputs.backends).toEqual([]);
    expect(snap.inputs.invalid).toEqual([
      expect.objectContaining({ kind: 'Backend', namespace: 'ai', name: 'legacy', generation: 1, servingLastGood: false }),
    ]);
    expect(snap.problems).toEqual([
      expect.objectContaining({ source: 'backends.yaml#0', field: 'spec.static.priorities[0].hosts[0].port' }),
    ]);
  });

  it('confines a YAML syntax error to its document: other documents and files keep working', async () => {
    await writeTree();
    const settleMs = 300;
    const p = provider(dir, { settleMs });
    const before = await p.start();
    const seen = record(p);

    // Document 1 (the legacy Backend) gets an unclosed flow sequence.
    const brokenStatic = STATIC_BACKEND.replace('priorities: [{hosts:', 'priorities: [{hosts: [');
    const written = Date.now();
    await writeFile(path.join(dir, 'backends.yaml'), `${chatBackend('gpt-4.1')}---${brokenStatic}`);
    // Written in place, the file may be its writer half way: the edit of the document that
    // parses is served at once, the syntax error reported once the file has stayed so.
    const edited = await nthChange(seen, 1);
    expect(modelOf(backend(edited, 'chat'))).toBe('gpt-4.1');
    expect(backend(edited, 'legacy')).toEqual(backend(before, 'legacy'));
    expect(edited.problems).toEqual([]);
    const after = await nthChange(seen, 2);
    expect(Date.now() - written).toBeGreaterThanOrEqual(settleMs);

    expect(after.problems).toHaveLength(1);
    expect(after.problems[0]?.source).toBe('backends.yaml#1');
    expect(after.problems[0]?.message).toMatch(/^YAML syntax error at line \d+, column \d+: /);
    // The other document of the same file took its edit.
    expect(modelOf(backend(after, 'chat'))).toBe('gpt-4.1');
    // The other files are untouched.
    expect(after.inputs.gateways).toEqual(before.inputs.gateways);
    expect(after.inputs.httpRoutes).toEqual(before.inputs.httpRoutes);
    expect(after.inputs.secrets).toEqual(before.inputs.secrets);
    // What the broken document defined cannot be known; what it defined before stays served.
    expect(backend(after, 'legacy')).toEqual(backend(before, 'legacy'));
    expect(after.inputs.invalid).toEqual([expect.objectContaining({ kind: 'Backend', name: 'legacy', servingLastGood: true })]);
  });

  it('removes the objects of a deleted file and brings them back when it returns', async () => {
    await writeTree();
    const p = provider(dir);
    await p.start();
    const seen = record(p);

    await rm(path.join(dir, 'routes', 'chat.yml'));
    const gone = await nthChange(seen, 1);
    expect(gone.inputs.httpRoutes).toEqual([]);
    expect(gone.inputs.backends.map((b) => b.metadata.name)).toEqual(['chat', 'legacy']);

    // A new subdirectory created after start is watched too.
    await mkdir(path.join(dir, 'more', 'routes'), { recursive: true });
    await sleep(100);
    await writeFile(path.join(dir, 'more', 'routes', 'chat.yaml'), ROUTE);
    const back = await nthChange(seen, 2);
    expect(back.inputs.httpRoutes.map((r) => r.metadata.name)).toEqual(['chat']);
    // A recreated object starts a new life.
    expect(back.inputs.httpRoutes[0]?.metadata.generation).toBe(1);
  });

  it('serves edits to two files in one burst, and a file changed later whose own event names it', async () => {
    await writeTree();
    const p = provider(dir);
    await p.start();
    const seen = record(p);
    await writeFile(path.join(dir, 'backends.yaml'), backends('gpt-4.1'));
    await writeFile(path.join(dir, 'routes', 'chat.yml'), ROUTE.replace('name: chat, namespace: ai}', 'name: chat, namespace: ai, labels: {edited: "1"}}'));
    const both = await waitFor(() => seen.find((s) => s.inputs.httpRoutes[0]?.metadata.labels?.['edited'] === '1' && modelOf(backend(s, 'chat')) === 'gpt-4.1'), { what: 'both edits served', timeoutMs: 2_000, intervalMs: 10 });
    expect(both.problems).toEqual([]);
    await sleep(100);
    await writeFile(path.join(dir, 'secrets.yaml'), SECRET.replace('openai-key', 'other-key'));
    const later = await waitFor(() => seen.find((s) => s.inputs.secrets.some((x) => x.metadata.name === 'other-key')), { what: 'the later edit', timeoutMs: 2_000, intervalMs: 10 });
    expect(modelOf(backend(later, 'chat'))).toBe('gpt-4.1');
  });

  it('follows a ConfigMap mount: files linked through ..data, swapped to a new directory at once', async () => {
    // What the kubelet does: files are links into ..data, itself a link to a timestamped directory
    // that a rename of a new link replaces. No event names the files themselves.
    await mkdir(path.join(dir, '..2026_1'));
    await writeFile(path.join(dir, '..2026_1', 'gateways.yaml'), GATEWAYS);
    await writeFile(path.join(dir, '..2026_1', 'backends.yaml'), backends('gpt-4o'));
    await symlink('..2026_1', path.join(dir, '..data'));
    await symlink(path.join('..data', 'gateways.yaml'), path.join(dir, 'gateways.yaml'));
    await symlink(path.join('..data', 'backends.yaml'), path.join(dir, 'backends.yaml'));
    // Older than a file time's tick when first read: not read again for being racy.
    await sleep(100);
    const p = provider(dir);
    expect(modelOf(backend(await p.start(), 'chat'))).toBe('gpt-4o');
    const seen = record(p);
    await mkdir(path.join(dir, '..2026_2'));
    await writeFile(path.join(dir, '..2026_2', 'gateways.yaml'), GATEWAYS);
    await writeFile(path.join(dir, '..2026_2', 'backends.yaml'), backends('gpt-4.1'));
    await symlink('..2026_2', path.join(dir, '..data_tmp'));
    await rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    const swapped = await waitFor(() => seen.at(-1), { what: 'the swapped configuration', timeoutMs: 2_000, intervalMs: 10 });
    expect(modelOf(backend(swapped, 'chat'))).toBe('gpt-4.1');
  });

  it('reports an object defined twice, naming both sources, and serves the first by file path', async () => {
    await writeFile(path.join(dir, 'a.yaml'), chatBackend('from-a'));
    await writeFile(path.join(dir, 'b.yaml'), `${STATIC_BACKEND}---${chatBackend('from-b')}`);
    const snap = await provider(dir).start();
    expect(modelOf(backend(snap, 'chat'))).toBe('from-a');
    expect(snap.inputs.backends).toHaveLength(2);
    expect(snap.problems).toHaveLength(1);
    const [dup] = snap.problems;
    expect(dup?.source).toBe('b.yaml#1');
    expect(dup?.message).toContain('a.yaml#0');
    expect(dup?.object).toEqual({ kind: 'Backend', namespace: 'ai', name: 'chat' });
  });

  it('keeps serving an object when a new file that sorts first defines it again, and names both files', async () => {
    await writeFile(path.join(dir, 'b.yaml'), chatBackend('from-b'));
    const p = provider(dir);
    const seen = record(p);
    expect(modelOf(backend(await p.start(), 'chat'))).toBe('from-b');
    await writeFile(path.join(dir, 'a.yaml'), chatBackend('from-a'));
    const snap = await nthChange(seen, 1);
    expect(modelOf(backend(snap, 'chat'))).toBe('from-b');
    expect(snap.problems).toHaveLength(1);
    const [dup] = snap.problems;
    expect(dup?.source).toBe('a.yaml#0');
    expect(dup?.message).toMatch(/defined in both a\.yaml .* and b\.yaml .*b\.yaml#0 was served first and keeps being served/);
  });

  it('serves a Gateway API object with an unknown field and reports the object and the field', async () => {
    await writeFile(path.join(dir, 'route.yaml'), `${ROUTE}  futureField: {a: 1}\n`);
    const snap = await provider(dir).start();
    expect(snap.inputs.httpRoutes.map((r) => r.metadata.name)).toEqual(['chat']);
    expect(snap.problems).toEqual([expect.objectContaining({ source: 'route.yaml#0', object: { kind: 'HTTPRoute', namespace: 'ai', name: 'chat' }, field: 'spec.futureField' })]);
    expect(snap.inputs.unknownFields).toEqual([{ kind: 'HTTPRoute', namespace: 'ai', name: 'chat', fields: ['spec.futureField'] }]);
  });

  it('never writes Secret values to the log, even from a broken Secret document', async () => {
    const lines: string[] = [];
    const sink: DestinationStream = { write: (line: string) => void lines.push(line) };
    await writeFile(path.join(dir, 'secrets.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata: {name: k, namespace: ai}\nstringData:\n  Authorization: "sk-live-do-not-log\n');
    await writeFile(path.join(dir, 'more.json'), '{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "j"}, "stringData": {"a": "sk-live-json-do-not-log}}');
    const snap = await provider(dir, { logger: createLogger({ level: 'debug' }, sink) }).start();
    expect(snap.problems.map((p) => p.source).sort()).toEqual(['more.json#0', 'secrets.yaml#0']);
    const log = lines.join('');
    expect(log).toContain('secrets.yaml#0');
    expect(log).toContain('more.json#0');
    expect(log).not.toContain('sk-live');
    // Logged once per change, not once per file event.
    await writeFile(path.join(dir, 'secrets.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata: {name: k, namespace: ai}\nstringData:\n  Authorization: "sk-live-do-not-log\n');
    await sleep(300);
    expect(lines.filter((l) => l.includes('"source":"secrets.yaml#0"'))).toHaveLength(1);
  });
});

describe('FileProvider size limits', () => {
  it('refuses a document over the document limit, naming it and the flag, and serves the rest of the file', async () => {
    const big = `apiVersion: v1\nkind: Secret\nmetadata: {name: big, namespace: ai}\nstringData: {Authorization: ${'k'.repeat(5_000)}}\n`;
    await writeFile(path.join(dir, 'all.yaml'), `${STATIC_BACKEND}---\n${big}`);
    const snap = await provider(dir, { limits: { documentBytes: 4_096 } }).start();
    expect(snap.inputs.backends.map((b) => b.metadata.name)).toEqual(['legacy']);
    expect(snap.inputs.secrets).toEqual([]);
    expect(snap.problems).toHaveLength(1);
    expect(snap.problems[0]?.source).toBe('all.yaml#1');
    expect(snap.problems[0]?.message).toMatch(/this document is 5(\.\d)? KiB, more than the 4 KiB allowed; split it, or raise the limit with --max-document-size/);
  });

  it('refuses a file that grew over the file limit and keeps serving what it held', async () => {
    await writeFile(path.join(dir, 'backends.yaml'), backends('gpt-4o'));
    await writeFile(path.join(dir, 'route.yaml'), ROUTE);
    const p = provider(dir, { limits: { fileBytes: 4_096 } });
    const seen = record(p);
    const first = await p.start();
    expect(first.problems).toEqual([]);
    await writeFile(path.join(dir, 'backends.yaml'), `${backends('gpt-4o-mini')}# ${'padding '.repeat(1_000)}\n`);
    const snap = await nthChange(seen, 1);
    expect(modelOf(backend(snap, 'chat'))).toBe('gpt-4o');
    expect(snap.inputs.httpRoutes.map((r) => r.metadata.name)).toEqual(['chat']);
    expect(snap.problems.map((x) => [x.source, x.message])).toEqual([['backends.yaml', expect.stringMatching(/^this file is \d+(\.\d)? KiB, more than the 4 KiB allowed; .*--max-file-size$/)]]);
  });

  it('refuses to start on a configuration over the total limit, and keeps the last one when it grows over it', async () => {
    await writeFile(path.join(dir, 'a.yaml'), STATIC_BACKEND);
    await writeFile(path.join(dir, 'b.yaml'), ROUTE);
    await expect(provider(dir, { limits: { totalBytes: 300 } }).start()).rejects.toThrow(/the configuration under .* \(2 files\) is \d+ bytes, more than the 300 bytes allowed; .*--max-config-size/);

    const p = provider(dir, { limits: { totalBytes: 1_000 } });
    const seen = record(p);
    await p.start();
    await writeFile(path.join(dir, 'c.yaml'), `${chatBackend('gpt-4o')}# ${'padding '.repeat(100)}\n`);
    const snap = await nthChange(seen, 1);
    expect(snap.inputs.backends.map((b) => b.metadata.name)).toEqual(['legacy']);
    expect(snap.problems[0]?.message).toMatch(/more than the 1000 bytes allowed; split it, or raise the limit with --max-config-size; serving the configuration last loaded/);
  });
});

/**
 * Watches the event loop from now until stop(): its longest block is the most CPU this thread used
 * between two turns, not the wall time between them, which on a busy machine also counts the time
 * the process waited for a core (656 ms once, beside the e2e suite at load average 20, with 20-28
 * ms of CPU). stop() lets the timer run once more, so a block that lasted until the end is counted.
 */
function watchBlocks(): { stop(): Promise<{ longestMs: number; totalMs: number }> } {
  const cpuMs = (): number => {
    const used = process.threadCpuUsage();
    return (used.user + used.system) / 1000;
  };
  const started = cpuMs();
  let last = started;
  let longest = 0;
  const timer = setInterval(() => {
    const now = cpuMs();
    longest = Math.max(longest, now - last);
    last = now;
  }, 5);
  return {
    async stop() {
      await sleep(20);
      clearInterval(timer);
      return { longestMs: longest, totalMs: cpuMs() - started };
    },
  };
}

describe('FileProvider on a large file', () => {
  it('keeps the event loop turning while it parses (xDS keepalives and health probes go on)', async () => {
    const secret = (i: number) => `apiVersion: v1\nkind: Secret\nmetadata: {name: key-${i}, namespace: ai}\nstringData: {Authorization: sk-${i}}\n`;
    await writeFile(path.join(dir, 'secrets.yaml'), Array.from({ length: 15_000 }, (_, i) => secret(i)).join('---\n'));
    const blocks = watchBlocks();
    let took = 0;
    let maxGap = 0;
    try {
      const snap = await provider(dir).start();
      expect(snap.inputs.secrets).toHaveLength(15_000);
    } finally {
      ({ totalMs: took, longestMs: maxGap } = await blocks.stop());
    }
    // Meaningful only if loading takes several gaps' worth; one long block would fail both.
    expect(took, `load took ${took.toFixed(0)} CPU-ms`).toBeGreaterThan(3 * maxGap);
    expect(maxGap).toBeLessThan(500);
  });
});

describe('FileProvider on many files touched at once', () => {
  it('keeps the event loop turning while it reads them again (each is read synchronously)', async () => {
    const secret = (i: number, value: string) => `apiVersion: v1\nkind: Secret\nmetadata: {name: key-${i}, namespace: ai}\nstringData: {Authorization: ${value}-${i}}\n`;
    const files = Array.from({ length: 4_000 }, (_, i) => path.join(dir, `secret-${i}.yaml`));
    await Promise.all(files.map((file, i) => writeFile(file, secret(i, 'sk'))));
    const p = provider(dir, { debounceMs: 50 });
    await p.start();
    const seen = record(p);
    // Gaps of 500+ ms wall at load 10-18, where the thread used far less (see watchBlocks).
    const blocks = watchBlocks();
    let took = 0;
    let maxGap = 0;
    try {
      // Every file rewritten: the events name files read before, so the pass after them reads those files alone.
      await Promise.all(files.map((file, i) => writeFile(file, secret(i, 'sk-new'))));
      await waitFor(() => seen.find((snap) => snap.inputs.secrets.every((s) => s.stringData?.Authorization?.startsWith('sk-new-'))), {
        what: 'every Secret read again', timeoutMs: 20_000, intervalMs: 5,
      });
    } finally {
      ({ totalMs: took, longestMs: maxGap } = await blocks.stop());
    }
    // Meaningful only if reading takes several gaps' worth; one long block would fail both.
    expect(took, `writing and reading took ${took.toFixed(0)} CPU-ms`).toBeGreaterThan(3 * maxGap);
    expect(maxGap, `the longest block, of ${took.toFixed(0)} CPU-ms in all`).toBeLessThan(500);
  });
});

describe('FileProvider on a single file', () => {
  it('follows the file through editor-style replaces', async () => {
    const file = path.join(dir, 'switchyard.yaml');
    await writeFile(file, `${GATEWAYS}---${backends('gpt-4o')}`);
    const settleMs = 300;
    const p = provider(file, { settleMs });
    const first = await p.start();
    expect(first.inputs.backends.map((b) => b.metadata.name)).toEqual(['chat', 'legacy']);
    expect(first.problems).toEqual([]);
    const seen = record(p);

    // Atomic save: write a temporary file, rename it over the original (new inode).
    await writeFile(path.join(dir, 'switchyard.yaml.tmp'), `${GATEWAYS}---${backends('gpt-4.1')}`);
    await rename(path.join(dir, 'switchyard.yaml.tmp'), file);
    expect(modelOf(backend(await nthChange(seen, 1), 'chat'))).toBe('gpt-4.1');

    // Vim-style save: move the original away, write a new file under the old name. When the
    // write comes late (a busy machine), the provider may read the moment the file is missing:
    // that snapshot keeps the last configuration and reports the file.
    await rename(file, `${file}~`);
    await writeFile(file, `${GATEWAYS}---${backends('o3')}`);
    const saved = await waitFor(() => seen.find((s) => modelOf(backend(s, 'chat')) === 'o3'), { what: 'the vim-style save from the file provider', timeoutMs: 1000, intervalMs: 10 });
    const savedAt = seen.indexOf(saved);
    for (const between of seen.slice(1, savedAt)) {
      expect(modelOf(backend(between, 'chat'))).toBe('gpt-4.1');
      expect(between.problems).toEqual([expect.objectContaining({ source: 'switchyard.yaml', message: expect.stringContaining('ENOENT') })]);
    }
    expect(savedAt).toBeLessThanOrEqual(2);

    // And a plain in-place write still works after both replaces: the edit at once, the Backend
    // it no longer defines once the file has stayed so for the settle time.
    await writeFile(file, `${GATEWAYS}---${chatBackend('o4-mini')}`);
    const written = Date.now();
    const edited = await nthChange(seen, savedAt + 2);
    expect(modelOf(backend(edited, 'chat'))).toBe('o4-mini');
    expect(edited.inputs.backends.map((b) => b.metadata.name)).toEqual(['chat', 'legacy']);
    const last = await nthChange(seen, savedAt + 3);
    expect(Date.now() - written).toBeGreaterThanOrEqual(settleMs - 50);
    expect(modelOf(backend(last, 'chat'))).toBe('o4-mini');
    expect(last.inputs.backends.map((b) => b.metadata.name)).toEqual(['chat']);
    await sleep(300);
    expect(seen).toHaveLength(savedAt + 3);
  });

  it('keeps the last configuration while the file is missing and reloads it when it returns', async () => {
    const file = path.join(dir, 'switchyard.yaml');
    await writeFile(file, backends('gpt-4o'));
    const p = provider(file);
    const first = await p.start();
    const seen = record(p);

    await rm(file);
    const missing = await nthChange(seen, 1);
    expect(missing.inputs).toEqual(first.inputs);
    expect(missing.problems).toEqual([expect.objectContaining({ source: 'switchyard.yaml', message: expect.stringContaining('ENOENT') })]);

    // Written after it was created, the file may be read empty in between: that keeps the objects served.
    await writeFile(file, backends('o3'));
    const back = await waitFor(() => seen.find((s) => modelOf(backend(s, 'chat')) === 'o3'), { what: 'the file back', timeoutMs: 1000, intervalMs: 10 });
    expect(back.problems).toEqual([]);
    for (const between of seen.slice(1, seen.indexOf(back))) expect(between.inputs).toEqual(first.inputs);
  });

  it('rejects a path that does not exist', async () => {
    await expect(provider(path.join(dir, 'missing.yaml')).start()).rejects.toThrow(/missing\.yaml does not exist: give a manifest file/);
  });
});

describe('FileProvider stop', () => {
  /** The fs watchers a provider holds: what keeps it (and its store) reachable while they live. */
  const watchers = (p: FileProvider): Map<string, import('node:fs').FSWatcher> => p['watchers'];

  it('closes every watcher and takes its listeners off, so nothing left holds the provider', async () => {
    await writeTree();
    const p = provider(dir);
    await p.start();
    const open = [...watchers(p).values()];
    expect(open.length).toBe(2);
    expect(open.every((w) => w.listenerCount('change') === 1 && w.listenerCount('error') === 1)).toBe(true);
    await p.stop();
    expect(watchers(p).size).toBe(0);
    expect(open.map((w) => w.listenerCount('change') + w.listenerCount('error'))).toEqual([0, 0]);
  });

  it('a stop while it is starting wins: start fails saying so, nothing is watched, a later edit is not reported', async () => {
    await writeTree();
    const p = provider(dir);
    const seen = record(p);
    const starting = p.start();
    await p.stop();
    await expect(starting).rejects.toThrow(/was stopped while it was starting; start it again to serve it/);
    expect(watchers(p).size).toBe(0);
    // A provider that is not stopped sees the edit: once it has, the stopped one would have too.
    const marker = provider(dir);
    const markerSeen = record(marker);
    await marker.start();
    await writeFile(path.join(dir, 'backends.yaml'), backends('gpt-4.1'));
    await nthChange(markerSeen, 1);
    await sleep(100);
    expect(seen).toEqual([]);
  });
});
