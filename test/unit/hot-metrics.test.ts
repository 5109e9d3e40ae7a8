import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HotCounter, HotHistogram } from '../../src/observability/hot-metrics.js';
import { createAiExtensionMetrics, registerAiExtensionMetrics } from '../../src/ai-extension/metrics.js';

/**
 * The AI extension's per-attempt series are recorded by hot-metrics.ts instead of prom-client's
 * Counter and Histogram: a scrape must read exactly what prom-client's own classes would have
 * given for the same calls, in both exposition formats.
 */

type Labels = Record<string, string | number>;
type Call = { kind: 'inc'; labels: Labels; value?: number } | { kind: 'observe'; labels: Labels; value: number };

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1];

/** Series met in a different order, labels given in different key orders, values on, between and beyond the bounds. */
const histogramCalls: Call[] = [
  { kind: 'observe', labels: { phase: 'request_headers', backend: 'ai/chat' }, value: 0.00004 },
  { kind: 'observe', labels: { phase: 'request_headers', backend: 'ai/chat' }, value: 0.0005 },
  { kind: 'observe', labels: { backend: 'ai/chat', phase: 'response_body' }, value: 0.3 },
  { kind: 'observe', labels: { phase: 'response_body', backend: 'ai/chat' }, value: 7 },
  { kind: 'observe', labels: { phase: 'request_headers', backend: 'ai/"quoted"\\ and\nnewline' }, value: 0.001 },
  { kind: 'observe', labels: { phase: 'request_body' }, value: 0 },
  { kind: 'observe', labels: { phase: 'request_headers', backend: 'ai/chat' }, value: 1 },
  { kind: 'observe', labels: { phase: 'request_headers', backend: 3 }, value: 0.02 },
];

const counterCalls: Call[] = [
  { kind: 'inc', labels: { backend: 'ai/chat', member: 'fast', provider: 'openai' } },
  { kind: 'inc', labels: { member: 'slow', backend: 'ai/chat', provider: 'openai' }, value: 2.5 },
  { kind: 'inc', labels: { backend: 'ai/chat', member: 'fast', provider: 'openai' }, value: 41 },
  { kind: 'inc', labels: { backend: 'ai/chat', member: 'none' }, value: 0 },
  { kind: 'inc', labels: { backend: 'ai/"x"', member: 'a\\b', provider: 'p\nq' } },
];

function apply(calls: Call[], counter: { inc(l: Labels, v?: number): void }, histogram: { observe(l: Labels, v: number): void }): void {
  for (const c of calls) {
    if (c.kind === 'inc') counter.inc(c.labels, c.value);
    else histogram.observe(c.labels, c.value);
  }
}

async function scrape(contentType: string, make: (registers: Registry[]) => { inc(l: Labels, v?: number): void; observe(l: Labels, v: number): void }): Promise<{ text: string; registry: Registry }> {
  const registry = new Registry();
  // The typings fix a registry's format at construction; the runtime takes either.
  (registry as unknown as { setContentType(t: string): void }).setContentType(contentType);
  const m = make([registry]);
  apply([...counterCalls, ...histogramCalls], m, m);
  return { text: await registry.metrics(), registry };
}

const proms = (registers: Registry[]) => {
  const counter = new Counter({ name: 'test_attempts_total', help: 'Attempts "counted".', labelNames: ['backend', 'member', 'provider'], registers });
  const histogram = new Histogram({ name: 'test_seconds', help: 'Time \\ taken.', labelNames: ['backend', 'phase'], buckets: BUCKETS, registers });
  return { inc: (l: Labels, v?: number) => counter.inc(l, v), observe: (l: Labels, v: number) => histogram.observe(l, v) };
};

const hots = (registers: Registry[]) => {
  const counter = new HotCounter({ name: 'test_attempts_total', help: 'Attempts "counted".', labelNames: ['backend', 'member', 'provider'], registers });
  const histogram = new HotHistogram({ name: 'test_seconds', help: 'Time \\ taken.', labelNames: ['backend', 'phase'], buckets: BUCKETS, registers });
  return { inc: (l: Labels, v?: number) => counter.inc(l, v), observe: (l: Labels, v: number) => histogram.observe(l, v) };
};

describe('hot metrics', () => {
  for (const contentType of [Registry.PROMETHEUS_CONTENT_TYPE, Registry.OPENMETRICS_CONTENT_TYPE]) {
    it(`render the same text as prom-client's Counter and Histogram (${contentType.split(';')[0]})`, async () => {
      const prom = await scrape(contentType, proms);
      const hot = await scrape(contentType, hots);
      expect(hot.text).toBe(prom.text);
      expect(hot.text.endsWith('# EOF\n')).toBe(contentType === Registry.OPENMETRICS_CONTENT_TYPE);
      // Not an empty comparison: every series and bucket line is there.
      expect(hot.text).toContain('test_seconds_bucket{le="0.00025",phase="request_headers",backend="ai/chat"} 1');
      expect(hot.text).toContain('test_seconds_bucket{le="+Inf",backend="ai/chat",phase="response_body"} 2');
      expect(hot.text).toContain('test_attempts_total{backend="ai/chat",member="fast",provider="openai"} 42');
      expect(hot.text).toContain('backend="ai/\\"quoted\\"\\\\ and\\nnewline"');
      expect(hot.text.split('\n').filter((l) => l.startsWith('test_seconds_bucket'))).toHaveLength(5 * (BUCKETS.length + 1));
    });
  }

  it('give the same JSON values, and reset to nothing as prom-client does', async () => {
    const prom = await scrape(Registry.PROMETHEUS_CONTENT_TYPE, proms);
    const hot = await scrape(Registry.PROMETHEUS_CONTENT_TYPE, hots);
    const strip = (json: unknown): unknown => JSON.parse(JSON.stringify(json, (k, v: unknown) => (k === 'exemplar' ? undefined : v)));
    expect(strip(await hot.registry.getMetricsAsJSON())).toEqual(strip(await prom.registry.getMetricsAsJSON()));
    prom.registry.resetMetrics();
    hot.registry.resetMetrics();
    expect(await hot.registry.metrics()).toBe(await prom.registry.metrics());
    expect(await hot.registry.metrics()).not.toContain('test_seconds_bucket');
  });

  it('refuse what prom-client refuses', () => {
    const registers = [new Registry()];
    const counter = new HotCounter({ name: 'c_total', help: 'c', labelNames: ['a'], registers });
    const histogram = new HotHistogram({ name: 'h', help: 'h', labelNames: ['a'], buckets: [1], registers });
    expect(() => counter.inc({ a: 'x' }, -1)).toThrow(/decrease/);
    expect(() => counter.inc({ a: 'x' }, Number.NaN)).toThrow(/not a valid number/);
    expect(() => histogram.observe({ a: 'x' }, Number.POSITIVE_INFINITY)).toThrow(/not a valid number/);
    expect(() => counter.inc({ b: 'x' } as unknown as { a: string })).toThrow(/"b" is not included/);
    expect(() => new HotHistogram({ name: 'l', help: 'l', labelNames: ['le'], buckets: [1], registers })).toThrow(/le is a reserved/);
    expect(() => new HotCounter({ name: 'c_total', help: 'again', labelNames: [], registers })).toThrow(/already been registered/);
  });

  it("serve the AI extension's series from a second registry (serve's, in one process) as from their own", async () => {
    const metrics = createAiExtensionMetrics();
    const controller = new Registry();
    registerAiExtensionMetrics(metrics, controller);
    metrics.processing.observe({ phase: 'request_headers' }, 0.0003);
    metrics.requests.inc({ backend: 'ai/chat', member: 'fast', provider: 'openai' });
    const own = await metrics.registry.metrics();
    expect(await controller.metrics()).toBe(own);
    expect(own).toContain('switchyard_ai_extension_processing_seconds_bucket{le="0.0005",phase="request_headers"} 1');
    expect(own).toContain('switchyard_ai_requests_total{backend="ai/chat",member="fast",provider="openai"} 1');
  });
});
