import { createHash, createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32 } from 'node:zlib';
import { flattenHeaders, parseJson } from '../../examples/demo/fake-provider.js';

/**
 * A fake AWS Bedrock runtime that checks what Bedrock checks: the SigV4 signature (recomputed
 * here from the request as received, with code of its own, not the extension's), the access key,
 * region, service and clock skew, the session token, the Converse path of the model, and the
 * body's Converse shape; and no other vendor's credential. It answers Converse JSON, or
 * converse-stream's binary event stream, one event every `streamIntervalMs`.
 */

export interface FakeBedrockOptions {
  name: string;
  region: string;
  model: string;
  accessKey: string;
  secretKey: string;
  sessionToken?: string;
  streamIntervalMs?: number;
}

export interface BedrockRequest {
  path: string;
  host: string | undefined;
  headers: Record<string, string>;
  body: unknown;
  /** Why Bedrock would refuse it, if it would. */
  rejected?: string;
}

/**
 * `filtered`: a 200 whose answer Bedrock stopped under its content filters or a guardrail
 * (stopReason content_filtered or guardrail_intervened), with no content; streamed, messageStart
 * then messageStop with that stopReason.
 */
export type FakeBedrockMode = { kind: 'ok' } | { kind: 'status'; status: number } | { kind: 'filtered'; stopReason: 'content_filtered' | 'guardrail_intervened' } | GatedStream;

/**
 * A streamed answer that stops after its first `events` messages until `release` settles, then
 * goes on at the fake's pace: what the client holds before the release was sent on before
 * Bedrock sent the rest.
 */
export interface GatedStream {
  kind: 'gated';
  events: number;
  release: Promise<void>;
}

export interface FakeBedrock {
  readonly host: string;
  readonly port: number;
  readonly hostname: string;
  received(): readonly BedrockRequest[];
  setMode(mode: FakeBedrockMode): void;
  clear(): void;
  close(): Promise<void>;
}

const OTHER_VENDOR_HEADERS = ['api-key', 'x-api-key', 'x-goog-api-key', 'anthropic-version'];

export async function startFakeBedrock(o: FakeBedrockOptions): Promise<FakeBedrock> {
  const hostname = `bedrock-runtime.${o.region}.amazonaws.com`;
  let mode: FakeBedrockMode = { kind: 'ok' };
  let records: BedrockRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const record: BedrockRequest = { path: req.url ?? '/', host: req.headers.host, headers: flattenHeaders(req), body: parseJson(raw.toString('utf8')) };
      records.push(record);
      const refusal = check(o, hostname, req, record, raw);
      if (refusal !== undefined) {
        record.rejected = refusal.message;
        sendError(res, refusal.status, refusal.type, refusal.message);
        return;
      }
      if (mode.kind === 'status') {
        const type = mode.status === 429 ? 'ThrottlingException' : mode.status < 500 ? 'ValidationException' : 'ServiceUnavailableException';
        sendError(res, mode.status, type, `${o.name} is failing with ${mode.status}`);
        return;
      }
      answer(o, record, res, mode.kind === 'filtered' ? mode.stopReason : undefined, mode.kind === 'gated' ? mode : undefined);
    });
  });
  server.keepAliveTimeout = 300_000;
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1' }, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    hostname,
    received: () => records,
    setMode: (m) => (mode = m),
    clear: () => (records = []),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface Refusal {
  status: number;
  type: string;
  message: string;
}

function check(o: FakeBedrockOptions, hostname: string, req: IncomingMessage, r: BedrockRequest, raw: Buffer): Refusal | undefined {
  const model = encodeURIComponent(o.model);
  const paths = [`/model/${model}/converse`, `/model/${model}/converse-stream`];
  if (req.method !== 'POST' || !paths.includes(r.path)) return { status: 404, type: 'UnknownOperationException', message: `no such operation ${req.method} ${r.path}` };
  if (r.host !== hostname) return { status: 403, type: 'InvalidSignatureException', message: `Host is ${r.host ?? 'missing'}, expected ${hostname}` };
  for (const h of OTHER_VENDOR_HEADERS) if (r.headers[h] !== undefined) return { status: 400, type: 'ValidationException', message: `unexpected ${h} header (another vendor's)` };
  const signature = verifySignature(o, req, r, raw);
  if (signature !== undefined) return { status: 403, type: signature.type, message: signature.message };
  const body = r.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { status: 400, type: 'ValidationException', message: 'the body is not a JSON object' };
  const b = body as Record<string, unknown>;
  for (const field of ['model', 'stream', 'max_tokens', 'stream_options']) {
    if (b[field] !== undefined) return { status: 400, type: 'ValidationException', message: `Malformed input request: extraneous key [${field}] is not permitted` };
  }
  const messages = b['messages'];
  if (!Array.isArray(messages) || messages.length === 0) return { status: 400, type: 'ValidationException', message: 'messages must be a non-empty list' };
  let previous = '';
  for (const m of messages as unknown[]) {
    const msg = m as Record<string, unknown>;
    if (msg['role'] !== 'user' && msg['role'] !== 'assistant') return { status: 400, type: 'ValidationException', message: 'message roles are user and assistant' };
    if (msg['role'] === previous) return { status: 400, type: 'ValidationException', message: 'A conversation must alternate between user and assistant roles' };
    previous = msg['role'];
    if (!Array.isArray(msg['content']) || msg['content'].length === 0) return { status: 400, type: 'ValidationException', message: 'message content must be a non-empty list of blocks' };
  }
  if (b['system'] !== undefined && !Array.isArray(b['system'])) return { status: 400, type: 'ValidationException', message: 'system must be a list of blocks' };
  return undefined;
}

/** SigV4 as AWS documents it, written apart from the extension's signer so that one cannot vouch for itself. */
function verifySignature(o: FakeBedrockOptions, req: IncomingMessage, r: BedrockRequest, raw: Buffer): { type: string; message: string } | undefined {
  const auth = r.headers['authorization'] ?? '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return { type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' };
  const [, keyId, day, region, service, signedList, signature] = m as unknown as [string, string, string, string, string, string, string];
  if (keyId !== o.accessKey) return { type: 'UnrecognizedClientException', message: 'The security token included in the request is invalid.' };
  if (region !== o.region || service !== 'bedrock') return { type: 'InvalidSignatureException', message: `Credential should be scoped to a valid region and service bedrock, not ${region}/${service}` };
  const date = r.headers['x-amz-date'] ?? '';
  const when = Date.parse(date.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
  if (!Number.isFinite(when) || Math.abs(Date.now() - when) > 5 * 60_000 || !date.startsWith(day)) return { type: 'InvalidSignatureException', message: 'Signature expired or X-Amz-Date is invalid' };
  const signed = signedList.split(';');
  for (const required of ['host', 'x-amz-date', ...(o.sessionToken ? ['x-amz-security-token'] : [])]) {
    if (!signed.includes(required)) return { type: 'InvalidSignatureException', message: `'${required}' must be a signed header` };
  }
  if (o.sessionToken !== undefined && r.headers['x-amz-security-token'] !== o.sessionToken) return { type: 'UnrecognizedClientException', message: 'The security token included in the request is invalid.' };
  const encode = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const [path = '/', query = ''] = r.path.split('?');
  const canonical = [
    req.method ?? 'POST',
    path.split('/').map(encode).join('/'),
    query,
    signed.map((h) => `${h}:${(r.headers[h] ?? '').trim()}\n`).join(''),
    signedList,
    createHash('sha256').update(raw).digest('hex'),
  ].join('\n');
  const toSign = ['AWS4-HMAC-SHA256', date, `${day}/${region}/${service}/aws4_request`, createHash('sha256').update(canonical).digest('hex')].join('\n');
  let key = createHmac('sha256', `AWS4${o.secretKey}`).update(day).digest();
  for (const part of [region, service, 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  const expected = createHmac('sha256', key).update(toSign).digest('hex');
  if (expected !== signature) return { type: 'InvalidSignatureException', message: 'The request signature we calculated does not match the signature you provided.' };
  return undefined;
}

function answer(o: FakeBedrockOptions, r: BedrockRequest, res: ServerResponse, filtered?: string, gate?: GatedStream): void {
  const words = filtered === undefined ? `answered by ${o.name}`.split(' ') : [];
  const input = Math.max(1, Math.ceil(JSON.stringify(r.body).length / 4));
  const usage = { inputTokens: input, outputTokens: words.length, totalTokens: input + words.length };
  if (!r.path.endsWith('/converse-stream')) {
    const content = filtered === undefined ? [{ text: words.join(' ') }] : [];
    const body = JSON.stringify({ output: { message: { role: 'assistant', content } }, stopReason: filtered ?? 'end_turn', usage, metrics: { latencyMs: 12 } });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-amzn-requestid': 'fake-1', 'x-fake-provider': o.name });
    res.end(body);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': 'fake-1', 'x-fake-provider': o.name });
  const events: Buffer[] = [
    eventMessage('messageStart', { role: 'assistant' }),
    ...words.map((w, i) => eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: i === 0 ? w : ` ${w}` } })),
    ...(filtered === undefined ? [eventMessage('contentBlockStop', { contentBlockIndex: 0 })] : []),
    eventMessage('messageStop', { stopReason: filtered ?? 'end_turn' }),
    eventMessage('metadata', { usage, metrics: { latencyMs: 12 } }),
  ];
  const interval = o.streamIntervalMs ?? 0;
  if (gate !== undefined) {
    for (const e of events.slice(0, gate.events)) res.write(e);
    void gate.release.then(() => {
      if (res.destroyed) return;
      for (const e of events.slice(gate.events)) res.write(e);
      res.end();
    });
    return;
  }
  if (interval <= 0) {
    res.end(Buffer.concat(events));
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
    // Split each message in two writes: the reader must join frames cut anywhere.
    const cut = Math.floor(e.length / 2);
    res.write(e.subarray(0, cut));
    res.write(e.subarray(cut));
    setTimeout(next, interval);
  };
  next();
}

/** One event-stream message: prelude, string headers, JSON payload, CRCs. */
export function eventMessage(eventType: string, payload: object, messageType = 'event'): Buffer {
  const headers = Buffer.concat(
    Object.entries({ ':event-type': eventType, ':content-type': 'application/json', ':message-type': messageType }).map(([name, value]) => {
      const n = Buffer.from(name);
      const v = Buffer.from(value);
      const out = Buffer.alloc(1 + n.length + 1 + 2 + v.length);
      out.writeUInt8(n.length, 0);
      n.copy(out, 1);
      out.writeUInt8(7, 1 + n.length);
      out.writeUInt16BE(v.length, 2 + n.length);
      v.copy(out, 4 + n.length);
      return out;
    }),
  );
  // Real Bedrock pads payloads with a "p" field; the reader must ignore it.
  const body = Buffer.from(JSON.stringify({ ...payload, p: 'abcdefgh' }));
  const total = 12 + headers.length + body.length + 4;
  const message = Buffer.alloc(total);
  message.writeUInt32BE(total, 0);
  message.writeUInt32BE(headers.length, 4);
  message.writeUInt32BE(crc32(message.subarray(0, 8)), 8);
  headers.copy(message, 12);
  body.copy(message, 12 + headers.length);
  message.writeUInt32BE(crc32(message.subarray(0, total - 4)), total - 4);
  return message;
}

function sendError(res: ServerResponse, status: number, type: string, message: string): void {
  const body = JSON.stringify({ message });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/` });
  res.end(body);
}
