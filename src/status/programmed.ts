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

/** Per served object (kept across edits by servedAsFromIr): its type URLs, and views plus types in one string. */
const shapes = new WeakMap<ServedObject, { typeUrls: string[]; shape: string }>();

function shapeOf(served: ServedObject): { typeUrls: string[]; shape: string } {
  let known = shapes.get(served);
  if (known === undefined) {
    const typeUrls = [...new Set(served.resources.map((r) => r.typeUrl))];
    known = { typeUrls, shape: `${served.views.join('\u0000')}\u0001${typeUrls.join('\u0000')}` };
    shapes.set(served, known);
  }
  return known;
}

/**
 * programmed() when no Envoy NACKed anything: then only whether one of the object's views ACKed
 * all its types counts, and objects of one shape (views and types) share the answer, worked out
 * once per call in `answers`.
 */
function programmedWithoutNacks(served: ServedObject, feedback: XdsFeedback, generation: number | undefined, answers: Map<string, boolean>): Condition {
  const { typeUrls, shape } = shapeOf(served);
  let acked = answers.get(shape);
  if (acked === undefined) {
    acked = served.views.some((key) => {
      const view = feedback.views.get(key);
      return view !== undefined && typeUrls.every((typeUrl) => view.get(typeUrl)?.acked === true);
    });
    answers.set(shape, acked);
  }
  return ackedCondition(acked, generation);
}

/** Where a True Programmed came from: per type, the view and the version its Envoys ACKed. */
type HeldAt = readonly { view: string; typeUrl: string; version: string }[];

/** The first of the object's views whose Envoys ACKed each of its types, with those versions. */
function heldAtOf(served: ServedObject, feedback: XdsFeedback): HeldAt | undefined {
  const { typeUrls } = shapeOf(served);
  for (const key of served.views) {
    const view = feedback.views.get(key);
    if (view === undefined) continue;
    const at: { view: string; typeUrl: string; version: string }[] = [];
    for (const typeUrl of typeUrls) {
      const f = view.get(typeUrl);
      if (f?.acked !== true || f.version === undefined) break;
      at.push({ view: key, typeUrl, version: f.version });
    }
    if (at.length === typeUrls.length) return at;
  }
  return undefined;
}

/**
 * Some Envoy still runs each version that made the object programmed. Not so once a replica's
 * share expired (its Envoys no longer count), nor once the versions the remaining Envoys run
 * predate the object's resources.
 */
function stillHeld(at: HeldAt | undefined, feedback: XdsFeedback): boolean {
  return at !== undefined && at.every((h) => feedback.views.get(h.view)?.get(h.typeUrl)?.held?.has(h.version) === true);
}

/** applyXdsFeedback's last result per input status (weakly held, so replaced statuses are let go). */
interface ProgrammedEntry {
  key: string;
  served: ServedObject;
  feedback: string | undefined;
  programmed: Condition;
  /** For a True `programmed`: what holds it (see stillHeld). */
  heldAt: HeldAt | undefined;
  out: ObjectStatus;
}

/**
 * applyXdsFeedback's last results: by position in the last list (translation keeps an unchanged
 * object's status at its place, so most are found without hashing), else by status object
 * (weakly held, so replaced statuses are let go).
 */
export class ProgrammedMemo {
  given: readonly ObjectStatus[] = [];
  atPosition: (ProgrammedEntry | undefined)[] = [];
  readonly byStatus = new WeakMap<ObjectStatus, ProgrammedEntry>();
  /** The last call's verdicts (fleetKeys): an equal string is replaced by this one, so each object compares pointers. */
  verdicts: string | undefined;
  /** The last call's servedAs, whole feedback (fleetKeys' state) and result. */
  servedAs: ServedAs | undefined;
  fleet: string | undefined;
  out: ObjectStatus[] = [];
}

function sameCondition(a: Condition, b: Condition): boolean {
  return a.status === b.status && a.reason === b.reason && a.message === b.message && a.observedGeneration === b.observedGeneration;
}

/**
 * The fleet in two strings, in one pass, both undefined when some Envoy NACKed (then whether a NACK
 * concerns an object depends on every served name, and each is looked at):
 * - `verdicts`, the ACK flags per view and type: an object served as it was, under the same
 *   verdicts, keeps its Programmed without a look at its views;
 * - `state`, everything applyXdsFeedback reads of the fleet, versions and held versions included:
 *   the same state, statuses and servedAs give the last result whole.
 */
function fleetKeys(feedback: XdsFeedback): { verdicts: string | undefined; state: string | undefined } {
  const verdicts: string[] = [];
  const state: string[] = [];
  for (const [view, types] of feedback.views) {
    for (const [typeUrl, f] of types) {
      if (f.rejected.length > 0) return { verdicts: undefined, state: undefined };
      const verdict = `${view}\u0000${typeUrl}\u0000${f.acked ? 1 : 0}`;
      verdicts.push(verdict);
      state.push(`${verdict}\u0000${f.version ?? ''}\u0000${[...(f.held ?? [])].join('\u0000')}`);
    }
  }
  return { verdicts: verdicts.join('\u0001'), state: state.join('\u0001') };
}

/**
 * Replaces each served object's Pending Programmed condition with what the Envoys that serve it
 * said. With `memo`, an object whose status and verdict are those of the last call is handed on
 * as the same object, so the status book sees only the objects whose Programmed moved.
 */
export function applyXdsFeedback(statuses: ObjectStatus[], servedAs: ServedAs, feedback: XdsFeedback, memo?: ProgrammedMemo): ObjectStatus[] {
  return runSteps(applyXdsFeedbackSteps(statuses, servedAs, feedback, memo));
}

/** applyXdsFeedback in steps (src/status/steps.ts): the memo's last call is set at their end. */
export function* applyXdsFeedbackSteps(statuses: ObjectStatus[], servedAs: ServedAs, feedback: XdsFeedback, memo?: ProgrammedMemo): Steps<ObjectStatus[]> {
  // Only a NACK reads every served name; without one (the usual case) nothing is collected.
  let namesOfType: Map<string, Set<string>> | undefined;
  const names = (): ReadonlyMap<string, ReadonlySet<string>> => {
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
  // An ACK that leaves the fleet as it was (same versions ACKed, same versions held) over the same
  // statuses gives the last result: no pass over the objects.
  const keys = fleetKeys(feedback);
  const fleet = memo === undefined ? undefined : keys.state;
  if (memo !== undefined && fleet !== undefined && fleet === memo.fleet && memo.servedAs === servedAs && sameItems(memo.given, statuses)) return memo.out;
  let verdicts = keys.verdicts;
  if (memo !== undefined && verdicts !== undefined && verdicts === memo.verdicts) verdicts = memo.verdicts;
  const answers = new Map<string, boolean>();
  const lined = memo !== undefined && memo.given.length === statuses.length;
  // The same map as last time: an entry's served object is what the map holds for its key.
  const sameServed = memo !== undefined && memo.servedAs === servedAs;
  const atPosition: (ProgrammedEntry | undefined)[] = memo === undefined ? [] : new Array<ProgrammedEntry | undefined>(statuses.length);
  const out: ObjectStatus[] = [];
  for (let i = 0; i < statuses.length; i++) {
    if (i % OBJECTS_PER_STEP === OBJECTS_PER_STEP - 1) yield;
    out.push(fed(statuses[i]!, i));
  }
  if (memo !== undefined) {
    memo.given = statuses;
    memo.atPosition = atPosition;
    memo.verdicts = verdicts;
    memo.servedAs = servedAs;
    memo.fleet = fleet;
    memo.out = out;
  }
  return out;

  function fed(s: ObjectStatus, i: number): ObjectStatus {
    const last = memo === undefined ? undefined : lined && memo.given[i] === s ? memo.atPosition[i] : memo.byStatus.get(s);
    atPosition[i] = last;
    const key = last?.key ?? objectKey(s);
    const served = sameServed && last !== undefined ? last.served : servedAs.get(key);
    // Without a NACK anywhere, an object served as the very same resources (servedAsFromIr keeps
    // the entry of a cluster the IR kept, so its Envoy resource is byte for byte what it was)
    // keeps a True Programmed while the view's new version waits for its ACK: the Envoys run the
    // version they ACKed, which holds it. Only what an edit touched goes Pending, so an edit among
    // 10,000 Backends rewrites a few statuses, not all of them twice. Only while an Envoy still
    // runs the version that programmed it, though: not after the Envoys that ACKed it left the
    // fleet (a replica's share expired), leaving only Envoys that run older versions.
    if (last !== undefined && verdicts !== undefined && last.served === served && (last.feedback === verdicts || (last.programmed.status === 'True' && stillHeld(last.heldAt, feedback)))) return last.out;
    if (!served || served.resources.length === 0 || !('conditions' in s)) return s;
    const current = s.conditions.find((c) => c.type === 'Programmed');
    if (!current || current.reason !== 'Pending') return s;
    const next = verdicts === undefined ? programmed(served, feedback, current.observedGeneration, names) : programmedWithoutNacks(served, feedback, current.observedGeneration, answers);
    const heldAt = next.status === 'True' ? heldAtOf(served, feedback) : undefined;
    if (last !== undefined && sameCondition(last.programmed, next)) {
      // Updated in place: a fleet change that moves no verdict costs no allocation per object.
      last.served = served;
      last.feedback = verdicts;
      last.heldAt = heldAt;
      return last.out;
    }
    const replace = (conditions: Condition[]): Condition[] =>
      conditions.map((c) => (c.type === 'Programmed' && c.reason === 'Pending' ? { ...next, ...(c.observedGeneration !== undefined ? { observedGeneration: c.observedGeneration } : {}) } : c));
    // A served listener is programmed exactly when its Gateway's Envoy listeners are.
    const out = s.kind === 'Gateway' && 'listeners' in s
      ? { ...s, conditions: replace(s.conditions), listeners: s.listeners.map((l) => ({ ...l, conditions: replace(l.conditions) })) }
      : ({ ...s, conditions: replace(s.conditions) } as ObjectStatus);
    const entry = { key, served, feedback: verdicts, programmed: next, heldAt, out };
    memo?.byStatus.set(s, entry);
    atPosition[i] = entry;
    return out;
  }
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
  const at = previous !== undefined && previous.planes === planes ? replacedAt(previous.ir.clusters, ir.clusters) : undefined;
  const gatewayKeys = new Set(previous?.ir.listeners.map((l) => `Gateway/${l.gateway.namespace}/${l.gateway.name}`));
  // Two clusters of one object (the last one counts) cannot be followed entry by entry.
  if (previous !== undefined && at !== undefined && previous.servedAs.size === previous.ir.clusters.length + gatewayKeys.size) {
    const out: ServedAs = new Map(previous.servedAs);
    // Gateways are few: their entries are made again (listeners need not line up).
    for (const key of gatewayKeys) out.delete(key);
    for (const i of at) out.delete(clusterObjectKey(previous.ir.clusters[i]!));
    let n = 0;
    for (const i of at) {
      if (++n % OBJECTS_PER_STEP === 0) yield;
      const c = ir.clusters[i]!;
      const gateways = [...planes.gateways].filter(([, names]) => names.clusters.includes(c.name)).map(([gateway]) => gateway);
      const [key, served] = clusterServedAs(c, gateways);
      out.set(key, served);
    }
    addListeners(out, ir, planes);
    return out;
  }
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
