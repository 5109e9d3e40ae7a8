import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { aiBackend, gatewayManifests, httpRoute, startGatewayFixture, type GatewayFixture, type GatewayFixtureOptions } from './gateway-fixture.js';
import { waitFor } from './wait.js';

/**
 * The gateway the outlier-detection suites share: one Backend `chat` on /v1 with member
 * "primary" (fake p0) at priority 0 and "secondary" (fake p1) at priority 1, ejecting a member
 * after 3 consecutive 5xx.
 */

export interface TwoPriorities {
  gw: GatewayFixture;
  p0: FakeProvider;
  p1: FakeProvider;
}

export interface TwoPrioritiesOptions extends Pick<GatewayFixtureOptions, 'logLines' | 'outlierEventLog' | 'envoyArgs' | 'aiWarmup'> {
  id: string;
  /** How long an ejected member stays out (a Gateway API duration, e.g. `2s`). */
  baseEjectionTime: string;
}

export async function startTwoPriorities(o: TwoPrioritiesOptions): Promise<TwoPriorities> {
  const { baseEjectionTime, ...fixture } = o;
  const gw = await startGatewayFixture({
    ...fixture,
    providers: ['p0', 'p1'],
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'chat.yaml': [
        aiBackend({
          name: 'chat',
          priorities: [
            [{ name: 'primary', fake: fakes['p0']!, hostname: 'primary.llm.test' }],
            [{ name: 'secondary', fake: fakes['p1']!, hostname: 'secondary.llm.test' }],
          ],
          // The interval is how often Envoy looks for hosts to bring back; short keeps the test short.
          outlierDetection: { consecutive5xx: 3, baseEjectionTime, interval: '250ms' },
        }),
        httpRoute('chat', [{ path: '/v1', backend: 'chat' }]),
      ],
    }),
    waitForBackends: ['chat'],
  });
  const { p0, p1 } = gw.fakes as Record<'p0' | 'p1', FakeProvider>;
  return { gw, p0, p1 };
}

/**
 * Chat requests one at a time (six at most) until Envoy has ejected a member of `chat`: it
 * decides on its main thread, a moment after the 3rd failure. Returns when it was seen ejected
 * and which fake answered each request sent.
 */
/**
 * Chats until Envoy reports the primary ejected. The ejection happened between `notYetAt` (just
 * before the last read that showed no ejection) and `ejectedAt` (just after the read that showed
 * it): on a loaded machine the two can be far apart, so a test bounds each side with the right one.
 */
export async function chatUntilEjected(gw: GatewayFixture): Promise<{ notYetAt: number; ejectedAt: number; answeredBy: (string | null)[] }> {
  const answeredBy: (string | null)[] = [];
  let notYetAt = Date.now();
  const ejectedAt = await waitFor(
    async () => {
      const readAt = Date.now();
      if ((await gw.clusterStat('chat', 'outlier_detection.ejections_enforced_total')) > 0) return Date.now();
      notYetAt = readAt;
      if (answeredBy.length < 6) answeredBy.push((await gw.chat()).answeredBy);
      return undefined;
    },
    { what: 'Envoy to eject the primary of chat', timeoutMs: 5_000, intervalMs: 10 },
  );
  return { notYetAt, ejectedAt, answeredBy };
}
