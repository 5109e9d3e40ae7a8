import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI, { APIError } from 'openai';
import { stringify } from 'yaml';
import { startFakeProvider, type FakeProvider, type FakeProviderOptions, type ReceivedRequest } from '../../examples/demo/fake-provider.js';
import type { Condition } from '../../src/api/conditions.js';
import type { ServingOptions } from '../../src/app/gateway-runtime.js';
import { serve, type RunningServe } from '../../src/app/serve.js';
import { ATTEMPT_FACTS_NODE_METADATA, buildBootstrap } from '../../src/envoy/bootstrap.js';
import type { EnvoyOptions } from '../../src/envoy/options.js';
import type { JsonObject, JsonValue } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import type { ObjectStatus } from '../../src/translate/status.js';
import { startEnvoy, type EnvoyProcess } from './envoy.js';
import { freePort, LOOPBACK_SERVE_PORTS } from './ports.js';
import { waitFor } from './wait.js';

/**
 * One gateway under test: fake LLM providers, manifests in a temp directory, the real controller
 * (serve()) watching that directory and a real Envoy fed by it. Everything listens on free ports.
 */

export const NAMESPACE = 'ai';
export const GATEWAY = 'ai-gateway';

export type Manifest = JsonObject;

/** A pool member played by a fake provider, reached through hostOverride under its own hostname. */
export interface FakeMember {
  /** Only its address is used: a fake in another process (the ai-extension bench) will do. */
  fake: Pick<FakeProvider, 'host' | 'port'>;
  /** Host header (and SNI) the member must see. */
  hostname: string;
  name?: string;
  model?: string;
  /** Name of the Secret holding its key; absent: no authToken. */
  secret?: string;
  /** The member's chat completions path (openaiCompatible `path`); absent: the provider default. */
  path?: string;
  /** The member's `limits` (requestsPerMinute, tokensPerMinute). */
  limits?: JsonObject;
  /** The member's `weight` in its pool. */
  weight?: number;
}

export interface BackendOptions {
  name: string;
  /** One pool per priority, priority 0 first; a single pool with a single member and `llm: true` gives an `llm` Backend. */
  priorities: FakeMember[][];
  llm?: boolean;
  retry?: JsonObject;
  outlierDetection?: JsonObject;
}

export interface RouteRule {
  /** PathPrefix to match. */
  path: string;
  backend: string;
  /** ReplacePrefixMatch for the matched prefix. */
  rewritePrefix?: string;
  timeouts?: { request?: string; backendRequest?: string };
}

function member(m: FakeMember): JsonObject {
  const provider: JsonObject = {
    host: m.hostname,
    port: 80,
    tls: false,
    ...(m.model ? { model: m.model } : {}),
    ...(m.path ? { path: m.path } : {}),
    ...(m.secret ? { authToken: { kind: 'SecretRef', secretRef: { name: m.secret } } } : {}),
  };
  return {
    ...(m.name ? { name: m.name } : {}),
    provider: { openaiCompatible: provider },
    hostOverride: { host: m.fake.host, port: m.fake.port },
    ...(m.limits ? { limits: m.limits } : {}),
    ...(m.weight !== undefined ? { weight: m.weight } : {}),
  };
}

export function aiBackend(o: BackendOptions): Manifest {
  const ai: JsonObject = o.llm
    ? { llm: omitName(member(onlyMember(o))) }
    : { multipool: { priorities: o.priorities.map((pool) => ({ pool: pool.map(member) })) } };
  return {
    apiVersion: 'switchyard.dev/v1alpha1',
    kind: 'Backend',
    metadata: { name: o.name, namespace: NAMESPACE },
    spec: {
      type: 'AI',
      ai,
      ...(o.retry ? { retry: o.retry } : {}),
      ...(o.outlierDetection ? { outlierDetection: o.outlierDetection } : {}),
    },
  };
}

function onlyMember(o: BackendOptions): FakeMember {
  const m = o.priorities[0]?.[0];
  if (o.priorities.length !== 1 || o.priorities[0]?.length !== 1 || !m) throw new Error(`llm Backend ${o.name} takes exactly one member`);
  return m;
}

function omitName(m: JsonObject): JsonObject {
  const { name: _name, ...rest } = m;
  return rest;
}

/** A Static Backend with one host: no AI extension on its path, its host's metadata names it. */
export function staticBackend(name: string, host: { host: string; port: number }, namespace: string = NAMESPACE): Manifest {
  return { apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name, namespace }, spec: { type: 'Static', static: { priorities: [{ hosts: [{ host: host.host, port: host.port }] }] } } };
}

export function secret(name: string, authorization: string): Manifest {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: NAMESPACE }, stringData: { Authorization: authorization } };
}

export function gatewayManifests(listenerPort: number): Manifest[] {
  return [
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'GatewayClass',
      metadata: { name: 'switchyard' },
      spec: { controllerName: 'switchyard.dev/gateway-controller' },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: GATEWAY, namespace: NAMESPACE },
      spec: {
        gatewayClassName: 'switchyard',
        listeners: [{ name: 'http', protocol: 'HTTP', port: listenerPort, allowedRoutes: { namespaces: { from: 'Same' } } }],
      },
    },
  ];
}

/**
 * A new config folder for serve (under the temp dir, named from `prefix`) with the Gateway, an
 * OpenAI Backend `chat` whose Secret `openai-key` holds `Bearer <key>`, and a route /v1 to it: a
 * serve holding one provider key, for the tests of who may receive it over xDS.
 */
export async function openAiKeyConfigDir(prefix: string, key: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const manifests: Manifest[] = [
    ...gatewayManifests(await freePort()),
    secret('openai-key', `Bearer ${key}`),
    {
      apiVersion: 'switchyard.dev/v1alpha1',
      kind: 'Backend',
      metadata: { name: 'chat', namespace: NAMESPACE },
      spec: { type: 'AI', ai: { llm: { provider: { openai: { model: 'gpt-4o', authToken: { kind: 'SecretRef', secretRef: { name: 'openai-key' } } } } } } },
    },
    httpRoute('chat', [{ path: '/v1', backend: 'chat' }]),
  ];
  writeFileSync(join(dir, 'all.yaml'), manifests.map((m) => stringify(m)).join('---\n'));
  return dir;
}

export function httpRoute(name: string, rules: RouteRule[]): Manifest {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name, namespace: NAMESPACE },
    spec: {
      parentRefs: [{ name: GATEWAY }],
      rules: rules.map((r) => ({
        matches: [{ path: { type: 'PathPrefix', value: r.path } }],
        ...(r.rewritePrefix
          ? { filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: r.rewritePrefix } } }] }
          : {}),
        ...(r.timeouts ? { timeouts: r.timeouts } : {}),
        backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: r.backend }],
      })),
    },
  };
}

/** An HTTPRoute on the fixture's Gateway matching one RegularExpression path, to `backend`. */
export function regexRoute(name: string, regex: string, backend: string): Manifest {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name, namespace: NAMESPACE },
    spec: { parentRefs: [{ name: GATEWAY }], rules: [{ matches: [{ path: { type: 'RegularExpression', value: regex } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: backend }] }] },
  };
}

/** A route's Accepted condition on its first parent, as the fixture's controller reports it. */
export function routeAccepted(gw: GatewayFixture, route: string): { status?: string; reason?: string; message?: string } {
  const s = gw.status('HTTPRoute', route);
  const parent = s && 'parents' in s ? s.parents[0] : undefined;
  return parent?.conditions.find((c) => c.type === 'Accepted') ?? {};
}

export function clusterName(backend: string): string {
  return `backend/${NAMESPACE}/${backend}`;
}

/** One host of a cluster as Envoy's /clusters reports it. */
export interface ClusterHost {
  address: string;
  port: number;
  hostname: string;
  priority: number;
  /** e.g. `failed_outlier_check` when set in health_status. */
  healthFlags: string[];
  stats: Record<string, number>;
}

export interface ChatAnswer {
  content: string;
  /** The fake provider that answered (its `x-fake-provider` header). */
  answeredBy: string | null;
  elapsedMs: number;
}

export interface ChatFailure {
  /** HTTP status the client got; undefined for a connection-level failure. */
  status: number | undefined;
  /** The client's error message (it quotes the response body). */
  message: string;
  elapsedMs: number;
}

export interface GatewayFixtureOptions {
  /** Names Envoy's node and temp files. */
  id: string;
  /** Names of the fake providers to start (each answers `answered by <name>`). */
  providers: string[];
  /** Manifest files (name → documents) written before the controller starts. */
  manifests(ctx: { listenerPort: number; fakes: Record<string, FakeProvider> }): Record<string, Manifest[]>;
  /** Backends whose clusters must have hosts in Envoy before the fixture is ready. */
  waitForBackends?: string[];
  /** Per fake provider (by name): TLS, vendor checks, streaming pace... */
  fakeOptions?: Record<string, Omit<FakeProviderOptions, 'name'>>;
  /** Envoy-stage options on top of the fixture's (e.g. trustedCaFile for TLS fakes). */
  envoy?: Partial<EnvoyOptions>;
  /** More flags for the Envoy process. */
  envoyArgs?: string[];
  /** Envoy's worker threads (default 1). */
  envoyConcurrency?: number;
  /** The controller's log lines (JSON), also kept for failure reports. */
  logLines?: string[];
  /** Bootstrap Envoy as the data plane of Gateway ai/ai-gateway only (--gateway); default: every Gateway. */
  ownGateway?: boolean;
  /** Load reporting pace (short in tests that watch member health). */
  loadReporting?: ServingOptions['loadReporting'];
  /** Envoy speaks incremental (delta) xDS instead of state-of-the-world. */
  delta?: boolean;
  /** The runtime's test seam: rewrites translation output before the quarantine (make Envoy reject what translation accepts). */
  testOnlyRewrite?: ServingOptions['testOnlyRewrite'];
  /** The in-process AI extension shares member limit counts through this Redis. */
  limitsRedis?: string;
  /** serve runs the AI extension in a child process of its own (state in the fixture's directory) instead of in process. */
  aiExtensionChild?: boolean;
  /** Envoy writes its outlier ejections to a file that serve follows (per-member cool-down logs and metrics). */
  outlierEventLog?: boolean;
  /**
   * serve warms every AI member's connection (src/app/ai-warmup.ts), as it does by default.
   * Off unless asked here: the other e2e files count Envoy's cluster stats and measure cold
   * connections, which the warm-up requests would change.
   */
  aiWarmup?: boolean | { refreshMs: number };
  /** Envoy's bootstrap as the release before the member facts string wrote it: without the switchyard.dev/attempt-facts node metadata. */
  previousReleaseBootstrap?: boolean;
}

/** A bootstrap of the release before the member facts string: the same, without the node metadata that says the extension reads it. */
export function previousReleaseBootstrap(bootstrap: JsonObject): JsonObject {
  const node = { ...(bootstrap['node'] as JsonObject) };
  const metadata = { ...((node['metadata'] as JsonObject | undefined) ?? {}) };
  delete metadata[ATTEMPT_FACTS_NODE_METADATA];
  if (Object.keys(metadata).length > 0) node['metadata'] = metadata;
  else delete node['metadata'];
  return { ...bootstrap, node };
}

export interface GatewayFixture {
  dir: string;
  listenerPort: number;
  fakes: Record<string, FakeProvider>;
  controller: RunningServe;
  /** The controller's statuses after its first translation, before any Envoy connected. */
  statusesBeforeEnvoy: ObjectStatus[];
  envoy: EnvoyProcess;
  /** Writes a manifest file atomically (write + rename, as editors and ConfigMap mounts do); returns when it was renamed into place. */
  write(file: string, docs: Manifest[]): number;
  /** The official OpenAI client pointed at the gateway; `prefix` is the route's path prefix. */
  client(prefix?: string): OpenAI;
  /** One chat completion through Envoy. */
  chat(prefix?: string): Promise<ChatAnswer>;
  /** One chat completion through Envoy that must fail: what the client saw. */
  chatFailure(prefix?: string): Promise<ChatFailure>;
  /** Fakes' ok/status/... modes and recordings back to a clean `ok`. */
  resetFakes(): Promise<void>;
  status(kind: string, name: string): ObjectStatus | undefined;
  condition(kind: string, name: string, type: string): Condition | undefined;
  hosts(backend: string): Promise<ClusterHost[]>;
  /** A cluster stat, e.g. `upstream_rq_retry`; 0 while Envoy has not created it. */
  clusterStat(backend: string, stat: string): Promise<number>;
  /** Waits until Envoy has exactly these hosts (port → priority) in the Backend's cluster. */
  waitForHosts(backend: string, expected: Map<number, number>, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startGatewayFixture(opts: GatewayFixtureOptions): Promise<GatewayFixture> {
  const dir = mkdtempSync(join(tmpdir(), `switchyard-e2e-${opts.id}-`));
  // Beside the configuration directory, not in it: serve reads every file there as configuration.
  const extensionState = opts.aiExtensionChild === true ? mkdtempSync(join(tmpdir(), `switchyard-e2e-${opts.id}-state-`)) : undefined;
  const fakes: Record<string, FakeProvider> = {};
  const logLines: string[] = opts.logLines ?? [];
  let controller: RunningServe | undefined;
  let envoy: EnvoyProcess | undefined;

  /** Stops everything that was started, even when one part fails to stop, then reports the first failure. */
  const stop = async (): Promise<void> => {
    const results = [
      ...(await Promise.allSettled([envoy?.stop()])),
      ...(await Promise.allSettled([controller?.stop()])),
      ...(await Promise.allSettled(Object.values(fakes).map((f) => f.close()))),
    ];
    rmSync(dir, { recursive: true, force: true });
    if (extensionState !== undefined) rmSync(extensionState, { recursive: true, force: true });
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  };

  const write = (file: string, docs: Manifest[]): number => {
    const tmp = join(dir, `.${file}.tmp`);
    writeFileSync(tmp, docs.map((d) => stringify(d)).join('---\n'));
    renameSync(tmp, join(dir, file));
    return Date.now();
  };

  try {
    for (const name of opts.providers) fakes[name] = await startFakeProvider({ ...opts.fakeOptions?.[name], name });
    const listenerPort = await freePort();
    // Known before serve starts: it asks Envoy's admin API which member an outlier event is about.
    const adminPort = await freePort();
    for (const [file, docs] of Object.entries(opts.manifests({ listenerPort, fakes }))) write(file, docs);

    controller = await serve({
      config: dir,
      ...LOOPBACK_SERVE_PORTS,
      envoy: { listenerAddress: '127.0.0.1', ...opts.envoy },
      ...(opts.limitsRedis !== undefined ? { aiExtension: { port: 0, limitsRedis: opts.limitsRedis } } : {}),
      ...(extensionState !== undefined ? { aiExtension: { port: 0, child: { stateDir: extensionState } } } : {}),
      ...(opts.aiWarmup === true ? {} : { aiWarmup: opts.aiWarmup ?? (false as const) }),
      ...(opts.outlierEventLog === true ? { outlierEventLogs: [{ path: join(dir, 'outlier-events.log'), adminUrl: `http://127.0.0.1:${adminPort}` }] } : {}),
      ...(opts.loadReporting ? { loadReporting: opts.loadReporting } : {}),
      ...(opts.testOnlyRewrite ? { testOnlyRewrite: opts.testOnlyRewrite } : {}),
      logger: createLogger({ level: 'info', name: opts.id }, { write: (line: string) => void logLines.push(line) }),
    });
    const problems = controller.problems();
    if (problems.length > 0) throw new Error(`the test manifests have problems: ${JSON.stringify(problems)}`);

    const statusesBeforeEnvoy = structuredClone(controller.statuses());

    const bootstrap = buildBootstrap({ xds: { host: '127.0.0.1', port: controller.xdsPort }, nodeId: opts.id, adminPort, ...(opts.outlierEventLog === true ? { outlierEventLog: join(dir, 'outlier-events.log') } : {}), ...(opts.ownGateway === true ? { gateway: `${NAMESPACE}/${GATEWAY}` } : {}), ...(opts.delta === true ? { delta: true } : {}) });
    envoy = await startEnvoy({
      bootstrap: opts.previousReleaseBootstrap === true ? previousReleaseBootstrap(bootstrap) : bootstrap,
      adminPort,
      id: opts.id,
      ...(opts.envoyArgs ? { extraArgs: opts.envoyArgs } : {}),
      ...(opts.envoyConcurrency !== undefined ? { concurrency: opts.envoyConcurrency } : {}),
    });
    await envoy.waitForListener(`${NAMESPACE}/${GATEWAY}/${listenerPort}`);

    const running = envoy;
    const served = controller;
    const hosts = async (backend: string): Promise<ClusterHost[]> => parseHosts(await running.clusters(), clusterName(backend));
    const fixture: GatewayFixture = {
      dir,
      listenerPort,
      fakes,
      controller,
      statusesBeforeEnvoy,
      envoy,
      write,
      client: (prefix = '/v1') => new OpenAI({ baseURL: `http://127.0.0.1:${listenerPort}${prefix}`, apiKey: 'sk-client', maxRetries: 0, timeout: 20_000 }),
      chat: async (prefix) => {
        const started = performance.now();
        const { data, response } = await fixture
          .client(prefix)
          .chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] })
          .withResponse();
        return {
          content: data.choices[0]?.message.content ?? '',
          answeredBy: response.headers.get('x-fake-provider'),
          elapsedMs: performance.now() - started,
        };
      },
      chatFailure: async (prefix) => {
        const started = performance.now();
        try {
          const answer = await fixture.chat(prefix);
          throw new Error(`expected the request to fail, but ${answer.answeredBy ?? 'someone'} answered: ${answer.content}`);
        } catch (err) {
          if (!(err instanceof APIError)) throw err;
          return { status: err.status, message: err.message, elapsedMs: performance.now() - started };
        }
      },
      resetFakes: async () => {
        for (const f of Object.values(fakes)) {
          await f.setMode('ok');
          f.clear();
        }
      },
      status: (kind, name) => served.statuses().find((s) => s.kind === kind && s.name === name && s.namespace === NAMESPACE),
      condition: (kind, name, type) => {
        const s = fixture.status(kind, name);
        return s && 'conditions' in s ? s.conditions.find((c) => c.type === type) : undefined;
      },
      hosts,
      clusterStat: async (backend, stat) => (await running.stat(`cluster.${clusterName(backend)}.${stat}`)) ?? 0,
      waitForHosts: async (backend, expected, timeoutMs = 10_000) => {
        const want = [...expected.entries()].sort(([a], [b]) => a - b);
        await waitFor(
          async () => {
            const got = (await hosts(backend)).map((h) => [h.port, h.priority] as const).sort(([a], [b]) => a - b);
            return JSON.stringify(got) === JSON.stringify(want);
          },
          { what: `Envoy cluster ${clusterName(backend)} to have hosts (port, priority) ${JSON.stringify(want)}`, timeoutMs, intervalMs: 20 },
        );
      },
      stop,
    };
    for (const backend of opts.waitForBackends ?? []) {
      await waitFor(async () => (await hosts(backend)).length > 0, { what: `Envoy cluster ${clusterName(backend)} to have hosts` });
    }
    return fixture;
  } catch (err) {
    envoy?.printLogs(40);
    process.stderr.write(`--- controller ${opts.id}: last log lines ---\n${logLines.slice(-40).join('')}\n`);
    await stop().catch(() => undefined);
    throw err;
  }
}

/** Every request a fake received, with the attempt number Envoy stamped on it. */
export function attempts(requests: readonly ReceivedRequest[]): number[] {
  return requests.map((r) => Number(r.headers['x-envoy-attempt-count'] ?? 'NaN'));
}

function parseHosts(body: JsonObject, cluster: string): ClusterHost[] {
  const statuses = asArray(body['cluster_statuses']).map(asObject);
  const c = statuses.find((s) => s['name'] === cluster);
  return asArray(c?.['host_statuses']).map((raw) => {
    const h = asObject(raw);
    const sock = asObject(asObject(h['address'])['socket_address']);
    const health = asObject(h['health_status']);
    const stats: Record<string, number> = {};
    for (const s of asArray(h['stats']).map(asObject)) {
      const value = s['value'];
      if (typeof s['name'] === 'string') stats[s['name']] = typeof value === 'string' ? Number(value) : typeof value === 'number' ? value : 0;
    }
    return {
      address: typeof sock['address'] === 'string' ? sock['address'] : '',
      port: typeof sock['port_value'] === 'number' ? sock['port_value'] : 0,
      hostname: typeof h['hostname'] === 'string' ? h['hostname'] : '',
      priority: typeof h['priority'] === 'number' ? h['priority'] : 0,
      healthFlags: Object.entries(health).filter(([, v]) => v === true).map(([k]) => k),
      stats,
    };
  });
}

function asArray(v: JsonValue | undefined): JsonValue[] {
  return Array.isArray(v) ? v : [];
}

function asObject(v: JsonValue | undefined): JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v : {};
}
