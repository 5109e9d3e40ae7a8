import { appendFile, mkdtemp, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DestinationStream } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.js';
import type { FileProviderOptions, Snapshot } from '../../src/providers/file.js';
import { FileProvider } from '../../src/providers/file.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * A writer that truncates or creates a file and writes its content later (`cat > file`, a large
 * `cp`, an editor that truncates and then writes) leaves the file empty or cut short in between,
 * for longer than the debounce on a busy machine. No configuration published in between may lack
 * the objects the file had: they would leave Envoy, and their routes with them.
 */

function staticBackend(name: string, port: number): string {
  return `apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: ${name}, namespace: ai}
spec:
  type: Static
  static:
    priorities: [{hosts: [{host: ${name}.internal, port: ${port}}]}]
`;
}

const ROUTE = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat, namespace: ai}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{group: switchyard.dev, kind: Backend, name: alpha}]
`;

/** Three objects in one file; `port` tells one save from another. */
function backendsFile(port: number): string {
  return [staticBackend('alpha', port), staticBackend('bravo', port), ROUTE].join('---\n');
}

let dir: string;
let file: string;
const providers: FileProvider[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'switchyard-partial-'));
  file = path.join(dir, 'backends.yaml');
  await writeFile(path.join(dir, 'other.yaml'), staticBackend('other', 7000));
  await writeFile(file, backendsFile(8080));
});

afterEach(async () => {
  await Promise.all(providers.splice(0).map((p) => p.stop()));
  await rm(dir, { recursive: true, force: true });
});

/**
 * A provider on `dir` with the default debounce, recording every snapshot it publishes and when.
 * Tests whose writer pauses below the settle time give it a wide margin: on a loaded machine a
 * 300 ms sleep can last a second.
 */
async function start(options: Partial<FileProviderOptions> = {}): Promise<{ p: FileProvider; seen: Snapshot[]; times: number[]; log: string[] }> {
  const log: string[] = [];
  const sink: DestinationStream = { write: (line: string) => void log.push(line) };
  const p = new FileProvider({ path: dir, sourceRoot: dir, resyncIntervalMs: 0, logger: createLogger({ level: 'info' }, sink), ...options });
  providers.push(p);
  const first = await p.start();
  expect(names(first)).toEqual(['alpha', 'bravo', 'other']);
  const seen: Snapshot[] = [];
  const times: number[] = [];
  p.onChange((s) => {
    seen.push(s);
    times.push(Date.now());
  });
  return { p, seen, times, log };
}

function names(snap: Snapshot): string[] {
  return snap.inputs.backends.map((b) => b.metadata.name);
}

function portOf(snap: Snapshot, name: string): number | undefined {
  return snap.inputs.backends.find((b) => b.metadata.name === name)?.spec.static?.priorities[0]?.hosts[0]?.port;
}

/** Every published snapshot still serves the file's three objects. */
function expectNothingLost(seen: readonly Snapshot[]): void {
  for (const [i, snap] of seen.entries()) {
    expect(names(snap), `snapshot #${i + 1}`).toEqual(['alpha', 'bravo', 'other']);
    expect(snap.inputs.httpRoutes.map((r) => r.metadata.name), `snapshot #${i + 1}`).toEqual(['chat']);
  }
}

describe('FileProvider while a writer is between two writes', () => {
  for (const gapMs of [100, 300]) {
    it(`never publishes a file truncated in place and written ${gapMs} ms later without its objects, and serves the write at once`, async () => {
      const { seen } = await start({ settleMs: 3_000 });
      await truncate(file, 0);
      await sleep(gapMs);
      expect(seen, 'nothing is published while the file is empty').toEqual([]);
      const written = Date.now();
      await appendFile(file, backendsFile(9090));
      const saved = await waitFor(() => seen.find((s) => portOf(s, 'alpha') === 9090), { what: 'the completed write', timeoutMs: 1_000, intervalMs: 5 });
      expect(Date.now() - written).toBeLessThan(1_000);
      await sleep(200);
      expectNothingLost(seen);
      expect(seen.indexOf(saved)).toBe(seen.length - 1);
      expect(saved.problems).toEqual([]);
    });
  }

  it('never publishes a file cut short between two writes (whole documents, then the rest) without what the rest defines', async () => {
    const { seen } = await start({ settleMs: 3_000 });
    const whole = backendsFile(9090);
    const cut = whole.indexOf('---\n') + 4;
    await writeFile(file, whole.slice(0, cut));
    await sleep(150);
    // Cut inside a document this time: still nothing lost.
    await appendFile(file, whole.slice(cut, whole.indexOf('HTTPRoute')));
    await sleep(150);
    await appendFile(file, whole.slice(whole.indexOf('HTTPRoute')));
    await waitFor(() => seen.find((s) => portOf(s, 'bravo') === 9090), { what: 'the completed write', timeoutMs: 1_000, intervalMs: 5 });
    await sleep(200);
    expectNothingLost(seen);
    // What the first write completed (alpha's new port) may be served before the rest: never less.
    expect(seen.at(-1)?.problems).toEqual([]);
  });

  it('keeps a file written in small pieces served while each piece comes within the settle time, however long the whole write takes', async () => {
    const settleMs = 1_000;
    const { seen } = await start({ settleMs });
    const whole = backendsFile(9090);
    await truncate(file, 0);
    const pieces = 10;
    const size = Math.ceil(whole.length / pieces);
    // 10 pieces 200 ms apart: 2 s in all, well past the settle time, each gap far below it (a
    // loaded machine's timers come late by a few hundred ms).
    for (let i = 0; i < pieces; i++) {
      await sleep(200);
      await appendFile(file, whole.slice(i * size, (i + 1) * size));
    }
    await waitFor(() => seen.find((s) => portOf(s, 'bravo') === 9090 && s.inputs.httpRoutes.length === 1), { what: 'the completed write', timeoutMs: 1_000, intervalMs: 5 });
    await sleep(settleMs + 100);
    expectNothingLost(seen);
  });

  it('reports a file written in place that stays broken after the settle time, still serving what it served; a writer between two writes of it then loses nothing either', async () => {
    const settleMs = 1_000;
    const { seen, times, log } = await start({ settleMs });
    const whole = backendsFile(9090);
    // bravo's document cut inside a flow mapping: a YAML syntax error.
    const broken = whole.slice(0, whole.indexOf('port: 9090}]}]', whole.indexOf('bravo')));
    const written = Date.now();
    await writeFile(file, broken);
    const reported = await waitFor(() => seen.find((s) => s.problems.length > 0), { what: 'the syntax error reported', timeoutMs: 3_000, intervalMs: 5 });
    expect(times[seen.indexOf(reported)]! - written, 'reported no sooner than the settle time').toBeGreaterThanOrEqual(settleMs);
    expect(reported.problems).toEqual([expect.objectContaining({ source: 'backends.yaml#1', message: expect.stringMatching(/^YAML syntax error/) })]);
    expect(portOf(reported, 'alpha')).toBe(9090);
    expect(portOf(reported, 'bravo')).toBe(8080);
    const warning = log.map((l) => JSON.parse(l) as { level: number; msg: string; source?: string }).find((l) => l.source === 'backends.yaml' && l.level === 40);
    expect(warning?.msg).toMatch(/backends\.yaml does not parse for 1000 ms: its problems are reported/);
    // The objects the broken document hides are served from the store's last good version: an
    // emptied file between two writes keeps them too.
    await truncate(file, 0);
    await sleep(150);
    await appendFile(file, whole);
    await waitFor(() => seen.find((s) => portOf(s, 'bravo') === 9090), { what: 'the fixed file', timeoutMs: 1_000, intervalMs: 5 });
    await sleep(200);
    expectNothingLost(seen);
    expect(seen.at(-1)?.problems).toEqual([]);
  });

  it('removes the objects of a file left empty once it has stayed empty for the settle time, with a warning naming it', async () => {
    const settleMs = 500;
    const { seen, times, log } = await start({ settleMs });
    const emptied = Date.now();
    await truncate(file, 0);
    const gone = await waitFor(() => seen[0], { what: 'the removal after the settle time', timeoutMs: 3_000, intervalMs: 5 });
    expect(times[0]! - emptied, 'published no sooner than the settle time').toBeGreaterThanOrEqual(settleMs);
    expect(names(gone)).toEqual(['other']);
    expect(gone.inputs.httpRoutes).toEqual([]);
    const warning = log.map((l) => JSON.parse(l) as { level: number; msg: string; source?: string }).find((l) => l.source === 'backends.yaml' && l.level === 40);
    expect(warning?.msg).toMatch(/backends\.yaml defines nothing for 500 ms: what it no longer defines is removed/);
    await sleep(300);
    expect(seen).toHaveLength(1);
  });

  it('removes an object deleted from a file written in place once the file has stayed so for the settle time, and serves the rest of the edit at once', async () => {
    const settleMs = 2_000;
    const { seen, times } = await start({ settleMs });
    const written = Date.now();
    await writeFile(file, [staticBackend('alpha', 9090), ROUTE].join('---\n'));
    const edited = await waitFor(() => seen[0], { what: 'the edit', timeoutMs: 1_500, intervalMs: 5 });
    expect(times[0]! - written).toBeLessThan(1_500);
    expect(portOf(edited, 'alpha')).toBe(9090);
    expect(names(edited)).toEqual(['alpha', 'bravo', 'other']);
    const removed = await waitFor(() => seen[1], { what: 'the removal', timeoutMs: 4_000, intervalMs: 5 });
    expect(times[1]! - written).toBeGreaterThanOrEqual(settleMs);
    expect(names(removed)).toEqual(['alpha', 'other']);
    expect(portOf(removed, 'alpha')).toBe(9090);
  });

  it('removes an object deleted from a file renamed into place (an atomic save) at once: such a file was written whole', async () => {
    const { seen } = await start({ settleMs: 5_000 });
    const saved = Date.now();
    await writeFile(`${file}.tmp`, [staticBackend('alpha', 9090), ROUTE].join('---\n'));
    await rename(`${file}.tmp`, file);
    const snap = await waitFor(() => seen.find((s) => portOf(s, 'alpha') === 9090), { what: 'the atomic save', timeoutMs: 1_000, intervalMs: 5 });
    expect(Date.now() - saved).toBeLessThan(1_000);
    expect(names(snap)).toEqual(['alpha', 'other']);
  });

  it('holds a file renamed into place that defines nothing, as one left empty', async () => {
    const settleMs = 500;
    const { seen, times } = await start({ settleMs });
    const emptiedAt = Date.now();
    await writeFile(`${file}.tmp`, '# nothing yet\n');
    await rename(`${file}.tmp`, file);
    const gone = await waitFor(() => seen[0], { what: 'the removal after the settle time', timeoutMs: 3_000, intervalMs: 5 });
    expect(times[0]! - emptiedAt, 'published no sooner than the settle time').toBeGreaterThanOrEqual(settleMs);
    expect(names(gone)).toEqual(['other']);
  });

  it('removes the objects of a deleted file at once, even while the file is held empty', async () => {
    const settleMs = 5_000;
    const { seen } = await start({ settleMs });
    await truncate(file, 0);
    await sleep(150);
    expect(seen).toEqual([]);
    const deleted = Date.now();
    await rm(file);
    const gone = await waitFor(() => seen[0], { what: 'the removal of the deleted file', timeoutMs: 1_000, intervalMs: 5 });
    expect(Date.now() - deleted).toBeLessThan(1_000);
    expect(names(gone)).toEqual(['other']);
    expect(gone.inputs.httpRoutes).toEqual([]);
  });

  it('publishes nothing for a new empty file, and its objects once it has content', async () => {
    const { seen } = await start();
    const added = path.join(dir, 'added.yaml');
    await writeFile(added, '');
    await sleep(300);
    expect(seen).toEqual([]);
    await writeFile(added, staticBackend('added', 7100));
    const snap = await waitFor(() => seen[0], { what: 'the new file', timeoutMs: 1_000, intervalMs: 5 });
    expect(names(snap)).toEqual(['added', 'alpha', 'bravo', 'other']);
  });

  it('publishes nothing when a file is truncated and written again with the same content', async () => {
    const { seen } = await start({ settleMs: 3_000 });
    await truncate(file, 0);
    await sleep(150);
    await appendFile(file, backendsFile(8080));
    await sleep(3_500);
    expect(seen).toEqual([]);
  });
});
