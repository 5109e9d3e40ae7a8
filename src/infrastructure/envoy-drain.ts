/**
 * Taking an Envoy away without cutting what it carries (an AI stream may last minutes): the
 * drain that runs before SIGTERM, in `serve`/`controller --infrastructure host` (EnvoyProcess.stop)
 * and in a data plane pod's preStop (`switchyard envoy-drain`, src/infrastructure/data-plane-objects.ts).
 *
 * What Envoy 1.40 does, seen against the real binary (test/e2e/envoy-drain.test.ts):
 * - `POST /drain_listeners?graceful` starts the drain sequence: with `--drain-strategy immediate`
 *   every HTTP/1 response from then on says `connection: close` (HTTP/2 gets GOAWAY); the listeners
 *   keep accepting until `--drain-time-s` (600 s unless set) has passed.
 * - `POST /drain_listeners` stops every listener at once (a new connection is refused) and leaves
 *   open connections alone: a request in flight runs to its end.
 * - An idle keep-alive connection stays open after both: what is waited for is requests in flight
 *   (`http.<prefix>.downstream_rq_active`), not connections.
 * Peers do the same in their shutdown managers (Envoy Gateway, Contour): drain, wait for the
 * traffic to reach zero or a deadline, then let SIGTERM through.
 */

/** How long requests in flight get by default: AI streams run for minutes, most end well within this. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 60_000;
const POLL_MS = 250;
const ADMIN_TIMEOUT_MS = 2_000;

// node:http, not fetch: fetch loads Node's bundled undici, some 5 MB more resident in the drain
// sidecar after its first /envoy/drained and some 13 MB more in `switchyard envoy-drain` (a
// preStop, in the same container). An ES module import of node:http would load undici as well.
const { request: httpRequest } = process.getBuiltinModule('node:http');

/** One request to Envoy's admin API, without keep-alive; rejects when it does not answer in time. */
function adminRequest(url: string, method: 'GET' | 'POST'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, agent: false, timeout: ADMIN_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within ${ADMIN_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export interface DrainOptions {
  /** Envoy's admin API, `http://HOST:PORT` (loopback: it can stop Envoy). */
  adminUrl: string;
  /**
   * How long listeners keep accepting, each new connection told to close, before they stop:
   * time for a load balancer to stop sending here (a Kubernetes endpoint removal takes seconds).
   * 0: stop accepting at once (an Envoy on this host has no load balancer in front).
   */
  acceptMs: number;
  /** The longest wait for the requests in flight to end, counted once the listeners stopped. */
  timeoutMs: number;
  pollMs?: number;
  /** Progress, one line per phase (the CLI prints them). */
  onProgress?: (line: string) => void;
  /** Called once the listeners stopped (or Envoy is found gone): the address is free for a successor. */
  onListenersStopped?: () => void;
}

export interface DrainResult {
  /** No request was left in flight (or Envoy was gone). */
  drained: boolean;
  /** Requests still in flight when the wait ended. */
  inFlight: number;
  /** From the first admin call to the end. */
  tookMs: number;
  /** Envoy's admin API did not answer (Envoy already stopped, or never started). */
  envoyGone: boolean;
}

export interface DrainState {
  /** Listeners Envoy stopped (listener_manager.listener_stopped). */
  listenersStopped: number;
  /** Requests in flight on every HTTP connection manager but the admin API's. */
  inFlight: number;
}

/** The drain as Envoy's stats tell it; undefined when the admin API does not answer. */
export async function drainState(adminUrl: string): Promise<DrainState | undefined> {
  const filter = encodeURIComponent('^listener_manager\\.listener_stopped$|^http\\..*\\.downstream_rq_active$');
  let body: unknown;
  try {
    const res = await adminRequest(`${adminUrl}/stats?format=json&filter=${filter}`, 'GET');
    if (res.status < 200 || res.status > 299) return undefined;
    body = JSON.parse(res.body) as unknown;
  } catch {
    return undefined;
  }
  const stats = typeof body === 'object' && body !== null ? (body as { stats?: unknown }).stats : undefined;
  const state: DrainState = { listenersStopped: 0, inFlight: 0 };
  if (!Array.isArray(stats)) return state;
  for (const entry of stats as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const { name, value } = entry as { name?: unknown; value?: unknown };
    if (typeof name !== 'string' || typeof value !== 'number') continue;
    if (name === 'listener_manager.listener_stopped') state.listenersStopped = value;
    // The admin API's own request (this one) is no traffic.
    else if (name !== 'http.admin.downstream_rq_active') state.inFlight += value;
  }
  return state;
}

async function post(adminUrl: string, path: string): Promise<boolean> {
  try {
    const res = await adminRequest(`${adminUrl}${path}`, 'POST');
    if (res.status < 200 || res.status > 299) throw new Error(`Envoy admin POST ${path}: HTTP ${res.status}: ${res.body.slice(0, 300)}`);
    return true;
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('Envoy admin')) throw err;
    return false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Drains the Envoy at `adminUrl`: tells its connections to close, stops its listeners after
 * `acceptMs`, then waits up to `timeoutMs` for its requests in flight to end. Resolves (never
 * rejects for a gone Envoy: there is nothing left to drain); the caller sends SIGTERM after.
 */
export async function drainEnvoy(opts: DrainOptions): Promise<DrainResult> {
  const started = Date.now();
  const progress = opts.onProgress ?? (() => undefined);
  const poll = opts.pollMs ?? POLL_MS;
  const gone = (): DrainResult => {
    opts.onListenersStopped?.();
    return { drained: true, inFlight: 0, tookMs: Date.now() - started, envoyGone: true };
  };
  if (!(await post(opts.adminUrl, '/drain_listeners?graceful'))) return gone();
  if (opts.acceptMs > 0) {
    progress(`draining: new connections still accepted for ${opts.acceptMs} ms, each told to close`);
    await sleep(opts.acceptMs);
  }
  if (!(await post(opts.adminUrl, '/drain_listeners'))) return gone();
  opts.onListenersStopped?.();
  const deadline = Date.now() + opts.timeoutMs;
  let state = await drainState(opts.adminUrl);
  if (state === undefined) return gone();
  progress(`listeners stopped; ${state.inFlight} request(s) in flight, waiting up to ${opts.timeoutMs} ms for them`);
  while (state.inFlight > 0 && Date.now() < deadline) {
    await sleep(Math.min(poll, Math.max(0, deadline - Date.now())));
    const next = await drainState(opts.adminUrl);
    if (next === undefined) return gone();
    state = next;
  }
  const result = { drained: state.inFlight === 0, inFlight: state.inFlight, tookMs: Date.now() - started, envoyGone: false };
  progress(result.drained ? `drained in ${result.tookMs} ms` : `drain time over: ${result.inFlight} request(s) still in flight are cut by the stop`);
  return result;
}

/**
 * Waits, without starting anything, until the Envoy at `adminUrl` has drained (its listeners
 * stopped and no request in flight) or is gone, at most `timeoutMs`: what the Envoy container's
 * preStop waits on while the drain runs in the AI extension's (Envoy's image has no client to run
 * it). Whoever calls it can only make it wait.
 */
export async function waitDrained(adminUrl: string, timeoutMs: number, pollMs = POLL_MS): Promise<'drained' | 'gone' | 'timeout'> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await drainState(adminUrl);
    if (state === undefined) return 'gone';
    if (state.listenersStopped > 0 && state.inFlight === 0) return 'drained';
    if (Date.now() >= deadline) return 'timeout';
    await sleep(Math.min(pollMs, Math.max(0, deadline - Date.now())));
  }
}
