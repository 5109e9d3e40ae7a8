import { describe, expect, it } from 'vitest';
import { condition } from '../../src/api/conditions.js';
import { CONTROLLER_NAME } from '../../src/api/gateway.js';
import { changedConditions, changedFields, sameStatus } from '../../src/status/compare.js';
import { desiredStatus, toRfc3339Seconds } from '../../src/status/desired.js';
import type { KubeObject } from '../../src/status/kube-api.js';
import type { BackendStatus, GatewayClassStatus, GatewayStatus, HTTPRouteStatus } from '../../src/translate/status.js';

const ctx = { controllerName: CONTROLLER_NAME, now: '2030-01-01T00:00:00Z' };
const T1 = '2025-05-05T10:00:00Z';
const STAMP = '2026-06-06T12:34:56.789Z';

function backend(resolved: boolean): BackendStatus {
  return {
    kind: 'Backend', namespace: 'ai', name: 'chat', usableMembers: resolved ? 2 : 1, totalMembers: 2, servedPriorities: resolved ? 2 : 1,
    conditions: [
      { ...condition('Accepted', true, 'Accepted', 'Backend is valid', 3), lastTransitionTime: STAMP },
      { ...(resolved ? condition('ResolvedRefs', true, 'ResolvedRefs', 'all references are resolved', 3) : condition('ResolvedRefs', false, 'SecretNotFound', 'Secret ai/openai-key not found', 3)), lastTransitionTime: STAMP },
    ],
    priorities: [
      { priority: 0, ...(resolved ? { envoyPriority: 0 } : {}), members: [resolved ? { name: 'openai', provider: 'openai', usable: true } : { name: 'openai', provider: 'openai', usable: false, reason: 'SecretNotFound', message: 'Secret ai/openai-key not found' }] },
      { priority: 1, envoyPriority: resolved ? 1 : 0, members: [{ name: 'local', provider: 'openaiCompatible', usable: true }] },
    ],
  };
}

function object(status?: Record<string, unknown>, generation = 3): KubeObject {
  return { metadata: { name: 'chat', namespace: 'ai', generation, resourceVersion: '7' }, ...(status ? { status } : {}) };
}

describe('desired Backend status', () => {
  it('carries conditions with observedGeneration, per-priority members and the counts printed by kubectl', () => {
    const s = desiredStatus(backend(false), object(), ctx);
    expect(s).toEqual({
      observedGeneration: 3,
      conditions: [
        { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Backend is valid', observedGeneration: 3, lastTransitionTime: '2026-06-06T12:34:56Z' },
        { type: 'ResolvedRefs', status: 'False', reason: 'SecretNotFound', message: 'Secret ai/openai-key not found', observedGeneration: 3, lastTransitionTime: '2026-06-06T12:34:56Z' },
      ],
      priorities: [
        { priority: 0, members: [{ name: 'openai', provider: 'openai', usable: false, reason: 'SecretNotFound', message: 'Secret ai/openai-key not found' }] },
        { priority: 1, envoyPriority: 0, members: [{ name: 'local', provider: 'openaiCompatible', usable: true }] },
      ],
      usableMembers: 1,
      totalMembers: 2,
      servedPriorities: 1,
    });
  });

  it('takes observedGeneration from the object as read when translation did not know it', () => {
    const s = backend(true);
    s.conditions = s.conditions.map(({ observedGeneration: _drop, ...c }) => c);
    const out = desiredStatus(s, object(undefined, 9), ctx);
    expect(out.observedGeneration).toBe(9);
    expect((out.conditions as { observedGeneration: number }[]).map((c) => c.observedGeneration)).toEqual([9, 9]);
  });

  it('keeps the object’s lastTransitionTime for a condition whose status did not change, and moves it when the status changed', () => {
    const current = object({
      conditions: [
        { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Backend is valid', observedGeneration: 3, lastTransitionTime: T1 },
        { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'all references are resolved', observedGeneration: 3, lastTransitionTime: T1 },
      ],
    });
    const out = desiredStatus(backend(false), current, ctx);
    const times = Object.fromEntries((out.conditions as { type: string; lastTransitionTime: string }[]).map((c) => [c.type, c.lastTransitionTime]));
    expect(times).toEqual({ Accepted: T1, ResolvedRefs: '2026-06-06T12:34:56Z' });
  });

  it('writes member figures and Degraded; a restarted controller awaiting load reports leaves the written Degraded as it is', () => {
    const s = backend(true);
    s.priorities[1]!.members[0] = { ...s.priorities[1]!.members[0]!, requests: 120, errors: 0 };
    s.conditions.push({ ...condition('Degraded', true, 'MemberFailing', 'member openai failed', 3), lastTransitionTime: STAMP });
    const written = desiredStatus(s, object(), ctx);
    expect((written.priorities as { members: { requests?: number; errors?: number }[] }[])[1]!.members[0]).toMatchObject({ requests: 120, errors: 0 });
    const degradedOf = (out: Record<string, unknown>) => (out.conditions as { type: string }[]).find((c) => c.type === 'Degraded');
    expect(degradedOf(written)).toMatchObject({ status: 'True', reason: 'MemberFailing', lastTransitionTime: '2026-06-06T12:34:56Z' });

    const restarted = backend(true);
    restarted.conditions.push(condition('Degraded', 'Unknown', 'AwaitingLoadReports', 'no report yet', 3));
    expect(degradedOf(desiredStatus(restarted, object(written), ctx))).toEqual(degradedOf(written));
    const gone = backend(true);
    gone.conditions.push(condition('Degraded', 'Unknown', 'NoLoadReports', 'no Envoy reported', 3));
    expect(degradedOf(desiredStatus(gone, object(written), ctx))).toMatchObject({ status: 'Unknown', reason: 'NoLoadReports' });
  });

  it('is the same status as the object has when only the time formatting differs (a restarted controller writes nothing)', () => {
    const first = desiredStatus(backend(true), object(), ctx);
    // What the API server hands back, times printed another way; a new process stamps later times.
    const readBack = JSON.parse(JSON.stringify(first).replaceAll('2026-06-06T12:34:56Z', '2026-06-06T12:34:56.000Z')) as Record<string, unknown>;
    const restarted = backend(true);
    restarted.conditions = restarted.conditions.map((c) => ({ ...c, lastTransitionTime: '2031-01-01T00:00:00.000Z' }));
    const second = desiredStatus(restarted, object(readBack), ctx);
    expect(sameStatus(readBack, second)).toBe(true);
    expect((second.conditions as { lastTransitionTime: string }[]).map((c) => c.lastTransitionTime)).toEqual(['2026-06-06T12:34:56.000Z', '2026-06-06T12:34:56.000Z']);
  });

  it('sees a changed message or member as a change', () => {
    const before = desiredStatus(backend(false), object(), ctx);
    const s = backend(false);
    s.conditions[1] = { ...s.conditions[1]!, message: 'Secret ai/other not found' };
    expect(sameStatus(before, desiredStatus(s, object(before), ctx))).toBe(false);
    expect(changedFields(before, desiredStatus(backend(true), object(before), ctx))).toEqual(['conditions', 'priorities', 'servedPriorities', 'usableMembers']);
    // Which conditions: the message change only, not the time of those that stayed.
    expect(changedConditions(before, desiredStatus(s, object(before), ctx))).toEqual([String(s.conditions[1]?.type)]);
    expect(changedConditions(before, before)).toEqual([]);
  });
});

describe('desired HTTPRoute status', () => {
  const ours = (name: string, accepted: boolean): HTTPRouteStatus['parents'][number] => ({
    parentRef: { name },
    controllerName: CONTROLLER_NAME,
    conditions: [condition('Accepted', accepted, accepted ? 'Accepted' : 'NotAllowedByListeners', 'x', 2)],
  });
  const theirs = {
    parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'istio-gw' },
    controllerName: 'istio.io/gateway-controller',
    conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'theirs', observedGeneration: 1, lastTransitionTime: T1 }],
  };
  const route = (parents: unknown[]): KubeObject => ({ metadata: { name: 'r', namespace: 'ai', generation: 2 }, status: { parents } });

  it('leaves other controllers’ entries where and as they are, replaces ours in place, drops stale ones and appends new ones', () => {
    const staleOurs = { parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'old' }, controllerName: CONTROLLER_NAME, conditions: [] };
    const keptOurs = { parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' }, controllerName: CONTROLLER_NAME, conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'x', observedGeneration: 2, lastTransitionTime: T1 }] };
    const s: HTTPRouteStatus = { kind: 'HTTPRoute', namespace: 'ai', name: 'r', parents: [ours('gw', true), ours('new', false)] };
    const out = desiredStatus(s, route([keptOurs, theirs, staleOurs]), ctx);
    expect(out.parents).toEqual([
      { parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' }, controllerName: CONTROLLER_NAME, conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'x', observedGeneration: 2, lastTransitionTime: T1 }] },
      theirs,
      { parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'new' }, controllerName: CONTROLLER_NAME, conditions: [{ type: 'Accepted', status: 'False', reason: 'NotAllowedByListeners', message: 'x', observedGeneration: 2, lastTransitionTime: ctx.now }] },
    ]);
    // Written once, the same translation finds nothing to change.
    expect(sameStatus(out, desiredStatus(s, route(out.parents as unknown[]), ctx))).toBe(true);
  });

  it('removes only our entries when the route no longer names one of our Gateways', () => {
    const out = desiredStatus({ kind: 'HTTPRoute', namespace: 'ai', name: 'r', gone: true }, route([{ ...theirs }, { parentRef: { name: 'gw' }, controllerName: CONTROLLER_NAME, conditions: [] }]), ctx);
    expect(out.parents).toEqual([theirs]);
  });

  it('marks our existing entries of a route that could not be read, and no other', () => {
    const ourEntry = { parentRef: { name: 'gw' }, controllerName: CONTROLLER_NAME, conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok', lastTransitionTime: T1 }] };
    const out = desiredStatus({ kind: 'HTTPRoute', namespace: 'ai', name: 'r', conditions: [condition('Accepted', false, 'Invalid', 'spec.rules[0]: bad', 2)] }, route([theirs, ourEntry]), ctx);
    expect(out.parents).toEqual([theirs, { ...ourEntry, conditions: [{ type: 'Accepted', status: 'False', reason: 'Invalid', message: 'spec.rules[0]: bad', observedGeneration: 2, lastTransitionTime: ctx.now }] }]);
  });
});

describe('desired Gateway and GatewayClass status', () => {
  it('writes Gateway conditions and listeners, keeping fields we do not own and each listener’s transition times', () => {
    const s: GatewayStatus = {
      kind: 'Gateway', namespace: 'ai', name: 'gw',
      conditions: [condition('Accepted', true, 'Accepted', 'ok', 4), condition('Programmed', true, 'Programmed', 'ok', 4)],
      listeners: [{ name: 'http', attachedRoutes: 2, supportedKinds: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' }], conditions: [condition('Accepted', true, 'Accepted', 'ok', 4)] }],
    };
    const current: KubeObject = {
      metadata: { name: 'gw', namespace: 'ai', generation: 4 },
      status: {
        addresses: [{ type: 'IPAddress', value: '10.0.0.9' }],
        conditions: [{ type: 'Accepted', status: 'Unknown', reason: 'Pending', message: 'Waiting for controller', lastTransitionTime: '1970-01-01T00:00:00Z' }],
        listeners: [{ name: 'http', attachedRoutes: 1, supportedKinds: [], conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok', lastTransitionTime: T1 }] }],
      },
    };
    const out = desiredStatus(s, current, ctx);
    expect(out.addresses).toEqual([{ type: 'IPAddress', value: '10.0.0.9' }]);
    expect(out.conditions).toEqual([
      { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok', observedGeneration: 4, lastTransitionTime: ctx.now },
      { type: 'Programmed', status: 'True', reason: 'Programmed', message: 'ok', observedGeneration: 4, lastTransitionTime: ctx.now },
    ]);
    expect(out.listeners).toEqual([
      { name: 'http', supportedKinds: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' }], attachedRoutes: 2, conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok', observedGeneration: 4, lastTransitionTime: T1 }] },
    ]);
  });

  it('writes GatewayClass conditions and the supportedFeatures translation names, replacing older ones', () => {
    const s: GatewayClassStatus = { kind: 'GatewayClass', namespace: '', name: 'switchyard', conditions: [condition('Accepted', true, 'Accepted', 'handled', 1)], supportedFeatures: ['Gateway', 'HTTPRoute'] };
    const out = desiredStatus(s, { metadata: { name: 'switchyard', generation: 1 }, status: { supportedFeatures: [{ name: 'TLSRoute' }] } }, ctx);
    expect(out).toEqual({
      supportedFeatures: [{ name: 'Gateway' }, { name: 'HTTPRoute' }],
      conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'handled', observedGeneration: 1, lastTransitionTime: ctx.now }],
    });
  });
});

describe('toRfc3339Seconds', () => {
  it('prints times to the second as the API server does', () => {
    expect(toRfc3339Seconds('2025-01-02T03:04:05.999Z')).toBe('2025-01-02T03:04:05Z');
    expect(toRfc3339Seconds('2025-01-02T03:04:05Z')).toBe('2025-01-02T03:04:05Z');
  });
});
