import { describe, expect, it } from 'vitest';
import { condition } from '../../src/api/conditions.js';
import type { ClusterIR, IR, MemberIR } from '../../src/ir/model.js';
import { StatusBook } from '../../src/status/book.js';
import { DnsProbe } from '../../src/status/dns-probe.js';
import { applyFleetHealth, fleetHealthView, LoadWindow, roundFigure, sameFleetHealth, steady, type LoadReportLike, type ResolvesFn } from '../../src/status/fleet-health.js';
import type { BackendStatus, ObjectStatus } from '../../src/translate/status.js';

/**
 * Backend ai/chat: priority 0 "primary" (10.0.0.1:443), priority 1 "secondary" (10.0.0.2:443).
 * Load reports are fed in on a hand-driven clock; statuses go through the StatusBook as in serve.
 */

const WINDOW = 60_000;

function member(name: string, address: string, level: number): MemberIR {
  return { name, address, port: 443, hostname: `${name}.example`, weight: 1, tls: true, metadata: { backend: 'ai/chat', member: name, priority: level } };
}

function cluster(primaryAddress = '10.0.0.1', discovery: 'eds' | 'dns' = 'eds'): ClusterIR {
  return {
    name: 'backend/ai/chat',
    backend: { namespace: 'ai', name: 'chat' },
    discovery,
    connectTimeoutMs: 1000,
    priorities: [
      { level: 0, members: [member('primary', primaryAddress, 0)] },
      { level: 1, members: [member('secondary', '10.0.0.2', 1)] },
    ],
  };
}

function ir(c: ClusterIR = cluster()): IR {
  return { gateways: [], listeners: [], clusters: [c], credentials: [], certificates: [] };
}

function backendStatus(c: ClusterIR = cluster()): BackendStatus {
  const members = c.priorities.reduce((n, p) => n + p.members.length, 0);
  return {
    kind: 'Backend',
    namespace: 'ai',
    name: 'chat',
    conditions: [condition('Accepted', true, 'Accepted', 'Backend is valid', 3)],
    priorities: c.priorities.map((p) => ({ priority: p.level, envoyPriority: p.level, members: p.members.map((m) => ({ name: m.name, provider: 'openai', usable: true })) })),
    servedPriorities: c.priorities.length,
    usableMembers: members,
    totalMembers: members,
  };
}

/** One report from `node`: per priority, per endpoint address, [succeeded, failed]. */
function report(node: string, byPriority: Record<number, Record<string, [number, number]>>): LoadReportLike {
  return {
    nodeId: node,
    clusters: [
      {
        cluster: 'backend/ai/chat',
        localities: Object.entries(byPriority).map(([priority, endpoints]) => {
          const list = Object.entries(endpoints).map(([address, [succeeded, failed]]) => ({ address, succeeded, failed }));
          return { priority: Number(priority), succeeded: list.reduce((n, e) => n + e.succeeded, 0), failed: list.reduce((n, e) => n + e.failed, 0), endpoints: list };
        }),
      },
    ],
  };
}

function harness(c: ClusterIR = cluster(), resolves?: ResolvesFn) {
  let now = 1_000_000;
  const window = new LoadWindow(WINDOW, () => now);
  const book = new StatusBook(() => new Date(now).toISOString());
  const publish = (): BackendStatus => {
    book.update(applyFleetHealth([backendStatus(c)] as ObjectStatus[], fleetHealthView(ir(c), window, undefined, resolves), WINDOW, (ns, name) => book.get('Backend', ns, name)));
    return book.get('Backend', 'ai', 'chat') as BackendStatus;
  };
  return {
    window,
    publish,
    advance: (ms: number) => {
      now += ms;
    },
    now: () => now,
  };
}

function degraded(s: BackendStatus) {
  return s.conditions.find((c) => c.type === 'Degraded');
}

function figures(s: BackendStatus, name: string) {
  const m = s.priorities.flatMap((p) => p.members).find((x) => x.name === name);
  return { requests: m?.requests, errors: m?.errors };
}

describe('LoadWindow', () => {
  it('sums every Envoy\'s reports over the window and forgets what is older', () => {
    const h = harness();
    h.window.record(report('envoy-a', { 0: { '10.0.0.1:443': [5, 1] } }));
    h.advance(20_000);
    h.window.record(report('envoy-b', { 0: { '10.0.0.1:443': [3, 0] } }));
    expect(h.window.cluster('backend/ai/chat').get(0)?.get('10.0.0.1:443')).toEqual({ requests: 9, errors: 1 });
    expect(h.window.reporters()).toEqual(['envoy-a', 'envoy-b']);
    h.advance(40_000); // envoy-a's report is now exactly a window old
    expect(h.window.cluster('backend/ai/chat').get(0)?.get('10.0.0.1:443')).toEqual({ requests: 3, errors: 0 });
    expect(h.window.reporters()).toEqual(['envoy-b']);
    h.advance(20_000);
    expect(h.window.cluster('backend/ai/chat').size).toBe(0);
    expect(h.window.reporters()).toEqual([]);
  });

  it('keeps a locality\'s load that is not broken down by endpoint for the pool only', () => {
    const h = harness();
    h.window.record({ nodeId: 'e', clusters: [{ cluster: 'backend/ai/chat', localities: [{ priority: 1, succeeded: 4, failed: 2, endpoints: [] }] }] });
    expect(h.window.cluster('backend/ai/chat').get(1)?.get('')).toEqual({ requests: 6, errors: 2 });
  });
});

describe('Degraded', () => {
  it('is Unknown until an Envoy reports, then False with each member\'s figures', () => {
    const h = harness();
    expect(degraded(h.publish())).toMatchObject({ status: 'Unknown', reason: 'NoLoadReports' });
    h.window.record(report('e', { 0: { '10.0.0.1:443': [12, 1] } }));
    const s = h.publish();
    expect(degraded(s)).toMatchObject({ status: 'False', reason: 'Healthy', observedGeneration: 3 });
    expect(figures(s, 'primary')).toEqual({ requests: 13, errors: 1 });
    expect(figures(s, 'secondary')).toEqual({ requests: 0, errors: 0 });
  });

  it('names a member most of whose attempts fail, and clears once the failures leave the window, keeping transition times', () => {
    const h = harness();
    h.window.record(report('e', { 0: { '10.0.0.1:443': [1, 0] } }));
    const healthySince = degraded(h.publish())?.lastTransitionTime;
    h.advance(1_000);
    h.window.record(report('e', { 0: { '10.0.0.1:443': [0, 4] }, 1: { '10.0.0.2:443': [4, 0] } }));
    const s = h.publish();
    const d = degraded(s);
    expect(d).toMatchObject({ status: 'True', reason: 'MemberFailing' });
    expect(d?.message).toContain('member primary (priority 0, 10.0.0.1): 50% or more of its attempts failed in the last 1 min');
    expect(d?.message).not.toContain('secondary');
    expect(d?.lastTransitionTime).not.toBe(healthySince);
    const failingSince = d?.lastTransitionTime;

    // More failures: same verdict, same message, same transition time (no churn).
    h.advance(5_000);
    h.window.record(report('e', { 0: { '10.0.0.1:443': [0, 3] }, 1: { '10.0.0.2:443': [3, 0] } }));
    expect(degraded(h.publish())).toEqual(d);

    // Below the threshold, nothing is named: 2 failures of 2 are not enough to call it failing.
    h.advance(WINDOW);
    h.window.record(report('e', { 0: { '10.0.0.1:443': [0, 2] } }));
    const quiet = degraded(h.publish());
    expect(quiet).toMatchObject({ status: 'False', reason: 'Healthy' });
    expect(Date.parse(quiet?.lastTransitionTime ?? '')).toBeGreaterThan(Date.parse(failingSince ?? ''));
  });

  it('names a priority 0 member that got no request while priority 1 served the Backend (a host Envoy has no endpoint for)', () => {
    const h = harness(cluster('primary.example', 'dns'));
    h.window.record(report('e', { 1: { '10.0.0.2:443': [6, 0] } }));
    const d = degraded(h.publish());
    expect(d).toMatchObject({ status: 'True', reason: 'MemberUnreachable' });
    expect(d?.message).toContain('member primary (priority 0): got no request in the last 1 min while later priorities served the Backend');
    expect(d?.message).toContain('primary.example:443');
  });

  it('says a member with limits that got no request while priority 1 served is most likely at its limit', () => {
    const c = cluster('primary.example', 'dns');
    const primary = c.priorities[0]!.members[0]!;
    primary.metadata.requestsPerMinute = 3;
    const h = harness(c);
    h.window.record(report('e', { 1: { '10.0.0.2:443': [6, 0] } }));
    const d = degraded(h.publish());
    expect(d).toMatchObject({ status: 'True', reason: 'MemberLimited' });
    expect(d?.message).toContain('member primary (priority 0): got no request in the last 1 min while later priorities served the Backend; most likely it was at its per-minute limit (requestsPerMinute 3');
  });

  it('names a pool member that got none of its weight\'s share of its pool\'s requests, not a light one that rightly got none', () => {
    const pool = (heavy: number): ClusterIR => ({
      ...cluster(),
      priorities: [{ level: 0, members: [member('a', '10.0.0.1', 0), { ...member('b', 'b.example', 0), weight: heavy }, { ...member('c', '10.0.0.3', 0), weight: 99 }] }],
    });
    const busy = harness(pool(50));
    busy.window.record(report('e', { 0: { '10.0.0.1:443': [3, 0], '10.0.0.3:443': [297, 0] } }));
    const d = degraded(busy.publish());
    expect(d).toMatchObject({ status: 'True', reason: 'MemberUnreachable' });
    expect(d?.message).toContain('member b (priority 0): got no request in the last 1 min while the rest of its pool served the Backend');
    expect(d?.message).not.toContain('member a ');

    const quiet = harness(pool(1));
    quiet.window.record(report('e', { 0: { '10.0.0.3:443': [100, 0] } }));
    expect(degraded(quiet.publish())).toMatchObject({ status: 'False' });
  });

  it('does not call an idle member unreachable when there was too little traffic to tell', () => {
    const h = harness(cluster('primary.example', 'dns'));
    h.window.record(report('e', { 1: { '10.0.0.2:443': [2, 0] } }));
    expect(degraded(h.publish())).toMatchObject({ status: 'False' });
  });

  it('awaits reports for a window after the controller starts, then says none came', () => {
    let now = 0;
    const window = new LoadWindow(WINDOW, () => now);
    const view = (starting: boolean) => applyFleetHealth([backendStatus()] as ObjectStatus[], fleetHealthView(ir(), window, undefined, undefined, starting), WINDOW)[0] as BackendStatus;
    expect(degraded(view(true))).toMatchObject({ status: 'Unknown', reason: 'AwaitingLoadReports' });
    expect(figures(view(true), 'primary')).toEqual({ requests: undefined, errors: undefined });
    now = WINDOW;
    expect(degraded(view(false))).toMatchObject({ status: 'Unknown', reason: 'NoLoadReports' });
  });

  it('says a host does not resolve from the DNS answer alone, when no Envoy reports load', () => {
    const window = new LoadWindow(WINDOW, () => 0);
    const c = cluster('does-not-exist.invalid', 'dns');
    const s = applyFleetHealth([backendStatus(c)] as ObjectStatus[], fleetHealthView(ir(c), window, undefined, () => ({ resolves: false, code: 'ENOTFOUND' })), WINDOW)[0] as BackendStatus;
    expect(degraded(s)).toMatchObject({ status: 'True', reason: 'HostNotResolved' });
  });

  it('says a host does not resolve when the controller\'s lookup finds no such name, even without any traffic', () => {
    const h = harness(cluster('does-not-exist.invalid', 'dns'), (host) => (host === 'does-not-exist.invalid' ? { resolves: false, code: 'ENOTFOUND' } : undefined));
    h.window.record({ nodeId: 'e', clusters: [] });
    const d = degraded(h.publish());
    expect(d).toMatchObject({ status: 'True', reason: 'HostNotResolved' });
    expect(d?.message).toContain('member primary (priority 0): its host does-not-exist.invalid does not resolve (ENOTFOUND, from the controller)');
  });

  it('maps DNS members sharing a port by the controller\'s own answer, and calls none unreachable when it cannot tell them apart', () => {
    const pool: ClusterIR = { ...cluster(), discovery: 'dns', priorities: [{ level: 0, members: [member('a', 'a.example', 0), member('b', 'b.example', 0)] }] };
    const load = { 0: { '10.9.0.1:443': [20, 0] as [number, number] } };
    const unknown = harness(pool);
    unknown.window.record(report('e', load));
    const blind = unknown.publish();
    expect(degraded(blind)).toMatchObject({ status: 'False' });
    expect(figures(blind, 'a')).toEqual({ requests: 0, errors: 0 });

    const known = harness(pool, (host) => (host === 'a.example' ? { resolves: true, addresses: ['10.9.0.1'] } : host === 'b.example' ? { resolves: true, addresses: ['10.9.0.2'] } : undefined));
    known.window.record(report('e', load));
    const seen = known.publish();
    expect(figures(seen, 'a')).toEqual({ requests: 20, errors: 0 });
    expect(degraded(seen)).toMatchObject({ status: 'True', reason: 'MemberUnreachable' });
    expect(degraded(seen)?.message).toContain('member b (priority 0)');
  });

  it('maps a DNS member\'s resolved address to it by port when it is the only one of its pool on that port', () => {
    const h = harness(cluster('primary.example', 'dns'));
    h.window.record(report('e', { 0: { '93.184.216.34:443': [7, 0] } }));
    expect(figures(h.publish(), 'primary')).toEqual({ requests: 7, errors: 0 });
  });
});

describe('figures', () => {
  it('are exact up to 100 and rounded to two significant digits above, so status does not change with every request', () => {
    expect([0, 7, 99, 100, 123, 1_234, 98_765].map(roundFigure)).toEqual([0, 7, 99, 100, 120, 1_200, 99_000]);
  });

  it('keep the published value while the new one is within 10% of it, and always show traffic starting or stopping', () => {
    expect(steady(undefined, 57)).toBe(57);
    expect(steady(50, 54)).toBe(50);
    expect(steady(50, 56)).toBe(56);
    expect(steady(1_200, 1_234)).toBe(1_200);
    expect(steady(3, 0)).toBe(0);
    expect(steady(0, 1)).toBe(1);
  });

  it('do not rewrite the status of a Backend whose traffic only jitters', () => {
    const h = harness();
    h.window.record(report('e', { 0: { '10.0.0.1:443': [50, 0] } }));
    expect(figures(h.publish(), 'primary')).toEqual({ requests: 50, errors: 0 });
    h.advance(1_000);
    h.window.record(report('e', { 0: { '10.0.0.1:443': [3, 0] } }));
    expect(figures(h.publish(), 'primary')).toEqual({ requests: 50, errors: 0 });
    h.window.record(report('e', { 0: { '10.0.0.1:443': [5, 1] } }));
    expect(figures(h.publish(), 'primary')).toEqual({ requests: 59, errors: 1 });
  });
});

describe('DnsProbe', () => {
  it('remembers names that do not exist, forgets inconclusive answers, and skips IP addresses', async () => {
    const asked: string[] = [];
    const probe = new DnsProbe(async (host) => {
      asked.push(host);
      if (host === 'gone.invalid') throw Object.assign(new Error('nope'), { code: 'ENOTFOUND' });
      if (host === 'flaky.example') throw Object.assign(new Error('timeout'), { code: 'EAI_AGAIN' });
      return ['10.0.0.1'];
    });
    await probe.refresh(['gone.invalid', 'flaky.example', 'ok.example', '10.0.0.9']);
    expect(asked.sort()).toEqual(['flaky.example', 'gone.invalid', 'ok.example']);
    expect(probe.resolution('gone.invalid')).toEqual({ resolves: false, code: 'ENOTFOUND' });
    expect(probe.resolution('flaky.example')).toBeUndefined();
    expect(probe.resolution('ok.example')).toEqual({ resolves: true, addresses: ['10.0.0.1'] });
    await probe.refresh(['ok.example']);
    expect(probe.resolution('gone.invalid')).toBeUndefined();
  });

  it('looks a host up again at most every minIntervalMs', async () => {
    let now = 0;
    let lookups = 0;
    const probe = new DnsProbe(async () => {
      lookups++;
      return ['10.0.0.1'];
    }, 4, 10_000, () => now);
    await probe.refresh(['a.example']);
    now = 9_999;
    await probe.refresh(['a.example']);
    expect(lookups).toBe(1);
    now = 10_000;
    await probe.refresh(['a.example']);
    expect(lookups).toBe(2);
  });
});

describe('sameFleetHealth: whether a refresh has anything for status (serve rebuilds statuses only then)', () => {
  it('is true for a recomputed view of the same reports, false once a report, the start window or a DNS answer moves it', () => {
    const h = harness();
    const view = (starting = false, resolves?: ResolvesFn) => fleetHealthView(ir(), h.window, undefined, resolves, starting);
    expect(sameFleetHealth(view(true), view(true))).toBe(true);
    expect(sameFleetHealth(view(true), view(false))).toBe(false);
    h.window.record(report('envoy-a', { 0: { '10.0.0.1:443': [5, 0] } }));
    const reported = view();
    expect(sameFleetHealth(reported, view())).toBe(true);
    h.window.record(report('envoy-a', { 0: { '10.0.0.1:443': [0, 5] } }));
    expect(sameFleetHealth(reported, view())).toBe(false);
    const dnsCluster = cluster('primary.example', 'dns');
    const unresolved: ResolvesFn = () => ({ resolves: false, code: 'ENOTFOUND' });
    expect(sameFleetHealth(fleetHealthView(ir(dnsCluster), h.window), fleetHealthView(ir(dnsCluster), h.window, undefined, unresolved))).toBe(false);
    expect(sameFleetHealth(new Map(), view())).toBe(false);
  });
});
