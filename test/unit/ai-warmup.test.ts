import { describe, expect, it } from 'vitest';
import { exchangeContext } from '../support/exchange-context.js';
import { overrideHost, warmupTargets } from '../../src/app/ai-warmup.js';
import { DrillNonces, DrillRejectionLog, signDrillHeader, verifyDrillHeader } from '../../src/ai-extension/drill.js';
import { AttemptExchange, type ExchangeContext } from '../../src/ai-extension/exchange.js';
import type { ProcessingRequest } from '../../src/ai-extension/protocol.js';
import { WARMUP_ANSWER_HEADER, WARMUP_DOMAIN, WARMUP_HEADER, WARMUP_ROUTE_HEADER, WarmupOrders, parseWarmupAnswer, signWarmupHeader, warmupAnswerHeader } from '../../src/ai-extension/warmup.js';
import { toRouteConfiguration } from '../../src/envoy/routes.js';
import { attemptAttributes, type MemberFactsText } from '../support/attempt-attributes.js';
import { ABANDONED_HEADER, type ClusterIR, type IR, type ListenerIR, type RetryPlan, type RouteIR } from '../../src/ir/model.js';

const KEY = 'warmup-key-0123456789abcdef0123456789abcdef';
const NOW = Date.UTC(2026, 11, 5, 3, 0, 0);

describe('warm-up orders', () => {
  it('are honoured for their request\'s later attempts, never as a drill, and a drill header is never a warm-up', () => {
    const orders = new WarmupOrders(KEY);
    const header = signWarmupHeader(KEY, 'ai/chat', 2, NOW);
    expect(orders.verify(header, { backend: 'ai/chat', requestId: 'r1', attempt: 1, nowMs: NOW })).toMatchObject({ backend: 'ai/chat', priority: 2 });
    expect(orders.verify(undefined, { backend: 'ai/chat', requestId: 'r1', attempt: 2, nowMs: NOW + 10 })).toMatchObject({ priority: 2 });
    // The same header under another request id is a replay.
    expect(orders.verify(header, { backend: 'ai/chat', requestId: 'r2', attempt: 1, nowMs: NOW + 20 })).toBeUndefined();
    // Signed with the same key for the other purpose: refused both ways.
    expect(verifyDrillHeader(signWarmupHeader(KEY, 'ai/chat', 1, NOW), { backend: 'ai/chat', key: KEY, requestId: 'r3', attempt: 1, nowMs: NOW, nonces: new DrillNonces() })).toEqual({ rejected: 'bad_signature' });
    expect(orders.verify(signDrillHeader(KEY, 'ai/chat', 1, NOW), { backend: 'ai/chat', requestId: 'r4', attempt: 1, nowMs: NOW })).toBeUndefined();
    expect(new WarmupOrders('another-key-0123456789abcdef0123456789ab').verify(signWarmupHeader(KEY, 'ai/chat', 1, NOW), { backend: 'ai/chat', requestId: 'r5', attempt: 1, nowMs: NOW })).toBeUndefined();
  });

  it('round-trips the answer header', () => {
    const answer = { priority: 1, member: 'large', ready: true };
    expect(parseWarmupAnswer(warmupAnswerHeader(answer))).toEqual(answer);
    expect(parseWarmupAnswer('priority=1;member=large')).toBeUndefined();
    // The Envoy worker (its ext_proc connection) rides along; an older extension's answer has none.
    const fromWorker = { priority: 0, member: 'small', ready: false, worker: '127.0.0.1:40112' };
    expect(warmupAnswerHeader(fromWorker)).toBe('priority=0;member=small;ready=0;worker=127.0.0.1:40112');
    expect(parseWarmupAnswer(warmupAnswerHeader(fromWorker))).toEqual(fromWorker);
    expect(parseWarmupAnswer('priority=0;member=small;ready=1')).toEqual({ priority: 0, member: 'small', ready: true });
  });
});

const attributes = (values: MemberFactsText, ready: boolean): ProcessingRequest['attributes'] => attemptAttributes(values, ready);

const headers = (h: Record<string, string>) => ({ headers: { headers: Object.entries(h).map(([key, value]) => ({ key, raw_value: Buffer.from(value) })) }, end_of_stream: true });

function context(): ExchangeContext {
  return exchangeContext('sk-member', { warmup: new WarmupOrders(KEY) });
}

async function attempt(ctx: ExchangeContext, o: { priority: number; member: string; ready: boolean; attempt: number; header?: string; warmupRoute?: boolean; connection?: string }) {
  const exchange = new AttemptExchange(ctx, undefined, undefined, o.connection);
  const answer = await exchange.handle({
    request_headers: headers({ ':path': '/v1/chat/completions', 'x-request-id': 'w1', 'x-envoy-attempt-count': String(o.attempt), ...(o.header !== undefined ? { [WARMUP_HEADER]: o.header } : {}), ...(o.warmupRoute === true ? { [WARMUP_ROUTE_HEADER]: '1' } : {}) }),
    attributes: attributes({ backend: 'ai/chat', member: o.member, priority: String(o.priority), provider: 'openai', authKind: 'SecretRef', credential: 'credential/ai/k', authHeader: 'Authorization' }, o.ready),
  });
  exchange.close();
  return answer;
}

describe('a warm-up request in the extension', () => {
  it('passes a ready earlier pool with a retried stand-in, and answers the warmed pool itself; no attempt counts as a request or a failure', async () => {
    const ctx = context();
    const header = signWarmupHeader(KEY, 'ai/chat', 1);
    const passed = await attempt(ctx, { priority: 0, member: 'small', ready: true, attempt: 1, header });
    expect(passed).toMatchObject({ phase: 'stand-in' });
    expect(passed.phase === 'stand-in' ? passed.headers : []).toEqual(expect.arrayContaining([{ key: ':status', value: '424' }, { key: 'x-switchyard-abandoned', value: 'warmup' }]));
    const warmed = await attempt(ctx, { priority: 1, member: 'large', ready: false, attempt: 2 });
    expect(warmed).toMatchObject({ phase: 'immediate', status: 204, headers: [{ key: WARMUP_ANSWER_HEADER, value: 'priority=1;member=large;ready=0' }] });
    const count = async (name: string): Promise<number> => ((await ctx.metrics.registry.getSingleMetricAsString(name)).split('\n').filter((l) => !l.startsWith('#') && l.trim() !== '').reduce((s, l) => s + Number(l.split(' ').pop()), 0));
    expect(await count('switchyard_ai_warmup_attempts_total')).toBe(2);
    expect(await count('switchyard_ai_requests_total')).toBe(0);
    expect(await count('switchyard_ai_failures_total')).toBe(0);
  });

  it('names the Envoy worker that ran the attempt by its ext_proc connection, so each worker is warmed on its own', async () => {
    const answer = await attempt(context(), { priority: 0, member: 'small', ready: true, attempt: 1, header: signWarmupHeader(KEY, 'ai/chat', 0), connection: '127.0.0.1:40112' });
    expect(answer).toMatchObject({ phase: 'immediate', status: 204, headers: [{ key: WARMUP_ANSWER_HEADER, value: 'priority=0;member=small;ready=1;worker=127.0.0.1:40112' }] });
  });

  it('answers a cold earlier pool itself instead of standing in there (a stand-in while Envoy connects crashes Envoy 1.40)', async () => {
    const answer = await attempt(context(), { priority: 0, member: 'small', ready: false, attempt: 1, header: signWarmupHeader(KEY, 'ai/chat', 2) });
    expect(answer).toMatchObject({ phase: 'immediate', status: 204, headers: [{ key: WARMUP_ANSWER_HEADER, value: 'priority=0;member=small;ready=0' }] });
  });

  it('serves a request whose warm-up header is not signed with its key like any other', async () => {
    const answer = await attempt(context(), { priority: 0, member: 'small', ready: true, attempt: 1, header: signWarmupHeader('not-the-key-0123456789abcdef0123456789', 'ai/chat', 2) });
    expect(answer).toMatchObject({ phase: 'request_headers' });
    expect(answer.phase === 'request_headers' ? answer.headers?.remove : []).toContain(WARMUP_HEADER);
  });

  it('on a warm-up route, answers anything but an honoured order with a 403 and calls no provider, with a key or without one', async () => {
    const forged = signWarmupHeader('not-the-key-0123456789abcdef0123456789', 'ai/chat', 0);
    const ctx = context();
    for (const [c, header] of [[ctx, forged], [ctx, undefined], [exchangeContext('sk-member'), signWarmupHeader(KEY, 'ai/chat', 0)]] as const) {
      const answer = await attempt(c, { priority: 0, member: 'small', ready: true, attempt: 1, ...(header !== undefined ? { header } : {}), warmupRoute: true });
      expect(answer).toMatchObject({ phase: 'immediate', status: 403 });
    }
    const honoured = await attempt(ctx, { priority: 0, member: 'small', ready: true, attempt: 1, header: signWarmupHeader(KEY, 'ai/chat', 0), warmupRoute: true });
    expect(honoured).toMatchObject({ phase: 'immediate', status: 204 });
    const count = async (name: string): Promise<number> => ((await ctx.metrics.registry.getSingleMetricAsString(name)).split('\n').filter((l) => !l.startsWith('#') && l.trim() !== '').reduce((s, l) => s + Number(l.split(' ').pop()), 0));
    expect(await count('switchyard_ai_requests_total')).toBe(0);
    expect(await count('switchyard_ai_failures_total')).toBe(0);
  });
});

function cluster(name: string, members: number[]): ClusterIR {
  return {
    name: `backend/ai/${name}`,
    backend: { kind: 'Backend', namespace: 'ai', name },
    discovery: 'dns',
    connectTimeoutMs: 5_000,
    priorities: members.map((n, level) => ({ level, members: Array.from({ length: n }, (_, i) => ({ name: `m${level}${i}`, address: '127.0.0.1', port: 1000 + i, hostname: 'h', weight: 1, tls: false, metadata: { backend: `ai/${name}`, member: `m${level}${i}`, priority: level } })) })),
    ai: { requestBodyLimitBytes: 1024 },
  };
}

/** A Service-like cluster: no AI plan, so no warm-up. */
function withoutAi(c: ClusterIR): ClusterIR {
  const { ai: _ai, ...rest } = c;
  return rest;
}

function route(name: string, path: RouteIR['match']['path'], clusters: string[], headers: RouteIR['match']['headers'] = [], retries?: number): RouteIR {
  const retry: RetryPlan | undefined = retries === undefined
    ? undefined
    : { attempts: retries, retryOn: ['retriable-headers'], statusCodes: [], retriableHeaders: [ABANDONED_HEADER], backoff: { baseMs: 25 }, attemptsPerPriority: 1, avoidPreviousHosts: true, hostSelectionAttempts: 3 };
  return { name, match: { path, headers, queryParams: [] }, action: { kind: 'forward', clusters: clusters.map((c) => ({ name: c, weight: 1 })), timeoutMs: 0, autoHostRewrite: true, ...(retry ? { retry } : {}) } };
}

function listener(protocol: 'HTTP' | 'HTTPS', port: number, domains: string[], routes: RouteIR[]): ListenerIR {
  return { name: `ai/gw/${port}`, gateway: { namespace: 'ai', name: 'gw' }, port, protocol, tls: [], virtualHosts: [{ name: 'vh', domains, routes }] };
}

function listenerWithTls(port: number, serverNames: string[], routes: RouteIR[]): ListenerIR {
  return { ...listener('HTTPS', port, ['secure.example.com'], routes), tls: [{ certificates: ['certificate/ai/tls'], serverNames }] };
}

describe('warm-up targets', () => {
  it('one per Gateway and AI Backend whose route retries stand-ins, whatever the match, split or listener protocol; HTTP listeners first', () => {
    const ir: IR = {
      gateways: [],
      credentials: [],
      certificates: [],
      clusters: [cluster('chat', [1, 2, 1]), cluster('quiet', [1, 1]), cluster('split', [1]), cluster('regex', [1]), cluster('tls', [1]), withoutAi(cluster('plain', [1]))],
      listeners: [
        listenerWithTls(443, ['*.example.com'], [route('tls', { kind: 'PathPrefix', value: '/' }, ['backend/ai/tls'], [], 1), route('chat-tls', { kind: 'PathPrefix', value: '/c' }, ['backend/ai/chat'], [], 2)]),
        listener('HTTP', 8080, ['*.example.com', '*'], [
          route('regex', { kind: 'RegularExpression', value: '/r/.*' }, ['backend/ai/regex'], [], 1),
          route('split', { kind: 'PathPrefix', value: '/split' }, ['backend/ai/split', 'backend/ai/chat'], [], 1),
          route('plain', { kind: 'PathPrefix', value: '/plain' }, ['backend/ai/plain'], [], 1),
          route('chat', { kind: 'PathPrefix', value: '/chat/v1' }, ['backend/ai/chat'], [{ name: 'X-Switchyard-Model', value: 'fast', regex: false }], 2),
          // No retries of stand-ins: the extension never stands in there.
          route('quiet', { kind: 'PathPrefix', value: '/quiet' }, ['backend/ai/quiet']),
        ]),
      ],
    };
    const members = (backend: string, sizes: number[]) => cluster(backend, sizes).priorities.map((p) => ({ level: p.level, members: p.members.map((m) => ({ name: m.name, address: m.address, port: m.port })) }));
    const http = { gateway: 'ai/gw', port: 8080, protocol: 'HTTP' };
    expect(warmupTargets(ir)).toEqual([
      { backend: 'ai/chat', cluster: 'backend/ai/chat', ...http, priorities: members('chat', [1, 2, 1]) },
      { backend: 'ai/regex', cluster: 'backend/ai/regex', ...http, priorities: members('regex', [1]) },
      { backend: 'ai/split', cluster: 'backend/ai/split', ...http, priorities: members('split', [1]) },
      // Only an HTTPS listener routes to it: reached there, with a name its filter chain matches.
      { backend: 'ai/tls', cluster: 'backend/ai/tls', gateway: 'ai/gw', port: 443, protocol: 'HTTPS', serverName: 'warmup.example.com', priorities: members('tls', [1]) },
    ]);
  });

  it('gives Envoy\'s spelling of an override host, in base64', () => {
    expect(Buffer.from(overrideHost('10.0.0.7', 8443), 'base64').toString()).toBe('10.0.0.7:8443');
    expect(Buffer.from(overrideHost('::1', 80), 'base64').toString()).toBe('[::1]:80');
  });
});

describe('the warm-up virtual host of a route configuration', () => {
  const ai = new Map([['backend/ai/chat', 1024], ['backend/ai/quiet', 1024]]);
  const hostsOf = (l: ListenerIR): { name: string; domains: string[]; routes: { name: string; route: { cluster: string } }[] }[] =>
    toRouteConfiguration(l, ai)['virtual_hosts'] as unknown as { name: string; domains: string[]; routes: { name: string; route: { cluster: string } }[] }[];

  it('routes to each AI cluster whose attempts the extension may stand in for, and to no other', () => {
    const l = listener('HTTP', 8080, ['*'], [
      route('chat', { kind: 'RegularExpression', value: '/c/.*' }, ['backend/ai/chat'], [], 2),
      route('quiet', { kind: 'PathPrefix', value: '/quiet' }, ['backend/ai/quiet']),
      route('plain', { kind: 'PathPrefix', value: '/plain' }, ['service/ai/plain/80'], [], 2),
    ]);
    const warm = hostsOf(l).find((vh) => vh.domains.includes(WARMUP_DOMAIN));
    expect(warm?.routes.map((r) => r.route.cluster)).toEqual(['backend/ai/chat']);
    // Before the user's hosts: Envoy takes an exact domain over "*" anyway, and the order is fixed.
    expect(hostsOf(l)[0]?.name).toBe('switchyard/ai-warmup');
  });

  it('is left out when no cluster needs it, or when a user\'s host already has its domain (Envoy would refuse the configuration)', () => {
    expect(hostsOf(listener('HTTP', 8080, ['*'], [route('quiet', { kind: 'PathPrefix', value: '/quiet' }, ['backend/ai/quiet'])])).map((vh) => vh.name)).toEqual(['vh']);
    const taken = listener('HTTP', 8080, [WARMUP_DOMAIN], [route('chat', { kind: 'PathPrefix', value: '/c' }, ['backend/ai/chat'], [], 2)]);
    expect(hostsOf(taken).map((vh) => vh.name)).toEqual(['vh']);
    expect(warmupTargets({ gateways: [], credentials: [], certificates: [], clusters: [cluster('chat', [1])], listeners: [taken] })).toEqual([]);
  });
});
