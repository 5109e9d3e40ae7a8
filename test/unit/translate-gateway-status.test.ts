/**
 * Gateway API status rules the conformance suite (sigs.k8s.io/gateway-api v1.4.1) checks:
 * certificateRefs validated as Envoy loads them, listener protocols and route kinds Switchyard
 * does not serve, attachedRoutes on listeners that are not served, redirect ports, and the
 * GatewayClass supportedFeatures list.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Condition } from '../../src/api/conditions.js';
import { parseManifest } from '../../src/api/manifest.js';
import type { Secret } from '../../src/api/secret.js';
import type { RedirectAction } from '../../src/ir/model.js';
import { checkServingCertificate } from '../../src/translate/certificates.js';
import { SUPPORTED_FEATURES } from '../../src/translate/features.js';
import { translate, type Translation } from '../../src/translate/index.js';
import { addToInputs, emptyInputs, type Inputs } from '../../src/translate/inputs.js';
import type { GatewayClassStatus, GatewayStatus, HTTPRouteStatus, ListenerStatus } from '../../src/translate/status.js';
import { createPki, type Pki } from '../support/certs.js';

let pki: Pki;
let leaf = { crt: '', key: '' };
let other = { crt: '', key: '' };

beforeAll(() => {
  pki = createPki('gateway-status');
  const read = (dir: string): { crt: string; key: string } => ({ crt: readFileSync(join(dir, 'tls.crt'), 'utf8'), key: readFileSync(join(dir, 'tls.key'), 'utf8') });
  leaf = read(pki.issue('leaf', { san: ['DNS:a.example.com'], usage: ['serverAuth'] }));
  other = read(pki.issue('other', { san: ['DNS:b.example.com'], usage: ['serverAuth'] }));
});
afterAll(() => pki.remove());

function tlsSecret(name: string, data: Record<string, string>, type: string | undefined = 'kubernetes.io/tls'): Secret {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'infra' }, ...(type ? { type } : {}), stringData: data };
}

function inputsOf(docs: unknown[]): Inputs {
  const inputs = emptyInputs();
  for (const doc of docs) {
    const r = parseManifest(doc);
    if (r.ok !== true) throw new Error(`test manifest rejected: ${JSON.stringify(r)}`);
    addToInputs(inputs, r.object);
  }
  return inputs;
}

const CLASS = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'sy' }, spec: { controllerName: 'switchyard.dev/gateway-controller' } };

function gateway(name: string, listeners: unknown[], extra: Record<string, unknown> = {}): unknown {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: 'infra' }, spec: { gatewayClassName: 'sy', listeners, ...extra } };
}

function route(name: string, spec: Record<string, unknown>): unknown {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: 'infra' }, spec };
}

function gatewayStatus(t: Translation, name: string): GatewayStatus {
  const s = t.statuses.find((x): x is GatewayStatus => x.kind === 'Gateway' && x.name === name && 'listeners' in x);
  if (!s) throw new Error(`no status for Gateway ${name}`);
  return s;
}

function listener(t: Translation, gw: string, name: string): ListenerStatus {
  const l = gatewayStatus(t, gw).listeners.find((x) => x.name === name);
  if (!l) throw new Error(`no listener ${name} on ${gw}`);
  return l;
}

function cond(conditions: Condition[], type: string): Pick<Condition, 'status' | 'reason'> & { message: string } {
  const c = conditions.find((x) => x.type === type);
  if (!c) throw new Error(`no ${type} condition in ${JSON.stringify(conditions)}`);
  return { status: c.status, reason: c.reason, message: c.message };
}

describe('checkServingCertificate: what Envoy would refuse is refused with the Secret and key named', () => {
  it('accepts a certificate with its own key, and a chain with the leaf first', () => {
    expect(checkServingCertificate(tlsSecret('ok', { 'tls.crt': leaf.crt, 'tls.key': leaf.key })).ok).toBe(true);
    const chain = leaf.crt + readFileSync(pki.caFile, 'utf8');
    const r = checkServingCertificate(tlsSecret('chain', { 'tls.crt': chain, 'tls.key': leaf.key }));
    expect(r).toEqual({ ok: true, certificate: { certificateChain: chain, privateKey: leaf.key } });
  });

  it.each([
    ['malformed PEM (the conformance suite: base64 "Hello world" in both keys)', { 'tls.crt': 'Hello world\n', 'tls.key': 'Hello world\n' }, 'kubernetes.io/tls', /Secret infra\/s: tls\.crt holds no PEM certificate/],
    ['a certificate block that is not X.509', { 'tls.crt': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 'tls.key': 'x' }, 'kubernetes.io/tls', /certificate 1 of 1 in tls\.crt is not a valid X\.509 certificate/],
    ['another certificate\'s key', { 'tls.crt': 'LEAF', 'tls.key': 'OTHER_KEY' }, 'kubernetes.io/tls', /tls\.key is not the private key of the first certificate in tls\.crt/],
    ['a key that is not a private key', { 'tls.crt': 'LEAF', 'tls.key': 'LEAF' }, 'kubernetes.io/tls', /tls\.key is not an unencrypted PEM private key/],
    ['a Secret of type Opaque', { 'tls.crt': 'LEAF', 'tls.key': 'LEAF_KEY' }, 'Opaque', /has type Opaque; a certificateRef needs a Secret of type kubernetes\.io\/tls/],
    ['no tls.key', { 'tls.crt': 'LEAF' }, 'kubernetes.io/tls', /Secret infra\/s lacks tls\.key/],
  ])('%s', (_, raw, type, message) => {
    const values: Record<string, string> = { LEAF: leaf.crt, LEAF_KEY: leaf.key, OTHER_KEY: other.key };
    const data = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, values[v] ?? v]));
    const r = checkServingCertificate(tlsSecret('s', data, type));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toMatch(message);
    // Messages go to status and events: no secret material in them.
    for (const secret of [leaf.key, other.key, 'Hello world']) expect(r.message).not.toContain(secret.trim().split('\n')[1] ?? secret);
  });

  it('refuses an encrypted private key (Envoy has no passphrase for it)', () => {
    const encrypted = execFileSync('openssl', ['pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-passout', 'pass:secret'], { input: leaf.key }).toString();
    expect(encrypted).toContain('ENCRYPTED PRIVATE KEY');
    const r = checkServingCertificate(tlsSecret('enc', { 'tls.crt': leaf.crt, 'tls.key': encrypted }));
    expect(r).toMatchObject({ ok: false, message: expect.stringMatching(/tls\.key is not an unencrypted PEM private key/) });
  });
});

describe('Gateway listeners: one bad listener is reported alone and the rest keeps serving', () => {
  it('a malformed certificate: ResolvedRefs False/InvalidCertificateRef, not served, its routes still counted', () => {
    const t = translate(inputsOf([
      CLASS,
      gateway('gw', [
        { name: 'https', protocol: 'HTTPS', port: 443, tls: { certificateRefs: [{ name: 'malformed' }] }, allowedRoutes: { namespaces: { from: 'All' } } },
        { name: 'http', protocol: 'HTTP', port: 80 },
      ]),
      tlsSecret('malformed', { 'tls.crt': 'Hello world\n', 'tls.key': 'Hello world\n' }),
      route('r', { parentRefs: [{ name: 'gw', sectionName: 'https' }], rules: [{ backendRefs: [{ name: 'does-not-exist', port: 8080 }] }] }),
    ]));
    const https = listener(t, 'gw', 'https');
    expect(cond(https.conditions, 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'InvalidCertificateRef', message: expect.stringContaining('Secret infra/malformed: tls.crt holds no PEM certificate') });
    expect(cond(https.conditions, 'Programmed')).toMatchObject({ status: 'False', reason: 'Invalid' });
    expect(https.supportedKinds).toEqual([{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' }]);
    expect(https.attachedRoutes).toBe(1);
    // The certificate never reaches Envoy; the HTTP listener is served.
    expect(t.ir.certificates).toEqual([]);
    expect(t.ir.listeners.map((l) => l.name)).toEqual(['infra/gw/80']);
    expect(cond(gatewayStatus(t, 'gw').conditions, 'Accepted')).toMatchObject({ status: 'True', reason: 'ListenersNotValid' });
    const parent = t.statuses.find((s): s is HTTPRouteStatus => s.kind === 'HTTPRoute' && 'parents' in s)?.parents[0];
    expect(cond(parent?.conditions ?? [], 'ResolvedRefs').status).toBe('False');
    expect(t.events).toContainEqual(expect.objectContaining({ reason: 'InvalidCertificateRef', message: expect.stringContaining('listener https: tls.certificateRefs[0]: Secret infra/malformed') }));
  });

  it('a valid certificate is served over SDS and ResolvedRefs is True', () => {
    const t = translate(inputsOf([
      CLASS,
      gateway('gw', [{ name: 'https', protocol: 'HTTPS', port: 443, tls: { certificateRefs: [{ name: 'good' }] } }]),
      tlsSecret('good', { 'tls.crt': leaf.crt, 'tls.key': leaf.key }),
    ]));
    expect(cond(listener(t, 'gw', 'https').conditions, 'ResolvedRefs').status).toBe('True');
    expect(t.ir.certificates.map((c) => c.name)).toEqual(['certificate/infra/good']);
  });

  it('TLS and TCP listeners: Accepted False/UnsupportedProtocol, no supported kinds, the Gateway stays accepted', () => {
    const t = translate(inputsOf([
      CLASS,
      gateway('gw', [
        { name: 'tls', protocol: 'TLS', port: 443, tls: { mode: 'Passthrough' }, allowedRoutes: { kinds: [{ kind: 'TLSRoute' }] } },
        { name: 'tcp', protocol: 'TCP', port: 9000 },
        { name: 'http', protocol: 'HTTP', port: 80 },
      ]),
      route('r', { parentRefs: [{ name: 'gw', sectionName: 'tls' }], rules: [{}] }),
    ]));
    for (const name of ['tls', 'tcp']) {
      const l = listener(t, 'gw', name);
      expect(cond(l.conditions, 'Accepted')).toMatchObject({ status: 'False', reason: 'UnsupportedProtocol' });
      expect(l.supportedKinds).toEqual([]);
      expect(l.attachedRoutes).toBe(0);
    }
    expect(cond(listener(t, 'gw', 'tls').conditions, 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'InvalidRouteKinds' });
    expect(cond(gatewayStatus(t, 'gw').conditions, 'Accepted')).toMatchObject({ status: 'True', reason: 'ListenersNotValid', message: expect.stringContaining('listeners tls, tcp are not served') });
    expect(t.ir.listeners.map((l) => l.port)).toEqual([80]);
    const parent = t.statuses.find((s): s is HTTPRouteStatus => s.kind === 'HTTPRoute' && 'parents' in s)?.parents[0];
    expect(cond(parent?.conditions ?? [], 'Accepted')).toMatchObject({ status: 'False', reason: 'NotAllowedByListeners' });
    expect(cond(parent?.conditions ?? [], 'ResolvedRefs').status).toBe('True');
  });

  it('HTTPS with tls.mode Passthrough (refused by the CRD, possible in file mode): Accepted False/UnsupportedValue', () => {
    const t = translate(inputsOf([
      CLASS,
      gateway('gw', [{ name: 'https', protocol: 'HTTPS', port: 443, tls: { mode: 'Passthrough', certificateRefs: [{ name: 'good' }] } }]),
      tlsSecret('good', { 'tls.crt': leaf.crt, 'tls.key': leaf.key }),
    ]));
    const l = listener(t, 'gw', 'https');
    expect(cond(l.conditions, 'Accepted')).toMatchObject({ status: 'False', reason: 'UnsupportedValue', message: expect.stringContaining('use Terminate') });
    expect(cond(l.conditions, 'Conflicted').status).toBe('False');
    expect(t.ir.listeners).toEqual([]);
  });

  it('allowedRoutes.kinds: unsupported kinds are left out of supportedKinds with ResolvedRefs False/InvalidRouteKinds', () => {
    const t = translate(inputsOf([
      CLASS,
      gateway('only-invalid', [{ name: 'http', protocol: 'HTTP', port: 80, allowedRoutes: { namespaces: { from: 'All' }, kinds: [{ kind: 'InvalidRoute' }] } }]),
      gateway('mixed', [{ name: 'http', protocol: 'HTTP', port: 8080, allowedRoutes: { kinds: [{ kind: 'InvalidRoute' }, { kind: 'HTTPRoute' }, { group: 'example.com', kind: 'HTTPRoute' }] } }]),
      route('r', { parentRefs: [{ name: 'only-invalid' }, { name: 'mixed' }], rules: [{}] }),
    ]));
    const invalid = listener(t, 'only-invalid', 'http');
    expect(invalid.supportedKinds).toEqual([]);
    expect(invalid.attachedRoutes).toBe(0);
    expect(cond(invalid.conditions, 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'InvalidRouteKinds', message: expect.stringContaining('InvalidRoute is not supported') });
    const mixed = listener(t, 'mixed', 'http');
    expect(mixed.supportedKinds).toEqual([{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' }]);
    expect(mixed.attachedRoutes).toBe(1);
    expect(cond(mixed.conditions, 'ResolvedRefs').message).toContain('InvalidRoute, example.com/HTTPRoute are not supported');
  });

  it('attachedRoutes counts the routes allowedRoutes and parentRefs attach, on conflicted listeners too', () => {
    const t = translate(inputsOf([
      CLASS,
      gateway('gw', [
        { name: 'a', protocol: 'HTTP', port: 80, hostname: 'a.example.com' },
        { name: 'a-again', protocol: 'HTTP', port: 80, hostname: 'a.example.com' },
        { name: 'other-ns-only', protocol: 'HTTP', port: 81, allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { team: 'x' } } } } },
      ]),
      route('one', { parentRefs: [{ name: 'gw' }], rules: [{}] }),
      route('two', { parentRefs: [{ name: 'gw', sectionName: 'a' }], rules: [{}] }),
      route('elsewhere', { parentRefs: [{ name: 'gw', port: 8080 }], rules: [{}] }),
    ]));
    expect(listener(t, 'gw', 'a').attachedRoutes).toBe(2);
    expect(cond(listener(t, 'gw', 'a-again').conditions, 'Conflicted').status).toBe('True');
    expect(listener(t, 'gw', 'a-again').attachedRoutes).toBe(1);
    expect(listener(t, 'gw', 'other-ns-only').attachedRoutes).toBe(0);
  });
});

describe('RequestRedirect port (HTTPRequestRedirectFilter.port)', () => {
  function redirects(port: number, protocol: 'HTTP' | 'HTTPS', rules: Record<string, unknown>[]): Map<string, RedirectAction> {
    const tls = protocol === 'HTTPS' ? { tls: { certificateRefs: [{ name: 'good' }] } } : {};
    const t = translate(inputsOf([
      CLASS,
      gateway('gw', [{ name: 'l', protocol, port, ...tls }]),
      tlsSecret('good', { 'tls.crt': leaf.crt, 'tls.key': leaf.key }),
      route('r', { parentRefs: [{ name: 'gw' }], rules: rules.map((requestRedirect, i) => ({ matches: [{ path: { value: `/${i}` } }], filters: [{ type: 'RequestRedirect', requestRedirect }] })) }),
    ]));
    const out = new Map<string, RedirectAction>();
    for (const vh of t.ir.listeners[0]?.virtualHosts ?? []) for (const r of vh.routes) if (r.action.kind === 'redirect') out.set(r.match.path.value, r.action);
    return out;
  }

  it('no scheme, no port: the listener port, here 8080', () => {
    const r = redirects(8080, 'HTTP', [{ hostname: 'example.org' }, { path: { type: 'ReplaceFullPath', replaceFullPath: '/x' } }]);
    expect(r.get('/0')?.port).toBe(8080);
    expect(r.get('/1')?.port).toBe(8080);
  });

  it('a scheme and no port: that scheme\'s port, left out of Location when the host is replaced', () => {
    const r = redirects(8080, 'HTTP', [{ scheme: 'https', hostname: 'example.org' }, { scheme: 'https' }, { scheme: 'https', port: 8443, hostname: 'example.org' }]);
    expect(r.get('/0')?.port).toBeUndefined();
    expect(r.get('/1')?.port).toBe(443);
    expect(r.get('/2')?.port).toBe(8443);
  });

  it('an HTTPS listener on 443: no port in Location for https, 80 left out for http, 8080 kept', () => {
    const r = redirects(443, 'HTTPS', [{ hostname: 'example.org' }, { scheme: 'http', port: 80, hostname: 'example.org' }, { scheme: 'http', port: 8080, hostname: 'example.org' }]);
    expect(r.get('/0')?.port).toBeUndefined();
    expect(r.get('/1')?.port).toBeUndefined();
    expect(r.get('/2')?.port).toBe(8080);
  });
});

describe('HTTPRoute filters Switchyard does not apply are reported, never skipped', () => {
  function routeParent(t: Translation): Condition[] {
    return t.statuses.find((s): s is HTTPRouteStatus => s.kind === 'HTTPRoute' && 'parents' in s)?.parents[0]?.conditions ?? [];
  }
  const gw = gateway('gw', [{ name: 'http', protocol: 'HTTP', port: 80 }]);

  it('a filter type the API added later (CORS) drops its rule: PartiallyInvalid "Dropped Rule", the other rules serve', () => {
    const t = translate(inputsOf([CLASS, gw, route('r', { parentRefs: [{ name: 'gw' }], rules: [
      { matches: [{ path: { value: '/cors' } }], filters: [{ type: 'CORS', cors: { allowOrigins: ['*'] } }] },
      { matches: [{ path: { value: '/ok' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'example.org' } }] },
    ] })]));
    expect(cond(routeParent(t), 'Accepted').status).toBe('True');
    expect(cond(routeParent(t), 'PartiallyInvalid')).toMatchObject({ status: 'True', reason: 'UnsupportedValue', message: expect.stringMatching(/^Dropped Rule 0: spec\.rules\[0\]\.filters\[0\]: filter type CORS is not supported/) });
    const paths = t.ir.listeners.flatMap((l) => l.virtualHosts.flatMap((vh) => vh.routes.map((r) => r.match.path.value)));
    expect(paths).toEqual(['/ok']);
  });

  it('every rule dropped: Accepted False/UnsupportedValue, the route still counts as attached', () => {
    const t = translate(inputsOf([CLASS, gw, route('r', { parentRefs: [{ name: 'gw' }], rules: [{ filters: [{ type: 'RequestMirror', requestMirror: {} }] }] })]));
    expect(cond(routeParent(t), 'Accepted')).toMatchObject({ status: 'False', reason: 'UnsupportedValue', message: expect.stringContaining('filter type RequestMirror is not supported') });
    expect(listener(t, 'gw', 'http').attachedRoutes).toBe(1);
    expect(t.ir.listeners[0]?.virtualHosts).toEqual([]);
  });
});

describe('GatewayClass supportedFeatures and Gateway fields kept for the infrastructure', () => {
  it('publishes the features, sorted by name, in the class status', () => {
    const t = translate(inputsOf([CLASS]));
    const s = t.statuses.find((x): x is GatewayClassStatus => x.kind === 'GatewayClass');
    expect(s?.supportedFeatures).toEqual([...SUPPORTED_FEATURES]);
    expect(s?.supportedFeatures).toEqual([...(s?.supportedFeatures ?? [])].sort());
    expect(s?.supportedFeatures).toEqual(expect.arrayContaining(['Gateway', 'HTTPRoute', 'HTTPRouteBackendRequestHeaderModification', 'HTTPRoutePortRedirect', 'ReferenceGrant']));
    // Not implemented, so not claimed: the suite would run their tests.
    for (const missing of ['HTTPRouteRequestMirror', 'GatewayHTTPListenerIsolation', 'TLSRoute', 'GRPCRoute', 'HTTPRouteCORS']) expect(s?.supportedFeatures).not.toContain(missing);
  });

  it('spec.addresses and spec.infrastructure reach the IR; fields Switchyard does not read do not invalidate', () => {
    const t = translate(inputsOf([
      CLASS,
      gateway('gw', [{ name: 'http', protocol: 'HTTP', port: 80, tls: undefined, someFutureField: true }], {
        addresses: [{ type: 'IPAddress', value: '192.0.2.1' }, { type: 'Hostname' }, { value: '192.0.2.2' }],
        infrastructure: { labels: { team: 'edge' }, annotations: { 'example.com/a': 'b' }, parametersRef: { group: 'example.com', kind: 'Params', name: 'p' } },
        allowedListeners: { namespaces: { from: 'None' } },
      }),
    ]));
    expect(t.ir.gateways).toEqual([{
      namespace: 'infra',
      name: 'gw',
      className: 'sy',
      addresses: [{ type: 'IPAddress', value: '192.0.2.1' }, { type: 'Hostname', value: '' }, { type: 'IPAddress', value: '192.0.2.2' }],
      infrastructure: { labels: { team: 'edge' }, annotations: { 'example.com/a': 'b' }, parametersRef: { group: 'example.com', kind: 'Params', name: 'p' } },
    }]);
    expect(cond(gatewayStatus(t, 'gw').conditions, 'Accepted')).toMatchObject({ status: 'True', reason: 'Accepted' });
  });

  it('a selector the CRD admits but Kubernetes would refuse to evaluate is reported at its field', () => {
    const r = parseManifest(gateway('gw', [{ name: 'http', protocol: 'HTTP', port: 80, allowedRoutes: { namespaces: { from: 'Selector', selector: { matchExpressions: [{ key: 'team', operator: 'In' }] } } } }]));
    expect(r.ok).toBe(false);
    if (r.ok !== false) return;
    expect(r.problems.map((p) => p.field)).toEqual(['spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].values']);
  });
});
