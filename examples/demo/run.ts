/**
 * `make demo`: three fake providers, the real controller (`switchyard serve` on examples/), the
 * real Envoy bootstrapped by `switchyard bootstrap`, and the official OpenAI client sending a steady
 * stream of chat requests through the gateway while scenario.ts makes providers fail.
 *
 *   DEMO_PHASE_SECONDS=4   shorter phases (default 12)
 *   DEMO_HOLD=1            keep everything running after the scenario, until Ctrl-C
 *   ENVOY_BIN=/path        the Envoy binary (default .toolchain/bin/envoy, from `make envoy`)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { startFakeProvider, type FakeProvider } from './fake-provider.js';
import {
  PHASES,
  PROVIDERS,
  failureReasons,
  failuresWhileHealthy,
  palette,
  providerNamedIn,
  runScenario,
  summaryTable,
  type Answer,
  type Palette,
  type ProviderName,
} from './scenario.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'bin', 'switchyard.js');
const COMPILED_CLI = join(ROOT, 'dist', 'cli', 'main.js');

const PROVIDER_PORTS: Record<ProviderName, number> = { primary: 18081, secondary: 18082, tertiary: 18083 };
const XDS_PORT = 18000;
const METRICS_PORT = 9090;
const ADMIN_PORT = 9901;
const GATEWAY_PORT = 10000;

const PORTS: ReadonlyArray<{ port: number; owner: string }> = [
  ...PROVIDERS.map((name) => ({ port: PROVIDER_PORTS[name], owner: `fake provider ${name}` })),
  { port: XDS_PORT, owner: 'controller xDS server' },
  { port: METRICS_PORT, owner: 'controller metrics/status server' },
  { port: ADMIN_PORT, owner: 'Envoy admin API' },
  { port: GATEWAY_PORT, owner: 'Envoy listener of Gateway ai/ai-gateway' },
];

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

  const taken: string[] = [];
  for (const { port, owner } of PORTS) if (!(await portIsFree(port))) taken.push(`  ${String(port).padStart(5)}  ${owner}`);
  if (taken.length > 0) {
    throw new DemoFailure(
      `the demo needs these ports, already in use:\n${taken.join('\n')}\nIs another demo still running? See who holds them: ss -ltnp`,
    );
  }
  return envoy;
}

// ---------------------------------------------------------------------------------------------
// The client

function askThroughGateway(client: OpenAI): () => Promise<Answer> {
  return async () => {
    try {
      const completion = await client.chat.completions.create({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'Which provider are you?' }],
      });
      const content = completion.choices[0]?.message.content ?? '';
      const name = providerNamedIn(content);
      return name !== undefined ? { answeredBy: name } : { failure: `unexpected answer: ${JSON.stringify(content.slice(0, 60))}` };
    } catch (err) {
      if (err instanceof OpenAI.APIConnectionTimeoutError) return { failure: 'client timeout' };
      if (err instanceof OpenAI.APIError) {
        const status = err.status === undefined ? 'no response' : `HTTP ${err.status}`;
        return { failure: `${status}: ${err.message.replace(/\s+/g, ' ').slice(0, 100)}` };
      }
      return { failure: describe(err) };
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Main

function phaseSecondsFromEnv(): number {
  const raw = process.env['DEMO_PHASE_SECONDS'];
  if (raw === undefined || raw === '') return 12;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 2 || n > 600) throw new DemoFailure(`DEMO_PHASE_SECONDS must be a whole number of seconds from 2 to 600, got "${raw}"`);
  return n;
}

function holdMessage(p: Palette, logDir: string): string {
  const body = `'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}'`;
  const tries: Array<[command: string, what: string]> = [
    [`curl -s localhost:${ADMIN_PORT}/clusters`, 'Envoy: hosts per priority, outlier ejections'],
    [`curl -s localhost:${ADMIN_PORT}/stats | grep backend/ai/chat`, 'Envoy: retries, ejections, per-code counters'],
    [`curl -s localhost:${METRICS_PORT}/statusz`, 'controller: object statuses, connected Envoys'],
    [`curl -s localhost:${METRICS_PORT}/metrics`, 'controller: Prometheus metrics'],
  ];
  const width = Math.max(...tries.map(([command]) => command.length));
  return [
    '',
    p.bold('Everything keeps running (DEMO_HOLD=1). Try:'),
    `  curl -s localhost:${GATEWAY_PORT}/v1/chat/completions -H 'content-type: application/json' -d ${body}`,
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

  const logDir = mkdtempSync(join(tmpdir(), 'switchyard-demo-'));
  say(p.bold('Switchyard failover demo'));
  step(`logs and Envoy bootstrap in ${logDir}`);

  const fakes: Array<{ name: ProviderName; fake: FakeProvider }> = [];
  let outcome = 1;
  try {
    for (const name of PROVIDERS) fakes.push({ name, fake: await startFakeProvider({ name, host: '127.0.0.1', port: PROVIDER_PORTS[name] }) });
    step(`fake providers: ${fakes.map(({ name, fake }) => `${name} ${fake.url}`).join(', ')}`);

    const controller = startChild(
      'controller',
      process.execPath,
      [CLI, 'serve', '--config', 'examples', '--xds-port', String(XDS_PORT), '--metrics-port', String(METRICS_PORT), '--listener-address', '127.0.0.1', '--log-level', 'warn'],
      join(logDir, 'controller.log'),
    );
    await waitUntil(`the controller to be ready (http://127.0.0.1:${METRICS_PORT}/readyz)`, controller, stop.signal, async () => (await fetch(`http://127.0.0.1:${METRICS_PORT}/readyz`)).ok);
    step(`controller: xDS on :${XDS_PORT}, metrics and /statusz on :${METRICS_PORT} (log ${controller.logPath})`);

    const bootstrap = await run(process.execPath, [CLI, 'bootstrap', '--xds', `127.0.0.1:${XDS_PORT}`, '--node-id', 'demo', '--admin-port', String(ADMIN_PORT)]);
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
    await waitUntil(`Envoy to be ready (http://127.0.0.1:${ADMIN_PORT}/ready)`, envoy, stop.signal, async () => (await fetch(`http://127.0.0.1:${ADMIN_PORT}/ready`)).ok);
    await waitUntil(`Envoy's listener on :${GATEWAY_PORT} to answer`, envoy, stop.signal, async () => {
      await fetch(`http://127.0.0.1:${GATEWAY_PORT}/`);
      return true;
    });
    step(`Envoy: gateway on :${GATEWAY_PORT}, admin on :${ADMIN_PORT} (log ${envoy.logPath})`);

    const client = new OpenAI({ baseURL: `http://127.0.0.1:${GATEWAY_PORT}/v1`, apiKey: 'sk-demo', maxRetries: 0, timeout: 10_000 });
    const ask = askThroughGateway(client);
    const first = await ask();
    if (!('answeredBy' in first)) throw new DemoFailure(`the first request through the gateway failed: ${first.failure}\n--- last lines of ${envoy.logPath} ---\n${tail(envoy.logPath)}\n---`);
    step(`first request through the gateway answered by ${first.answeredBy}`);

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
    say('');
    say(
      `${p.bold('Scenario')}: ${PHASES.length} phases of ${phaseSeconds} s, the OpenAI client sends ${requestsPerSecond} chat requests/s to http://127.0.0.1:${GATEWAY_PORT}/v1 ` +
        `(no client retries); each column counts the answers of one priority, per second.`,
    );
    const result = await runScenario({
      phases: PHASES,
      phaseSeconds,
      requestsPerSecond,
      maxInFlight: 50,
      driver: {
        setModes: async (modes) => {
          await Promise.all(fakes.map(({ name, fake }) => fake.setMode(modes[name])));
        },
        send: ask,
        attempts: () => {
          const seen = { primary: 0, secondary: 0, tertiary: 0 };
          for (const { name, fake } of fakes) seen[name] = fake.received().length;
          return seen;
        },
      },
      write: say,
      palette: p,
      signal: stop.signal,
    });
    if (died !== undefined || !result.completed) {
      const reason: unknown = stop.signal.reason;
      throw reason instanceof Error ? reason : new DemoFailure('the scenario was stopped');
    }

    const bad = failuresWhileHealthy(PHASES, result.outcomes);
    say('');
    say(p.bold('Summary') + p.dim(' (requests counted in the phase they were sent in; latency as the client saw it)'));
    say(summaryTable(PHASES, result.outcomes, result.attempts, p));
    if (result.skipped > 0) say(p.yellow(`${result.skipped} sends skipped: 50 requests were already in flight`));
    if (result.abandoned > 0) say(p.yellow(`${result.abandoned} requests still unanswered at the end, not counted`));
    say('');
    const goal = `failed requests while at least one priority was healthy: ${bad.length} (goal: 0)`;
    if (bad.length === 0) {
      say(p.bold(p.green(goal)));
      outcome = 0;
    } else {
      say(p.bold(p.red(goal)));
      for (const { reason, count } of failureReasons(bad).slice(0, 8)) say(`  ${String(count).padStart(5)} x ${reason}`);
      const byPhase = PHASES.map((ph, i) => ({ label: ph.label, times: bad.filter((o) => o.phase === i).map((o) => (o.sentAt / 1000).toFixed(1)) })).filter((x) => x.times.length > 0);
      for (const { label, times } of byPhase) say(`  in "${label}", sent at t=${times.slice(0, 12).join(', ')}${times.length > 12 ? ', ...' : ''} s`);
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
    await Promise.all(fakes.map(({ fake }) => fake.close()));
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
