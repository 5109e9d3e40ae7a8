import { describe, expect, it } from 'vitest';
import type { EnvoyResource } from '../../src/envoy/resources.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { AttemptFormViews, needsLegacyAttemptFacts } from '../../src/xds/attempt-forms.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { twoGateways, type TwoGateways } from '../support/two-gateways.js';

/**
 * A data plane with an Envoy of the release before the member facts string is served another
 * form of some clusters (same names) while that Envoy is connected, and the configuration's own
 * once it has left; the other data planes never see the other form.
 */

const BASE: TwoGateways = { port: 80, upstreamA: { host: '10.0.0.1', port: 8080 }, upstreamB: { host: '10.0.0.2', port: 8080 } };

/** The same resources, told apart: what a legacy form is to the cache. */
function otherForm(resources: readonly EnvoyResource[]): EnvoyResource[] {
  return resources.map((r) => ({ ...r, connect_timeout: '7s' }));
}

function otherEndpoints(resources: readonly EnvoyResource[]): EnvoyResource[] {
  return resources.map((r) => ({ ...r, policy: { overprovisioning_factor: 150 } }));
}

describe('attempt facts forms in the cache', () => {
  it('serve the other form to the views named, the configuration to the rest, and flip back without it', () => {
    const cache = new SnapshotCache();
    const { xds, planes } = twoGateways(BASE);
    cache.setResources(xds, planes);
    const a = cache.view('a/edge');
    const b = cache.view('b/edge');
    const shared = cache.view(undefined);
    const packed = { a: a.snapshot(TypeUrl.cluster), b: b.snapshot(TypeUrl.cluster), endpoints: a.snapshot(TypeUrl.endpoint) };
    const legacy = { clusters: otherForm(xds.clusters), endpoints: otherEndpoints(xds.endpoints) };

    const change = cache.setResources(xds, planes, { views: new Set(['a/edge']), resources: legacy });
    expect(change.changed).toEqual([]);
    expect([...change.views.keys()].map((v) => v.key)).toEqual(['a/edge']);
    expect(change.views.get(a)).toEqual([TypeUrl.cluster, TypeUrl.endpoint]);
    expect(JSON.stringify(a.snapshot(TypeUrl.cluster)?.resources.get('backend/a/pool')?.resource)).toContain('"connect_timeout":"7s"');
    expect(a.snapshot(TypeUrl.cluster)?.version).not.toBe(packed.a?.version);
    expect(a.snapshot(TypeUrl.endpoint)?.version).not.toBe(packed.endpoints?.version);
    expect(b.snapshot(TypeUrl.cluster)).toBe(packed.b);
    expect(JSON.stringify(shared.snapshot(TypeUrl.cluster)?.resources.get('backend/a/pool')?.resource)).not.toContain('"connect_timeout":"7s"');
    // A name the configuration does not have is not added by the other form.
    cache.setResources(xds, planes, { views: new Set(['a/edge']), resources: { clusters: [...legacy.clusters, { ...legacy.clusters[0], name: 'backend/x/gone' } as EnvoyResource], endpoints: legacy.endpoints } });
    expect(a.snapshot(TypeUrl.cluster)?.resources.has('backend/x/gone')).toBe(false);
    // An edit while the view is in the other form: the view follows it, still in that form.
    const edited = twoGateways({ ...BASE, upstreamA: { host: '10.0.0.9', port: 8080 } });
    cache.setResources(edited.xds, edited.planes, { views: new Set(['a/edge']), resources: { clusters: otherForm(edited.xds.clusters), endpoints: otherEndpoints(edited.xds.endpoints) } });
    expect(JSON.stringify(a.snapshot(TypeUrl.endpoint)?.resources.get('backend/a/pool')?.resource)).toContain('10.0.0.9');

    const back = cache.setResources(edited.xds, edited.planes);
    expect([...back.views.keys()].map((v) => v.key)).toEqual(['a/edge']);
    expect(a.snapshot(TypeUrl.cluster)?.resources.get('backend/a/pool')).toBe(cache.snapshot(TypeUrl.cluster)?.resources.get('backend/a/pool'));
    expect(a.snapshot(TypeUrl.cluster)?.version).toBe(packed.a?.version);
  });

  it('give a view created while its data plane needs the other form that form at once', () => {
    const cache = new SnapshotCache();
    const { xds, planes } = twoGateways(BASE);
    cache.setResources(xds, planes, { views: new Set(['b/edge']), resources: { clusters: otherForm(xds.clusters), endpoints: [] } });
    expect(JSON.stringify(cache.view('b/edge').snapshot(TypeUrl.cluster)?.resources.get('backend/b/pool')?.resource)).toContain('"connect_timeout":"7s"');
    expect(JSON.stringify(cache.view('a/edge').snapshot(TypeUrl.cluster)?.resources.get('backend/a/pool')?.resource)).not.toContain('"connect_timeout":"7s"');
  });
});

describe('which data planes need the legacy form', () => {
  it('an Envoy without the node metadata does; one that names format 1, or a client that is not an Envoy, does not', () => {
    expect(needsLegacyAttemptFacts({ id: 'old', cluster: 'c', userAgent: 'envoy' })).toBe(true);
    expect(needsLegacyAttemptFacts({ id: 'new', cluster: 'c', userAgent: 'envoy', attemptFacts: '1' })).toBe(false);
    expect(needsLegacyAttemptFacts({ id: 'ext', cluster: 'c', userAgent: 'switchyard-ai-extension' })).toBe(false);
    expect(needsLegacyAttemptFacts({ id: 'grpc', cluster: 'c', userAgent: 'gRPC Node' })).toBe(false);
    expect(needsLegacyAttemptFacts(undefined)).toBe(false);
  });

  it('a view stays legacy while any of its older Envoys is connected', () => {
    const views = new AttemptFormViews();
    expect(views.add('a/edge', 1)).toBe(true);
    expect(views.add('a/edge', 2)).toBe(false);
    expect(views.add('', 3)).toBe(true);
    expect([...views.legacy].sort()).toEqual(['', 'a/edge']);
    expect(views.remove('a/edge', 1)).toBe(false);
    expect(views.remove('a/edge', 9)).toBe(false);
    expect(views.remove('a/edge', 2)).toBe(true);
    expect([...views.legacy]).toEqual(['']);
  });
});
