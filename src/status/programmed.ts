import { condition, type Condition } from '../api/conditions.js';
import { TypeUrl } from '../envoy/resources.js';
import type { DataPlanes } from '../envoy/data-planes.js';
import type { IR } from '../ir/model.js';
import { replacedAt, sameItems } from '../ir/delta.js';
import type { ObjectStatus } from '../translate/status.js';
import { SHARED_VIEW } from '../xds/cache.js';
import { OBJECTS_PER_STEP, runSteps, type Steps } from './steps.js';

/** What the xDS server knows about one client for one type: what a replica shares with the others (fleet-share.ts). */
export interface ClientTypeFeedback {
  nodeId: string;
  /** The Gateway ("namespace/name") the client serves, or SHARED_VIEW. */
  view: string;
  typeUrl: string;
  state: 'pending' | 'acked' | 'rejected';
  sentVersion?: string;
  nackMessage?: string;
}

/** What the fleet did with one view's current version of one type (src/xds/ack-ledger.ts). */
export interface FleetTypeFeedback {
  acked: boolean;
  /** The view's current version of the type, the one `acked` is about. */
  version?: string;
  /**
   * Versions of the type some Envoy of the view ACKed and runs (the current one or older): an
   * object served as the same resources stays programmed while the version that programmed it is
   * held, and the view's next version waits for its ACK.
   */
  held?: ReadonlySet<string>;
  rejected: readonly { nodeId: string; message: string }[];
}

export interface XdsFeedback {
  /** Per view (Gateway key or SHARED_VIEW) some Envoy was served from, per type URL. */
  views: ReadonlyMap<string, ReadonlyMap<string, FleetTypeFeedback>>;
}

/** Envoy resources an object is served as, and the views (data planes) that serve them. */
export interface ServedObject {
  /** Gateway keys, and SHARED_VIEW when the Envoys that serve every Gateway serve this object. */
  views: readonly string[];
  resources: { typeUrl: string; names: string[] }[];
}

/** Per object ("Kind/namespace/name"). */
export type ServedAs = Map<string, ServedObject>;

const MAX_REASON = 300;

/**
 * Envoy's NACK error_detail, short enough to read in a status. Schema failures carry a text dump
 * of the whole resource (Envoy cuts the detail near 4 KB) around "Proto constraint validation
 * failed (A | caused by B | caused by C)": the last link names the field and the rule broken.
 * Anything else: its first line.
 */
export function shortNackReason(message: string): string {
  const marker = 'Proto constraint validation failed (';
  const at = message.indexOf(marker);
  let s: string;
  if (at >= 0) {
    const rest = message.slice(at + marker.length);
    let depth = 1;
    let end = rest.length;
    for (let i = 0; i < rest.length; i++) {
      if (rest[i] === '(') depth++;
      if (rest[i] === ')' && --depth === 0) {
        end = i;
        break;
      }
    }
    const chain = rest.slice(0, end).split('\n')[0]?.split(' | caused by ') ?? [];
    s = `invalid configuration: ${(chain.at(-1) ?? '').trim()}`;
  } else {
    s = message.split('\n').find((l) => l.trim() !== '')?.trim() ?? '';
  }
  return s.length > MAX_REASON ? `${s.slice(0, MAX_REASON - 1)}…` : s;
}

function objectKey(s: { kind: string; namespace: string; name: string }): string {
  return `${s.kind}/${s.namespace}/${s.name}`;
}

/**
 * Programmed from what the Envoys that serve the object (its Gateway's own, or those that serve
 * every Gateway) did with the current version of each type it is served as: Rejected when one of
 * them NACKed such a type (and the error names one of its resources, or names none of the type's
 * resources at all); True once, in one view, each of those types was ACKed; Pending otherwise.
 * Nothing here depends on how many Envoys there are or on whether they are connected now: an
 * Envoy keeps serving what it ACKed, and a fleet that reconnects rewrites no status.
 * `namesOfType`: every resource name served per type URL, by all objects.
 */
function programmed(
  served: ServedObject,
  feedback: XdsFeedback,
  generation: number | undefined,
  namesOfType: () => ReadonlyMap<string, ReadonlySet<string>>,
): Condition {
  let acked = false;
  const typeUrls = [...new Set(served.resources.map((r) => r.typeUrl))];
  for (const key of served.views) {
    const view = feedback.views.get(key);
    if (view === undefined) continue;
    for (const typeUrl of typeUrls) {
      const ofType = served.resources.filter((r) => r.typeUrl === typeUrl);
      for (const nack of view.get(typeUrl)?.rejected ?? []) {
        // Envoy does not always name the resource it rejects (RE2 errors quote only the pattern,
        // which may itself contain "/"): an error that names none of the type's resources is
        // charged to every object served as that type.
        const namesAny = [...(namesOfType().get(typeUrl) ?? [])].some((n) => nack.message.includes(n));
        if (ofType.some((r) => r.names.some((n) => nack.message.includes(n))) || !namesAny) {
          return condition('Programmed', false, 'Rejected', `Envoy ${nack.nodeId} rejected the configuration: ${shortNackReason(nack.message)}`, generation);
        }
      }
    }
    if (typeUrls.every((typeUrl) => view.get(typeUrl)?.acked === true)) acked = true;
  }
  // The message of translation's own Pending: a status that moved with the fleet (no Envoy
  // connected, N of M ACKed) would be rewritten on every connect and ACK (issue 9 measured
  // 41,039 rewrites in one 1,000-Envoy run).
  return ackedCondition(acked, generation);
}

function ackedCondition(acked: boolean, generation: number | undefined): Condition {
  if (!acked) return condition('Programmed', false, 'Pending', 'waiting for a connected Envoy to acknowledge the configuration', generation);
  return condition('Programmed', true, 'Programmed', 'acknowledged by the Envoys that serve it', generation);
}

/** An object's Programmed, from its Envoys' verdicts: one answer per group, or one per object when some Envoy NACKed. */
function fedStatus(s: ObjectStatus, next: Condition): ObjectStatus {
  if (!('conditions' in s)) return s;
  const replace = (conditions: Condition[]): Condition[] =>
    conditions.map((c) => (c.type === 'Programmed' && c.reason === 'Pending' ? { ...next, ...(c.observedGeneration !== undefined ? { observedGeneration: c.observedGeneration } : {}) } : c));
  // A served listener is programmed exactly when its Gateway's Envoy listeners are.
  return s.kind === 'Gateway' && 'listeners' in s
    ? { ...s, conditions: replace(s.conditions), listeners: s.listeners.map((l) => ({ ...l, conditions: replace(l.conditions) })) }
    : ({ ...s, conditions: replace(s.conditions) } as ObjectStatus);
}

/** Objects served by the same views as the same types: their Programmed moves together. */
interface Group {
  readonly views: readonly string[];
  readonly typeUrls: readonly string[];
  /**
   * Members in the order they joined, which is the order of their `since` (passes only grow):
   * a move of `threshold` flips a contiguous run of them. Entries that left (another group,
   * another since) stay until compaction and are told by their own fields.
   */
  members: ObjectEntry[];
  sinces: number[];
  /** What the running pass computed (threshold()). */
  threshold: number;
  /** What the last committed pass left. */
  last: number;
  /** Members listed when compact() last counted them: it counts again once the list doubled. */
  counted: number;
}

/** One object, by key, across passes. */
interface ObjectEntry {
  key: string;
  index: number;
  status: ObjectStatus;
  served: ServedObject | undefined;
  /** The pass at which `served` became this entry: the versions current since then carry its resources. */
  since: number;
  group: Group | undefined;
  /** The Programmed condition given, or undefined when the object is handed on as it is. */
  programmed: Condition | undefined;
  out: ObjectStatus;
  /** The pass that last looked at this entry. */
  pass: number;
}

/**
 * Most versions remembered per view and type besides those held: an Envoy ACKs what it was sent
 * last, so a version that is held later was current lately; one forgotten counts as predating
 * every object (Pending, never a wrong True).
 */
const VERSIONS_KEPT = 64;

/**
 * Programmed for every served object, worked out per change: an edit looks at the objects it
 * replaced, an ACK at the objects whose verdict it moved, never at all of them.
 *
 * Without a NACK, an object is programmed when, in one of its views, each of its types is ACKed
 * at the view's current version, or held (some Envoy of the view runs it) at a version that is
 * at least as new as the object's resources: an Envoy runs what it ACKed, so an object served as
 * the same resources stays programmed while a newer version of its type waits for its ACK, and
 * goes Pending once the Envoys that ran such a version left the fleet. Versions are ordered by the
 * pass that last saw them current (`since` of an object: the pass that saw its served resources
 * change). Per group of objects (same views, same types) the newest pass whose versions every
 * member served since then has programmed is one number (`threshold`), so an ACK moves it once
 * and flips exactly the members whose `since` it passed. With a NACK anywhere every object is
 * looked at (whether the error names one of its resources) until no NACK stands.
 */
export class ProgrammedMemo {
  /** Objects whose Programmed was worked out by the last update. */
  examined = 0;
  /** Statuses as the last update gave them, by index of its input. */
  out: ObjectStatus[] = [];
  private pass = 0;
  private given: readonly ObjectStatus[] = [];
  private servedAs: ServedAs | undefined;
  private at: ObjectEntry[] = [];
  private readonly byKey = new Map<string, ObjectEntry>();
  private readonly groups = new Map<string, Group>();
  /** view \0 typeUrl → version → the pass that last saw it current. */
  private readonly versions = new Map<string, Map<string, number>>();
  private nacked = false;
  /** An update has begun and not committed. */
  private open = false;
  /** The last result of applyXdsFeedback, handed on again when a call changed nothing. */
  private returned: ObjectStatus[] | undefined;

  /** The index of an object ("Kind/namespace/name") in the last update's input, if it was there. */
  indexOf(key: string): number | undefined {
    return this.byKey.get(key)?.index;
  }

  /**
   * Folds `feedback` and the statuses at `changed` (indexes into `statuses`, which lines up with
   * the last call's input: same length, same object at each other index; undefined: look at
   * every object) into `out`, in place. Returns the indexes whose status in `out` was replaced,
   * or undefined when `out` is a new list (every index may have moved).
   */
  *updateSteps(statuses: readonly ObjectStatus[], changed: readonly number[] | undefined, servedAs: ServedAs, feedback: XdsFeedback): Steps<number[] | undefined> {
    const pass = ++this.pass;
    this.examined = 0;
    this.noteVersions(feedback, pass);
    const nacked = hasNack(feedback);
    // A pass dropped half way (a newer one superseded it) left entries ahead of what was committed.
    const interrupted = this.open;
    this.open = true;
    // A NACK's reach depends on every served name; after the last one clears, every object is looked at once more.
    const whole = interrupted || changed === undefined || nacked || this.nacked || statuses.length !== this.given.length || changed.some((i) => objectKey(statuses[i]!) !== this.at[i]?.key);
    this.nacked = nacked;
    const names = namesOfTypes(servedAs);
    const ctx: PassContext = { pass, feedback, nacked, names };
    for (const g of this.groups.values()) g.threshold = threshold(g, feedback, this.versions);
    if (whole) {
      const out: ObjectStatus[] = new Array<ObjectStatus>(statuses.length);
      const at: ObjectEntry[] = new Array<ObjectEntry>(statuses.length);
      const seen = new Set<string>();
      for (let i = 0; i < statuses.length; i++) {
        if (i % OBJECTS_PER_STEP === OBJECTS_PER_STEP - 1) yield;
        const s = statuses[i]!;
        const key = objectKey(s);
        seen.add(key);
        let entry = this.byKey.get(key);
        if (entry === undefined) {
          entry = { key, index: i, status: s, served: undefined, since: pass, group: undefined, programmed: undefined, out: s, pass: 0 };
          this.byKey.set(key, entry);
        }
        entry.index = i;
        this.examine(entry, s, servedAs.get(key), ctx);
        at[i] = entry;
        out[i] = entry.out;
      }
      for (const [key, entry] of this.byKey) {
        if (seen.has(key)) continue;
        entry.group = undefined;
        this.byKey.delete(key);
      }
      this.commit(statuses, servedAs, at, out);
      return undefined;
    }
    const moved: number[] = [];
    for (const i of changed) {
      const entry = this.at[i]!;
      this.examine(entry, statuses[i]!, servedAs.get(entry.key), ctx);
      if (entry.out === this.out[i]) continue;
      this.out[i] = entry.out;
      moved.push(i);
    }
    // What the ACKs since the last pass moved: per group, the members whose since the threshold passed.
    for (const g of this.groups.values()) {
      const was = g.last;
      if (was === g.threshold) continue;
      const low = Math.min(was, g.threshold);
      const high = Math.max(was, g.threshold);
      for (let k = firstAbove(g.sinces, low); k < g.sinces.length && g.sinces[k]! <= high; k++) {
        const entry = g.members[k]!;
        if (entry.group !== g || entry.since !== g.sinces[k] || entry.pass === pass) continue;
        this.examine(entry, entry.status, entry.served, ctx);
        if (entry.out === this.out[entry.index]) continue;
        this.out[entry.index] = entry.out;
        moved.push(entry.index);
      }
    }
    this.commit(statuses, servedAs, this.at, this.out);
    return moved;
  }

  /** applyXdsFeedback's memo: what the last call returned, or a copy of out when something moved. */
  handOn(moved: number[] | undefined): ObjectStatus[] {
    if (moved !== undefined && moved.length === 0 && this.returned !== undefined) return this.returned;
    this.returned = this.out.slice();
    return this.returned;
  }

  /** The servedAs map the last update read. */
  lastServedAs(): ServedAs | undefined {
    return this.servedAs;
  }

  /** The statuses the last update was given. */
  lastGiven(): readonly ObjectStatus[] {
    return this.given;
  }

  private commit(statuses: readonly ObjectStatus[], servedAs: ServedAs, at: ObjectEntry[], out: ObjectStatus[]): void {
    this.open = false;
    this.given = statuses;
    this.servedAs = servedAs;
    this.at = at;
    this.out = out;
    for (const g of this.groups.values()) {
      g.last = g.threshold;
      compact(g);
    }
  }

  private noteVersions(feedback: XdsFeedback, pass: number): void {
    for (const [view, types] of feedback.views) {
      for (const [typeUrl, f] of types) {
        if (f.version === undefined) continue;
        const k = `${view}\u0000${typeUrl}`;
        let known = this.versions.get(k);
        if (known === undefined) this.versions.set(k, (known = new Map()));
        // Re-inserted: the newest is last, and the oldest goes first when there are too many.
        known.delete(f.version);
        known.set(f.version, pass);
        // The oldest that no Envoy holds goes: a held version is what keeps unchanged objects programmed.
        if (known.size > VERSIONS_KEPT) {
          for (const v of known.keys()) {
            if (f.held?.has(v) === true) continue;
            known.delete(v);
            break;
          }
        }
      }
    }
  }

  private groupOf(served: ServedObject, ctx: PassContext): Group {
    const typeUrls = [...new Set(served.resources.map((r) => r.typeUrl))];
    const id = `${served.views.join('\u0000')}\u0001${typeUrls.join('\u0000')}`;
    let g = this.groups.get(id);
    if (g === undefined) {
      g = { views: served.views, typeUrls, members: [], sinces: [], threshold: 0, last: 0, counted: 0 };
      g.threshold = threshold(g, ctx.feedback, this.versions);
      g.last = g.threshold;
      this.groups.set(id, g);
    }
    return g;
  }

  private examine(entry: ObjectEntry, s: ObjectStatus, served: ServedObject | undefined, ctx: PassContext): void {
    this.examined++;
    entry.pass = ctx.pass;
    const statusMoved = entry.status !== s;
    entry.status = s;
    if (served !== entry.served) {
      entry.served = served;
      entry.since = ctx.pass;
      const group = served === undefined || served.resources.length === 0 ? undefined : this.groupOf(served, ctx);
      entry.group = group;
      if (group !== undefined) {
        group.members.push(entry);
        group.sinces.push(entry.since);
      }
    }
    const current = entry.group !== undefined && 'conditions' in s ? s.conditions.find((c) => c.type === 'Programmed') : undefined;
    if (entry.group === undefined || served === undefined || current?.reason !== 'Pending') {
      entry.programmed = undefined;
      entry.out = s;
      return;
    }
    const next = ctx.nacked
      ? programmed(served, ctx.feedback, current.observedGeneration, ctx.names)
      : ackedCondition(entry.group.threshold >= entry.since, current.observedGeneration);
    if (!statusMoved && entry.programmed !== undefined && sameCondition(entry.programmed, next)) return;
    entry.programmed = next;
    entry.out = fedStatus(s, next);
  }
}

interface PassContext {
  pass: number;
  feedback: XdsFeedback;
  nacked: boolean;
  names: () => ReadonlyMap<string, ReadonlySet<string>>;
}

function hasNack(feedback: XdsFeedback): boolean {
  for (const types of feedback.views.values()) for (const f of types.values()) if (f.rejected.length > 0) return true;
  return false;
}

/** Every resource name served per type URL, by all objects: worked out only when a NACK asks. */
function namesOfTypes(servedAs: ServedAs): () => ReadonlyMap<string, ReadonlySet<string>> {
  let namesOfType: Map<string, Set<string>> | undefined;
  return () => {
    if (namesOfType !== undefined) return namesOfType;
    namesOfType = new Map();
    for (const served of servedAs.values()) {
      for (const r of served.resources) {
        const ofType = namesOfType.get(r.typeUrl) ?? new Set<string>();
        for (const n of r.names) ofType.add(n);
        namesOfType.set(r.typeUrl, ofType);
      }
    }
    return namesOfType;
  };
}

/**
 * The newest pass whose resources a group's members are programmed with: in the best of its
 * views, the oldest over its types of "ACKed at the current version" (every pass: Infinity) or
 * "held at a version last current at pass p" (p); -Infinity where a type has neither.
 */
function threshold(g: Group, feedback: XdsFeedback, versions: ReadonlyMap<string, ReadonlyMap<string, number>>): number {
  let best = -Infinity;
  for (const view of g.views) {
    const types = feedback.views.get(view);
    if (types === undefined) continue;
    let worst = Infinity;
    for (const typeUrl of g.typeUrls) {
      const f = types.get(typeUrl);
      if (f?.acked === true) continue;
      let held = -Infinity;
      const known = versions.get(`${view}\u0000${typeUrl}`);
      for (const version of f?.held ?? []) held = Math.max(held, known?.get(version) ?? -Infinity);
      worst = Math.min(worst, held);
      if (worst === -Infinity) break;
    }
    best = Math.max(best, worst);
  }
  return best;
}

/** The first index whose value is above `value` in an ascending list. */
function firstAbove(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Drops members that left once they are most of the list, keeping the order. Counted once the
 * list doubled since the last count, so a pass that adds a few members costs a few.
 */
function compact(g: Group): void {
  if (g.members.length < Math.max(64, 2 * g.counted)) return;
  let live = 0;
  for (let k = 0; k < g.members.length; k++) if (g.members[k]!.group === g && g.members[k]!.since === g.sinces[k]) live++;
  g.counted = g.members.length;
  if (live * 2 > g.members.length) return;
  const members: ObjectEntry[] = [];
  const sinces: number[] = [];
  for (let k = 0; k < g.members.length; k++) {
    const m = g.members[k]!;
    if (m.group !== g || m.since !== g.sinces[k]) continue;
    members.push(m);
    sinces.push(m.since);
  }
  g.members = members;
  g.sinces = sinces;
  g.counted = members.length;
}

function sameCondition(a: Condition, b: Condition): boolean {
  return a.status === b.status && a.reason === b.reason && a.message === b.message && a.observedGeneration === b.observedGeneration;
}

/**
 * Replaces each served object's Pending Programmed condition with what the Envoys that serve it
 * said. With `memo`, the objects whose status, served resources and verdict are those of the last
 * call are handed on as the same objects, so the status book sees only those whose Programmed moved.
 */
export function applyXdsFeedback(statuses: ObjectStatus[], servedAs: ServedAs, feedback: XdsFeedback, memo?: ProgrammedMemo): ObjectStatus[] {
  return runSteps(applyXdsFeedbackSteps(statuses, servedAs, feedback, memo));
}

/** applyXdsFeedback in steps (src/status/steps.ts). */
export function* applyXdsFeedbackSteps(statuses: ObjectStatus[], servedAs: ServedAs, feedback: XdsFeedback, memo = new ProgrammedMemo()): Steps<ObjectStatus[]> {
  // The same map: only replaced statuses are looked at; another one may serve any object otherwise.
  const changed = memo.lastServedAs() === servedAs ? replacedAt(memo.lastGiven(), statuses) : undefined;
  const moved = yield* memo.updateSteps(statuses, changed, servedAs, feedback);
  return memo.handOn(moved);
}

/** What servedAsFromIr was last given and made: an edit that keeps the data planes redoes only the clusters it replaced. */
export interface ServedAsMemo {
  ir: IR;
  planes: DataPlanes;
  servedAs: ServedAs;
}

function clusterObjectKey(c: IR['clusters'][number]): string {
  return `${c.backend.kind ?? 'Backend'}/${c.backend.namespace}/${c.backend.name}`;
}

function clusterServedAs(c: IR['clusters'][number], gateways: readonly string[]): [string, ServedObject] {
  const resources: ServedObject['resources'] = [{ typeUrl: TypeUrl.cluster, names: [c.name] }];
  if (c.discovery === 'eds') resources.push({ typeUrl: TypeUrl.endpoint, names: [c.name] });
  return [clusterObjectKey(c), { views: [SHARED_VIEW, ...gateways], resources }];
}

function addListeners(out: ServedAs, ir: IR, planes: DataPlanes): void {
  const leftOut = new Set(planes.shared.excluded.listeners ?? []);
  for (const l of ir.listeners) {
    const gateway = `${l.gateway.namespace}/${l.gateway.name}`;
    const key = `Gateway/${gateway}`;
    const served = out.get(key) ?? { views: [gateway, SHARED_VIEW], resources: [] };
    if (leftOut.has(l.name)) served.views = [gateway];
    served.resources.push({ typeUrl: TypeUrl.listener, names: [l.name] }, { typeUrl: TypeUrl.route, names: [l.name] });
    const certificates = l.tls.flatMap((t) => t.certificates);
    if (certificates.length > 0) served.resources.push({ typeUrl: TypeUrl.secret, names: certificates });
    out.set(key, served);
  }
}

/**
 * Which Envoy resources each object is served as, from the IR, and by which data planes
 * (`planes`): a Gateway by its own Envoys and by the shared ones unless they leave one of its
 * listeners out; a Backend by every Gateway whose routes reach it and by the shared ones.
 * With `previous` and the same data planes, a cluster object the IR kept keeps its entry (the
 * same object, so applyXdsFeedback can hand its status on) and only replaced clusters are done again.
 */
export function servedAsFromIr(ir: IR, planes: DataPlanes, previous?: ServedAsMemo): ServedAs {
  return runSteps(servedAsFromIrSteps(ir, planes, previous));
}

/** servedAsFromIr in steps (src/status/steps.ts). */
export function* servedAsFromIrSteps(ir: IR, planes: DataPlanes, previous?: ServedAsMemo): Steps<ServedAs> {
  const copy = previous === undefined ? undefined : { ...previous, servedAs: new Map(previous.servedAs) };
  return (yield* servedAsUpdateSteps(ir, planes, copy)).servedAs;
}

/**
 * servedAsFromIr that changes `previous.servedAs` in place when it can follow the edit (the same
 * data planes, clusters replaced in place), and says which objects it replaced: an edit costs the
 * clusters it replaced, not a copy of every entry. `changed` undefined: a new map, anything moved.
 */
export function* servedAsUpdateSteps(ir: IR, planes: DataPlanes, previous?: ServedAsMemo): Steps<{ servedAs: ServedAs; changed: Set<string> | undefined }> {
  const at = previous !== undefined && previous.planes === planes ? replacedAt(previous.ir.clusters, ir.clusters) : undefined;
  const gatewayKeys = new Set(previous?.ir.listeners.map((l) => `Gateway/${l.gateway.namespace}/${l.gateway.name}`));
  // Two clusters of one object (the last one counts) cannot be followed entry by entry.
  if (previous !== undefined && at !== undefined && previous.servedAs.size === previous.ir.clusters.length + gatewayKeys.size) {
    const out = previous.servedAs;
    const changed = new Set<string>(gatewayKeys);
    // Gateways are few: their entries are made again (listeners need not line up).
    for (const key of gatewayKeys) out.delete(key);
    for (const i of at) {
      const key = clusterObjectKey(previous.ir.clusters[i]!);
      out.delete(key);
      changed.add(key);
    }
    // No pause here: a pass dropped half way would leave the map half changed (replacedAt caps `at` at a few hundred).
    for (const i of at) {
      const c = ir.clusters[i]!;
      const gateways = [...planes.gateways].filter(([, names]) => names.clusters.includes(c.name)).map(([gateway]) => gateway);
      const [key, served] = clusterServedAs(c, gateways);
      out.set(key, served);
      changed.add(key);
    }
    addListeners(out, ir, planes);
    for (const l of ir.listeners) changed.add(`Gateway/${l.gateway.namespace}/${l.gateway.name}`);
    return { servedAs: out, changed };
  }
  return { servedAs: yield* servedAsBuilt(ir, planes), changed: undefined };
}

function* servedAsBuilt(ir: IR, planes: DataPlanes): Steps<ServedAs> {
  const out: ServedAs = new Map();
  const gatewaysOfCluster = new Map<string, string[]>();
  let n = 0;
  for (const [gateway, names] of planes.gateways) {
    for (const cluster of names.clusters) {
      if (++n % OBJECTS_PER_STEP === 0) yield;
      const gateways = gatewaysOfCluster.get(cluster);
      if (gateways === undefined) gatewaysOfCluster.set(cluster, [gateway]);
      else gateways.push(gateway);
    }
  }
  for (const c of ir.clusters) {
    if (++n % OBJECTS_PER_STEP === 0) yield;
    const [key, served] = clusterServedAs(c, gatewaysOfCluster.get(c.name) ?? []);
    out.set(key, served);
  }
  addListeners(out, ir, planes);
  return out;
}
