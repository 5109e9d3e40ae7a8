import { withTransitionTimes, type Condition } from '../api/conditions.js';
import { replacedAt } from '../ir/delta.js';
import { shared } from '../translate/shared.js';
import type { ObjectStatus, RouteParentStatus } from '../translate/status.js';
import { OBJECTS_PER_STEP, runSteps, type Steps } from './steps.js';

/** A flat string: the book keeps one per object, and a concatenation keeps its pieces too (twice the memory). */
function key(s: { kind: string; namespace: string; name: string }): string {
  return [s.kind, s.namespace, s.name].join('/');
}

function conditionsOf(s: ObjectStatus): Condition[] {
  return 'conditions' in s ? s.conditions : [];
}

/**
 * What one update stamped with transition times, shared: one frozen copy of each distinct
 * condition list and route parent list (translate/shared.ts). 10,000 Backends stamped in one
 * pass have the same three conditions, and a copy each cost 5 MiB for as long as the book holds
 * them. Translation hands over one list for all the objects that have it, so a list is stamped
 * once per update for each list it follows.
 */
class Stamping {
  private readonly conditions = new Map<Condition[], { previous: Condition[] | undefined; stamped: Condition[] }>();
  private readonly parents = new Map<RouteParentStatus[], { previous: RouteParentStatus[]; stamped: RouteParentStatus[] }>();

  constructor(readonly now: string) {}

  conditionsOf(next: Condition[], previous: Condition[] | undefined): Condition[] {
    const known = this.conditions.get(next);
    if (known !== undefined && known.previous === previous) return known.stamped;
    const stamped = shared(withTransitionTimes(next, previous, this.now));
    this.conditions.set(next, { previous, stamped });
    return stamped;
  }

  parentsOf(next: RouteParentStatus[], previous: RouteParentStatus[]): RouteParentStatus[] {
    const known = this.parents.get(next);
    if (known !== undefined && known.previous === previous) return known.stamped;
    const stamped = shared(next.map((p) => ({
      ...p,
      conditions: this.conditionsOf(p.conditions, previous.find((b) => JSON.stringify(b.parentRef) === JSON.stringify(p.parentRef))?.conditions),
    })));
    this.parents.set(next, { previous, stamped });
    return stamped;
  }
}

/** Stamps transition times on nested conditions too (Gateway listeners, HTTPRoute parents). */
function stamp(next: ObjectStatus, prev: ObjectStatus | undefined, stamping: Stamping): ObjectStatus {
  const now = stamping.now;
  const out = { ...next, conditions: stamping.conditionsOf(conditionsOf(next), prev ? conditionsOf(prev) : undefined) } as ObjectStatus;
  if ('listeners' in out && out.kind === 'Gateway') {
    const before = prev && prev.kind === 'Gateway' && 'listeners' in prev ? prev.listeners : [];
    out.listeners = out.listeners.map((l) => ({ ...l, conditions: withTransitionTimes(l.conditions, before.find((b) => b.name === l.name)?.conditions, now) }));
  }
  if ('parents' in out && out.kind === 'HTTPRoute') {
    out.parents = stamping.parentsOf(out.parents, prev && prev.kind === 'HTTPRoute' && 'parents' in prev ? prev.parents : NO_PARENTS);
  }
  return out;
}

const NO_PARENTS: RouteParentStatus[] = [];

/**
 * Whether two values have the same JSON, key order aside. Parts that are the same object (a
 * status's member list, kept from a translation that reused it) are not walked, so comparing a
 * status whose conditions alone were rebuilt costs its conditions.
 */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i] ?? null, b[i] ?? null)) return false;
    return true;
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let count = 0;
  for (const k of Object.keys(x)) {
    if (x[k] === undefined) continue;
    count++;
    if (!sameJson(x[k], y[k])) return false;
  }
  for (const k of Object.keys(y)) if (y[k] !== undefined) count--;
  return count === 0;
}

/**
 * The statuses last published, with Gateway API transition-time semantics: a condition keeps
 * its lastTransitionTime while its status stays the same. `update` reports which objects changed.
 */
export class StatusBook {
  private current = new Map<string, ObjectStatus>();
  /**
   * The statuses last handed to update (the book's own list: a caller may change its list in
   * place and say where with updateAt), and at the same index what each was published as.
   */
  private given: ObjectStatus[] = [];
  private published: ObjectStatus[] = [];
  /** Statuses stamped and compared by the last update. */
  examined = 0;

  constructor(private readonly clock: () => string = () => new Date().toISOString()) {}

  update(statuses: ObjectStatus[]): { changed: ObjectStatus[]; removed: string[] } {
    return runSteps(this.updateSteps(statuses));
  }

  /**
   * update in steps (src/status/steps.ts): the book changes only at their end, all at once, so
   * steps dropped half way leave it as it was.
   */
  *updateSteps(statuses: ObjectStatus[]): Steps<{ changed: ObjectStatus[]; removed: string[] }> {
    const now = this.clock();
    const stamping = new Stamping(now);
    const changed: ObjectStatus[] = [];
    // Translation hands over the same status object for an object that did not change, in the
    // same order: only the statuses replaced in place have anything to compare.
    const at = replacedAt(this.given, statuses);
    if (at !== undefined && at.every((i) => key(statuses[i] as ObjectStatus) === key(this.given[i] as ObjectStatus))) {
      const given = this.given;
      const published = at.length > 0 ? this.published.slice() : this.published;
      for (let n = 0; n < at.length; n++) {
        if (n % OBJECTS_PER_STEP === OBJECTS_PER_STEP - 1) yield;
        const i = at[n]!;
        const s = statuses[i] as ObjectStatus;
        const prev = published[i] as ObjectStatus;
        const stamped = stamp(s, prev, stamping);
        published[i] = stamped;
        if (!sameJson(prev, stamped)) changed.push(stamped);
      }
      if (this.given !== given) throw new Error('StatusBook.updateSteps: the book changed while these steps ran; one update at a time');
      for (const i of at) this.current.set(key(statuses[i] as ObjectStatus), published[i] as ObjectStatus);
      this.given = statuses.slice();
      this.published = published;
      this.examined = at.length;
      return { changed, removed: [] };
    }
    const given = this.given;
    const givenBefore = new Map<string, ObjectStatus>();
    for (const s of given) givenBefore.set(key(s), s);
    const next = new Map<string, ObjectStatus>();
    const published: ObjectStatus[] = [];
    for (let i = 0; i < statuses.length; i++) {
      if (i % OBJECTS_PER_STEP === OBJECTS_PER_STEP - 1) yield;
      const s = statuses[i]!;
      const k = key(s);
      const prev = this.current.get(k);
      if (prev !== undefined && givenBefore.get(k) === s) {
        next.set(k, prev);
        published.push(prev);
        continue;
      }
      const stamped = stamp(s, prev, stamping);
      next.set(k, stamped);
      published.push(stamped);
      if (!prev || !sameJson(prev, stamped)) changed.push(stamped);
    }
    if (this.given !== given) throw new Error('StatusBook.updateSteps: the book changed while these steps ran; one update at a time');
    const removed: string[] = [];
    for (const k of this.current.keys()) if (!next.has(k)) removed.push(k);
    this.current = next;
    this.given = statuses.slice();
    this.published = published;
    this.examined = statuses.length;
    return { changed, removed };
  }

  /**
   * update for a list that lines up with the last one given (same length, same object at each
   * index but `at`): only the statuses at `at` are stamped and compared, in place, so a change
   * to a few objects among many costs those few. `statuses` may be the caller's list changed in
   * place since. The book changes only at the end of the steps, as update's.
   */
  *updateAtSteps(statuses: readonly ObjectStatus[], at: readonly number[]): Steps<{ changed: ObjectStatus[]; removed: string[] }> {
    if (statuses.length !== this.given.length || at.some((i) => key(statuses[i]!) !== key(this.given[i]!))) {
      return yield* this.updateSteps(statuses.slice());
    }
    const stamping = new Stamping(this.clock());
    const changed: ObjectStatus[] = [];
    const stamped: ObjectStatus[] = [];
    const given = this.given;
    for (let n = 0; n < at.length; n++) {
      if (n % OBJECTS_PER_STEP === OBJECTS_PER_STEP - 1) yield;
      const i = at[n]!;
      const s = statuses[i]!;
      const prev = this.published[i]!;
      // Handed over again as it was: published as it was.
      const next = s === given[i] ? prev : stamp(s, prev, stamping);
      stamped.push(next);
      if (next !== prev && !sameJson(prev, next)) changed.push(next);
    }
    if (this.given !== given) throw new Error('StatusBook.updateAtSteps: the book changed while these steps ran; one update at a time');
    for (let n = 0; n < at.length; n++) {
      const i = at[n]!;
      const next = stamped[n]!;
      given[i] = statuses[i]!;
      this.published[i] = next;
      this.current.set(key(next), next);
    }
    this.examined = at.length;
    return { changed, removed: [] };
  }

  all(): ObjectStatus[] {
    return [...this.current.values()];
  }

  get(kind: string, namespace: string, name: string): ObjectStatus | undefined {
    return this.current.get(`${kind}/${namespace}/${name}`);
  }
}
