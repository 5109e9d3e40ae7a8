import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/resources.js';
import type { NackEvent } from '../../src/xds/server.js';
import { aiBackend, gatewayManifests, GATEWAY, NAMESPACE, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';
import { LDS_DETAIL } from '../support/envoy-nack-details.js';
import { freePort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

/**
 * Configuration Envoy refuses, end to end in file mode. A regular expression RE2 cannot compile
 * never reaches Envoy: the translator refuses that match (PartiallyInvalid on the HTTPRoute, the
 * field named) and serves the rest. What only Envoy can find out, a Gateway listener on a port
 * another process holds, is NACKed: that listener is left out (the quarantine of
 * resource-quarantine.ts), the Gateway and that listener section say so (Programmed=False,
 * Rejected, Envoy's reason), Envoy keeps serving what it had, the controller does not push the
 * rejected listener again, and the next valid edit is served and acknowledged.
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

/** The fixture's Gateway, with a second listener on `extraPort` and a third on `laterPort` when given. */
function gateway(listenerPort: number, extraPort?: number, laterPort?: number): Manifest[] {
  const manifests = gatewayManifests(listenerPort);
  const gw = manifests.find((m) => m['kind'] === 'Gateway') as { spec: { listeners: Manifest[] } };
  if (extraPort !== undefined) gw.spec.listeners.push({ name: 'extra', protocol: 'HTTP', port: extraPort, allowedRoutes: { namespaces: { from: 'Same' } } });
  if (laterPort !== undefined) gw.spec.listeners.push({ name: 'later', protocol: 'HTTP', port: laterPort, allowedRoutes: { namespaces: { from: 'Same' } } });
  return manifests;
}

function routeCondition(type: string): { status?: string; reason?: string; message?: string } {
  const s = gw.status('HTTPRoute', 'chat');
  const parent = s && 'parents' in s ? s.parents[0] : undefined;
  return parent?.conditions.find((c) => c.type === type) ?? {};
}

function programmed(): { status?: string; reason?: string; message?: string } {
  return gw.condition('Gateway', GATEWAY, 'Programmed') ?? {};
}

function listenerProgrammed(section = 'http'): { status?: string; reason?: string; message?: string } {
  const s = gw.status('Gateway', GATEWAY);
  const l = s && 'listeners' in s ? s.listeners.find((x) => x.name === section) : undefined;
  return l?.conditions.find((c) => c.type === 'Programmed') ?? {};
}

function typeState(typeUrl: string): { state?: string; sentVersion?: string | undefined; nackMessage?: string | undefined } {
  const t = gw.controller.xds.clients().flatMap((c) => c.types).find((x) => x.typeUrl === typeUrl);
  return t ? { state: t.state, sentVersion: t.sentVersion, nackMessage: t.lastNack?.message } : {};
}

async function nackCounter(typeUrl: string): Promise<number> {
  const metric = await gw.controller.metrics.xdsNacks.get();
  return metric.values.filter((v) => v.labels['type_url'] === typeUrl).reduce((sum, v) => sum + v.value, 0);
}

let listenerPort = 0;
let busyPort = 0;
let squatter: Server;

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'nack',
    providers: ['p0', 'p1'],
    manifests: ({ listenerPort: port, fakes }) => ({
      'gateway.yaml': gateway(port),
      'backends.yaml': [
        aiBackend({ name: 'chat', llm: true, priorities: [[{ fake: fakes['p0']!, hostname: 'chat.llm.test' }]] }),
        aiBackend({ name: 'beta', llm: true, priorities: [[{ fake: fakes['p1']!, hostname: 'beta.llm.test' }]] }),
      ],
      'routes.yaml': routes(),
    }),
    waitForBackends: ['chat', 'beta'],
  });
  gw.controller.xds.on('nack', (e) => nacks.push(e));
  listenerPort = gw.listenerPort;
  busyPort = await freePort();
  squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(busyPort, '127.0.0.1', resolve));
});

afterAll(async () => {
  await gw?.stop();
  await new Promise<void>((resolve) => (squatter ? squatter.close(() => resolve()) : resolve()));
});

describe('configuration Envoy would refuse', () => {
  it('serves and acknowledges the valid configuration first', async () => {
    await waitFor(() => programmed().status === 'True', { what: 'Programmed=True on Gateway ai/ai-gateway', timeoutMs: 10_000 });
    expect(programmed()).toMatchObject({ status: 'True', reason: 'Programmed' });
    await waitFor(async () => (await gw.chat()).answeredBy === 'p0', { what: '/v1 to be answered by p0' });
    expect(nacks).toHaveLength(0);
  });

  it('refuses a regular expression RE2 cannot compile itself: the field is named, the rest is served, Envoy never sees it', async () => {
    const routesBefore = gw.controller.cache.snapshot(TypeUrl.route)?.version;
    gw.write('routes.yaml', routes(BROKEN_REGEX));
    await waitFor(() => routeCondition('PartiallyInvalid').status === 'True', { what: 'PartiallyInvalid=True on HTTPRoute ai/chat', timeoutMs: 5_000 });
    expect(routeCondition('PartiallyInvalid')).toMatchObject({ reason: 'UnsupportedValue' });
    expect(routeCondition('PartiallyInvalid').message).toContain('spec.rules[1].matches[0].path.value');
    expect(routeCondition('PartiallyInvalid').message).toContain('missing )');
    expect(routeCondition('Accepted')).toMatchObject({ status: 'True' });
    // Nothing Envoy would reject was served: no new route version, no NACK, /v1 still answers.
    // No wait needed: statuses() are those of the latest translation, which set the cache before
    // its statuses were made, so the version read now is the one served with this condition, and
    // Envoy can only NACK a version it was sent.
    expect(gw.controller.cache.snapshot(TypeUrl.route)?.version).toBe(routesBefore);
    expect(nacks).toHaveLength(0);
    expect((await gw.chat()).answeredBy).toBe('p0');
    expect(programmed()).toMatchObject({ status: 'True' });
  });

  it('is NACKed once when a listener cannot bind: that listener alone is left out and named Programmed=False/Rejected with Envoy\'s reason, the rest is served and acknowledged', async () => {
    const ackedVersion = typeState(TypeUrl.listener).sentVersion;
    const countersBefore = await nackCounter(TypeUrl.listener);
    gw.write('gateway.yaml', gateway(listenerPort, busyPort));

    const nack = await waitFor(() => nacks.find((n) => n.typeUrl === TypeUrl.listener), { what: `Envoy to NACK the listener on busy port ${busyPort}`, timeoutMs: 10_000 });
    expect(gw.controller.problems()).toEqual([]);
    expect(nack.version).not.toBe(ackedVersion);
    expect(nack.message).toContain(String(busyPort));
    expect(nack.message).toBe(LDS_DETAIL.replaceAll('33573', String(busyPort)));

    await waitFor(() => programmed().reason === 'Rejected', { what: `Programmed=False/Rejected on Gateway ai/ai-gateway (now ${JSON.stringify(programmed())})`, timeoutMs: 5_000 });
    expect(programmed()).toMatchObject({ status: 'False', reason: 'Rejected' });
    // Envoy's reason, on one line, naming the listener.
    expect(programmed().message).toContain(`listener ${NAMESPACE}/${GATEWAY}/${busyPort}`);
    expect(programmed().message).toContain(`cannot bind '127.0.0.1:${busyPort}'`);
    expect(programmed().message).toContain('it is left out until this object changes');
    expect(programmed().message).not.toContain('\n');
    // Only the listener section on the busy port is rejected; the other keeps serving.
    expect(listenerProgrammed('extra')).toMatchObject({ status: 'False', reason: 'Rejected' });
    // The Backends' clusters were not part of the rejected update.
    expect(gw.condition('Backend', 'chat', 'Programmed')).toMatchObject({ status: 'True' });
    // The listener set without the culprit, which Envoy already had, is served again and acknowledged.
    await waitFor(() => typeState(TypeUrl.listener).state === 'acked', { what: 'the listeners without the culprit to be ACKed' });
    expect(typeState(TypeUrl.listener).sentVersion).toBe(ackedVersion);
    await waitFor(() => listenerProgrammed('http').status === 'True', { what: `Programmed=True on listener http (now ${JSON.stringify(listenerProgrammed('http'))})` });

    // Envoy still serves the listener it had.
    expect(await gw.chat()).toMatchObject({ content: 'answered by p0', answeredBy: 'p0' });

    // A listener added after the rejection reaches Envoy; the rejected one is not sent with it.
    const laterPort = await freePort();
    gw.write('gateway.yaml', gateway(listenerPort, busyPort, laterPort));
    await gw.envoy.waitForListener(`${NAMESPACE}/${GATEWAY}/${laterPort}`);
    await waitFor(() => listenerProgrammed('later').status === 'True', { what: `Programmed=True on listener later (now ${JSON.stringify(listenerProgrammed('later'))})` });

    // No resend loop: the rejected listener was not pushed again, so Envoy did not NACK again.
    // That push stands in for a wait: the server has no timer that resends a NACKed resource, so a
    // resend would be a response sent on the ACK of the set without the culprit, and Envoy answers
    // one ADS stream in order: its NACK would have reached the server before the ACK that made
    // listener `later` Programmed.
    expect(nacks.filter((n) => n.typeUrl === TypeUrl.listener)).toHaveLength(1);
    expect(nacks).toHaveLength(1);
    expect(await nackCounter(TypeUrl.listener)).toBe(countersBefore + 1);
    expect(listenerProgrammed('extra')).toMatchObject({ status: 'False', reason: 'Rejected' });
    expect(programmed()).toMatchObject({ status: 'False', reason: 'Rejected' });
  });

  it('is Programmed again once the files are fixed, and the new route serves', async () => {
    const nacksBefore = nacks.length;
    gw.write('gateway.yaml', gateway(listenerPort));
    gw.write('routes.yaml', routes(FIXED_REGEX));
    await waitFor(() => programmed().status === 'True', { what: `Programmed=True on Gateway ai/ai-gateway again (now ${JSON.stringify(programmed())})`, timeoutMs: 10_000 });
    expect(programmed()).toMatchObject({ status: 'True', reason: 'Programmed' });
    expect(listenerProgrammed()).toMatchObject({ status: 'True', reason: 'Programmed' });
    expect(routeCondition('PartiallyInvalid')).toEqual({});
    await waitFor(() => typeState(TypeUrl.route).state === 'acked', { what: 'the new routes to be ACKed' });

    const answer = await gw.chat('/v2');
    expect(answer).toMatchObject({ content: 'answered by p1', answeredBy: 'p1' });
    expect(gw.fakes['p1']!.received().at(-1)?.path).toBe('/v1/chat/completions');
    expect((await gw.chat()).answeredBy).toBe('p0');
    expect(nacks).toHaveLength(nacksBefore);
  });
});
