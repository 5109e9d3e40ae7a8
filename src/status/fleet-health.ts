import { condition, type Condition } from '../api/conditions.js';
import { sameItems } from '../ir/delta.js';
import type { ClusterIR, IR, MemberIR } from '../ir/model.js';
import type { BackendStatus, ObjectStatus } from '../translate/status.js';
import { OBJECTS_PER_STEP, runSteps, type Steps } from './steps.js';

/**
 * Fleet health from Envoy's load reports (LRS): per Backend, what each member did over a sliding
 * window, and a Degraded condition when a member has been failing.
 *
 * What LRS covers: attempts per endpoint (an Envoy host, i.e. a resolved address) that finished
 * with success or with an error (5xx, and attempts that failed to connect or were reset).
 * What it does not: outlier ejections and active health, DNS results, and anything about a member
 * Envoy has no host for. A member whose hostname does not resolve has no host, so it never
 * appears in a report; it is told apart from an idle member by where the traffic went instead:
 * it got no request while a later priority, or a sibling in its pool, served the Backend; and,
 * for hostnames, by the controller's own DNS lookup (src/status/dns-probe.ts), which also covers
 * a Backend whose every member is unresolved and which therefore serves no request at all.
 */

export interface LoadReportLike {
  readonly nodeId: string;
  readonly clusters: readonly {
    readonly cluster: string;
    readonly localities: readonly {
      readonly priority: number;
      readonly succeeded: number;
      readonly failed: number;
      readonly endpoints: readonly { readonly address: string; readonly succeeded: number; readonly failed: number }[];
    }[];
  }[];
}

/** Requests and errors over the window. */
export interface LoadFigures {
  requests: number;
  errors: number;
}

/** Load over a sliding window: one replica's own (LoadWindow), or the fleet's (src/status/fleet-share.ts). */
export interface LoadSource {
  readonly windowMs: number;
  /** Envoys that reported within the window. */
  reporterCount(): number;
  /** Per priority, per endpoint address ('' = not broken down by endpoint): figures over the window. */
  cluster(name: string): Map<number, Map<string, LoadFigures>>;
}

/** Slots per window: figures move in steps of a twelfth of the window (5 s of a minute). */
const SLOTS = 12;

/**
 * The last `windowMs` of load reports from every Envoy, summed per cluster, per time slot, per
 * endpoint: memory grows with the endpoints that had traffic, not with Envoys or reports. A slot
 * counts while its start is inside the window, so the window is between 11 and 12 slots long.
 */
export class LoadWindow implements LoadSource {
  private readonly slotMs: number;
  /** cluster → slot → "priority address" → figures. */
  private readonly clusters = new Map<string, Map<number, Map<string, LoadFigures>>>();
  private readonly lastReport = new Map<string, number>();
  private sweptSlot = 0;

  constructor(
    readonly windowMs: number,
    private readonly clock: () => number = Date.now,
  ) {
    if (!(windowMs > 0)) throw new Error(`load window: windowMs must be positive, got ${String(windowMs)}`);
    this.slotMs = windowMs / SLOTS;
  }

  record(report: LoadReportLike): void {
    const at = this.clock();
    this.lastReport.set(report.nodeId, at);
    const slot = Math.floor(at / this.slotMs);
    for (const c of report.clusters) {
      for (const l of c.localities) {
        let attributed = { requests: 0, errors: 0 };
        for (const e of l.endpoints) {
          const requests = e.succeeded + e.failed;
          if (requests === 0) continue;
          this.add(c.cluster, slot, l.priority, e.address, requests, e.failed);
          attributed = { requests: attributed.requests + requests, errors: attributed.errors + e.failed };
        }
        // Without endpoint granularity the locality still counts, for its pool as a whole.
        const rest = l.succeeded + l.failed - attributed.requests;
        if (rest > 0) this.add(c.cluster, slot, l.priority, '', rest, Math.max(0, l.failed - attributed.errors));
      }
    }
    this.sweep(at);
  }

  /** Envoys that reported within the window. */
  reporters(): string[] {
    const since = this.clock() - this.windowMs;
    return [...this.lastReport].filter(([, at]) => at > since).map(([node]) => node).sort();
  }

  reporterCount(): number {
    return this.reporters().length;
  }

  /** Per priority, per endpoint address ('' = not broken down by endpoint): figures over the window. */
  cluster(name: string): Map<number, Map<string, LoadFigures>> {
    const first = this.firstSlot(this.clock());
    const out = new Map<number, Map<string, LoadFigures>>();
    for (const [slot, endpoints] of this.clusters.get(name) ?? []) {
      if (slot < first) continue;
      for (const [key, f] of endpoints) {
        const space = key.indexOf(' ');
        const priority = Number(key.slice(0, space));
        const address = key.slice(space + 1);
        const pool = out.get(priority) ?? new Map<string, LoadFigures>();
        const sum = pool.get(address) ?? { requests: 0, errors: 0 };
        pool.set(address, { requests: sum.requests + f.requests, errors: sum.errors + f.errors });
        out.set(priority, pool);
      }
    }
    return out;
  }

  private add(cluster: string, slot: number, priority: number, address: string, requests: number, errors: number): void {
    let slots = this.clusters.get(cluster);
    if (!slots) this.clusters.set(cluster, (slots = new Map()));
    let endpoints = slots.get(slot);
    if (!endpoints) slots.set(slot, (endpoints = new Map()));
    const key = `${priority} ${address}`;
    const f = endpoints.get(key) ?? { requests: 0, errors: 0 };
    endpoints.set(key, { requests: f.requests + requests, errors: f.errors + errors });
  }

  /** The oldest slot whose start is inside the window. */
  private firstSlot(now: number): number {
    return Math.floor((now - this.windowMs) / this.slotMs) + 1;
  }

  /** Drops slots that left the window, once per slot: a full pass costs one step per cluster. */
  private sweep(now: number): void {
    const first = this.firstSlot(now);
    if (first <= this.sweptSlot) return;
    this.sweptSlot = first;
    for (const [cluster, slots] of this.clusters) {
      for (const slot of slots.keys()) if (slot < first) slots.delete(slot);
      if (slots.size === 0) this.clusters.delete(cluster);
    }
    const since = now - this.windowMs;
    for (const [node, at] of this.lastReport) if (at <= since) this.lastReport.delete(node);
  }
}

export interface FleetHealthOptions {
  /** Failed attempts a member must have had before it counts as failing. */
  minRequests: number;
  /** Share of a member's attempts that must have failed for it to count as failing. */
  failureRatio: number;
  /** Requests a Backend must have served before a member that got none of them counts as unreachable. */
  minTrafficForUnreachable: number;
}

export const DEFAULT_FLEET_HEALTH: FleetHealthOptions = { minRequests: 3, failureRatio: 0.5, minTrafficForUnreachable: 5 };

/** A member's verdict over the window. */
export interface MemberHealth {
  name: string;
  /** Envoy priority level. */
  priority: number;
  figures: LoadFigures;
  failing?: { reason: DegradedReason; message: string };
}

export type DegradedReason = 'HostNotResolved' | 'MemberFailing' | 'MemberUnreachable' | 'MemberLimited';

/** The controller's own DNS answer for a hostname (src/status/dns-probe.ts); undefined: not known. */
export type ResolvesFn = (host: string) => { resolves: boolean; code?: string; addresses?: readonly string[] } | undefined;

/**
 * Which reported endpoint is which member: by address and port (IP members, hostOverride to an
 * IP); else, for a member behind a hostname (STRICT_DNS), the one member of that pool with that
 * port. An endpoint that matches no member (several DNS members on one port) counts for its pool only.
 */
function memberOf(pool: readonly MemberIR[], address: string, resolves: ResolvesFn): MemberIR | undefined {
  const hostPort = (host: string, port: number): string => `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const exact = pool.find((m) => hostPort(m.address, m.port) === address);
  if (exact) return exact;
  // What the controller's resolver answered for the member's host, when Envoy got the same.
  const resolved = pool.filter((m) => (resolves(m.address)?.addresses ?? []).some((a) => hostPort(a, m.port) === address));
  if (resolved.length === 1) return resolved[0];
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  const byPort = pool.filter((m) => m.port === port);
  return byPort.length === 1 ? byPort[0] : undefined;
}

function windowText(windowMs: number): string {
  return windowMs % 60_000 === 0 ? `${windowMs / 60_000} min` : `${Math.round(windowMs / 1000)} s`;
}

/** Each member's figures and verdict for one cluster. Pure. */
export function memberHealth(c: ClusterIR, load: Map<number, Map<string, LoadFigures>>, windowMs: number, opts: FleetHealthOptions = DEFAULT_FLEET_HEALTH, resolves: ResolvesFn = () => undefined): MemberHealth[] {
  const out: MemberHealth[] = [];
  const poolTotal = new Map<number, LoadFigures>();
  for (const [priority, endpoints] of load) {
    let t = { requests: 0, errors: 0 };
    for (const f of endpoints.values()) t = { requests: t.requests + f.requests, errors: t.errors + f.errors };
    poolTotal.set(priority, t);
  }
  const span = windowText(windowMs);
  for (const p of c.priorities) {
    const endpoints = load.get(p.level) ?? new Map<string, LoadFigures>();
    const figures = new Map<string, LoadFigures>(p.members.map((m) => [m.name, { requests: 0, errors: 0 }]));
    // Load Envoy reported for this pool that no member could be matched with: then a member
    // showing none may have had it, and the pool's traffic says nothing about it.
    let unattributed = false;
    for (const [address, f] of endpoints) {
      const m = address === '' ? undefined : memberOf(p.members, address, resolves);
      if (!m) {
        unattributed = true;
        continue;
      }
      const before = figures.get(m.name)!;
      figures.set(m.name, { requests: before.requests + f.requests, errors: before.errors + f.errors });
    }
    // Traffic that went past this pool: a later priority only gets requests when this one could not take them.
    let later = 0;
    for (const [level, t] of poolTotal) if (level > p.level) later += t.requests;
    const pool = poolTotal.get(p.level) ?? { requests: 0, errors: 0 };
    const weights = p.members.reduce((n, m) => n + m.weight, 0);
    for (const m of p.members) {
      const f = figures.get(m.name)!;
      const health: MemberHealth = { name: m.name, priority: p.level, figures: f };
      const dns = c.discovery === 'dns' && f.requests === 0 ? resolves(m.address) : undefined;
      if (dns && !dns.resolves) {
        health.failing = {
          reason: 'HostNotResolved',
          message: `member ${m.name} (priority ${p.level}): its host ${m.address} does not resolve (${dns.code ?? 'not found'}, from the controller), so Envoy has no endpoint for it; fix the member's host or hostOverride, or its DNS record`,
        };
      } else if (f.errors >= opts.minRequests && f.errors >= opts.failureRatio * f.requests) {
        // No counts in the message: it would change with every report and churn the status.
        const share = f.errors === f.requests ? 'every attempt' : `${Math.floor(opts.failureRatio * 100)}% or more of its attempts`;
        health.failing = { reason: 'MemberFailing', message: `member ${m.name} (priority ${p.level}, ${m.address}): ${share} failed in the last ${span} (5xx answers, failed or reset connections)` };
      } else if (f.requests === 0 && m.weight > 0 && (later >= opts.minTrafficForUnreachable || (!unattributed && (pool.requests * m.weight) / weights >= opts.minTrafficForUnreachable))) {
        // Its share of its pool's requests, by weight, is what it would have got; a light member
        // of a quiet pool may rightly have got none.
        const where = later >= opts.minTrafficForUnreachable ? 'later priorities served the Backend' : 'the rest of its pool served the Backend';
        const limits = [
          ...(m.metadata.requestsPerMinute !== undefined ? [`requestsPerMinute ${m.metadata.requestsPerMinute}`] : []),
          ...(m.metadata.tokensPerMinute !== undefined ? [`tokensPerMinute ${m.metadata.tokensPerMinute}`] : []),
        ];
        // Load reports carry no health-check results: a member with limits that Envoy skipped is
        // most likely at its limit, which the AI extension logs and counts, not dead.
        health.failing = limits.length > 0
          ? {
            reason: 'MemberLimited',
            message: `member ${m.name} (priority ${p.level}): got no request in the last ${span} while ${where}; most likely it was at its per-minute limit (${limits.join(', ')}; see switchyard_ai_member_limited_total), else Envoy has no usable endpoint for ${m.address}:${m.port}`,
          }
          : {
            reason: 'MemberUnreachable',
            message: `member ${m.name} (priority ${p.level}): got no request in the last ${span} while ${where}; Envoy has no usable endpoint for ${m.address}:${m.port} (the host does not resolve, or it is ejected as unhealthy)`,
          };
      }
      out.push(health);
    }
  }
  return out;
}

function clusterKey(c: ClusterIR): string {
  return `${c.backend.kind ?? 'Backend'}/${c.backend.namespace}/${c.backend.name}`;
}

/** A figure as shown in status: exact up to 100, then to two significant digits, so status does not change with every request. */
export function roundFigure(n: number): number {
  if (n < 100) return n;
  const scale = 10 ** (Math.floor(Math.log10(n)) - 1);
  return Math.round(n / scale) * scale;
}

/**
 * The figure to publish: the one already published while the new one is within 10% of it (steady
 * traffic jitters; each change is a status write per Backend), else the new one, rounded. Zero
 * and non-zero always differ: traffic starting or stopping is news.
 */
export function steady(published: number | undefined, next: number): number {
  const rounded = roundFigure(next);
  if (published === undefined || published === 0 || rounded === 0) return rounded;
  return Math.abs(rounded - published) <= 0.1 * published ? published : rounded;
}

/** Per Backend: the member verdicts to fold into status. */
export interface FleetHealthEntry {
  health: MemberHealth[];
  reporting: Reporting;
}
export type FleetHealthView = Map<string, FleetHealthEntry>;

/** yes: an Envoy reported in the window; starting: none yet, and the controller is younger than a window; no: none. */
export type Reporting = 'yes' | 'starting' | 'no';

/** What a view was built from: an edit keeps the entries of the clusters it did not replace. */
export interface FleetHealthReuse {
  view: FleetHealthView;
  /** The cluster list `view` was computed from (the IR keeps an unchanged Backend's cluster object). */
  clusters: readonly ClusterIR[];
}

function sameHealth(a: readonly MemberHealth[], b: readonly MemberHealth[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.name !== y.name || x.priority !== y.priority || x.figures.requests !== y.figures.requests || x.figures.errors !== y.figures.errors) return false;
    if (x.failing?.reason !== y.failing?.reason || x.failing?.message !== y.failing?.message) return false;
  }
  return true;
}

/**
 * Per Backend, its members' health. With `reuse` from an edit, the clusters the edit did not
 * replace keep their entries as they are (figures move on the refresh timer, not per edit); with
 * `previous`, an entry equal to its predecessor is the predecessor object, so applyFleetHealth
 * hands the status book the same status and the book compares nothing.
 */
export function fleetHealthView(ir: IR, window: LoadSource, opts: FleetHealthOptions = DEFAULT_FLEET_HEALTH, resolves: ResolvesFn = () => undefined, starting = false, reuse?: FleetHealthReuse, previous?: FleetHealthView): FleetHealthView {
  return runSteps(fleetHealthViewSteps(ir, window, opts, resolves, starting, reuse, previous));
}

/** fleetHealthView in steps (src/status/steps.ts). */
export function* fleetHealthViewSteps(ir: IR, window: LoadSource, opts: FleetHealthOptions = DEFAULT_FLEET_HEALTH, resolves: ResolvesFn = () => undefined, starting = false, reuse?: FleetHealthReuse, previous?: FleetHealthView): Steps<FleetHealthView> {
  const reporting = reportingOf(window, starting);
  const view: FleetHealthView = new Map();
  // Lined up by position when the list kept its length (an edit in place), else looked up.
  const aligned = reuse !== undefined && reuse.clusters.length === ir.clusters.length;
  const known = reuse !== undefined && !aligned ? new Set(reuse.clusters) : undefined;
  for (let i = 0; i < ir.clusters.length; i++) {
    if (i % OBJECTS_PER_STEP === OBJECTS_PER_STEP - 1) yield;
    const c = ir.clusters[i]!;
    if ((c.backend.kind ?? 'Backend') !== 'Backend') continue;
    const key = clusterKey(c);
    const kept = reuse !== undefined && (aligned ? reuse.clusters[i] === c : known?.has(c) === true) ? reuse.view.get(key) : undefined;
    if (kept !== undefined && kept.reporting === reporting) {
      view.set(key, kept);
      continue;
    }
    // Without reports the DNS verdict still holds: it needs no traffic.
    const health = memberHealth(c, reporting === 'yes' ? window.cluster(c.name) : new Map(), window.windowMs, opts, resolves);
    const before = previous?.get(key);
    view.set(key, before !== undefined && before.reporting === reporting && sameHealth(before.health, health) ? before : { health, reporting });
  }
  return view;
}

/**
 * fleetHealthView after an edit that replaced the clusters at `at` of a lined-up list (`before`
 * → `ir.clusters`), changing `view` itself: only those clusters are computed again, with the
 * reporting state the view was computed with. Returns each Backend whose entry moved, with the
 * entry it had (undefined: none).
 */
export function fleetHealthEdit(view: FleetHealthView, before: readonly ClusterIR[], ir: IR, at: readonly number[], window: LoadSource, reporting: Reporting, opts: FleetHealthOptions = DEFAULT_FLEET_HEALTH, resolves: ResolvesFn = () => undefined): Map<string, FleetHealthEntry | undefined> {
  const moved = new Map<string, FleetHealthEntry | undefined>();
  const isBackend = (c: ClusterIR): boolean => (c.backend.kind ?? 'Backend') === 'Backend';
  // Keys that left first: a key may move to another index of the edit.
  for (const i of at) {
    const old = before[i]!;
    const key = clusterKey(old);
    if (!isBackend(old) || (isBackend(ir.clusters[i]!) && clusterKey(ir.clusters[i]!) === key)) continue;
    const was = view.get(key);
    if (was !== undefined && !moved.has(key)) moved.set(key, was);
    view.delete(key);
  }
  for (const i of at) {
    const c = ir.clusters[i]!;
    if (!isBackend(c)) continue;
    const key = clusterKey(c);
    const health = memberHealth(c, reporting === 'yes' ? window.cluster(c.name) : new Map(), window.windowMs, opts, resolves);
    const was = view.get(key);
    if (was !== undefined && was.reporting === reporting && sameHealth(was.health, health)) continue;
    if (!moved.has(key)) moved.set(key, was);
    view.set(key, { health, reporting });
  }
  return moved;
}

/** The reporting state fleetHealthView works with. */
export function reportingOf(window: LoadSource, starting: boolean): Reporting {
  return window.reporterCount() > 0 ? 'yes' : starting ? 'starting' : 'no';
}

/** Whether two views give every Backend the same verdicts and figures (what statuses are built from). */
export function sameFleetHealth(a: FleetHealthView, b: FleetHealthView): boolean {
  return runSteps(sameFleetHealthSteps(a, b));
}

/** sameFleetHealth in steps (src/status/steps.ts). */
export function* sameFleetHealthSteps(a: FleetHealthView, b: FleetHealthView): Steps<boolean> {
  if (a.size !== b.size) return false;
  let n = 0;
  for (const [key, left] of a) {
    if (++n % OBJECTS_PER_STEP === 0) yield;
    const right = b.get(key);
    // Entries an edit did not touch are the very same objects (fleetHealthView's reuse).
    if (right === left) continue;
    if (right === undefined || right.reporting !== left.reporting || right.health.length !== left.health.length) return false;
    for (let i = 0; i < left.health.length; i++) if (!sameMemberHealth(left.health[i]!, right.health[i]!)) return false;
  }
  return true;
}

function sameMemberHealth(a: MemberHealth, b: MemberHealth): boolean {
  return (
    a.name === b.name && a.priority === b.priority && JSON.stringify(a.figures) === JSON.stringify(b.figures) &&
    a.failing?.reason === b.failing?.reason && a.failing?.message === b.failing?.message
  );
}

function degraded(health: MemberHealth[], reporting: Reporting, windowMs: number, generation: number | undefined): Condition {
  const failing = health.filter((h) => h.failing !== undefined);
  if (failing.length === 0 && reporting === 'starting') {
    return condition('Degraded', 'Unknown', 'AwaitingLoadReports', `the controller started less than ${windowText(windowMs)} ago and no Envoy has reported load yet`, generation);
  }
  if (failing.length === 0 && reporting === 'no') {
    return condition('Degraded', 'Unknown', 'NoLoadReports', `no Envoy has reported load in the last ${windowText(windowMs)}; Envoy reports over LRS when its bootstrap has cluster_manager.load_stats_config (switchyard bootstrap adds it)`, generation);
  }
  if (failing.length === 0) return condition('Degraded', false, 'Healthy', `no member has been failing in the last ${windowText(windowMs)}`, generation);
  // The most certain cause names the condition: a DNS answer, then failed attempts, then absent traffic.
  const order: DegradedReason[] = ['HostNotResolved', 'MemberFailing', 'MemberUnreachable', 'MemberLimited'];
  const reason = order.find((r) => failing.some((h) => h.failing!.reason === r))!;
  const more = ' Run kubectl describe backend for each member\'s requests and errors.';
  return condition('Degraded', true, reason, `${failing.map((h) => h.failing!.message).join('; ')}.${more}`, generation);
}

/**
 * Adds Degraded and each member's figures to Backend statuses. Backends that serve nothing
 * (no cluster) are left alone: their Accepted/ResolvedRefs conditions already say why.
 */
export function applyFleetHealth(statuses: ObjectStatus[], view: FleetHealthView, windowMs: number, published: (namespace: string, name: string) => ObjectStatus | undefined = () => undefined, memo?: FleetHealthMemo): ObjectStatus[] {
  return runSteps(applyFleetHealthSteps(statuses, view, windowMs, published, memo));
}

/** applyFleetHealth in steps (src/status/steps.ts): `published` is read as the steps go, the memo's last call is set at their end. */
export function* applyFleetHealthSteps(statuses: ObjectStatus[], view: FleetHealthView, windowMs: number, published: (namespace: string, name: string) => ObjectStatus | undefined = () => undefined, memo?: FleetHealthMemo): Steps<ObjectStatus[]> {
  // The same statuses under the same health, with no figures to read from what was published:
  // the last result, without a pass over the objects (an ACK that moved no Programmed).
  const last = memo === undefined ? undefined : lastCalls.get(memo);
  if (last !== undefined && last.view === view && last.windowMs === windowMs && !reportsFigures(view) && sameItems(last.given, statuses)) return last.out;
  const out = yield* healthApplied(statuses, view, windowMs, published, memo);
  if (memo !== undefined) lastCalls.set(memo, { given: statuses, view, windowMs, out });
  return out;
}

/** applyFleetHealth's last call per memo. */
const lastCalls = new WeakMap<FleetHealthMemo, { given: readonly ObjectStatus[]; view: FleetHealthView; windowMs: number; out: ObjectStatus[] }>();

/** Per view: some entry has figures from load reports (then a status reads the published one). */
const figuresIn = new WeakMap<FleetHealthView, boolean>();

function reportsFigures(view: FleetHealthView): boolean {
  let yes = figuresIn.get(view);
  if (yes === undefined) {
    yes = false;
    for (const entry of view.values()) {
      if (entry.reporting === 'yes') {
        yes = true;
        break;
      }
    }
    figuresIn.set(view, yes);
  }
  return yes;
}

function* healthApplied(statuses: ObjectStatus[], view: FleetHealthView, windowMs: number, published: (namespace: string, name: string) => ObjectStatus | undefined, memo: FleetHealthMemo | undefined): Steps<ObjectStatus[]> {
  const out: ObjectStatus[] = [];
  for (let i = 0; i < statuses.length; i++) {
    if (i % OBJECTS_PER_STEP === OBJECTS_PER_STEP - 1) yield;
    out.push(withHealth(statuses[i]!, view, windowMs, published, memo));
  }
  return out;
}

/**
 * applyFleetHealth for the statuses at `at` alone, written into `out` at the same indexes: what
 * an edit or an ACK replaced, and the Backends whose health entry moved. Returns the indexes
 * whose result is another object than `out` held.
 */
export function applyFleetHealthAt(statuses: readonly ObjectStatus[], at: Iterable<number>, out: ObjectStatus[], view: FleetHealthView, windowMs: number, published: (namespace: string, name: string) => ObjectStatus | undefined, memo: FleetHealthMemo): number[] {
  // `out` is changed in place from here: applyFleetHealth's last result must not be handed on again.
  lastCalls.delete(memo);
  const moved: number[] = [];
  for (const i of at) {
    const next = withHealth(statuses[i]!, view, windowMs, published, memo);
    if (out[i] === next) continue;
    out[i] = next;
    moved.push(i);
  }
  return moved;
}

function withHealth(s: ObjectStatus, view: FleetHealthView, windowMs: number, published: (namespace: string, name: string) => ObjectStatus | undefined, memo: FleetHealthMemo | undefined): ObjectStatus {
  if (s.kind !== 'Backend' || !('priorities' in s)) return s;
  // The same status and health entry give the same result: the object made last time is handed
  // on, so an edit elsewhere costs this Backend a lookup, not a rebuild. Figures also read the
  // published ones (steady): those are the same when they are what was read last time, or what
  // was made then (steady of its own output is that output).
  const last = memo?.get(s);
  const key = last?.key ?? `Backend/${s.namespace}/${s.name}`;
  const entry = view.get(key);
  if (!entry) return s;
  const b: BackendStatus = s;
  if (last !== undefined && last.entry === entry && entry.reporting !== 'yes') return last.out;
  const before = published(b.namespace, b.name);
  const publishedPriorities = before && before.kind === 'Backend' && 'priorities' in before ? before.priorities : undefined;
  if (last !== undefined && last.entry === entry && (publishedPriorities === last.read || publishedPriorities === last.out.priorities)) return last.out;
  const previous = publishedPriorities ?? [];
  const generation = b.conditions.find((c) => c.observedGeneration !== undefined)?.observedGeneration;
  const priorities = b.priorities.map((p) => ({
    ...p,
    members: p.members.map((m) => {
      const h = p.envoyPriority === undefined ? undefined : entry.health.find((x) => x.priority === p.envoyPriority && x.name === m.name);
      if (!h || entry.reporting !== 'yes') return m;
      const was = previous.find((x) => x.priority === p.priority)?.members.find((x) => x.name === m.name);
      return { ...m, requests: steady(was?.requests, h.figures.requests), errors: steady(was?.errors, h.figures.errors) };
    }),
  }));
  const out = { ...b, conditions: [...b.conditions.filter((c) => c.type !== 'Degraded'), degraded(entry.health, entry.reporting, windowMs, generation)], priorities };
  memo?.set(s, { key, entry, read: publishedPriorities, out });
  return out;
}

/** applyFleetHealth's last result per input status (weakly held: a replaced status lets go of its entry). */
export type FleetHealthMemo = WeakMap<ObjectStatus, { key: string; entry: FleetHealthEntry; read: BackendStatus['priorities'] | undefined; out: BackendStatus }>;
