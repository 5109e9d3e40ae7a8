import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { startAiExtensionProcess } from '../../src/app/ai-extension-process.js';
import { serve } from '../../src/app/serve.js';
import { commandLineOf, openStateDir } from '../../src/app/state-dir.js';
import { createLogger } from '../../src/observability/logger.js';
import { SpanKind } from '../../src/observability/otlp.js';
import { aiBackend, gatewayManifests, httpRoute, secret, startGatewayFixture, staticBackend, type GatewayFixture } from '../support/gateway-fixture.js';
import { startOtlpReceiver, type OtlpReceiver } from '../support/otlp-receiver.js';
import { waitFor } from '../support/wait.js';
import { LOOPBACK_SERVE_PORTS } from '../support/ports.js';

/**
 * Traces and GenAI metrics through the real Envoy: with an OTLP endpoint configured, one failed-
 * over request gives Envoy's request span, Envoy's attempt spans and the AI extension's GenAI span
 * per attempt, all in one trace, received and decoded by an OTLP/gRPC receiver the test runs;
 * the extension's histograms are on /metrics. No key reaches a span.
 */

const PRIMARY_KEY = 'sk-primary-0e1d2c3b';
const SECONDARY_KEY = 'sk-secondary-4a5b6c7d';

let gw: GatewayFixture;
let receiver: OtlpReceiver;
let p0: FakeProvider;
let p1: FakeProvider;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  gw = await startGatewayFixture({
    id: 'tracing',
    providers: ['p0', 'p1'],
    envoy: { otlp: { host: '127.0.0.1', port: receiver.port, tls: false } },
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        secret('primary-key', PRIMARY_KEY),
        secret('secondary-key', `Bearer ${SECONDARY_KEY}`),
        aiBackend({
          name: 'chat',
          priorities: [
            [{ name: 'primary', fake: fakes['p0']!, hostname: 'primary.llm.test', model: 'model-a', secret: 'primary-key' }],
            [{ name: 'secondary', fake: fakes['p1']!, hostname: 'secondary.llm.test', model: 'model-b', secret: 'secondary-key' }],
          ],
          outlierDetection: { enabled: false },
        }),
        // A Static Backend: its spans name the member from the host's metadata.
        staticBackend('web', fakes['p0']!),
      ],
      'routes.yaml': [httpRoute('chat', [{ path: '/v1', backend: 'chat' }, { path: '/static', backend: 'web', rewritePrefix: '/v1' }])],
    }),
    waitForBackends: ['chat', 'web'],
  });
  ({ p0, p1 } = gw.fakes as { p0: FakeProvider; p1: FakeProvider });
});

afterAll(async () => {
  await gw?.stop();
  await receiver?.stop();
});

describe('tracing', () => {
  it('exports one trace per failed-over request: Envoy\'s request span, its attempt spans and a GenAI span per attempt', async () => {
    await p0.setMode({ kind: 'status', status: 503 });
    const answer = await gw.chat();
    expect(answer.answeredBy).toBe('p1');

    // Envoy flushes its spans every 5 s by default; the extension every second.
    const trace = await waitFor(
      () => {
        const spans = receiver.spans();
        const attempts = spans.filter((s) => s.service === 'switchyard-ai-extension');
        const traceId = attempts.find((s) => s.attributes['switchyard.member'] === 'secondary')?.traceId;
        if (traceId === undefined) return undefined;
        const inTrace = spans.filter((s) => s.traceId === traceId);
        const server = inTrace.find((s) => s.service === 'switchyard-gateway' && s.kind === SpanKind.server);
        return server !== undefined && inTrace.filter((s) => s.service === 'switchyard-ai-extension').length === 2 ? inTrace : undefined;
      },
      { what: 'Envoy\'s request span and two extension attempt spans of one trace at the OTLP receiver', timeoutMs: 20_000, intervalMs: 200 },
    );

    const server = trace.find((s) => s.service === 'switchyard-gateway' && s.kind === SpanKind.server);
    expect(server?.parentSpanId).toBe('');
    // The request's span names the member that answered in the end (its host's metadata).
    expect(server?.attributes).toMatchObject({ 'switchyard.backend': 'ai/chat', 'switchyard.member': 'secondary', 'switchyard.priority': '1', 'gen_ai.request.model': 'model-b' });
    const envoyAttempts = trace.filter((s) => s.service === 'switchyard-gateway' && s.kind === SpanKind.client);
    expect(envoyAttempts.length).toBeGreaterThanOrEqual(2);
    const attempts = trace.filter((s) => s.service === 'switchyard-ai-extension').sort((a, b) => Number(a.attributes['switchyard.attempt']) - Number(b.attributes['switchyard.attempt']));
    const [first, second] = attempts;
    expect(first?.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'gen_ai.system': 'openai',
      'gen_ai.request.model': 'model-a',
      'switchyard.backend': 'ai/chat',
      'switchyard.member': 'primary',
      'switchyard.priority': 0,
      'switchyard.attempt': 1,
      'http.response.status_code': 503,
      'error.type': 'status_5xx',
      'switchyard.failure_cause': 'status_5xx',
    });
    expect(first?.status.code).toBe(2);
    expect(second?.attributes).toMatchObject({
      'gen_ai.request.model': 'model-b',
      'gen_ai.response.model': 'model-b',
      'switchyard.member': 'secondary',
      'switchyard.priority': 1,
      'switchyard.attempt': 2,
      'http.response.status_code': 200,
      'server.address': 'secondary.llm.test',
    });
    expect(second?.attributes['gen_ai.usage.input_tokens']).toBeGreaterThan(0);
    expect(second?.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
    expect(second?.attributes['error.type']).toBeUndefined();
    expect(second?.name).toBe('chat model-b');
    // Each GenAI span is the child of Envoy's span for that same attempt (the traceparent Envoy
    // injects per attempt), whose upstream is the member the GenAI span names.
    const envoySpan = (id: string | undefined) => trace.find((s) => s.service === 'switchyard-gateway' && s.spanId === id);
    expect(envoySpan(first?.parentSpanId)?.attributes).toMatchObject({ upstream_address: `${p0.host}:${p0.port}`, 'http.status_code': '503' });
    expect(envoySpan(second?.parentSpanId)?.attributes).toMatchObject({ upstream_address: `${p1.host}:${p1.port}`, 'http.status_code': '200' });
    expect(envoySpan(envoySpan(second?.parentSpanId)?.parentSpanId)).toBe(server);
  });

  it('names a Static request\'s member on its span from the host, with no AI tags', async () => {
    await p0.setMode('ok');
    const answer = await gw.chat('/static');
    expect(answer.answeredBy).toBe('p0');
    const server = await waitFor(
      () => receiver.spans().find((s) => s.service === 'switchyard-gateway' && s.kind === SpanKind.server && s.attributes['upstream_cluster'] === 'backend/ai/web'),
      { what: 'Envoy\'s request span of the Static request at the OTLP receiver', timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(server.attributes).toMatchObject({ 'switchyard.backend': 'ai/web', 'switchyard.member': 'p0-0', 'switchyard.priority': '0' });
    // A fact neither the dynamic metadata nor the host has sets no tag (not an empty one).
    expect(server.attributes['switchyard.provider']).toBeUndefined();
    expect(server.attributes['gen_ai.request.model']).toBeUndefined();
  });

  it('shows time to first token, request duration and tokens per member on /metrics', async () => {
    await p0.setMode('ok');
    await gw.chat();
    const text = await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/metrics`)).text();
    const series = (name: string, member: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(`member="${member}"`) && !l.includes('le="'));
      return line === undefined ? 0 : Number(line.split(' ').at(-1));
    };
    for (const member of ['primary', 'secondary']) {
      expect(series('switchyard_ai_time_to_first_token_seconds_count', member)).toBeGreaterThanOrEqual(1);
      expect(series('switchyard_ai_request_duration_seconds_count', member)).toBeGreaterThanOrEqual(1);
      expect(series('switchyard_ai_request_tokens_count', member)).toBeGreaterThanOrEqual(1);
    }
    expect(text).toMatch(/switchyard_ai_request_duration_seconds_bucket\{le="[0-9.]+",backend="ai\/chat",priority="1",member="secondary",model="model-b"\} 1/);
    expect(text).toMatch(/switchyard_ai_request_tokens_sum\{backend="ai\/chat",priority="0",member="primary",model="model-a",type="output"\} [1-9]/);
  });

  it('never puts a key in a span', async () => {
    await waitFor(() => receiver.raw().length > 0, { what: 'an OTLP export' });
    // The members got their keys, so there was something to leak.
    expect(p1.received().at(-1)?.headers['authorization']).toBe(`Bearer ${SECONDARY_KEY}`);
    for (const bytes of receiver.raw()) {
      for (const key of [PRIMARY_KEY, SECONDARY_KEY, 'sk-client']) expect(bytes.includes(Buffer.from(key))).toBe(false);
    }
    for (const s of receiver.spans()) expect(Object.keys(s.attributes).filter((k) => /authorization|api[-_]?key|secret|credential/i.test(k))).toEqual([]);
  });
});

describe('serve with its AI extension in a process of its own', () => {
  it('hands the OTLP endpoint to that process, as --otlp-endpoint', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'switchyard-tracing-state-'));
    const running = await serve({
      config: join(import.meta.dirname, '../../examples'),
      ...LOOPBACK_SERVE_PORTS,
      envoy: { listenerAddress: '127.0.0.1', otlp: { host: '127.0.0.1', port: receiver.port, tls: false } },
      aiExtension: { port: 0, host: '127.0.0.1', child: { stateDir, command: [process.execPath, '--import', 'tsx', join(import.meta.dirname, '../../src/cli/main.ts')] } },
      logger: createLogger({ level: 'warn', name: 'tracing-child' }, { write: () => undefined }),
    });
    try {
      const pid = running.aiExtensionProcess?.pid();
      expect(pid).toBeDefined();
      expect(commandLineOf(pid ?? 0)).toContain(`--otlp-endpoint http://127.0.0.1:${receiver.port}`);
    } finally {
      await running.stop();
      rmSync(stateDir, { recursive: true, force: true });
    }
  });

  // Three extension processes start from src/ under tsx, each compiling first: slow on a busy machine.
  it('adopts a running extension only when it traces to the same endpoint', async () => {
    const state = openStateDir(mkdtempSync(join(tmpdir(), 'switchyard-tracing-adopt-')));
    const logger = createLogger({ level: 'warn', name: 'tracing-adopt' }, { write: () => undefined });
    const base = { state, port: 0, host: '127.0.0.1', logger, command: [process.execPath, '--import', 'tsx', join(import.meta.dirname, '../../src/cli/main.ts')] };
    const traced = { ...base, otlp: { host: '127.0.0.1', port: receiver.port, tls: false } };
    const first = await startAiExtensionProcess(traced);
    const stops = [first];
    try {
      // As a serve restarted after a crash: the extension kept running.
      const again = await startAiExtensionProcess(traced);
      expect(again.adopted).toBe(true);
      expect(again.pid()).toBe(first.pid());
      const untraced = await startAiExtensionProcess(base);
      stops.push(untraced);
      expect(untraced.adopted).toBe(false);
      expect(untraced.pid()).not.toBe(first.pid());
      expect(commandLineOf(untraced.pid())).not.toContain('--otlp-endpoint');
    } finally {
      for (const p of stops.reverse()) await p.stop().catch(() => undefined);
      rmSync(state.path, { recursive: true, force: true });
    }
  }, 180_000);
});
