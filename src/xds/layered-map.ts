/**
 * Maps of one type's resources, as successive snapshots hold them: a base shared by many
 * snapshots and the few names changed since, so that an edit costs what it changed.
 */

/** How many changed names a snapshot's map carries over its base before it is copied whole. */
const MAX_OVERLAY = 512;

/**
 * A snapshot's resources as its predecessor's map and the few names changed since: an edit
 * costs what it changed, not a copy of every name of the type. Both parts are never changed
 * after construction, so older snapshots that streams still hold stay as they were.
 */
export class LayeredMap<V> implements ReadonlyMap<string, V> {
  readonly size: number;

  constructor(
    readonly base: ReadonlyMap<string, V>,
    /** undefined: removed. */
    readonly overlay: ReadonlyMap<string, V | undefined>,
  ) {
    let size = base.size;
    for (const [name, value] of overlay) {
      const had = base.has(name);
      if (value === undefined && had) size--;
      else if (value !== undefined && !had) size++;
    }
    this.size = size;
  }

  get(name: string): V | undefined {
    return this.overlay.has(name) ? this.overlay.get(name) : this.base.get(name);
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  *entries(): MapIterator<[string, V]> {
    for (const [name, value] of this.base) {
      if (!this.overlay.has(name)) {
        yield [name, value];
        continue;
      }
      const now = this.overlay.get(name);
      if (now !== undefined) yield [name, now];
    }
    for (const [name, value] of this.overlay) if (value !== undefined && !this.base.has(name)) yield [name, value];
  }

  *keys(): MapIterator<string> {
    for (const [name] of this.entries()) yield name;
  }

  *values(): MapIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries();
  }

  forEach(callback: (value: V, key: string, map: ReadonlyMap<string, V>) => void, thisArg?: unknown): void {
    for (const [name, value] of this.entries()) callback.call(thisArg, value, name, this);
  }
}

/**
 * The names that can differ between two maps of one type's snapshots when both are layered on
 * the same base (the usual case: one follows from the other by an edit): those of their
 * overlays, at most a few hundred whatever the type's size. Undefined when they share no base.
 */
export function namesThatMayDiffer(a: ReadonlyMap<string, unknown>, b: ReadonlyMap<string, unknown>): ReadonlySet<string> | undefined {
  const baseOfA = a instanceof LayeredMap ? a.base : a;
  const baseOfB = b instanceof LayeredMap ? b.base : b;
  if (baseOfA !== baseOfB) return undefined;
  const names = new Set<string>();
  if (a instanceof LayeredMap) for (const name of a.overlay.keys()) names.add(name);
  if (b instanceof LayeredMap) for (const name of b.overlay.keys()) names.add(name);
  return names;
}

/** `base` with `changes` applied (undefined: removed), sharing `base` until the changes add up. */
export function withChanges<V>(base: ReadonlyMap<string, V>, changes: ReadonlyMap<string, V | undefined>): ReadonlyMap<string, V> {
  let root = base;
  let overlay: Map<string, V | undefined> = new Map(changes);
  if (base instanceof LayeredMap) {
    root = base.base as ReadonlyMap<string, V>;
    overlay = new Map(base.overlay as ReadonlyMap<string, V | undefined>);
    for (const [name, value] of changes) overlay.set(name, value);
  }
  if (overlay.size <= MAX_OVERLAY) return new LayeredMap(root, overlay);
  const flat = new Map<string, V>();
  for (const [name, value] of new LayeredMap(root, overlay)) flat.set(name, value);
  return flat;
}

