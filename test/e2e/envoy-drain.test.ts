import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, Agent, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { serve, type RunningServe } from '../../src/app/serve.js';
import { dataPlaneObjects, parseDataPlaneSettings } from '../../src/infrastructure/data-plane-objects.js';
import { waitDrained } from '../../src/infrastructure/envoy-drain.js';
import { EnvoyProcess } from '../../src/infrastructure/envoy-process.js';
import { createLogger } from '../../src/observability/logger.js';
import { requireEnvoyBinary, startEnvoy, type EnvoyProcess as TestEnvoy } from '../support/envoy.js';
import { staticBackend } from '../support/gateway-fixture.js';
import { kubeletPort } from '../support/kubelet-ports.js';
import { freePort, LOOPBACK_SERVE_PORTS } from '../support/ports.js';
import { E2E_LOAD_MARGIN_MS, logTiming } from '../support/timing.js';
import { waitFor } from '../support/wait.js';

/**
 * An Envoy is drained before it is stopped, with the real Envoy 1.40: a long streaming request in
 * flight when the stop begins runs to its end; a new connection after the drain began is refused
 * (host: at once) or answered with `connection: close` and then refused (`switchyard envoy-drain
 * --accept-time`, a pod's preStop); the stop ends within the drain time and a small bound.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The stream: one SSE event every STEP_MS, STEPS of them (a slow AI answer, shortened). */
const STEP_MS = 250;
const STEPS = 12;
const STREAM_MS = STEP_MS * STEPS;
/**
 * How long after the event it waits for (the stream's end, the accept time's end) a drain may end:
 * the load margin. Every drain time here that it must not wait for is 30 s, far beyond it, and a
 * stream a drain must cut runs longer than the drain time plus it.
 */
const AFTER_MS = E2E_LOAD_MARGIN_MS;

let upstream: Server;
let upstreamPort: number;
let dir: string;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    if (req.url === '/quick') {
      res.end('quick');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const steps = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('steps') ?? STEPS);
    let n = 0;
    const timer = setInterval(() => {
      res.write(`data: ${n}\n\n`);
      if (++n >= steps) {
        clearInterval(timer);
        res.end('data: [DONE]\n\n');
      }
    }, STEP_MS);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamPort = (upstream.address() as AddressInfo).port;
  dir = mkdtempSync(join(tmpdir(), 'switchyard-drain-'));
});

afterAll(async () => {
  await new Promise((resolve) => upstream.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

function bootstrap(listenerPort: number, adminPort = 0): Record<string, unknown> {
  return {
    node: { id: 'drain-test', cluster: 'drain-test' },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } },
    static_resources: {
      listeners: [{
        name: 'edge',
        address: { socket_address: { address: '127.0.0.1', port_value: listenerPort } },
        filter_chains: [{ filters: [{
          name: 'envoy.filters.network.http_connection_manager',
          typed_config: {
            '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
            stat_prefix: 'edge',
            route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'upstream', timeout: '0s' } }] }] },
            http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
          },
        }] }],
      }],
      clusters: [{
        name: 'upstream',
        type: 'STATIC',
        connect_timeout: '1s',
        load_assignment: { cluster_name: 'upstream', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: upstreamPort } } } }] }] },
      }],
    },
  };
}

interface Stream {
  /** Resolves with the events received and how the stream ended. */
  done: Promise<{ events: number; complete: boolean; error?: string; endedAt: number }>;
  /** Resolves once the first event arrived (the request is in flight). */
  started: Promise<void>;
}

/** A streaming GET through Envoy on a kept-alive connection, as an SDK client sends one. */
function stream(port: number, steps = STEPS): Stream {
  let onStart: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (onStart = resolve));
  const done = new Promise<{ events: number; complete: boolean; error?: string; endedAt: number }>((resolve) => {
    let body = '';
    const req = request({ host: '127.0.0.1', port, path: `/stream?steps=${steps}`, agent: new Agent({ keepAlive: true }) }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        onStart();
      });
      res.on('end', () => resolve({ events: (body.match(/^data: \d+$/gm) ?? []).length, complete: body.includes('[DONE]'), endedAt: Date.now() }));
      res.on('error', (err) => resolve({ events: (body.match(/^data: \d+$/gm) ?? []).length, complete: false, error: err.message, endedAt: Date.now() }));
    });
    req.on('error', (err) => resolve({ events: (body.match(/^data: \d+$/gm) ?? []).length, complete: false, error: err.message, endedAt: Date.now() }));
    req.end();
  });
  return { started, done };
}

/** One request on a new connection: its status and Connection header, or the connect error. */
function newConnection(port: number, host = '127.0.0.1'): Promise<{ status: number; connection: string } | { error: string }> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ error: 'no answer within 2 s' });
    }, 2_000);
    socket.on('connect', () => socket.write('GET /quick HTTP/1.1\r\nhost: drain.test\r\n\r\n'));
    socket.on('data', (d) => {
      data += String(d);
      if (!data.includes('\r\n\r\n')) return;
      clearTimeout(timer);
      socket.destroy();
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(data)?.[1] ?? 0);
      resolve({ status, connection: /\r\nconnection: ([^\r]*)/i.exec(data)?.[1] ?? '' });
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ error: err.code ?? err.message });
    });
  });
}

describe('EnvoyProcess.stop (serve and controller --infrastructure host): drain, then SIGTERM', () => {
  let envoy: EnvoyProcess | undefined;
  afterEach(async () => {
    await envoy?.stop();
    envoy = undefined;
  });

  const start = async (name: string, drainTimeMs: number): Promise<{ envoy: EnvoyProcess; port: number; pid: number }> => {
    const port = await freePort();
    const e = new EnvoyProcess({
      envoyPath: requireEnvoyBinary(),
      dir: join(dir, name),
      bootstrap: JSON.stringify(bootstrap(port)),
      concurrency: 1,
      drainTimeMs,
      logger: createLogger({ level: 'silent' }),
      onChange: () => undefined,
    });
    envoy = e;
    e.start();
    await waitFor(() => e.view().state === 'ready', { what: `Envoy ${name} ready`, timeoutMs: 20_000 });
    await waitFor(async () => 'status' in (await newConnection(port)), { what: `Envoy ${name} listener accepting`, timeoutMs: 10_000 });
    const pid = e.view().pid;
    if (pid === undefined) throw new Error('no pid');
    return { envoy: e, port, pid };
  };

  it('lets a long stream in flight finish, refuses a new connection at once, and stops right after the stream ends', async () => {
    const { envoy: e, port, pid } = await start('complete', 30_000);
    const s = stream(port);
    await s.started;
    const stopBegan = Date.now();
    const stopped = e.stop().then(() => Date.now());
    // The listener stops at once: no LB sits in front of an Envoy on this host.
    await waitFor(async () => {
      const r = await newConnection(port);
      return 'error' in r && r.error === 'ECONNREFUSED';
    }, { what: 'a new connection refused after the drain began', timeoutMs: AFTER_MS });
    const result = await s.done;
    const stoppedAt = await stopped;
    expect(result).toMatchObject({ events: STEPS, complete: true });
    expect(result.error).toBeUndefined();
    // Not before the stream ended, and after it rather than at the 30 s drain time (a poll of 250 ms plus SIGTERM).
    logTiming('stop ended after the stream', stoppedAt - result.endedAt);
    expect(stoppedAt).toBeGreaterThanOrEqual(result.endedAt - 50);
    expect(stoppedAt - result.endedAt).toBeLessThan(AFTER_MS);
    expect(stoppedAt - stopBegan).toBeLessThan(STREAM_MS + AFTER_MS);
    expect(processAlive(pid)).toBe(false);
  });

  it('stops within the drain time and a small bound when the stream outlasts it', async () => {
    const drainTimeMs = 1_000;
    const { envoy: e, port, pid } = await start('cut', drainTimeMs);
    // Outlasts the drain time and the margin twice over: waiting for it cannot pass for a cut.
    const s = stream(port, (2 * (drainTimeMs + AFTER_MS)) / STEP_MS);
    await s.started;
    const stopBegan = Date.now();
    await e.stop();
    const took = Date.now() - stopBegan;
    logTiming('stop with a stream outlasting the 1 s drain time', took);
    expect(took).toBeGreaterThanOrEqual(drainTimeMs);
    expect(took).toBeLessThan(drainTimeMs + AFTER_MS);
    expect(processAlive(pid)).toBe(false);
    const result = await s.done;
    expect(result.complete).toBe(false);
  });

  it('lets a successor start in the same directory (a Gateway that moves) once the old Envoy accepts no more, while the old one still drains', async () => {
    const { envoy: old, port, pid } = await start('moving', 30_000);
    const s = stream(port, 24);
    await s.started;
    const newPort = await freePort();
    let successor: EnvoyProcess | undefined;
    const successorStarted = new Promise<void>((resolve) => {
      void old.stop({
        onListenersStopped: () => {
          successor = new EnvoyProcess({
            envoyPath: requireEnvoyBinary(),
            dir: join(dir, 'moving'),
            bootstrap: JSON.stringify(bootstrap(newPort)),
            concurrency: 1,
            drainTimeMs: 30_000,
            logger: createLogger({ level: 'silent' }),
            onChange: () => undefined,
          });
          successor.start();
          resolve();
        },
      });
    });
    await successorStarted;
    const next = successor;
    if (next === undefined) throw new Error('no successor');
    try {
      await waitFor(async () => {
        const r = await newConnection(newPort);
        return 'status' in r && r.status === 200;
      }, { what: 'the successor serving its address', timeoutMs: 20_000 });
      const servedAt = Date.now();
      const result = await s.done;
      // The successor served while the old Envoy still carried the stream, which then completed.
      expect(result).toMatchObject({ events: 24, complete: true });
      expect(servedAt).toBeLessThan(result.endedAt);
      await waitFor(() => !processAlive(pid), { what: 'the old Envoy to end after its drain', timeoutMs: 5_000 });
      // The old one left the successor's pid record alone, and its own retirement record is gone.
      const successorPid = next.view().pid;
      expect(successorPid).toBeDefined();
      expect(readFileSync(join(dir, 'moving', 'envoy.pid'), 'utf8').trim()).toBe(String(successorPid));
      expect(readdirSync(join(dir, 'moving')).filter((f) => f.startsWith('retired-'))).toEqual([]);
    } finally {
      await next.stop();
    }
  });

  it('ends, at the next start, an Envoy left draining by a process that died meanwhile (and only such)', async () => {
    const where = join(dir, 'orphan');
    mkdirSync(where, { recursive: true });
    const port = await freePort();
    const text = JSON.stringify(bootstrap(port));
    writeFileSync(join(where, 'bootstrap.json'), text);
    const orphan = spawn(requireEnvoyBinary(), ['-c', join(where, 'bootstrap.json'), '--disable-hot-restart', '--use-dynamic-base-id', '--concurrency', '1', '--log-level', 'error'], { stdio: 'ignore' });
    const other = spawn(requireEnvoyBinary(), ['-c', join(where, 'bootstrap.json'), '--disable-hot-restart', '--use-dynamic-base-id', '--concurrency', '1', '--log-level', 'error', '--base-id-path', join(where, 'other')], { stdio: 'ignore' });
    try {
      await waitFor(async () => 'status' in (await newConnection(port)), { what: 'the orphan Envoy serving', timeoutMs: 20_000 });
      // Its drainer (a serve that died): a pid that is gone. The other's drainer: this live process.
      const gone = spawn('true');
      await new Promise((resolve) => gone.once('exit', resolve));
      writeFileSync(join(where, `retired-${orphan.pid ?? 0}.pid`), `${orphan.pid ?? 0}\n${gone.pid ?? 0}\n`);
      writeFileSync(join(where, `retired-${other.pid ?? 0}.pid`), `${other.pid ?? 0}\n${process.pid}\n`);
      const next = new EnvoyProcess({ envoyPath: requireEnvoyBinary(), dir: where, bootstrap: text, concurrency: 1, drainTimeMs: 0, logger: createLogger({ level: 'silent' }), onChange: () => undefined });
      envoy = next;
      next.start();
      await waitFor(() => orphan.exitCode !== null || orphan.signalCode !== null, { what: 'the orphan Envoy to be ended', timeoutMs: 10_000 });
      // Ended by our SIGTERM: Envoy exits 0 on it, or (a busy machine: still setting up its
      // handlers) dies of the signal itself.
      expect(orphan.exitCode === 0 || orphan.signalCode === 'SIGTERM').toBe(true);
      expect(other.exitCode === null && other.signalCode === null).toBe(true);
      expect(existsSync(join(where, `retired-${orphan.pid ?? 0}.pid`))).toBe(false);
    } finally {
      orphan.kill('SIGKILL');
      other.kill('SIGKILL');
    }
  });

  it('replaces an Envoy of another bootstrap (left by a previous serve) by draining it: its stream completes, the successor serves meanwhile', async () => {
    const where = join(dir, 'foreign');
    mkdirSync(where, { recursive: true });
    const port = await freePort();
    const previous = { ...bootstrap(port), node: { id: 'previous-release', cluster: 'drain-test' } };
    writeFileSync(join(where, 'bootstrap.json'), JSON.stringify(previous));
    const old = spawn(requireEnvoyBinary(), ['-c', join(where, 'bootstrap.json'), '--disable-hot-restart', '--use-dynamic-base-id', '--concurrency', '1', '--log-level', 'error', '--admin-address-path', join(where, 'admin-address'), '--drain-strategy', 'immediate'], { stdio: 'ignore' });
    try {
      writeFileSync(join(where, 'envoy.pid'), `${old.pid ?? 0}\n`);
      await waitFor(async () => 'status' in (await newConnection(port)), { what: 'the previous Envoy serving', timeoutMs: 20_000 });
      const s = stream(port, 24);
      await s.started;
      const next = new EnvoyProcess({ envoyPath: requireEnvoyBinary(), dir: where, bootstrap: JSON.stringify(bootstrap(port)), concurrency: 1, drainTimeMs: 30_000, logger: createLogger({ level: 'silent' }), onChange: () => undefined });
      envoy = next;
      next.start();
      await waitFor(() => next.view().state === 'ready', { what: 'the successor ready', timeoutMs: 20_000 });
      await waitFor(async () => {
        const r = await newConnection(port);
        return 'status' in r && r.status === 200;
      }, { what: 'new connections served (by the successor)', timeoutMs: 10_000 });
      const servedAt = Date.now();
      const result = await s.done;
      expect(result).toMatchObject({ events: 24, complete: true });
      expect(servedAt).toBeLessThan(result.endedAt);
      await waitFor(() => old.exitCode !== null, { what: 'the previous Envoy to end after its drain', timeoutMs: 5_000 });
      expect(old.exitCode).toBe(0);
      expect(readdirSync(where).filter((f) => f.startsWith('retired-'))).toEqual([]);
      expect(readFileSync(join(where, 'envoy.pid'), 'utf8').trim()).toBe(String(next.view().pid));
    } finally {
      old.kill('SIGKILL');
    }
  });

  it('stops at once when nothing is in flight', async () => {
    const { envoy: e, pid } = await start('idle', 30_000);
    const stopBegan = Date.now();
    await e.stop();
    logTiming('idle stop', Date.now() - stopBegan);
    // At once, not at the 30 s drain time.
    expect(Date.now() - stopBegan).toBeLessThan(AFTER_MS);
    expect(processAlive(pid)).toBe(false);
  });
});

describe('serve --infrastructure host: a Gateway that moves address while a stream is in flight', () => {
  it('serves the new address while the old Envoy drains the stream to its end, then ends the old Envoy', async () => {
    const where = mkdtempSync(join(tmpdir(), 'switchyard-drain-move-'));
    const config = join(where, 'config');
    mkdirSync(config);
    const port = await freePort();
    const octet = 100 + Math.floor(Math.random() * 100);
    const [first, second] = [`127.0.${octet}.11`, `127.0.${octet}.12`];
    const write = (address: string): void => {
      const docs = [
        { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'switchyard' }, spec: { controllerName: 'switchyard.dev/gateway-controller' } },
        {
          apiVersion: 'gateway.networking.k8s.io/v1',
          kind: 'Gateway',
          metadata: { name: 'edge', namespace: 'move' },
          spec: { gatewayClassName: 'switchyard', addresses: [{ type: 'IPAddress', value: address }], listeners: [{ name: 'http', protocol: 'HTTP', port, allowedRoutes: { namespaces: { from: 'Same' } } }] },
        },
        staticBackend('upstream', { host: '127.0.0.1', port: upstreamPort }, 'move'),
        {
          apiVersion: 'gateway.networking.k8s.io/v1',
          kind: 'HTTPRoute',
          metadata: { name: 'all', namespace: 'move' },
          spec: { parentRefs: [{ name: 'edge' }], rules: [{ backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: 'upstream' }], timeouts: { request: '0s' } }] },
        },
      ];
      writeFileSync(join(config, '.all.yaml.tmp'), docs.map((d) => stringify(d)).join('---\n'));
      renameSync(join(config, '.all.yaml.tmp'), join(config, 'all.yaml'));
    };
    write(first);
    let running: RunningServe | undefined;
    try {
      running = await serve({
        config,
        ...LOOPBACK_SERVE_PORTS,
        envoy: {},
        aiExtension: false,
        infrastructure: { kind: 'host', envoyPath: requireEnvoyBinary(), concurrency: 1, stateDir: join(where, 'state'), drainTimeMs: 30_000 },
        logger: createLogger({ level: 'silent' }),
      });
      const host = running.hostInfrastructure;
      if (host === undefined) throw new Error('no host infrastructure');
      const quick = (address: string): Promise<boolean> => fetch(`http://${address}:${port}/quick`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.ok, () => false);
      await waitFor(() => quick(first), { what: `the Gateway served on ${first}`, timeoutMs: 60_000, intervalMs: 200 });
      const oldPid = host.views()[0]?.pid;
      if (oldPid === undefined) throw new Error('no Envoy pid');
      // 6 s of stream, from the Envoy on the first address.
      let body = '';
      const streamed = new Promise<{ complete: boolean; endedAt: number }>((resolve) => {
        const req = request({ host: first, port, path: '/stream?steps=24' }, (res) => {
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ complete: body.includes('[DONE]'), endedAt: Date.now() }));
          res.on('error', () => resolve({ complete: false, endedAt: Date.now() }));
        });
        req.on('error', () => resolve({ complete: false, endedAt: Date.now() }));
        req.end();
      });
      await waitFor(() => body.includes('data: 0'), { what: 'the stream to start' });
      write(second);
      await waitFor(() => quick(second), { what: `the Gateway served on ${second}`, timeoutMs: 30_000, intervalMs: 100 });
      const movedAt = Date.now();
      // The old Envoy accepts no new connection any more (a kept-alive one still gets its answer,
      // with connection: close), but still carries the stream.
      // Refused, or reset when the connect reached the kernel's backlog just before Envoy's
      // workers closed the listening socket (the admin call returns before they do): not served.
      expect(['ECONNREFUSED', 'ECONNRESET']).toContain((await newConnection(port, first) as { error?: string }).error);
      expect(processAlive(oldPid)).toBe(true);
      const result = await streamed;
      expect(result.complete).toBe(true);
      expect(movedAt).toBeLessThan(result.endedAt);
      await waitFor(() => !processAlive(oldPid), { what: 'the old Envoy to end once the stream did', timeoutMs: 5_000 });
      expect(host.views()[0]).toMatchObject({ address: second, state: 'ready' });
    } finally {
      await running?.stop();
      rmSync(where, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('serve --infrastructure host: the Envoy of a Gateway gone while serve was down', () => {
  it('is drained (its stream completes, new connections refused) before it is ended and its directory removed', async () => {
    const where = mkdtempSync(join(tmpdir(), 'switchyard-drain-stale-'));
    const config = join(where, 'config');
    mkdirSync(config);
    const stale = join(where, 'state', 'envoy', 'gone_edge');
    mkdirSync(stale, { recursive: true, mode: 0o700 });
    chmodSync(join(where, 'state'), 0o700);
    const stalePort = await freePort();
    writeFileSync(join(stale, 'bootstrap.json'), JSON.stringify(bootstrap(stalePort)));
    const old = spawn(requireEnvoyBinary(), ['-c', join(stale, 'bootstrap.json'), '--disable-hot-restart', '--use-dynamic-base-id', '--concurrency', '1', '--log-level', 'error', '--admin-address-path', join(stale, 'admin-address'), '--drain-strategy', 'immediate'], { stdio: 'ignore' });
    let running: RunningServe | undefined;
    try {
      writeFileSync(join(stale, 'envoy.pid'), `${old.pid ?? 0}\n`);
      await waitFor(async () => 'status' in (await newConnection(stalePort)), { what: 'the stale Envoy serving', timeoutMs: 20_000 });
      const s = stream(stalePort, 24);
      await s.started;
      // The configuration now has another Gateway only.
      const port = await freePort();
      const docs = [
        { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'switchyard' }, spec: { controllerName: 'switchyard.dev/gateway-controller' } },
        { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'edge', namespace: 'kept' }, spec: { gatewayClassName: 'switchyard', listeners: [{ name: 'http', protocol: 'HTTP', port }] } },
      ];
      writeFileSync(join(config, 'all.yaml'), docs.map((d) => stringify(d)).join('---\n'));
      running = await serve({
        config, ...LOOPBACK_SERVE_PORTS, envoy: {}, aiExtension: false,
        infrastructure: { kind: 'host', envoyPath: requireEnvoyBinary(), concurrency: 1, stateDir: join(where, 'state'), drainTimeMs: 30_000, firstAddress: `127.0.${100 + Math.floor(Math.random() * 100)}.21` },
        logger: createLogger({ level: 'silent' }),
      });
      await waitFor(async () => {
        const r = await newConnection(stalePort);
        return 'error' in r && r.error === 'ECONNREFUSED';
      }, { what: 'the stale Envoy to stop accepting', timeoutMs: 20_000 });
      const refusedAt = Date.now();
      const result = await s.done;
      expect(result).toMatchObject({ events: 24, complete: true });
      expect(refusedAt).toBeLessThan(result.endedAt);
      await waitFor(() => old.exitCode !== null, { what: 'the stale Envoy to end after its drain', timeoutMs: 5_000 });
      expect(old.exitCode).toBe(0);
      await waitFor(() => !existsSync(stale), { what: 'its directory removed', timeoutMs: 5_000 });
    } finally {
      await running?.stop();
      old.kill('SIGKILL');
      rmSync(where, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('switchyard envoy-drain (a data plane pod\'s preStop), against a real Envoy', () => {
  let envoy: TestEnvoy | undefined;
  afterEach(async () => {
    await envoy?.stop();
    envoy = undefined;
  });

  it('accepts for --accept-time with connection: close, then refuses; the stream completes; exits 0 once drained', async () => {
    const port = await freePort();
    envoy = await startEnvoy({ bootstrap: bootstrap(port) as never, adminPort: 0, id: 'drain-cli', extraArgs: ['--drain-strategy', 'immediate'] });
    await envoy.waitForListener('edge');
    // Long enough to be in flight through the CLI's start (tsx), the accept time and the stop.
    const steps = 60;
    const s = stream(port, steps);
    await s.started;
    // Before the drain, the preStop's wait (the Envoy container's) does not end.
    expect(await waitDrained(envoy.adminUrl, 300, 100)).toBe('timeout');
    const acceptMs = 2_000;
    const cli = runCli(['envoy-drain', '--admin', envoy.adminUrl, '--accept-time', `${acceptMs}ms`, '--drain-time', '30s']);
    const waiter = waitDrained(envoy.adminUrl, 30_000, 100);
    // While accepting: served, told to close.
    await waitFor(async () => {
      const r = await newConnection(port);
      return 'status' in r && r.status === 200 && r.connection === 'close';
    }, { what: 'a new connection answered with connection: close while the listeners still accept', timeoutMs: 10_000, intervalMs: 100 });
    const drainSeen = Date.now();
    // Then refused.
    await waitFor(async () => {
      const r = await newConnection(port);
      return 'error' in r && r.error === 'ECONNREFUSED';
    }, { what: 'a new connection refused once the accept time is over', timeoutMs: acceptMs + AFTER_MS });
    const refusedAt = Date.now();
    logTiming('refused after connection: close was seen', refusedAt - drainSeen);
    expect(refusedAt - drainSeen).toBeLessThan(acceptMs + AFTER_MS);
    const result = await s.done;
    expect(result).toMatchObject({ events: steps, complete: true });
    // The stream was in flight across the drain's start and the listeners' stop.
    expect(result.endedAt).toBeGreaterThan(refusedAt);
    const { code, stderr } = await cli.exited;
    const exitedAt = Date.now();
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/drained in \d+ ms/);
    expect(await waiter).toBe('drained');
    // The drain ends with the stream (a 250 ms poll), not at the 30 s drain time.
    logTiming('envoy-drain exited after the stream', exitedAt - result.endedAt);
    expect(exitedAt - result.endedAt).toBeLessThan(AFTER_MS);
    expect(envoy.running()).toBe(true);
  });

  it('exits 1 when the drain time runs out with a request in flight, within the drain time and a small bound', async () => {
    const port = await freePort();
    envoy = await startEnvoy({ bootstrap: bootstrap(port) as never, adminPort: 0, id: 'drain-cli-cut', extraArgs: ['--drain-strategy', 'immediate'] });
    await envoy.waitForListener('edge');
    // Outlasts the drain time, the CLI's start and the margin: waiting for it cannot pass for a cut.
    const s = stream(port, (4 * (1_000 + AFTER_MS)) / STEP_MS);
    await s.started;
    const began = Date.now();
    const { code, stderr } = await runCli(['envoy-drain', '--admin', envoy.adminUrl, '--drain-time', '1s']).exited;
    const took = Date.now() - began;
    expect(code, stderr).toBe(1);
    expect(stderr).toMatch(/1 request\(s\) still in flight/);
    // Node's start (tsx) is most of it: the drain time plus twice the margin, half the stream.
    logTiming('envoy-drain cut at its 1 s drain time', took);
    expect(took).toBeLessThan(1_000 + 2 * AFTER_MS);
    await envoy.stop();
    expect((await s.done).complete).toBe(false);
  });

  it('exits 0 with a word when Envoy is already gone', async () => {
    const adminPort = await freePort();
    const { code, stderr } = await runCli(['envoy-drain', '--admin', `http://127.0.0.1:${adminPort}`, '--drain-time', '5s']).exited;
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/does not answer: nothing to drain/);
  });
});

describe('a data plane pod\'s two preStops, as the rendered Deployment runs them, against a real Envoy', () => {
  let envoy: TestEnvoy | undefined;
  let extension: ReturnType<typeof runCli> & { kill(): void } | undefined;
  afterEach(async () => {
    extension?.kill();
    await extension?.exited;
    extension = undefined;
    await envoy?.stop();
    envoy = undefined;
  });

  it('the extension\'s preStop drains, Envoy\'s GET /envoy/drained answers once the stream in flight is done', async () => {
    const [listenerPort, adminPort, extPort, metricsPort, xdsPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const settings = parseDataPlaneSettings({
      namespace: 'switchyard-system',
      xds: { host: '127.0.0.1', port: xdsPort },
      envoy: { image: 'envoyproxy/envoy:v1.40.0', adminPort, drainAcceptSeconds: 1, drainTimeoutSeconds: 30 },
      aiExtension: { image: 'switchyard', port: extPort, metricsPort },
    }, 'test');
    const pod = at(dataPlaneObjects({ namespace: 'team-a', name: 'edge', className: 'switchyard', addresses: [] }, [listenerPort], settings).deployment, 'spec', 'template', 'spec') as PodSpec;
    const envoySpec = pod.containers.find((c) => c.name === 'envoy');
    const extensionSpec = pod.containers.find((c) => c.name === 'ai-extension');
    if (envoySpec === undefined || extensionSpec === undefined) throw new Error('no envoy or ai-extension container');
    // Envoy with the container's flags that matter here (its bootstrap is this test's static one).
    envoy = await startEnvoy({ bootstrap: bootstrap(listenerPort, adminPort) as never, adminPort, id: 'pod-envoy', extraArgs: envoySpec.args.slice(envoySpec.args.indexOf('--drain-strategy'), envoySpec.args.indexOf('--drain-strategy') + 2) });
    await envoy.waitForListener('edge');
    // The extension with the container's own arguments (no controller answers its --xds: not needed here).
    const ext = runCli(extensionSpec.args, ['ignore', 'ignore', 'pipe']);
    extension = ext;
    await waitFor(async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz`).catch(() => undefined))?.ok === true, { what: 'the AI extension\'s metrics port', timeoutMs: 20_000 });
    const s = stream(listenerPort, 24);
    await s.started;
    // kubelet runs both preStops at once: Envoy's httpGet on the port kubelet resolves for it (in
    // Envoy's own container: a port name of the extension's would fail the hook), the extension's exec.
    const hook = envoySpec.lifecycle?.preStop.httpGet;
    expect(kubeletPort(envoySpec, hook?.port)).toBe(metricsPort);
    const envoyHook = fetch(`http://127.0.0.1:${kubeletPort(envoySpec, hook?.port)}${hook?.path ?? ''}`).then(async (r) => ({ status: r.status, body: await r.text(), at: Date.now() }));
    const command = extensionSpec.lifecycle?.preStop.exec?.command ?? [];
    expect(command.slice(0, 3)).toEqual(['/usr/local/bin/node', '/app/bin/switchyard.js', 'envoy-drain']);
    const drain = runCli(command.slice(2));
    // As kubelet does: the extension's container gets SIGTERM once its own preStop has ended.
    let extensionUpUntilDrainEnded = false;
    const drained = drain.exited.then(async (r) => {
      extensionUpUntilDrainEnded = (await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).ok;
      ext.kill();
      return r;
    });
    const result = await s.done;
    expect(result).toMatchObject({ events: 24, complete: true });
    const answered = await envoyHook;
    // Answered before that SIGTERM (a hook cut by it would be a FailedPreStopHook event on every stop).
    expect(answered).toMatchObject({ status: 200, body: 'drained\n' });
    // Envoy's hook ends with the stream, so kubelet's SIGTERM comes right after, not at the grace period's end.
    logTiming('Envoy\'s preStop answered after the stream', answered.at - result.endedAt);
    expect(answered.at - result.endedAt).toBeLessThan(AFTER_MS);
    expect((await drained).code).toBe(0);
    // Until the drain ended the extension served (the requests in flight need it).
    expect(extensionUpUntilDrainEnded).toBe(true);
  });
});

describe('a data plane pod without the AI extension: the drain container\'s and Envoy\'s preStops, as rendered, against a real Envoy', () => {
  let envoy: TestEnvoy | undefined;
  let sidecar: ReturnType<typeof runCli> | undefined;
  afterEach(async () => {
    sidecar?.kill();
    await sidecar?.exited;
    sidecar = undefined;
    await envoy?.stop();
    envoy = undefined;
  });

  it('the drain container\'s preStop drains (a new connection refused), Envoy\'s hook answers once the stream in flight completed', async () => {
    const [listenerPort, adminPort, drainPort, xdsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const settings = parseDataPlaneSettings({
      namespace: 'switchyard-system',
      xds: { host: '127.0.0.1', port: xdsPort },
      envoy: { image: 'envoyproxy/envoy:v1.40.0', adminPort, drainAcceptSeconds: 1, drainTimeoutSeconds: 30 },
      drainSidecar: { image: 'switchyard', port: drainPort },
    }, 'test');
    const pod = at(dataPlaneObjects({ namespace: 'team-a', name: 'plain', className: 'switchyard', addresses: [] }, [listenerPort], settings).deployment, 'spec', 'template', 'spec') as PodSpec;
    expect(pod.containers.map((c) => c.name)).toEqual(['envoy', 'drain']);
    const [envoySpec, drainSpec] = pod.containers;
    if (envoySpec === undefined || drainSpec === undefined) throw new Error('no envoy or drain container');
    envoy = await startEnvoy({ bootstrap: bootstrap(listenerPort, adminPort) as never, adminPort, id: 'pod-envoy-plain', extraArgs: envoySpec.args.slice(envoySpec.args.indexOf('--drain-strategy'), envoySpec.args.indexOf('--drain-strategy') + 2) });
    await envoy.waitForListener('edge');
    // The drain container with its own arguments, ready as its readiness probe sees it.
    const side = runCli(drainSpec.args);
    sidecar = side;
    const ready = drainSpec.readinessProbe?.httpGet;
    await waitFor(async () => (await fetch(`http://127.0.0.1:${kubeletPort(drainSpec, ready?.port)}${ready?.path ?? ''}`).catch(() => undefined))?.ok === true, { what: 'the drain container ready', timeoutMs: 20_000 });
    const s = stream(listenerPort, 24);
    await s.started;
    // Both preStops at once, as kubelet runs them.
    const hook = envoySpec.lifecycle?.preStop.httpGet;
    const envoyHook = fetch(`http://127.0.0.1:${kubeletPort(envoySpec, hook?.port)}${hook?.path ?? ''}`).then(async (r) => ({ status: r.status, body: await r.text(), at: Date.now() }));
    const command = drainSpec.lifecycle?.preStop.exec?.command ?? [];
    expect(command.slice(0, 3)).toEqual(['/usr/local/bin/node', '/app/bin/switchyard.js', 'envoy-drain']);
    const drain = runCli(command.slice(2));
    let upUntilDrainEnded = false;
    const drained = drain.exited.then(async (r) => {
      upUntilDrainEnded = (await fetch(`http://127.0.0.1:${drainPort}/healthz`)).ok;
      side.kill();
      return r;
    });
    // Once the accept time is over, a new connection is refused while the stream still runs.
    await waitFor(async () => {
      const r = await newConnection(listenerPort);
      return 'error' in r && r.error === 'ECONNREFUSED';
    }, { what: 'a new connection refused once the drain stopped the listeners', timeoutMs: 15_000, intervalMs: 100 });
    const refusedAt = Date.now();
    const result = await s.done;
    expect(result).toMatchObject({ events: 24, complete: true });
    expect(refusedAt).toBeLessThan(result.endedAt);
    const answered = await envoyHook;
    expect(answered).toMatchObject({ status: 200, body: 'drained\n' });
    // So kubelet's SIGTERM reaches Envoy right after the stream, not at the grace period's end.
    logTiming('Envoy\'s preStop answered after the stream', answered.at - result.endedAt);
    expect(answered.at - result.endedAt).toBeLessThan(AFTER_MS);
    expect(answered.at).toBeGreaterThanOrEqual(result.endedAt - 50);
    const { code, stderr } = await drained;
    expect(code, stderr).toBe(0);
    expect(upUntilDrainEnded).toBe(true);
    // The drain container stops at its SIGTERM.
    expect((await side.exited).code).toBe(0);
  });
});

interface PodSpec {
  containers: {
    name: string;
    args: string[];
    ports?: { name: string; containerPort: number }[];
    lifecycle?: { preStop: { exec?: { command: string[] }; httpGet?: { path: string; port: string | number } } };
    readinessProbe?: { httpGet?: { path: string; port: string | number } };
  }[];
}

function at(value: unknown, ...path: string[]): unknown {
  let v = value;
  for (const key of path) v = (v as Record<string, unknown> | undefined)?.[key];
  return v;
}

function runCli(args: string[], stdio: ['ignore', 'ignore', 'pipe'] = ['ignore', 'ignore', 'pipe']): { exited: Promise<{ code: number | null; stderr: string }>; kill(): void } {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, stdio });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (stderr += d));
  return { exited: new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr }))), kill: () => child.kill('SIGTERM') };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
