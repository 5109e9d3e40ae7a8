import { condition, type Condition } from '../api/conditions.js';
import { TypeUrl } from '../envoy/resources.js';
import type { IR } from '../ir/model.js';
import type { ObjectStatus } from '../translate/status.js';

/** What the xDS server knows about one client for one type, reduced to what status needs. */
export interface ClientTypeFeedback {
  nodeId: string;
  typeUrl: string;
  state: 'pending' | 'acked' | 'rejected';
  sentVersion?: string;
  nackMessage?: string;
}

export interface XdsFeedback {
  clients: ClientTypeFeedback[];
  /** Current version per type in the cache. */
  versions: Record<string, string | undefined>;
}

/** Envoy resource names each object is served as, by type URL. */
export type ServedAs = Map<string, { typeUrl: string; names: string[] }[]>;

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
 * Programmed from xDS feedback: Rejected when an Envoy NACKed a type this object is served as
 * (and the error names one of its resources, or names none of the type's resources at all);
 * True once an Envoy ACKed the current version of each of those types; Pending otherwise.
 * `namesOfType`: every resource name served per type URL, by all objects.
 */
function programmed(served: { typeUrl: string; names: string[] }[], feedback: XdsFeedback, generation: number | undefined, namesOfType: ReadonlyMap<string, readonly string[]>): Condition {
  const nodes = new Set(feedback.clients.map((c) => c.nodeId));
  for (const s of served) {
    for (const c of feedback.clients) {
      if (c.typeUrl !== s.typeUrl || c.state !== 'rejected') continue;
      const message = c.nackMessage ?? '';
      // Envoy does not always name the resource it rejects (RE2 errors quote only the pattern,
      // which may itself contain "/"): an error that names none of the type's resources is
      // charged to every object served as that type.
      const namesAny = (namesOfType.get(s.typeUrl) ?? []).some((n) => message.includes(n));
      if (s.names.some((n) => message.includes(n)) || !namesAny) {
        return condition('Programmed', false, 'Rejected', `Envoy ${c.nodeId} rejected the configuration: ${shortNackReason(message)}`, generation);
      }
    }
  }
  if (nodes.size === 0) return condition('Programmed', false, 'Pending', 'no Envoy is connected yet', generation);
  const acked = [...nodes].filter((node) =>
    served.every((s) =>
      feedback.clients.some(
        (c) => c.nodeId === node && c.typeUrl === s.typeUrl && c.state === 'acked' &&
          // Wildcard types carry the cache's version; named subsets have their own.
          (s.typeUrl !== TypeUrl.cluster && s.typeUrl !== TypeUrl.listener ? true : c.sentVersion === feedback.versions[s.typeUrl]),
      ),
    ),
  );
  if (acked.length === 0) return condition('Programmed', false, 'Pending', 'waiting for a connected Envoy to acknowledge the configuration', generation);
  return condition('Programmed', true, 'Programmed', `acknowledged by ${acked.length} Envoy${acked.length > 1 ? 's' : ''}`, generation);
}

/** Replaces each served object's Pending Programmed condition with what the Envoys said. */
export function applyXdsFeedback(statuses: ObjectStatus[], servedAs: ServedAs, feedback: XdsFeedback): ObjectStatus[] {
  const namesOfType = new Map<string, string[]>();
  for (const served of servedAs.values()) {
    for (const s of served) {
      const names = namesOfType.get(s.typeUrl) ?? [];
      names.push(...s.names);
      namesOfType.set(s.typeUrl, names);
    }
  }
  return statuses.map((s) => {
    const served = servedAs.get(objectKey(s));
    if (!served || served.length === 0 || !('conditions' in s)) return s;
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

/** Which Envoy resources each object is served as, from the IR. */
export function servedAsFromIr(ir: IR): ServedAs {
  const out: ServedAs = new Map();
  for (const c of ir.clusters) {
    const served: { typeUrl: string; names: string[] }[] = [{ typeUrl: TypeUrl.cluster, names: [c.name] }];
    if (c.discovery === 'eds') served.push({ typeUrl: TypeUrl.endpoint, names: [c.name] });
    out.set(`${c.backend.kind ?? 'Backend'}/${c.backend.namespace}/${c.backend.name}`, served);
  }
  for (const l of ir.listeners) {
    const key = `Gateway/${l.gateway.namespace}/${l.gateway.name}`;
    const served = out.get(key) ?? [];
    served.push({ typeUrl: TypeUrl.listener, names: [l.name] }, { typeUrl: TypeUrl.route, names: [l.name] });
    out.set(key, served);
  }
  return out;
}
