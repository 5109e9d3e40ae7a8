import type { Condition } from '../api/conditions.js';
import type { ObjectStatus } from '../translate/status.js';

/** Conditions where True is the bad news (Gateway API's negative-polarity conditions). */
const TRUE_IS_BAD: ReadonlySet<string> = new Set(['Conflicted', 'PartiallyInvalid', 'Degraded']);

/** An object's own conditions plus its listeners' and route parents', each with where it sits. */
function conditionsOf(s: ObjectStatus): { where: string; condition: Condition }[] {
  const own = 'conditions' in s ? s.conditions.map((condition) => ({ where: '', condition })) : [];
  const listeners = 'listeners' in s ? s.listeners.flatMap((l) => l.conditions.map((condition) => ({ where: `listener ${l.name}`, condition }))) : [];
  const parents = 'parents' in s ? s.parents.flatMap((p) => p.conditions.map((condition) => ({ where: `parent ${p.parentRef.namespace ? `${p.parentRef.namespace}/` : ''}${p.parentRef.name}`, condition }))) : [];
  return [...own, ...listeners, ...parents];
}

/**
 * Whether a condition reports a problem. Programmed=False/Pending is not one when nothing
 * serves the configuration yet (translate, or serve before an Envoy connects).
 */
export function isBadCondition(c: Condition): boolean {
  if (TRUE_IS_BAD.has(c.type)) return c.status === 'True';
  if (c.type === 'Programmed' && c.reason === 'Pending') return false;
  return c.status === 'False';
}

export function objectName(s: { kind: string; namespace: string; name: string }): string {
  return `${s.kind} ${s.namespace ? `${s.namespace}/` : ''}${s.name}`;
}

/** "HTTPRoute ai/chat ResolvedRefs=False(BackendNotFound)" for every object with a bad condition. */
export function badConditions(statuses: readonly ObjectStatus[]): string[] {
  const out: string[] = [];
  for (const s of statuses) {
    const bad = conditionsOf(s).filter((c) => isBadCondition(c.condition));
    if (bad.length === 0) continue;
    const seen = new Set<string>();
    const parts = bad.map(({ condition: c }) => `${c.type}=${c.status}(${c.reason})`).filter((p) => !seen.has(p) && seen.add(p));
    out.push(`${objectName(s)} ${parts.join(' ')}`);
  }
  return out;
}

function cell(c: Condition): string {
  return `${c.type}=${c.status}${isBadCondition(c) || c.status !== 'True' ? `(${c.reason})` : ''}`;
}

/** Kinds in the order a user follows traffic: entry point, routing, backends, the rest. */
const KIND_ORDER = ['GatewayClass', 'Gateway', 'HTTPRoute', 'Backend'];

function kindRank(kind: string): number {
  const i = KIND_ORDER.indexOf(kind);
  return i < 0 ? KIND_ORDER.length : i;
}

/**
 * A table a user reads top to bottom: one line per object with its conditions, then per
 * listener, route parent or Backend priority and member, indented, with why a member is out.
 */
export function statusTable(statuses: readonly ObjectStatus[], problems: readonly string[] = []): string {
  const sorted = [...statuses].sort((a, b) => kindRank(a.kind) - kindRank(b.kind) || objectName(a).localeCompare(objectName(b)));
  const rows: [string, string, string][] = [];
  for (const s of sorted) {
    const name = `${s.namespace ? `${s.namespace}/` : ''}${s.name}`;
    const summary = 'usableMembers' in s ? `members ${s.usableMembers}/${s.totalMembers} usable, ${s.servedPriorities}/${s.priorities.length} priorities served` : '';
    rows.push([s.kind, name, [('conditions' in s ? s.conditions.map(cell).join(' ') : ''), summary].filter((x) => x !== '').join('  ')]);
    if ('listeners' in s) for (const l of s.listeners) rows.push(['', `  listener ${l.name}`, `${l.conditions.map(cell).join(' ')}  routes ${l.attachedRoutes}`]);
    if ('parents' in s) {
      for (const p of s.parents) rows.push(['', `  parent ${p.parentRef.namespace ? `${p.parentRef.namespace}/` : ''}${p.parentRef.name}${p.parentRef.sectionName ? `/${p.parentRef.sectionName}` : ''}`, p.conditions.map(cell).join(' ')]);
    }
    if ('priorities' in s) {
      for (const p of s.priorities) {
        rows.push(['', `  priority ${p.priority}`, p.envoyPriority !== undefined ? `served at Envoy priority ${p.envoyPriority}` : 'not served: no usable member']);
        for (const m of p.members) rows.push(['', `    ${m.name} (${m.provider})`, m.usable ? 'usable' : `out: ${m.reason ?? 'unknown'}${m.message ? `: ${m.message}` : ''}`]);
      }
    }
  }
  const header: [string, string, string] = ['KIND', 'NAME', 'STATUS'];
  const widths = [0, 1].map((i) => Math.max(...[header, ...rows].map((r) => r[i]?.length ?? 0)));
  const line = (r: [string, string, string]): string => `${r[0].padEnd(widths[0] ?? 0)}  ${r[1].padEnd(widths[1] ?? 0)}  ${r[2]}`.trimEnd();
  const table = [header, ...rows].map(line).join('\n');
  const tail = problems.length > 0 ? `\n\nConfiguration problems:\n${problems.map((p) => `  ${p}`).join('\n')}` : '';
  return `${rows.length === 0 ? 'no Gateway, HTTPRoute or Backend found' : table}${tail}\n`;
}
