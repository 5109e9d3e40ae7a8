import { describe, expect, it } from 'vitest';
import { DRILL_ANSWER_HEADER, DRILL_NOT_READY_HEADER, DrillNonces, DrillRejectionLog, drillAnswerHeader, parseDrillAnswer, parseDrillHeader, signDrillHeader, verifyDrillHeader } from '../../src/ai-extension/drill.js';
import { parseDrillArgs, runDrillRequests, summarizeDrill, drillReport, type DrillResult } from '../../src/cli/drill.js';
import { UsageError } from '../../src/cli/flags.js';

const KEY = 'drill-key-0123456789abcdef0123456789abcdef';
const NOW = Date.UTC(2026, 11, 5, 3, 0, 0);

function verify(header: string, o: { backend?: string; key?: string; requestId?: string; attempt?: number; nowMs?: number; nonces?: DrillNonces } = {}) {
  return verifyDrillHeader(header, { backend: o.backend ?? 'ai/chat', key: 'key' in o ? o.key : KEY, requestId: o.requestId ?? 'req-1', attempt: o.attempt ?? 1, nowMs: o.nowMs ?? NOW, nonces: o.nonces ?? new DrillNonces() });
}

describe('drill header', () => {
  it('verifies what was signed, with its Backend, priority and nonce', () => {
    const header = signDrillHeader(KEY, 'ai/chat', 1, NOW, '00112233445566778899aabb');
    expect(verify(header)).toEqual({ backend: 'ai/chat', priority: 1, ts: NOW / 1000, nonce: '00112233445566778899aabb', firstSeenMs: NOW });
  });

  it('refuses another key, an edited priority or Backend, and a missing key', () => {
    const header = signDrillHeader(KEY, 'ai/chat', 1, NOW);
    expect(verify(header, { key: 'x'.repeat(40) })).toEqual({ rejected: 'bad_signature' });
    expect(verify(header.replace('priority=1', 'priority=0'))).toEqual({ rejected: 'bad_signature' });
    expect(verify(header.replace('backend=ai/chat', 'backend=ai/other'), { backend: 'ai/other' })).toEqual({ rejected: 'bad_signature' });
    expect(verify(header, { backend: 'ai/other' })).toEqual({ rejected: 'other_backend' });
    expect(verify(header, { key: undefined })).toEqual({ rejected: 'no_key' });
  });

  it('refuses a timestamp outside the 60 s window either way', () => {
    expect(verify(signDrillHeader(KEY, 'ai/chat', 0, NOW - 61_000))).toEqual({ rejected: 'stale' });
    expect(verify(signDrillHeader(KEY, 'ai/chat', 0, NOW + 61_000))).toEqual({ rejected: 'stale' });
    expect(verify(signDrillHeader(KEY, 'ai/chat', 0, NOW - 59_000))).toMatchObject({ priority: 0 });
  });

  it('honours a nonce for the later attempts of one request only', () => {
    const nonces = new DrillNonces();
    const header = signDrillHeader(KEY, 'ai/chat', 0, NOW);
    expect(verify(header, { nonces, requestId: 'a' })).toMatchObject({ firstSeenMs: NOW });
    expect(verify(header, { nonces, requestId: 'a', attempt: 2, nowMs: NOW + 30 })).toMatchObject({ firstSeenMs: NOW });
    expect(verify(header, { nonces, requestId: 'b', attempt: 3, nowMs: NOW + 40 })).toEqual({ rejected: 'replayed' });
    // A client that sends its own x-request-id cannot replay the header under it: attempts start at 1 again.
    expect(verify(header, { nonces, requestId: 'a', attempt: 1, nowMs: NOW + 50 })).toEqual({ rejected: 'replayed' });
  });

  it('finds the drill of a later attempt that no longer carries the header, never of a new request', () => {
    const nonces = new DrillNonces();
    const verified = verify(signDrillHeader(KEY, 'ai/chat', 0, NOW, '00112233445566778899aabb'), { nonces, requestId: 'a' });
    if ('rejected' in verified) throw new Error('not verified');
    nonces.remember('a', verified.nonce, verified);
    expect(nonces.forRequest('a', 2, NOW + 10)).toEqual(verified);
    expect(nonces.forRequest('a', 1, NOW + 20)).toBeUndefined();
    expect(nonces.forRequest('b', 2, NOW + 20)).toBeUndefined();
    expect(nonces.forRequest('a', 3, NOW + 3 * 60_000)).toBeUndefined();
  });

  it('refuses malformed headers and requests without an id', () => {
    for (const bad of ['', 'v2;ts=1', 'v1;ts=x;nonce=00112233445566778899aabb;backend=ai/chat;priority=0;sig=a', 'v1;ts=1;nonce=zz;backend=ai/chat;priority=0;sig=a', 'v1;ts=1;nonce=00112233445566778899aabb;backend=chat;priority=0;sig=a', 'v1;ts=1;nonce=00112233445566778899aabb;backend=ai/chat;priority=-1;sig=a']) {
      expect(parseDrillHeader(bad)).toBeUndefined();
      expect(verify(bad)).toEqual({ rejected: 'malformed' });
    }
    expect(verify(signDrillHeader(KEY, 'ai/chat', 0, NOW), { requestId: '' })).toEqual({ rejected: 'malformed' });
  });

  it('logs each rejection once per Backend', () => {
    const log = new DrillRejectionLog();
    expect([log.first('ai/a', 'stale'), log.first('ai/a', 'stale'), log.first('ai/b', 'stale'), log.first('ai/a', 'replayed')]).toEqual([true, false, true, true]);
  });

  it('round-trips the answer header', () => {
    expect(parseDrillAnswer(drillAnswerHeader(2, 'p2-0-openai', 31.6))).toEqual({ priority: 2, member: 'p2-0-openai', addedMs: 32 });
    expect(parseDrillAnswer('priority=x;member=m;addedMs=1')).toBeUndefined();
  });
});

describe('switchyard drill flags', () => {
  const base = ['--backend', 'ai/chat', '--gateway', 'http://gw.test', '--key-file', '/k'];

  it('defaults: priority 0, 5 requests, /v1 as the base path', () => {
    const { plan } = parseDrillArgs(base);
    expect(plan).toMatchObject({ backend: 'ai/chat', priority: 0, requests: 5, model: 'switchyard-drill', output: 'table' });
    expect(plan.gateway.href).toBe('http://gw.test/v1');
  });

  it('names the flag and the fix', () => {
    const fails = (args: string[], message: RegExp) => {
      expect(() => parseDrillArgs(args)).toThrow(UsageError);
      expect(() => parseDrillArgs(args)).toThrow(message);
    };
    fails(['--gateway', 'http://gw.test', '--key-file', '/k'], /drill needs --backend NS\/NAME/);
    fails(['--backend', 'chat', '--gateway', 'http://gw.test', '--key-file', '/k'], /--backend is NAMESPACE\/NAME/);
    fails(['--backend', 'ai/chat', '--key-file', '/k'], /drill needs --gateway URL/);
    fails(['--backend', 'ai/chat', '--gateway', 'http://gw.test'], /--key-secret NS\/NAME .* or --key-file PATH/);
    fails([...base, '--key-secret', 'ai/k'], /not both/);
    fails([...base, '--requests', '0'], /--requests is a whole number from 1/);
    fails([...base, '--priorty', '1'], /unknown flag --priorty; did you mean --priority\?/);
  });
});

describe('drill report', () => {
  const plan = parseDrillArgs(['--backend', 'ai/chat', '--gateway', 'http://gw.test/v1', '--key-file', '/k', '--requests', '3']).plan;
  const ok = (index: number, addedMs: number): DrillResult => ({ index, status: 200, answer: { priority: 1, member: 'secondary', addedMs }, totalMs: addedMs + 5, failedOver: true });

  it('sums up requests, failovers, errors and the added latency', () => {
    const results = [ok(1, 10), ok(2, 30), { index: 3, status: 503, answer: undefined, totalMs: 4, failedOver: false }];
    expect(summarizeDrill(results)).toEqual({ requests: 3, failedOver: 2, errors: 1, addedMsP50: 10, addedMsP95: 30 });
    const text = drillReport(plan, results);
    expect(text).toMatch(/^1\s+200\s+priority 1 \/ secondary\s+10 ms\s+15 ms\s+yes$/m);
    expect(text).toMatch(/^3\s+503\s+-\s+-\s+4 ms\s+no$/m);
    expect(text).toMatch(/Summary: 3 requests, 2 failed over, 1 errors/);
    expect(text).toMatch(/Failover not proven: 1 request ended in an error \(status 503\)/);
  });
});

describe('drill requests', () => {
  const plan = { backend: 'ai/chat', priority: 0, requests: 2, gateway: new URL('http://gw.test/v1'), model: 'm', output: 'table' as const };

  it('sends a request again when Envoy had no connection to the drilled member ready, and counts only its last answer', async () => {
    const answers = [
      new Response('{}', { status: 503, headers: { [DRILL_NOT_READY_HEADER]: 'primary' } }),
      new Response('{}', { status: 200, headers: { [DRILL_ANSWER_HEADER]: drillAnswerHeader(1, 'secondary', 12) } }),
      new Response('{}', { status: 200, headers: { [DRILL_ANSWER_HEADER]: drillAnswerHeader(1, 'secondary', 9) } }),
    ];
    let calls = 0;
    const fetchImpl = (async () => answers[calls++] ?? new Response('', { status: 500 })) as unknown as typeof fetch;
    const results = await runDrillRequests(plan, 'k'.repeat(32), fetchImpl);
    expect(calls).toBe(3);
    expect(results.map((r) => [r.status, r.failedOver])).toEqual([[200, true], [200, true]]);
  });

  it('gives up after three more tries and reports the error', async () => {
    let calls = 0;
    const fetchImpl = (async () => {
      calls++;
      return new Response('{}', { status: 503, headers: { [DRILL_NOT_READY_HEADER]: 'primary' } });
    }) as unknown as typeof fetch;
    const results = await runDrillRequests({ ...plan, requests: 1 }, 'k'.repeat(32), fetchImpl);
    expect(calls).toBe(4);
    expect(results[0]?.status).toBe(503);
    expect(results[0]?.failedOver).toBe(false);
  });
});
