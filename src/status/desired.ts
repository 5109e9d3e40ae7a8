import type { Condition } from '../api/conditions.js';
import { GATEWAY_GROUP } from '../api/gateway.js';
import type { ParentReference } from '../api/httproute.js';
import type { BackendStatus, GatewayClassStatus, GatewayStatus, HTTPRouteStatus, ObjectStatus, RouteParentStatus } from '../translate/status.js';
import type { KubeObject } from './kube-api.js';

/**
 * Builds the `.status` an object should have from what translation says and what the object has
 * now: conditions keep the object's own lastTransitionTime while their status is unchanged (so
 * a restarted controller does not move them), HTTPRoute entries of other controllers are left
 * exactly as they are, and fields this controller does not own (Gateway addresses) are carried
 * over. Pure.
 */

/** What to write for an object that no longer has a translated status: only HTTPRoutes need it, to drop our parent entries. */
export interface OurParentsGone {
  kind: 'HTTPRoute';
  namespace: string;
  name: string;
  gone: true;
}

export type StatusIntent = ObjectStatus | OurParentsGone;

export interface DesiredContext {
  controllerName: string;
  /** RFC 3339 time for conditions that transition without a stamped time. */
  now: string;
}

type Json = Record<string, unknown>;

/** Gateway API and metav1 print times to the second; writing the same keeps reads and writes comparable. */
export function toRfc3339Seconds(time: string): string {
  const ms = Date.parse(time);
  if (Number.isNaN(ms)) return time;
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

// Gateway API and Backend CRDs cap condition messages at 32768 characters.
const MAX_MESSAGE = 32768;

function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function records(v: unknown): Json[] {
  return Array.isArray(v) ? v.filter(isRecord) : [];
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/**
 * Conditions as written: observedGeneration from translation (the generation it read), else the
 * object's; lastTransitionTime from the object's condition of the same type while its status did
 * not change, else the time translation stamped, else now.
 */
export function writtenConditions(next: Condition[], current: unknown, generation: number | undefined, now: string): Json[] {
  const before = records(current);
  return next.map((c) => {
    const prev = before.find((p) => p.type === c.type);
    const prevTime = prev && prev.status === c.status ? str(prev.lastTransitionTime) : undefined;
    const observedGeneration = c.observedGeneration ?? generation;
    if (prev && isPendingOverProgrammed(c, prev, observedGeneration)) return prev;
    // A restarted controller or a new leader has no load reports yet: what was written stands.
    if (prev && c.type === 'Degraded' && c.reason === 'AwaitingLoadReports') return prev;
    const message = c.message.length > MAX_MESSAGE ? `${c.message.slice(0, MAX_MESSAGE - 3)}...` : c.message;
    return {
      type: c.type,
      status: c.status,
      reason: c.reason,
      message,
      ...(observedGeneration !== undefined ? { observedGeneration } : {}),
      lastTransitionTime: prevTime ?? toRfc3339Seconds(c.lastTransitionTime ?? now),
    };
  });
}

/**
 * Programmed=False/Pending says only that no connected Envoy has ACKed yet: right after a
 * restart (Envoys reconnect with a back-off of up to 30 s), on a replica that has just become
 * leader, while an ACK is in flight. It is no verdict, so it does not replace Programmed=True
 * of the same generation: the configuration an Envoy ACKed is still the one served. A NACK
 * (Rejected), no usable member, or a new generation are written as usual.
 */
function isPendingOverProgrammed(c: Condition, prev: Json, observedGeneration: number | undefined): boolean {
  return (
    c.type === 'Programmed' &&
    c.status === 'False' &&
    c.reason === 'Pending' &&
    prev.status === 'True' &&
    observedGeneration !== undefined &&
    prev.observedGeneration === observedGeneration
  );
}

function generationOf(s: ObjectStatus, object: KubeObject): number | undefined {
  const fromTranslation = 'conditions' in s ? s.conditions.find((c) => c.observedGeneration !== undefined)?.observedGeneration : undefined;
  return fromTranslation ?? object.metadata.generation;
}

function isBackendStatus(s: StatusIntent): s is BackendStatus {
  return s.kind === 'Backend' && 'priorities' in s;
}

function isGatewayStatus(s: StatusIntent): s is GatewayStatus {
  return s.kind === 'Gateway' && 'listeners' in s;
}

function isGatewayClassStatus(s: StatusIntent): s is GatewayClassStatus {
  return s.kind === 'GatewayClass' && 'supportedFeatures' in s;
}

function isRouteStatus(s: StatusIntent): s is HTTPRouteStatus {
  return s.kind === 'HTTPRoute' && 'parents' in s;
}

function backendBody(s: BackendStatus, object: KubeObject, ctx: DesiredContext): Json {
  const generation = generationOf(s, object);
  return {
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    conditions: writtenConditions(s.conditions, object.status?.conditions, object.metadata.generation, ctx.now),
    priorities: s.priorities.map((p) => ({
      priority: p.priority,
      ...(p.envoyPriority !== undefined ? { envoyPriority: p.envoyPriority } : {}),
      members: p.members.map((m) => ({
        name: m.name,
        provider: m.provider,
        usable: m.usable,
        ...(m.reason !== undefined ? { reason: m.reason } : {}),
        ...(m.message !== undefined ? { message: m.message } : {}),
        ...(m.requests !== undefined ? { requests: m.requests } : {}),
        ...(m.errors !== undefined ? { errors: m.errors } : {}),
      })),
    })),
    usableMembers: s.usableMembers,
    totalMembers: s.totalMembers,
    servedPriorities: s.servedPriorities,
  };
}

function gatewayBody(s: GatewayStatus, object: KubeObject, ctx: DesiredContext): Json {
  const before = records(object.status?.listeners);
  const generation = object.metadata.generation;
  const { addresses: kept, ...current } = object.status ?? {};
  // Addresses are carried over unless the infrastructure that runs this Gateway says otherwise.
  const addresses = s.addresses === undefined ? kept : s.addresses.length > 0 ? s.addresses.map((a) => ({ type: a.type, value: a.value })) : undefined;
  return {
    ...current,
    ...(addresses !== undefined ? { addresses } : {}),
    conditions: writtenConditions(s.conditions, object.status?.conditions, generation, ctx.now),
    listeners: s.listeners.map((l) => ({
      name: l.name,
      supportedKinds: l.supportedKinds.map((k) => ({ group: k.group, kind: k.kind })),
      attachedRoutes: l.attachedRoutes,
      conditions: writtenConditions(l.conditions, before.find((b) => b.name === l.name)?.conditions, generation, ctx.now),
    })),
  };
}

/** A parentRef with the defaults the Gateway API CRD fills in, so what we write reads back the same. */
export function withParentDefaults(ref: ParentReference): Json {
  return {
    group: ref.group ?? GATEWAY_GROUP,
    kind: ref.kind ?? 'Gateway',
    ...(ref.namespace !== undefined ? { namespace: ref.namespace } : {}),
    name: ref.name,
    ...(ref.sectionName !== undefined ? { sectionName: ref.sectionName } : {}),
    ...(ref.port !== undefined ? { port: ref.port } : {}),
  };
}

/** Identity of a parentRef: the same parent whether or not defaults were spelled out. */
export function parentIdentity(ref: unknown, routeNamespace: string): string {
  const r = isRecord(ref) ? ref : {};
  return [
    str(r.group) ?? GATEWAY_GROUP,
    str(r.kind) ?? 'Gateway',
    str(r.namespace) ?? routeNamespace,
    str(r.name) ?? '',
    str(r.sectionName) ?? '',
    typeof r.port === 'number' ? String(r.port) : '',
  ].join('|');
}

/**
 * status.parents: other controllers' entries stay where they are, untouched; ours are replaced in
 * place, dropped when translation no longer has them, and new ones are appended.
 */
function routeParents(ours: RouteParentStatus[] | 'keep-with-conditions', invalid: Condition[], object: KubeObject, ctx: DesiredContext): Json[] {
  const ns = object.metadata.namespace ?? '';
  const generation = object.metadata.generation;
  const current = records(object.status?.parents);
  const isOurs = (p: Json): boolean => p.controllerName === ctx.controllerName;
  if (ours === 'keep-with-conditions') {
    // An invalid route: its parents cannot be computed, so our existing entries say why.
    return current.map((p) => (isOurs(p) ? { ...p, conditions: writtenConditions(invalid, p.conditions, generation, ctx.now) } : p));
  }
  const wanted = new Map(ours.map((p) => [parentIdentity(p.parentRef, ns), p]));
  const entry = (p: RouteParentStatus, prev: Json | undefined): Json => ({
    parentRef: withParentDefaults(p.parentRef),
    controllerName: p.controllerName,
    conditions: writtenConditions(p.conditions, prev?.conditions, generation, ctx.now),
  });
  const out: Json[] = [];
  const placed = new Set<string>();
  for (const p of current) {
    if (!isOurs(p)) {
      out.push(p);
      continue;
    }
    const id = parentIdentity(p.parentRef, ns);
    const next = wanted.get(id);
    if (next && !placed.has(id)) {
      out.push(entry(next, p));
      placed.add(id);
    }
  }
  for (const [id, p] of wanted) if (!placed.has(id)) out.push(entry(p, undefined));
  return out;
}

/** The full `.status` to PUT for one object. */
export function desiredStatus(s: StatusIntent, object: KubeObject, ctx: DesiredContext): Json {
  const current = object.status ?? {};
  if ('gone' in s) return { ...current, parents: routeParents([], [], object, ctx) };
  if (isBackendStatus(s)) return backendBody(s, object, ctx);
  if (isGatewayStatus(s)) return gatewayBody(s, object, ctx);
  if (isRouteStatus(s)) return { ...current, parents: routeParents(s.parents, [], object, ctx) };
  if (isGatewayClassStatus(s)) {
    return {
      ...current,
      conditions: writtenConditions(s.conditions, current.conditions, object.metadata.generation, ctx.now),
      supportedFeatures: s.supportedFeatures.map((name) => ({ name })),
    };
  }
  // GatewayClass, and objects translation could not read at all (InvalidStatus).
  const conditions = 'conditions' in s ? s.conditions : [];
  switch (s.kind) {
    case 'HTTPRoute':
      return { ...current, parents: routeParents('keep-with-conditions', conditions, object, ctx) };
    case 'Backend': {
      const generation = generationOf(s, object);
      return {
        ...(generation !== undefined ? { observedGeneration: generation } : {}),
        conditions: writtenConditions(conditions, current.conditions, object.metadata.generation, ctx.now),
        usableMembers: 0,
        servedPriorities: 0,
      };
    }
    case 'Gateway':
      return { ...current, conditions: writtenConditions(conditions, current.conditions, object.metadata.generation, ctx.now), listeners: [] };
    default:
      return { ...current, conditions: writtenConditions(conditions, current.conditions, object.metadata.generation, ctx.now) };
  }
}
