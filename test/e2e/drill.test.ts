import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { DRILL_ANSWER_HEADER, DRILL_HEADER, signDrillHeader } from '../../src/ai-extension/drill.js';
import { runDrill } from '../../src/cli/drill.js';
import { UsageError } from '../../src/cli/flags.js';
import { aiBackend, gatewayManifests, httpRoute, NAMESPACE, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';
import { waitFor } from '../support/wait.js';

/**
 * `switchyard drill` through the real Envoy and the AI extension (serve with fake providers): the
 * extension fails priority 0's attempts itself, Envoy's retry policy moves to priority 1, and
 * priority 0's provider never receives a request. A drill header that is unsigned, signed with
 * another key, stale or replayed is ignored: the request is served by priority 0 as usual.
 */

const KEY = 'drill-key-0123456789abcdef0123456789abcdef';
const KEY_SECRET = 'chat-drill-key';
const logLines: string[] = [];
let gw: GatewayFixture;
let p0: FakeProvider;
let p1: FakeProvider;
let p2: FakeProvider;
let keyFile: string;
let wrongKeyFile: string;

function withDrill(backend: Manifest): Manifest {
  (backend['spec'] as Record<string, unknown>)['drill'] = { keySecretRef: { name: KEY_SECRET } };
  return backend;
}

const gatewayUrl = (): string => `http://127.0.0.1:${gw.listenerPort}/v1`;
const statusz = (): string => `http://127.0.0.1:${gw.controller.metricsPort}`;

async function chatWith(headers: Record<string, string>): Promise<Response> {
  const res = await fetch(`${gatewayUrl()}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
  });
  await res.arrayBuffer();
  return res;
}

async function metric(line: RegExp): Promise<number> {
  const text = await (await fetch(`${statusz()}/metrics`)).text();
  const found = text.split('\n').find((l) => line.test(l));
  return found === undefined ? 0 : Number(found.split(' ').pop());
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-drill-'));
  keyFile = join(dir, 'key');
  writeFileSync(keyFile, `${KEY}\n`);
  wrongKeyFile = join(dir, 'wrong');
  writeFileSync(wrongKeyFile, 'another-key-0123456789abcdef0123456789ab');
  gw = await startGatewayFixture({
    id: 'drill',
    providers: ['p0', 'p1', 'p2'],
    logLines,
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        withDrill(aiBackend({ name: 'chat', priorities: [[{ name: 'primary', fake: fakes['p0']!, hostname: 'p0.llm.test' }], [{ name: 'secondary', fake: fakes['p1']!, hostname: 'p1.llm.test' }]] })),
        // Three pools: drilling priority 1 fails priorities 0 and 1 (traffic reaches 1 only through 0).
        withDrill(aiBackend({
          name: 'three',
          priorities: [
            [{ name: 'first', fake: fakes['p0']!, hostname: 'p0.llm.test' }],
            [{ name: 'second', fake: fakes['p1']!, hostname: 'p1.llm.test' }],
            [{ name: 'third', fake: fakes['p2']!, hostname: 'p2.llm.test' }],
          ],
        })),
        { apiVersion: 'v1', kind: 'Secret', metadata: { name: KEY_SECRET, namespace: NAMESPACE }, stringData: { key: KEY } },
      ],
      'routes.yaml': [httpRoute('chat', [{ path: '/v1', backend: 'chat' }, { path: '/three/v1', rewritePrefix: '/v1', backend: 'three' }])],
    }),
    waitForBackends: ['chat', 'three'],
  });
  ({ p0, p1, p2 } = gw.fakes as Record<'p0' | 'p1' | 'p2', FakeProvider>);
  // Steady state: Envoy's first connections are not what the drill measures.
  await gw.chat();
  await gw.resetFakes();
});

afterAll(async () => {
  await gw?.stop();
});

describe('switchyard drill --priority 0 --requests 5', () => {
  it('has priority 1 answer every request while priority 0 receives none, and says so', async () => {
    let out = '';
    const code = await runDrill(
      ['--backend', 'ai/chat', '--priority', '0', '--requests', '5', '--gateway', gatewayUrl(), '--key-file', keyFile, '--from', statusz()],
      (t) => (out += t),
    );
    expect(out).toMatch(/^Drill of Backend ai\/chat: priority 0 failed by the AI extension, 5 requests to /);
    const rows = out.split('\n').filter((l) => /^\d+\s/.test(l));
    expect(rows).toHaveLength(5);
    for (const row of rows) expect(row).toMatch(/^\d+\s+200\s+priority 1 \/ secondary\s+\d+ ms\s+\d+ ms\s+yes$/);
    expect(out).toMatch(/Summary: 5 requests, 5 failed over, 0 errors; added latency p50 \d+ ms, p95 \d+ ms/);
    expect(code).toBe(0);
    console.log(out);

    expect(p0.received()).toHaveLength(0);
    expect(p1.received()).toHaveLength(5);
    // The surviving attempt is a real, small call to priority 1's provider, without the drill header.
    for (const r of p1.received()) {
      expect((r.body as { max_tokens?: number }).max_tokens).toBe(1);
      expect(r.headers[DRILL_HEADER]).toBeUndefined();
    }
    expect(await gw.clusterStat('chat', 'upstream_rq_retry')).toBeGreaterThanOrEqual(5);
    const primary = (await gw.hosts('chat')).find((h) => h.priority === 0);
    // Envoy charges each drilled attempt to the primary's host (the warm-up request and the 5
    // stand-ins), though the provider received none of them (above): the upstream request exists,
    // its headers never left Envoy.
    expect(primary?.stats['rq_total']).toBe(6);
    expect(primary?.healthFlags).toEqual([]);
    console.log(`drill: primary host cx_total=${primary?.stats['cx_total']} rq_total=${primary?.stats['rq_total']}`);
    // The key went to the extension (the drill was honoured), never into Envoy's configuration.
    expect(await gw.envoy.admin('/config_dump?include_eds')).not.toContain(KEY);

    expect(await metric(/^switchyard_ai_drill_failures_total\{.*member="primary".*priority="0"/)).toBe(5);
    expect(await metric(/^switchyard_ai_drill_answers_total\{.*priority="1",member="secondary",outcome="answered"/)).toBe(5);
    // Drill traffic is not a failure of the primary in the extension's counters.
    expect(await metric(/^switchyard_ai_failures_total\{.*member="primary"/)).toBe(0);
    expect(logLines.filter((l) => l.includes('drill failed this attempt') && l.includes('"drill":true'))).toHaveLength(5);
    await gw.resetFakes();
  });
});

describe('switchyard drill --priority 1 on three pools', () => {
  it('fails priorities 0 and 1, and priority 2 answers', async () => {
    await gw.resetFakes();
    let out = '';
    const code = await runDrill(
      ['--backend', 'ai/three', '--priority', '1', '--requests', '3', '--gateway', `http://127.0.0.1:${gw.listenerPort}/three/v1`, '--key-file', keyFile, '--from', statusz()],
      (t) => (out += t),
    );
    expect(out).toMatch(/Summary: 3 requests, 3 failed over, 0 errors/);
    expect(out.split('\n').filter((l) => /^\d+\s+200\s+priority 2 \/ third\s/.test(l))).toHaveLength(3);
    expect(code).toBe(0);
    expect(p0.received()).toHaveLength(0);
    expect(p1.received()).toHaveLength(0);
    expect(p2.received()).toHaveLength(3);
    expect(await metric(/^switchyard_ai_drill_failures_total\{backend="ai\/three",member="second",priority="1"\}/)).toBe(3);
    await gw.resetFakes();
  });
});

describe('a drill header the extension must ignore', () => {
  const cases: [string, () => string][] = [
    ['unsigned', () => 'v1;ts=1;nonce=00112233445566778899aabb;backend=ai/chat;priority=0'],
    ['signed with another key', () => signDrillHeader('another-key-0123456789abcdef0123456789ab', 'ai/chat', 0)],
    ['stale (signed 5 minutes ago)', () => signDrillHeader(KEY, 'ai/chat', 0, Date.now() - 5 * 60_000)],
    ['for another Backend', () => signDrillHeader(KEY, 'ai/other', 0)],
  ];
  for (const [what, header] of cases) {
    it(`is ignored when ${what}: priority 0 answers as usual`, async () => {
      await gw.resetFakes();
      const res = await chatWith({ [DRILL_HEADER]: header() });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-fake-provider')).toBe('p0');
      expect(res.headers.get(DRILL_ANSWER_HEADER)).toBeNull();
      expect(p0.received()).toHaveLength(1);
      expect(p1.received()).toHaveLength(0);
      // Ignored or not, the header is not the provider's business.
      expect(p0.received()[0]?.headers[DRILL_HEADER]).toBeUndefined();
    });
  }

  it('is honoured once and ignored when replayed by another request', async () => {
    await gw.resetFakes();
    const header = signDrillHeader(KEY, 'ai/chat', 0);
    const first = await chatWith({ [DRILL_HEADER]: header });
    expect(first.headers.get('x-fake-provider')).toBe('p1');
    expect(first.headers.get(DRILL_ANSWER_HEADER)).toMatch(/^priority=1;member=secondary;addedMs=\d+$/);
    const replay = await chatWith({ [DRILL_HEADER]: header });
    expect(replay.headers.get('x-fake-provider')).toBe('p0');
    expect(p0.received()).toHaveLength(1);
  });

  it('is not honoured again by reusing the request id of the request that used it', async () => {
    await gw.resetFakes();
    const header = signDrillHeader(KEY, 'ai/chat', 0);
    const id = `drill-${Date.now()}`;
    const first = await chatWith({ [DRILL_HEADER]: header, 'x-request-id': id });
    expect(first.headers.get('x-fake-provider')).toBe('p1');
    // Same id, same header: a replay. Same id, no header: an ordinary request.
    const replay = await chatWith({ [DRILL_HEADER]: header, 'x-request-id': id });
    expect(replay.headers.get('x-fake-provider')).toBe('p0');
    const plain = await chatWith({ 'x-request-id': id });
    expect(plain.headers.get('x-fake-provider')).toBe('p0');
    expect(plain.headers.get(DRILL_ANSWER_HEADER)).toBeNull();
    expect(p0.received()).toHaveLength(2);
    // Envoy kept the client's id, so the extension really saw the same id again.
    expect(p0.received().map((r) => r.headers['x-request-id'])).toEqual([id, id]);
  });
});

describe('switchyard drill errors', () => {
  it('with the wrong key: exit 1, nothing failed over, and the fix named', async () => {
    await gw.resetFakes();
    let out = '';
    const code = await runDrill(['--backend', 'ai/chat', '--requests', '2', '--gateway', gatewayUrl(), '--key-file', wrongKeyFile], (t) => (out += t));
    expect(code).toBe(1);
    expect(out).toMatch(/Summary: 2 requests, 0 failed over, 0 errors/);
    expect(out).toMatch(/ignored the drill header .*spec\.drill\.keySecretRef/);
    expect(p0.received()).toHaveLength(2);
  });

  it('names an unknown Backend and where to list them', async () => {
    await expect(runDrill(['--backend', 'ai/nope', '--gateway', gatewayUrl(), '--key-file', keyFile, '--from', statusz()], () => undefined))
      .rejects.toThrow(/--backend ai\/nope: no such Backend at .*\(it has ai\/chat, ai\/three\); switchyard status --from .* lists them/);
  });

  it('names a priority with nothing after it', async () => {
    await expect(runDrill(['--backend', 'ai/chat', '--priority', '1', '--gateway', gatewayUrl(), '--key-file', keyFile, '--from', statusz()], () => undefined))
      .rejects.toThrow(/--priority 1: Backend ai\/chat has no priority after 1 to fail over to/);
  });

  it('asks for the key, naming both flags', async () => {
    const run = runDrill(['--backend', 'ai/chat', '--gateway', gatewayUrl()], () => undefined);
    await expect(run).rejects.toThrow(UsageError);
    await expect(runDrill(['--backend', 'ai/chat', '--gateway', gatewayUrl()], () => undefined)).rejects.toThrow(/--key-secret NS\/NAME \(the Secret its spec\.drill\.keySecretRef names, key "key"\) or --key-file PATH/);
  });
});

describe('ignored drill headers in the log', () => {
  it('is logged once per Backend and reason, never with the key', () => {
    const ignored = logLines.filter((l) => l.includes('drill header ignored'));
    // Several of each were sent (the wrong-key drill sent two more): one line each.
    expect(ignored.filter((l) => l.includes('"reason":"bad_signature"'))).toHaveLength(1);
    expect(ignored.filter((l) => l.includes('"reason":"malformed"'))).toHaveLength(1);
    expect(ignored.filter((l) => l.includes('"reason":"other_backend"'))).toHaveLength(1);
    expect(ignored.filter((l) => l.includes('"reason":"stale"'))).toHaveLength(1);
    expect(ignored.filter((l) => l.includes('"reason":"replayed"'))).toHaveLength(1);
    expect(logLines.some((l) => l.includes(KEY))).toBe(false);
  });
});

// Last: it ejects the primary of ai/chat for the rest of the file.
describe('a drill of a member that was failing', () => {
  it('does not reset its failure count: its real 503 and two drilled attempts eject it (consecutive 5xx and gateway failures: 3)', async () => {
    const ejections = async (): Promise<number> => gw.clusterStat('chat', 'outlier_detection.ejections_enforced_total');
    await gw.resetFakes();
    expect(await ejections()).toBe(0);
    await p0.setMode({ kind: 'status', status: 503 });
    expect((await gw.chat()).answeredBy).toBe('p1');
    await p0.setMode('ok');
    const code = await runDrill(['--backend', 'ai/chat', '--priority', '0', '--requests', '2', '--gateway', gatewayUrl(), '--key-file', keyFile, '--from', statusz()], () => undefined);
    expect(code).toBe(0);
    // A drill answered 424 reset the count to 0: the primary stayed in (seen before the change).
    await waitFor(async () => ((await ejections()) > 0 ? true : undefined), { what: 'Envoy to eject the failing primary', timeoutMs: 3_000, intervalMs: 20 });
    expect(p0.received()).toHaveLength(1);
  });
});
