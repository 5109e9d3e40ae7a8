import type { DestinationStream } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { HealthServer, Readiness } from '../../src/observability/health.js';
import { startHealthServer } from '../../src/observability/health.js';
import { createLogger, redacted, silentLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';

const servers: HealthServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(ready: () => Readiness, statusz?: () => unknown) {
  const metrics = createMetrics();
  const server = await startHealthServer({ port: 0, host: '127.0.0.1', registry: metrics.registry, ready, ...(statusz ? { statusz } : {}) });
  servers.push(server);
  const get = async (path: string, init?: RequestInit) => {
    const res = await fetch(`http://127.0.0.1:${server.port}${path}`, init);
    return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
  };
  return { metrics, server, get };
}

describe('health server', () => {
  it('answers /healthz while running and stops answering after close', async () => {
    const { server, get } = await serve(() => false);
    expect(await get('/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    await expect(fetch(`http://127.0.0.1:${server.port}/healthz`)).rejects.toThrow();
  });

  it('reports /readyz as 503 with the reason until ready, then 200', async () => {
    let state: Readiness = { ready: false, reason: 'no configuration translated yet' };
    const { get } = await serve(() => state);
    expect(await get('/readyz')).toEqual({ status: 503, type: 'text/plain; charset=utf-8', body: 'not ready: no configuration translated yet\n' });
    state = { ready: true, reason: '' };
    expect(await get('/readyz')).toMatchObject({ status: 200, body: 'ok\n' });
    state = false;
    expect((await get('/readyz')).status).toBe(503);
    state = true;
    expect((await get('/readyz')).status).toBe(200);
  });

  it('treats a readiness check that throws as not ready', async () => {
    const { get } = await serve(() => {
      throw new Error('cache not built');
    });
    expect(await get('/readyz')).toMatchObject({ status: 503, body: 'not ready: readiness check failed: cache not built\n' });
  });

  it('serves every Switchyard metric and the process metrics on /metrics', async () => {
    const { metrics, get } = await serve(() => true);
    metrics.translations.inc();
    metrics.translationDuration.observe(0.004);
    metrics.configProblems.set(3);
    metrics.xdsClients.inc({ kind: 'delta' });
    metrics.xdsPushes.inc({ type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster' });
    metrics.xdsNacks.inc({ type_url: 'type.googleapis.com/envoy.config.cluster.v3.Cluster' });
    metrics.resources.set({ type: 'Cluster' }, 4);

    const res = await get('/metrics');
    expect(res.status).toBe(200);
    expect(res.type).toContain('text/plain');
    expect(res.body).toContain('switchyard_translations_total 1');
    expect(res.body).toContain('switchyard_translation_duration_seconds_bucket{le="0.005"} 1');
    expect(res.body).toContain('switchyard_config_problems 3');
    expect(res.body).toContain('switchyard_xds_clients{kind="sotw"} 0');
    expect(res.body).toContain('switchyard_xds_clients{kind="delta"} 1');
    expect(res.body).toContain('switchyard_xds_pushes_total{type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster"} 1');
    expect(res.body).toContain('switchyard_xds_nacks_total{type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster"} 1');
    expect(res.body).toContain('switchyard_resources{type="Cluster"} 4');
    expect(res.body).toContain('process_cpu_user_seconds_total');
  });

  it('keeps each metrics set in its own registry', () => {
    // prom-client's global registry throws on a second registration of the same name.
    const a = createMetrics({ processMetrics: false });
    const b = createMetrics({ processMetrics: false });
    a.translations.inc();
    expect(a.registry).not.toBe(b.registry);
    expect(a.registry.getSingleMetric('switchyard_translations_total')).toBeDefined();
  });

  it('serves /statusz as JSON, 404 without a callback, and refuses other methods and paths', async () => {
    const status = { objects: [{ kind: 'Backend', name: 'ai/chat', conditions: [{ type: 'Accepted', status: 'True' }] }], problems: [] };
    const { get } = await serve(() => true, () => status);
    const res = await get('/statusz');
    expect(res.status).toBe(200);
    expect(res.type).toBe('application/json');
    expect(JSON.parse(res.body)).toEqual(status);
    expect((await get('/nope')).status).toBe(404);
    expect((await get('/healthz', { method: 'POST' })).status).toBe(405);

    const without = await serve(() => true);
    expect((await without.get('/statusz')).status).toBe(404);
  });
});

describe('logger', () => {
  function capture(): { sink: DestinationStream; lines: () => Record<string, unknown>[]; raw: () => string } {
    const out: string[] = [];
    return {
      sink: { write: (line: string) => void out.push(line) },
      lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>),
      raw: () => out.join(''),
    };
  }

  it('redacts secret material wherever a log record carries it', () => {
    const { sink, lines, raw } = capture();
    const log = createLogger({ level: 'debug', name: 'test' }, sink);
    log.info({ secret: { metadata: { name: 'openai-key' }, data: { Authorization: 'U0VDUkVULTE=' }, stringData: { Authorization: 'SECRET-2' } } }, 'secret seen');
    log.info({ request: { headers: { authorization: 'Bearer SECRET-3', 'api-key': 'SECRET-4', 'x-api-key': 'SECRET-5', accept: 'application/json' } } }, 'upstream');
    log.info({ authToken: { kind: 'Inline', inline: 'SECRET-6' }, provider: { apiKey: 'SECRET-7', token: 'SECRET-8' } }, 'member');
    // Three levels down, as when a whole snapshot is logged.
    log.debug({ inputs: { secrets: [{ data: { Authorization: 'SECRET-9' } }] } }, 'snapshot');
    log.info({ token: 'SECRET-10' }, 'top level');

    const text = raw();
    expect(text).not.toMatch(/SECRET|U0VDUkVULTE=/);
    expect(text).toContain('[redacted]');
    const [first, second, , fourth] = lines();
    // Only the values go; names and harmless fields stay readable.
    expect(first).toMatchObject({ name: 'test', msg: 'secret seen', secret: '[redacted]' });
    expect(second).toMatchObject({ request: { headers: { authorization: '[redacted]', 'api-key': '[redacted]', 'x-api-key': '[redacted]', accept: 'application/json' } } });
    expect(fourth).toMatchObject({ inputs: { secrets: [{ data: '[redacted]' }] } });
  });

  it('redacts child bindings, deep records, Errors and interpolated values, leaving the caller\'s objects as they were', () => {
    const { sink, lines, raw } = capture();
    const log = createLogger({ level: 'debug', name: 'test' }, sink);
    const grandchild = log.child({ component: 'x', token: 'SECRET-1' }).child({ request: { headers: { authorization: 'SECRET-2' } } });
    grandchild.info('from a child');
    const record = { a: { b: { c: { d: { e: { apiKey: 'SECRET-3' } } } } }, keep: 'visible' };
    log.info(record, 'six levels down');
    const err = Object.assign(new Error('upstream said no'), { data: 'SECRET-4', status: 401 });
    log.error({ err }, 'request failed');
    log.info('interpolated %j', { secret: 'SECRET-5' });
    log.info({ list: [{ inline: 'SECRET-6' }, 'plain'] }, 'in an array');

    expect(raw()).not.toMatch(/SECRET/);
    const [child, deep, failed, interpolated, listed] = lines();
    expect(child).toMatchObject({ component: 'x', token: '[redacted]', request: { headers: { authorization: '[redacted]' } }, msg: 'from a child' });
    expect(deep).toMatchObject({ a: { b: { c: { d: { e: { apiKey: '[redacted]' } } } } }, keep: 'visible' });
    // Still an Error for pino's serializer: its type, message and stack are printed.
    expect(failed?.['err']).toMatchObject({ type: 'Error', message: 'upstream said no', data: '[redacted]', status: 401 });
    expect(String((failed?.['err'] as { stack?: unknown } | undefined)?.stack)).toContain('upstream said no');
    expect(interpolated?.['msg']).toBe('interpolated {"secret":"[redacted]"}');
    expect(listed).toMatchObject({ list: [{ inline: '[redacted]' }, 'plain'] });
    // The caller's objects are copied where a value goes, never changed.
    expect(record.a.b.c.d.e.apiKey).toBe('SECRET-3');
    expect(err.data).toBe('SECRET-4');
  });

  it('prints a record without a sensitive key as given (nothing copied)', () => {
    const shared = { object: 'Backend ai/chat', conditions: 'Accepted=True', nested: { model: 'gpt-4o' } };
    expect(redacted(shared)).toBe(shared);
    const withKey = { nested: { model: 'gpt-4o', token: 't' }, other: { model: 'x' } };
    const clean = redacted(withKey) as typeof withKey;
    expect(clean).not.toBe(withKey);
    // Only the objects on the way to the key are copied.
    expect(clean.other).toBe(withKey.other);
    expect(clean.nested).toEqual({ model: 'gpt-4o', token: '[redacted]' });
  });

  it('respects the level and has a silent variant for tests', () => {
    const { sink, lines } = capture();
    const log = createLogger({ level: 'warn' }, sink);
    log.info('dropped');
    log.warn({ backend: 'ai/chat' }, 'kept');
    expect(lines().map((l) => l.msg)).toEqual(['kept']);
    expect(silentLogger().level).toBe('silent');
  });
});
