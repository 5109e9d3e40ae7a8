import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { createFakeTls, type FakeTls } from '../../examples/demo/fake-tls.js';
import { startAiExtension, type RunningAiExtension } from '../../src/ai-extension/server.js';
import { createLogger } from '../../src/observability/logger.js';
import { NAMESPACE, gatewayManifests, httpRoute, secret, startGatewayFixture, type GatewayFixture } from '../support/gateway-fixture.js';
import { waitFor } from '../support/wait.js';
import { E2E_LOAD_MARGIN_MS, logTiming, WATCHED_CHANGE_MS } from '../support/timing.js';

/**
 * Provider keys travel from Secrets to the AI extension over SDS, never through Envoy's own
 * configuration: a rotated Secret is used within a second with no failed request, no key shows
 * in Envoy's /config_dump or in any log, and a stopped extension fails requests clearly (never
 * sending them without a key) until it is back, with no Envoy restart.
 */

const HOST = 'api.openai.com';
const OLD_KEY = 'sk-old-rotation-key-0001';
const NEW_KEY = 'sk-new-rotation-key-0002';

let tls: FakeTls;
let gw: GatewayFixture;
let openai: FakeProvider;
const logLines: string[] = [];
let restarted: RunningAiExtension | undefined;

beforeAll(async () => {
  tls = createFakeTls([HOST]);
  gw = await startGatewayFixture({
    id: 'ai-credentials',
    providers: ['openai'],
    // The provider accepts both keys, as real ones do while a key is being rotated.
    fakeOptions: { openai: { tls: { cert: tls.cert, key: tls.key }, vendor: { api: 'openai', key: [OLD_KEY, NEW_KEY] } } },
    envoy: { trustedCaFile: tls.caFile },
    logLines,
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'secrets.yaml': [secret('openai-key', `Bearer ${OLD_KEY}`)],
      'backends.yaml': [
        {
          apiVersion: 'switchyard.dev/v1alpha1',
          kind: 'Backend',
          metadata: { name: 'chat', namespace: NAMESPACE },
          spec: {
            type: 'AI',
            ai: {
              llm: {
                provider: { openai: { model: 'gpt-4o', authToken: { kind: 'SecretRef', secretRef: { name: 'openai-key' } } } },
                hostOverride: { host: fakes['openai']?.host ?? '', port: fakes['openai']?.port ?? 0, tls: true },
              },
            },
          },
        },
      ],
      'routes.yaml': [httpRoute('chat', [{ path: '/v1', backend: 'chat' }])],
    }),
    waitForBackends: ['chat'],
  });
  openai = gw.fakes['openai'] as FakeProvider;
});

afterAll(async () => {
  await restarted?.stop();
  await gw?.stop();
  tls?.remove();
});

const keyOf = (headers: Record<string, string>): string | undefined => headers['authorization']?.replace(/^Bearer /, '');

describe('Secret rotation', () => {
  it('reaches the data path through the file watch under a steady request stream, with no failed request', async () => {
    openai.clear();
    const failures: string[] = [];
    let done = 0;
    let running = true;
    const worker = async (): Promise<void> => {
      while (running) {
        try {
          await gw.chat();
          done++;
        } catch (err) {
          failures.push(err instanceof Error ? err.message : String(err));
        }
      }
    };
    const workers = [worker(), worker()];
    // The stream is under way with the old key before the rotation.
    await waitFor(() => openai.received().filter((r) => keyOf(r.headers) === OLD_KEY).length >= 5, { what: '5 requests with the old key at the provider', timeoutMs: E2E_LOAD_MARGIN_MS });
    const writtenAt = gw.write('secrets.yaml', [secret('openai-key', `Bearer ${NEW_KEY}`)]);
    const firstNew = await waitFor(() => openai.received().find((r) => keyOf(r.headers) === NEW_KEY), {
      what: 'a request carrying the rotated key',
      timeoutMs: WATCHED_CHANGE_MS,
      intervalMs: 10,
    });
    // And goes on with the new one: what comes after the switch is judged below.
    await waitFor(() => openai.received().filter((r) => keyOf(r.headers) === NEW_KEY).length >= 10, { what: '10 requests with the rotated key at the provider', timeoutMs: E2E_LOAD_MARGIN_MS });
    running = false;
    await Promise.all(workers);

    expect(failures).toEqual([]);
    // Through the file watch, not the provider's 30 s resync (how soon is printed).
    logTiming('first request with the rotated key', firstNew.time - writtenAt);
    expect(firstNew.time - writtenAt).toBeLessThan(WATCHED_CHANGE_MS);
    const keys = openai.received().map((r) => keyOf(r.headers));
    const switched = keys.indexOf(NEW_KEY);
    // Old key until the switch, the new one from then on; never anything else.
    expect(keys.slice(0, switched).every((k) => k === OLD_KEY)).toBe(true);
    expect(keys.slice(switched).every((k) => k === NEW_KEY)).toBe(true);
    expect(openai.received().every((r) => r.rejected === undefined)).toBe(true);
    expect(done).toBeGreaterThan(10);
  });
});

describe('keys stay out of Envoy and the logs', () => {
  it('are in no /config_dump (with EDS), no controller or extension log line and no Envoy log line', async () => {
    await gw.chat();
    const dump = JSON.stringify(await gw.envoy.configDump({ includeEds: true }));
    expect(dump).toContain('credential/ai/openai-key');
    for (const key of [OLD_KEY, NEW_KEY]) {
      expect(dump).not.toContain(key);
      expect(logLines.filter((l) => l.includes(key))).toEqual([]);
      expect(gw.envoy.logs()).not.toContain(key);
    }
    // The logs did record the credential change (by name).
    expect(logLines.some((l) => l.includes('credentials updated') && l.includes('credential/ai/openai-key'))).toBe(true);
  });
});

describe('the AI extension going away', () => {
  it('fails requests with a 503 that names it, sends nothing to the provider, and recovers without restarting Envoy', async () => {
    const extension = gw.controller.aiExtension;
    if (extension === undefined) throw new Error('serve() ran without the in-process AI extension');
    const envoyPid = gw.envoy.pid;
    await extension.stop();
    openai.clear();

    const failure = await gw.chatFailure();
    expect(failure.status).toBe(503);
    expect(failure.message).toContain('Switchyard AI extension is unavailable');
    expect(openai.received()).toEqual([]);

    // An extension that reaches the controller over plaintext TCP gets no key, and its 503 says why.
    const unauthenticated = await startAiExtension({
      port: extension.port,
      host: '127.0.0.1',
      logger: createLogger({ level: 'silent' }),
      xds: { host: '127.0.0.1', port: gw.controller.xdsPort },
      credentialWaitMs: 300,
    });
    try {
      const refused = await gw.chatFailure();
      expect(refused.status).toBe(503);
      expect(refused.message).toContain('is not available (the controller gives provider keys only to an AI extension that authenticates, and this one connects over plaintext TCP');
      expect(refused.message).toContain('--xds-tls-dir');
      expect(openai.received()).toEqual([]);
    } finally {
      await unauthenticated.stop();
    }

    restarted = await startAiExtension({ port: extension.port, host: '127.0.0.1', logger: createLogger({ level: 'silent' }) });
    restarted.connect({ socket: await gw.controller.xds.privateSocket() });
    const answer = await waitFor(() => gw.chat().catch(() => undefined), { what: 'traffic to resume through the restarted extension', timeoutMs: 10_000, intervalMs: 100 });
    expect(answer.content).toBe('answered by openai');
    expect(keyOf(openai.received().at(-1)?.headers ?? {})).toBe(NEW_KEY);
    expect(gw.envoy.running()).toBe(true);
    expect(gw.envoy.pid).toBe(envoyPid);
  });
});
