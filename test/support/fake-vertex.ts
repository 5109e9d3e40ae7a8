import { createVerify, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { flattenHeaders, parseJson, writePaced } from '../../examples/demo/fake-provider.js';

/**
 * A fake Google token endpoint and Vertex AI OpenAI-compatible endpoint in one server. The token
 * endpoint checks the JWT bearer grant as Google does (RS256 signature against the service
 * account's public key, iss, aud = the token URI, scope, iat/exp) and issues short-lived tokens;
 * the chat endpoint accepts only a token it issued and has not expired, on the project's path,
 * with Vertex's Host and a "publisher/model" model, and no other vendor's credential.
 */

export interface FakeVertexOptions {
  name: string;
  project: string;
  region: string;
  /** "google/gemini-2.0-flash". */
  model: string;
  /** Seconds each issued token lives. */
  tokenLifetimeS?: number;
  /** streamGenerateContent: ms between events (the first is written at once); default all at once. */
  streamIntervalMs?: number;
}

export interface VertexRequest {
  path: string;
  host: string | undefined;
  headers: Record<string, string>;
  body: unknown;
  rejected?: string;
}

/**
 * `blocked` (generateContent only): a 200 whose answer Gemini's filters blocked, with no text:
 * `prompt`, the prompt was blocked (promptFeedback.blockReason PROHIBITED_CONTENT, no candidates);
 * `answer`, the candidate was (finishReason SAFETY, no content).
 */
export type FakeVertexMode = { kind: 'ok' } | { kind: 'status'; status: number } | { kind: 'blocked'; where: 'prompt' | 'answer' };
/**
 * The token endpoint: answering at once, after `delayMs`, failing with `status` (a grant that is
 * otherwise good), or holding every request until the mode is set to another, which answers them.
 */
export type FakeTokenMode = { kind: 'ok' } | { kind: 'slow'; delayMs: number } | { kind: 'status'; status: number } | { kind: 'hold' };

export interface FakeVertex {
  readonly host: string;
  readonly port: number;
  readonly hostname: string;
  /** The service-account key file (JSON) whose token_uri is this fake's token endpoint. */
  readonly keyFile: string;
  readonly clientEmail: string;
  /** Grants the token endpoint received, and the tokens it issued. */
  tokenRequests(): readonly { ok: boolean; reason?: string }[];
  issuedTokens(): readonly string[];
  received(): readonly VertexRequest[];
  setMode(mode: FakeVertexMode): void;
  setTokenMode(mode: FakeTokenMode): void;
  clear(): void;
  close(): Promise<void>;
}

const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
const OTHER_VENDOR_HEADERS = ['api-key', 'x-api-key', 'x-goog-api-key', 'anthropic-version', 'x-amz-date', 'x-amz-security-token'];

export async function startFakeVertex(o: FakeVertexOptions): Promise<FakeVertex> {
  const hostname = `${o.region}-aiplatform.googleapis.com`;
  const chatPath = `/v1/projects/${o.project}/locations/${o.region}/endpoints/openapi/chat/completions`;
  const [publisher = '', modelName = ''] = o.model.split('/');
  const nativeBase = `/v1/projects/${o.project}/locations/${o.region}/publishers/${publisher}/models/${modelName}`;
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const clientEmail = `switchyard-test@${o.project}.iam.gserviceaccount.com`;
  const tokens = new Map<string, number>();
  let grants: { ok: boolean; reason?: string }[] = [];
  let records: VertexRequest[] = [];
  let mode: FakeVertexMode = { kind: 'ok' };
  let tokenUri = '';
  let tokenMode: FakeTokenMode = { kind: 'ok' };
  const held: (() => void)[] = [];

  const onToken = (raw: string, res: ServerResponse, arrived = true): void => {
    if (res.destroyed) return;
    const form = new URLSearchParams(raw);
    const reason = grantProblem(form, publicKey, clientEmail, tokenUri);
    if (arrived) grants.push(reason === undefined ? { ok: true } : { ok: false, reason });
    if (reason !== undefined) {
      sendJson(res, 400, { error: 'invalid_grant', error_description: reason });
      return;
    }
    const issue = (): void => {
      const token = `ya29.fake-${randomBytes(12).toString('hex')}`;
      const lifetime = o.tokenLifetimeS ?? 3600;
      tokens.set(token, Date.now() + lifetime * 1000);
      sendJson(res, 200, { access_token: token, expires_in: lifetime, token_type: 'Bearer' });
    };
    const m = tokenMode;
    if (m.kind === 'hold') held.push(() => onToken(raw, res, false));
    else if (m.kind === 'status') sendJson(res, m.status, { error: 'internal_failure', error_description: `${o.name}'s token endpoint is failing with ${m.status}` });
    else if (m.kind === 'slow') setTimeout(() => (res.destroyed ? undefined : issue()), m.delayMs);
    else issue();
  };

  const onChat = (req: IncomingMessage, r: VertexRequest, res: ServerResponse): void => {
    const native = r.path === `${nativeBase}:generateContent` || r.path === `${nativeBase}:streamGenerateContent?alt=sse`;
    const refusal = native ? nativeProblem(r, hostname, tokens) : chatProblem(r, hostname, chatPath, o.model, tokens);
    if (refusal !== undefined) {
      r.rejected = refusal.message;
      sendJson(res, refusal.status, [{ error: { code: refusal.status, message: refusal.message, status: refusal.status === 401 ? 'UNAUTHENTICATED' : 'INVALID_ARGUMENT' } }]);
      return;
    }
    if (mode.kind === 'status') {
      sendJson(res, mode.status, [{ error: { code: mode.status, message: `${o.name} is failing with ${mode.status}`, status: 'UNAVAILABLE' } }]);
      return;
    }
    if (native && mode.kind === 'blocked') answerBlocked(o, r, res, mode.where);
    else if (native) answerNative(o, r, res);
    else answer(o, r, res);
    void req;
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      if (req.url === '/token' && req.method === 'POST') {
        onToken(raw, res);
        return;
      }
      const record: VertexRequest = { path: req.url ?? '/', host: req.headers.host, headers: flattenHeaders(req), body: parseJson(raw) };
      records.push(record);
      onChat(req, record, res);
    });
  });
  server.keepAliveTimeout = 300_000;
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1' }, resolve));
  const port = (server.address() as AddressInfo).port;
  tokenUri = `http://127.0.0.1:${port}/token`;
  const keyFile = JSON.stringify({
    type: 'service_account',
    project_id: o.project,
    private_key_id: randomBytes(20).toString('hex'),
    private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    client_email: clientEmail,
    client_id: '1234567890',
    token_uri: tokenUri,
  });
  return {
    host: '127.0.0.1',
    port,
    hostname,
    keyFile,
    clientEmail,
    tokenRequests: () => grants,
    issuedTokens: () => [...tokens.keys()],
    received: () => records,
    setMode: (m) => (mode = m),
    setTokenMode: (m) => {
      tokenMode = m;
      if (m.kind !== 'hold') for (const answer of held.splice(0)) answer();
    },
    clear: () => {
      records = [];
      grants = [];
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function grantProblem(form: URLSearchParams, publicKey: import('node:crypto').KeyObject, clientEmail: string, tokenUri: string): string | undefined {
  if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return 'Invalid grant_type';
  const parts = (form.get('assertion') ?? '').split('.');
  if (parts.length !== 3) return 'Invalid JWT: not three parts';
  const [h = '', c = '', s = ''] = parts;
  const header = parseJson(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown> | undefined;
  const claims = parseJson(Buffer.from(c, 'base64url').toString('utf8')) as Record<string, unknown> | undefined;
  if (header?.['alg'] !== 'RS256') return 'Invalid JWT: alg must be RS256';
  if (!createVerify('RSA-SHA256').update(`${h}.${c}`).verify(publicKey, Buffer.from(s, 'base64url'))) return 'Invalid JWT Signature.';
  if (claims?.['iss'] !== clientEmail) return 'Invalid JWT: iss is not the service account';
  if (claims['aud'] !== tokenUri) return 'Invalid JWT: aud is not the token URI';
  if (!String(claims['scope'] ?? '').split(' ').includes(SCOPE)) return 'Invalid JWT: scope lacks cloud-platform';
  const now = Date.now() / 1000;
  const iat = Number(claims['iat']);
  const exp = Number(claims['exp']);
  if (!(iat <= now + 60) || !(exp > now) || exp - iat > 3600) return 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.';
  return undefined;
}

function authProblem(r: VertexRequest, hostname: string, tokens: Map<string, number>): { status: number; message: string } | undefined {
  if (r.host !== hostname) return { status: 404, message: `Host is ${r.host ?? 'missing'}, expected ${hostname}` };
  for (const h of OTHER_VENDOR_HEADERS) if (r.headers[h] !== undefined) return { status: 400, message: `unexpected ${h} header (another vendor's)` };
  const token = /^Bearer (.+)$/.exec(r.headers['authorization'] ?? '')?.[1];
  const expires = token === undefined ? undefined : tokens.get(token);
  if (expires === undefined) return { status: 401, message: 'Request had invalid authentication credentials. Expected OAuth 2 access token.' };
  if (expires <= Date.now()) return { status: 401, message: 'Request had invalid authentication credentials: the access token expired.' };
  return undefined;
}

/** generateContent's request shape: contents of user/model turns with parts; no OpenAI fields. */
function nativeProblem(r: VertexRequest, hostname: string, tokens: Map<string, number>): { status: number; message: string } | undefined {
  const auth = authProblem(r, hostname, tokens);
  if (auth !== undefined) return auth;
  const body = r.body as Record<string, unknown> | undefined;
  if (body === undefined) return { status: 400, message: 'the body is not JSON' };
  for (const field of ['messages', 'model', 'stream', 'max_tokens']) {
    if (body[field] !== undefined) return { status: 400, message: `Invalid JSON payload received. Unknown name "${field}": Cannot find field.` };
  }
  const contents = body['contents'];
  if (!Array.isArray(contents) || contents.length === 0) return { status: 400, message: 'contents is not specified' };
  for (const c of contents as Record<string, unknown>[]) {
    if (c['role'] !== 'user' && c['role'] !== 'model') return { status: 400, message: 'Please use a valid role: user, model.' };
    if (!Array.isArray(c['parts']) || c['parts'].length === 0) return { status: 400, message: 'contents.parts must not be empty' };
  }
  return undefined;
}

function answerNative(o: FakeVertexOptions, r: VertexRequest, res: ServerResponse): void {
  const words = `answered by ${o.name}`.split(' ');
  const usageMetadata = { promptTokenCount: 6, candidatesTokenCount: words.length, totalTokenCount: 6 + words.length };
  const modelVersion = o.model.split('/')[1] ?? o.model;
  if (r.path.includes(':streamGenerateContent')) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'x-fake-provider': o.name });
    const events = words.map((w, i) => {
      const last = i === words.length - 1;
      const event = { candidates: [{ content: { role: 'model', parts: [{ text: i === 0 ? w : ` ${w}` }] }, ...(last ? { finishReason: 'STOP' } : {}) }], modelVersion, ...(last ? { usageMetadata } : {}) };
      return `data: ${JSON.stringify(event)}\r\n\r\n`;
    });
    writePaced(res, events, o.streamIntervalMs ?? 0);
    return;
  }
  sendJson(res, 200, { candidates: [{ content: { role: 'model', parts: [{ text: words.join(' ') }] }, finishReason: 'STOP' }], usageMetadata, modelVersion, responseId: 'resp-1' }, { 'x-fake-provider': o.name });
}

function answerBlocked(o: FakeVertexOptions, r: VertexRequest, res: ServerResponse, where: 'prompt' | 'answer'): void {
  const modelVersion = o.model.split('/')[1] ?? o.model;
  const usageMetadata = { promptTokenCount: 6, totalTokenCount: 6 };
  const answer = where === 'prompt'
    ? { promptFeedback: { blockReason: 'PROHIBITED_CONTENT' }, usageMetadata, modelVersion }
    : { candidates: [{ finishReason: 'SAFETY', safetyRatings: [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH', blocked: true }] }], usageMetadata, modelVersion };
  if (r.path.includes(':streamGenerateContent')) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'x-fake-provider': o.name });
    res.end(`data: ${JSON.stringify(answer)}\r\n\r\n`);
    return;
  }
  sendJson(res, 200, answer, { 'x-fake-provider': o.name });
}

function chatProblem(r: VertexRequest, hostname: string, chatPath: string, model: string, tokens: Map<string, number>): { status: number; message: string } | undefined {
  if (r.path !== chatPath) return { status: 404, message: `no such endpoint ${r.path} (expected ${chatPath})` };
  const auth = authProblem(r, hostname, tokens);
  if (auth !== undefined) return auth;
  const body = r.body as Record<string, unknown> | undefined;
  if (body?.['model'] !== model) return { status: 400, message: `model must be "${model}" (publisher/model), got ${JSON.stringify(body?.['model'])}` };
  if (!Array.isArray(body['messages']) || body['messages'].length === 0) return { status: 400, message: 'messages must be a non-empty array' };
  return undefined;
}

function answer(o: FakeVertexOptions, r: VertexRequest, res: ServerResponse): void {
  const body = r.body as Record<string, unknown>;
  const content = `answered by ${o.name}`;
  const usage = { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 };
  const base = { id: 'chatcmpl-vertex-1', created: Math.floor(Date.now() / 1000), model: o.model, system_fingerprint: null };
  if (body['stream'] === true) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'x-fake-provider': o.name });
    const chunk = (delta: object, finish: string | null): string => `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const include = (body['stream_options'] as Record<string, unknown> | undefined)?.['include_usage'] === true;
    res.end(
      chunk({ role: 'assistant', content: '' }, null) +
        content.split(' ').map((w, i) => chunk({ content: i === 0 ? w : ` ${w}` }, null)).join('') +
        chunk({}, 'stop') +
        (include ? `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [], usage })}\n\n` : '') +
        'data: [DONE]\n\n',
    );
    return;
  }
  sendJson(res, 200, { ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }], usage }, { 'x-fake-provider': o.name });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
