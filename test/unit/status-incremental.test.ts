import { describe, expect, it } from 'vitest';
import { condition } from '../../src/api/conditions.js';
import type { DataPlanes } from '../../src/envoy/data-planes.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import type { ClusterIR, IR } from '../../src/ir/model.js';
import { StatusBook } from '../../src/status/book.js';
import { applyFleetHealth, fleetHealthView, LoadWindow, type FleetHealthMemo, type FleetHealthView, type LoadReportLike } from '../../src/status/fleet-health.js';
import { applyXdsFeedback, ProgrammedMemo, servedAsFromIr, type ServedAs, type XdsFeedback } from '../../src/status/programmed.js';
import type { BackendStatus, ObjectStatus } from '../../src/translate/status.js';
import { SHARED_VIEW } from '../../src/xds/cache.js';

/**
 * One edit among many objects: each status stage hands on the objects it made last time when
 * nothing it reads moved, and its results are those of a stage that starts from nothing.
 */

function cluster(i: number, address = '10.0.0.1'): ClusterIR {
  const member = (name: string, a: string, level: number) => ({ name, address: a, port: 443, hostname: `${name}.example`, weight: 1, tls: true, metadata: { backend: `ai/chat-${i}`, member: name, priority: level } });
  return {
    name: `backend/ai/chat-${i}`,
    backend: { namespace: 'ai', name: `chat-${i}` },
    discovery: 'eds',
    connectTimeoutMs: 1000,
    priorities: [
      { level: 0, members: [member('primary', address, 0)] },
      { level: 1, members: [member('secondary', '10.0.0.2', 1)] },
    ],
  };
}

function ir(clusters: ClusterIR[]): IR {
  return { gateways: [], listeners: [], clusters, credentials: [], certificates: [] };
}

function planes(clusters: ClusterIR[]): DataPlanes {
  const names = { listeners: [], routes: [], clusters: clusters.map((c) => c.name), endpoints: clusters.map((c) => c.name), secrets: [] };
  return { gateways: new Map([['ai/gw', names as unknown as DataPlanes['gateways'] extends ReadonlyMap<string, infer N> ? N : never]]), shared: { excluded: {}, problems: [] } };
}

function backendStatus(i: number, generation = 1): BackendStatus {
  return {
    kind: 'Backend',
    namespace: 'ai',
    name: `chat-${i}`,
    conditions: [condition('Accepted', true, 'Accepted', 'ok', generation), condition('Programmed', false, 'Pending', 'not yet', generation)],
    priorities: [0, 1].map((p) => ({ priority: p, envoyPriority: p, members: [{ name: p === 0 ? 'primary' : 'secondary', provider: 'openai', usable: true }] })),
    servedPriorities: 2,
    usableMembers: 2,
    totalMembers: 2,
  };
}

/** CDS at `version` (ACKed or not), the Envoys running `held`; EDS ACKed. */
function feedback(acked: boolean, nack?: string, cds: { version?: string; held?: string[] } = {}): XdsFeedback {
  const version = cds.version ?? 'c1';
  const held = cds.held ?? (acked ? [version] : []);
  return {
    views: new Map([[SHARED_VIEW, new Map([
      [TypeUrl.cluster, { acked, version, held: new Set(held), rejected: nack === undefined ? [] : [{ nodeId: 'envoy-1', message: nack }] }],
      [TypeUrl.endpoint, { acked: true, version: 'e1', held: new Set(['e1']), rejected: [] }],
    ])]]),
  };
}

function programmedOf(statuses: ObjectStatus[], name: string): { status?: string; reason?: string } {
  const s = statuses.find((x) => x.name === name);
  return (s && 'conditions' in s ? s.conditions.find((c) => c.type === 'Programmed') : undefined) ?? {};
}

describe('servedAsFromIr after an edit', () => {
  it('equals a full build and keeps the entries of the clusters the IR kept', () => {
    const before = [0, 1, 2, 3].map((i) => cluster(i));
    const p = planes(before);
    const first = servedAsFromIr(ir(before), p);
    const after = before.map((c, i) => (i === 2 ? cluster(2, '10.0.0.9') : c));
    const incremental = servedAsFromIr(ir(after), p, { ir: ir(before), planes: p, servedAs: first });
    const full = servedAsFromIr(ir(after), p);
    expect(new Map([...incremental].sort())).toEqual(new Map([...full].sort()));
    expect(incremental.get('Backend/ai/chat-1')).toBe(first.get('Backend/ai/chat-1'));
    expect(incremental.get('Backend/ai/chat-2')).not.toBe(first.get('Backend/ai/chat-2'));
    expect(incremental.get('Backend/ai/chat-2')?.views).toEqual([SHARED_VIEW, 'ai/gw']);
  });

  it('builds in full when the data planes changed', () => {
    const before = [0, 1].map((i) => cluster(i));
    const first = servedAsFromIr(ir(before), planes(before));
    const again = servedAsFromIr(ir(before), planes(before), { ir: ir(before), planes: planes(before), servedAs: first });
    expect(again.get('Backend/ai/chat-0')).not.toBe(first.get('Backend/ai/chat-0'));
    expect(again).toEqual(first);
  });
});

describe('applyXdsFeedback with a memo', () => {
  const clusters = [0, 1, 2].map((i) => cluster(i));
  const statuses = [0, 1, 2].map((i) => backendStatus(i));
  const p = planes(clusters);
  const served: ServedAs = servedAsFromIr(ir(clusters), p);

  it('hands the same objects on while nothing they read moved, with the results of a call without memo', () => {
    const memo = new ProgrammedMemo();
    const one = applyXdsFeedback(statuses, served, feedback(true), memo);
    expect(one).toEqual(applyXdsFeedback(statuses, served, feedback(true)));
    expect(programmedOf(one, 'chat-1')).toMatchObject({ status: 'True' });
    const two = applyXdsFeedback(statuses, served, feedback(true), memo);
    for (let i = 0; i < 3; i++) expect(two[i]).toBe(one[i]);
  });

  it('keeps True for an object served as the same resources while a new version waits for its ACK; what the edit replaced goes Pending', () => {
    const memo = new ProgrammedMemo();
    applyXdsFeedback(statuses, served, feedback(true), memo);
    // The edit replaced chat-2's cluster (and its status); the new CDS version is not ACKed yet.
    const edited = clusters.map((c, i) => (i === 2 ? cluster(2, '10.0.0.9') : c));
    const servedAfter = servedAsFromIr(ir(edited), p, { ir: ir(clusters), planes: p, servedAs: served });
    const statusesAfter = statuses.map((s, i) => (i === 2 ? backendStatus(2, 2) : s));
    // The Envoys still run c1, which programmed chat-0.
    const waiting = applyXdsFeedback(statusesAfter, servedAfter, feedback(false, undefined, { version: 'c2', held: ['c1'] }), memo);
    expect(programmedOf(waiting, 'chat-0')).toMatchObject({ status: 'True' });
    expect(programmedOf(waiting, 'chat-2')).toMatchObject({ status: 'False', reason: 'Pending' });
    const acked = applyXdsFeedback(statusesAfter, servedAfter, feedback(true, undefined, { version: 'c2' }), memo);
    expect(acked).toEqual(applyXdsFeedback(statusesAfter, servedAfter, feedback(true, undefined, { version: 'c2' })));
    expect(acked[0]).toBe(waiting[0]);
  });

  it('lets an unchanged object go Pending once no Envoy runs the version that programmed it (the Envoys that ACKed it left the fleet)', () => {
    const memo = new ProgrammedMemo();
    // c2 was ACKed by another replica's Envoys; this replica's own ran only c1.
    applyXdsFeedback(statuses, served, feedback(true, undefined, { version: 'c2', held: ['c1', 'c2'] }), memo);
    const kept = applyXdsFeedback(statuses, served, feedback(false, undefined, { version: 'c3', held: ['c1', 'c2'] }), memo);
    expect(programmedOf(kept, 'chat-0')).toMatchObject({ status: 'True' });
    // That replica's share expired: only c1, which predates these statuses, is still run.
    const gone = applyXdsFeedback(statuses, served, feedback(false, undefined, { version: 'c2', held: ['c1'] }), memo);
    expect(gone).toEqual(applyXdsFeedback(statuses, served, feedback(false, undefined, { version: 'c2', held: ['c1'] })));
    expect(programmedOf(gone, 'chat-0')).toMatchObject({ status: 'False', reason: 'Pending' });
  });

  it('answers an ACK that leaves the fleet as it was with the last result, and still follows a change of the versions held alone', () => {
    const memo = new ProgrammedMemo();
    applyXdsFeedback(statuses, served, feedback(true, undefined, { version: 'c2', held: ['c1', 'c2'] }), memo);
    const waiting = applyXdsFeedback(statuses, served, feedback(false, undefined, { version: 'c3', held: ['c1', 'c2'] }), memo);
    // The same fleet state, handed over as new objects (as the xDS server does for every ACK).
    expect(applyXdsFeedback(statuses, served, feedback(false, undefined, { version: 'c3', held: ['c1', 'c2'] }), memo)).toBe(waiting);
    expect(programmedOf(waiting, 'chat-0')).toMatchObject({ status: 'True' });
    // Nothing ACKed or NACKed differently, only c2 is no longer run: chat-0 goes Pending.
    const gone = applyXdsFeedback(statuses, served, feedback(false, undefined, { version: 'c3', held: ['c1'] }), memo);
    expect(gone).toEqual(applyXdsFeedback(statuses, served, feedback(false, undefined, { version: 'c3', held: ['c1'] })));
    expect(programmedOf(gone, 'chat-0')).toMatchObject({ status: 'False', reason: 'Pending' });
  });

  it('charges a NACK as a call without memo does, to objects kept True too', () => {
    const memo = new ProgrammedMemo();
    applyXdsFeedback(statuses, served, feedback(true), memo);
    const nacked = applyXdsFeedback(statuses, served, feedback(false, 'cluster backend/ai/chat-1: bad'), memo);
    expect(nacked).toEqual(applyXdsFeedback(statuses, served, feedback(false, 'cluster backend/ai/chat-1: bad')));
    expect(programmedOf(nacked, 'chat-1')).toMatchObject({ status: 'False', reason: 'Rejected' });
    expect(programmedOf(nacked, 'chat-0')).toMatchObject({ status: 'False', reason: 'Pending' });
  });
});

describe('applyFleetHealth with a memo', () => {
  function report(requests: number, failed: number): LoadReportLike {
    const endpoints = [{ address: '10.0.0.1:443', succeeded: requests - failed, failed }];
    return { nodeId: 'e', clusters: [{ cluster: 'backend/ai/chat-0', localities: [{ priority: 0, succeeded: requests - failed, failed, endpoints }] }] };
  }

  it('gives what it gives without memo, and the same object while the health entry and published figures stay', () => {
    let now = 1_000_000;
    const c = cluster(0);
    const window = new LoadWindow(60_000, () => now);
    const plain = new StatusBook(() => new Date(now).toISOString());
    const memoized = new StatusBook(() => new Date(now).toISOString());
    const memo: FleetHealthMemo = new WeakMap();
    const status = backendStatus(0);
    let view: FleetHealthView = new Map();
    const publish = (): { plain: ObjectStatus; memoized: ObjectStatus; given: ObjectStatus } => {
      view = fleetHealthView(ir([c]), window, undefined, undefined, false, undefined, view);
      plain.update(applyFleetHealth([status], fleetHealthView(ir([c]), window), 60_000, (ns, name) => plain.get('Backend', ns, name)));
      const given = applyFleetHealth([status], view, 60_000, (ns, name) => memoized.get('Backend', ns, name), memo)[0] as ObjectStatus;
      memoized.update([given]);
      return { plain: plain.get('Backend', 'ai', 'chat-0') as ObjectStatus, memoized: memoized.get('Backend', 'ai', 'chat-0') as ObjectStatus, given };
    };
    window.record(report(50, 0));
    const first = publish();
    expect(first.memoized).toEqual(first.plain);
    const second = publish();
    expect(second.given).toBe(first.given);
    now += 1_000;
    window.record(report(3, 0));
    const jitter = publish();
    expect(jitter.memoized).toEqual(jitter.plain);
    window.record(report(5, 1));
    const moved = publish();
    expect(moved.memoized).toEqual(moved.plain);
    expect(moved.given).not.toBe(jitter.given);
  });
});

describe('applyFleetHealth over the same statuses and health', () => {
  it('gives the last result again, and a new one once the health view or a status changes', () => {
    const clusters = [0, 1].map((i) => cluster(i));
    const statuses = clusters.map((_, i) => backendStatus(i));
    const memo: FleetHealthMemo = new WeakMap();
    const view = fleetHealthView(ir(clusters), new LoadWindow(60_000));
    const first = applyFleetHealth(statuses, view, 60_000, undefined, memo);
    // A copy of the same statuses (as the quarantine hands them on): the same result.
    expect(applyFleetHealth([...statuses], view, 60_000, undefined, memo)).toBe(first);
    // The controller just started: Degraded says it awaits load reports.
    const dead = fleetHealthView(ir(clusters), new LoadWindow(60_000), undefined, undefined, true);
    const after = applyFleetHealth([...statuses], dead, 60_000, undefined, memo);
    expect(after).toEqual(applyFleetHealth([...statuses], dead, 60_000));
    expect(after).not.toEqual(first);
    const edited = [statuses[0] as BackendStatus, backendStatus(1, 2)];
    expect(applyFleetHealth(edited, dead, 60_000, undefined, memo)).toEqual(applyFleetHealth(edited, dead, 60_000));
  });
});

describe('fleetHealthView after an edit', () => {
  it('keeps the entries of the clusters the IR kept, and computes the replaced one as a full view does', () => {
    const window = new LoadWindow(60_000, () => 1_000_000);
    const resolves = (host: string) => (host === 'gone.example' ? { resolves: false, code: 'ENOTFOUND' } : undefined);
    const before = [0, 1, 2].map((i) => cluster(i));
    const first = fleetHealthView(ir(before), window, undefined, resolves);
    const dns: ClusterIR = { ...cluster(1, 'gone.example'), discovery: 'dns' };
    const after = [before[0]!, dns, before[2]!];
    const edited = fleetHealthView(ir(after), window, undefined, resolves, false, { view: first, clusters: before }, first);
    expect(edited.get('Backend/ai/chat-0')).toBe(first.get('Backend/ai/chat-0'));
    expect(edited.get('Backend/ai/chat-1')).toEqual(fleetHealthView(ir(after), window, undefined, resolves).get('Backend/ai/chat-1'));
    expect(edited.get('Backend/ai/chat-1')?.health.some((h) => h.failing?.reason === 'HostNotResolved')).toBe(true);
    // A list that lost a cluster is matched by object, not by position.
    const shorter = fleetHealthView(ir([before[0]!, before[2]!]), window, undefined, resolves, false, { view: first, clusters: before }, first);
    expect(shorter.get('Backend/ai/chat-2')).toBe(first.get('Backend/ai/chat-2'));
    expect(shorter.has('Backend/ai/chat-1')).toBe(false);
  });
});

describe('applyXdsFeedback over a random run of edits and ACKs', () => {
  /**
   * A small reference model, worked out over every object at every call: an object is programmed
   * when its view ACKed the current CDS version, or holds a version that was current at or after
   * the call that first saw the object's served resources. The memo, which looks only at what
   * moved, must say the same after every call.
   */
  it.each([7, 11, 1234, 99991])('gives what the reference model gives after each call (seed %i)', (first) => {
    let seed = first;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const n = 40;
    let clusters = Array.from({ length: n }, (_, i) => cluster(i));
    let statuses = clusters.map((_, i) => backendStatus(i));
    const p = planes(clusters);
    let served = servedAsFromIr(ir(clusters), p);
    const memo = new ProgrammedMemo();
    const since = new Map<string, number>();
    const entries = new Map<string, unknown>();
    const lastCurrent = new Map<string, number>();
    let version = 1;
    let held: string[] = [];
    let acked = false;
    let edits = 0;
    for (let call = 1; call <= 300; call++) {
      const move = random(5);
      if (move === 0) {
        // An edit: a few clusters replaced, a new CDS version, not ACKed yet.
        const next = clusters.slice();
        for (let k = random(3) + 1; k > 0; k--) {
          const i = random(n);
          next[i] = cluster(i, `10.1.${++edits % 250}.${i}`);
        }
        served = servedAsFromIr(ir(next), p, { ir: ir(clusters), planes: p, servedAs: served });
        clusters = next;
        statuses = statuses.slice();
        version++;
        acked = false;
      } else if (move === 1) {
        acked = true;
        held = [`c${version}`];
      } else if (move === 2 && held.length > 0) {
        // The Envoys that ran the held version left; an older one may still be run somewhere.
        held = random(2) === 0 ? [] : [`c${Math.max(1, version - 1 - random(3))}`];
        acked = false;
      } else if (move === 3) {
        // A status replaced alone (a new generation), served as it was.
        const i = random(n);
        statuses = statuses.map((s, k) => (k === i ? backendStatus(i, call) : s));
      }
      const current = `c${version}`;
      lastCurrent.set(current, call);
      for (const [key, entry] of served) {
        if (entries.get(key) === entry) continue;
        entries.set(key, entry);
        since.set(key, call);
      }
      const fb = feedback(acked, undefined, { version: current, held });
      const out = applyXdsFeedback(statuses, served, fb, memo);
      const newestHeld = Math.max(-Infinity, ...held.map((v) => lastCurrent.get(v) ?? -Infinity));
      for (let i = 0; i < n; i++) {
        const key = `Backend/ai/chat-${i}`;
        const expected = acked || newestHeld >= (since.get(key) ?? Infinity) ? 'True' : 'False';
        expect(programmedOf(out, `chat-${i}`).status, `call ${call}, chat-${i} since ${since.get(key)}, move ${move}, acked ${acked}, held ${held.join()}@${newestHeld}, current ${current}`).toBe(expected);
      }
    }
  });
});
