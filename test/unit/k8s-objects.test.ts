import { describe, expect, it } from 'vitest';
import type { RawObject } from '../../src/providers/kubernetes/api-client.js';
import { WATCHED_KINDS, collectionPath, type WatchedKind } from '../../src/providers/kubernetes/kinds.js';
import { reduceObject } from '../../src/providers/kubernetes/reduce.js';
import { SnapshotBuilder } from '../../src/providers/kubernetes/snapshot.js';
import { translate } from '../../src/translate/index.js';

/** What the provider keeps of each object, and how it turns objects into Inputs and Problems. */

function kind(name: string): WatchedKind {
  const k = WATCHED_KINDS.find((w) => w.kind === name);
  if (!k) throw new Error(name);
  return k;
}

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

describe('reduceObject', () => {
  it('keeps only the Secret keys translation reads, and none of its annotations', () => {
    const raw: RawObject = {
      metadata: { name: 'keys', namespace: 'ai', resourceVersion: '7', annotations: { [LAST_APPLIED]: '{"stringData":{"password":"hunter2"}}', note: 'x' }, managedFields: [{}] },
      type: 'Opaque',
      data: { Authorization: 'c2stMQ==', 'tls.crt': 'Y3J0', 'tls.key': 'a2V5', password: 'aHVudGVyMg==' },
    };
    const r = reduceObject(kind('Secret'), raw);
    expect(r.object).toEqual({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'keys', namespace: 'ai' },
      type: 'Opaque',
      data: { Authorization: 'c2stMQ==', 'tls.crt': 'Y3J0', 'tls.key': 'a2V5' },
    });
    expect(r.content).not.toContain('aHVudGVyMg==');
    expect(r.content).not.toContain('hunter2');
  });

  it('keeps the keys of a Vertex AI service-account key, Bedrock\'s AWS keys and a drill key, which translation reads too', () => {
    const data = { 'key.json': 'e30=', accessKey: 'QUtJQQ==', secretKey: 'c2Vj', sessionToken: 'dG9r', key: 'ZHJpbGw=', password: 'aHVudGVyMg==' };
    const r = reduceObject(kind('Secret'), { metadata: { name: 'vendor', namespace: 'ai' }, data });
    const { password: _dropped, ...kept } = data;
    expect(r.object['data']).toEqual(kept);
  });

  it('drops status, resourceVersion, managedFields and the last-applied copy, so status writes are not changes', () => {
    const base: RawObject = {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'gw', namespace: 'ai', generation: 2, resourceVersion: '10', labels: { a: 'b' }, annotations: { [LAST_APPLIED]: '{}', keep: 'me' } },
      spec: { gatewayClassName: 'x', listeners: [] },
    };
    const before = reduceObject(kind('Gateway'), base);
    const after = reduceObject(kind('Gateway'), { ...base, metadata: { ...(base['metadata'] as RawObject), resourceVersion: '11', managedFields: [{ manager: 'switchyard' }] }, status: { conditions: [{ type: 'Accepted' }] } });
    expect(after.content).toBe(before.content);
    expect(after.object['metadata']).toEqual({ name: 'gw', namespace: 'ai', generation: 2, labels: { a: 'b' }, annotations: { keep: 'me' } });
    expect(after.object).not.toHaveProperty('status');
    const edited = reduceObject(kind('Gateway'), { ...base, spec: { gatewayClassName: 'y', listeners: [] } });
    expect(edited.content).not.toBe(before.content);
  });

  it('fills in apiVersion and kind, which list items lack', () => {
    const r = reduceObject(kind('EndpointSlice'), { metadata: { name: 's', namespace: 'ai' }, addressType: 'IPv4', endpoints: null, ports: null });
    expect(r.object).toMatchObject({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4' });
    expect(r).toMatchObject({ namespace: 'ai', name: 's' });
  });
});

describe('collectionPath', () => {
  it('builds core, group, namespaced and cluster-scoped paths', () => {
    expect(collectionPath(kind('Secret'), 'ai')).toBe('/api/v1/namespaces/ai/secrets');
    expect(collectionPath(kind('Secret'), undefined)).toBe('/api/v1/secrets');
    expect(collectionPath(kind('HTTPRoute'), 'ai')).toBe('/apis/gateway.networking.k8s.io/v1/namespaces/ai/httproutes');
    expect(collectionPath(kind('GatewayClass'), 'ai')).toBe('/apis/gateway.networking.k8s.io/v1/gatewayclasses');
    expect(collectionPath(kind('EndpointSlice'), 'ai')).toBe('/apis/discovery.k8s.io/v1/namespaces/ai/endpointslices');
    expect(collectionPath(kind('Backend'), 'ai')).toBe('/apis/switchyard.dev/v1alpha1/namespaces/ai/backends');
  });
});

describe('SnapshotBuilder', () => {
  const gateway = (protocol: string, port = 80) =>
    reduceObject(kind('Gateway'), { metadata: { name: 'gw', namespace: 'ai', generation: 3 }, spec: { gatewayClassName: 'c', listeners: [{ name: 'l', protocol, port }] } });
  const service = reduceObject(kind('Service'), { metadata: { name: 'svc', namespace: 'ai' }, spec: { ports: [{ port: 80 }] } });
  const namespace = reduceObject(kind('Namespace'), { metadata: { name: 'ai', labels: { team: 'x' } } });
  const grant = reduceObject(kind('ReferenceGrant'), { metadata: { name: 'g', namespace: 'ai' }, spec: { from: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', namespace: 'web' }], to: [{ group: '', kind: 'Service' }] } });

  it('files every kind into the Inputs', () => {
    const s = new SnapshotBuilder().build([
      { kind: 'Gateway', object: gateway('HTTP') },
      { kind: 'Service', object: service },
      { kind: 'Namespace', object: namespace },
      { kind: 'ReferenceGrant', object: grant },
    ]);
    expect(s.problems).toEqual([]);
    expect(s.inputs.gateways.map((g) => g.metadata.name)).toEqual(['gw']);
    expect(s.inputs.services.map((g) => g.metadata.name)).toEqual(['svc']);
    expect(s.inputs.namespaces.map((n) => [n.metadata.name, n.metadata.namespace, n.metadata.labels])).toEqual([['ai', '', { team: 'x' }]]);
    expect(s.inputs.referenceGrants[0]?.spec.to).toEqual([{ group: '', kind: 'Service' }]);
  });

  it('reports an invalid version with its object and field, and serves the last valid one until the object goes away', () => {
    const b = new SnapshotBuilder();
    b.build([{ kind: 'Gateway', object: gateway('HTTP') }]);
    const s = b.build([{ kind: 'Gateway', object: gateway('HTTP', 0) }]);
    expect(s.problems).toEqual([expect.objectContaining({ object: { kind: 'Gateway', namespace: 'ai', name: 'gw' }, field: 'spec.listeners[0].port' })]);
    expect(s.inputs.invalid).toEqual([expect.objectContaining({ kind: 'Gateway', namespace: 'ai', name: 'gw', generation: 3, servingLastGood: true })]);
    expect(s.inputs.gateways[0]?.spec.listeners[0]?.port).toBe(80);

    // Deleted, then created again invalid: nothing earlier to fall back on.
    b.build([]);
    const again = b.build([{ kind: 'Gateway', object: gateway('HTTP', 0) }]);
    expect(again.inputs.gateways).toEqual([]);
    expect(again.inputs.invalid).toEqual([expect.objectContaining({ servingLastGood: false })]);
  });

  it('orders objects the same way whatever order the informers hold them in', () => {
    const a = reduceObject(kind('Service'), { metadata: { name: 'a', namespace: 'ai' }, spec: {} });
    const z = reduceObject(kind('Service'), { metadata: { name: 'z', namespace: 'ai' }, spec: {} });
    const one = new SnapshotBuilder().build([{ kind: 'Service', object: z }, { kind: 'Service', object: a }]);
    const two = new SnapshotBuilder().build([{ kind: 'Service', object: a }, { kind: 'Service', object: z }]);
    expect(JSON.stringify(one)).toBe(JSON.stringify(two));
    expect(one.inputs.services.map((x) => x.metadata.name)).toEqual(['a', 'z']);
  });

  it('serves a Gateway with a field Switchyard does not know, reports it, and translation raises a Warning Event for it', () => {
    const raw = { metadata: { name: 'gw', namespace: 'ai' }, spec: { gatewayClassName: 'c', allowedListeners: { namespaces: { from: 'Same' } }, listeners: [{ name: 'l', protocol: 'HTTP', port: 80 }] } };
    const s = new SnapshotBuilder().build([{ kind: 'Gateway', object: reduceObject(kind('Gateway'), raw) }]);
    expect(s.inputs.gateways.map((g) => g.metadata.name)).toEqual(['gw']);
    expect(s.problems).toEqual([expect.objectContaining({ object: { kind: 'Gateway', namespace: 'ai', name: 'gw' }, field: 'spec.allowedListeners' })]);
    const events = translate(s.inputs).events.filter((e) => e.reason === 'UnknownFields');
    expect(events).toEqual([{ object: { kind: 'Gateway', namespace: 'ai', name: 'gw' }, reason: 'UnknownFields', message: expect.stringMatching(/^unknown field spec\.allowedListeners: /) as unknown }]);
  });
});
