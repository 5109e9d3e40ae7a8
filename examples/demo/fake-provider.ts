import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * How the provider treats the next requests. `status` and `ratelimit` answer with an OpenAI-style
 * error body; `reset` drops the connection after reading the request; `refuse` stops listening
 * (connection refused) and closes open connections; `stall` keeps requests waiting until the mode
 * changes (they are then served by the new mode) or the client goes away.
 */
export type FakeProviderMode =
  | { kind: 'ok' }
  | { kind: 'status'; status: number; message?: string }
  | { kind: 'ratelimit'; retryAfterSeconds?: number }
  | { kind: 'reset' }
  | { kind: 'refuse' }
  | { kind: 'stall' };

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
}

export interface FakeProviderOptions {
  /** Named in every answer (`answered by <name>`, header `x-fake-provider`). */
  name: string;
  /** 0 or absent: the kernel picks one; the port is kept across `refuse` → `ok`. */
  port?: number;
  host?: string;
  /** Plain HTTP only for now; TLS providers arrive with per-member SNI tests. */
  tls?: false;
  mode?: FakeProviderMode | FakeProviderModeKind;
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

  const server: Server = createServer((req, res) => {
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
      dispatch({ record, req, res });
    });
  });
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
      case 'status':
        sendJson(p.res, mode.status, errorBody(mode.message ?? `${name} is failing with ${mode.status}`, 'server_error', null));
        return;
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
    }
  }

  function answerOk({ record, res }: Pending): void {
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
      let out = chunk({ role: 'assistant', content: '', refusal: null }, null);
      words.forEach((w, i) => (out += chunk({ content: i === 0 ? w : ` ${w}` }, null)));
      out += chunk({}, 'stop');
      if (includeUsage) out += chunk({}, null, usageFor(record.rawBody, content));
      out += 'data: [DONE]\n\n';
      res.end(out);
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
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;

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
  return { ok: 0, status: 0, ratelimit: 0, reset: 0, stall: 0 };
}

function outcomeOf(mode: FakeProviderMode): FakeProviderOutcome {
  // A request can only arrive in `refuse` on a connection accepted just before the switch.
  return mode.kind === 'refuse' ? 'reset' : mode.kind;
}

function errorBody(message: string, type: string, code: string | null): object {
  return { error: { message, type, param: null, code } };
}

function usageFor(requestBody: string, content: string): object {
  // Rough token counts: enough for clients that read usage, not a tokenizer.
  const prompt = Math.max(1, Math.ceil(requestBody.length / 4));
  const completion = content.split(' ').length;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function flattenHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined) out[key] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function parseJson(text: string): unknown {
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
