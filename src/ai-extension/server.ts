import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { startHealthServer, type HealthServer } from '../observability/health.js';
import { CredentialStore, describeXdsTarget, type XdsTarget } from './credentials.js';
import { DrillNonces, DrillRejectionLog } from './drill.js';
import { WarmupOrders } from './warmup.js';
import { AttemptExchange, type ExchangeContext } from './exchange.js';
import { ServiceAccountTokens } from './vertex.js';
import { SERVICE_ACCOUNT_INDEX } from '../envoy/ai-extension.js';
import { METADATA_NAMESPACE } from '../envoy/names.js';
import { writeAttemptMember } from './ext-proc-codec.js';
import { createAiExtensionMetrics, type AiExtensionMetrics } from './metrics.js';
import { PROCESS_PATH, decodeProcessingRequest, encodeProcessingResponse, type ProcessingRequest } from './protocol.js';
import { HEALTH_CHECK_PATH, startMemberLimits, type LimitMetrics } from './limits-health.js';
import { GrpcStatus, startGrpcServer, type BidiCall, type GrpcMethod } from './grpc-server.js';
import { RequestMemory } from './request-memory.js';
import type { OtlpEndpoint } from '../envoy/tracing.js';
import { OtlpTraceExporter } from '../observability/otlp.js';

/** Envoy buffers request bodies up to the cluster's limit; larger messages end the attempt. */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** service.name of the extension's spans. */
export const AI_EXTENSION_SERVICE_NAME = 'switchyard-ai-extension';

export interface AiExtensionOptions {
  /** gRPC (ext_proc) port Envoy calls; 0 picks a free one. Unused with `socket`. */
  port: number;
  host?: string;
  /**
   * A Unix socket (its path must be free) Envoy calls instead of the TCP port: what `serve` uses
   * when it runs Envoy itself, in its private state directory, so only this user reaches it.
   */
  socket?: string;
  /** The controller's ADS server, for credentials; absent: call connect() once it is known. */
  xds?: XdsTarget;
  logger: Logger;
  /** Series go to this registry (the controller's, when both run in one process); else to their own. */
  registry?: Registry;
  /** Serve /metrics, /healthz and /readyz on this port (0: any free one); absent: not served here. */
  metricsPort?: number;
  metricsHost?: string;
  /** How long an attempt waits for a credential the controller has not sent yet. */
  credentialWaitMs?: number;
  nodeId?: string;
  /** OTLP/gRPC receiver for per-attempt spans; absent: tracing is off. */
  otlp?: OtlpEndpoint;
  /** redis://HOST:PORT where every extension shares member limit counts; absent: in this process. */
  limitsRedis?: string;
  /**
   * Key of the warm-up requests it honours (warmup.ts), shared with the serve that sends them;
   * absent: a fresh random one (see RunningAiExtension.warmupKey).
   */
  warmupKey?: string;
  /** More GET paths on the metrics port (the CLI's /envoy/drained: a pod's preStop waits there). */
  routes?: ReadonlyMap<string, () => Promise<{ status: number; body: string }>>;
}

export interface RunningAiExtension {
  /** The ext_proc TCP port; 0 when it listens on `socket`. */
  port: number;
  /** The Unix socket it listens on, when given one. */
  socket: string | undefined;
  metricsPort: number | undefined;
  metrics: AiExtensionMetrics;
  limitMetrics: LimitMetrics;
  credentials: CredentialStore;
  /** Present when tracing is on. */
  traces: OtlpTraceExporter | undefined;
  /** Signs serve's warm-up requests: never logged, never sent anywhere but inside those requests' header. */
  warmupKey: string;
  /** Starts fetching credentials from the controller's ADS server (when `xds` was not given). */
  connect(xds: XdsTarget): void;
  /** How long no attempt has been in progress, in ms; 0 while Envoy has one open. */
  idleForMs(now?: number): number;
  stop(): Promise<void>;
}

/**
 * `switchyard ai-extension`: the ext_proc gRPC service Envoy calls for every attempt on an AI
 * Backend (src/ai-extension/README.md), with credentials from the controller over ADS.
 */
export async function startAiExtension(opts: AiExtensionOptions): Promise<RunningAiExtension> {
  const log = opts.logger;
  const metrics = createAiExtensionMetrics(opts.registry);
  const credentials = new CredentialStore({
    nodeId: opts.nodeId ?? `ai-extension/${hostname()}/${process.pid}`,
    logger: log,
  });
  const traces = opts.otlp === undefined
    ? undefined
    : new OtlpTraceExporter({ endpoint: opts.otlp, service: { name: AI_EXTENSION_SERVICE_NAME, scope: 'switchyard.dev/ai-extension', version: '' }, logger: log });
  const limits = startMemberLimits({ registry: metrics.registry, logger: log, ...(opts.limitsRedis !== undefined ? { limitsRedis: opts.limitsRedis } : {}) });
  const vendorTokens = new ServiceAccountTokens({
    onRenewalFailure: (message) => log.warn({ error: message }, 'ai-extension: an access token could not be renewed; the one held serves until it expires, then attempts go to the next member'),
  });
  const ctx: ExchangeContext = {
    limits,
    credentials,
    memory: new RequestMemory(),
    metrics,
    credentialHeaders: new Set(),
    credentialWaitMs: opts.credentialWaitMs ?? 1_000,
    logger: log,
    vendorTokens,
    drill: { nonces: new DrillNonces(), rejections: new DrillRejectionLog() },
    warmup: new WarmupOrders(opts.warmupKey ?? randomBytes(32).toString('hex')),
    ...(traces !== undefined ? { spans: traces } : {}),
  };

  const activity = { open: 0, lastAt: Date.now() };
  const methods = new Map<string, GrpcMethod>([
    [PROCESS_PATH, {
      kind: 'bidi',
      handle: (call) => {
        activity.open++;
        call.onClose(() => {
          activity.open--;
          activity.lastAt = Date.now();
        });
        serveAttempt(call, ctx, call.header('traceparent'));
      },
    }],
    // Envoy health-checks each member with limits here (src/envoy/member-limits.ts).
    [HEALTH_CHECK_PATH, { kind: 'unary', handle: (_request, authority) => limits.checkHealth(authority) }],
  ]);
  const server = await startGrpcServer({
    listen: opts.socket !== undefined ? { socket: opts.socket } : { host: opts.host ?? '0.0.0.0', port: opts.port },
    methods,
    maxMessageBytes: MAX_MESSAGE_BYTES,
    onError: (err) => log.error({ err }, 'ai-extension: a gRPC call failed'),
    onConnectionError: (event) => log.warn(event, 'ai-extension: an HTTP/2 connection ended with an error'),
    onReceiveRefused: (event) =>
      log.warn(
        event,
        event.scope === 'reclaimed'
          ? "ai-extension: a stream's partial request message reclaimed (RESOURCE_EXHAUSTED): partial request messages across connections above the limit, this client holding the most"
          : 'ai-extension: a stream refused (RESOURCE_EXHAUSTED): partial request messages above their limit',
      ),
  });
  const port = server.port;
  warmServiceAccountTokens(credentials, vendorTokens, log);
  if (opts.xds) credentials.start(opts.xds);

  let health: HealthServer | undefined;
  if (opts.metricsPort !== undefined) {
    try {
      health = await startHealthServer({
        port: opts.metricsPort,
        host: opts.metricsHost ?? '0.0.0.0',
        registry: metrics.registry,
        ready: () => true,
        ...(opts.routes !== undefined ? { routes: opts.routes } : {}),
      });
    } catch (err) {
      await server.close();
      await credentials.stop();
      await traces?.stop();
      await limits.close();
      throw err;
    }
  }
  log.info({ ...(opts.socket !== undefined ? { socket: opts.socket } : { port }), xds: opts.xds ? describeXdsTarget(opts.xds) : 'later', metricsPort: health?.port, otlp: opts.otlp ? `${opts.otlp.host}:${opts.otlp.port}` : 'off' }, 'ai-extension: serving ext_proc');

  return {
    port,
    socket: opts.socket,
    metricsPort: health?.port,
    metrics,
    limitMetrics: limits.metrics,
    credentials,
    traces,
    warmupKey: ctx.warmup?.key ?? '',
    connect: (xds) => credentials.start(xds),
    idleForMs: (now = Date.now()) => (activity.open > 0 ? 0 : now - activity.lastAt),
    async stop() {
      vendorTokens.stop();
      await credentials.stop();
      // In-flight attempts end with an error Envoy maps to "AI extension unavailable".
      await server.close();
      // The spans of the last attempts still go out.
      await traces?.stop();
      await health?.close();
      await limits.close();
    },
  };
}

/** One ext_proc stream: messages are answered strictly in order, each after the previous one. */
function serveAttempt(call: BidiCall, ctx: ExchangeContext, traceparent: string | undefined): void {
  const exchange = new AttemptExchange(
    ctx,
    (r) => {
      call.write(encodeProcessingResponse(r));
    },
    traceparent,
    call.connection,
  );
  exchange.deferBookkeeping();
  let queue: Promise<void> = Promise.resolve();
  /** Messages received and not yet answered (the one being answered included). */
  let unanswered = 0;
  call.onMessage((bytes) => {
    let message: ProcessingRequest;
    try {
      message = decodeProcessingRequest(bytes);
    } catch (err) {
      call.end(GrpcStatus.INTERNAL, `not a ProcessingRequest: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    exchange.observe(message);
    unanswered++;
    queue = queue.then(async () => {
      const phase = phaseOf(message);
      const started = performance.now();
      try {
        const response = await exchange.handle(message);
        if (response.phase !== 'none') {
          const bytes = encodeProcessingResponse(response);
          const member = phase === 'request_headers' ? exchange.member : undefined;
          // Envoy's access log and request span name the member from this (src/envoy/access-log.ts).
          call.write(member === undefined ? bytes : Buffer.concat([bytes, writeAttemptMember(METADATA_NAMESPACE, member)]));
        }
        // The answer's end was the last message Envoy sends (its trailers are not asked for): the
        // status goes in the same write, so Envoy, which half-closes once it has the last answer
        // (EXT_PROC_GRACEFUL_CLOSE), finds the call over in that read instead of waking once more
        // for the status it waits for; the extension has nothing left to write after the half-close.
        if (endsAttempt(message) && response.phase !== 'none' && response.phase !== 'wait') call.end();
        // The request's last message answered: both of the phase's answers are written, and no
        // other message comes before the provider's answer. Sent now, not after the read.
        else if (endsRequest(message)) call.flush();
        // A chunk of a streamed answer (an SSE event, a Bedrock frame) with no message behind it:
        // the client waits for this one, and the next comes when the provider writes it. Left to
        // the immediate, it went a turn of the event loop later. A JSON answer's chunk is not sent
        // alone: its end is right behind it, and the end's answer sends both.
        else if (unanswered === 1 && message.response_body !== undefined && exchange.streamsAnswer) call.flush();
      } catch (err) {
        ctx.logger.error({ err }, 'ai-extension: failed to process an attempt');
        call.write(encodeProcessingResponse({ phase: 'immediate', status: 500, body: JSON.stringify({ error: { message: `Switchyard AI extension failed: ${err instanceof Error ? err.message : String(err)}`, type: 'ai_extension_error', param: null, code: 'ai_extension_error' } }) }));
      } finally {
        unanswered--;
        // Time spent holding an answer's headers for its first token is the provider's, not ours.
        const seconds = Math.max(0, performance.now() - started - exchange.takeHeldMs()) / 1000;
        exchange.later(() => ctx.metrics.processing.observe({ phase }, seconds));
      }
    });
  });
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    exchange.close();
  };
  // Envoy half-closes a stream (EXT_PROC_GRACEFUL_CLOSE) or resets it once it is done with it,
  // after the last answer or when it gives the attempt up: nothing waits for an answer any more.
  call.onHalfClose(() => {
    close();
    void queue.then(() => call.end());
  });
  call.onClose(close);
}

/** The last message of the request phase: the body's end, or the trailers that end it. */
function endsRequest(message: ProcessingRequest): boolean {
  return message.request_body?.end_of_stream === true || message.request_trailers !== undefined;
}

/** The last message of an attempt's stream: the end of the answer (response trailers are skipped). */
function endsAttempt(message: ProcessingRequest): boolean {
  return message.response_body?.end_of_stream === true || message.response_headers?.end_of_stream === true;
}

/** The phase label of a message (exactly one is set), without walking its keys. */
function phaseOf(message: ProcessingRequest): string {
  if (message.request_headers) return 'request_headers';
  if (message.request_body) return 'request_body';
  if (message.response_headers) return 'response_headers';
  if (message.response_body) return 'response_body';
  if (message.request_trailers) return 'request_trailers';
  if (message.response_trailers) return 'response_trailers';
  return 'unknown';
}

/**
 * Vertex AI access tokens fetched as soon as the configuration names their keys, not on a first
 * attempt's time: the controller lists every service-account credential (SERVICE_ACCOUNT_INDEX);
 * each listed key is subscribed to and its token kept fresh (a rotated key's at once).
 */
function warmServiceAccountTokens(credentials: CredentialStore, tokens: ServiceAccountTokens, log: Logger): void {
  const listed = new Set<string>();
  const keep = (name: string): void => {
    const value = credentials.get(name);
    if (value !== undefined) tokens.keep(name, value);
  };
  credentials.on('updated', (names) => {
    for (const name of names) {
      if (name === SERVICE_ACCOUNT_INDEX) {
        const now = new Set(parseIndex(credentials.get(name), log));
        // A key no Backend names any more is no longer renewed.
        for (const gone of [...listed].filter((n) => !now.has(n))) {
          listed.delete(gone);
          tokens.forget(gone);
        }
        for (const listedName of now) {
          if (listed.has(listedName)) continue;
          listed.add(listedName);
          // Subscribes; the key arrives as an 'updated' event of its own (below), or is here already.
          if (credentials.get(listedName) !== undefined) keep(listedName);
          else void credentials.resolve(listedName, 0);
        }
      } else if (listed.has(name) || tokens.keeps(name)) {
        keep(name);
      }
    }
  });
  void credentials.resolve(SERVICE_ACCOUNT_INDEX, 0);
}

function parseIndex(text: string | undefined, log: Logger): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text ?? '[]');
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || !parsed.every((n) => typeof n === 'string')) {
    log.warn({ credential: SERVICE_ACCOUNT_INDEX }, 'ai-extension: the list of service-account credentials is not a JSON array of names; tokens are fetched on first use');
    return [];
  }
  return parsed as string[];
}
