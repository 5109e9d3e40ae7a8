import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request } from 'node:https';
import OpenAI from 'openai';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { WARMUP_ANSWER_HEADER, WARMUP_CLUSTER_HEADER, WARMUP_DOMAIN, WARMUP_HEADER, signWarmupHeader } from '../../src/ai-extension/warmup.js';
import { createPki, type Pki } from '../support/certs.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';
import { standInsHeld } from '../support/skipping-backend.js';
import { GATEWAY, NAMESPACE, aiBackend, gatewayManifests, startGatewayFixture, type FakeMember, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';

/**
 * The cases the first warm-up left cold (issue 11), each through the real Envoy: a Backend reached
 * only through an HTTPS listener, only through a rule matching a query parameter, split with
 * another in one rule, and the light member of a weighted pool. serve warms them through the
 * warm-up routes (src/envoy/ai-warmup-routes.ts), so the first skip to a never-used member is
 * answered at once instead of after Envoy's 5 s connect timeout, and no provider is called.
 */

const HOSTS = { p0: 'small.llm.test', p1: 'large.llm.test', p2: 'huge.llm.test', p3: 'light.llm.test' } as const;

let gw: GatewayFixture;
let pki: Pki;
let httpsPort: number;
let fakes: Record<'p0' | 'p1' | 'p2' | 'p3', FakeProvider>;
const logLines: string[] = [];

/** Three named pools; a context-window refusal in the first goes straight to the third, skipping the second. */
function skipping(name: string, f: Record<string, FakeProvider>, middle: FakeMember[] = [{ name: 'large', fake: f['p1']!, hostname: HOSTS.p1 }]): Manifest {
  const backend = aiBackend({
    name,
    priorities: [[{ name: 'small', fake: f['p0']!, hostname: HOSTS.p0 }], middle, [{ name: 'huge', fake: f['p2']!, hostname: HOSTS.p2 }]],
    outlierDetection: { enabled: false },
  });
  const spec = backend['spec'] as { ai: { multipool: { priorities: Record<string, unknown>[] } } };
  spec.ai.multipool.priorities.forEach((p, i) => Object.assign(p, { name: ['small-pool', 'middle-pool', 'huge-pool'][i] }));
  Object.assign(spec.ai.multipool.priorities[0] ?? {}, { contextWindowFallback: 'huge-pool' });
  return backend;
}

function route(name: string, rule: Manifest, sectionName?: string): Manifest {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name, namespace: NAMESPACE },
    spec: { parentRefs: [{ name: GATEWAY, ...(sectionName !== undefined ? { sectionName } : {}) }], rules: [rule] },
  };
}

const ref = (name: string, weight?: number): Manifest => ({ group: 'switchyard.dev', kind: 'Backend', name, ...(weight !== undefined ? { weight } : {}) });
const rewrite = (prefix: string): Manifest => ({ matches: [{ path: { type: 'PathPrefix', value: prefix } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } } }] });

function warmedLog(backend: string): Record<string, unknown> | undefined {
  return logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['backend'] === backend && typeof l['msg'] === 'string' && l['msg'].startsWith('ai-warmup: Envoy has a connection ready'));
}

/** One chat completion over HTTPS to the Gateway's HTTPS listener; how long it took and who answered. */
function chatOverTls(path: string): Promise<{ status: number; content: string; elapsedMs: number }> {
  const body = JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] });
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: httpsPort, path, method: 'POST', servername: 'secure.example.test', ca: readFileSync(pki.caFile), headers: { host: 'secure.example.test', 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), authorization: 'Bearer sk-client' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { choices?: { message?: { content?: string } }[] };
          resolve({ status: res.statusCode ?? 0, content: parsed.choices?.[0]?.message?.content ?? '', elapsedMs: performance.now() - started });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A POST to the warm-up virtual host of the HTTP listener (fetch cannot set Host). */
function post(headers: Record<string, string>): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: gw.listenerPort, path: '/v1/chat/completions', method: 'POST', headers: { ...headers, host: WARMUP_DOMAIN, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  pki = createPki('ai-warmup-reach');
  const dir = pki.issue('gateway', { san: ['DNS:secure.example.test'], usage: ['serverAuth'] });
  httpsPort = await freePort();
  const tls: Manifest = {
    apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'gateway-tls', namespace: NAMESPACE },
    data: { 'tls.crt': readFileSync(join(dir, 'tls.crt')).toString('base64'), 'tls.key': readFileSync(join(dir, 'tls.key')).toString('base64') },
  };
  gw = await startGatewayFixture({
    id: 'ai-warmup-reach',
    providers: ['p0', 'p1', 'p2', 'p3'],
    aiWarmup: true,
    logLines,
    manifests: ({ listenerPort, fakes: f }) => {
      const [gatewayClass, gateway] = gatewayManifests(listenerPort) as [Manifest, Manifest];
      const spec = gateway['spec'] as { listeners: Manifest[] };
      spec.listeners.push({ name: 'https', protocol: 'HTTPS', port: httpsPort, hostname: 'secure.example.test', tls: { mode: 'Terminate', certificateRefs: [{ name: 'gateway-tls' }] }, allowedRoutes: { namespaces: { from: 'Same' } } });
      return {
        'gateway.yaml': [gatewayClass, gateway, tls],
        'backends.yaml': [
          skipping('secure', f),
          skipping('query', f),
          skipping('split-a', f),
          skipping('split-b', f),
          // The middle pool: a heavy member the load balancer picks 128 times out of 129, and a light one.
          skipping('weighted', f, [{ name: 'heavy', fake: f['p1']!, hostname: HOSTS.p1, weight: 128 }, { name: 'light', fake: f['p3']!, hostname: HOSTS.p3, weight: 1 }]),
        ],
        'routes.yaml': [
          route('secure', { ...rewrite('/secure/v1'), backendRefs: [ref('secure')] }, 'https'),
          route('query', { matches: [{ path: { type: 'PathPrefix', value: '/query/v1' }, queryParams: [{ name: 'tenant', value: 'blue' }] }], filters: rewrite('/query/v1')['filters'] ?? [], backendRefs: [ref('query')] }, 'http'),
          route('split', { ...rewrite('/split/v1'), backendRefs: [ref('split-a', 1), ref('split-b', 1)] }, 'http'),
          route('weighted', { ...rewrite('/weighted/v1'), backendRefs: [ref('weighted')] }, 'http'),
        ],
      };
    },
    waitForBackends: ['secure', 'query', 'split-a', 'split-b', 'weighted'],
    // Envoy writes access logs through a buffer flushed every 10 s by default.
    envoyArgs: ['--file-flush-interval-msec', '50'],
  });
  fakes = gw.fakes as typeof fakes;
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  pki?.remove();
});

beforeEach(async () => {
  await gw.resetFakes();
});

describe('serve warms AI members wherever a skip can reach them', () => {
  it('every Backend is warmed, whatever its route, listener or split, and no provider is called', async () => {
    for (const backend of ['ai/secure', 'ai/query', 'ai/split-a', 'ai/split-b', 'ai/weighted']) {
      const report = await waitFor(() => warmedLog(backend), { what: `serve to log that ${backend} is warmed`, timeoutMs: 30_000, intervalMs: 100 });
      expect(report['readyMembers']).toEqual(expect.arrayContaining(['0/small', '2/huge']));
    }
    for (const f of Object.values(fakes)) expect(f.received()).toHaveLength(0);
  });

  it('the light member of a weighted pool is warmed, not only the one the load balancer picks', async () => {
    const report = await waitFor(() => warmedLog('ai/weighted'), { what: 'ai/weighted warmed', timeoutMs: 30_000 });
    expect(report['readyMembers']).toEqual(expect.arrayContaining(['1/heavy', '1/light']));
    // Envoy holds a connection to the light member's host, which no client request ever reached.
    const light = (await gw.hosts('weighted')).find((h) => h.port === fakes.p3.port);
    expect(light?.stats['cx_active'] ?? 0).toBeGreaterThan(0);
    expect(fakes.p3.received()).toHaveLength(0);
  });

  it('the first skip to a never-used member is answered at once: HTTPS listener, query match, split rule', async () => {
    for (const backend of ['ai/secure', 'ai/query', 'ai/split-a', 'ai/split-b']) await waitFor(() => warmedLog(backend), { what: `${backend} warmed`, timeoutMs: 30_000 });
    await fakes.p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const linesBefore = logLines.length;
    const secure = await chatOverTls('/secure/v1/chat/completions');
    const started = performance.now();
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${gw.listenerPort}/query/v1`, apiKey: 'sk-client', maxRetries: 0, timeout: 20_000, defaultQuery: { tenant: 'blue' } });
    const answer = await client.chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] });
    const query = { content: answer.choices[0]?.message.content ?? '', elapsedMs: performance.now() - started };
    const split = await gw.chat('/split/v1');
    process.stdout.write(`first skip after warm-up: https ${Math.round(secure.elapsedMs)} ms, query ${Math.round(query.elapsedMs)} ms, split ${Math.round(split.elapsedMs)} ms\n`);
    expect(secure).toMatchObject({ status: 200, content: 'answered by p2' });
    expect(query.content).toBe('answered by p2');
    expect(split.content).toBe('answered by p2');
    // Skipped without calling its provider; a cold member waits out the 5 s connect timeout first.
    expect(fakes.p1.received()).toHaveLength(0);
    // Warmed: every skipped member had a connection ready, so the extension held no stand-in for
    // Envoy's connect timeout (how fast is a bench's business, printed above).
    const skipped = ['ai/secure', 'ai/query', 'ai/split-a', 'ai/split-b'];
    expect(skipped.flatMap((b) => standInsHeld(logLines.slice(linesBefore), b))).toEqual([]);
    expect(gw.envoy.running()).toBe(true);
  });

  it('a warm-up route answers a request whose order is not signed with the extension\'s key with a 403, and calls no provider', async () => {
    const forged = await post({ [WARMUP_CLUSTER_HEADER]: `backend/${NAMESPACE}/query`, [WARMUP_HEADER]: signWarmupHeader('not-the-key-0123456789abcdef0123456789', 'ai/query', 0) });
    expect(forged.status).toBe(403);
    expect(forged.body).toContain('only warm-up requests signed by Switchyard');
    expect(forged.headers[WARMUP_ANSWER_HEADER]).toBeUndefined();
    // The extension's own answer names the member it was for, in the dynamic metadata Envoy's
    // access log reads (the endpoint carries it only inside its facts string).
    const line = await waitFor(
      () => gw.envoy.logs().split('\n').filter((l) => l.startsWith('{') && l.includes('"response_code":403')).map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r['upstream_cluster'] === `backend/${NAMESPACE}/query`),
      { what: 'the access log line of the refused warm-up request', timeoutMs: 10_000 },
    );
    expect(line).toMatchObject({ backend: 'ai/query', member: 'small', priority: 0, provider: 'openaiCompatible' });
    // Without the warm-up header no warm-up route matches: Envoy's 404.
    expect((await post({ [WARMUP_CLUSTER_HEADER]: `backend/${NAMESPACE}/query` })).status).toBe(404);
    for (const f of Object.values(fakes)) expect(f.received()).toHaveLength(0);
  });
});
