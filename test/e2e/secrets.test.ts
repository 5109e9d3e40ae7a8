import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import type { BackendStatus } from '../../src/translate/status.js';
import {
  aiBackend,
  gatewayManifests,
  httpRoute,
  secret,
  startGatewayFixture,
  type GatewayFixture,
} from '../support/gateway-fixture.js';
import { logTiming, WATCHED_CHANGE_MS } from '../support/timing.js';
import { waitFor } from '../support/wait.js';

/**
 * A missing Secret takes out only the member that needs it, says so on the Backend, and heals as
 * soon as the Secret appears on disk; a Backend with no usable member answers 503 naming the cause.
 */

const ALPHA_KEY = 'sk-alpha-value-never-in-envoy';

let gw: GatewayFixture;
let alpha: FakeProvider;
let bravo: FakeProvider;
let charlie: FakeProvider;
let lonely: FakeProvider;

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'secrets',
    providers: ['alpha', 'bravo', 'charlie', 'lonely'],
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        aiBackend({
          name: 'chat',
          priorities: [
            [
              { name: 'alpha', fake: fakes['alpha']!, hostname: 'alpha.llm.test', secret: 'alpha-key' },
              { name: 'bravo', fake: fakes['bravo']!, hostname: 'bravo.llm.test', secret: 'bravo-key' },
            ],
            [{ name: 'charlie', fake: fakes['charlie']!, hostname: 'charlie.llm.test', secret: 'charlie-key' }],
          ],
        }),
        aiBackend({ name: 'lonely', priorities: [[{ name: 'only', fake: fakes['lonely']!, hostname: 'lonely.llm.test', secret: 'lonely-key' }]] }),
      ],
      'routes.yaml': [
        httpRoute('chat', [
          { path: '/v1', backend: 'chat' },
          { path: '/lonely/v1', rewritePrefix: '/v1', backend: 'lonely' },
        ]),
      ],
      // bravo-key and lonely-key are missing.
      'secrets.yaml': [secret('alpha-key', `Bearer ${ALPHA_KEY}`), secret('charlie-key', 'sk-charlie')],
    }),
  });
  ({ alpha, bravo, charlie, lonely } = gw.fakes as Record<'alpha' | 'bravo' | 'charlie' | 'lonely', FakeProvider>);
});

afterAll(async () => {
  await gw?.stop();
});

beforeEach(async () => {
  await gw.resetFakes();
});

function backendStatus(name: string): BackendStatus {
  const s = gw.status('Backend', name);
  if (s?.kind !== 'Backend' || !('priorities' in s)) throw new Error(`no Backend status for ai/${name}`);
  return s;
}

describe('a pool member whose Secret is missing', () => {
  it('receives nothing while the other member of its pool serves, and the Backend says why', async () => {
    // Envoy's cluster holds exactly the usable members, at their priorities.
    await gw.waitForHosts('chat', new Map([[alpha.port, 0], [charlie.port, 1]]));
    for (let i = 0; i < 6; i++) expect((await gw.chat()).answeredBy).toBe('alpha');
    expect(alpha.received()).toHaveLength(6);
    expect(bravo.received()).toHaveLength(0);
    expect(charlie.received()).toHaveLength(0);

    const resolved = gw.condition('Backend', 'chat', 'ResolvedRefs');
    expect(resolved).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
    expect(resolved?.message).toContain('member bravo');
    expect(resolved?.message).toContain('ai/bravo-key');
    expect(gw.condition('Backend', 'chat', 'Accepted')?.status).toBe('True');
    const status = backendStatus('chat');
    expect(status.priorities[0]?.members).toEqual([
      expect.objectContaining({ name: 'alpha', usable: true }),
      expect.objectContaining({ name: 'bravo', usable: false, reason: 'SecretNotFound' }),
    ]);
    expect(status).toMatchObject({ usableMembers: 2, totalMembers: 3 });
    // The rest of the Backend is served, so it is programmed, not dropped.
    await waitFor(() => gw.condition('Backend', 'chat', 'Programmed')?.status === 'True', { what: 'ai/chat Programmed=True', timeoutMs: 5_000 });
    // Credentials are never part of the config Envoy holds.
    expect(JSON.stringify(await gw.envoy.configDump({ includeEds: true }))).not.toContain(ALPHA_KEY);
  });

  it('joins its pool once the Secret is created on disk, through the watch rather than the resync, and the condition clears', async () => {
    const written = gw.write('bravo-secret.yaml', [secret('bravo-key', 'sk-bravo')]);
    // A steady trickle of requests until bravo gets one (bounded by waitFor's deadline).
    await waitFor(
      async () => {
        await gw.chat();
        return bravo.received().length > 0;
      },
      { what: 'bravo to receive traffic after its Secret was created', timeoutMs: WATCHED_CHANGE_MS, intervalMs: 20 },
    );
    const joinedAfterMs = (bravo.received()[0]?.time ?? Infinity) - written;
    logTiming('bravo joined after its Secret was written', joinedAfterMs);
    expect(joinedAfterMs).toBeLessThan(WATCHED_CHANGE_MS);
    expect(gw.condition('Backend', 'chat', 'ResolvedRefs')).toMatchObject({ status: 'True', reason: 'ResolvedRefs' });
    expect(backendStatus('chat')).toMatchObject({ usableMembers: 3, totalMembers: 3 });

    // Both members of priority 0 now share its traffic; priority 1 still gets none.
    alpha.clear();
    bravo.clear();
    for (let i = 0; i < 6; i++) await gw.chat();
    expect(alpha.received().length).toBeGreaterThanOrEqual(2);
    expect(bravo.received().length).toBeGreaterThanOrEqual(2);
    expect(bravo.received()[0]?.host).toBe('bravo.llm.test');
    expect(charlie.received()).toHaveLength(0);
  });
});

describe('a Backend whose only member has a missing Secret', () => {
  it('answers 503 with a body that names the missing Secret, and reaches no provider', async () => {
    const failure = await gw.chatFailure('/lonely/v1');
    expect(failure.status).toBe(503);
    expect(failure.message).toContain('Secret ai/lonely-key not found');
    expect(failure.message).toContain('member only');
    const raw = await fetch(`http://127.0.0.1:${gw.listenerPort}/lonely/v1/chat/completions`, { method: 'POST', body: '{}' });
    expect(raw.status).toBe(503);
    expect(await raw.text()).toMatch(/^switchyard: Backend ai\/lonely has no usable member: .*Secret ai\/lonely-key not found/);
    expect(lonely.received()).toHaveLength(0);
    expect(gw.condition('Backend', 'lonely', 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
    expect(gw.condition('Backend', 'lonely', 'Programmed')).toMatchObject({ status: 'False', reason: 'NoUsableMembers' });
  });
});
