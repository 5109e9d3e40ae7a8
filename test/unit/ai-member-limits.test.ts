import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLimitsAuthority } from '../../src/ai-extension/limits-health.js';
import { memberLimitsAuthority } from '../../src/envoy/member-limits.js';
import type { MemberIR } from '../../src/ir/model.js';
import {
  InProcessLimitStore, MemberLimiter, RedisLimitStore, WINDOW_MS, parseResp, reachedLimit, windowEnd, windowOf,
  type LimitEvents, type LimitKind,
} from '../../src/ai-extension/limits.js';

function recorder(): LimitEvents & { limitedSeen: [string, LimitKind, number][]; failures: number; firsts: number; recovered: number } {
  const r = {
    limitedSeen: [] as [string, LimitKind, number][],
    failures: 0,
    firsts: 0,
    recovered: 0,
    limited(member: string, kind: LimitKind, until: number) { r.limitedSeen.push([member, kind, until]); },
    storeFailed(_e: Error, first: boolean) { r.failures++; if (first) r.firsts++; },
    storeRecovered() { r.recovered++; },
  };
  return r;
}

describe('member limit windows', () => {
  it('windows are whole minutes, the same for every replica', () => {
    const t = Date.UTC(2026, 11, 5, 3, 0, 59, 999);
    expect(windowOf(t)).toBe(windowOf(Date.UTC(2026, 11, 5, 3, 0, 0, 0)));
    expect(windowOf(t + 1)).toBe(windowOf(t) + 1);
    expect(windowEnd(t)).toBe(Date.UTC(2026, 11, 5, 3, 1, 0, 0));
  });

  it('a member at its limit takes no more; under it, it does', () => {
    expect(reachedLimit({ requests: 2, tokens: 0 }, { requestsPerMinute: 3 })).toBeUndefined();
    expect(reachedLimit({ requests: 3, tokens: 0 }, { requestsPerMinute: 3 })).toBe('requests');
    expect(reachedLimit({ requests: 1, tokens: 999 }, { tokensPerMinute: 1000 })).toBeUndefined();
    expect(reachedLimit({ requests: 1, tokens: 1000 }, { requestsPerMinute: 3, tokensPerMinute: 1000 })).toBe('tokens');
  });

  it('counts per member reset when the minute turns, and the limit is announced once per window', async () => {
    let now = Date.UTC(2026, 11, 5, 3, 0, 10);
    const events = recorder();
    const limiter = new MemberLimiter(new InProcessLimitStore(), events, () => now);
    const limits = { requestsPerMinute: 3 };
    const seen = [];
    for (let i = 0; i < 5; i++) seen.push(await limiter.admit('ai/chat/a', limits));
    expect(seen.map((r) => r.reached)).toEqual([undefined, undefined, 'requests', 'requests', 'requests']);
    // The third request is within the limit (it reaches it); the fourth and fifth went past it.
    expect(seen.map((r) => r.overrun)).toEqual([false, false, false, true, true]);
    expect((await limiter.admit('ai/chat/b', limits)).reached).toBeUndefined();
    expect(await limiter.state('ai/chat/a', limits)).toBe('requests');
    expect(events.limitedSeen).toEqual([['ai/chat/a', 'requests', Date.UTC(2026, 11, 5, 3, 1, 0)]]);
    now += WINDOW_MS;
    expect(await limiter.state('ai/chat/a', limits)).toBeUndefined();
    expect((await limiter.admit('ai/chat/a', limits)).reached).toBeUndefined();
  });

  it('tokens from usage count against tokensPerMinute', async () => {
    const limiter = new MemberLimiter(new InProcessLimitStore(), recorder(), () => 0);
    const limits = { tokensPerMinute: 100 };
    await limiter.spend('m', 60, limits);
    expect(await limiter.state('m', limits)).toBeUndefined();
    await limiter.spend('m', 40, limits);
    expect(await limiter.state('m', limits)).toBe('tokens');
  });

  it('the member identity Envoy sends as :authority carries the member and its limits, and nothing else parses', () => {
    const m = { metadata: { backend: 'ai/chat.v2', member: 'openai-east', requestsPerMinute: 60, tokensPerMinute: 1000 } } as unknown as MemberIR;
    const authority = memberLimitsAuthority(m);
    expect(authority).toMatch(/^r60\.t1000\.[A-Za-z0-9_-]+$/);
    expect(parseLimitsAuthority(authority)).toEqual({ key: 'ai/chat.v2/openai-east', limits: { requestsPerMinute: 60, tokensPerMinute: 1000 } });
    expect(parseLimitsAuthority('switchyard-ai-extension')).toBeUndefined();
    expect(parseLimitsAuthority('127.0.0.1:18001')).toBeUndefined();
  });

  it('parses RESP replies, partial ones included', () => {
    expect(parseResp(Buffer.from(':12\r\n'))).toEqual({ value: 12, end: 5 });
    expect(parseResp(Buffer.from('$3\r\nab'))).toBeUndefined();
    expect(parseResp(Buffer.from('*2\r\n$1\r\n3\r\n$-1\r\n'))?.value).toEqual(['3', null]);
    expect(parseResp(Buffer.from('-ERR wrong\r\n'))?.value).toBeInstanceOf(Error);
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0));
    });
  });
}

function redisServerPath(): string {
  // A missing redis-server fails the suite (scripts/ensure-redis.sh installs it), never skips it.
  return execFileSync('bash', ['-c', 'command -v redis-server || echo .toolchain/bin/redis-server'], { encoding: 'utf8' }).trim();
}

async function startRedis(port: number): Promise<ChildProcess> {
  const proc = spawn(redisServerPath(), ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ready to accept connections')) resolve();
    });
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${out}`)));
  });
  return proc;
}

describe('Redis limit store (a real redis-server)', () => {
  let redis: ChildProcess;
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    redis = await startRedis(port);
  });
  afterAll(() => {
    redis.kill('SIGKILL');
  });

  it('two stores (two extensions) share one member count', async () => {
    // One prefix for both: two Date.now() calls may fall in different milliseconds.
    const keyPrefix = `t${Date.now()}:`;
    const a = new RedisLimitStore({ url: `redis://127.0.0.1:${port}`, keyPrefix });
    const b = new RedisLimitStore({ url: `redis://127.0.0.1:${port}`, keyPrefix });
    const la = new MemberLimiter(a, recorder(), () => 0);
    const lb = new MemberLimiter(b, recorder(), () => 0);
    const limits = { requestsPerMinute: 3 };
    const results = [await la.admit('ai/chat/a', limits), await lb.admit('ai/chat/a', limits), await la.admit('ai/chat/a', limits), await lb.admit('ai/chat/a', limits)];
    expect(results.map((r) => r.reached)).toEqual([undefined, undefined, 'requests', 'requests']);
    expect(await b.read('ai/chat/a', 0)).toEqual({ requests: 4, tokens: 0 });
    await a.close();
    await b.close();
  });

  it('an unreachable Redis fails open with one warning per outage, and recovers', async () => {
    const deadPort = await freePort();
    const store = new RedisLimitStore({ url: `redis://127.0.0.1:${deadPort}`, timeoutMs: 200 });
    const events = recorder();
    const limiter = new MemberLimiter(store, events, () => 0);
    const limits = { requestsPerMinute: 1 };
    for (let i = 0; i < 3; i++) expect(await limiter.admit('m', limits)).toEqual({ reached: undefined, overrun: false });
    expect(events.failures).toBe(3);
    expect(events.firsts).toBe(1);
    const late = await startRedis(deadPort);
    try {
      expect((await limiter.admit('m', limits)).reached).toBe('requests');
      expect(events.recovered).toBe(1);
    } finally {
      late.kill('SIGKILL');
      await store.close();
    }
  });

  it('a Redis that stops answering fails open within the command timeout', async () => {
    const silent = createServer((s) => s.on('data', () => undefined));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const addr = silent.address();
    const p = typeof addr === 'object' && addr !== null ? addr.port : 0;
    const events = recorder();
    const limiter = new MemberLimiter(new RedisLimitStore({ url: `redis://127.0.0.1:${p}`, timeoutMs: 150 }), events, () => 0);
    const t0 = Date.now();
    expect((await limiter.admit('m', { requestsPerMinute: 1 })).reached).toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(events.firsts).toBe(1);
    await limiter.close();
    silent.close();
  });

  it('a URL that is not redis:// is refused with the flag and an example', () => {
    expect(() => new RedisLimitStore({ url: 'http://x' })).toThrow(/--limits-redis http:\/\/x: only redis:\/\/ .*redis:\/\/127\.0\.0\.1:6379/);
  });
});
