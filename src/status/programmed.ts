import { condition, type Condition } from '../api/conditions.js';
import { TypeUrl } from '../envoy/resources.js';
import type { DataPlanes } from '../envoy/data-planes.js';
import type { IR } from '../ir/model.js';
import type { ObjectStatus } from '../translate/status.js';
import { SHARED_VIEW } from '../xds/cache.js';

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
  namesOfType: ReadonlyMap<string, ReadonlySet<string>>,
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
        const namesAny = [...(namesOfType.get(typeUrl) ?? [])].some((n) => nack.message.includes(n));
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
  if (!acked) return condition('Programmed', false, 'Pending', 'waiting for a connected Envoy to acknowledge the configuration', generation);
  return condition('Programmed', true, 'Programmed', 'acknowledged by the Envoys that serve it', generation);
}

/** Replaces each served object's Pending Programmed condition with what the Envoys that serve it said. */
export function applyXdsFeedback(statuses: ObjectStatus[], servedAs: ServedAs, feedback: XdsFeedback): ObjectStatus[] {
  const namesOfType = new Map<string, Set<string>>();
  for (const served of servedAs.values()) {
    for (const r of served.resources) {
      const names = namesOfType.get(r.typeUrl) ?? new Set<string>();
      for (const n of r.names) names.add(n);
      namesOfType.set(r.typeUrl, names);
    }
  }
  return statuses.map((s) => {
    const served = servedAs.get(objectKey(s));
    if (!served || served.resources.length === 0 || !('conditions' in s)) return s;
    const current = s.conditions.find((c) => c.type === 'Programmed');
    if (!current || current.reason !== 'Pending') return s;
    const next = programmed(served, feedback, current.observedGeneration, namesOfType);
    const replace = (conditions: Condition[]): Condition[] =>
      conditions.map((c) => (c.type === 'Programmed' && c.reason === 'Pending' ? { ...next, ...(c.observedGeneration !== undefined ? { observedGeneration: c.observedGeneration } : {}) } : c));
    if (s.kind === 'Gateway' && 'listeners' in s) {
      // A served listener is programmed exactly when its Gateway's Envoy listeners are.
      return { ...s, conditions: replace(s.conditions), listeners: s.listeners.map((l) => ({ ...l, conditions: replace(l.conditions) })) };
    }
    return { ...s, conditions: replace(s.conditions) } as ObjectStatus;
  });
}

/**
 * Which Envoy resources each object is served as, from the IR, and by which data planes
 * (`planes`): a Gateway by its own Envoys and by the shared ones unless they leave one of its
 * listeners out; a Backend by every Gateway whose routes reach it and by the shared ones.
 */
export function servedAsFromIr(ir: IR, planes: DataPlanes): ServedAs {
  const out: ServedAs = new Map();
  const gatewaysOfCluster = new Map<string, string[]>();
  for (const [gateway, names] of planes.gateways) {
    for (const cluster of names.clusters) {
      const gateways = gatewaysOfCluster.get(cluster);
      if (gateways === undefined) gatewaysOfCluster.set(cluster, [gateway]);
      else gateways.push(gateway);
    }
  }
  for (const c of ir.clusters) {
    const resources: ServedObject['resources'] = [{ typeUrl: TypeUrl.cluster, names: [c.name] }];
    if (c.discovery === 'eds') resources.push({ typeUrl: TypeUrl.endpoint, names: [c.name] });
    out.set(`${c.backend.kind ?? 'Backend'}/${c.backend.namespace}/${c.backend.name}`, { views: [SHARED_VIEW, ...(gatewaysOfCluster.get(c.name) ?? [])], resources });
  }
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
  return out;
}
