import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

/**
 * How the provider treats the next requests. `status` and `ratelimit` answer with an OpenAI-style
 * error body; `reset` drops the connection after reading the request; `refuse` stops listening
 * (connection refused) and closes open connections; `stall` keeps requests waiting until the mode
 * changes (they are then served by the new mode) or the client goes away; `silent` answers 200 at
 * once but then sends only keep-alives (SSE comments and a role-only chunk for a streamed request,
 * blank lines for a JSON one, every `keepAliveMs`, default 250) and never any content, until the
 * client goes away: the provider that hangs after its headers; `refusal` answers 400 the way the
 * vendor refuses a request over its context window or its content policy (or an ordinary 400);
 * `filtered` answers 200 and refuses under the content policy before any content, as the vendor
 * does in a successful answer (OpenAI and Azure OpenAI: finish_reason content_filter and no
 * content; Anthropic: stop_reason refusal), streamed when the request streams; with
 * `afterContent` (OpenAI shapes, streamed) the filter stops a stream that has begun.
 */
export type FakeProviderMode =
  | { kind: 'ok' }
  | { kind: 'status'; status: number; message?: string }
  | { kind: 'ratelimit'; retryAfterSeconds?: number }
  | { kind: 'reset' }
  | { kind: 'refuse' }
  | { kind: 'stall' }
  | { kind: 'silent'; keepAliveMs?: number }
  | { kind: 'refusal'; refusal: FakeRefusal; api?: FakeVendor['api'] }
  | { kind: 'filtered'; api?: FakeVendor['api']; afterContent?: boolean };

/**
 * A 400 as the vendor (the fake's own, else `api`, else OpenAI) words it: the request is over the
 * model's context window, refused by its content policy, or otherwise invalid.
 */
export type FakeRefusal = 'context_length' | 'content_policy' | 'invalid';

export type FakeProviderModeKind = FakeProviderMode['kind'];

/** What happened to a request; `stall` is kept for a stalled request even once it is released. */
export type FakeProviderOutcome = Exclude<FakeProviderModeKind, 'refuse'>;

export interface ReceivedRequest {
  /** Milliseconds since the epoch when the request's headers arrived. */
  time: number;
  method: string;
  /** Path with query string, as sent. */
  path: string;
  host: string | undefined;
  /** Lower-cased names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  rawBody: string;
  /** The body parsed as JSON, or undefined when it is empty or not JSON. */
  body: unknown;
  outcome: FakeProviderOutcome;
  /** Why the vendor's checks refused the request (wrong path, key, header or body shape); answered 400/401/404. */
  rejected?: string;
}

/**
 * Makes the fake check each request as that vendor's API would (path and query, credential header,
 * headers of other vendors, body shape) and answer in that vendor's format.
 */
export interface FakeVendor {
  api: 'openai' | 'azureopenai' | 'anthropic';
  /** The keys accepted (several while a key is being rotated), in the vendor's own header. */
  key: string | readonly string[];
  /** azureopenai: the deployment in the path. */
  deployment?: string;
  /** azureopenai: the api-version query parameter. */
  apiVersion?: string;
}

export interface FakeProviderOptions {
  /** Named in every answer (`answered by <name>`, header `x-fake-provider`). */
  name: string;
  /** 0 or absent: the kernel picks one; the port is kept across `refuse` → `ok`. */
  port?: number;
  host?: string;
  /** Plain HTTP unless a certificate is given (see fake-tls.ts). */
  tls?: false | { cert: string; key: string };
  mode?: FakeProviderMode | FakeProviderModeKind;
  vendor?: FakeVendor;
  /** Streamed answers write one event every this many milliseconds (default: all at once). */
  streamIntervalMs?: number;
}

export interface FakeProvider {
  readonly name: string;
  readonly port: number;
  readonly host: string;
  /** e.g. `http://127.0.0.1:4711`, no trailing slash. */
  readonly url: string;
  mode(): FakeProviderMode;
  /** Resolves once the change is in effect (for `refuse`/`ok`, once the port is closed/open again). */
  setMode(mode: FakeProviderMode | FakeProviderModeKind): Promise<void>;
  received(): readonly ReceivedRequest[];
  counts(): Record<FakeProviderOutcome, number>;
  /** Requests currently held by `stall`. */
  stalled(): number;
  /** Forgets recorded requests and zeroes the counters. */
  clear(): void;
  close(): Promise<void>;
}

const DEFAULTS: Record<FakeProviderModeKind, FakeProviderMode> = {
  ok: { kind: 'ok' },
  status: { kind: 'status', status: 503 },
  ratelimit: { kind: 'ratelimit', retryAfterSeconds: 1 },
  reset: { kind: 'reset' },
  refuse: { kind: 'refuse' },
  stall: { kind: 'stall' },
  silent: { kind: 'silent' },
  refusal: { kind: 'refusal', refusal: 'context_length' },
  filtered: { kind: 'filtered' },
};

function normalize(mode: FakeProviderMode | FakeProviderModeKind): FakeProviderMode {
  return typeof mode === 'string' ? DEFAULTS[mode] : mode;
}

interface Pending {
  record: ReceivedRequest;
  req: IncomingMessage;
  res: ServerResponse;
}

export async function startFakeProvider(opts: FakeProviderOptions): Promise<FakeProvider> {
  const { name } = opts;
  const host = opts.host ?? '127.0.0.1';
  let current = normalize(opts.mode ?? 'ok');
  let records: ReceivedRequest[] = [];
  let counts = zeroCounts();
  let sequence = 0;
  const stalled = new Set<Pending>();

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    const time = Date.now();
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const record: ReceivedRequest = {
        time,
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        host: req.headers.host,
        headers: flattenHeaders(req),
        rawBody,
        body: parseJson(rawBody),
        outcome: outcomeOf(current),
      };
      records.push(record);
      counts[record.outcome]++;
      const refusal = opts.vendor ? vendorRefusal(opts.vendor, record) : undefined;
      if (refusal && opts.vendor) {
        record.rejected = refusal.message;
        sendJson(res, refusal.status, vendorError(opts.vendor.api, refusal.message, refusal.status));
        return;
      }
      dispatch({ record, req, res });
    });
  };
  const server: Server = opts.tls ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createServer(handler);
  // Envoy keeps upstream connections for an hour; Node's 5 s default would close them under
  // Envoy's feet and turn an idle gap into a spurious 503 "upstream connection termination".
  server.keepAliveTimeout = 300_000;
  server.headersTimeout = 310_000;
  server.requestTimeout = 0;

  function dispatch(p: Pending): void {
    const mode = current;
    switch (mode.kind) {
      case 'ok':
        answerOk(p);
        return;
      case 'status': {
        const message = mode.message ?? `${name} is failing with ${mode.status}`;
        sendJson(p.res, mode.status, opts.vendor ? vendorError(opts.vendor.api, message, mode.status) : errorBody(message, 'server_error', null));
        return;
      }
      case 'ratelimit': {
        const seconds = mode.retryAfterSeconds ?? 1;
        sendJson(p.res, 429, errorBody(`Rate limit reached for ${name}`, 'requests', 'rate_limit_exceeded'), {
          'retry-after': String(seconds),
          'x-ratelimit-reset-requests': `${seconds}s`,
          'x-ratelimit-remaining-requests': '0',
        });
        return;
      }
      case 'reset':
      case 'refuse':
        // RST, not FIN: what a crashing provider or a dropped NAT entry looks like to Envoy.
        p.req.socket.resetAndDestroy();
        return;
      case 'stall':
        stalled.add(p);
        p.res.once('close', () => stalled.delete(p));
        return;
      case 'silent':
        answerSilently(p, mode.keepAliveMs ?? 250);
        return;
      case 'refusal':
        sendJson(p.res, 400, refusalBody(opts.vendor?.api ?? mode.api ?? 'openai', mode.refusal), { 'x-fake-provider': name });
        return;
      case 'filtered':
        answerFiltered(p, opts.vendor?.api ?? mode.api ?? 'openai', mode.afterContent === true);
        return;
    }
  }

  /** A 200 whose answer is a content-policy refusal, in the vendor's shape (see FakeProviderMode). */
  function answerFiltered({ record, res }: Pending, api: FakeVendor['api'], afterContent: boolean): void {
    const body = isRecord(record.body) ? record.body : {};
    const model = typeof body['model'] === 'string' ? body['model'] : name;
    const streamed = body['stream'] === true;
    const created = Math.floor(record.time / 1000);
    if (api === 'anthropic') {
      const id = `msg_${name}_${++sequence}`;
      const usage = { input_tokens: 12, output_tokens: 0 };
      const stopDetails = { type: 'refusal', category: 'cyber', explanation: 'This request was declined because it could enable cyber harm.' };
      if (!streamed) {
        sendJson(res, 200, { id, type: 'message', role: 'assistant', model, content: [], stop_reason: 'refusal', stop_details: stopDetails, stop_sequence: null, usage });
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-fake-provider': name });
      const event = (type: string, data: object): string => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
      writeEvents(res, [
        event('message_start', { message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage } }),
        event('ping', {}),
        event('message_delta', { delta: { stop_reason: 'refusal', stop_sequence: null, stop_details: stopDetails }, usage: { output_tokens: 0 } }),
        event('message_stop', {}),
      ]);
      return;
    }
    const id = `chatcmpl-${name}-${++sequence}`;
    // Azure says which filter refused, per choice (and, first in a stream, for the prompt).
    const filterResults = api === 'azureopenai' ? { content_filter_results: { hate: { filtered: false, severity: 'safe' }, violence: { filtered: true, severity: 'high' } } } : {};
    if (!streamed) {
      sendJson(res, 200, {
        id, object: 'chat.completion', created, model, system_fingerprint: null,
        choices: [{ index: 0, message: { role: 'assistant', content: null, refusal: null }, logprobs: null, finish_reason: 'content_filter', ...filterResults }],
        usage: usageFor(record.rawBody, ''),
      });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-fake-provider': name });
    const chunk = (choices: object[], extra: object = {}): string => `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: null, choices, ...extra })}\n\n`;
    writeEvents(res, [
      ...(api === 'azureopenai' ? [chunk([], { prompt_filter_results: [{ prompt_index: 0, content_filter_results: { hate: { filtered: false, severity: 'safe' } } }] })] : []),
      chunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }]),
      ...(afterContent ? [chunk([{ index: 0, delta: { content: `begun by ${name}` }, logprobs: null, finish_reason: null }])] : []),
      chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'content_filter', ...filterResults }]),
      'data: [DONE]\n\n',
    ]);
  }

  function answerSilently({ record, res }: Pending, keepAliveMs: number): void {
    const body = isRecord(record.body) ? record.body : {};
    const streamed = body['stream'] === true;
    const anthropic = opts.vendor?.api === 'anthropic';
    res.writeHead(200, { 'content-type': streamed ? 'text/event-stream' : 'application/json', 'cache-control': 'no-cache', 'x-fake-provider': name });
    if (streamed) {
      const model = typeof body['model'] === 'string' ? body['model'] : name;
      res.write(': keep-alive\n\n');
      res.write(anthropic
        ? `event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { id: `msg_${name}_${++sequence}`, type: 'message', role: 'assistant', model, content: [], stop_reason: null, usage: { input_tokens: 1, output_tokens: 0 } } })}\n\n`
        : `data: ${JSON.stringify({ id: `chatcmpl-${name}-${++sequence}`, object: 'chat.completion.chunk', created: Math.floor(record.time / 1000), model, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] })}\n\n`);
    }
    const timer = setInterval(() => res.write(streamed ? (anthropic ? 'event: ping\ndata: {"type": "ping"}\n\n' : ': keep-alive\n\n') : '\n'), keepAliveMs);
    res.once('close', () => clearInterval(timer));
  }

  function answerOk({ record, res }: Pending): void {
    if (opts.vendor?.api === 'anthropic') {
      answerAnthropic(record, res);
      return;
    }
    const id = `chatcmpl-${name}-${++sequence}`;
    const created = Math.floor(record.time / 1000);
    const body = isRecord(record.body) ? record.body : {};
    const model = typeof body['model'] === 'string' ? body['model'] : name;
    const content = `answered by ${name}`;
    if (body['stream'] === true) {
      const options = body['stream_options'];
      const includeUsage = isRecord(options) && options['include_usage'] === true;
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        'x-fake-provider': name,
      });
      const chunk = (delta: object, finish: string | null, usage?: object): string =>
        `data: ${JSON.stringify({
          id,
          object: 'chat.completion.chunk',
          created,
          model,
          system_fingerprint: null,
          choices: usage === undefined ? [{ index: 0, delta, logprobs: null, finish_reason: finish }] : [],
          ...(usage === undefined ? {} : { usage }),
        })}\n\n`;
      const words = content.split(' ');
      const events = [chunk({ role: 'assistant', content: '', refusal: null }, null)];
      words.forEach((w, i) => events.push(chunk({ content: i === 0 ? w : ` ${w}` }, null)));
      events.push(chunk({}, 'stop'));
      if (includeUsage) events.push(chunk({}, null, usageFor(record.rawBody, content)));
      events.push('data: [DONE]\n\n');
      writeEvents(res, events);
      return;
    }
    sendJson(
      res,
      200,
      {
        id,
        object: 'chat.completion',
        created,
        model,
        system_fingerprint: null,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content, refusal: null },
            logprobs: null,
            finish_reason: 'stop',
          },
        ],
        usage: usageFor(record.rawBody, content),
      },
      { 'x-fake-provider': name },
    );
  }

  /** Anthropic's Messages API: a message, or its SSE events (written one by one with streamIntervalMs). */
  function answerAnthropic(record: ReceivedRequest, res: ServerResponse): void {
    const body = isRecord(record.body) ? record.body : {};
    const model = typeof body['model'] === 'string' ? body['model'] : name;
    const id = `msg_${name}_${++sequence}`;
    const words = `answered by ${name}`.split(' ');
    const usage = usageFor(record.rawBody, words.join(' ')) as { prompt_tokens: number; completion_tokens: number };
    if (body['stream'] !== true) {
      sendJson(res, 200, {
        id, type: 'message', role: 'assistant', model,
        content: [{ type: 'text', text: words.join(' ') }],
        stop_reason: 'end_turn', stop_sequence: null,
        usage: { input_tokens: usage.prompt_tokens, output_tokens: usage.completion_tokens },
      });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-fake-provider': name });
    const event = (type: string, data: object): string => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    const events = [
      event('message_start', {
        message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: usage.prompt_tokens, output_tokens: 1 } },
      }),
      event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      event('ping', {}),
      ...words.map((w, i) => event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: i === 0 ? w : ` ${w}` } })),
      event('content_block_stop', { index: 0 }),
      event('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: usage.completion_tokens } }),
      event('message_stop', {}),
    ];
    writeEvents(res, events);
  }

  function writeEvents(res: ServerResponse, events: string[]): void {
    writePaced(res, events, opts.streamIntervalMs ?? 0);
  }

  function sendJson(res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      'x-fake-provider': name,
      ...headers,
    });
    res.end(text);
  }

  async function listen(port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return (server.address() as AddressInfo).port;
  }

  async function stopListening(): Promise<void> {
    if (!server.listening) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Envoy pools connections: without this its next request would still reach us.
    for (const p of stalled) p.req.socket.resetAndDestroy();
    server.closeAllConnections();
    await closed;
  }

  const port = await listen(opts.port ?? 0);
  const url = `${opts.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;

  return {
    name,
    port,
    host,
    url,
    mode: () => current,
    setMode: async (next) => {
      current = normalize(next);
      if (current.kind === 'refuse') {
        await stopListening();
        return;
      }
      if (!server.listening) await listen(port);
      const released = [...stalled];
      stalled.clear();
      for (const p of released) if (!p.res.destroyed) dispatch(p);
    },
    received: () => records,
    counts: () => ({ ...counts }),
    stalled: () => stalled.size,
    clear: () => {
      records = [];
      counts = zeroCounts();
    },
    close: async () => {
      current = DEFAULTS.refuse;
      await stopListening();
    },
  };
}

function zeroCounts(): Record<FakeProviderOutcome, number> {
  return { ok: 0, status: 0, ratelimit: 0, reset: 0, stall: 0, silent: 0, refusal: 0, filtered: 0 };
}

function outcomeOf(mode: FakeProviderMode): FakeProviderOutcome {
  // A request can only arrive in `refuse` on a connection accepted just before the switch.
  return mode.kind === 'refuse' ? 'reset' : mode.kind;
}

/** Every header some vendor reads a key from: a request for one vendor must carry none of the others'. */
const CREDENTIAL_HEADERS: Record<FakeVendor['api'], string> = { openai: 'authorization', azureopenai: 'api-key', anthropic: 'x-api-key' };

/** What the real vendor would refuse in this request, or undefined when it is well-formed. */
function vendorRefusal(v: FakeVendor, r: ReceivedRequest): { status: number; message: string } | undefined {
  const expectedPath =
    v.api === 'openai' ? '/v1/chat/completions'
    : v.api === 'anthropic' ? '/v1/messages'
    : `/openai/deployments/${v.deployment ?? ''}/chat/completions?api-version=${v.apiVersion ?? ''}`;
  if (r.path !== expectedPath) return { status: 404, message: `${v.api}: no such endpoint ${r.method} ${r.path} (expected ${expectedPath})` };
  const header = CREDENTIAL_HEADERS[v.api];
  const keys = typeof v.key === 'string' ? [v.key] : v.key;
  const accepted = keys.map((k) => (v.api === 'openai' ? `Bearer ${k}` : k));
  if (!accepted.includes(r.headers[header] ?? '')) return { status: 401, message: `${v.api}: wrong or missing ${header} (got ${r.headers[header] === undefined ? 'none' : 'another key'})` };
  for (const [api, other] of Object.entries(CREDENTIAL_HEADERS)) {
    if (api !== v.api && other !== header && r.headers[other] !== undefined) return { status: 400, message: `${v.api}: unexpected ${other} header (a credential for ${api})` };
  }
  if (v.api === 'anthropic' && r.headers['anthropic-version'] === undefined) return { status: 400, message: 'anthropic: anthropic-version header is required' };
  const body = isRecord(r.body) ? r.body : undefined;
  if (body === undefined) return { status: 400, message: `${v.api}: the body is not a JSON object` };
  const messages = Array.isArray(body['messages']) ? body['messages'] : undefined;
  if (messages === undefined || messages.length === 0) return { status: 400, message: `${v.api}: messages must be a non-empty array` };
  if (v.api === 'openai' && typeof body['model'] !== 'string') return { status: 400, message: 'openai: model is required' };
  if (v.api === 'anthropic') {
    if (typeof body['model'] !== 'string') return { status: 400, message: 'anthropic: model is required' };
    if (typeof body['max_tokens'] !== 'number') return { status: 400, message: 'anthropic: max_tokens is required' };
    if (body['system'] !== undefined && typeof body['system'] !== 'string' && !Array.isArray(body['system'])) return { status: 400, message: 'anthropic: system must be a string or blocks' };
    for (const m of messages) {
      if (!isRecord(m) || (m['role'] !== 'user' && m['role'] !== 'assistant')) return { status: 400, message: 'anthropic: message roles are user and assistant (system goes to the system field)' };
    }
  }
  return undefined;
}

function vendorError(api: FakeVendor['api'], message: string, status: number): object {
  if (api === 'anthropic') {
    const type = status === 401 ? 'authentication_error' : status === 404 ? 'not_found_error' : status === 429 ? 'rate_limit_error' : status >= 500 ? 'api_error' : 'invalid_request_error';
    return { type: 'error', error: { type, message } };
  }
  return errorBody(message, status >= 500 ? 'server_error' : 'invalid_request_error', null);
}

/** The vendors' own words (from their API references and error reports) for these refusals. */
function refusalBody(api: FakeVendor['api'], refusal: FakeRefusal): object {
  if (api === 'anthropic') {
    const message = refusal === 'context_length' ? 'prompt is too long: 250001 tokens > 200000 maximum' : 'messages: text content blocks must be non-empty';
    return { type: 'error', error: { type: 'invalid_request_error', message } };
  }
  if (refusal === 'context_length') {
    return errorBody('This model\'s maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens. Please reduce the length of the messages.', 'invalid_request_error', 'context_length_exceeded', 'messages');
  }
  if (refusal === 'content_policy') {
    const message = 'The response was filtered due to the prompt triggering the content management policy. Please modify your prompt and retry.';
    if (api === 'azureopenai') {
      return { error: { message, type: null, param: 'prompt', code: 'content_filter', status: 400, innererror: { code: 'ResponsibleAIPolicyViolation', content_filter_result: { hate: { filtered: true, severity: 'high' } } } } };
    }
    return errorBody(message, 'invalid_request_error', 'content_filter', 'prompt');
  }
  return errorBody('Invalid value for \'temperature\': must be between 0 and 2.', 'invalid_request_error', 'invalid_value', 'temperature');
}

function errorBody(message: string, type: string, code: string | null, param: string | null = null): object {
  return { error: { message, type, param, code } };
}

function usageFor(requestBody: string, content: string): object {
  // Rough token counts: enough for clients that read usage, not a tokenizer.
  const prompt = Math.max(1, Math.ceil(requestBody.length / 4));
  const completion = content.split(' ').length;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/**
 * A streamed answer written one event every `intervalMs` (how a model's tokens arrive), or all
 * at once when the interval is 0; a client that went away stops the writes.
 */
export function writePaced(res: ServerResponse, events: readonly string[], intervalMs: number): void {
  if (intervalMs <= 0) {
    res.end(events.join(''));
    return;
  }
  let i = 0;
  const next = (): void => {
    if (res.destroyed) return;
    const e = events[i++];
    if (e === undefined) {
      res.end();
      return;
    }
    res.write(e);
    setTimeout(next, intervalMs);
  };
  next();
}

/** A request's headers as one string each (repeated ones joined with ", "), as the fakes record them. */
export function flattenHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined) out[key] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

/** The body as JSON, or undefined when it is empty or not JSON (a fake records what it got either way). */
export function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
