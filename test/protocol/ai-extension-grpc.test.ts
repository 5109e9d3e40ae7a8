import * as grpc from '@grpc/grpc-js';
import * as http2 from 'node:http2';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGrpcServer, type BidiCall, type GrpcMethod, type RunningGrpcServer } from '../../src/ai-extension/grpc-server.js';
import { startAiExtension, type RunningAiExtension } from '../../src/ai-extension/server.js';
import { PROCESS_PATH } from '../../src/ai-extension/protocol.js';
import { HEALTH_CHECK_PATH } from '../../src/ai-extension/limits-health.js';
import { BENCH_MEMBER, REQUEST_MESSAGES, attemptMessages } from '../../bench/ai-extension-messages.js';
import { messageType } from '../../src/envoy/proto.js';
import { createLogger } from '../../src/observability/logger.js';

/**
 * The extension's gRPC server (node:http2, no grpc-js on the server side) against a real grpc-js
 * client: what Envoy relies on (messages both ways in order, half-close, reset) and what a client
 * that breaks the rules gets (a status that names the problem).
 */

const identity = (b: Buffer): Buffer => b;
const MAX = 1024;
/** How long the Flushed and Unflushed methods hold the event loop in an immediate. */
const BLOCK_MS = 1_000;
/** When those methods wrote their answer (Date.now()), by method. */
const answeredAt = new Map<string, number>();

/**
 * When (Date.now()) a client on a thread of its own, with its own event loop, received the first
 * answer of a call to `path`: the server's thread may be held while the answer travels.
 */
function firstAnswerReceivedAt(port: number, path: string): Promise<number> {
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const session = require('node:http2').connect('http://127.0.0.1:' + workerData.port);
     const stream = session.request({ ':method': 'POST', ':path': workerData.path, 'content-type': 'application/grpc', te: 'trailers' });
     stream.once('data', () => { parentPort.postMessage(Date.now()); session.destroy(); });
     stream.write(Buffer.from([0, 0, 0, 0, 2, 104, 105]));`,
    { eval: true, workerData: { port, path } },
  );
  return new Promise<number>((resolve, reject) => {
    worker.once('message', (at: number) => {
      resolve(at);
      void worker.terminate();
    });
    worker.once('error', reject);
  });
}

/** A message with its gRPC prefix (not compressed, 4-byte length). */
function grpcFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/**
 * A client of the process method on a thread of its own, with its own event loop. `script` runs
 * once the call is open, with `parentPort`, `workerData`, `session`, `stream` and `sentAt` in scope,
 * and declares `function answered(answers)`: called with how many answers came so far, each time
 * one comes (an override_message_timeout, field 10, answers nothing and is not counted).
 */
function processClient(port: number, script: string, data: Record<string, unknown>): Worker {
  return new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const session = require('node:http2').connect('http://127.0.0.1:' + workerData.port);
     const stream = session.request({ ':method': 'POST', ':path': workerData.path, 'content-type': 'application/grpc', te: 'trailers' });
     let pending = Buffer.alloc(0), answers = 0, sentAt = 0;
     stream.on('data', (chunk) => {
       pending = Buffer.concat([pending, chunk]);
       while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
         const wait = pending[5] === ((10 << 3) | 2);
         pending = pending.subarray(5 + pending.readUInt32BE(1));
         if (!wait) answered(++answers);
       }
     });
     ${script}`,
    { eval: true, workerData: { ...data, port, path: PROCESS_PATH } },
  );
}

/** The worker's next message; its error, if it fails first. */
function nextMessage<T>(worker: Worker): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

/**
 * Holds this thread's event loop BLOCK_MS in an immediate every turn, tells `worker` to send
 * (any message) while the first hold is on, and expects its answer ({ sentAt, answeredAt } from the
 * worker) right after that hold: read in the next turn and answered then, not after the next hold.
 */
async function expectAnsweredAfterFirstHold(worker: Worker): Promise<void> {
  const answered = nextMessage<{ sentAt: number; answeredAt: number }>(worker);
  let holding = true;
  let first = true;
  const hold = (): void => {
    if (!holding) return;
    if (first) worker.postMessage('go');
    first = false;
    const until = Date.now() + BLOCK_MS;
    while (Date.now() < until);
    setImmediate(hold);
  };
  setImmediate(hold);
  const { sentAt, answeredAt } = await answered.finally(() => (holding = false));
  expect(answeredAt - sentAt).toBeGreaterThanOrEqual(BLOCK_MS - 50);
  expect(answeredAt - sentAt).toBeLessThan(BLOCK_MS * 1.5);
}

interface Echo {
  server: RunningGrpcServer;
  client: grpc.Client;
  closedCalls: number[];
}

/** A bidi method that answers each message with "n:<message>" and ends when the client half-closes. */
async function startEcho(): Promise<Echo> {
  const closedCalls: number[] = [];
  let calls = 0;
  const server = await startGrpcServer({
    listen: { host: '127.0.0.1', port: 0 },
    maxMessageBytes: MAX,
    methods: new Map([
      ['/test.Echo/Chat', {
        kind: 'bidi',
        handle: (call: BidiCall) => {
          const id = ++calls;
          let n = 0;
          call.onMessage((m) => {
            n++;
            call.write(Buffer.concat([Buffer.from(`${n}:${call.header('x-tag') ?? ''}:`), m]));
          });
          call.onHalfClose(() => call.end());
          call.onClose(() => closedCalls.push(id));
        },
      }],
      // Answers as the extension does (serveAttempt): each message after the previous one's
      // answer, in a promise chain, so every answer is written from a microtask.
      ['/test.Echo/Chained', {
        kind: 'bidi',
        handle: (call: BidiCall) => {
          let queue = Promise.resolve();
          let n = 0;
          call.onMessage((m) => {
            queue = queue.then(async () => {
              await Promise.resolve();
              call.write(Buffer.concat([Buffer.from(`${++n}:`), m]));
            });
          });
          call.onHalfClose(() => void queue.then(() => call.end()));
        },
      }],
      // Answers from a microtask of the read, as the extension answers the request's last
      // message, after queueing an immediate that holds the event loop for BLOCK_MS; flushes or not.
      ...(['Flushed', 'Unflushed'] as const).map((name): [string, GrpcMethod] => [`/test.Echo/${name}`, {
        kind: 'bidi',
        handle: (call: BidiCall) => {
          call.onMessage((m) => {
            setImmediate(() => {
              const until = Date.now() + BLOCK_MS;
              while (Date.now() < until);
            });
            void Promise.resolve().then(() => {
              answeredAt.set(name, Date.now());
              call.write(m);
              if (name === 'Flushed') call.flush();
            });
          });
          call.onHalfClose(() => call.end());
        },
      }]),
      ['/test.Echo/Once', { kind: 'unary', handle: async (request: Buffer, authority: string) => Buffer.concat([Buffer.from(`${authority}|`), request]) }],
    ]),
  });
  const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  return { server, client, closedCalls };
}

function chat(client: grpc.Client, metadata = new grpc.Metadata()): grpc.ClientDuplexStream<Buffer, Buffer> {
  return client.makeBidiStreamRequest('/test.Echo/Chat', identity, identity, metadata);
}

/** Every message and the final status of a call. */
function collect(call: grpc.ClientDuplexStream<Buffer, Buffer> | grpc.ClientReadableStream<Buffer>): Promise<{ messages: string[]; status: grpc.StatusObject }> {
  const messages: string[] = [];
  call.on('data', (m: Buffer) => messages.push(m.toString()));
  call.on('error', () => undefined);
  return new Promise((resolve) => call.on('status', (status: grpc.StatusObject) => resolve({ messages, status })));
}

describe('the AI extension gRPC server (its own HTTP/2) with a grpc-js client', () => {
  let echo: Echo;
  beforeAll(async () => {
    echo = await startEcho();
  });
  afterAll(async () => {
    echo.client.close();
    await echo.server.close();
  });

  it('answers several messages in order, each after its own, reads metadata, and ends with OK after the client half-closes', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-tag', 'attempt-7');
    const call = chat(echo.client, metadata);
    const done = collect(call);
    const answers: string[] = [];
    for (const word of ['alpha', 'beta', 'gamma']) {
      const answer = new Promise<string>((resolve) => call.once('data', (m: Buffer) => resolve(m.toString())));
      call.write(Buffer.from(word));
      answers.push(await answer);
    }
    call.end();
    const { messages, status } = await done;
    expect(answers).toEqual(['1:attempt-7:alpha', '2:attempt-7:beta', '3:attempt-7:gamma']);
    expect(messages).toEqual(answers);
    expect(status.code).toBe(grpc.status.OK);
  });

  it('sends the answers to messages that came together in one DATA frame', async () => {
    // Envoy sends a phase's messages at once (request headers, body, end) and reads the answers
    // as they come: answers split over frames written apart woke it once per write.
    const session = http2.connect(`http://127.0.0.1:${echo.server.port}`);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/test.Echo/Chained', 'content-type': 'application/grpc', te: 'trailers' });
      const frames: string[][] = [];
      stream.on('data', (chunk: Buffer) => {
        const messages: string[] = [];
        for (let at = 0; at + 5 <= chunk.length; at += 5 + chunk.readUInt32BE(at + 1)) messages.push(chunk.subarray(at + 5, at + 5 + chunk.readUInt32BE(at + 1)).toString());
        frames.push(messages);
        if (messages.length + frames.slice(0, -1).flat().length >= 3) stream.end();
      });
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('trailers', resolve));
      const prefixed = ['alpha', 'beta', 'gamma'].map((word) => Buffer.concat([Buffer.from([0, 0, 0, 0, word.length]), Buffer.from(word)]));
      // One write, one DATA frame: the three messages reach the server in one read.
      stream.write(Buffer.concat(prefixed));
      expect((await trailers)['grpc-status']).toBe('0');
      expect(frames).toEqual([['1:alpha', '2:beta', '3:gamma']]);
    } finally {
      session.close();
    }
  });

  it('sends an answer given flush() while the read is handled, before the immediates queued ahead of it run', async () => {
    // The extension flushes the request phase's two answers once the body is answered: Envoy
    // waits for them before it calls the provider. Without flush() they leave after the
    // immediates queued before them (and Node's own write after that, a turn of the loop later).
    const flushed = await firstAnswerReceivedAt(echo.server.port, '/test.Echo/Flushed');
    const unflushed = await firstAnswerReceivedAt(echo.server.port, '/test.Echo/Unflushed');
    expect(unflushed - (answeredAt.get('Unflushed') ?? Number.NaN)).toBeGreaterThanOrEqual(BLOCK_MS - 50);
    expect(flushed - (answeredAt.get('Flushed') ?? Number.NaN)).toBeLessThan(BLOCK_MS / 2);
  });

  it('splits messages written back to back and keeps an empty message', async () => {
    const call = chat(echo.client);
    const done = collect(call);
    call.write(Buffer.from('one'));
    call.write(Buffer.alloc(0));
    call.write(Buffer.alloc(MAX, 'x'));
    call.end();
    const { messages, status } = await done;
    expect(status.code).toBe(grpc.status.OK);
    expect(messages.slice(0, 2)).toEqual(['1::one', '2::']);
    expect(messages[2]).toBe(`3::${'x'.repeat(MAX)}`);
  });

  it('sees a cancel by the client as the end of the call, and keeps serving other calls', async () => {
    const before = echo.closedCalls.length;
    const call = chat(echo.client);
    const done = collect(call);
    await new Promise<void>((resolve) => {
      call.once('data', () => resolve());
      call.write(Buffer.from('hello'));
    });
    call.cancel();
    expect((await done).status.code).toBe(grpc.status.CANCELLED);
    await expect.poll(() => echo.closedCalls.length).toBe(before + 1);

    const next = chat(echo.client);
    const nextDone = collect(next);
    next.write(Buffer.from('still here'));
    next.end();
    expect((await nextDone).messages).toEqual(['1::still here']);
  });

  it('ends a call whose message is over the limit with RESOURCE_EXHAUSTED naming both sizes', async () => {
    const call = chat(echo.client);
    const done = collect(call);
    call.write(Buffer.from('fits'));
    call.write(Buffer.alloc(MAX + 1, 'y'));
    const { messages, status } = await done;
    expect(messages).toEqual(['1::fits']);
    expect(status.code, status.details).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toContain(`${MAX + 1} bytes`);
    expect(status.details).toContain(`limit of ${MAX} bytes`);
  });

  it('answers an unknown method with UNIMPLEMENTED naming the methods it serves', async () => {
    const call = echo.client.makeBidiStreamRequest('/test.Echo/Nope', identity, identity);
    const done = collect(call);
    call.end();
    const { status } = await done;
    expect(status.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(status.details).toContain('/test.Echo/Nope');
    expect(status.details).toContain('/test.Echo/Chat');
  });

  it('serves a unary call with the request :authority', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      echo.client.makeUnaryRequest('/test.Echo/Once', identity, identity, Buffer.from('ping'), (err, value) => (err ? reject(err) : resolve(value?.toString() ?? '')));
    });
    expect(answer).toBe(`127.0.0.1:${echo.server.port}|ping`);
  });
});

describe('the AI extension over its own gRPC server', () => {
  let extension: RunningAiExtension;
  let client: grpc.Client;
  beforeAll(async () => {
    extension = await startAiExtension({ port: 0, host: '127.0.0.1', logger: createLogger({ level: 'silent' }), credentialWaitMs: 50 });
    client = new grpc.Client(`127.0.0.1:${extension.port}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await extension.stop();
  });

  it('answers grpc.health.v1.Health/Check with SERVING for a probe that names no member', async () => {
    const answer = await new Promise<Buffer>((resolve, reject) => {
      client.makeUnaryRequest(HEALTH_CHECK_PATH, identity, identity, Buffer.alloc(0), (err, value) => (err || value === undefined ? reject(err ?? new Error('no answer')) : resolve(value)));
    });
    expect([...answer]).toEqual([0x08, 0x01]);
  });

  it('answers ext_proc messages with ProcessingResponses for the same phase, and tells the attempt is open', async () => {
    const REQUEST = messageType('envoy.service.ext_proc.v3.ProcessingRequest');
    const RESPONSE = messageType('envoy.service.ext_proc.v3.ProcessingResponse');
    const call = client.makeBidiStreamRequest(PROCESS_PATH, identity, identity);
    const done = collect(call);
    const first = new Promise<Buffer>((resolve) => call.once('data', resolve));
    call.write(Buffer.from(REQUEST.encode({ response_headers: { headers: { headers: [{ key: ':status', raw_value: Buffer.from('200') }] } } }).finish()));
    const answer = RESPONSE.toObject(RESPONSE.decode(await first), { defaults: false });
    expect(Object.keys(answer)).toEqual(['response_headers']);
    expect(extension.idleForMs()).toBe(0);
    call.end();
    expect((await done).status.code).toBe(grpc.status.OK);
    await expect.poll(() => extension.idleForMs()).toBeGreaterThan(0);
  });

  it('ends an attempt\'s call with its last answer, without waiting for Envoy to half-close', async () => {
    const REQUEST = messageType('envoy.service.ext_proc.v3.ProcessingRequest');
    const session = http2.connect(`http://127.0.0.1:${extension.port}`);
    try {
      const stream = session.request({ ':method': 'POST', ':path': PROCESS_PATH, 'content-type': 'application/grpc', te: 'trailers' });
      const frame = (m: object): Buffer => {
        return grpcFrame(Buffer.from(REQUEST.encode(REQUEST.fromObject(m)).finish()));
      };
      let answers = 0;
      stream.on('data', (chunk: Buffer) => {
        for (let at = 0; at + 5 <= chunk.length; at += 5 + chunk.readUInt32BE(at + 1)) answers++;
      });
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('trailers', resolve));
      // An answer's headers, one chunk and its end, as Envoy sends them; the client does not half-close.
      stream.write(Buffer.concat([
        frame({ response_headers: { headers: { headers: [{ key: ':status', raw_value: Buffer.from('200') }] } } }),
        frame({ response_body: { body: Buffer.from('{}'), end_of_stream: false } }),
        frame({ response_body: { end_of_stream: true } }),
      ]));
      expect((await trailers)['grpc-status']).toBe('0');
      expect(answers).toBe(3);
      stream.end();
    } finally {
      session.close();
    }
  });

  it('sends the request phase\'s two answers while the read is handled, ahead of the immediates queued before them', async () => {
    // Envoy calls the provider only once it has both answers. Left to the immediate that uncorks
    // the call, they waited behind every immediate queued before it, and then a turn of the loop.
    const request = Buffer.concat(attemptMessages(1, { ...BENCH_MEMBER, authKind: 'None', credential: undefined }).slice(0, REQUEST_MESSAGES).map(grpcFrame));
    // A client that sends the request phase when told, and says when both answers were in.
    const worker = processClient(extension.port,
      `function answered(answers) {
         if (answers === 2) { parentPort.postMessage({ sentAt, answeredAt: Date.now() }); session.destroy(); }
       }
       parentPort.on('message', () => { sentAt = Date.now(); stream.write(Buffer.from(workerData.request)); });
       session.once('remoteSettings', () => parentPort.postMessage('ready'));`,
      { request },
    );
    try {
      await nextMessage(worker);
      // The request phase is sent while this thread's loop is held, and read in the next turn.
      await expectAnsweredAfterFirstHold(worker);
    } finally {
      await worker.terminate();
    }
  });

  it('sends the answer to a streamed answer\'s chunk while the read is handled, ahead of the immediates queued before it', async () => {
    // An SSE answer reaches the client one chunk at a time, each only once its answer is in.
    // Left to the immediate that uncorks the call, a chunk's answer waited behind every immediate
    // queued before it, and then a turn of the loop.
    const REQUEST = messageType('envoy.service.ext_proc.v3.ProcessingRequest');
    const encode = (m: object): Buffer => grpcFrame(Buffer.from(REQUEST.encode(REQUEST.fromObject(m)).finish()));
    const requestPhase = attemptMessages(2, { ...BENCH_MEMBER, authKind: 'None', credential: undefined }).slice(0, REQUEST_MESSAGES).map(grpcFrame);
    const sse = { headers: { headers: [{ key: ':status', raw_value: Buffer.from('200') }, { key: 'content-type', raw_value: Buffer.from('text/event-stream') }] } };
    const chunk = (text: string): Buffer => encode({ response_body: { body: Buffer.from(`data: {"choices":[{"index":0,"delta":{"content":"${text}"}}]}\n\n`), end_of_stream: false } });
    // The request phase, the answer's headers and its first chunk go first, unhurried; the second
    // chunk is sent when told, and the client says when its answer (the fifth) was in.
    const worker = processClient(extension.port,
      `function answered(answers) {
         if (answers === 4) parentPort.postMessage('ready');
         if (answers === 5) { parentPort.postMessage({ sentAt, answeredAt: Date.now() }); session.destroy(); }
       }
       parentPort.on('message', () => { sentAt = Date.now(); stream.write(Buffer.from(workerData.second)); });
       session.once('remoteSettings', () => stream.write(Buffer.from(workerData.first)));`,
      { first: Buffer.concat([...requestPhase, encode({ response_headers: sse }), chunk('one')]), second: chunk('two') },
    );
    try {
      await nextMessage(worker);
      // The second chunk is sent while this thread's loop is held, and read in the next turn.
      await expectAnsweredAfterFirstHold(worker);
    } finally {
      await worker.terminate();
    }
  });

  it('sends an answer\'s last answers before its bookkeeping (tokens, duration, processing time), which still happens', async () => {
    // Counting the answer's tokens is made to take BLOCK_MS: the client gets the answers first.
    const tokens = extension.metrics.tokens;
    const inc = tokens.inc.bind(tokens);
    let counted = 0;
    tokens.inc = ((...args: Parameters<typeof tokens.inc>) => {
      const until = Date.now() + BLOCK_MS;
      while (Date.now() < until);
      counted++;
      inc(...args);
    }) as typeof tokens.inc;
    const framed = attemptMessages(3, { ...BENCH_MEMBER, authKind: 'None', credential: undefined }).map(grpcFrame);
    // A client that sends the request phase, then the answer's three messages once both request
    // answers are in; it says how long the answer's three answers took.
    const worker = processClient(extension.port,
      `function answered(answers) {
         if (answers === 2) { sentAt = Date.now(); stream.write(Buffer.from(workerData.answer)); }
         if (answers === 5) parentPort.postMessage(Date.now() - sentAt);
       }
       stream.on('trailers', () => { stream.end(); session.close(); });
       session.once('remoteSettings', () => stream.write(Buffer.from(workerData.request)));`,
      { request: Buffer.concat(framed.slice(0, REQUEST_MESSAGES)), answer: Buffer.concat(framed.slice(REQUEST_MESSAGES)) },
    );
    try {
      const tookMs = await nextMessage<number>(worker);
      expect(tookMs).toBeLessThan(BLOCK_MS / 2);
      // The bench answer's usage: 9 tokens in, 3 out.
      await expect.poll(() => counted, { timeout: 3 * BLOCK_MS }).toBe(2);
      const metrics = await extension.metrics.registry.metrics();
      expect(metrics).toMatch(/switchyard_ai_tokens_total\{backend="ai\/ai",member="ai-0-0",direction="in"\} \d+/);
      expect(metrics).toMatch(/switchyard_ai_request_duration_seconds_count\{[^}]*member="ai-0-0"[^}]*\} [1-9]/);
      expect(metrics).toMatch(/switchyard_ai_extension_processing_seconds_count\{phase="response_body"\} [1-9]/);
    } finally {
      tokens.inc = inc;
      await worker.terminate();
    }
  });

  it('keeps an attempt\'s call open while the answer has not ended', async () => {
    const REQUEST = messageType('envoy.service.ext_proc.v3.ProcessingRequest');
    const call = client.makeBidiStreamRequest(PROCESS_PATH, identity, identity);
    const done = collect(call);
    const answered = new Promise<void>((resolve) => call.once('data', () => resolve()));
    call.write(Buffer.from(REQUEST.encode({ response_headers: { headers: { headers: [{ key: ':status', raw_value: Buffer.from('200') }] } } }).finish()));
    await answered;
    // A second message still gets its answer: the call was not ended after the headers.
    call.write(Buffer.from(REQUEST.encode({ response_body: { body: Buffer.from('{}'), end_of_stream: true } }).finish()));
    const { messages, status } = await done;
    expect(status.code).toBe(grpc.status.OK);
    expect(messages).toHaveLength(2);
  });
});
