import { describe, expect, it } from 'vitest';
import { encodedForm, encodedStandIn } from '../../src/envoy/encoded.js';
import { TypeUrl, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import { SHARED_VIEW, SnapshotCache, type AttemptForms, type CacheView } from '../../src/xds/cache.js';

/**
 * Another attempt facts form served to the views that need it (src/xds/attempt-forms.ts): the
 * cache's overlay of that form's Clusters and ClusterLoadAssignments over the configuration,
 * built at once by setResources or beforehand in steps (prepareForms), with the same result.
 */

const COUNT = 1_000;

function cluster(name: string, form: string): EnvoyResource {
  return { '@type': TypeUrl.cluster, name, type: 'EDS', connect_timeout: '1s', eds_cluster_config: { eds_config: { ads: {} }, service_name: form } };
}

function assignment(name: string, port: number): EnvoyResource {
  return {
    '@type': TypeUrl.endpoint,
    cluster_name: name,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
  };
}

const names = Array.from({ length: COUNT }, (_, i) => `ai/chat-${i}`);

/** The configuration: AI clusters in the facts string form, and a Static one (`edited`: changed). */
function configuration(edited = false): XdsResources {
  return {
    listeners: [],
    routes: [{ '@type': TypeUrl.route, name: 'r', virtual_hosts: [{ name: 'all', domains: ['*'] }] }],
    clusters: [...names.map((name) => cluster(name, 'packed')), cluster('static/web', edited ? 'edited' : 'static')],
    endpoints: [...names.map((name, i) => assignment(name, 10_000 + i)), assignment('static/web', 9_999)],
    secrets: [],
  };
}

/** The other form of every AI cluster (stand-ins, as src/envoy/attempt-forms.ts builds them), and one name the configuration lacks. */
function legacyForms(): AttemptForms {
  return {
    views: new Set([SHARED_VIEW]),
    resources: {
      clusters: [...names, 'ai/gone'].map((name) => encodedStandIn(cluster(name, 'per-key'))),
      endpoints: [...names, 'ai/gone'].map((name, i) => encodedStandIn(assignment(name, 20_000 + i))),
    },
  };
}

/** What a view serves, by type: the set's version and each resource's version. */
function served(view: CacheView): Record<string, { version: string | undefined; resources: Record<string, string> }> {
  const out: Record<string, { version: string | undefined; resources: Record<string, string> }> = {};
  for (const typeUrl of [TypeUrl.cluster, TypeUrl.endpoint, TypeUrl.route]) {
    const snapshot = view.snapshot(typeUrl);
    out[typeUrl] = { version: snapshot?.version, resources: Object.fromEntries([...(snapshot?.resources ?? new Map())].map(([name, r]) => [name, r.version])) };
  }
  return out;
}

/** The shared view of a cache serving `resources`. */
function cacheOf(resources: XdsResources): CacheView {
  const cache = new SnapshotCache();
  cache.setResources(resources);
  return cache.view(undefined);
}

/** A cache serving `resources` with `forms` for the shared view, the overlay built at once. */
function servedAtOnce(resources: XdsResources, forms: AttemptForms): ReturnType<typeof served> {
  const cache = new SnapshotCache();
  cache.setResources(resources);
  const view = cache.view(undefined);
  cache.setResources(resources, undefined, forms);
  return served(view);
}

describe('SnapshotCache serving another attempt facts form', () => {
  it('puts the form in place of the resources of the same names for its views, adds no name, and gives the rest back when no view needs it', () => {
    const resources = configuration();
    const forms = legacyForms();
    const cache = new SnapshotCache();
    cache.setResources(resources);
    const shared = cache.view(undefined);
    const gateway = cache.view('ai/other');
    const before = served(shared);

    const change = cache.setResources(resources, undefined, forms);
    expect(change.changed).toEqual([]);
    expect([...change.views.keys()]).toEqual([shared]);
    const legacy = served(shared);
    expect(legacy[TypeUrl.cluster]?.version).not.toBe(before[TypeUrl.cluster]?.version);
    expect(legacy[TypeUrl.endpoint]?.version).not.toBe(before[TypeUrl.endpoint]?.version);
    expect(legacy[TypeUrl.route]).toEqual(before[TypeUrl.route]);
    const clusters = shared.snapshot(TypeUrl.cluster)?.resources;
    expect(clusters?.size).toBe(COUNT + 1);
    expect(clusters?.has('ai/gone')).toBe(false);
    expect(clusters?.get('ai/chat-7')?.version).toBe(encodedForm(forms.resources.clusters[7] as EnvoyResource)?.version);
    expect(clusters?.get('ai/chat-7')?.version).not.toBe(before[TypeUrl.cluster]?.resources['ai/chat-7']);
    expect(clusters?.get('static/web')?.version).toBe(before[TypeUrl.cluster]?.resources['static/web']);
    expect(gateway.legacy).toBe(false);

    cache.setResources(resources);
    expect(served(shared)).toEqual(before);
  });

  it('prepared in steps, serves exactly what it serves when built at once; each step stops when asked', () => {
    const resources = configuration();
    const forms = legacyForms();
    const cache = new SnapshotCache();
    cache.setResources(resources);
    const view = cache.view(undefined);

    const overlay = cache.prepareForms(forms);
    let asked = 0;
    let steps = 0;
    let done = false;
    while (!done) {
      steps++;
      const askedBefore = asked;
      done = overlay.step(() => ++asked - askedBefore >= 2);
      // A step asks every few hundred resources and stops at the second ask.
      if (!done) expect(asked - askedBefore).toBe(2);
    }
    // 2,002 resources of the form (1,001 Clusters, 1,001 assignments), 256 per ask, 2 asks a step.
    expect(steps).toBeGreaterThanOrEqual(4);
    cache.setResources(resources, undefined, forms);

    expect(served(view)).toEqual(servedAtOnce(resources, legacyForms()));
  });

  it('builds the overlay again when the configuration changed after it was prepared', () => {
    const forms = legacyForms();
    const cache = new SnapshotCache();
    cache.setResources(configuration());
    const view = cache.view(undefined);
    const overlay = cache.prepareForms(forms);
    while (!overlay.step(() => false));

    // An edit lands between the preparation and the serving: the overlay prepared holds the Static cluster as it was.
    const edited = configuration(true);
    cache.setResources(edited, undefined, forms);
    expect(served(view)).toEqual(servedAtOnce(edited, legacyForms()));
    expect(served(view)[TypeUrl.cluster]?.resources['static/web']).not.toBe(served(cacheOf(configuration()))[TypeUrl.cluster]?.resources['static/web']);
  });

  it('refuses a form that names one resource twice, as the configuration does', () => {
    const resources = configuration();
    const forms = legacyForms();
    const twice: AttemptForms = { views: forms.views, resources: { ...forms.resources, clusters: [...forms.resources.clusters, encodedStandIn(cluster('ai/chat-1', 'other'))] } };
    const cache = new SnapshotCache();
    cache.setResources(resources);
    expect(() => cache.setResources(resources, undefined, twice)).toThrow(/two resources share the name ai\/chat-1/);
  });
});
