/**
 * Work proportional to what changed: one object edited among many is translated, built and
 * encoded again, and nothing else is (the rest are the same objects as before, by reference).
 * Equality with a translation from scratch is test/property/incremental-translation.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { toDataPlanes, toXdsResourcesReusing, type DataPlanes, type EnvoyState } from '../../src/envoy/index.js';
import type { IR } from '../../src/ir/model.js';
import { TypeUrl, resourceName, type EnvoyResource, type XdsResources } from '../../src/envoy/resources.js';
import { ManifestStore, parseManifestFile, type ManifestFile } from '../../src/providers/manifest-files.js';
import { StatusBook } from '../../src/status/book.js';
import { translate, type TranslationState } from '../../src/translate/index.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { EDGE_GATEWAY } from '../support/edge-gateway.js';

const N = 40;

/** `dns`: members by hostname only (a STRICT_DNS cluster), not by IP (EDS). */
function backend(i: number, outlier?: number, dns = false): unknown {
  return {
    apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name: `chat-${i}`, namespace: 'ai' },
    spec: {
      type: 'AI',
      ...(outlier !== undefined ? { outlierDetection: { consecutive5xx: outlier } } : {}),
      ai: { multipool: { priorities: [0, 1].map((p) => ({ pool: [{ name: `p${p}`, provider: { openaiCompatible: { host: `p${p}.llm.internal`, port: 443, model: 'm', authToken: { kind: 'SecretRef', secretRef: { name: `key-${i}-${p}` } } } }, ...(dns ? {} : { hostOverride: { host: `10.${p}.0.${i + 1}`, port: 8443 } }) }] })) } },
    },
  };
}

function secret(i: number, p: number, value: string): unknown {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name: `key-${i}-${p}`, namespace: 'ai' }, stringData: { Authorization: value } };
}

function route(i: number): unknown {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: `chat-${i}`, namespace: 'ai' },
    spec: { parentRefs: [{ name: 'edge' }], rules: [{ matches: [{ path: { type: 'PathPrefix', value: `/chat-${i}` } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: `chat-${i}` }] }] },
  };
}

const GATEWAY = EDGE_GATEWAY;

/** The pipeline as serve runs it, one file per Backend (with its Secrets and route). */
class Pipeline {
  private readonly files = new Map<string, ManifestFile>();
  private readonly store = new ManifestStore();
  readonly cache = new SnapshotCache();
  readonly book = new StatusBook(() => '2026-01-01T00:00:00Z');
  private translation: TranslationState | undefined;
  private envoy: EnvoyState | undefined;
  xds: XdsResources | undefined;
  planes: DataPlanes | undefined;
  ir: IR | undefined;

  write(name: string, docs: readonly unknown[]): void {
    this.files.set(name, { name, documents: parseManifestFile(name, docs.map((d) => stringify(d)).join('---\n')) });
  }

  run(): { changedStatuses: string[] } {
    const { inputs } = this.store.build([...this.files.values()].sort((a, b) => (a.name < b.name ? -1 : 1)));
    const t = translate(inputs, this.translation);
    const built = toXdsResourcesReusing(t.ir, {}, this.envoy);
    this.translation = t.state;
    this.envoy = built.state;
    this.xds = built.xds;
    this.planes = built.planes;
    this.ir = t.ir;
    this.cache.setResources(built.xds);
    return { changedStatuses: this.book.update(t.statuses).changed.map((s) => `${s.kind}/${s.name}`) };
  }
}

function byName(list: readonly EnvoyResource[]): Map<string, EnvoyResource> {
  return new Map(list.map((r) => [resourceName(r), r]));
}

/** Names of resources that are not the very object they were before. */
function rebuilt(before: readonly EnvoyResource[], after: readonly EnvoyResource[]): string[] {
  const old = byName(before);
  return after.filter((r) => old.get(resourceName(r)) !== r).map(resourceName);
}

function setUp(): Pipeline {
  const p = new Pipeline();
  p.write('gateway.yaml', GATEWAY);
  for (let i = 0; i < N; i++) p.write(`chat-${String(i).padStart(3, '0')}.yaml`, [backend(i), secret(i, 0, `sk-${i}-0`), secret(i, 1, `sk-${i}-1`), route(i)]);
  p.run();
  return p;
}

describe('incremental translation', () => {
  it('takes a Backend whose members lose their IP addresses out of its Gateway\'s EDS names, as a full build does', () => {
    const p = setUp();
    const planesBefore = p.planes;
    expect(planesBefore?.gateways.get('ai/edge')?.endpoints).toContain('backend/ai/chat-7');
    p.write('chat-007.yaml', [backend(7, undefined, true), secret(7, 0, 'sk-7-0'), secret(7, 1, 'sk-7-1'), route(7)]);
    p.run();
    expect(p.planes?.gateways.get('ai/edge')?.endpoints).not.toContain('backend/ai/chat-7');
    expect(p.planes?.gateways.get('ai/edge')?.clusters).toContain('backend/ai/chat-7');
    expect(p.xds?.endpoints.map(resourceName)).not.toContain('backend/ai/chat-7');
    expect(p.planes).toEqual(toDataPlanes(p.ir as IR));
    // An edit that leaves every cluster's name and kind as they were leaves the data planes as they were.
    const planes = p.planes;
    p.write('chat-008.yaml', [backend(8, 5), secret(8, 0, 'sk-8-0'), secret(8, 1, 'sk-8-1'), route(8)]);
    p.run();
    expect(p.planes).toBe(planes);
  });

  it('rebuilds and encodes only the Cluster of the one Backend edited among many, and changes only its status', () => {
    const p = setUp();
    const before = p.xds as XdsResources;
    const encodes = p.cache.encodedCount;
    p.write('chat-007.yaml', [backend(7, 4), secret(7, 0, 'sk-7-0'), secret(7, 1, 'sk-7-1'), route(7)]);
    const { changedStatuses } = p.run();
    const after = p.xds as XdsResources;
    expect(rebuilt(before.clusters, after.clusters)).toEqual(['backend/ai/chat-7']);
    expect(rebuilt(before.endpoints, after.endpoints)).toEqual(['backend/ai/chat-7']);
    expect(rebuilt(before.routes, after.routes)).toEqual([]);
    expect(rebuilt(before.listeners, after.listeners)).toEqual([]);
    // The Backend's credentials are translated again, equal to before: their Secrets stay the same objects.
    expect(rebuilt(before.secrets, after.secrets)).toEqual([]);
    // Only the Cluster's content changed: the endpoints and credentials rebuilt are equal and not encoded again.
    expect(p.cache.encodedCount - encodes).toBe(1);
    expect(changedStatuses).toEqual(['Backend/chat-7']);
    expect(p.cache.snapshot(TypeUrl.cluster)?.resources.get('backend/ai/chat-7')?.resource).toMatchObject({ outlier_detection: { consecutive_5xx: 4 } });
  });

  it('re-translates the one Backend whose Secret changed, and nothing else', () => {
    const p = setUp();
    const before = p.xds as XdsResources;
    const encodes = p.cache.encodedCount;
    // The Secret moves to a file of its own with another key: chat-12's member p1 loses its credential.
    p.write('chat-012.yaml', [backend(12), secret(12, 0, 'sk-12-0'), route(12)]);
    p.write('secrets.yaml', [{ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'key-12-1', namespace: 'ai' }, stringData: { other: 'x' } }]);
    const { changedStatuses } = p.run();
    const after = p.xds as XdsResources;
    expect(rebuilt(before.clusters, after.clusters)).toEqual(['backend/ai/chat-12']);
    expect(rebuilt(before.routes, after.routes)).toEqual([]);
    expect(changedStatuses).toEqual(['Backend/chat-12']);
    expect(p.cache.encodedCount - encodes).toBeLessThanOrEqual(2);
    expect(p.cache.encodedCount - encodes).toBeGreaterThan(0);
  });

  it('rebuilds only the credential whose Secret value changed, after a first build that worked out no content digest', () => {
    const p = setUp();
    const before = p.xds as XdsResources;
    p.write('chat-009.yaml', [backend(9), secret(9, 0, 'sk-9-0'), secret(9, 1, 'sk-9-1-rotated'), route(9)]);
    p.run();
    const after = p.xds as XdsResources;
    expect(rebuilt(before.secrets, after.secrets)).toEqual(['credential/ai/key-9-1']);
    expect(after.secrets).toEqual(toXdsResourcesReusing(p.ir as IR, {}, undefined).xds.secrets);
    // Rotated back: compared with the digest the last edit worked out, it is rebuilt again.
    p.write('chat-009.yaml', [backend(9), secret(9, 0, 'sk-9-0'), secret(9, 1, 'sk-9-1'), route(9)]);
    p.run();
    expect(rebuilt(after.secrets, (p.xds as XdsResources).secrets)).toEqual(['credential/ai/key-9-1']);
  });

  it('reuses every credential of equal content when Backends are added (the lists no longer line up), and builds the new ones', () => {
    const p = setUp();
    const before = p.xds as XdsResources;
    p.write('chat-100.yaml', [backend(100), secret(100, 0, 'sk-100-0'), secret(100, 1, 'sk-100-1'), route(100)]);
    p.write('chat-017.yaml', [backend(17), secret(17, 0, 'sk-17-0'), secret(17, 1, 'sk-17-1-rotated'), route(17)]);
    p.run();
    const after = p.xds as XdsResources;
    expect(rebuilt(before.secrets, after.secrets).sort()).toEqual(['credential/ai/key-100-0', 'credential/ai/key-100-1', 'credential/ai/key-17-1']);
    expect(after.secrets).toEqual(toXdsResourcesReusing(p.ir as IR, {}, undefined).xds.secrets);
  });

  it('rebuilds the RouteConfiguration, and only it, when one route among many changes', () => {
    const p = setUp();
    const before = p.xds as XdsResources;
    const edited = route(3) as { spec: { rules: { matches: { path: { value: string } }[] }[] } };
    (edited.spec.rules[0] as { matches: { path: { value: string } }[] }).matches[0]!.path.value = '/moved';
    p.write('chat-003.yaml', [backend(3), secret(3, 0, 'sk-3-0'), secret(3, 1, 'sk-3-1'), edited]);
    const { changedStatuses } = p.run();
    const after = p.xds as XdsResources;
    expect(rebuilt(before.routes, after.routes)).toEqual(['ai/edge/10080']);
    expect(rebuilt(before.clusters, after.clusters)).toEqual([]);
    expect(rebuilt(before.listeners, after.listeners)).toEqual([]);
    // Its generation moved: observedGeneration in its status.
    expect(changedStatuses).toEqual(['HTTPRoute/chat-3']);
  });

  it('gives the Listener its model routing when an edited route is the first to match on the model, as a full build does', () => {
    const p = setUp();
    const before = p.xds as XdsResources;
    const edited = route(3) as { spec: { rules: { matches: Record<string, unknown>[] }[] } };
    (edited.spec.rules[0] as { matches: Record<string, unknown>[] }).matches[0]!['headers'] = [{ name: 'x-switchyard-model', value: 'm' }];
    p.write('chat-003.yaml', [backend(3), secret(3, 0, 'sk-3-0'), secret(3, 1, 'sk-3-1'), edited]);
    p.run();
    const after = p.xds as XdsResources;
    expect(rebuilt(before.listeners, after.listeners)).toEqual(['ai/edge/10080']);
    expect(JSON.stringify(after.listeners)).toContain('envoy.filters.http.json_to_metadata');
    expect(after.listeners).toEqual(toXdsResourcesReusing(p.ir as IR, {}, undefined).xds.listeners);
    // Another route edit that leaves the model matches as they were leaves the Listener as it was.
    const listeners = after.listeners;
    const moved = route(5) as { spec: { rules: { matches: { path: { value: string } }[] }[] } };
    (moved.spec.rules[0] as { matches: { path: { value: string } }[] }).matches[0]!.path.value = '/moved';
    p.write('chat-005.yaml', [backend(5), secret(5, 0, 'sk-5-0'), secret(5, 1, 'sk-5-1'), moved]);
    p.run();
    expect(rebuilt(listeners, (p.xds as XdsResources).listeners)).toEqual([]);
  });
});
