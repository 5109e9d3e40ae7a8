import { afterEach, describe, expect, it } from 'vitest';
import { condition } from '../../src/api/conditions.js';
import { CONTROLLER_NAME } from '../../src/api/gateway.js';
import { StatusBook } from '../../src/status/book.js';
import type { ObjectRef } from '../../src/status/kinds.js';
import { StatusWriter, type StatusWriterOptions } from '../../src/status/writer.js';
import type { BackendStatus, HTTPRouteStatus, ObjectStatus } from '../../src/translate/status.js';
import { translate } from '../../src/translate/index.js';
import { snapshotOf } from '../golden/render.js';
import { FakeObjects, quietLogger } from './status-fakes.js';

const chat: ObjectRef = { kind: 'Backend', namespace: 'ai', name: 'chat' };
const route: ObjectRef = { kind: 'HTTPRoute', namespace: 'ai', name: 'r' };

function backend(message: string, resolved = false): BackendStatus {
  return {
    kind: 'Backend', namespace: 'ai', name: 'chat', usableMembers: resolved ? 1 : 0, totalMembers: 1, servedPriorities: resolved ? 1 : 0,
    conditions: [condition('Accepted', true, 'Accepted', 'Backend is valid', 1), condition('ResolvedRefs', resolved, resolved ? 'ResolvedRefs' : 'SecretNotFound', message, 1)],
    priorities: [{ priority: 0, ...(resolved ? { envoyPriority: 0 } : {}), members: [{ name: 'm', provider: 'openai', usable: resolved }] }],
  };
}

const writers: StatusWriter[] = [];
function writer(objects: FakeObjects, opts: Partial<StatusWriterOptions> = {}): StatusWriter {
  const w = new StatusWriter({ client: objects, logger: quietLogger, coalesceMs: 20, minIntervalMs: 100, backoffMs: 20, ...opts });
  writers.push(w);
  return w;
}
afterEach(async () => {
  await Promise.all(writers.splice(0).map((w) => w.stop()));
});

function conditionOf(objects: FakeObjects, ref: ObjectRef, type: string): Record<string, unknown> | undefined {
  const conditions = objects.read(ref)?.status?.conditions;
  return Array.isArray(conditions) ? (conditions as Record<string, unknown>[]).find((c) => c.type === type) : undefined;
}

describe('StatusWriter', () => {
  it('writes only while leading, and writes what it was given when it becomes leader', async () => {
    const objects = new FakeObjects();
    objects.put(chat, { spec: {} });
    const w = writer(objects);
    w.update([backend('Secret ai/k not found')]);
    await w.idle();
    expect(objects.puts).toBe(0);
    expect(objects.gets).toBe(0);
    w.setLeading(true);
    await w.idle();
    expect(w.counters().writes).toBe(1);
    expect(conditionOf(objects, chat, 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'SecretNotFound', observedGeneration: 1 });
    expect(objects.read(chat)?.status?.usableMembers).toBe(0);
  });

  it('turns a burst of changes to one object into one write carrying the last of them', async () => {
    const objects = new FakeObjects();
    objects.put(chat, {});
    const w = writer(objects, { coalesceMs: 50 });
    w.setLeading(true);
    for (let i = 0; i < 20; i++) w.update([backend(`attempt ${i}`)]);
    await w.idle();
    expect(objects.puts).toBe(1);
    expect(conditionOf(objects, chat, 'ResolvedRefs')?.message).toBe('attempt 19');
  });

  it('writes one object at most once per minIntervalMs; the change in between waits, then lands', async () => {
    const objects = new FakeObjects();
    objects.put(chat, {});
    const w = writer(objects, { coalesceMs: 10, minIntervalMs: 300 });
    w.setLeading(true);
    const putAt: number[] = [];
    objects.beforePut = () => void putAt.push(Date.now());
    w.update([backend('one')]);
    await w.idle();
    expect(conditionOf(objects, chat, 'ResolvedRefs')?.message).toBe('one');
    w.update([backend('two')]);
    await w.idle();
    expect(conditionOf(objects, chat, 'ResolvedRefs')?.message).toBe('two');
    expect(objects.puts).toBe(2);
    // Judged by the writes themselves, not a sleep: the second began no sooner than minIntervalMs
    // after the first (a coalescing window alone would have written it within about 10 ms; the
    // writer counts from when the first write ended, later than it began; 10 ms allow for a timer
    // and Date.now() disagreeing by a tick).
    expect(putAt).toHaveLength(2);
    expect(putAt[1]! - putAt[0]!).toBeGreaterThanOrEqual(300 - 10);
  });

  it('does not write when nothing changed: neither for the same statuses again nor for a restarted writer, and keeps lastTransitionTime', async () => {
    const objects = new FakeObjects();
    objects.put(chat, {});
    const book = new StatusBook(() => '2025-01-01T00:00:00.000Z');
    const w = writer(objects);
    w.setLeading(true);
    book.update([backend('missing')]);
    w.update(book.all());
    await w.idle();
    const written = objects.read(chat);
    expect(w.counters().writes).toBe(1);
    w.update(book.all());
    await w.idle();
    expect(w.counters()).toMatchObject({ writes: 1, skipped: 0 });

    // A new process: a new book stamps a later time, a new writer reads the object first.
    const book2 = new StatusBook(() => '2025-06-01T00:00:00.000Z');
    book2.update([backend('missing')]);
    const w2 = writer(objects);
    w2.setLeading(true);
    w2.update(book2.all());
    await w2.idle();
    expect(w2.counters()).toMatchObject({ writes: 0, skipped: 1 });
    expect(objects.read(chat)?.metadata.resourceVersion).toBe(written?.metadata.resourceVersion);
    expect(conditionOf(objects, chat, 'ResolvedRefs')?.lastTransitionTime).toBe('2025-01-01T00:00:00Z');

    // The status changes: only that condition's time moves.
    book2.update([backend('ok', true)]);
    w2.update(book2.all());
    await w2.idle();
    expect(conditionOf(objects, chat, 'ResolvedRefs')).toMatchObject({ status: 'True', lastTransitionTime: '2025-06-01T00:00:00Z' });
    expect(conditionOf(objects, chat, 'Accepted')?.lastTransitionTime).toBe('2025-01-01T00:00:00Z');
  });

  it('re-reads and retries on a conflict, keeping what the other writer put there', async () => {
    const objects = new FakeObjects();
    objects.put(route, { status: { parents: [] } });
    let raced = false;
    objects.beforePut = (ref) => {
      if (raced) return;
      raced = true;
      objects.mutateStatus(ref, (s) => {
        s.parents = [{ parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'other' }, controllerName: 'example.com/other', conditions: [] }];
      });
    };
    const status: HTTPRouteStatus = { kind: 'HTTPRoute', namespace: 'ai', name: 'r', parents: [{ parentRef: { name: 'gw' }, controllerName: CONTROLLER_NAME, conditions: [condition('Accepted', true, 'Accepted', 'ok', 1)] }] };
    const w = writer(objects);
    w.setLeading(true);
    w.update([status]);
    await w.idle();
    expect(w.counters()).toMatchObject({ writes: 1, conflicts: 1, errors: 0 });
    const parents = objects.read(route)?.status?.parents as { controllerName: string }[];
    expect(parents.map((p) => p.controllerName)).toEqual(['example.com/other', CONTROLLER_NAME]);
  });

  it('removes our HTTPRoute parent entries when translation no longer has the route', async () => {
    const objects = new FakeObjects();
    objects.put(route, { status: { parents: [{ parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'other' }, controllerName: 'example.com/other', conditions: [] }] } });
    const status: HTTPRouteStatus = { kind: 'HTTPRoute', namespace: 'ai', name: 'r', parents: [{ parentRef: { name: 'gw' }, controllerName: CONTROLLER_NAME, conditions: [condition('Accepted', true, 'Accepted', 'ok', 1)] }] };
    const w = writer(objects);
    w.setLeading(true);
    w.update([status]);
    await w.idle();
    expect((objects.read(route)?.status?.parents as unknown[]).length).toBe(2);
    w.update([]);
    await w.idle();
    expect(objects.read(route)?.status?.parents).toEqual([{ parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'other' }, controllerName: 'example.com/other', conditions: [] }]);
  });

  it('writes the status of a route or Gateway deleted and created again under the same name, even when translation says the same', async () => {
    // The conformance suite deletes HTTPRoute request-header-modifier and creates a new one of that
    // name 15 ms later; both translate to the same parents, but the new object has no status yet.
    const manifests = (uid: string, gatewayUid = 'gw-first'): string => `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: switchyard}
spec: {controllerName: ${CONTROLLER_NAME}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ai, generation: 1, uid: ${gatewayUid}}
spec:
  gatewayClassName: switchyard
  listeners: [{name: http, protocol: HTTP, port: 10080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ai, generation: 1, uid: ${uid}}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{path: {type: PathPrefix, value: /}}]}]
`;
    const routeStatuses = (uid: string): ObjectStatus[] =>
      translate(snapshotOf([{ name: 'r.yaml', text: manifests(uid) }]).inputs).statuses.filter((s) => s.kind === 'HTTPRoute');
    const objects = new FakeObjects();
    objects.put(route, { metadata: { uid: 'first' } });
    const w = writer(objects);
    w.setLeading(true);
    w.update(routeStatuses('first'));
    await w.idle();
    expect(objects.read(route)?.status?.parents).toHaveLength(1);
    objects.put(route, { metadata: { uid: 'second' } });
    expect(objects.read(route)?.status).toBeUndefined();
    w.update(routeStatuses('second'));
    await w.idle();
    expect(objects.read(route)?.status?.parents).toHaveLength(1);

    const gateway: ObjectRef = { kind: 'Gateway', namespace: 'ai', name: 'gw' };
    const gatewayStatuses = (gatewayUid: string): ObjectStatus[] =>
      translate(snapshotOf([{ name: 'r.yaml', text: manifests('second', gatewayUid) }]).inputs).statuses.filter((s) => s.kind === 'Gateway');
    objects.put(gateway, { metadata: { uid: 'gw-first' } });
    w.update(gatewayStatuses('gw-first'));
    await w.idle();
    expect(conditionOf(objects, gateway, 'Accepted')).toMatchObject({ status: 'True' });
    objects.put(gateway, { metadata: { uid: 'gw-second' } });
    w.update(gatewayStatuses('gw-second'));
    await w.idle();
    expect(conditionOf(objects, gateway, 'Accepted')).toMatchObject({ status: 'True' });

    const chat: ObjectRef = { kind: 'Backend', namespace: 'ai', name: 'chat' };
    const backendStatuses = (uid: string): ObjectStatus[] =>
      translate(snapshotOf([{ name: 'b.yaml', text: `
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: chat, namespace: ai, generation: 1, uid: ${uid}}
spec: {type: Static, static: {priorities: [{hosts: [{host: 10.0.0.1, port: 8080}]}]}}
` }]).inputs).statuses.filter((s) => s.kind === 'Backend');
    objects.put(chat, { metadata: { uid: 'b-first' } });
    w.update(backendStatuses('b-first'));
    await w.idle();
    expect(conditionOf(objects, chat, 'Accepted')).toMatchObject({ status: 'True' });
    objects.put(chat, { metadata: { uid: 'b-second' } });
    expect(objects.read(chat)?.status).toBeUndefined();
    w.update(backendStatuses('b-second'));
    await w.idle();
    expect(conditionOf(objects, chat, 'Accepted')).toMatchObject({ status: 'True' });
  });

  it('counts an object deleted before its write as notFound, without an error', async () => {
    const objects = new FakeObjects();
    const w = writer(objects);
    w.setLeading(true);
    w.update([backend('x')]);
    await w.idle();
    expect(w.counters()).toMatchObject({ writes: 0, notFound: 1, errors: 0 });
  });

  it('retries after an API error with back-off', async () => {
    const objects = new FakeObjects();
    objects.put(chat, {});
    let failures = 2;
    objects.beforePut = () => {
      if (failures-- > 0) throw new Error('connect ECONNREFUSED');
    };
    const w = writer(objects);
    w.setLeading(true);
    w.update([backend('x')]);
    await w.idle();
    expect(w.counters()).toMatchObject({ writes: 1, errors: 2 });
  });

  it('stops writing when it stops leading, even with a change queued', async () => {
    const objects = new FakeObjects();
    objects.put(chat, {});
    const w = writer(objects, { coalesceMs: 50 });
    w.setLeading(true);
    w.update([backend('x')]);
    w.setLeading(false);
    await w.idle();
    expect(objects.gets + objects.puts).toBe(0);
  });

  it('ignores kinds whose status it does not write', async () => {
    const objects = new FakeObjects();
    const w = writer(objects);
    w.setLeading(true);
    const secret: ObjectStatus = { kind: 'Secret', namespace: 'ai', name: 's', conditions: [condition('Accepted', false, 'Invalid', 'x')] };
    w.update([secret]);
    await w.idle();
    expect(objects.gets).toBe(0);
  });
});
