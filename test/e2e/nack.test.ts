import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/resources.js';
import type { NackEvent } from '../../src/xds/server.js';
import { aiBackend, gatewayManifests, GATEWAY, NAMESPACE, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * An edit the translator accepts but Envoy refuses, end to end in file mode: an HTTPRoute path
 * match of type RegularExpression that RE2 cannot compile. Envoy NACKs the RouteConfiguration
 * (RDS) it lands in; the Gateway that configuration belongs to says so (Programmed=False,
 * Rejected, Envoy's words), Envoy keeps serving the routes it had, the controller does not push
 * the rejected version again, and the next valid edit is served and acknowledged.
 */

const BROKEN_REGEX = '^/v2/((';
const FIXED_REGEX = '^/v2/chat/(completions)$';

let gw: GatewayFixture;
const nacks: NackEvent[] = [];

/** HTTPRoute `chat`: /v1 → Backend `chat` (p0); with `v2Regex`, a RegularExpression rule → Backend `beta` (p1). */
function routes(v2Regex?: string): Manifest[] {
  const rules: Manifest[] = [
    { matches: [{ path: { type: 'PathPrefix', value: '/v1' } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: 'chat' }] },
  ];
  if (v2Regex !== undefined) {
    rules.push({
      matches: [{ path: { type: 'RegularExpression', value: v2Regex } }],
      filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/v1/chat/completions' } } }],
      backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: 'beta' }],
    });
  }
  return [
    {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'chat', namespace: NAMESPACE },
      spec: { parentRefs: [{ name: GATEWAY }], rules },
    },
  ];
}

function programmed(): { status?: string; reason?: string; message?: string } {
  return gw.condition('Gateway', GATEWAY, 'Programmed') ?? {};
}

function listenerProgrammed(): { status?: string; reason?: string; message?: string } {
  const s = gw.status('Gateway', GATEWAY);
  const l = s && 'listeners' in s ? s.listeners.find((x) => x.name === 'http') : undefined;
  return l?.conditions.find((c) => c.type === 'Programmed') ?? {};
}

function routeTypeState(): { state?: string; sentVersion?: string | undefined; nackMessage?: string | undefined } {
  const t = gw.controller.xds.clients().flatMap((c) => c.types).find((x) => x.typeUrl === TypeUrl.route);
  return t ? { state: t.state, sentVersion: t.sentVersion, nackMessage: t.lastNack?.message } : {};
}

async function nackCounter(): Promise<number> {
  const metric = await gw.controller.metrics.xdsNacks.get();
  return metric.values.filter((v) => v.labels['type_url'] === TypeUrl.route).reduce((sum, v) => sum + v.value, 0);
}

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'nack',
    providers: ['p0', 'p1'],
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        aiBackend({ name: 'chat', llm: true, priorities: [[{ fake: fakes['p0']!, hostname: 'chat.llm.test' }]] }),
        aiBackend({ name: 'beta', llm: true, priorities: [[{ fake: fakes['p1']!, hostname: 'beta.llm.test' }]] }),
      ],
      'routes.yaml': routes(),
    }),
    waitForBackends: ['chat', 'beta'],
  });
  gw.controller.xds.on('nack', (e) => nacks.push(e));
});

afterAll(async () => {
  await gw?.stop();
});

describe('a route Envoy cannot compile', () => {
  it('serves and acknowledges the valid configuration first', async () => {
    await waitFor(() => programmed().status === 'True', { what: 'Programmed=True on Gateway ai/ai-gateway', timeoutMs: 10_000 });
    expect(programmed()).toMatchObject({ status: 'True', reason: 'Programmed' });
    await waitFor(async () => (await gw.chat()).answeredBy === 'p0', { what: '/v1 to be answered by p0' });
    expect(nacks).toHaveLength(0);
  });

  it('is NACKed once, reported as Programmed=False/Rejected with Envoy\'s message, and the previous routes keep serving', async () => {
    const ackedVersion = routeTypeState().sentVersion;
    const countersBefore = await nackCounter();
    gw.write('routes.yaml', routes(BROKEN_REGEX));

    const nack = await waitFor(() => nacks.find((n) => n.typeUrl === TypeUrl.route), { what: 'Envoy to NACK the RouteConfiguration with the invalid regex', timeoutMs: 10_000 });
    // The translator took the edit: it is a new version of the route configuration, not a file problem.
    expect(gw.controller.problems()).toEqual([]);
    expect(nack.version).not.toBe(ackedVersion);
    expect(nack.version).toBe(gw.controller.cache.snapshot(TypeUrl.route)?.version);
    // RE2's own error, passed through by Envoy.
    expect(nack.message).toContain('missing )');
    expect(nack.message).toContain(BROKEN_REGEX);

    await waitFor(() => programmed().reason === 'Rejected', { what: `Programmed=False/Rejected on Gateway ai/ai-gateway (now ${JSON.stringify(programmed())})`, timeoutMs: 5_000 });
    expect(programmed()).toMatchObject({ status: 'False', reason: 'Rejected' });
    expect(programmed().message).toContain(nack.message);
    expect(listenerProgrammed()).toMatchObject({ status: 'False', reason: 'Rejected' });
    // The Backends' clusters were not part of the rejected update.
    expect(gw.condition('Backend', 'chat', 'Programmed')).toMatchObject({ status: 'True' });
    expect(gw.condition('Backend', 'beta', 'Programmed')).toMatchObject({ status: 'True' });
    expect(routeTypeState()).toMatchObject({ state: 'rejected', nackMessage: nack.message });

    // Envoy still routes by the configuration it acknowledged: /v1 answers, /v2 was never added.
    const answer = await gw.chat();
    expect(answer).toMatchObject({ content: 'answered by p0', answeredBy: 'p0' });
    expect((await gw.chatFailure('/v2')).status).toBe(404);
    expect(gw.fakes['p1']!.received()).toHaveLength(0);

    // No resend loop: the rejected version is not pushed again, so Envoy does not NACK again.
    await sleep(2_000);
    expect(nacks.filter((n) => n.typeUrl === TypeUrl.route)).toHaveLength(1);
    expect(nacks).toHaveLength(1);
    expect(await nackCounter()).toBe(countersBefore + 1);
    expect(programmed()).toMatchObject({ status: 'False', reason: 'Rejected' });
  });

  it('is Programmed again once the file is fixed, and the new route serves', async () => {
    const nacksBefore = nacks.length;
    gw.write('routes.yaml', routes(FIXED_REGEX));
    await waitFor(() => programmed().status === 'True', { what: `Programmed=True on Gateway ai/ai-gateway again (now ${JSON.stringify(programmed())})`, timeoutMs: 10_000 });
    expect(programmed()).toMatchObject({ status: 'True', reason: 'Programmed' });
    expect(listenerProgrammed()).toMatchObject({ status: 'True', reason: 'Programmed' });
    expect(routeTypeState()).toMatchObject({ state: 'acked', sentVersion: gw.controller.cache.snapshot(TypeUrl.route)?.version });

    const answer = await gw.chat('/v2');
    expect(answer).toMatchObject({ content: 'answered by p1', answeredBy: 'p1' });
    expect(gw.fakes['p1']!.received().at(-1)?.path).toBe('/v1/chat/completions');
    expect((await gw.chat()).answeredBy).toBe('p0');
    expect(nacks).toHaveLength(nacksBefore);
  });
});
