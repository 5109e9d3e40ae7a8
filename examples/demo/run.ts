/**
 * `make demo`: six fake providers (three OpenAI-compatible ones for Backend ai/chat, OpenAI-,
 * Azure- and Anthropic-shaped ones for Backend ai/cross), the real controller (`switchyard serve`
 * on examples/, with its AI extension as a child process), the real Envoy bootstrapped by `switchyard
 * bootstrap`, and the official OpenAI client sending a steady stream of chat requests through the
 * gateway while scenario.ts makes providers fail, first on ai/chat, then on ai/cross.
 *
 *   DEMO_PHASE_SECONDS=4   shorter phases (default 7)
 *   DEMO_HOLD=1            keep everything running after the scenario, until Ctrl-C
 *   ENVOY_BIN=/path        the Envoy binary (default .toolchain/bin/envoy, from `make envoy`)
 *   DEMO_LISTENER_PORT, DEMO_XDS_PORT, DEMO_METRICS_PORT, DEMO_AI_EXTENSION_PORT, DEMO_ADMIN_PORT
 *                          other ports than 10000, 18000, 9090, 18001, 9901 (0: any free one)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, cpSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { startFakeProvider, type FakeProvider, type FakeVendor } from './fake-provider.js';
import {
  PARTS,
  failureReasons,
  failuresWhileHealthy,
  memberNamedIn,
  modeOf,
  palette,
  runScenario,
  summaryTable,
  type Answer,
  type Palette,
  type Part,
  type RequestOutcome,
  type ScenarioResult,
} from './scenario.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'bin', 'switchyard.js');
const COMPILED_CLI = join(ROOT, 'dist', 'cli', 'main.js');

interface FakeSpec {
  /** The member of the part's Backend it stands in for. */
  name: string;
  port: number;
  vendor?: FakeVendor;
  streamIntervalMs?: number;
}

/** Anthropic's streamed events are written this far apart, so that a buffered stream would show. */
const STREAM_INTERVAL_MS = 150;

/**
 * The fakes of each part's Backend, where its hostOverrides point. ai/cross's (examples/cross-provider.yaml)
 * are plain HTTP (`hostOverride.tls: false`), each accepting only its Secret's key in its vendor's header.
 */
const FAKES: Readonly<Record<string, readonly FakeSpec[]>> = {
  chat: [
    { name: 'primary', port: 18081 },
    { name: 'secondary', port: 18082 },
    { name: 'tertiary', port: 18083 },
  ],
  cross: [
    { name: 'openai', port: 18084, vendor: { api: 'openai', key: 'sk-demo-openai' } },
    { name: 'azure', port: 18085, vendor: { api: 'azureopenai', key: 'demo-azure-key', deployment: 'gpt-4o-mini', apiVersion: '2024-10-21' } },
    { name: 'anthropic', port: 18086, vendor: { api: 'anthropic', key: 'sk-ant-demo' }, streamIntervalMs: STREAM_INTERVAL_MS },
  ],
};

function fakesOf(part: Part): readonly FakeSpec[] {
  return FAKES[part.backend] ?? [];
}

/**
 * The demo's own ports, each overridable from the environment (0: a free one, picked at start):
 * DEMO_LISTENER_PORT (Envoy's listener of Gateway ai/ai-gateway), DEMO_XDS_PORT, DEMO_METRICS_PORT,
 * DEMO_AI_EXTENSION_PORT, DEMO_ADMIN_PORT (Envoy's admin API). The fake providers keep theirs:
 * examples/ points the Backends at them.
 */
const PORT_SETTINGS = {
  gateway: { env: 'DEMO_LISTENER_PORT', port: 10000, owner: 'Envoy listener of Gateway ai/ai-gateway' },
  xds: { env: 'DEMO_XDS_PORT', port: 18000, owner: 'controller xDS server' },
  metrics: { env: 'DEMO_METRICS_PORT', port: 9090, owner: 'controller metrics/status server' },
  aiExtension: { env: 'DEMO_AI_EXTENSION_PORT', port: 18001, owner: 'AI extension (ext_proc, in the controller process)' },
  admin: { env: 'DEMO_ADMIN_PORT', port: 9901, owner: 'Envoy admin API' },
} as const;
type PortName = keyof typeof PORT_SETTINGS;

/** The ports in use, once resolvePorts() has read the environment. */
const PORT: Record<PortName, number> = { gateway: 10000, xds: 18000, metrics: 9090, aiExtension: 18001, admin: 9901 };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function resolvePorts(): Promise<void> {
  for (const [name, setting] of Object.entries(PORT_SETTINGS) as [PortName, (typeof PORT_SETTINGS)[PortName]][]) {
    const text = process.env[setting.env];
    if (text === undefined || text === '') {
      PORT[name] = setting.port;
      continue;
    }
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new DemoFailure(`${setting.env} must be a port number (0 for a free one), got "${text}"`);
    PORT[name] = n === 0 ? await freePort() : n;
  }
}

function demoPorts(): ReadonlyArray<{ port: number; owner: string; env?: string }> {
  return [
    ...PARTS.flatMap((part) => fakesOf(part).map((f) => ({ port: f.port, owner: `fake provider ${f.name} (Backend ai/${part.backend})` }))),
    ...(Object.entries(PORT_SETTINGS) as [PortName, (typeof PORT_SETTINGS)[PortName]][]).map(([name, s]) => ({ port: PORT[name], owner: s.owner, env: s.env })),
  ];
}

/**
 * examples/ as is, or a copy whose Gateway listens on DEMO_LISTENER_PORT (Envoy opens the
 * listener at the port the Gateway names).
 */
function demoConfig(dir: string): string {
  if (PORT.gateway === PORT_SETTINGS.gateway.port) return 'examples';
  const copy = join(dir, 'config');
  cpSync(join(ROOT, 'examples'), copy, { recursive: true, filter: (src) => !src.includes(`${join('examples', 'demo')}`) });
  const gateway = join(copy, 'gateway.yaml');
  const text = readFileSync(gateway, 'utf8');
  if (!text.includes(`port: ${PORT_SETTINGS.gateway.port}`)) throw new Error(`examples/gateway.yaml no longer listens on ${PORT_SETTINGS.gateway.port}: update demoConfig()`);
  writeFileSync(gateway, text.replace(`port: ${PORT_SETTINGS.gateway.port}`, `port: ${PORT.gateway}`));
  return copy;
}

/** A failure the user can act on: printed without a stack trace. */
class DemoFailure extends Error {
  override name = 'DemoFailure';
}

// ---------------------------------------------------------------------------------------------
// Child processes

interface Child {
  readonly name: string;
  readonly logPath: string;
  running(): boolean;
  /** How it ended, in words (only meaningful once it is not running). */
  exitDescription(): string;
  onExit(listener: () => void): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
  kill(): void;
}

const children: Child[] = [];

// Whatever ends this process, no child outlives it.
process.once('exit', () => {
  for (const c of children) c.kill();
});

function startChild(name: string, command: string, args: readonly string[], logPath: string): Child {
  // A file, not a pipe: a chatty child must never block on a pipe nobody reads.
  const fd = openSync(logPath, 'a');
  const child: ChildProcess = spawn(command, args, { cwd: ROOT, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  let ended: string | undefined;
  const listeners: Array<() => void> = [];
  const exited = new Promise<void>((resolve) => {
    const finish = (how: string): void => {
      if (ended !== undefined) return;
      ended = how;
      resolve();
      for (const l of listeners) l();
    };
    child.once('exit', (code, signal) => finish(signal !== null ? `killed by ${signal}` : `exited with code ${String(code)}`));
    child.once('error', (err) => finish(`could not be started: ${err.message}`));
  });
  const handle: Child = {
    name,
    logPath,
    running: () => ended === undefined,
    exitDescription: () => ended ?? 'running',
    onExit: (l) => listeners.push(l),
    stop: async (graceMs = 5_000) => {
      if (ended === undefined) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
    },
    kill: () => {
      if (ended === undefined) child.kill('SIGKILL');
    },
  };
  children.push(handle);
  return handle;
}

function tail(path: string, lines = 25): string {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return '(no log written)';
  }
  const last = text.trimEnd().split('\n').slice(-lines).join('\n');
  return last === '' ? '(log is empty)' : last;
}

function diedMessage(c: Child, during: string): string {
  return `${c.name} ${c.exitDescription()} ${during}\n--- last lines of ${c.logPath} ---\n${tail(c.logPath)}\n---`;
}

function run(command: string, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

// ---------------------------------------------------------------------------------------------
// Waiting

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/** Polls `probe` until it returns true; fails at once when `watched` dies or the demo is stopped. */
async function waitUntil(what: string, watched: Child, signal: AbortSignal, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    if (signal.aborted) throw new DemoFailure('interrupted');
    if (!watched.running()) throw new DemoFailure(diedMessage(watched, `while waiting for ${what}`));
    try {
      if (await probe()) return;
    } catch (err) {
      last = describe(err);
    }
    if (Date.now() > deadline) {
      throw new DemoFailure(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? ` (last error: ${last})` : ''}\n--- last lines of ${watched.logPath} ---\n${tail(watched.logPath)}\n---`);
    }
    await sleep(100, signal);
  }
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.message}${cause}`;
}

// ---------------------------------------------------------------------------------------------
// Preflight

function portIsFree(port: number): Promise<boolean> {
  // The wildcard address collides with a listener on any local address, IPv4 or dual-stack.
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

async function preflight(): Promise<string> {
  const envoy = process.env['ENVOY_BIN'] ?? join(ROOT, '.toolchain', 'bin', 'envoy');
  try {
    accessSync(envoy, constants.X_OK);
  } catch {
    throw new DemoFailure(
      `no Envoy binary at ${envoy}${process.env['ENVOY_BIN'] ? ' (from ENVOY_BIN)' : ''}: run \`make envoy\` (scripts/ensure-envoy.sh) or set ENVOY_BIN`,
    );
  }
  if (!existsSync(COMPILED_CLI)) throw new DemoFailure(`the controller is not built (${COMPILED_CLI} is missing): run \`npm run build\` or \`make demo\``);

  await resolvePorts();
  const taken: string[] = [];
  for (const { port, owner, env } of demoPorts()) if (!(await portIsFree(port))) taken.push(`  ${String(port).padStart(5)}  ${owner}${env ? ` (${env})` : ''}`);
  if (taken.length > 0) {
    throw new DemoFailure(
      `the demo needs these ports, already in use:\n${taken.join('\n')}\nIs another demo still running? See who holds them: ss -ltnp; or pick others (0: any free one), e.g. DEMO_LISTENER_PORT=0 DEMO_XDS_PORT=0 DEMO_METRICS_PORT=0 make demo`,
    );
  }
  return envoy;
}

// ---------------------------------------------------------------------------------------------
// The client

const QUESTION = [{ role: 'user' as const, content: 'Which provider are you?' }];

function clientFailure(err: unknown): string {
  if (err instanceof OpenAI.APIConnectionTimeoutError) return 'client timeout';
  if (err instanceof OpenAI.APIError) {
    const status = err.status === undefined ? 'no response' : `HTTP ${err.status}`;
    return `${status}: ${err.message.replace(/\s+/g, ' ').slice(0, 100)}`;
  }
  return describe(err);
}

/** Why `c` is not a chat completion as OpenAI would send it, or undefined when it is one. */
function notOpenAiFormat(c: OpenAI.ChatCompletion): string | undefined {
  // The SDK does not validate: these fields are what a translation could get wrong.
  const object: string = c.object;
  if (object !== 'chat.completion') return `object is ${JSON.stringify(object)}`;
  if (typeof c.id !== 'string' || c.id === '') return 'no id';
  const choice = c.choices[0];
  if (choice === undefined) return 'no choices';
  if (choice.message.role !== 'assistant' || typeof choice.message.content !== 'string') return 'no assistant message with content';
  if (choice.finish_reason !== 'stop') return `finish_reason is ${JSON.stringify(choice.finish_reason)}`;
  if (c.usage === undefined || !(c.usage.completion_tokens > 0)) return 'no usage';
  return undefined;
}

function askThroughGateway(client: OpenAI, members: readonly string[]): () => Promise<Answer> {
  return async () => {
    try {
      const completion = await client.chat.completions.create({ model: 'gpt-4o', messages: QUESTION });
      const problem = notOpenAiFormat(completion);
      if (problem !== undefined) return { failure: `not an OpenAI chat completion: ${problem}` };
      const content = completion.choices[0]?.message.content ?? '';
      const name = memberNamedIn(members, content);
      return name !== undefined ? { answeredBy: name } : { failure: `unexpected answer: ${JSON.stringify(content.slice(0, 60))}` };
    } catch (err) {
      return { failure: clientFailure(err) };
    }
  };
}

/**
 * One `stream: true` request: prints each chunk when it arrives and checks the stream is OpenAI's
 * (chat.completion.chunk objects, a stop, usage) and came chunk by chunk, not in one piece.
 */
function streamThroughGateway(client: OpenAI, members: readonly string[], p: Palette, report: (summary: string) => void): (print: (line: string) => void) => Promise<Answer> {
  return async (print) => {
    const started = performance.now();
    const since = (): number => performance.now() - started;
    const show = (line: string): void => print(p.cyan(`  | ${line}`));
    show(`stream: ${p.bold('one request with stream: true')}, each chunk printed as it arrives`);
    const fail = (failure: string): Answer => {
      show(p.red(`stream failed: ${failure}`));
      report(`failed: ${failure}`);
      return { failure: `stream: ${failure}` };
    };
    try {
      const stream = await client.chat.completions.create({ model: 'gpt-4o', messages: QUESTION, stream: true, stream_options: { include_usage: true } });
      let text = '';
      let chunks = 0;
      let firstWordAt: number | undefined;
      let lastAt = 0;
      let stopped = false;
      let usage = false;
      let problem: string | undefined;
      for await (const chunk of stream) {
        chunks++;
        lastAt = since();
        const object: string = chunk.object;
        if (object !== 'chat.completion.chunk') problem ??= `chunk ${chunks} has object ${JSON.stringify(object)}`;
        const choice = chunk.choices[0];
        const said: string[] = [];
        if (choice?.delta.role !== undefined) said.push(`role ${choice.delta.role}`);
        const content = choice?.delta.content;
        if (typeof content === 'string' && content !== '') {
          said.push(`content ${JSON.stringify(content)}`);
          text += content;
          firstWordAt ??= lastAt;
        }
        if (choice?.finish_reason !== undefined && choice.finish_reason !== null) {
          said.push(`finish_reason ${choice.finish_reason}`);
          stopped ||= choice.finish_reason === 'stop';
        }
        if (chunk.usage !== undefined && chunk.usage !== null) {
          said.push(`usage ${chunk.usage.prompt_tokens} in / ${chunk.usage.completion_tokens} out`);
          usage = true;
        }
        show(`${`+${Math.round(lastAt)} ms`.padStart(9)}  chunk ${chunks}: ${said.length > 0 ? said.join(', ') : '(empty)'}`);
      }
      const name = memberNamedIn(members, text);
      const spread = firstWordAt === undefined ? 0 : lastAt - firstWordAt;
      if (problem !== undefined) return fail(`not an OpenAI stream: ${problem}`);
      if (!stopped) return fail('no chunk with finish_reason stop');
      if (!usage) return fail('no usage chunk (stream_options.include_usage)');
      if (name === undefined) return fail(`unexpected answer: ${JSON.stringify(text.slice(0, 60))}`);
      // The provider writes its events STREAM_INTERVAL_MS apart: a buffered stream arrives at once.
      if (spread < 2 * STREAM_INTERVAL_MS) return fail(`the chunks arrived in one piece (${Math.round(spread)} ms from first word to end): buffered`);
      const summary = `${JSON.stringify(text)} from ${name}, ${chunks} chat.completion.chunk chunks; first word after ${Math.round(firstWordAt ?? 0)} ms, last chunk after ${Math.round(lastAt)} ms`;
      show(`stream done: ${summary}`);
      report(summary);
      return { answeredBy: name };
    } catch (err) {
      return fail(clientFailure(err));
    }
  };
}

/** The AI extension's counters for Backend ai/`backend` from the controller's /metrics, in one line. */
async function extensionCounters(backend: string): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${PORT.metrics}/metrics`)).text();
  const series = (metric: string): Array<{ labels: Map<string, string>; value: number }> =>
    text
      .split('\n')
      .filter((l) => l.startsWith(`${metric}{`))
      .map((l) => {
        const labels = new Map([...l.matchAll(/(\w+)="([^"]*)"/g)].map((m): [string, string] => [m[1] ?? '', m[2] ?? '']));
        return { labels, value: Number(l.slice(l.lastIndexOf(' ') + 1)) };
      })
      .filter((s) => s.labels.get('backend') === `ai/${backend}` && s.value > 0);
  const requests = series('switchyard_ai_requests_total').map((s) => `${s.labels.get('member') ?? '?'} ${s.value}`);
  const failovers = series('switchyard_ai_failovers_total').map((s) => `${s.labels.get('from') ?? '?'}->${s.labels.get('to') ?? '?'} ${s.value}`);
  const tokens = series('switchyard_ai_tokens_total');
  const sum = (direction: string): number => tokens.filter((s) => s.labels.get('direction') === direction).reduce((n, s) => n + s.value, 0);
  return `attempts ${requests.join(', ') || 'none'}; failovers ${failovers.join(', ') || 'none'}; tokens in ${sum('in')}, out ${sum('out')}`;
}

// ---------------------------------------------------------------------------------------------
// Main

function phaseSecondsFromEnv(): number {
  const raw = process.env['DEMO_PHASE_SECONDS'];
  if (raw === undefined || raw === '') return 7;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 2 || n > 600) throw new DemoFailure(`DEMO_PHASE_SECONDS must be a whole number of seconds from 2 to 600, got "${raw}"`);
  return n;
}

function holdMessage(p: Palette, logDir: string): string {
  const body = `'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'`;
  const tries: Array<[command: string, what: string]> = [
    [`curl -s localhost:${PORT.admin}/clusters`, 'Envoy: hosts per priority, outlier ejections'],
    [`curl -s localhost:${PORT.admin}/stats | grep backend/ai/`, 'Envoy: retries, ejections, per-code counters'],
    [`curl -s localhost:${PORT.metrics}/statusz`, 'controller: object statuses, connected Envoys'],
    [`curl -s localhost:${PORT.metrics}/metrics | grep switchyard_ai_`, 'AI extension: attempts, failures, failovers, tokens'],
  ];
  const width = Math.max(...tries.map(([command]) => command.length));
  return [
    '',
    p.bold('Everything keeps running (DEMO_HOLD=1). Try:'),
    `  curl -s localhost:${PORT.gateway}/v1/chat/completions -H 'content-type: application/json' -d ${body}`,
    `  curl -sN localhost:${PORT.gateway}/cross/v1/chat/completions -H 'content-type: application/json' -d '{"stream":true,${body.slice(2)}`,
    ...tries.map(([command, what]) => `  ${command.padEnd(width)}  ${p.dim(`# ${what}`)}`),
    `Logs: ${logDir}`,
    p.dim('Ctrl-C stops the controller, Envoy and the fake providers.'),
  ].join('\n');
}

async function main(): Promise<number> {
  const p = palette(process.stdout.isTTY === true && process.env['NO_COLOR'] === undefined);
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  const step = (line: string): void => say(`${p.dim('>')} ${line}`);
  const stop = new AbortController();
  let firstSignalAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    // One Ctrl-C can arrive twice: from the terminal and relayed by the tsx/npx wrapper.
    if (firstSignalAt !== undefined && Date.now() - firstSignalAt < 1_000) return;
    if (firstSignalAt !== undefined) {
      process.stderr.write('\nsecond interrupt: killing everything now\n');
      process.exit(130);
    }
    firstSignalAt = Date.now();
    process.stderr.write(`\n${signal}: stopping the demo...\n`);
    stop.abort(new DemoFailure('interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const phaseSeconds = phaseSecondsFromEnv();
  const hold = process.env['DEMO_HOLD'] === '1';
  const envoyBin = await preflight();
  for (const part of PARTS) {
    const names = fakesOf(part).map((f) => f.name).join(',');
    if (names !== part.members.join(',')) throw new Error(`run.ts starts fakes ${names} for Backend ${part.backend}, scenario.ts expects ${part.members.join(',')}`);
  }

  const logDir = mkdtempSync(join(tmpdir(), 'switchyard-demo-'));
  say(p.bold('Switchyard failover demo'));
  step(`logs and Envoy bootstrap in ${logDir}`);

  /** Per part, its fakes in member order. */
  const fakes = new Map<Part, FakeProvider[]>();
  const allFakes = (): FakeProvider[] => [...fakes.values()].flat();
  let outcome = 1;
  try {
    for (const part of PARTS) {
      const started: FakeProvider[] = [];
      fakes.set(part, started);
      for (const spec of fakesOf(part)) {
        started.push(
          await startFakeProvider({
            name: spec.name,
            host: '127.0.0.1',
            port: spec.port,
            ...(spec.vendor !== undefined ? { vendor: spec.vendor } : {}),
            ...(spec.streamIntervalMs !== undefined ? { streamIntervalMs: spec.streamIntervalMs } : {}),
          }),
        );
      }
      const vendors = fakesOf(part).some((f) => f.vendor !== undefined) ? ", each checking path, key header and body as its vendor's API would" : '';
      step(`fake providers for ai/${part.backend}: ${started.map((f) => `${f.name} ${f.url}`).join(', ')}${vendors}`);
    }

    const controller = startChild(
      'controller',
      process.execPath,
      [
        CLI, 'serve', '--config', demoConfig(logDir), '--xds-port', String(PORT.xds), '--metrics-port', String(PORT.metrics),
        '--ai-extension-port', String(PORT.aiExtension), '--listener-address', '127.0.0.1', '--log-level', 'warn',
      ],
      join(logDir, 'controller.log'),
    );
    await waitUntil(`the controller to be ready (http://127.0.0.1:${PORT.metrics}/readyz)`, controller, stop.signal, async () => (await fetch(`http://127.0.0.1:${PORT.metrics}/readyz`)).ok);
    step(`controller: xDS on :${PORT.xds}, AI extension (ext_proc) on :${PORT.aiExtension}, metrics and /statusz on :${PORT.metrics} (log ${controller.logPath})`);

    const bootstrap = await run(process.execPath, [CLI, 'bootstrap', '--xds', `127.0.0.1:${PORT.xds}`, '--node-id', 'demo', '--admin-port', String(PORT.admin)]);
    if (bootstrap.code !== 0) throw new DemoFailure(`switchyard bootstrap exited with code ${String(bootstrap.code)}:\n${bootstrap.stderr.trim()}`);
    const bootstrapPath = join(logDir, 'envoy-bootstrap.json');
    writeFileSync(bootstrapPath, bootstrap.stdout);

    const envoy = startChild(
      'Envoy',
      envoyBin,
      ['-c', bootstrapPath, '--concurrency', '2', '--disable-hot-restart', '--use-dynamic-base-id', '--log-level', 'info'],
      join(logDir, 'envoy.log'),
    );
    // /ready answers 200 once Envoy has its initial configuration from the controller.
    await waitUntil(`Envoy to be ready (http://127.0.0.1:${PORT.admin}/ready)`, envoy, stop.signal, async () => (await fetch(`http://127.0.0.1:${PORT.admin}/ready`)).ok);
    await waitUntil(`Envoy's listener on :${PORT.gateway} to answer`, envoy, stop.signal, async () => {
      await fetch(`http://127.0.0.1:${PORT.gateway}/`);
      return true;
    });
    step(`Envoy: gateway on :${PORT.gateway}, admin on :${PORT.admin} (log ${envoy.logPath})`);

    const clients = new Map<Part, OpenAI>();
    for (const part of PARTS) {
      // The gateway replaces this key with each member's own; no client retries: every failure shows.
      const client = new OpenAI({ baseURL: `http://127.0.0.1:${PORT.gateway}${part.path}`, apiKey: 'sk-demo-client', maxRetries: 0, timeout: 10_000 });
      clients.set(part, client);
      const first = await askThroughGateway(client, part.members)();
      if (!('answeredBy' in first)) {
        const rejected = allFakes().flatMap((f) => f.received().filter((r) => r.rejected !== undefined).map((r) => `${f.name}: ${r.rejected ?? ''}`));
        throw new DemoFailure(
          `the first request to ${part.path} failed: ${first.failure}${rejected.length > 0 ? `\nrefused by the fakes: ${rejected.slice(0, 3).join('; ')}` : ''}` +
            `\n--- last lines of ${envoy.logPath} ---\n${tail(envoy.logPath)}\n---\n--- last lines of ${controller.logPath} ---\n${tail(controller.logPath, 10)}\n---`,
        );
      }
      step(`first request to ${part.path} (Backend ai/${part.backend}) answered by ${first.answeredBy}`);
    }

    // From here a dying child ends the scenario: its numbers would say nothing about failover.
    let died: Child | undefined;
    for (const c of [controller, envoy]) {
      c.onExit(() => {
        // A terminal's Ctrl-C reaches the children too; let our own SIGINT handler win that race.
        setTimeout(() => {
          if (stop.signal.aborted) return;
          died = c;
          stop.abort(new DemoFailure(diedMessage(c, 'during the scenario')));
        }, 250);
      });
    }

    const requestsPerSecond = 10;
    const results: Array<{ part: Part; result: ScenarioResult }> = [];
    let streamSummary: string | undefined;
    for (const [index, part] of PARTS.entries()) {
      const partFakes = fakes.get(part) ?? [];
      const client = clients.get(part);
      if (client === undefined) throw new Error(`no client for ${part.backend}`);
      say('');
      say(p.bold(`Part ${index + 1}/${PARTS.length}: ${part.title}`));
      say(part.intro);
      say(
        `${p.bold('Scenario')}: ${part.phases.length} phases of ${phaseSeconds} s, the OpenAI client sends ${requestsPerSecond} chat requests/s to ` +
          `http://127.0.0.1:${PORT.gateway}${part.path} (no client retries); each member column counts the answers it gave, per second.`,
      );
      const result = await runScenario({
        part,
        phaseSeconds,
        requestsPerSecond,
        maxInFlight: 50,
        driver: {
          setModes: async (phase) => {
            await Promise.all(partFakes.map((fake) => fake.setMode(modeOf(phase, fake.name))));
          },
          send: askThroughGateway(client, part.members),
          stream: streamThroughGateway(client, part.members, p, (summary) => (streamSummary = summary)),
          attempts: () => partFakes.map((fake) => fake.received().length),
        },
        write: say,
        palette: p,
        signal: stop.signal,
      });
      if (died !== undefined || !result.completed) {
        const reason: unknown = stop.signal.reason;
        throw reason instanceof Error ? reason : new DemoFailure('the scenario was stopped');
      }
      results.push({ part, result });
    }

    say('');
    say(p.bold('Summary') + p.dim(' (requests counted in the phase they were sent in; latency as the client saw it, the stream not included; s: how long the phase lasted)'));
    const bad: Array<{ part: Part; outcomes: RequestOutcome[] }> = [];
    for (const [index, { part, result }] of results.entries()) {
      say('');
      say(p.bold(`Part ${index + 1}: Backend ai/${part.backend} via ${part.path}`) + p.dim(` (${part.members.join(' -> ')})`));
      say(summaryTable(part, result, p));
      if (part.phases.some((ph) => ph.stream === true)) say(`stream: ${streamSummary ?? 'not sent'}`);
      const refused = (fakes.get(part) ?? []).flatMap((f) => f.received().filter((r) => r.rejected !== undefined).map((r) => `${f.name}: ${r.rejected ?? ''}`));
      if (refused.length > 0) say(p.red(`${refused.length} attempts refused by the vendor fakes' checks, e.g. ${refused[0] ?? ''}`));
      if (fakesOf(part).some((f) => f.vendor !== undefined)) {
        try {
          say(`AI extension /metrics: ${await extensionCounters(part.backend)}`);
        } catch (err) {
          say(p.yellow(`AI extension /metrics unreadable: ${describe(err)}`));
        }
      }
      if (result.skipped > 0) say(p.yellow(`${result.skipped} sends skipped: 50 requests were already in flight`));
      if (result.abandoned > 0) say(p.yellow(`${result.abandoned} requests still unanswered at the end, not counted`));
      bad.push({ part, outcomes: failuresWhileHealthy(part, result.outcomes) });
    }
    say('');
    const badCount = bad.reduce((n, b) => n + b.outcomes.length, 0);
    const goal = `failed requests while at least one provider was healthy: ${badCount} (goal: 0; ${bad.map((b) => `ai/${b.part.backend} ${b.outcomes.length}`).join(', ')})`;
    if (badCount === 0) {
      say(p.bold(p.green(goal)));
      outcome = 0;
    } else {
      say(p.bold(p.red(goal)));
      for (const { part, outcomes } of bad) {
        if (outcomes.length === 0) continue;
        say(`  ai/${part.backend}:`);
        for (const { reason, count } of failureReasons(outcomes).slice(0, 8)) say(`  ${String(count).padStart(5)} x ${reason}`);
        const byPhase = part.phases
          .map((ph, i) => ({ label: ph.label, times: outcomes.filter((o) => o.phase === i).map((o) => (o.sentAt / 1000).toFixed(1)) }))
          .filter((x) => x.times.length > 0);
        for (const { label, times } of byPhase) say(`  in "${label}", sent at t=${times.slice(0, 12).join(', ')}${times.length > 12 ? ', ...' : ''} s`);
      }
      say(p.red('FAILOVER GOAL MISSED: clients saw errors although a healthy provider was available.'));
      outcome = 1;
    }

    if (hold && !stop.signal.aborted) {
      say(holdMessage(p, logDir));
      await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
    }
  } catch (err) {
    if (err instanceof DemoFailure && err.message === 'interrupted') {
      outcome = 130;
    } else {
      process.stderr.write(`\n${p.red('demo failed:')} ${err instanceof DemoFailure ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      outcome = 1;
    }
  } finally {
    step('stopping Envoy, the controller and the fake providers');
    // Envoy first, so it stops sending to providers that are about to go away.
    for (const c of [...children].reverse()) await c.stop();
    await Promise.all(allFakes().map((fake) => fake.close()));
    step(`logs kept in ${logDir}`);
  }
  return outcome;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    for (const c of children) c.kill();
    process.exit(1);
  },
);
