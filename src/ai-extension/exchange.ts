import { StringDecoder } from 'node:string_decoder';
import type { Logger } from 'pino';
import { AnthropicStreamTranslator, fromAnthropicResponse, toAnthropicRequest, toOpenAIError } from './anthropic.js';
import { ABANDONED_HEADER } from '../envoy/ai-extension.js';
import { DEFAULT_AI_REQUEST_BODY_LIMIT, DEFAULT_CONNECT_TIMEOUT_MS, ROUTE_RETRIES_HEADER } from '../ir/model.js';
import { attemptTarget, connectionReady, type AttemptTarget } from './attempt.js';
import { DRILL_ANSWER_HEADER, DRILL_FAILED_STATUS, DRILL_HEADER, DRILL_NOT_READY_HEADER, drillAnswerHeader, verifyDrillHeader, type DrillNonces, type DrillRejectionLog, type VerifiedDrill } from './drill.js';
import { FirstTokenWatch, answerFraming } from './first-token.js';
import { memberVerdicts } from './member-verdicts.js';
import type { MemberLimitsRuntime } from './limits-health.js';
import { MAX_REFUSAL_BODY, refusalCause, type RefusalCause } from './refusals.js';
import { StreamRefusalWatch, isRefusalAnswer, type AnswerFormat } from './answer-refusals.js';
import { GeminiStreamTranslator, fromGenerateContentResponse, geminiErrorToOpenAI, toGenerateContentRequest } from './gemini.js';
import { ConverseStreamTranslator, bedrockErrorToOpenAI, fromConverseResponse, toConverseRequest } from './bedrock.js';
import { isRecord, parseObject, type Usage } from './json.js';
import { failureCause, type AiExtensionMetrics, type FailureCause, type MemberLabel } from './metrics.js';
import { modelForAttempt } from './models.js';
import { readChatFields, withModel } from './model-splice.js';
import { asBuffer, headerMap, type HeaderMutation, type HeaderSet, type PhaseResponse, type ProcessingRequest, type ProcessingResponse } from './protocol.js';
import { RequestBodyChunks } from './request-body.js';
import { WARMUP_ANSWER_HEADER, WARMUP_ANSWER_STATUS, WARMUP_HEADER, WARMUP_REFUSED_STATUS, WARMUP_ROUTE_HEADER, warmupAnswerHeader, type WarmupOrders } from './warmup.js';
import { WELL_KNOWN_CREDENTIAL_HEADERS, isChatCompletions, requestHeaderMutation } from './request-headers.js';
import type { RequestMemory, RequestRecord } from './request-memory.js';
import { AttemptSpan, parseTraceparent, type SpanSink } from './tracing.js';
import { OpenAIUsageReader } from './usage.js';
import { signRequest, type AwsCredentials } from './sigv4.js';
import { ServiceAccountTokens } from './vertex.js';

/** What every attempt shares: credentials, the memory of requests between attempts, metrics. */
export interface ExchangeContext {
  /** `get`, when there, answers at once with a credential already held (resolve would too, a few promise jobs later). */
  credentials: { resolve(name: string, timeoutMs: number): Promise<string | undefined>; get?(name: string): string | undefined; readonly keysWithheld?: string | undefined };
  memory: RequestMemory;
  metrics: AiExtensionMetrics;
  /** Credential header names seen in member metadata, beyond the well-known ones (lower-case). */
  credentialHeaders: Set<string>;
  /** How long an attempt waits for a credential the controller has not sent yet. */
  credentialWaitMs: number;
  logger: Logger;
  /** Drill headers: nonces honoured, rejections logged. */
  drill: { nonces: DrillNonces; rejections: DrillRejectionLog };
  /** Warm-up orders from the serve that started this extension (warmup.ts); absent: warm-up headers are ignored. */
  warmup?: WarmupOrders;
  /** Where attempt spans go when tracing is on (--otlp-endpoint); absent: none are made. */
  spans?: SpanSink;
  /** Access tokens of Vertex AI members with a service-account key (one cache per extension). */
  vendorTokens?: ServiceAccountTokens;
  /** Per-member limit counts (src/ai-extension/limits-health.ts); absent: not counted. */
  limits?: Pick<MemberLimitsRuntime, 'admit' | 'spend'>;
}

type ResponseMode = 'observe' | 'anthropic-stream' | 'anthropic-json' | 'bedrock-stream' | 'bedrock-json' | 'gemini-stream' | 'gemini-json' | 'abandoned' | 'none';

/** Extra time Envoy is asked to wait beyond the deadline, so the extension's own timer decides. */
const DEADLINE_MARGIN_MS = 1_000;

/**
 * Held answer headers: until a first content token (deadline), until an error body is read
 * (refusal), or until a successful answer shows content or a content-policy refusal (answer).
 */
interface HeldHeaders {
  kind: 'first-token' | 'refusal' | 'answer';
  /** Feeds a body chunk; true once the headers can be answered. */
  push(bytes: Uint8Array, end: boolean): boolean;
  outcome: Promise<'release' | 'timeout'>;
  settle(outcome: 'release' | 'timeout'): void;
  remainingMs: number;
  released: boolean;
  /** The error body read so far (refusal). */
  body: Buffer[];
  /** A successful answer that turned out to be a content-policy refusal. */
  refused?: boolean;
}

function held(kind: HeldHeaders['kind'], remainingMs: number, push: (bytes: Uint8Array, end: boolean, gate: HeldHeaders) => boolean): HeldHeaders {
  let resolve: (o: 'release' | 'timeout') => void = () => undefined;
  const outcome = new Promise<'release' | 'timeout'>((r) => (resolve = r));
  const timer = setTimeout(() => gate.settle('timeout'), remainingMs);
  const gate: HeldHeaders = {
    kind,
    outcome,
    remainingMs,
    released: false,
    body: [],
    push: (bytes, end) => push(bytes, end, gate),
    settle: (o) => {
      if (gate.released) return;
      gate.released = true;
      clearTimeout(timer);
      resolve(o);
    },
  };
  return gate;
}

/** How long a 400's headers are held for its body when the pool has a fallback for some refusals. */
const REFUSAL_WAIT_MS = 5_000;
/**
 * How long a successful answer's headers are held for its first content (or a refusal) when the
 * pool has a contentPolicyFallback and no first-token deadline: the default route timeout. After
 * it the answer goes on as it is.
 */
const ANSWER_WAIT_MS = 300_000;

/**
 * The answer of a skipped attempt (a refusal sent the request to a later pool). Not a 5xx, for the
 * reason drills use it: outlier detection must not eject a pool that was never asked...
 */
const SKIPPED_STATUS = DRILL_FAILED_STATUS;
/** ...unless the member's last real answer was a failure, which a non-5xx would hide (member-verdicts.ts); drills too. */
const SKIPPED_FAILING_STATUS = 503;

/**
 * How long, from an attempt's start, its request headers may wait for credentials: the answer must
 * reach Envoy within the filter's 2 s message timeout, or the request ends with a local reply
 * that is never retried.
 */
const CREDENTIAL_BUDGET_MS = 1_500;

/**
 * How long after an attempt began a stand-in is safe when Envoy had no connection to its member
 * ready: by the cluster's connect timeout Envoy has one or has failed the attempt itself (the
 * answer is then dropped with the stream). Counted from the extension's first message, which
 * comes after Envoy asked its pool; the margin covers the timer's granularity.
 */
const STAND_IN_SAFE_AFTER_MS = DEFAULT_CONNECT_TIMEOUT_MS + 100;

/** How long Envoy is asked to wait for the request headers' answer while the client's body is still coming. */
const REQUEST_BODY_WAIT_MS = 300_000;
/** How long the body may take before Envoy is asked to wait (its message timeout is 2 s). */
const BODY_WAIT_BEFORE_ASKING_MS = 500;

const EMPTY_BODY = Buffer.alloc(0);

/**
 * The largest request body an attempt takes: the AI routes' body limit, which Envoy enforced with
 * a 413 while it buffered the body for the extension (request body BUFFERED).
 */
const REQUEST_BODY_LIMIT_BYTES = DEFAULT_AI_REQUEST_BODY_LIMIT;

/** On a stand-in 503 for a member without a usable credential: why, for the client of the last attempt. */
export const CREDENTIAL_ERROR_HEADER = 'x-switchyard-error';

/** For contexts built without one (tests): tokens are still cached across attempts. */
const SHARED_TOKENS = new ServiceAccountTokens();

/** Bedrock's service name in SigV4 scopes. */
const BEDROCK_SERVICE = 'bedrock';

/** A Vertex AI member on the native API (its path ends in :generateContent). */
function isGenerateContent(target: AttemptTarget): boolean {
  return target.provider === 'vertexai' && (target.path ?? '').endsWith(':generateContent');
}

/**
 * One ext_proc stream, which Envoy opens for each attempt: the picked member's target comes with
 * the request headers; the request is adapted to it, and the answer read (usage, outcome) or
 * translated back to OpenAI's shape on its way to the client.
 */
export class AttemptExchange {
  private target: AttemptTarget | undefined;
  private requestId: string | undefined;
  /** x-envoy-attempt-count of this attempt. */
  private attempt = 1;
  private clientPath = '/';
  private clientStreaming = false;
  private includeUsage = false;
  private status: number | undefined;
  private mode: ResponseMode = 'none';
  private readonly decoder = new StringDecoder('utf8');
  private translator: AnthropicStreamTranslator | undefined;
  private converse: ConverseStreamTranslator | undefined;
  private gemini: GeminiStreamTranslator | undefined;
  /** The AWS keys of a Bedrock member: the request is signed once its body is known. */
  private awsKeys: AwsCredentials | undefined;
  private bedrockErrorType: string | undefined;
  private json = '';
  private usageReader: OpenAIUsageReader | undefined;
  private failed = false;
  private span: AttemptSpan | undefined;
  private labels: Record<MemberLabel, string> | undefined;
  private attemptStartedAt = 0;
  private requestStartedAt = 0;
  private firstByteSeen = false;
  /** The answer's body is an event stream (SSE, or Bedrock's binary frames): its chunks reach the client one by one. */
  private eventStreamAnswer = false;
  /**
   * Bookkeeping no answer depends on (metrics, token counts, the span), kept until the answers
   * written meanwhile have left (deferBookkeeping); undefined: done at once.
   */
  private afterAnswers: (() => void)[] | undefined;
  private afterAnswersQueued = false;
  /** The queued bookkeeping is running: what it queues (the tokens its usage read found) runs at once, in order. */
  private inBookkeeping = false;

  private gate: HeldHeaders | undefined;
  /** The verified drill order this request carries, if any. */
  private drill: VerifiedDrill | undefined;
  /** This attempt was failed for a drill: not a failure of its member. */
  private drilled = false;
  /** This attempt belongs to a warm-up request and was answered by the extension. */
  private warmedUp = false;
  /** This attempt was skipped: an earlier pool's refusal named a later pool. */
  private skipped = false;
  private stripDrillHeader = false;
  /**
   * Envoy had a connection to the picked member ready as the attempt began. Without one, no
   * stand-in answer may be given: Envoy 1.40 crashes when the router gets upstream headers before
   * the connection pool is ready (src/ai-extension/README.md, "Standing in for the upstream").
   */
  private connectionReady = false;
  private drillAddedMs = 0;
  private heldMs = 0;
  /** The request body as it arrives (full-duplex: its chunks come without waiting for the headers' answer). */
  private readonly requestBody = new RequestBodyChunks(REQUEST_BODY_LIMIT_BYTES);
  /** What the last request body chunk is answered with: the body the provider gets. */
  private adaptedBody: Buffer | undefined;
  /** The request headers were answered with the member's request (no stand-in, no local reply): the body goes on. */
  private requestContinued = false;

  /**
   * `send` writes a message to Envoy out of turn (a request to wait longer); `traceparent` is the
   * trace context Envoy sent with this ext_proc stream's gRPC metadata.
   */
  constructor(
    private readonly ctx: ExchangeContext,
    private readonly send: (r: ProcessingResponse) => void = () => undefined,
    private readonly streamTraceparent?: string,
    /** The ext_proc stream's connection (BidiCall.connection): names Envoy's worker in a warm-up answer. */
    private readonly connection?: string,
  ) {}

  /**
   * From now on, work no answer depends on runs after the answers written meanwhile have been sent:
   * in an immediate, which runs after the native immediate in which Node's HTTP/2 session sends
   * what the read wrote (src/ai-extension/README.md, "Reaching the extension").
   */
  deferBookkeeping(): void {
    this.afterAnswers ??= [];
  }

  /** Runs `work` once the answers written so far have left, or at once (deferBookkeeping). */
  later(work: () => void): void {
    const queue = this.afterAnswers;
    if (queue === undefined || this.inBookkeeping) {
      work();
      return;
    }
    queue.push(work);
    if (this.afterAnswersQueued) return;
    this.afterAnswersQueued = true;
    setImmediate(() => this.runBookkeeping());
  }

  private runBookkeeping(): void {
    this.afterAnswersQueued = false;
    const queue = this.afterAnswers;
    if (queue === undefined || queue.length === 0) return;
    this.afterAnswers = [];
    this.inBookkeeping = true;
    try {
      for (const work of queue) {
        // Out of the answer's handling, a throw would end the process instead of the attempt.
        try {
          work();
        } catch (err) {
          this.ctx.logger.error({ err, backend: this.target?.backend, member: this.target?.member }, 'ai-extension: failed to record an attempt\'s metrics');
        }
      }
    } finally {
      this.inBookkeeping = false;
    }
  }

  /** How long the last answer waited for a first token (then forgotten): not the extension's own latency. */
  takeHeldMs(): number {
    const held = this.heldMs;
    this.heldMs = 0;
    return held;
  }

  /**
   * Sees every message as it arrives, before earlier ones are answered: response body chunks reach
   * the extension while it holds the headers back, and the first content token among them
   * releases the headers (first-token deadline).
   */
  observe(message: ProcessingRequest): void {
    if (message.request_body) {
      this.requestBody.push(message.request_body.body ?? new Uint8Array(0), message.request_body.end_of_stream === true);
      return;
    }
    if (message.request_trailers) {
      this.requestBody.trailers();
      return;
    }
    if (message.response_headers) {
      // An answer without a body has nothing to wait for.
      if (message.response_headers.end_of_stream !== true && this.mayHold()) this.gate ??= this.holdHeaders(headerMap(message.response_headers));
      return;
    }
    const gate = this.gate;
    if (message.response_body && gate && !gate.released) {
      if (gate.push(message.response_body.body ?? new Uint8Array(0), message.response_body.end_of_stream === true)) gate.settle('release');
    }
  }

  /** Only a member with a first-token deadline or refusal fallbacks ever holds an answer's headers. */
  private mayHold(): boolean {
    return this.target !== undefined && (this.target.firstTokenTimeoutMs !== undefined || this.target.fallbacks !== undefined);
  }

  private holdHeaders(headers: Map<string, string>): HeldHeaders | undefined {
    const target = this.target;
    const status = Number(headers.get(':status') ?? '0');
    if (target === undefined) return undefined;
    const deadline = target.firstTokenTimeoutMs;
    const refusals = status >= 200 && status < 300 && target.fallbacks?.includes('content_policy') === true ? this.answerRefusalWatch(target, headers) : undefined;
    // A successful answer is held until its first token (or its refusal); an error goes on as it is...
    if (status >= 200 && status < 300 && (deadline !== undefined || refusals !== undefined)) {
      const watch = new FirstTokenWatch(answerFraming(headers.get('content-type') ?? ''));
      const remainingMs = deadline === undefined ? ANSWER_WAIT_MS : Math.max(0, deadline - (performance.now() - this.attemptStartedAt));
      return held(deadline === undefined ? 'answer' : 'first-token', remainingMs, (bytes, end, gate) => {
        const verdict = refusals?.(bytes, end);
        if (verdict === 'refusal') gate.refused = true;
        if (verdict !== undefined) return true;
        // A JSON answer is read whole for its refusal, a binary event stream until its verdict; an
        // SSE stream until its first content, which the first-token watch may see first.
        return end || ((refusals === undefined || refusals.reads === 'events') && watch.push(bytes));
      });
    }
    // ...unless it may be a refusal this pool hands on: then its body says which.
    if (status === 400 && target.fallbacks !== undefined) {
      let size = 0;
      return held('refusal', REFUSAL_WAIT_MS, (bytes, end, gate) => {
        size += bytes.length;
        if (size <= MAX_REFUSAL_BODY) gate.body.push(Buffer.from(bytes));
        return end || size > MAX_REFUSAL_BODY;
      });
    }
    return undefined;
  }

  /**
   * Reads a successful answer for a content-policy refusal in its provider's own shape: a streamed
   * one event by event until its first content, a JSON one whole (up to MAX_REFUSAL_BODY).
   */
  private answerRefusalWatch(target: AttemptTarget, headers: Map<string, string>): (((bytes: Uint8Array, end: boolean) => 'refusal' | 'content' | undefined) & { reads: 'whole' | 'events' | 'frames' }) | undefined {
    if (!isChatCompletions(this.clientPath)) return undefined;
    const format: AnswerFormat = target.provider === 'anthropic' ? 'anthropic' : target.provider === 'bedrock' ? 'bedrock' : isGenerateContent(target) ? 'gemini' : 'openai';
    const type = headers.get('content-type') ?? '';
    const frames = type.includes('application/vnd.amazon.eventstream');
    if (frames || type.includes('text/event-stream')) {
      const watch = new StreamRefusalWatch(format);
      return Object.assign((bytes: Uint8Array) => watch.push(bytes), { reads: frames ? 'frames' as const : 'events' as const });
    }
    const body: Buffer[] = [];
    let size = 0;
    return Object.assign((bytes: Uint8Array, end: boolean) => {
      size += bytes.length;
      if (size > MAX_REFUSAL_BODY) return 'content' as const;
      body.push(Buffer.from(bytes));
      if (!end) return undefined;
      return isRefusalAnswer(format, Buffer.concat(body).toString('utf8')) ? 'refusal' as const : 'content' as const;
    }, { reads: 'whole' as const });
  }

  /**
   * The answer is an event stream whose chunks Envoy sends one at a time as the provider writes
   * them: each chunk's answer is what the client waits for, with nothing behind it in the read.
   */
  get streamsAnswer(): boolean {
    return this.eventStreamAnswer;
  }

  /** The member this attempt went to, once its request headers were read (for Envoy's dynamic metadata). */
  get member(): AttemptTarget | undefined {
    return this.target;
  }

  async handle(message: ProcessingRequest): Promise<ProcessingResponse> {
    if (message.request_headers) return this.requestHeaders(message);
    if (message.request_body) return this.requestBodyChunk();
    if (message.response_headers) return this.responseHeaders(message);
    if (message.response_body) return this.responseBody(message.response_body.body ?? new Uint8Array(0), message.response_body.end_of_stream === true);
    return { phase: message.request_trailers ? 'request_trailers' : 'response_trailers' };
  }

  /** Envoy closed the stream: an attempt that never got an answer failed without one (reset, refused, timed out). */
  close(): void {
    // What the last answers left to do goes before the span ends.
    this.runBookkeeping();
    // Envoy gave up on the attempt (a retry, the client left): nothing waits for the token now.
    this.gate?.settle('release');
    if (this.target !== undefined && this.status === undefined && !this.failed && !this.drilled && !this.skipped && !this.warmedUp) {
      this.fail('reset');
      memberVerdicts(this.ctx).note(this.target.backend, this.target.member, true);
    }
    this.span?.end();
  }

  private fail(cause: FailureCause): void {
    if (this.target === undefined) return;
    this.failed = true;
    this.ctx.metrics.failures.inc({ backend: this.target.backend, member: this.target.member, cause });
    this.span?.fail(cause);
  }

  private refuse(status: number, text: string, extra: HeaderSet[] = []): ProcessingResponse {
    const body = JSON.stringify({ error: { message: text, type: 'ai_extension_error', param: null, code: 'ai_extension_error' } });
    return { phase: 'immediate', status, body, headers: [{ key: 'content-type', value: 'application/json' }, ...extra] };
  }

  private async requestHeaders(message: ProcessingRequest): Promise<ProcessingResponse> {
    const found = attemptTarget(message.attributes);
    if ('error' in found) return this.refuse(503, `Switchyard AI extension: ${found.error}`);
    const target = found;
    this.target = target;
    this.connectionReady = connectionReady(message.attributes);
    this.attemptStartedAt = performance.now();
    const headers = headerMap(message.request_headers);
    if (target.authHeader !== undefined) this.ctx.credentialHeaders.add(target.authHeader.toLowerCase());

    this.requestId = headers.get('x-request-id');
    this.attempt = Number(headers.get('x-envoy-attempt-count') ?? '1') || 1;
    const warmup = this.warmupAttempt(headers.get(WARMUP_HEADER), target, headers.has(WARMUP_ROUTE_HEADER));
    if (warmup !== undefined) return warmup;
    // Each await of an async call is a few promise jobs on the way to the answer: the checks that
    // usually find nothing are made first, and only what has something to do is awaited.
    const drillHeader = headers.get(DRILL_HEADER);
    if (drillHeader !== undefined || this.drillRemembered()) {
      const drilled = await this.drillAttempt(drillHeader, this.attempt, target);
      if (drilled !== undefined) return drilled;
    }
    if (this.fallbackNamed()) {
      const skipped = await this.skipForFallback(target);
      if (skipped !== undefined) return skipped;
    }
    const record = this.rememberRequest(headers, target);
    this.clientPath = record.path;
    this.requestStartedAt = record.startedAt;
    this.labels = { backend: target.backend, priority: String(target.priority), member: target.member, model: target.model ?? '' };
    if (this.ctx.spans !== undefined) {
      // The attempt's own context (Envoy injects it per attempt) first, else the one of the
      // ext_proc stream, which is a child of the same attempt.
      const parent = parseTraceparent(headers.get('traceparent')) ?? parseTraceparent(this.streamTraceparent);
      if (parent === undefined || parent.sampled) this.span = new AttemptSpan(this.ctx.spans, parent, target, record.attempts);
    }

    let key: string | undefined;
    if (target.authKind !== 'Passthrough' && target.authKind !== 'None') {
      key = target.credential === undefined ? undefined : (this.ctx.credentials.get?.(target.credential) ?? (await this.ctx.credentials.resolve(target.credential, this.ctx.credentialWaitMs)));
      if (key === undefined) {
        this.fail('credential_unavailable');
        this.ctx.logger.warn({ backend: target.backend, member: target.member, credential: target.credential }, 'ai-extension: no credential for the attempt');
        const why = this.ctx.credentials.keysWithheld;
        return this.refuse(503, `Switchyard AI extension: the credential ${target.credential ?? '(none named)'} of member ${target.member} (Backend ${target.backend}) is not available${why ? ` (${why})` : ''}; the request was not sent`);
      }
    }
    if (target.authKind === 'ServiceAccountKey' || target.authKind === 'AwsKeys') {
      const vendor = await this.vendorCredential(target, key ?? '');
      if ('error' in vendor) return await this.noVendorCredential(target, vendor.error);
      key = vendor.key;
    }
    let adapted: { headers?: HeaderMutation } = {};
    if (message.request_headers?.end_of_stream !== true) {
      // The headers go upstream with this answer, so what the body decides (path, length,
      // signature) must be in it: it is given once the whole body is in (usually it came in the
      // same read as the headers: then nothing is awaited).
      const whole = this.requestBody.complete ? this.adaptWholeBody() : await this.wholeRequestBody();
      if ('tooLarge' in whole) {
        // What Envoy answered while it buffered the body itself (413), the provider not called.
        this.status = 413;
        return this.refuse(413, `Switchyard AI extension: the request body is larger than ${REQUEST_BODY_LIMIT_BYTES} bytes; the request was not sent`);
      }
      adapted = whole;
    }
    this.later(() => this.ctx.metrics.requests.inc({ backend: target.backend, member: target.member, provider: target.provider }));
    if (target.limits !== undefined) this.ctx.limits?.admit(target.backend, target.member, target.limits);
    const mutation = requestHeaderMutation({
      target,
      clientPath: record.path,
      key,
      clientCredentials: record.clientCredentials,
      credentialHeaders: [...WELL_KNOWN_CREDENTIAL_HEADERS, ...this.ctx.credentialHeaders],
    });
    if (this.stripDrillHeader) mutation.remove = [...(mutation.remove ?? []), DRILL_HEADER];
    // An unhonoured warm-up header (forged, stale) is for the extension only, like a drill's.
    if (headers.has(WARMUP_HEADER)) mutation.remove = [...(mutation.remove ?? []), WARMUP_HEADER];
    // Meant for the extension only (kept in the request's record for later attempts).
    if (headers.has(ROUTE_RETRIES_HEADER)) mutation.remove = [...(mutation.remove ?? []), ROUTE_RETRIES_HEADER];
    if (adapted.headers?.set !== undefined) mutation.set = [...(mutation.set ?? []), ...adapted.headers.set];
    this.requestContinued = true;
    return { phase: 'request_headers', headers: mutation };
  }

  /**
   * Waits for the end of the request body (its chunks arrive on their own, see observe) and
   * adapts it to the member: the header changes it needs, and the body the provider gets.
   */
  private async wholeRequestBody(): Promise<{ headers?: HeaderMutation } | { tooLarge: true }> {
    if (!this.requestBody.complete) {
      const waiting = performance.now();
      // The body is right behind the headers, usually in the same read or the next. Envoy waits
      // for this answer at most its message timeout (2 s), and a client still uploading may take
      // longer: past a moment, Envoy is asked to wait.
      let timer: NodeJS.Timeout | undefined;
      const slow = new Promise<'slow'>((resolve) => (timer = setTimeout(() => resolve('slow'), BODY_WAIT_BEFORE_ASKING_MS)));
      if ((await Promise.race([this.requestBody.done, slow])) === 'slow') {
        this.send({ phase: 'wait', ms: REQUEST_BODY_WAIT_MS });
        await this.requestBody.done;
      }
      clearTimeout(timer);
      this.heldMs += performance.now() - waiting;
    }
    return this.adaptWholeBody();
  }

  /** The whole request body, adapted to the member (wholeRequestBody, once it is in). */
  private adaptWholeBody(): { headers?: HeaderMutation } | { tooLarge: true } {
    if (this.requestBody.tooLarge) return { tooLarge: true };
    const original = this.requestBody.whole();
    const adapted = this.adaptRequestBody(original);
    this.adaptedBody = adapted.body !== undefined && 'body' in adapted.body ? asBuffer(adapted.body.body) : original;
    return adapted.headers !== undefined ? { headers: adapted.headers } : {};
  }

  /**
   * The request body's messages get one answer, after the headers', given with the last of them:
   * the adapted body, so the provider gets that body only. Envoy takes full-duplex body answers as
   * they come, not one per message: an answer fewer per attempt (the body's data and its end come
   * apart), more for a body in many chunks. Behind a stand-in or a local reply each message is
   * still answered, as before (Envoy has finished with the body then).
   */
  private requestBodyChunk(): ProcessingResponse {
    const last = this.requestBody.answerNext();
    if (!last) return this.requestContinued ? { phase: 'none' } : { phase: 'request_body', body: { streamed: EMPTY_BODY, end: false } };
    return { phase: 'request_body', body: { streamed: this.adaptedBody ?? this.requestBody.whole(), end: !this.requestBody.endedByTrailers } };
  }

  /**
   * A Vertex AI member's access token (from its service-account key), or a Bedrock member's AWS
   * keys kept for signing the body: no header carries them yet.
   */
  private async vendorCredential(target: AttemptTarget, value: string): Promise<{ key: string | undefined } | { error: string }> {
    if (target.authKind === 'ServiceAccountKey') {
      const tokens = this.ctx.vendorTokens ?? SHARED_TOKENS;
      // From now on the token is fetched ahead and renewed before it expires, not on an attempt's time.
      if (target.credential !== undefined) tokens.keep(target.credential, value);
      try {
        return { key: await tokens.accessToken(value, Math.max(0, CREDENTIAL_BUDGET_MS - (performance.now() - this.attemptStartedAt))) };
      } catch (err) {
        return { error: err instanceof Error ? err.message : 'the access token could not be obtained' };
      }
    }
    const keys = parseObject(value);
    const accessKeyId = keys?.['accessKey'];
    const secretAccessKey = keys?.['secretKey'];
    const sessionToken = keys?.['sessionToken'];
    if (typeof accessKeyId !== 'string' || typeof secretAccessKey !== 'string') return { error: 'the AWS credential lacks accessKey or secretKey' };
    this.awsKeys = { accessKeyId, secretAccessKey, ...(typeof sessionToken === 'string' ? { sessionToken } : {}) };
    return { key: undefined };
  }

  /**
   * A member whose vendor credential cannot be had now (token endpoint slow or refusing, AWS keys
   * unusable): the extension stands in a 503 that the route retries on the next member or
   * priority, as it would an unreachable provider's, instead of ending the request; the provider
   * is never called. The last attempt's 503 goes to the client, the reason in its header.
   */
  private async noVendorCredential(target: AttemptTarget, error: string): Promise<ProcessingResponse> {
    this.fail('credential_unavailable');
    this.status = 503;
    this.ctx.logger.warn({ backend: target.backend, member: target.member, credential: target.credential, cause: 'credential_unavailable', error }, 'ai-extension: no usable credential for the attempt; handed to the next member');
    const reason = `Switchyard AI extension: member ${target.member} (Backend ${target.backend}) has no usable credential: ${error}; the request was not sent`;
    const marks = [
      { key: ABANDONED_HEADER, value: 'credential_unavailable' },
      // Envoy refuses a header value holding CR, LF or NUL.
      { key: CREDENTIAL_ERROR_HEADER, value: reason.replace(/[\r\n\0]/g, ' ') },
    ];
    // Nothing is retried after the route's last attempt: the client gets the reason in OpenAI's
    // error shape (a local reply), not a stand-in's empty body.
    if (this.isLastAttempt()) return this.refuse(503, reason, marks);
    await this.untilStandInSafe(target, 'credential_unavailable');
    return {
      phase: 'stand-in',
      headers: [{ key: ':status', value: '503' }, ...marks],
    };
  }

  /**
   * A drill header on this attempt: verified against the Backend's drill key. When it names this
   * attempt's priority, the extension stands in an answer that the route retries on the next
   * priority, and the provider is never called; on another priority the attempt goes on as usual
   * and its answer says who answered.
   */
  private async drillAttempt(header: string | undefined, attempt: number, target: AttemptTarget): Promise<ProcessingResponse | undefined> {
    const now = Date.now();
    const requestId = this.requestId ?? '';
    let verdict: VerifiedDrill | undefined;
    if (header === undefined) {
      verdict = requestId === '' ? undefined : this.ctx.drill.nonces.forRequest(requestId, attempt, now);
      if (verdict?.backend !== target.backend) return undefined;
    } else {
      // The header never reaches a provider, honoured or not.
      this.stripDrillHeader = true;
      const key = target.drillKey === undefined ? undefined : await this.ctx.credentials.resolve(target.drillKey, this.ctx.credentialWaitMs);
      const checked = verifyDrillHeader(header, { backend: target.backend, key, requestId, attempt, nowMs: now, nonces: this.ctx.drill.nonces });
      if ('rejected' in checked) {
        if (this.ctx.drill.rejections.first(target.backend, checked.rejected)) {
          this.ctx.logger.warn({ backend: target.backend, reason: checked.rejected, drill: true }, 'ai-extension: drill header ignored, the request is served normally (logged once per Backend and reason)');
        }
        return undefined;
      }
      verdict = checked;
      this.ctx.drill.nonces.remember(requestId, checked.nonce, checked);
    }
    this.drill = verdict;
    // What failing over cost: from the first (drilled) attempt to this one, the provider's own time excluded.
    this.drillAddedMs = now - verdict.firstSeenMs;
    // Traffic reaches priority N only through the priorities before it: they are down in the drill too.
    if (target.priority > verdict.priority) return undefined;
    if (!this.connectionReady) {
      // A stand-in now would crash Envoy; calling the provider would break the drill's promise.
      this.ctx.logger.warn({ backend: target.backend, member: target.member, priority: target.priority, drill: true, requestId: this.requestId }, 'ai-extension: drill request ended: Envoy had no connection to the drilled member ready, and failing the attempt over needs one');
      return this.refuse(
        503,
        `Switchyard drill: the attempt on member ${target.member} (priority ${target.priority}, Backend ${target.backend}) could not be failed over: Envoy had no connection to it ready yet (Envoy 1.40 cannot take a stand-in answer then); its provider was not called. Send the drill again: the connection is being made now.`,
        [{ key: DRILL_NOT_READY_HEADER, value: target.member }],
      );
    }
    this.drilled = true;
    // Like a skip: a drilled member that was failing must not have its failures reset by the drill.
    const status = memberVerdicts(this.ctx).lastFailed(target.backend, target.member) ? SKIPPED_FAILING_STATUS : DRILL_FAILED_STATUS;
    this.status = status;
    this.ctx.metrics.drillFailures.inc({ backend: target.backend, member: target.member, priority: String(target.priority) });
    this.ctx.logger.info({ backend: target.backend, member: target.member, priority: target.priority, drill: true, requestId: this.requestId }, 'ai-extension: drill failed this attempt without calling its provider');
    return {
      phase: 'stand-in',
      headers: [
        { key: ':status', value: String(status) },
        { key: ABANDONED_HEADER, value: 'drill' },
      ],
    };
  }

  /**
   * An attempt of serve's warm-up request (warmup.ts): answered here, never sent to the provider.
   * At the warmed priority, or wherever Envoy is still connecting, a local reply (Envoy goes on
   * connecting for the attempt it cancelled); at an earlier priority with a connection ready, a
   * stand-in the route retries, so the request walks on towards the warmed pool.
   */
  private warmupAttempt(header: string | undefined, target: AttemptTarget, onWarmupRoute: boolean): ProcessingResponse | undefined {
    const order =
      this.ctx.warmup === undefined || (header === undefined && this.attempt === 1)
        ? undefined
        : this.ctx.warmup.verify(header, { backend: target.backend, requestId: this.requestId ?? '', attempt: this.attempt, nowMs: Date.now() });
    if (order === undefined) {
      // A warm-up route (src/envoy/ai-warmup-routes.ts) reaches the cluster past the user's
      // routes: nothing but an honoured order is answered there, and never by a provider.
      if (onWarmupRoute) {
        this.warmedUp = true;
        this.status = WARMUP_REFUSED_STATUS;
        return this.refuse(WARMUP_REFUSED_STATUS, 'Switchyard AI extension: this route takes only warm-up requests signed by Switchyard (serve, or the extension beside Envoy); the request was not sent to any provider');
      }
      // On a user's route a forged or stale warm-up header is served like any request; it never reaches a provider.
      return undefined;
    }
    this.warmedUp = true;
    const labels = { backend: target.backend, member: target.member, priority: String(target.priority) };
    const answer = { key: WARMUP_ANSWER_HEADER, value: warmupAnswerHeader({ priority: target.priority, member: target.member, ready: this.connectionReady, ...(this.connection !== undefined ? { worker: this.connection } : {}) }) };
    if (target.priority < order.priority && this.connectionReady) {
      // Like a drill's stand-in: a member whose last real answer failed keeps its count running.
      const status = memberVerdicts(this.ctx).lastFailed(target.backend, target.member) ? SKIPPED_FAILING_STATUS : SKIPPED_STATUS;
      this.status = status;
      this.ctx.metrics.warmups.inc({ ...labels, outcome: 'passed' });
      return { phase: 'stand-in', headers: [{ key: ':status', value: String(status) }, { key: ABANDONED_HEADER, value: 'warmup' }, answer] };
    }
    this.status = WARMUP_ANSWER_STATUS;
    this.ctx.metrics.warmups.inc({ ...labels, outcome: this.connectionReady ? 'ready' : 'connecting' });
    this.ctx.logger.debug({ ...labels, ready: this.connectionReady, warmup: true, requestId: this.requestId }, 'ai-extension: warm-up attempt answered without calling the provider');
    return { phase: 'immediate', status: WARMUP_ANSWER_STATUS, body: '', headers: [answer] };
  }

  /**
   * An earlier attempt's refusal sent this request to a named pool: the attempts Envoy makes on
   * the priorities before it (previous_priorities moves one priority per retry) are failed here
   * with a stand-in answer the route retries, and their providers are never called.
   */
  private async skipForFallback(target: AttemptTarget): Promise<ProcessingResponse | undefined> {
    const record = this.requestId === undefined ? undefined : this.ctx.memory.get(this.requestId);
    const to = record?.fallbackTo;
    if (to === undefined || record?.lastBackend !== target.backend || target.priority >= to.level) return undefined;
    if (this.isLastAttempt(record)) {
      // The route allows no attempt after this one: a stand-in would reach the client as an
      // empty answer. This pool is asked instead, so the client gets a provider's own answer.
      // Seen when the named pool has no healthy member: previous_priorities, with every healthy
      // priority tried, starts again from the first one.
      this.ctx.logger.warn(
        { backend: target.backend, member: target.member, priority: target.priority, fallbackPriority: to.level, cause: to.cause, attempt: this.attempt, requestId: this.requestId },
        'ai-extension: the route\'s last attempt did not reach the pool the fallback names (is it unhealthy or ejected?); this pool answers instead of a skip',
      );
      return undefined;
    }
    this.skipped = true;
    const status = memberVerdicts(this.ctx).lastFailed(target.backend, target.member) ? SKIPPED_FAILING_STATUS : SKIPPED_STATUS;
    this.status = status;
    this.ctx.metrics.failures.inc({ backend: target.backend, member: target.member, cause: 'skipped_by_fallback' });
    this.ctx.logger.debug({ backend: target.backend, member: target.member, priority: target.priority, fallbackPriority: to.level, cause: to.cause, requestId: this.requestId }, 'ai-extension: attempt skipped on the way to the pool a refusal named');
    await this.untilStandInSafe(target, 'skipped_by_fallback');
    return { phase: 'stand-in', headers: [{ key: ':status', value: String(status) }, { key: ABANDONED_HEADER, value: 'skipped_by_fallback' }] };
  }

  /** An earlier attempt of this request may have left a drill for this one (drillAttempt without a header). */
  private drillRemembered(): boolean {
    return this.requestId !== undefined && this.requestId !== '' && this.ctx.drill.nonces.remembers(this.requestId);
  }

  /** A refusal named a pool for this request (skipForFallback has something to decide). */
  private fallbackNamed(): boolean {
    return this.requestId !== undefined && this.ctx.memory.get(this.requestId)?.fallbackTo !== undefined;
  }

  /** The route allows no attempt after this one (its retries, x-switchyard-route-retries, read on the first attempt). */
  private isLastAttempt(record: RequestRecord | undefined = this.requestId === undefined ? undefined : this.ctx.memory.get(this.requestId)): boolean {
    const budget = record?.routeRetries;
    return budget !== undefined && this.attempt > budget.retries;
  }

  /**
   * A stand-in answer reaching Envoy's router before the connection to the attempt's member is
   * ready crashes Envoy 1.40 (most likely the router reading an upstream host set only once the
   * pool is ready). Without a connection ready at the attempt's start, the answer waits until Envoy has
   * one or has failed the attempt itself (STAND_IN_SAFE_AFTER_MS); Envoy is asked to wait too.
   */
  private async untilStandInSafe(target: AttemptTarget, cause: string): Promise<void> {
    if (this.connectionReady) return;
    const waitMs = STAND_IN_SAFE_AFTER_MS - (performance.now() - this.attemptStartedAt);
    if (waitMs <= 0) return;
    this.ctx.logger.info({ backend: target.backend, member: target.member, priority: target.priority, cause, waitMs: Math.round(waitMs), requestId: this.requestId }, 'ai-extension: no connection to the member was ready; the stand-in waits for Envoy to connect or give up (Envoy 1.40 crashes on a stand-in before that)');
    this.send({ phase: 'wait', ms: Math.ceil(waitMs) + DEADLINE_MARGIN_MS });
    await new Promise((resolve) => setTimeout(resolve, waitMs));
  }

  /** The first attempt records what the client sent; later attempts count a failover when the member changed. */
  private rememberRequest(headers: Map<string, string>, target: AttemptTarget): RequestRecord {
    const id = this.requestId;
    const known = id === undefined ? undefined : this.ctx.memory.get(id);
    if (known !== undefined) {
      if (known.lastMember !== target.member || known.lastBackend !== target.backend) {
        this.ctx.metrics.failovers.inc({ backend: target.backend, from: known.lastMember, to: target.member });
      }
      known.lastMember = target.member;
      known.lastBackend = target.backend;
      known.attempts++;
      return known;
    }
    const clientCredentials = new Map<string, string>();
    for (const name of [...WELL_KNOWN_CREDENTIAL_HEADERS, ...this.ctx.credentialHeaders]) {
      const value = headers.get(name);
      if (value !== undefined) clientCredentials.set(name, value);
    }
    const routeRetries = parseRouteRetries(headers.get(ROUTE_RETRIES_HEADER));
    const record = { clientCredentials, path: headers.get(':path') ?? '/', lastMember: target.member, lastBackend: target.backend, startedAt: this.attemptStartedAt, attempts: 1, ...(routeRetries !== undefined ? { routeRetries } : {}) };
    return id === undefined ? { ...record, expires: 0 } : this.ctx.memory.remember(id, record);
  }

  /** The member's form of the client's body, and the headers that go with it (answered with the request headers). */
  private adaptRequestBody(bytes: Uint8Array): PhaseResponse {
    const target = this.target;
    if (target === undefined) return { phase: 'request_body' };
    const original = asBuffer(bytes);
    let replacement: Buffer | undefined;
    const chatPath = isChatCompletions(this.clientPath);
    const translated = target.provider === 'anthropic' || target.provider === 'bedrock' || isGenerateContent(target);
    if (chatPath && !translated) {
      // OpenAI's shape: only the model may change, and three top-level fields are read.
      const fields = readChatFields(original);
      if (fields !== undefined) {
        this.clientStreaming = fields.stream;
        this.includeUsage = fields.includeUsage;
        const asked = fields.model;
        if (typeof asked === 'string') this.span?.requestModel(asked);
        const model = modelForAttempt(target, asked);
        if (model !== undefined && asked !== model) replacement = withModel(original, fields, model);
      }
    }
    const chat = chatPath && translated ? parseObject(original.toString('utf8')) : undefined;
    if (chat !== undefined) {
      this.clientStreaming = chat['stream'] === true;
      const options = chat['stream_options'];
      this.includeUsage = isRecord(options) && options['include_usage'] === true;
      const asked = chat['model'];
      if (typeof asked === 'string') this.span?.requestModel(asked);
      const model = modelForAttempt(target, asked);
      if (target.provider === 'anthropic') {
        replacement = Buffer.from(JSON.stringify(toAnthropicRequest(chat, model)));
      } else if (target.provider === 'bedrock') {
        return this.bedrockRequest(target, Buffer.from(JSON.stringify(toConverseRequest(chat))));
      } else {
        const body = Buffer.from(JSON.stringify(toGenerateContentRequest(chat)));
        const base = target.path ?? '/';
        // The path is known with the headers, whether the client streams only with the body.
        const path = this.clientStreaming ? `${base.slice(0, -':generateContent'.length)}:streamGenerateContent?alt=sse` : base;
        return { phase: 'request_body', headers: { set: [{ key: 'content-length', value: String(body.length) }, { key: ':path', value: path }] }, body: { body } };
      }
    }
    const sent = replacement ?? original;
    // content-length is shared by all attempts: an earlier attempt may have set another length.
    const headers = { set: [{ key: 'content-length', value: String(sent.length) }] };
    return replacement === undefined ? { phase: 'request_body', headers } : { phase: 'request_body', headers, body: { body: replacement } };
  }

  /**
   * Converse (or converse-stream when the client streams), signed for this attempt: the
   * signature covers the body, so it is made once the whole body is in.
   */
  private bedrockRequest(target: AttemptTarget, body: Buffer): PhaseResponse {
    const base = target.path ?? '/';
    const path = this.clientStreaming ? base.replace(/\/converse$/, '/converse-stream') : base;
    const host = target.hostname ?? '';
    const set = [
      { key: 'content-length', value: String(body.length) },
      { key: 'content-type', value: 'application/json' },
      { key: ':path', value: path },
    ];
    const keys = this.awsKeys;
    if (keys !== undefined) {
      // Bedrock's endpoint is bedrock-runtime.<region>.amazonaws.com: the region is in the host.
      const region = /^bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\./.exec(host)?.[1] ?? '';
      const signed = signRequest({ method: 'POST', host, path, headers: { 'content-type': 'application/json' }, body, region, service: BEDROCK_SERVICE, now: new Date() }, keys);
      for (const [k, value] of Object.entries(signed)) set.push({ key: k, value });
    }
    return { phase: 'request_body', headers: { set }, body: { body } };
  }

  private async responseHeaders(message: ProcessingRequest): Promise<ProcessingResponse> {
    const target = this.target;
    const headers = headerMap(message.response_headers);
    const status = Number(headers.get(':status') ?? '0');
    this.status = status;
    this.span?.status(status);
    if (target === undefined) return { phase: 'response_headers' };
    const gate = this.gate;
    const extra: HeaderSet[] = [];
    let cause: FailureCause | undefined = failureCause(status);
    let handedOn: RefusalCause | undefined;
    if (gate !== undefined) {
      if (!gate.released) this.send({ phase: 'wait', ms: Math.ceil(gate.remainingMs) + DEADLINE_MARGIN_MS });
      const holding = performance.now();
      const outcome = await gate.outcome;
      this.heldMs = performance.now() - holding;
      if (gate.refused === true) {
        handedOn = this.handOn(target, 'content_policy', extra);
        cause = 'content_policy';
      } else if (gate.kind === 'first-token' && outcome === 'timeout') {
        return this.abandon(target);
      }
      const refusal = gate.kind === 'refusal' ? refusalCause(status, Buffer.concat(gate.body).toString('utf8')) : undefined;
      if (refusal !== undefined && target.fallbacks?.includes(refusal)) {
        handedOn = this.handOn(target, refusal, extra);
        cause = refusal;
      }
    }
    if (cause !== undefined) this.fail(cause);
    memberVerdicts(this.ctx).note(target.backend, target.member, status >= 500);
    if (this.drill !== undefined) this.answerDrill(target, status, extra);
    // Success ends the request: no later attempt will need what was remembered.
    if (status < 300 && handedOn === undefined && this.requestId !== undefined) this.ctx.memory.forget(this.requestId);
    const eventStream = (headers.get('content-type') ?? '').includes('text/event-stream');
    const binary = (headers.get('content-type') ?? '').includes('application/vnd.amazon.eventstream');
    this.eventStreamAnswer = eventStream || binary;
    const chat = isChatCompletions(this.clientPath);
    if (target.provider === 'bedrock' && chat) {
      this.mode = status < 300 && binary ? 'bedrock-stream' : 'bedrock-json';
      if (this.mode === 'bedrock-stream') this.converse = new ConverseStreamTranslator(target.model ?? '', this.includeUsage);
      this.bedrockErrorType = headers.get('x-amzn-errortype');
      const contentType = this.mode === 'bedrock-stream' ? 'text/event-stream' : 'application/json';
      return { phase: 'response_headers', headers: { set: [{ key: 'content-type', value: contentType }, ...extra], remove: ['content-length'] } };
    }
    if (isGenerateContent(target) && chat) {
      this.mode = status < 300 && eventStream ? 'gemini-stream' : 'gemini-json';
      if (this.mode === 'gemini-stream') this.gemini = new GeminiStreamTranslator(target.model ?? '', this.includeUsage);
      const contentType = this.mode === 'gemini-stream' ? 'text/event-stream' : 'application/json';
      return { phase: 'response_headers', headers: { set: [{ key: 'content-type', value: contentType }, ...extra], remove: ['content-length'] } };
    }
    if (target.provider === 'anthropic' && chat) {
      this.mode = status < 300 && eventStream ? 'anthropic-stream' : 'anthropic-json';
      if (this.mode === 'anthropic-stream') this.translator = new AnthropicStreamTranslator(this.includeUsage);
      const contentType = this.mode === 'anthropic-stream' ? 'text/event-stream' : 'application/json';
      return { phase: 'response_headers', headers: { set: [{ key: 'content-type', value: contentType }, ...extra], remove: ['content-length'] } };
    }
    if (status < 300) {
      this.mode = 'observe';
      this.usageReader = new OpenAIUsageReader(eventStream || this.clientStreaming);
    }
    return extra.length > 0 ? { phase: 'response_headers', headers: { set: extra } } : { phase: 'response_headers' };
  }

  /**
   * A refusal this pool hands on: the route retries an answer carrying ABANDONED_HEADER
   * (retriable-headers) on the next priority; when the pool names a later one, the request's
   * memory says so and the attempts before it are skipped (skipForFallback). The answer itself is
   * left as the provider gave it, so a client whose retries are spent still gets it.
   */
  private handOn(target: AttemptTarget, refusal: RefusalCause, extra: HeaderSet[]): RefusalCause | undefined {
    const level = target.fallbackLevels?.[refusal];
    const record = this.requestId === undefined ? undefined : this.ctx.memory.get(this.requestId);
    const budget = record?.routeRetries;
    if (level !== undefined && level > target.priority && budget !== undefined) {
      const left = budget.retries + 1 - this.attempt;
      const needed = (level - target.priority) * budget.perPriority;
      if (left < needed) {
        // The skips would spend the retries before the named pool: the client would get a stand-in
        // with no body. It gets this refusal, as the provider gave it, instead.
        this.ctx.logger.warn(
          { backend: target.backend, member: target.member, priority: target.priority, cause: refusal, fallbackPriority: level, retriesLeft: left, retriesNeeded: needed, requestId: this.requestId },
          'ai-extension: the pool the fallback names is beyond the route\'s retries; the refusal goes to the client (raise the route\'s retry attempts)',
        );
        return undefined;
      }
    }
    extra.push({ key: ABANDONED_HEADER, value: refusal });
    if (record !== undefined) {
      if (level !== undefined && level > target.priority) record.fallbackTo = { level, cause: refusal };
      else delete record.fallbackTo;
    }
    this.ctx.logger.info(
      { backend: target.backend, member: target.member, priority: target.priority, cause: refusal, ...(level !== undefined ? { fallbackPriority: level } : {}) },
      level !== undefined ? 'ai-extension: refusal handed to the pool the fallback names' : 'ai-extension: refusal handed to the next pool',
    );
    return refusal;
  }

  /** The answer to a drill request names the priority and member that gave it, and what failing over cost. */
  private answerDrill(target: AttemptTarget, status: number, extra: HeaderSet[]): void {
    const drill = this.drill;
    if (drill === undefined) return;
    const addedMs = this.drillAddedMs;
    const outcome = status < 300 ? 'answered' : 'error';
    extra.push({ key: DRILL_ANSWER_HEADER, value: drillAnswerHeader(target.priority, target.member, addedMs) });
    this.ctx.metrics.drillAnswers.inc({ backend: target.backend, priority: String(target.priority), member: target.member, outcome });
    this.ctx.logger.info({ backend: target.backend, member: target.member, priority: target.priority, drilledPriority: drill.priority, status, addedMs, drill: true, requestId: this.requestId }, 'ai-extension: drill request answered');
  }

  /**
   * No content token in time: the answer's headers become a 504 that the route's retry policy
   * retries (ABANDONED_HEADER) on the next priority; the client has received nothing yet.
   */
  private abandon(target: AttemptTarget): ProcessingResponse {
    this.fail('first_token_timeout');
    // Envoy counts the 504 against the member: so does the skip of a later request.
    memberVerdicts(this.ctx).note(target.backend, target.member, true);
    this.mode = 'abandoned';
    this.status = 504;
    this.ctx.logger.warn(
      { backend: target.backend, member: target.member, priority: target.priority, firstTokenTimeoutMs: target.firstTokenTimeoutMs, waitedMs: Math.round(performance.now() - this.attemptStartedAt), cause: 'first_token_timeout' },
      'ai-extension: no content token within firstTokenTimeout; attempt abandoned',
    );
    return {
      phase: 'response_headers',
      headers: {
        set: [
          { key: ':status', value: '504' },
          { key: ABANDONED_HEADER, value: 'first_token_timeout' },
        ],
        remove: ['content-length'],
      },
    };
  }

  private responseBody(bytes: Uint8Array, end: boolean): ProcessingResponse {
    if (this.mode === 'abandoned') return this.abandonedBody();
    const response = this.adaptResponseBody(bytes, end);
    this.observeAnswer(bytes.length > 0, end);
    return response;
  }

  /** Time to first token on the first bytes of a success; duration and the span at the end. */
  private observeAnswer(hasBytes: boolean, end: boolean): void {
    const labels = this.labels;
    if (labels === undefined) return;
    const now = performance.now();
    if (hasBytes && !this.firstByteSeen && (this.status ?? 0) < 300) {
      this.firstByteSeen = true;
      const seconds = (now - this.attemptStartedAt) / 1000;
      this.later(() => this.ctx.metrics.timeToFirstToken.observe(labels, seconds));
    }
    if (!end) return;
    const seconds = (now - this.requestStartedAt) / 1000;
    this.later(() => {
      this.ctx.metrics.requestDuration.observe(labels, seconds);
      // After the answer's usage was read (also deferred, queued before this).
      const model = this.usageReader?.model;
      if (model !== undefined) this.span?.responseModel(model);
      this.span?.end();
    });
  }

  private adaptResponseBody(bytes: Uint8Array, end: boolean): ProcessingResponse {
    if (this.mode === 'bedrock-stream') {
      // Binary framing: never through the UTF-8 decoder.
      const translator = this.converse;
      if (translator === undefined) return { phase: 'response_body' };
      const out = translator.push(bytes) + (end ? translator.end() : '');
      if (end) this.countTokens(translator.tokens);
      return { phase: 'response_body', body: out === '' ? { clear: true } : { body: Buffer.from(out) } };
    }
    const text = this.decoder.write(asBuffer(bytes)) + (end ? this.decoder.end() : '');
    switch (this.mode) {
      case 'anthropic-stream': {
        const translator = this.translator;
        if (translator === undefined) return { phase: 'response_body' };
        const out = translator.push(text) + (end ? translator.end() : '');
        if (end) this.countTokens(translator.tokens);
        return { phase: 'response_body', body: out === '' ? { clear: true } : { body: Buffer.from(out) } };
      }
      case 'anthropic-json': {
        this.json += text;
        if (!end) return { phase: 'response_body', body: { clear: true } };
        const parsed = parseObject(this.json);
        const status = this.status ?? 0;
        if (status < 300 && parsed !== undefined) {
          const { completion, usage } = fromAnthropicResponse(parsed);
          this.countTokens(usage);
          const model = completion['model'];
          if (typeof model === 'string' && model !== '') this.span?.responseModel(model);
          return { phase: 'response_body', body: { body: Buffer.from(JSON.stringify(completion)) } };
        }
        return { phase: 'response_body', body: { body: Buffer.from(JSON.stringify(toOpenAIError(parsed, status))) } };
      }
      case 'gemini-stream': {
        const translator = this.gemini;
        if (translator === undefined) return { phase: 'response_body' };
        const out = translator.push(text) + (end ? translator.end() : '');
        if (end) this.countTokens(translator.tokens);
        return { phase: 'response_body', body: out === '' ? { clear: true } : { body: Buffer.from(out) } };
      }
      case 'gemini-json': {
        this.json += text;
        if (!end) return { phase: 'response_body', body: { clear: true } };
        const status = this.status ?? 0;
        const parsed = parseObject(this.json);
        if (status < 300 && parsed !== undefined) {
          const { completion, usage } = fromGenerateContentResponse(parsed, this.target?.model ?? '');
          this.countTokens(usage);
          return { phase: 'response_body', body: { body: Buffer.from(JSON.stringify(completion)) } };
        }
        let body: unknown;
        try {
          body = JSON.parse(this.json) as unknown;
        } catch {
          body = undefined;
        }
        return { phase: 'response_body', body: { body: Buffer.from(JSON.stringify(geminiErrorToOpenAI(body, status))) } };
      }
      case 'bedrock-json': {
        this.json += text;
        if (!end) return { phase: 'response_body', body: { clear: true } };
        const parsed = parseObject(this.json);
        const status = this.status ?? 0;
        if (status < 300 && parsed !== undefined) {
          const { completion, usage } = fromConverseResponse(parsed, this.target?.model ?? '');
          this.countTokens(usage);
          this.span?.responseModel(this.target?.model ?? '');
          return { phase: 'response_body', body: { body: Buffer.from(JSON.stringify(completion)) } };
        }
        return { phase: 'response_body', body: { body: Buffer.from(JSON.stringify(bedrockErrorToOpenAI(parsed, this.bedrockErrorType, status))) } };
      }
      case 'observe':
        // The answer goes on as it is: reading its usage can wait until the answer has left.
        this.later(() => {
          this.usageReader?.push(text);
          if (!end) return;
          const usage = this.usageReader?.end();
          if (usage) this.countTokens(usage);
        });
        return { phase: 'response_body' };
      default:
        return { phase: 'response_body' };
    }
  }

  /**
   * A body chunk after the abandoned headers means Envoy did not retry (no attempt or retry budget
   * left) and the 504's headers went to the client. The stream is ended at once (an immediate
   * response now resets it), never left open on a provider that says nothing. A complete error
   * body would be nicer, but the client would reuse its connection while Envoy still held the
   * stream, and its next request would be reset (seen with the official client).
   */
  private abandonedBody(): ProcessingResponse {
    return this.refuse(504, 'first token deadline passed');
  }

  private countTokens(usage: Usage): void {
    this.later(() => this.countTokensNow(usage));
  }

  private countTokensNow(usage: Usage): void {
    const t = this.target;
    if (t === undefined) return;
    if (usage.input > 0) this.ctx.metrics.tokens.inc({ backend: t.backend, member: t.member, direction: 'in' }, usage.input);
    if (usage.output > 0) this.ctx.metrics.tokens.inc({ backend: t.backend, member: t.member, direction: 'out' }, usage.output);
    if (this.labels !== undefined) {
      this.ctx.metrics.requestTokens.observe({ ...this.labels, type: 'input' }, usage.input);
      this.ctx.metrics.requestTokens.observe({ ...this.labels, type: 'output' }, usage.output);
    }
    this.span?.usage(usage.input, usage.output);
    if (t.limits !== undefined) this.ctx.limits?.spend(t.backend, t.member, t.limits, usage.input + usage.output);
  }
}

/** ROUTE_RETRIES_HEADER: "<num_retries>/<attempts per priority>"; anything else is ignored. */
function parseRouteRetries(value: string | undefined): { retries: number; perPriority: number } | undefined {
  const m = value === undefined ? null : /^(\d{1,4})\/(\d{1,4})$/.exec(value);
  if (m === null) return undefined;
  return { retries: Number(m[1]), perPriority: Math.max(1, Number(m[2])) };
}
