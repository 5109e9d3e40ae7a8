import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aiBackend, gatewayManifests, GATEWAY, NAMESPACE, startGatewayFixture, type GatewayFixture } from '../support/gateway-fixture.js';

/**
 * Gateway API: when one of a rule's weighted backendRefs is invalid, the share of traffic it would
 * have taken is answered 500 and the rest keeps flowing to the valid ones. Proven with the real
 * Envoy: a rule split 1:1 between a Backend and a Backend that does not exist.
 */
let gw: GatewayFixture;

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'weighted-refs',
    providers: ['p0'],
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [aiBackend({ name: 'blue', llm: true, priorities: [[{ fake: fakes['p0']!, hostname: 'blue.llm.test' }]] })],
      'routes.yaml': [
        {
          apiVersion: 'gateway.networking.k8s.io/v1',
          kind: 'HTTPRoute',
          metadata: { name: 'split', namespace: NAMESPACE },
          spec: {
            parentRefs: [{ name: GATEWAY }],
            rules: [
              {
                matches: [{ path: { type: 'PathPrefix', value: '/v1' } }],
                backendRefs: [
                  { group: 'switchyard.dev', kind: 'Backend', name: 'blue', weight: 1 },
                  { group: 'switchyard.dev', kind: 'Backend', name: 'gone', weight: 1 },
                ],
              },
            ],
          },
        },
      ],
    }),
    waitForBackends: ['blue'],
  });
});

afterAll(async () => {
  await gw?.stop();
});

describe('a rule split between a valid and a missing Backend', () => {
  it('answers the missing one\'s share with 500 and sends the rest to the valid one', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) {
      try {
        await gw.chat();
        statuses.push(200);
      } catch (err) {
        statuses.push((err as { status?: number }).status ?? 0);
      }
    }
    const ok = statuses.filter((s) => s === 200).length;
    const failed = statuses.filter((s) => s === 500).length;
    expect(ok + failed).toBe(60);
    // Weighted 1:1 at random: both shares are seen, neither takes everything.
    expect(ok).toBeGreaterThan(10);
    expect(failed).toBeGreaterThan(10);
    expect(gw.fakes['p0']!.received()).toHaveLength(ok);
    const parent = gw.status('HTTPRoute', 'split');
    const resolved = parent && 'parents' in parent ? parent.parents[0]?.conditions.find((c) => c.type === 'ResolvedRefs') : undefined;
    expect(resolved).toMatchObject({ status: 'False', reason: 'BackendNotFound' });
  });
});
