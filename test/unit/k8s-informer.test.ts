import http from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, silentLogger } from '../../src/observability/logger.js';
import { KubeClient, type RawObject } from '../../src/providers/kubernetes/api-client.js';
import { Informer } from '../../src/providers/kubernetes/informer.js';
import { WATCHED_KINDS, type WatchedKind } from '../../src/providers/kubernetes/kinds.js';
import { KubernetesProvider } from '../../src/providers/kubernetes/provider.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * The informer's protocol handling against a scripted API server: what it asks for (list, then
 * watch from the list's resourceVersion), and what it does with each answer an API server can
 * give (events, bookmarks, a clean end, 410 as an event or a status, 404 for a missing CRD,
 * server errors). The real API server tests (test/k8s/provider.test.ts) prove the same on the wire.
 */

type WatchAnswer = 'stream' | 'gone-event' | 'gone-status' | 'error-500';

interface WatchRequestSeen {
  resourceVersion: string | null;
  bookmarks: string | null;
  timeoutSeconds: string | null;
}

class ScriptedApi {
  readonly objects = new Map<string, RawObject>();
  resourceVersion = 100;
  lists = 0;
  readonly watches: WatchRequestSeen[] = [];
  /** Answers for the next watches, in order; 'stream' once the script runs out. */
  readonly script: WatchAnswer[] = [];
  /** Status for list requests (200: serve the list). */
  listStatus = 200;
  private readonly streams = new Set<http.ServerResponse>();
  private server!: http.Server;
  port = 0;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const a = this.server.address();
    if (a === null || typeof a === 'string') throw new Error('no address');
    this.port = a.port;
  }

  client(): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: `http://127.0.0.1:${this.port}`, skipTLSVerify: true }],
      users: [{ name: 'fake' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
      currentContext: 'fake',
    });
    return new KubeClient(kc);
  }

  /** Stores the object at a new resourceVersion and sends the event to every open watch. */
  emit(type: 'ADDED' | 'MODIFIED' | 'DELETED', name: string, spec: RawObject = {}, extra: RawObject = {}): void {
    this.resourceVersion++;
    const object: RawObject = { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'ns', resourceVersion: String(this.resourceVersion) }, spec, ...extra };
    if (type === 'DELETED') this.objects.delete(name);
    else this.objects.set(name, object);
    this.send({ type, object });
  }

  bookmark(): void {
    this.resourceVersion++;
    this.send({ type: 'BOOKMARK', object: { kind: 'Service', apiVersion: 'v1', metadata: { resourceVersion: String(this.resourceVersion) } } });
  }

  /** Ends every open watch the way the API server does at timeoutSeconds. */
  endWatches(): void {
    for (const s of this.streams) s.end();
    this.streams.clear();
  }

  get openWatches(): number {
    return this.streams.size;
  }

  async close(): Promise<void> {
    this.endWatches();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private send(event: RawObject): void {
    for (const s of this.streams) s.write(`${JSON.stringify(event)}\n`);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fake');
    const status = (code: number, reason: string, message: string) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code }));
    };
    if (url.searchParams.get('watch') !== 'true') {
      this.lists++;
      if (this.listStatus !== 200) return status(this.listStatus, this.listStatus === 404 ? 'NotFound' : 'Forbidden', 'the server could not find the requested resource');
      // List items carry neither apiVersion nor kind, as from the real API server.
      const items = [...this.objects.values()].map(({ apiVersion: _a, kind: _k, ...rest }) => rest);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'ServiceList', apiVersion: 'v1', metadata: { resourceVersion: String(this.resourceVersion) }, items }));
      return;
    }
    this.watches.push({
      resourceVersion: url.searchParams.get('resourceVersion'),
      bookmarks: url.searchParams.get('allowWatchBookmarks'),
      timeoutSeconds: url.searchParams.get('timeoutSeconds'),
    });
    const answer = this.script.shift() ?? 'stream';
    if (answer === 'gone-status') return status(410, 'Expired', 'too old resource version');
    if (answer === 'error-500') return status(500, 'InternalError', 'etcd is having a bad day');
    res.writeHead(200, { 'content-type': 'application/json' });
    if (answer === 'gone-event') {
      res.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', message: 'The resourceVersion for the provided watch is too old.', code: 410 } })}\n`);
      return;
    }
    res.flushHeaders();
    this.streams.add(res);
    res.on('close', () => this.streams.delete(res));
  }
}

const SERVICE = WATCHED_KINDS.find((k) => k.kind === 'Service') as WatchedKind;
const running: { stop(): Promise<void> }[] = [];
let api: ScriptedApi;

afterEach(async () => {
  for (const r of running.splice(0)) await r.stop();
  await api?.close();
});

async function informer(kind: WatchedKind = SERVICE): Promise<{ informer: Informer; changes: () => number; logs: string[] }> {
  api ??= new ScriptedApi();
  if (api.port === 0) await api.start();
  const logs: string[] = [];
  let changes = 0;
  const client = api.client();
  const i = new Informer({
    client,
    kind,
    namespace: 'ns',
    logger: createLogger({ level: 'debug' }, { write: (l: string) => void logs.push(l) }),
    onChange: () => void changes++,
    backoff: { initialMs: 20, maxMs: 100 },
    watchTimeoutSeconds: { min: 300, max: 300 },
  });
  i.start();
  running.push({ stop: async () => { await i.stop(); client.close(); } });
  return { informer: i, changes: () => changes, logs };
}

function names(i: Informer): string[] {
  return i.list().map((o) => o.name).sort();
}

describe('Informer', () => {
  it('lists, then watches from the list resourceVersion with bookmarks, and fills in apiVersion and kind', async () => {
    api = new ScriptedApi();
    await api.start();
    api.emit('ADDED', 'a');
    const { informer: i } = await informer();
    await i.synced;
    await waitFor(() => api.watches.length === 1, { what: 'a watch' });
    expect(api.watches[0]).toEqual({ resourceVersion: '101', bookmarks: 'true', timeoutSeconds: '300' });
    expect(i.list()[0]?.object).toMatchObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'a', namespace: 'ns' } });
    expect(i.list()[0]?.object['metadata']).not.toHaveProperty('resourceVersion');
  });

  it('applies events, ignores changes to status and resourceVersion only, and follows bookmarks', async () => {
    api = new ScriptedApi();
    await api.start();
    const { informer: i, changes } = await informer();
    await i.synced;
    await waitFor(() => api.openWatches === 1, { what: 'an open watch' });
    api.emit('ADDED', 'a', { ports: [{ port: 80 }] });
    await waitFor(() => changes() === 1, { what: 'the ADDED change' });
    api.emit('MODIFIED', 'a', { ports: [{ port: 80 }] }, { status: { loadBalancer: {} } });
    api.bookmark();
    api.emit('MODIFIED', 'a', { ports: [{ port: 81 }] });
    await waitFor(() => changes() === 2, { what: 'the real MODIFIED change' });
    api.emit('DELETED', 'a');
    await waitFor(() => changes() === 3, { what: 'the DELETED change' });
    expect(names(i)).toEqual([]);
    await sleep(50);
    expect(changes()).toBe(3);
    expect(i.stats().resourceVersion).toBe(String(api.resourceVersion));
  });

  it('resumes from the last resourceVersion when the server ends the watch, without relisting', async () => {
    api = new ScriptedApi();
    await api.start();
    const { informer: i } = await informer();
    await i.synced;
    await waitFor(() => api.openWatches === 1, { what: 'an open watch' });
    api.emit('ADDED', 'a');
    api.bookmark();
    await waitFor(() => i.stats().resourceVersion === String(api.resourceVersion), { what: 'the bookmark' });
    api.endWatches();
    await waitFor(() => api.watches.length === 2, { what: 'the second watch' });
    expect(api.watches[1]?.resourceVersion).toBe(String(api.resourceVersion));
    expect(api.lists).toBe(1);
    expect(i.stats()).toMatchObject({ lists: 1, watches: 2, failures: 0, relistsAfterGone: 0 });
  });

  it.each(['gone-event', 'gone-status'] as const)('relists on 410 (%s) and drops what was deleted meanwhile', async (answer) => {
    api = new ScriptedApi();
    await api.start();
    api.emit('ADDED', 'kept');
    api.emit('ADDED', 'deleted-meanwhile');
    const { informer: i, changes } = await informer();
    await i.synced;
    await waitFor(() => api.openWatches === 1, { what: 'an open watch' });
    // Deleted while no watch sees it; the resumed watch is told its resourceVersion is gone.
    api.endWatches();
    api.objects.delete('deleted-meanwhile');
    api.resourceVersion += 5;
    api.script.push(answer);
    await waitFor(() => names(i).join() === 'kept', { what: 'the relist to drop the deleted object' });
    expect(i.stats()).toMatchObject({ lists: 2, relistsAfterGone: 1, failures: 0 });
    expect(changes()).toBe(1);
    await waitFor(() => api.watches.at(-1)?.resourceVersion === String(api.resourceVersion), { what: 'a watch from the relist resourceVersion' });
  });

  it('backs off and resumes from its resourceVersion after a server error, logging the reason', async () => {
    api = new ScriptedApi();
    await api.start();
    const { informer: i, logs } = await informer();
    await i.synced;
    await waitFor(() => api.openWatches === 1, { what: 'an open watch' });
    api.emit('ADDED', 'a');
    const rv = String(api.resourceVersion);
    api.script.push('error-500', 'error-500');
    api.endWatches();
    await waitFor(() => api.watches.length === 4, { what: 'two failed watches and a good one' });
    expect(api.watches.slice(1).map((w) => w.resourceVersion)).toEqual([rv, rv, rv]);
    expect(i.stats()).toMatchObject({ lists: 1, failures: 2 });
    expect(logs.join('')).toContain('"reason":"500 InternalError: etcd is having a bad day"');
    expect(logs.filter((l) => l.includes('failed; retrying'))).toHaveLength(2);
  });

  it('treats a CRD that is not installed as empty, warns, and lists it once it is served', async () => {
    api = new ScriptedApi();
    await api.start();
    api.listStatus = 404;
    const crdKind: WatchedKind = { ...SERVICE, fromCrd: true, whenAbsent: 'install the CRD' };
    const { informer: i, logs, changes } = await informer(crdKind);
    await i.synced;
    expect(i.stats().state).toBe('absent');
    expect(logs.join('')).toMatch(/is not served by the API server: install the CRD/);
    api.emit('ADDED', 'a');
    api.listStatus = 200;
    await waitFor(() => i.stats().state === 'synced', { what: 'the informer to list once the kind is served' });
    expect(names(i)).toEqual(['a']);
    expect(changes()).toBe(1);
    // One warning for the whole absence, however many retries it took.
    expect(logs.filter((l) => l.includes('is not served by the API server'))).toHaveLength(1);
  });
});

describe('KubernetesProvider on a scripted API server', () => {
  async function provider(opts: { syncTimeoutMs?: number; debounceMs?: number; maxDelayMs?: number } = {}) {
    api ??= new ScriptedApi();
    if (api.port === 0) await api.start();
    const client = api.client();
    const p = new KubernetesProvider({ client, namespaces: ['ns'], kinds: [SERVICE], logger: silentLogger(), backoff: { initialMs: 20, maxMs: 100 }, ...opts });
    running.push({ stop: async () => { await p.stop(); client.close(); } });
    return p;
  }

  it('coalesces a burst of events into one snapshot', async () => {
    api = new ScriptedApi();
    await api.start();
    const p = await provider({ debounceMs: 50, maxDelayMs: 1_000 });
    await p.start();
    const snapshots: number[] = [];
    p.onChange((s) => snapshots.push(s.inputs.services.length));
    await waitFor(() => api.openWatches === 1, { what: 'an open watch' });
    for (let i = 0; i < 20; i++) api.emit('ADDED', `s${i}`, { ports: [{ port: 80 }] });
    await waitFor(() => snapshots.length > 0, { what: 'a snapshot' });
    await sleep(150);
    expect(snapshots).toEqual([20]);
  });

  it('still publishes within maxDelayMs while events never stop', async () => {
    api = new ScriptedApi();
    await api.start();
    const p = await provider({ debounceMs: 80, maxDelayMs: 200 });
    await p.start();
    const at: number[] = [];
    p.onChange(() => at.push(Date.now()));
    await waitFor(() => api.openWatches === 1, { what: 'an open watch' });
    const started = Date.now();
    for (let i = 0; i < 20; i++) {
      api.emit('ADDED', `s${i}`, { ports: [{ port: 80 }] });
      await sleep(40);
    }
    // Events every 40 ms never leave 80 ms of quiet: only the 200 ms bound publishes.
    expect(at.length).toBeGreaterThanOrEqual(2);
    expect((at[0] ?? Infinity) - started).toBeLessThan(400);
  });

  it('gives up start() after syncTimeoutMs, naming the kind that could not be listed and why', async () => {
    api = new ScriptedApi();
    await api.start();
    api.listStatus = 403;
    const p = await provider({ syncTimeoutMs: 300 });
    await expect(p.start()).rejects.toThrow(/cannot list from the API server http:\/\/127\.0\.0\.1:\d+ within 300 ms: Service in ns \(403 Forbidden: /);
  });
});
