/**
 * CPU per attempt of the AI extension with its gRPC transport, without Envoy or a provider: the
 * real extension server (startAiExtension) runs in a child process; this process plays Envoy's
 * ext_proc client on one HTTP/2 connection, one stream per attempt, as Envoy 1.40 does with a
 * full-duplex request body, `send_body_without_waiting_for_header_response` and the graceful
 * close and the AI cluster's buffer filter: request headers and the whole body at once, wait for
 * the two answers; response headers, body chunk and empty end chunk at once, wait for the three
 * answers; half-close and read the status. The child's CPU time per attempt
 * (from /proc) is the extension's whole cost, transport included, which the end-to-end row
 * (bench/ai-extension.ts) measures only amid Envoy's and the provider's load.
 *
 *   npx tsx bench/ai-extension-grpc.ts [attempts] [in flight] [request body KiB]
 */
import { fork } from 'node:child_process';
import * as http2 from 'node:http2';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startAiExtension } from '../src/ai-extension/server.js';
import { PROCESS_PATH } from '../src/ai-extension/protocol.js';
import { BENCH_MEMBER, REQUEST_MESSAGES, attemptMessages } from './ai-extension-messages.js';
import { processUsage } from './gcp.js';

/** No credential to wait for: the member's key would come from the controller over ADS. */
const MEMBER = { ...BENCH_MEMBER, authKind: 'None', credential: undefined };

function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** Answers to the request's messages (the headers', the body's) and to the answer's three. */
const REQUEST_ANSWERS = 2;
const ANSWERS = REQUEST_ANSWERS + 3;
/** Per attempt, ms from sending the request's messages to the second answer (Envoy calls the provider then). */
const requestPhaseMs: number[] = [];
/** Per attempt, ms from sending the answer's messages to the last answer (Envoy answers the client then). */
const responsePhaseMs: number[] = [];

/** One attempt's stream: resolves once the extension has ended it with an OK status. */
function attempt(session: http2.ClientHttp2Session, wire: Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': PROCESS_PATH, 'content-type': 'application/grpc', te: 'trailers' });
    let answers = 0;
    const sent = performance.now();
    let answerSent = 0;
    let pending: Buffer = Buffer.alloc(0);
    const send = (i: number): void => void stream.write(frame(wire[i] ?? Buffer.alloc(0)));
    for (let i = 0; i < REQUEST_MESSAGES; i++) send(i);
    stream.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
        // A request to wait longer (override_message_timeout, field 10: a slow body under load) answers nothing.
        const wait = pending[5] === ((10 << 3) | 2);
        pending = pending.subarray(5 + pending.readUInt32BE(1));
        if (wait) continue;
        answers++;
        if (answers === REQUEST_ANSWERS) {
          requestPhaseMs.push(performance.now() - sent);
          answerSent = performance.now();
          for (let i = REQUEST_MESSAGES; i < wire.length; i++) send(i);
        }
        else if (answers === ANSWERS) {
          responsePhaseMs.push(performance.now() - answerSent);
          stream.end();
        }
      }
    });
    stream.on('trailers', (trailers) => (trailers['grpc-status'] === '0' && answers === ANSWERS ? resolve() : reject(new Error(`status ${String(trailers['grpc-status'])} after ${answers} answers`))));
    stream.on('error', reject);
  });
}

async function client(): Promise<void> {
  const attempts = Number(process.argv[2]) || 20_000;
  const inFlight = Number(process.argv[3]) || 4;
  const child = fork(fileURLToPath(import.meta.url), ['server'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve) => child.once('message', (m: { port: number }) => resolve(m.port)));
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const bodyKb = Number(process.argv[4]) || 0;
  const wire = Array.from({ length: bodyKb > 0 ? 20 : 1000 }, (_, i) => attemptMessages(i, MEMBER, bodyKb));
  const walls: number[] = [];
  const run = async (n: number): Promise<number> => {
    const before = processUsage(child.pid ?? 0).cpuMs;
    const started = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: inFlight }, async () => {
      while (next < n) await attempt(session, wire[next++ % wire.length] ?? []);
    }));
    walls.push((performance.now() - started) / (n / inFlight));
    return ((processUsage(child.pid ?? 0).cpuMs - before) * 1000) / n;
  };
  await run(attempts / 4);
  requestPhaseMs.length = 0;
  responsePhaseMs.length = 0;
  const runs: number[] = [];
  for (let i = 0; i < 3; i++) runs.push(await run(attempts));
  walls.shift();
  const p50 = (ms: number[]): number => ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)] ?? Number.NaN;
  const requestP50 = p50(requestPhaseMs);
  const responseP50 = p50(responsePhaseMs);
  process.stdout.write(`extension CPU per attempt with its gRPC transport: ${runs.map((us) => us.toFixed(0)).join(', ')} µs; wall time per attempt and lane ${walls.map((ms) => ms.toFixed(2)).join(', ')} ms; request phase (messages sent to both answers) p50 ${requestP50.toFixed(3)} ms; response phase (the answer's three messages sent to their last answer) p50 ${responseP50.toFixed(3)} ms (${attempts} attempts a run, ${inFlight} in flight${bodyKb > 0 ? `, request bodies of ${bodyKb} KiB` : ''})\n`);
  session.close();
  // A clean exit, so that a --cpu-prof given through NODE_OPTIONS writes the child's profile.
  child.send({ stop: true });
}

async function server(): Promise<void> {
  const ext = await startAiExtension({ port: 0, host: '127.0.0.1', logger: pino({ level: 'warn' }) });
  process.on('message', () => process.exit(0));
  // The client failed and left: nothing to serve.
  process.on('disconnect', () => process.exit(0));
  process.send?.({ port: ext.port });
}

void (process.argv[2] === 'server' ? server() : client());
