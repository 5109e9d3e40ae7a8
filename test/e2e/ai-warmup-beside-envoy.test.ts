import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../../src/ir/model.js';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { warmupBesideEnvoy } from '../../src/app/ai-warmup.js';
import { createLogger } from '../../src/observability/logger.js';
import { waitFor } from '../support/wait.js';
import { gatewayManifests, httpRoute, startGatewayFixture, type GatewayFixture } from '../support/gateway-fixture.js';
import { skippingBackend, standInsHeld } from '../support/skipping-backend.js';

/**
 * Cluster mode (issue 11): the controller configures Envoys it cannot reach, so the sender runs
 * beside each Envoy, in its AI extension's process (`switchyard ai-extension
 * --warmup-envoy-admin`): it reads what to warm from Envoy's admin API and signs with the
 * extension's own key. Here serve sends nothing (warm-up off), and the sender beside the real
 * Envoy warms it: the first skip to a never-used member is answered at once.
 */


let gw: GatewayFixture;
let fakes: Record<'p0' | 'p1' | 'p2', FakeProvider>;
const senderLog: string[] = [];
const logLines: string[] = [];

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'ai-warmup-beside',
    providers: ['p0', 'p1', 'p2'],
    logLines,
    manifests: ({ listenerPort, fakes: f }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [skippingBackend('cold', f), skippingBackend('beside', f)],
      'routes.yaml': [httpRoute('chat', [{ path: '/cold/v1', rewritePrefix: '/v1', backend: 'cold' }, { path: '/beside/v1', rewritePrefix: '/v1', backend: 'beside' }])],
    }),
    waitForBackends: ['cold', 'beside'],
  });
  fakes = gw.fakes as typeof fakes;
});

afterAll(async () => {
  await gw?.stop();
});

const warmed = (cluster: string): Record<string, unknown> | undefined =>
  senderLog.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['backend'] === cluster && String(l['msg']).startsWith('ai-warmup: Envoy has a connection ready'));

describe('the warm-up sender beside an Envoy it does not configure', () => {
  it('warms every member from what Envoy\'s admin API shows, calling no provider; the first skip is then answered at once', async () => {
    // Before the sender: the same skip on a Backend nobody warmed waits out Envoy's connect timeout.
    await fakes.p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const cold = await gw.chat('/cold/v1');
    expect(cold.content).toBe('answered by p2');
    await gw.resetFakes();

    const key = gw.controller.aiExtension?.warmupKey ?? '';
    expect(key).not.toBe('');
    const sender = warmupBesideEnvoy({ adminUrl: gw.envoy.adminUrl, key, pollMs: 500, logger: createLogger({ level: 'info', name: 'beside' }, { write: (l: string) => void senderLog.push(l) }) });
    try {
      const report = await waitFor(() => warmed('ai/beside'), { what: 'the sender to warm backend/ai/beside', timeoutMs: 30_000, intervalMs: 100 });
      expect(report['readyMembers']).toEqual(expect.arrayContaining(['0/small', '1/large', '2/huge']));
      for (const f of Object.values(fakes)) expect(f.received()).toHaveLength(0);

      await fakes.p0.setMode({ kind: 'refusal', refusal: 'context_length' });
      const warm = await gw.chat('/beside/v1');
      expect(warm.content).toBe('answered by p2');
      expect(fakes.p1.received()).toHaveLength(0);
      process.stdout.write(`first skip, warmed beside Envoy: ${Math.round(warm.elapsedMs)} ms; not warmed: ${Math.round(cold.elapsedMs)} ms\n`);
      // Not warmed: the skip found no connection ready, was held, and waited out Envoy's 5 s connect timeout.
      expect(standInsHeld(logLines, 'ai/cold').map((h) => h.member)).toEqual(['large']);
      expect(cold.elapsedMs).toBeGreaterThan(DEFAULT_CONNECT_TIMEOUT_MS);
      // Warmed beside Envoy: the skipped member had a connection ready, so nothing was held (how fast is printed above).
      expect(standInsHeld(logLines, 'ai/beside')).toEqual([]);
    } finally {
      sender.stop();
    }
  });

  it('warms every Envoy `controller --infrastructure host` runs, found by the admin address each writes in the state directory', async () => {
    // The Host infrastructure's layout: <state>/envoy/<namespace>_<name>/admin-address per Gateway's Envoy.
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-envoys-'));
    mkdirSync(join(dir, 'ai_ai-gateway'));
    writeFileSync(join(dir, 'ai_ai-gateway', 'admin-address'), gw.envoy.adminUrl.replace(/^http:\/\//, ''));
    // An Envoy still starting (no address yet) is skipped, not an error.
    mkdirSync(join(dir, 'ai_starting'));
    const lines: string[] = [];
    const sender = warmupBesideEnvoy({ adminDir: dir, key: gw.controller.aiExtension?.warmupKey ?? '', pollMs: 500, logger: createLogger({ level: 'info', name: 'dir' }, { write: (l: string) => void lines.push(l) }) });
    try {
      const report = await waitFor(
        () => lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['backend'] === 'ai/beside' && l['warmup'] === true),
        { what: 'the sender to warm backend/ai/beside through the state directory', timeoutMs: 30_000, intervalMs: 100 },
      );
      expect(report['msg']).toMatch(/connection ready to every member/);
      expect(report['gateway']).toBe('ai/ai-gateway');
      expect(report['readyMembers']).toEqual(expect.arrayContaining(['0/small', '1/large', '2/huge']));
      expect(lines.filter((l) => JSON.parse(l).level >= 40)).toEqual([]);
    } finally {
      sender.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
