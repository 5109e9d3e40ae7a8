import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { aiBackend, type Manifest } from './gateway-fixture.js';

/** The hostnames of the three pools' members, as the warm-up tests route to them. */
export const SKIPPING_HOSTS = { p0: 'small.llm.test', p1: 'large.llm.test', p2: 'huge.llm.test' } as const;

/**
 * Three named pools (small, large, huge), one member each on fakes p0, p1, p2; a context-window
 * refusal in the first goes straight to the third, skipping the second: the shape every warm-up
 * test needs, since a skip finds a member's connection ready only when warm-up made one.
 */
export function skippingBackend(name: string, fakes: Record<string, FakeProvider>): Manifest {
  const backend = aiBackend({
    name,
    priorities: [
      [{ name: 'small', fake: fakes['p0']!, hostname: SKIPPING_HOSTS.p0 }],
      [{ name: 'large', fake: fakes['p1']!, hostname: SKIPPING_HOSTS.p1 }],
      [{ name: 'huge', fake: fakes['p2']!, hostname: SKIPPING_HOSTS.p2 }],
    ],
    outlierDetection: { enabled: false },
  });
  const spec = backend['spec'] as { ai: { multipool: { priorities: Record<string, unknown>[] } } };
  spec.ai.multipool.priorities.forEach((p, i) => Object.assign(p, { name: ['small-pool', 'large-pool', 'huge-pool'][i] }));
  Object.assign(spec.ai.multipool.priorities[0] ?? {}, { contextWindowFallback: 'huge-pool' });
  return backend;
}

/**
 * The extension's own word that a skip found no connection to its member ready and so held the
 * stand-in until Envoy's connect timeout (src/ai-extension/exchange.ts, untilStandInSafe): one
 * entry per held attempt in `lines` (a controller's JSON log), for `backend` ("ai/warm"). A warmed
 * member leaves none; a cold one leaves one, whatever the machine's load.
 */
export function standInsHeld(lines: readonly string[], backend: string): { member: string; waitMs: number }[] {
  return lines
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l['backend'] === backend && String(l['msg']).startsWith('ai-extension: no connection to the member was ready'))
    .map((l) => ({ member: String(l['member']), waitMs: Number(l['waitMs']) }));
}
