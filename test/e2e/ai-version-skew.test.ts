import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { buildBootstrap } from '../../src/envoy/bootstrap.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { startEnvoy, type EnvoyProcess } from '../support/envoy.js';
import { aiBackend, attempts, clusterName, gatewayManifests, httpRoute, previousReleaseBootstrap, startGatewayFixture, type GatewayFixture } from '../support/gateway-fixture.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

/**
 * Version skew through the real Envoy: an Envoy bootstrapped as the release before the member
 * facts string (no switchyard.dev/attempt-facts node metadata) is served its data plane's AI
 * clusters in the per-key form, and AI failover works through this release's extension reading
 * it. An Envoy of this release that joins the same data plane gets that form too, and the facts
 * string once the older Envoy has gone.
 */

const HOSTS = { p0: 'primary.llm.test', p1: 'secondary.llm.test' } as const;
const PER_KEY = "xds.upstream_host_metadata.filter_metadata['switchyard.dev'].member";
const PACKED = "xds.upstream_host_metadata.filter_metadata['switchyard.dev'].attempt";
/** The facts string alone: the per-key form asks for it too, so a form is told by the per-key attributes. */
const packedOnly = (attributes: string[] | undefined): boolean => attributes?.includes(PACKED) === true && !attributes.includes(PER_KEY);

let gw: GatewayFixture;
let p0: FakeProvider;
let p1: FakeProvider;
const logLines: string[] = [];

/** The request_attributes of the AI extension filter of the Backend's cluster, as Envoy holds it now. */
async function requestAttributes(envoy: EnvoyProcess, backend: string): Promise<string[] | undefined> {
  const dump = await envoy.configDump();
  for (const config of (dump['configs'] as JsonObject[] | undefined) ?? []) {
    for (const entry of (config['dynamic_active_clusters'] as JsonObject[] | undefined) ?? []) {
      const cluster = entry['cluster'] as JsonObject;
      if (cluster['name'] !== clusterName(backend)) continue;
      const options = (cluster['typed_extension_protocol_options'] as Record<string, { http_filters?: { name: string; typed_config: { request_attributes?: string[] } }[] }>)['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'];
      return options?.http_filters?.find((f) => f.name === 'envoy.filters.http.ext_proc')?.typed_config.request_attributes;
    }
  }
  return undefined;
}

/**
 * The request_attributes of the Backend's cluster once `envoy` has it active: the serving Envoys
 * flip as the joining Envoy's held stream is let go, so the joining one may not have received its
 * Clusters yet, or may still be warming the cluster until its EDS assignment arrives.
 */
async function activeRequestAttributes(envoy: EnvoyProcess, backend: string): Promise<string[]> {
  return waitFor(() => requestAttributes(envoy, backend), { what: `Envoy ${envoy.id} to have the ${backend} cluster active`, timeoutMs: 10_000 });
}

/** A failed request: what the Envoys were doing then, when (ms since the load started), and the error with its causes. */
interface LoadFailure {
  phase: string;
  ms: number;
  error: string;
}

/**
 * Chat completions four at a time through the shared listener port, failing over all along, until
 * stopped. Each client keeps its connection alive, so it stays with the Envoy that accepted it (the
 * kernel spreads new connections over every Envoy listening on the port).
 */
class ChatLoad {
  readonly answers: string[] = [];
  readonly failures: LoadFailure[] = [];
  /** What the test is doing to the Envoys now: each failure is labelled with it. */
  phase = 'starting';
  private running = true;
  private readonly started = Date.now();
  private readonly clients: Promise<void>[];

  constructor() {
    this.clients = Array.from({ length: 4 }, async () => {
      while (this.running) {
        try {
          this.answers.push((await gw.chat()).answeredBy ?? '');
        } catch (err) {
          this.failures.push({ phase: this.phase, ms: Date.now() - this.started, error: causes(err) });
        }
      }
    });
  }

  /** Resolves once `more` requests were answered after the call. */
  async answered(more: number, what: string): Promise<void> {
    const at = this.answers.length;
    await waitFor(() => this.answers.length >= at + more, { what: `requests answered ${what}`, timeoutMs: 10_000 });
  }

  /** Ends the load once the requests in flight are answered. Idempotent. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.clients);
  }
}

/** An error and its causes, one line (fetch keeps the connection error, ECONNRESET or ECONNREFUSED, in `cause`). */
function causes(err: unknown): string {
  const chain: string[] = [];
  for (let e: unknown = err; e instanceof Error; e = e.cause) chain.push(`${e.message}${'code' in e && typeof e.code === 'string' ? ` (${e.code})` : ''}`);
  return chain.length > 0 ? chain.join(' <- ') : String(err);
}

/** Another Envoy against the fixture's controller: of this release or the one before, for every Gateway or its own. */
async function start(id: string, previous: boolean, delta: boolean, gateway?: string): Promise<EnvoyProcess> {
  const adminPort = await freePort();
  const bootstrap = buildBootstrap({ xds: { host: '127.0.0.1', port: gw.controller.xdsPort }, nodeId: id, adminPort, delta, ...(gateway !== undefined ? { gateway } : {}) });
  return startEnvoy({ bootstrap: previous ? previousReleaseBootstrap(bootstrap) : bootstrap, adminPort, id, extraArgs: ['--drain-time-s', '1', '--drain-strategy', 'immediate'] });
}

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'ai-version-skew',
    providers: ['p0', 'p1'],
    previousReleaseBootstrap: true,
    logLines,
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        aiBackend({
          name: 'chat',
          priorities: [[{ name: 'primary', fake: fakes['p0']!, hostname: HOSTS.p0 }], [{ name: 'secondary', fake: fakes['p1']!, hostname: HOSTS.p1 }]],
          outlierDetection: { enabled: false },
        }),
      ],
      'routes.yaml': [httpRoute('chat', [{ path: '/v1', backend: 'chat' }])],
    }),
    waitForBackends: ['chat'],
    // Envoy writes access logs through a buffer flushed every 10 s by default.
    envoyArgs: ['--file-flush-interval-msec', '50'],
  });
  ({ p0, p1 } = gw.fakes as Record<'p0' | 'p1', FakeProvider>);
});

afterAll(async () => {
  await gw?.stop();
});

beforeEach(async () => {
  await gw.resetFakes();
});

describe('an Envoy of the release before the member facts string', () => {
  it('is served the per-key form, and fails over from priority 0 to 1 through this release\'s extension', async () => {
    const attributes = await requestAttributes(gw.envoy, 'chat');
    expect(attributes).toContain(PER_KEY);
    // The previous release's 19, then the facts string, which its extension never reads.
    expect(attributes).toHaveLength(20);
    expect(attributes?.[19]).toBe(PACKED);
    expect(logLines.some((l) => l.includes('does not say it reads the member facts string'))).toBe(true);
    await p0.setMode({ kind: 'status', status: 503 });
    for (let i = 0; i < 3; i++) expect(await gw.chat()).toMatchObject({ content: 'answered by p1', answeredBy: 'p1' });
    expect(attempts(p0.received())).toEqual([1, 1, 1]);
    expect(attempts(p1.received())).toEqual([2, 2, 2]);
    // Each attempt adapted to its own member: the extension read every fact from the per-key attributes.
    expect(p0.received().map((r) => r.host)).toEqual([HOSTS.p0, HOSTS.p0, HOSTS.p0]);
    expect(p1.received().map((r) => r.host)).toEqual([HOSTS.p1, HOSTS.p1, HOSTS.p1]);
    expect(await gw.envoy.stat('http.switchyard_ai.ext_proc.streams_failed') ?? 0).toBe(0);
    // Its access log names the final member from the endpoint's per-key metadata, one line per
    // request: its ext_proc accepts no dynamic metadata, so this extension's naming is dropped.
    const lines = await waitFor(
      () => {
        const found = gw.envoy.logs().split('\n').filter((l) => l.startsWith('{') && l.includes('"response_code"')).map((l) => JSON.parse(l) as Record<string, unknown>);
        return found.length >= 3 ? found : undefined;
      },
      { what: 'three access log lines on the older Envoy', timeoutMs: 10_000 },
    );
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(line).toMatchObject({ backend: 'ai/chat', member: 'secondary', priority: 1, provider: 'openaiCompatible', attempts: 2 });
  });

  it('keeps an Envoy of this release on the per-key form while it shares the data plane, which flips to the facts string once it leaves', async () => {
    const adminPort = await freePort();
    const current = await startEnvoy({
      bootstrap: buildBootstrap({ xds: { host: '127.0.0.1', port: gw.controller.xdsPort }, nodeId: 'ai-version-skew-new', adminPort }),
      adminPort,
      id: 'ai-version-skew-new',
    });
    try {
      await waitFor(async () => (await requestAttributes(current, 'chat')) !== undefined, { what: 'the new Envoy has the chat cluster', timeoutMs: 10_000 });
      expect(await requestAttributes(current, 'chat')).toContain(PER_KEY);
      await gw.envoy.stop();
      await waitFor(async () => packedOnly(await requestAttributes(current, 'chat')), { what: 'the facts string once the older Envoy left', timeoutMs: 10_000 });
      expect(await requestAttributes(current, 'chat')).toHaveLength(2);
      // The same listener, now served by this Envoy alone: failover with the facts string.
      await p0.setMode({ kind: 'status', status: 503 });
      expect(await gw.chat()).toMatchObject({ content: 'answered by p1', answeredBy: 'p1' });
      expect(attempts(p1.received())).toEqual([2]);
      expect(p1.received()[0]?.host).toBe(HOSTS.p1);
    } finally {
      await current.stop();
    }
  });

  it('flips a serving data plane to the per-key form when an older Envoy joins, without a failed request', async () => {
    // Incremental xDS here (the other Envoys speak state-of-the-world): the form follows either way.
    const current = await start('ai-version-skew-serving', false, true);
    let older: EnvoyProcess | undefined;
    let load: ChatLoad | undefined;
    try {
      await current.waitForListener(`ai/ai-gateway/${gw.listenerPort}`);
      expect(packedOnly(await requestAttributes(current, 'chat'))).toBe(true);
      await p0.setMode({ kind: 'status', status: 503 });
      // Requests fail over through this Envoy all along while its AI cluster changes form.
      load = new ChatLoad();
      load.phase = 'this release alone';
      await load.answered(8, 'before the older Envoy joins');
      load.phase = 'older Envoy starting';
      older = await start('ai-version-skew-older', true, false);
      load.phase = 'older Envoy started';
      await waitFor(async () => (await requestAttributes(current, 'chat'))?.includes(PER_KEY) === true, { what: 'the per-key form on the serving Envoy', timeoutMs: 10_000 });
      load.phase = 'per-key form';
      await load.answered(8, 'after the flip');
      await load.stop();
      expect(load.failures).toEqual([]);
      expect(new Set(load.answers)).toEqual(new Set(['p1']));
      expect(await activeRequestAttributes(older, 'chat')).toContain(PER_KEY);
    } finally {
      await load?.stop();
      await older?.stop();
      await current.stop();
    }
  });

  it('switches a serving data plane back and forth (this release, then an older Envoy, then this release alone, then an older one again) without a failed request', async () => {
    const current = await start('ai-version-skew-switch', false, true);
    let older: EnvoyProcess | undefined;
    let load: ChatLoad | undefined;
    const form = async (want: 'per-key' | 'packed', what: string): Promise<void> => {
      await waitFor(async () => {
        const attributes = await requestAttributes(current, 'chat');
        return want === 'packed' ? packedOnly(attributes) : attributes?.includes(PER_KEY) === true;
      }, { what, timeoutMs: 10_000 });
    };
    try {
      await current.waitForListener(`ai/ai-gateway/${gw.listenerPort}`);
      await p0.setMode({ kind: 'status', status: 503 });
      load = new ChatLoad();
      load.phase = 'this release alone';
      await load.answered(8, 'before any older Envoy');
      for (const round of [1, 2]) {
        load.phase = `older Envoy ${round} starting`;
        older = await start(`ai-version-skew-switch-older-${round}`, true, false);
        load.phase = `older Envoy ${round} started`;
        await form('per-key', `the per-key form on the serving Envoy (round ${round})`);
        load.phase = `per-key form (round ${round})`;
        expect(await activeRequestAttributes(older, 'chat')).toContain(PER_KEY);
        await load.answered(8, `with the older Envoy (round ${round})`);
        // As a rolling upgrade takes an Envoy away: a client connection it accepted is closed after
        // its answer, not cut by a kill (which would fail that request whatever the form).
        load.phase = `older Envoy ${round} leaving`;
        await older.leave();
        older = undefined;
        load.phase = `older Envoy ${round} gone`;
        await form('packed', `the facts string again once the older Envoy left (round ${round})`);
        load.phase = `facts string again (round ${round})`;
        await load.answered(8, `after the older Envoy left (round ${round})`);
      }
      await load.stop();
      expect(load.failures).toEqual([]);
      expect(new Set(load.answers)).toEqual(new Set(['p1']));
      // Serving the other form never failed on the way.
      expect(logLines.filter((l) => l.includes('attempt facts form failed'))).toEqual([]);
    } finally {
      await load?.stop();
      await older?.stop();
      await current.stop();
    }
  });

  it("does the same for a Gateway's own data plane, and leaves the shared one alone", async () => {
    const shared = await start('ai-version-skew-shared', false, false);
    const own = await start('ai-version-skew-own', false, false, 'ai/ai-gateway');
    let older: EnvoyProcess | undefined;
    try {
      await waitFor(async () => packedOnly(await requestAttributes(own, 'chat')), { what: "the Gateway's Envoy has the chat cluster", timeoutMs: 10_000 });
      older = await start('ai-version-skew-own-older', true, false, 'ai/ai-gateway');
      await waitFor(async () => (await requestAttributes(own, 'chat'))?.includes(PER_KEY) === true, { what: "the per-key form on the Gateway's data plane", timeoutMs: 10_000 });
      expect(await activeRequestAttributes(older, 'chat')).toContain(PER_KEY);
      expect(packedOnly(await requestAttributes(shared, 'chat'))).toBe(true);
      await older.stop();
      await waitFor(async () => packedOnly(await requestAttributes(own, 'chat')), { what: 'the facts string again once the older Envoy left', timeoutMs: 10_000 });
    } finally {
      await older?.stop();
      await own.stop();
      await shared.stop();
    }
  });
});
