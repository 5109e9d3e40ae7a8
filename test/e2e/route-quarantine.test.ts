import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NackEvent } from '../../src/xds/server.js';
import { aiBackend, gatewayManifests, GATEWAY, httpRoute, NAMESPACE, regexRoute, routeAccepted, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';
import { waitFor } from '../support/wait.js';

/**
 * Route shapes Envoy 1.40 rejects, with the real Envoy. First the six measured on main (each made
 * Envoy reject the listener's whole RouteConfiguration): the translator refuses them naming the
 * field and Envoy never sees them. Then defence in depth: a route Envoy rejects although the translator let it
 * through no longer freezes its listener. This Envoy's RE2 program size limit is lowered to
 * Envoy's own default (100), as on an Envoy bootstrapped by hand, so a 64-character token regex
 * (program size 151 here; Switchyard's bootstrap allows 1000) is NACKed. On main the whole
 * RouteConfiguration stayed rejected and a new valid route answered 404; here the culprit is left
 * out, named in its own status with Envoy's reason in a line, and the rest keeps moving.
 */

const TOKEN_REGEX = '/x/[a-z0-9]{64}/chat/completions';

let gw: GatewayFixture;
const nacks: NackEvent[] = [];



beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'quarantine',
    providers: ['p0', 'p1'],
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        aiBackend({ name: 'chat', llm: true, priorities: [[{ fake: fakes['p0']!, hostname: 'chat.llm.test' }]] }),
        aiBackend({ name: 'beta', llm: true, priorities: [[{ fake: fakes['p1']!, hostname: 'beta.llm.test' }]] }),
      ],
      'routes.yaml': [httpRoute('chat', [{ path: '/v1', backend: 'chat' }])],
    }),
    waitForBackends: ['chat', 'beta'],
  });
  gw.controller.xds.on('nack', (e) => nacks.push(e));
});

afterAll(async () => {
  await gw?.stop();
});

describe('route shapes Envoy rejects never reach it', () => {
  it('the six shapes measured on main are refused naming the field; a new valid route on the listener answers 200, with no NACK', async () => {
    await waitFor(async () => (await gw.chat('/v1')).answeredBy === 'p0', { what: '/v1 to be answered by p0' });
    const shaped = (name: string, filter: Manifest): Manifest => ({
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: NAMESPACE },
      spec: { parentRefs: [{ name: GATEWAY }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: `/${name}` } }], filters: [filter], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: 'beta' }] }] },
    });
    const bad: [Manifest, string][] = [
      [regexRoute('regex', '/x/[a-z0-9]{600}/chat/completions', 'beta'), 'spec.rules[0].matches[0].path.value'],
      [shaped('newline', { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-a', value: 'one\ntwo' }] } }), 'requestHeaderModifier.set[0].value'],
      [shaped('path', { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: ':path', value: '/x' }] } }), 'requestHeaderModifier.set[0].name'],
      [shaped('host', { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'host', value: 'x.example' }] } }), 'requestHeaderModifier.set[0].name'],
      [shaped('authority', { type: 'RequestHeaderModifier', requestHeaderModifier: { remove: [':authority'] } }), 'requestHeaderModifier.remove[0]'],
      [shaped('rewrite', { type: 'URLRewrite', urlRewrite: { hostname: 'api example.com' } }), 'urlRewrite.hostname'],
    ];
    gw.write('routes.yaml', [httpRoute('chat', [{ path: '/v1', backend: 'chat' }]), ...bad.map(([m]) => m), httpRoute('valid', [{ path: '/v5', backend: 'beta' }])]);
    await waitFor(async () => (await gw.chat('/v5').catch(() => ({ answeredBy: null }))).answeredBy === 'p1', { what: '/v5 (a new valid route beside six bad ones) to be answered by p1', timeoutMs: 10_000 });
    for (const [m, field] of bad) {
      const name = String((m['metadata'] as { name: string }).name);
      expect(routeAccepted(gw, name), name).toMatchObject({ status: 'False', reason: 'UnsupportedValue' });
      expect(routeAccepted(gw, name).message, name).toContain(field);
    }
    expect(nacks).toEqual([]);
    gw.write('routes.yaml', [httpRoute('chat', [{ path: '/v1', backend: 'chat' }])]);
    await waitFor(() => gw.status('HTTPRoute', 'valid') === undefined, { what: 'the routes to be removed' });
  });
});

describe('a route Envoy rejects is isolated', () => {
  beforeAll(async () => {
    const lowered = await fetch(`${gw.envoy.adminUrl}/runtime_modify?re2.max_program_size.error_level=100`, { method: 'POST' });
    expect(lowered.ok).toBe(true);
  });

  it('the culprit is left out and named with Envoy\'s reason; a new valid route on the same listener answers 200', async () => {
    await waitFor(async () => (await gw.chat('/v1')).answeredBy === 'p0', { what: '/v1 to be answered by p0' });
    gw.write('routes.yaml', [httpRoute('chat', [{ path: '/v1', backend: 'chat' }]), regexRoute('tokens', TOKEN_REGEX, 'beta')]);
    await waitFor(() => nacks.length > 0, { what: 'Envoy to NACK the route with the token regex', timeoutMs: 10_000 });
    expect(nacks[0]?.message).toContain('RE2 program size of');

    await waitFor(() => routeAccepted(gw, 'tokens').status === 'False', { what: `Accepted=False on HTTPRoute ai/tokens (now ${JSON.stringify(routeAccepted(gw, 'tokens'))})`, timeoutMs: 10_000 });
    const culprit = routeAccepted(gw, 'tokens');
    expect(culprit.reason).toBe('UnsupportedValue');
    expect(culprit.message).toMatch(/^Envoy quarantine rejected this route: .*RE2 program size of \d+ > max program size of 100/);
    expect(culprit.message?.length ?? 0).toBeLessThan(600);
    expect(culprit.message).not.toContain('\n');
    expect(routeAccepted(gw, 'chat')).toMatchObject({ status: 'True' });

    // A new valid route on the same listener is served: on main it answered 404 here.
    gw.write('routes.yaml', [httpRoute('chat', [{ path: '/v1', backend: 'chat' }]), regexRoute('tokens', TOKEN_REGEX, 'beta'), httpRoute('fresh', [{ path: '/v3', backend: 'beta' }])]);
    await waitFor(async () => (await gw.chat('/v3').catch(() => ({ answeredBy: null }))).answeredBy === 'p1', { what: '/v3 (a new valid route) to be answered by p1', timeoutMs: 10_000 });
    expect((await gw.chat('/v1')).answeredBy).toBe('p0');
    expect(routeAccepted(gw, 'tokens')).toMatchObject({ status: 'False', reason: 'UnsupportedValue' });
    await waitFor(() => gw.condition('Gateway', GATEWAY, 'Programmed')?.status === 'True', { what: 'Programmed=True on the Gateway once the rest is ACKed', timeoutMs: 10_000 });
  });

  it('when a bad and a good route change together, each is re-admitted alone: the good one serves, the bad one is named', async () => {
    const before = nacks.length;
    gw.write('routes.yaml', [
      httpRoute('chat', [{ path: '/v1', backend: 'chat' }]), regexRoute('tokens', TOKEN_REGEX, 'beta'), httpRoute('fresh', [{ path: '/v3', backend: 'beta' }]),
      regexRoute('tokens2', '/y/[a-z0-9]{64}/chat/completions', 'beta'), httpRoute('fresh2', [{ path: '/v4', backend: 'beta' }]),
    ]);
    await waitFor(async () => (await gw.chat('/v4').catch(() => ({ answeredBy: null }))).answeredBy === 'p1', { what: '/v4 (changed together with a bad route) to be answered by p1', timeoutMs: 15_000 });
    await waitFor(() => routeAccepted(gw, 'tokens2').reason === 'UnsupportedValue', { what: `HTTPRoute ai/tokens2 named as rejected (now ${JSON.stringify(routeAccepted(gw, 'tokens2'))})`, timeoutMs: 10_000 });
    expect(routeAccepted(gw, 'fresh2')).toMatchObject({ status: 'True' });
    expect(routeAccepted(gw, 'tokens')).toMatchObject({ status: 'False', reason: 'UnsupportedValue' });
    expect(nacks.length).toBeGreaterThan(before);
    expect((await gw.chat('/v3')).answeredBy).toBe('p1');
  });

  it('a quarantined route whose spec is fixed is admitted again and served', async () => {
    gw.write('routes.yaml', [
      httpRoute('chat', [{ path: '/v1', backend: 'chat' }]), regexRoute('tokens', '/x/[a-z0-9]+/chat/completions', 'beta'), httpRoute('fresh', [{ path: '/v3', backend: 'beta' }]),
      httpRoute('fresh2', [{ path: '/v4', backend: 'beta' }]),
    ]);
    await waitFor(() => routeAccepted(gw, 'tokens').status === 'True', { what: 'Accepted=True on the fixed HTTPRoute ai/tokens', timeoutMs: 10_000 });
    await waitFor(async () => (await gw.chat(`/x/${'a'.repeat(64)}`).catch(() => ({ answeredBy: null }))).answeredBy === 'p1', { what: 'the fixed regex route to answer', timeoutMs: 10_000 });
    expect(gw.status('HTTPRoute', 'tokens2')).toBeUndefined();
  });
});
