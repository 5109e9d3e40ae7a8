import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/resources.js';
import type { NackEvent } from '../../src/xds/server.js';
import { aiBackend, gatewayManifests, GATEWAY, httpRoute, NAMESPACE, regexRoute, routeAccepted, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';
import { waitFor } from '../support/wait.js';

/**
 * A route Envoy rejects is isolated when that Envoy is the data plane of one Gateway. Its route
 * versions are those of its Gateway's view, not of the whole configuration (a second Gateway,
 * ai/other, has routes of its own), and the quarantine still finds the culprit and names it. As
 * in route-quarantine.test.ts, Envoy's RE2 program size limit is lowered to its own default
 * (100) so that a 64-character token regex is NACKed.
 */

const OTHER = 'other';
const TOKEN_REGEX = '/x/[a-z0-9]{64}/chat/completions';

let gw: GatewayFixture;
const nacks: NackEvent[] = [];

function otherGateway(port: number): Manifest[] {
  return [
    { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: OTHER, namespace: NAMESPACE }, spec: { gatewayClassName: 'switchyard', listeners: [{ name: 'http', protocol: 'HTTP', port }] } },
    { ...httpRoute('other-chat', [{ path: '/o1', backend: 'chat' }]), spec: { parentRefs: [{ name: OTHER }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/o1' } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: 'chat' }] }] } },
  ];
}



beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'dataplane-quarantine',
    providers: ['p0'],
    ownGateway: true,
    manifests: ({ listenerPort, fakes }) => ({
      // The other Gateway listens on the same port number: it has a data plane of its own.
      'gateway.yaml': [...gatewayManifests(listenerPort), ...otherGateway(listenerPort)],
      'backends.yaml': [aiBackend({ name: 'chat', llm: true, priorities: [[{ fake: fakes['p0']!, hostname: 'chat.llm.test' }]] })],
      'routes.yaml': [httpRoute('chat', [{ path: '/v1', backend: 'chat' }])],
    }),
    waitForBackends: ['chat'],
  });
  gw.controller.xds.on('nack', (e) => nacks.push(e));
  const lowered = await fetch(`${gw.envoy.adminUrl}/runtime_modify?re2.max_program_size.error_level=100`, { method: 'POST' });
  expect(lowered.ok).toBe(true);
});

afterAll(async () => {
  await gw?.stop();
});

describe('an Envoy of one Gateway', () => {
  it('holds only its Gateway\'s listener, and its route versions differ from the whole configuration\'s', async () => {
    expect((await gw.envoy.listeners()).map((l) => l.name)).toEqual([`${NAMESPACE}/${GATEWAY}/${gw.listenerPort}`]);
    const client = gw.controller.xds.clients().find((c) => c.gateway === `${NAMESPACE}/${GATEWAY}`);
    const routes = client?.types.find((t) => t.typeUrl === TypeUrl.route);
    expect(routes?.state).toBe('acked');
    expect(routes?.ackedVersion).not.toBe(gw.controller.cache.snapshot(TypeUrl.route)?.version);
    expect(routes?.ackedVersion).toBe(gw.controller.cache.view(`${NAMESPACE}/${GATEWAY}`).snapshot(TypeUrl.route)?.version);
  });

  it('gets the route it rejects isolated and named; a new valid route on its listener answers', async () => {
    await waitFor(async () => (await gw.chat('/v1')).answeredBy === 'p0', { what: '/v1 to be answered by p0' });
    gw.write('routes.yaml', [httpRoute('chat', [{ path: '/v1', backend: 'chat' }]), regexRoute('tokens', TOKEN_REGEX, 'chat')]);
    await waitFor(() => nacks.length > 0, { what: 'Envoy to NACK the route with the token regex', timeoutMs: 10_000 });
    await waitFor(() => routeAccepted(gw, 'tokens').status === 'False', { what: `Accepted=False on HTTPRoute ai/tokens (now ${JSON.stringify(routeAccepted(gw, 'tokens'))})`, timeoutMs: 10_000 });
    expect(routeAccepted(gw, 'tokens')).toMatchObject({ reason: 'UnsupportedValue' });
    expect(routeAccepted(gw, 'tokens').message).toContain('RE2 program size of');
    gw.write('routes.yaml', [httpRoute('chat', [{ path: '/v1', backend: 'chat' }]), regexRoute('tokens', TOKEN_REGEX, 'chat'), httpRoute('fresh', [{ path: '/v3', backend: 'chat' }])]);
    await waitFor(async () => (await gw.chat('/v3').catch(() => ({ answeredBy: null }))).answeredBy === 'p0', { what: '/v3 (a new valid route) to be answered', timeoutMs: 10_000 });
    await waitFor(() => gw.condition('Gateway', GATEWAY, 'Programmed')?.status === 'True', { what: 'Programmed=True on the Gateway once the rest is ACKed', timeoutMs: 10_000 });
    // No Envoy serves the other Gateway: it waits, whatever this Envoy ACKed.
    expect(gw.condition('Gateway', OTHER, 'Programmed')).toMatchObject({ status: 'False', reason: 'Pending' });
  });
});
