import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { aiBackend, gatewayManifests, httpRoute, secret, startGatewayFixture, staticBackend, type GatewayFixture } from '../support/gateway-fixture.js';
import { waitFor } from '../support/wait.js';

/**
 * Per-request records: the real Envoy, configured by serve with its default `--access-log json`,
 * writes one JSON line per request that says which member answered after failover, at which
 * priority, after how many attempts, and never a key.
 */

const PRIMARY_KEY = 'sk-primary-5f1c0d2e';
const SECONDARY_KEY = 'sk-secondary-9a7b3c4d';
const CLIENT_KEY = 'sk-client';

let gw: GatewayFixture;
let p0: FakeProvider;
let p1: FakeProvider;

type Record = { [key: string]: unknown };

/** The access log lines Envoy wrote so far (its other output is not JSON). */
function records(): Record[] {
  return gw.envoy
    .logs()
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes('"response_code"'))
    .map((l) => JSON.parse(l) as Record);
}

async function recordFor(requestNumber: number): Promise<Record> {
  await waitFor(() => records().length >= requestNumber, { what: `access log line #${requestNumber} on Envoy's stdout`, timeoutMs: 10_000 });
  const r = records()[requestNumber - 1];
  if (!r) throw new Error('unreachable');
  return r;
}

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'access-log',
    providers: ['p0', 'p1'],
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        secret('primary-key', PRIMARY_KEY),
        secret('secondary-key', `Bearer ${SECONDARY_KEY}`),
        aiBackend({
          name: 'chat',
          priorities: [
            [{ name: 'primary', fake: fakes['p0']!, hostname: 'primary.llm.test', model: 'model-a', secret: 'primary-key' }],
            [{ name: 'secondary', fake: fakes['p1']!, hostname: 'secondary.llm.test', model: 'model-b', secret: 'secondary-key', path: '/secondary/v1/chat/completions' }],
          ],
          outlierDetection: { enabled: false },
        }),
        // A Static Backend: no AI extension names its member, its host's metadata does.
        staticBackend('web', fakes['p1']!),
      ],
      'routes.yaml': [httpRoute('chat', [{ path: '/v1', backend: 'chat' }, { path: '/static', backend: 'web', rewritePrefix: '/v1' }])],
    }),
    waitForBackends: ['chat', 'web'],
    // Envoy writes access logs through a buffer flushed every 10 s by default.
    envoyArgs: ['--file-flush-interval-msec', '50'],
  });
  ({ p0, p1 } = gw.fakes as { p0: FakeProvider; p1: FakeProvider });
});

afterAll(async () => {
  await gw?.stop();
});

beforeEach(async () => {
  await gw.resetFakes();
});

describe('access log', () => {
  it('records a failed-over request with its final member, priority, attempt count and response code', async () => {
    await p0.setMode({ kind: 'status', status: 503 });
    const answer = await gw.chat();
    expect(answer.answeredBy).toBe('p1');
    expect(p0.received()).toHaveLength(1);

    const r = await recordFor(1);
    expect(r).toMatchObject({
      method: 'POST',
      // The AI extension rewrote the path for the member that answered; the log shows that one.
      path: '/secondary/v1/chat/completions',
      response_code: 200,
      attempts: 2,
      upstream_cluster: 'backend/ai/chat',
      backend: 'ai/chat',
      member: 'secondary',
      priority: 1,
      provider: 'openaiCompatible',
      model: 'model-b',
      upstream_host: `${p1.host}:${p1.port}`,
    });
    expect(r['authority']).toBe('secondary.llm.test');
    expect(typeof r['request_id']).toBe('string');
    expect(typeof r['duration_ms']).toBe('number');
    expect(String(r['route_name'])).toContain('chat');
    expect(String(r['start_time'])).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('records a request every priority refused: the upstream 503, the retry limit flag and the last member', async () => {
    await p0.setMode({ kind: 'status', status: 503 });
    await p1.setMode({ kind: 'status', status: 503 });
    const before = records().length;
    const failure = await gw.chatFailure();
    expect(failure.status).toBe(503);
    const r = await recordFor(before + 1);
    expect(r['response_code']).toBe(503);
    expect(r['attempts']).toBe(3);
    expect(String(r['response_flags'])).toContain('URX');
    expect(['primary', 'secondary']).toContain(r['member']);
  });

  it('records a Static request with its member from the host, once: each request is one line', async () => {
    const before = records().length;
    const answer = await gw.chat('/static');
    expect(answer.answeredBy).toBe('p1');
    const r = await recordFor(before + 1);
    expect(r).toMatchObject({
      response_code: 200,
      attempts: 1,
      upstream_cluster: 'backend/ai/web',
      backend: 'ai/web',
      member: 'p0-0',
      priority: 0,
      provider: null,
      model: null,
    });
    // The AI line and the host line are written by two loggers with opposite filters: a request
    // both wrote (or neither) would show here as a repeated (or missing) request id.
    await gw.chat();
    const ai = await recordFor(before + 2);
    expect(ai).toMatchObject({ backend: 'ai/chat', member: 'primary', priority: 0, provider: 'openaiCompatible', model: 'model-a' });
    const ids = records().map((l) => l['request_id']);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('never writes a key: not the members\' (from their Secrets) nor the client\'s', async () => {
    await gw.chat();
    await recordFor(1);
    // The members did get their keys, so a leak would have had something to leak.
    expect(p0.received().at(-1)?.headers['authorization']).toBe(`Bearer ${PRIMARY_KEY}`);
    const logs = gw.envoy.logs();
    for (const key of [PRIMARY_KEY, SECONDARY_KEY, CLIENT_KEY]) expect(logs).not.toContain(key);
    for (const r of records()) expect(Object.keys(r).filter((k) => /authorization|api[-_]?key|cookie|token|secret/i.test(k))).toEqual([]);
  });
});
