import { describe, expect, it } from 'vitest';
import { endpointUsable, EndpointSlice } from '../../src/api/endpointslice.js';
import { parseManifest } from '../../src/api/manifest.js';
import { namespaceLabels, selectorMatches } from '../../src/api/namespace.js';
import { Service } from '../../src/api/service.js';
import { ServiceBackends, serviceRetryPlan } from '../../src/translate/services.js';

/**
 * Service backendRefs and namespace selectors: which endpoints of which slices serve a Service
 * port, and which namespaces a listener's selector admits. The golden case service-backends
 * shows the same through the whole translator.
 */

function service(ports: unknown[]): Service {
  return Service.parse({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'llm', namespace: 'ai' }, spec: { ports } });
}

function slice(name: string, ports: unknown[], endpoints: unknown[], extra: Record<string, unknown> = {}): EndpointSlice {
  return EndpointSlice.parse({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'ai', labels: { 'kubernetes.io/service-name': 'llm' } },
    addressType: 'IPv4',
    ports,
    endpoints,
    ...extra,
  });
}

function addresses(b: ServiceBackends, port: number): string[] {
  const r = b.resolve('ai', 'llm', port);
  if (!r.ok) throw new Error(r.message);
  return r.cluster.priorities.flatMap((p) => p.members.map((m) => `${m.address}:${m.port}`));
}

describe('endpointUsable', () => {
  it('takes ready endpoints (unset means ready) and serving ones that are not terminating', () => {
    expect(endpointUsable({ addresses: ['10.0.0.1'] })).toBe(true);
    expect(endpointUsable({ addresses: ['10.0.0.1'], conditions: { ready: true } })).toBe(true);
    expect(endpointUsable({ addresses: ['10.0.0.1'], conditions: { ready: false } })).toBe(false);
    expect(endpointUsable({ addresses: ['10.0.0.1'], conditions: { ready: false, serving: true, terminating: false } })).toBe(true);
    expect(endpointUsable({ addresses: ['10.0.0.1'], conditions: { ready: false, serving: true, terminating: true } })).toBe(false);
  });
});

describe('ServiceBackends', () => {
  it('matches slice ports by the Service port name, or by target port number when a slice names none', () => {
    const svc = service([{ name: 'http', port: 80, targetPort: 8080 }, { port: 9000, targetPort: 9001 }]);
    const b = new ServiceBackends([svc], [
      slice('named', [{ name: 'http', port: 8080 }], [{ addresses: ['10.0.0.1'] }]),
      slice('numbered', [{ port: 9001 }], [{ addresses: ['10.0.0.2'] }]),
      slice('other-port', [{ name: 'metrics', port: 9100 }], [{ addresses: ['10.0.0.3'] }]),
    ]);
    expect(addresses(b, 80)).toEqual(['10.0.0.1:8080']);
    expect(addresses(b, 9000)).toEqual(['10.0.0.2:9001']);
  });

  it('ignores slices of other Services, UDP ports, FQDN slices and non-IP addresses', () => {
    const svc = service([{ name: 'http', port: 80 }]);
    const other = slice('other', [{ name: 'http', port: 80 }], [{ addresses: ['10.9.9.9'] }]);
    other.metadata.labels = { 'kubernetes.io/service-name': 'other' };
    const b = new ServiceBackends([svc], [
      other,
      slice('udp', [{ name: 'http', port: 80, protocol: 'UDP' }], [{ addresses: ['10.0.0.4'] }]),
      slice('fqdn', [{ name: 'http', port: 80 }], [{ addresses: ['llm.example.com'] }], { addressType: 'FQDN' }),
      slice('ok', [{ name: 'http', port: 80 }], [{ addresses: ['10.0.0.5'] }]),
    ]);
    expect(addresses(b, 80)).toEqual(['10.0.0.5:80']);
  });

  it('gives a Service with no usable endpoint a cluster without endpoints', () => {
    const b = new ServiceBackends([service([{ name: 'http', port: 80 }])], [slice('down', [{ name: 'http', port: 80 }], [{ addresses: ['10.0.0.1'], conditions: { ready: false } }])]);
    const r = b.resolve('ai', 'llm', 80);
    expect(r).toMatchObject({ ok: true, cluster: { name: 'service/ai/llm/80', discovery: 'eds', priorities: [] } });
  });

  it('names the problem: a missing Service, a port it lacks, no port at all', () => {
    const b = new ServiceBackends([service([{ name: 'http', port: 80 }])], []);
    expect(b.resolve('ai', 'nope', 80)).toMatchObject({ ok: false, reason: 'BackendNotFound', message: 'backendRef Service ai/nope not found' });
    expect(b.resolve('ai', 'llm', 81)).toMatchObject({ ok: false, reason: 'BackendNotFound', message: expect.stringMatching(/has no TCP port 81 \(it exposes 80 \(http\)\)/) });
    expect(b.resolve('ai', 'llm', undefined)).toMatchObject({ ok: false, message: expect.stringMatching(/must set port/) });
  });

  it('retries a Service only when the route asks for retries', () => {
    expect(serviceRetryPlan(false).attempts).toBe(0);
    expect(serviceRetryPlan(true).attempts).toBeGreaterThan(0);
  });
});

describe('namespace selectors', () => {
  const labels = namespaceLabels('ml', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ml', namespace: '', labels: { team: 'ai', tier: 'prod' } } });

  it('match labels, expressions, and the name label every namespace has', () => {
    expect(selectorMatches({ matchLabels: { team: 'ai' } }, labels)).toBe(true);
    expect(selectorMatches({ matchLabels: { team: 'web' } }, labels)).toBe(false);
    expect(selectorMatches({ matchLabels: { 'kubernetes.io/metadata.name': 'ml' } }, labels)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'In', values: ['prod', 'staging'] }] }, labels)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['prod'] }] }, labels)).toBe(false);
    expect(selectorMatches({ matchExpressions: [{ key: 'team', operator: 'Exists' }] }, labels)).toBe(true);
    expect(selectorMatches({ matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] }, labels)).toBe(false);
    expect(selectorMatches({}, labels)).toBe(true);
  });

  it('refuse an In expression without values, naming the field', () => {
    const r = parseManifest({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'gw', namespace: 'ai' },
      spec: { gatewayClassName: 'c', listeners: [{ name: 'l', protocol: 'HTTP', port: 80, allowedRoutes: { namespaces: { from: 'Selector', selector: { matchExpressions: [{ key: 'team', operator: 'In' }] } } } }] },
    });
    expect(r.ok).toBe(false);
    if (r.ok === false) expect(r.problems[0]?.field).toBe('spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].values');
  });
});
