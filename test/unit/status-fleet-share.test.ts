import { describe, expect, it } from 'vitest';
import { condition } from '../../src/api/conditions.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import type { ClusterIR, IR } from '../../src/ir/model.js';
import { shareObjectName } from '../../src/app/replica-share.js';
import { applyFleetHealth, fleetHealthView, LoadWindow } from '../../src/status/fleet-health.js';
import { FleetLoad, mergeFleetViews, parseReplicaShare, remoteFeedback, SHARE_FORMAT, shareOfClients, shareOfLoad, type ReplicaShare } from '../../src/status/fleet-share.js';
import { applyXdsFeedback, type ClientTypeFeedback, type ServedAs } from '../../src/status/programmed.js';
import type { BackendStatus, ObjectStatus } from '../../src/translate/status.js';
import { SHARED_VIEW } from '../../src/xds/cache.js';

/**
 * What one replica shares of its Envoys and how another merges it: Backend ai/chat is served as
 * cluster backend/ai/chat; replica B's Envoys are the only ones; A (this side) computes status.
 */

const CLUSTER = 'backend/ai/chat';
const servedAs: ServedAs = new Map([['Backend/ai/chat', { views: [SHARED_VIEW], resources: [{ typeUrl: TypeUrl.cluster, names: [CLUSTER] }] }]]);
/** This replica's current versions: cluster c-2, listener l-1. */
const current = (_view: string, typeUrl: string): string | undefined => (typeUrl === TypeUrl.cluster ? 'c-2' : typeUrl === TypeUrl.listener ? 'l-1' : undefined);

function backend(): BackendStatus {
  return {
    kind: 'Backend',
    namespace: 'ai',
    name: 'chat',
    conditions: [condition('Accepted', true, 'Accepted', 'ok', 2), condition('Programmed', false, 'Pending', 'not yet', 2)],
    priorities: [
      { priority: 0, envoyPriority: 0, members: [{ name: 'primary', provider: 'openai', usable: true }] },
      { priority: 1, envoyPriority: 1, members: [{ name: 'secondary', provider: 'openai', usable: true }] },
    ],
    servedPriorities: 2,
    usableMembers: 2,
    totalMembers: 2,
  };
}

const envoy = (nodeId: string, state: ClientTypeFeedback['state'], sentVersion: string, nackMessage?: string): ClientTypeFeedback[] => [
  { nodeId, view: SHARED_VIEW, typeUrl: TypeUrl.cluster, state, sentVersion, ...(nackMessage ? { nackMessage } : {}) },
  { nodeId, view: SHARED_VIEW, typeUrl: TypeUrl.listener, state: 'acked', sentVersion: 'l-1' },
];

function share(replica: string, clients: ClientTypeFeedback[], load: ReplicaShare['load'] = { windowMs: 60_000, reporters: 0, clusters: {} }): ReplicaShare {
  // Through JSON, as it travels in the ConfigMap.
  return parseReplicaShare(JSON.stringify({ format: SHARE_FORMAT, replica, views: shareOfClients(clients), load }), `ConfigMap ns/${replica}`);
}

function programmed(statuses: ObjectStatus[]): { status?: string; reason?: string; message?: string } {
  const s = statuses[0];
  return (s && 'conditions' in s ? s.conditions.find((c) => c.type === 'Programmed') : undefined) ?? {};
}

describe('shareOfClients', () => {
  it('is one group per distinct state with a count, so its size does not grow with the fleet', () => {
    const clients = [...envoy('e-3', 'acked', 'c-2'), ...envoy('e-1', 'acked', 'c-2'), ...envoy('e-2', 'pending', 'c-2')];
    for (let i = 10; i < 500; i++) clients.push(...envoy(`e-${i}`, 'acked', 'c-2'));
    const views = shareOfClients(clients);
    expect(views[SHARED_VIEW]).toEqual([
      { nodes: 492, node: 'e-1', types: { [TypeUrl.cluster]: { state: 'acked', version: 'c-2' }, [TypeUrl.listener]: { state: 'acked', version: 'l-1' } } },
      { nodes: 1, node: 'e-2', types: { [TypeUrl.cluster]: { state: 'pending', version: 'c-2' }, [TypeUrl.listener]: { state: 'acked', version: 'l-1' } } },
    ]);
    expect(JSON.stringify(views).length).toBeLessThan(600);
  });

  it('keeps the short NACK reason, and no word of what Envoy said about a secret', () => {
    const key = 'sk-live-0123456789';
    const views = shareOfClients([
      ...envoy('e-1', 'rejected', 'c-3', 'Error adding cluster backend/ai/chat: bad\nand the rest of a long dump'),
      { nodeId: 'e-1', view: SHARED_VIEW, typeUrl: TypeUrl.secret, state: 'rejected', sentVersion: 's-1', nackMessage: `secret provider-key: inline_string: "${key}" is invalid` },
    ]);
    const text = JSON.stringify(views);
    expect(text).not.toContain(key);
    expect(text).not.toContain('long dump');
    expect(views[SHARED_VIEW]?.[0]?.types[TypeUrl.cluster]).toEqual({ state: 'rejected', version: 'c-3', reason: 'Error adding cluster backend/ai/chat: bad' });
    expect(views[SHARED_VIEW]?.[0]?.types[TypeUrl.secret]?.reason).toMatch(/^Envoy rejected a secret/);
  });
});

describe('merging another replica\'s Envoys into Programmed', () => {
  const fed = (views: ReadonlyMap<string, ReadonlyMap<string, { acked: boolean; rejected: { nodeId: string; message: string }[] }>>): ReturnType<typeof programmed> =>
    programmed(applyXdsFeedback([backend()], servedAs, { views }));
  const none = new Map<string, Map<string, { acked: boolean; rejected: { nodeId: string; message: string }[] }>>();

  it('is True when an Envoy of another replica ACKed the version served here, and Pending without the share', () => {
    expect(fed(mergeFleetViews(none, remoteFeedback([share('b', envoy('e-b', 'acked', 'c-2'))], current)))).toMatchObject({ status: 'True', reason: 'Programmed' });
    expect(fed(mergeFleetViews(none, remoteFeedback([], current)))).toMatchObject({ status: 'False', reason: 'Pending' });
  });

  it('stays Pending while the other replica\'s Envoy has only ACKed another version (it has not translated this generation yet)', () => {
    expect(fed(mergeFleetViews(none, remoteFeedback([share('b', envoy('e-b', 'acked', 'c-1'))], current)))).toMatchObject({ status: 'False', reason: 'Pending' });
  });

  it('is Rejected with the reason and the Envoy another replica heard it from', () => {
    const remote = remoteFeedback([share('b', envoy('e-b', 'rejected', 'c-2', 'Error adding/updating cluster backend/ai/chat: bad lb policy'))], current);
    expect(fed(mergeFleetViews(none, remote))).toEqual(
      condition('Programmed', false, 'Rejected', 'Envoy e-b rejected the configuration: Error adding/updating cluster backend/ai/chat: bad lb policy', 2),
    );
  });

  it('lets what an Envoy connected here says win over the share of the replica it left', () => {
    const left = [share('b', envoy('e-1', 'rejected', 'c-2', 'cluster backend/ai/chat: old complaint'))];
    const own = new Map([[SHARED_VIEW, new Map([[TypeUrl.cluster, { acked: true, rejected: [] }]])]]);
    expect(remoteFeedback(left, current, new Set(['e-1'])).get(SHARED_VIEW)?.get(TypeUrl.cluster)).toBeUndefined();
    expect(fed(mergeFleetViews(own, remoteFeedback(left, current, new Set(['e-1']))))).toMatchObject({ status: 'True' });
    // Without knowing it is connected here, the stale share would still count.
    expect(fed(mergeFleetViews(own, remoteFeedback(left, current)))).toMatchObject({ status: 'False', reason: 'Rejected' });
  });

  it('still counts the other Envoys of a group whose named one is connected here', () => {
    const two = [share('b', [...envoy('e-1', 'rejected', 'c-2', 'cluster backend/ai/chat: bad'), ...envoy('e-2', 'rejected', 'c-2', 'cluster backend/ai/chat: bad')])];
    expect(remoteFeedback(two, current, new Set(['e-1'])).get(SHARED_VIEW)?.get(TypeUrl.cluster)?.rejected).toEqual([{ nodeId: 'e-1', message: 'cluster backend/ai/chat: bad' }]);
  });
});

describe('FleetLoad', () => {
  const c: ClusterIR = {
    name: CLUSTER,
    backend: { namespace: 'ai', name: 'chat' },
    discovery: 'eds',
    connectTimeoutMs: 1000,
    priorities: [
      { level: 0, members: [{ name: 'primary', address: '10.0.0.1', port: 443, hostname: 'p.example', weight: 1, tls: true, metadata: { backend: 'ai/chat', member: 'm', priority: 0 } }] },
      { level: 1, members: [{ name: 'secondary', address: '10.0.0.2', port: 443, hostname: 's.example', weight: 1, tls: true, metadata: { backend: 'ai/chat', member: 'm', priority: 0 } }] },
    ],
  };
  const ir: IR = { gateways: [], listeners: [], clusters: [c], credentials: [], certificates: [] };

  it('adds the load another replica\'s Envoys reported to this one\'s: a failing member only they saw makes the Backend Degraded', () => {
    let now = 1_000_000;
    const own = new LoadWindow(60_000, () => now);
    const theirs = new LoadWindow(60_000, () => now);
    own.record({ nodeId: 'e-a', clusters: [{ cluster: CLUSTER, localities: [{ priority: 1, succeeded: 2, failed: 0, endpoints: [{ address: '10.0.0.2:443', succeeded: 2, failed: 0 }] }] }] });
    theirs.record({ nodeId: 'e-b', clusters: [{ cluster: CLUSTER, localities: [{ priority: 0, succeeded: 0, failed: 6, endpoints: [{ address: '10.0.0.1:443', succeeded: 0, failed: 6 }] }, { priority: 1, succeeded: 6, failed: 0, endpoints: [{ address: '10.0.0.2:443', succeeded: 6, failed: 0 }] }] }] });
    now += 1_000;
    const shared = share('b', [], shareOfLoad(theirs, [CLUSTER, 'backend/ai/other']));
    expect(shared.load).toEqual({ windowMs: 60_000, reporters: 1, clusters: { [CLUSTER]: [[0, '10.0.0.1:443', 6, 6], [1, '10.0.0.2:443', 6, 0]] } });

    const alone = applyFleetHealth([backend()], fleetHealthView(ir, own), 60_000)[0] as BackendStatus;
    expect(alone.conditions.find((x) => x.type === 'Degraded')).toMatchObject({ status: 'False', reason: 'Healthy' });

    const fleet = new FleetLoad(own, () => [shared.load]);
    expect(fleet.reporterCount()).toBe(2);
    const merged = applyFleetHealth([backend()], fleetHealthView(ir, fleet), 60_000)[0] as BackendStatus;
    expect(merged.conditions.find((x) => x.type === 'Degraded')).toMatchObject({ status: 'True', reason: 'MemberFailing' });
    expect(merged.priorities.map((p) => p.members[0])).toMatchObject([{ name: 'primary', requests: 6, errors: 6 }, { name: 'secondary', requests: 8, errors: 0 }]);
  });
});

describe('parseReplicaShare', () => {
  it('names the object and the field of a share it cannot read', () => {
    expect(() => parseReplicaShare('{', 'ConfigMap sw/x')).toThrow(/^ConfigMap sw\/x: data\["share.json"\] is not JSON/);
    expect(() => parseReplicaShare(JSON.stringify({ format: SHARE_FORMAT, replica: 'b', views: { [SHARED_VIEW]: [{ nodes: 0, node: 'e', types: {} }] }, load: { windowMs: 1, reporters: 0, clusters: {} } }), 'ConfigMap sw/x')).toThrow(
      /^ConfigMap sw\/x: data\["share.json"\] field views\[""\]\[0\]\.nodes: .*format 1 expected/,
    );
    expect(() => parseReplicaShare(JSON.stringify({ format: 2, replica: 'b', views: {}, load: { windowMs: 1, reporters: 0, clusters: {} } }), 'ConfigMap sw/x')).toThrow(/field format/);
  });
});

describe('shareObjectName', () => {
  it('is the Lease name and the replica, made a valid object name, with a hash only where it had to change', () => {
    expect(shareObjectName('switchyard-controller', 'switchyard-7d9f-abcde')).toBe('switchyard-controller-replica-switchyard-7d9f-abcde');
    const odd = shareObjectName('switchyard-controller', 'Host_1234');
    expect(odd).toMatch(/^switchyard-controller-replica-host-1234-[0-9a-f]{8}$/);
    expect(odd).not.toBe(shareObjectName('switchyard-controller', 'host-1234'));
  });
});

describe('remoteFeedback and mergeFleetViews (the per-view ledger shape)', () => {
  it('is acked for a type only where another replica\'s Envoy ACKed the version current here, with every NACK', () => {
    const feedback = remoteFeedback([share('b', envoy('e-b', 'acked', 'c-2')), share('c', envoy('e-c', 'rejected', 'c-2', 'cluster backend/ai/chat: bad'))], current);
    expect(feedback.get(SHARED_VIEW)?.get(TypeUrl.cluster)).toEqual({ acked: true, version: 'c-2', held: new Set(['c-2']), rejected: [{ nodeId: 'e-c', message: 'cluster backend/ai/chat: bad' }] });
    // An Envoy that ACKed an older version is not acked for this one, but runs that one.
    const stale = remoteFeedback([share('b', envoy('e-b', 'acked', 'c-1'))], current);
    expect(stale.get(SHARED_VIEW)?.get(TypeUrl.cluster)).toEqual({ acked: false, version: 'c-2', held: new Set(['c-1']), rejected: [] });
    expect(stale.get(SHARED_VIEW)?.get(TypeUrl.listener)).toEqual({ acked: true, version: 'l-1', held: new Set(['l-1']), rejected: [] });
  });

  it('ORs the others\' into this replica\'s own', () => {
    const own = new Map([[SHARED_VIEW, new Map([[TypeUrl.cluster, { acked: false, version: 'c-2', held: new Set(['c-1']), rejected: [{ nodeId: 'e-a', message: 'x' }] }]])]]);
    const merged = mergeFleetViews(own, remoteFeedback([share('b', envoy('e-b', 'acked', 'c-2'))], current));
    expect(merged.get(SHARED_VIEW)?.get(TypeUrl.cluster)).toEqual({ acked: true, version: 'c-2', held: new Set(['c-1', 'c-2']), rejected: [{ nodeId: 'e-a', message: 'x' }] });
    expect(merged.get(SHARED_VIEW)?.get(TypeUrl.listener)).toEqual({ acked: true, version: 'l-1', held: new Set(['l-1']), rejected: [] });
  });
});
