import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import type { GatewayFixture } from '../support/gateway-fixture.js';
import { chatUntilEjected, startTwoPriorities } from '../support/two-priorities.js';
import { waitFor } from '../support/wait.js';

/**
 * Cool-down visible per member: when Envoy's outlier detection ejects a failing member, serve
 * (following the Envoy's outlier event log) logs the member by name and counts it; when the
 * ejection time has passed, it logs the member back.
 */

let gw: GatewayFixture;
let p0: FakeProvider;
const logLines: string[] = [];

beforeAll(async () => {
  ({ gw, p0 } = await startTwoPriorities({
    id: 'cool-down',
    baseEjectionTime: '1s',
    logLines,
    outlierEventLog: true,
    // With the warm-up sender hooked on each translation too, the ejections are still named from it.
    aiWarmup: true,
    // Envoy writes the event log through its file flush (10 s by default).
    envoyArgs: ['--file-flush-interval-msec', '100'],
  }));
});

afterAll(async () => {
  await gw?.stop();
});

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((p) => l.includes(p)));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

const logged = (msg: string): Record<string, unknown>[] =>
  logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => typeof l['msg'] === 'string' && (l['msg']).startsWith(msg));

it('an ejected member is logged and counted by name, and logged back after its cool-down', async () => {
  await p0.setMode({ kind: 'status', status: 503 });
  await chatUntilEjected(gw);
  const ejected = await waitFor(() => logged('pool member ejected')[0], { what: 'the ejection in serve\'s log', timeoutMs: 3_000 });
  // A 503 is both a 5xx and a gateway failure: Envoy 1.40 named CONSECUTIVE_GATEWAY_FAILURE.
  expect(ejected).toMatchObject({ level: 40, backend: 'ai/chat', member: 'primary', priority: 0 });
  expect(String(ejected['cause'])).toMatch(/^CONSECUTIVE_(5XX|GATEWAY_FAILURE)$/);
  expect(await metric('switchyard_member_ejections_total', `backend="ai/chat",member="primary",type="${String(ejected['cause'])}"`)).toBe(1);
  expect(await metric('switchyard_member_ejected', 'backend="ai/chat",member="primary"')).toBe(1);

  await p0.setMode('ok');
  const back = await waitFor(() => logged('pool member back from its cool-down')[0], { what: 'the un-ejection in serve\'s log', timeoutMs: 6_000 });
  expect(back).toMatchObject({ backend: 'ai/chat', member: 'primary' });
  expect(await metric('switchyard_member_ejected', 'backend="ai/chat",member="primary"')).toBe(0);
});
