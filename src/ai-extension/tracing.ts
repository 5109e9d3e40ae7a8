import { randomBytes } from 'node:crypto';
import { SpanKind, SpanStatusCode, type AttributeValue, type SpanRecord } from '../observability/otlp.js';
import type { AttemptTarget } from './attempt.js';

/** Where finished spans go (the OTLP exporter, or a test's list). */
export interface SpanSink {
  export(span: SpanRecord): void;
}

/** A W3C trace context (https://www.w3.org/TR/trace-context/#traceparent-header). */
export interface TraceContext {
  traceId: string;
  spanId: string;
  sampled: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A valid traceparent, or undefined (absent, malformed, or the all-zero ids the spec forbids). */
export function parseTraceparent(value: string | undefined): TraceContext | undefined {
  const m = value === undefined ? null : TRACEPARENT.exec(value.trim().toLowerCase());
  if (m === null) return undefined;
  const [, version, traceId, spanId, flags] = m;
  if (version === 'ff' || traceId === undefined || spanId === undefined || flags === undefined) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

/**
 * gen_ai.provider.name of the GenAI semantic conventions for each Switchyard provider;
 * an OpenAI-compatible server (vLLM, Ollama, ...) is named by what it speaks.
 */
const PROVIDER_NAMES: Readonly<Record<string, string>> = {
  openai: 'openai',
  azureopenai: 'azure.ai.openai',
  anthropic: 'anthropic',
  gemini: 'gcp.gemini',
  vertexai: 'gcp.vertex_ai',
  bedrock: 'aws.bedrock',
  openaiCompatible: 'openai',
};

export function genAiProviderName(provider: string): string {
  return PROVIDER_NAMES[provider] ?? provider;
}

// Wall-clock nanoseconds from the monotonic clock: a span never ends before it starts.
const CLOCK_BASE_NS = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
const nowNs = (): bigint => CLOCK_BASE_NS + process.hrtime.bigint();

/**
 * One attempt as a GenAI client span (gen_ai.operation.name "chat"), a child of the span Envoy
 * made for the attempt (its traceparent), so a failover reads as one trace: Envoy's request
 * span, Envoy's attempt spans, and under each the member, the models, the tokens and the cause.
 * Attributes are chosen here, never copied from headers: no credential can reach a span.
 */
export class AttemptSpan {
  private readonly spanId = randomBytes(8).toString('hex');
  private readonly traceId: string;
  private readonly parentSpanId: string | undefined;
  private readonly start = nowNs();
  private readonly attributes: Record<string, AttributeValue> = { 'gen_ai.operation.name': 'chat' };
  private failure: string | undefined;
  private ended = false;

  constructor(
    private readonly sink: SpanSink,
    parent: TraceContext | undefined,
    target: AttemptTarget,
    attempt: number,
  ) {
    this.traceId = parent?.traceId ?? randomBytes(16).toString('hex');
    this.parentSpanId = parent?.spanId;
    const provider = genAiProviderName(target.provider);
    Object.assign(this.attributes, {
      'gen_ai.provider.name': provider,
      // The name before semantic conventions 1.37, which many backends still read.
      'gen_ai.system': provider,
      'switchyard.backend': target.backend,
      'switchyard.member': target.member,
      'switchyard.priority': target.priority,
      'switchyard.provider': target.provider,
      'switchyard.attempt': attempt,
      ...(target.hostname !== undefined ? { 'server.address': target.hostname } : {}),
      ...(target.model !== undefined ? { 'gen_ai.request.model': target.model } : {}),
    });
  }

  /** The model the attempt asks for when the member sets none (the client's). */
  requestModel(model: string): void {
    this.attributes['gen_ai.request.model'] ??= model;
  }

  status(code: number): void {
    this.attributes['http.response.status_code'] = code;
  }

  responseModel(model: string): void {
    this.attributes['gen_ai.response.model'] = model;
  }

  usage(input: number, output: number): void {
    this.attributes['gen_ai.usage.input_tokens'] = input;
    this.attributes['gen_ai.usage.output_tokens'] = output;
  }

  /** Why the attempt failed (the cause the failures metric counts), as error.type. */
  fail(cause: string): void {
    this.failure = cause;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    const model = this.attributes['gen_ai.request.model'];
    if (this.failure !== undefined) {
      this.attributes['error.type'] = this.failure;
      this.attributes['switchyard.failure_cause'] = this.failure;
    }
    this.sink.export({
      traceId: this.traceId,
      spanId: this.spanId,
      ...(this.parentSpanId !== undefined ? { parentSpanId: this.parentSpanId } : {}),
      name: typeof model === 'string' ? `chat ${model}` : 'chat',
      kind: SpanKind.client,
      startNs: this.start,
      endNs: nowNs(),
      attributes: this.attributes,
      ...(this.failure !== undefined ? { status: { code: SpanStatusCode.error, message: this.failure } } : {}),
    });
  }
}
