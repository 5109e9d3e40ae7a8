import { describe, expect, it } from 'vitest';
import type { AttemptTarget } from '../../src/ai-extension/attempt.js';
import { AttemptSpan, parseTraceparent } from '../../src/ai-extension/tracing.js';
import { listenerTracing, otlpCluster, otlpUrl, parseOtlpEndpoint } from '../../src/envoy/tracing.js';
import { decodeTraceExport, encodeTraceExport, type SpanRecord } from '../../src/observability/otlp.js';

describe('traceparent', () => {
  it('reads a sampled W3C context', () => {
    expect(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')).toEqual({
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      sampled: true,
    });
    expect(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00')?.sampled).toBe(false);
  });

  it('refuses malformed contexts and the all-zero ids', () => {
    for (const bad of [undefined, '', 'garbage', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01']) {
      expect(parseTraceparent(bad)).toBeUndefined();
    }
  });
});

describe('--otlp-endpoint', () => {
  it('takes http and https URLs, 4317 by default', () => {
    expect(parseOtlpEndpoint('http://otel-collector.observability:4317')).toEqual({ host: 'otel-collector.observability', port: 4317, tls: false });
    expect(parseOtlpEndpoint('https://collector.example')).toEqual({ host: 'collector.example', port: 4317, tls: true });
    expect(parseOtlpEndpoint('http://[::1]:4318')).toEqual({ host: '::1', port: 4318, tls: false });
    expect(otlpUrl({ host: '::1', port: 4318, tls: false })).toBe('http://[::1]:4318');
  });

  it('names the flag and the fix for what it cannot use', () => {
    expect(parseOtlpEndpoint('collector:4317')).toEqual({ error: expect.stringContaining('--otlp-endpoint "collector:4317": the scheme must be http or https') });
    expect(parseOtlpEndpoint('not a url')).toEqual({ error: expect.stringContaining('http://HOST:4317') });
    expect(parseOtlpEndpoint('http://collector:4318/v1/traces')).toEqual({ error: expect.stringContaining('OTLP/gRPC takes no path') });
  });

  it('gives Envoy a tracer only when configured, and a TLS cluster for https', () => {
    expect(listenerTracing({})).toBeUndefined();
    expect(listenerTracing({ otlp: { host: 'c', port: 4317, tls: false } })).toMatchObject({ provider: { name: 'envoy.tracers.opentelemetry' }, spawn_upstream_span: true });
    const tls = otlpCluster({ host: 'collector.example', port: 4317, tls: true }, { trustedCaFile: '/ca.pem' });
    expect(tls).toMatchObject({ type: 'STRICT_DNS', transport_socket: { typed_config: { sni: 'collector.example' } } });
    expect(otlpCluster({ host: '10.0.0.1', port: 4317, tls: false }, { trustedCaFile: '/ca.pem' })).not.toHaveProperty('transport_socket');
  });
});

describe('attempt spans', () => {
  const target: AttemptTarget = { backend: 'ai/chat', member: 'm', priority: 1, provider: 'azureopenai', authKind: 'SecretRef', credential: 'credential/ai/key', hostname: 'x.openai.azure.com' };

  it('round-trip through OTLP protobuf with the GenAI attributes, under the given parent', () => {
    const spans: SpanRecord[] = [];
    const span = new AttemptSpan({ export: (s) => spans.push(s) }, parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), target, 2);
    span.requestModel('gpt-4o');
    span.status(429);
    span.fail('ratelimited');
    span.end();
    span.end();
    expect(spans).toHaveLength(1);
    const [decoded] = decodeTraceExport(encodeTraceExport({ name: 'svc', scope: 'scope', version: '1' }, spans));
    expect(decoded).toMatchObject({
      service: 'svc',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      parentSpanId: '00f067aa0ba902b7',
      name: 'chat gpt-4o',
      kind: 3,
      status: { code: 2, message: 'ratelimited' },
      attributes: {
        'gen_ai.provider.name': 'azure.ai.openai',
        'gen_ai.request.model': 'gpt-4o',
        'switchyard.priority': 1,
        'switchyard.attempt': 2,
        'http.response.status_code': 429,
        'error.type': 'ratelimited',
      },
    });
    // The credential's name is no secret, but nothing about it belongs in a span either.
    expect(JSON.stringify(decoded)).not.toContain('credential/');
    expect(spans[0]!.endNs >= spans[0]!.startNs).toBe(true);
  });
});
