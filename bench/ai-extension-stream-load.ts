/**
 * The client side of bench/ai-extension-stream.ts, in a process of its own (forked by it): an
 * SSE provider whose events carry the time they were written, streaming clients that read each
 * event's delay (written by the provider, read by the client: the same process, the same clock),
 * and open-loop non-streamed requests through the extension that keep serve's event loop busy.
 *
 * Protocol (IPC): the child sends `{ port }` once the provider listens; each StreamPhaseOrder is
 * answered with a StreamPhaseResult; `'stop'` closes it.
 */
import { Agent, createServer, request } from 'node:http';

export interface StreamPhaseOrder {
  port: number;
  /** Where the streamed requests go; the background requests always go to `backgroundPath`. */
  streamPath: string;
  backgroundPath: string;
  seconds: number;
  /** Non-streamed requests a second in the background. */
  rps: number;
  /** Streamed requests in flight, each sent again as soon as it ends. */
  streams: number;
}

export interface StreamPhaseResult {
  /** ms from the provider's write of each content event to the client's read of it. */
  delays: number[];
  failures: number;
}

/** Content events per streamed answer, one every EVENT_INTERVAL_MS: a model writing tokens. */
const EVENTS = 10;
const EVENT_INTERVAL_MS = 10;

const server = createServer((req, res) => {
  let body = '';
  req.on('data', (chunk: Buffer) => (body += chunk.toString()));
  req.on('end', () => {
    if (!body.includes('"stream":true')) {
      const answer = JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion', model: 'gpt-4o', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }], usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 } });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(answer) });
      res.end(answer);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let written = 0;
    const next = (): void => {
      if (written++ === EVENTS) {
        res.end('data: [DONE]\n\n');
        return;
      }
      res.write(`data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', model: 'gpt-4o', choices: [{ index: 0, delta: { content: `written=${performance.now()}` } }] })}\n\n`);
      setTimeout(next, EVENT_INTERVAL_MS);
    };
    next();
  });
});
// Envoy keeps its upstream connections open; Node's 5 s default would close them under it.
server.keepAliveTimeout = 3_600_000;

const agent = new Agent({ keepAlive: true, maxSockets: 128 });
const BODY = JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] });
const STREAM_BODY = JSON.stringify({ model: 'client-model', stream: true, messages: [{ role: 'user', content: 'hello' }] });

/** One POST; for a streamed one, each content event's delay goes to `delays`. */
function post(port: number, path: string, delays: number[] | undefined): Promise<void> {
  const body = delays === undefined ? BODY : STREAM_BODY;
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let pending = '';
      res.on('data', (chunk: Buffer) => {
        if (delays === undefined) return;
        const now = performance.now();
        pending += chunk.toString();
        const complete = pending.lastIndexOf('\n\n');
        if (complete < 0) return;
        for (const m of pending.slice(0, complete).matchAll(/written=([0-9.]+)/g)) delays.push(now - Number(m[1]));
        pending = pending.slice(complete + 2);
      });
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function phase(order: StreamPhaseOrder): Promise<StreamPhaseResult> {
  const delays: number[] = [];
  let failures = 0;
  const failed = (): void => void failures++;
  const start = performance.now();
  const until = start + order.seconds * 1000;
  const background = async (): Promise<void> => {
    const pending: Promise<void>[] = [];
    for (let i = 0; start + i * (1000 / order.rps) < until; i++) {
      const wait = start + i * (1000 / order.rps) - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      pending.push(post(order.port, order.backgroundPath, undefined).catch(failed));
    }
    await Promise.all(pending);
  };
  const streaming = async (): Promise<void> => {
    while (performance.now() < until) await post(order.port, order.streamPath, delays).catch(failed);
  };
  await Promise.all([background(), ...Array.from({ length: order.streams }, streaming)]);
  return { delays, failures };
}

const send = process.send?.bind(process);
if (send === undefined) throw new Error('bench/ai-extension-stream-load.ts runs forked by bench/ai-extension-stream.ts (it needs an IPC channel)');
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  send({ port: typeof address === 'object' && address !== null ? address.port : 0 });
});
process.on('message', (message: StreamPhaseOrder | 'stop') => {
  if (message === 'stop') {
    agent.destroy();
    server.close(() => process.exit(0));
    return;
  }
  void phase(message).then((result) => send(result));
});
