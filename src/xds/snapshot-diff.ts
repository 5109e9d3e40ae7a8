import type { CachedResource } from './cache.js';
import { namesThatMayDiffer } from './layered-map.js';

/**
 * Differences between two snapshots of one type, computed once per pair of snapshots and
 * shared by every stream that goes from the one to the other (a thousand streams, one diff).
 */

type Resources = ReadonlyMap<string, CachedResource>;

/** Every resource of a snapshot as an array, built once per snapshot. */
const wholeSets = new WeakMap<Resources, readonly CachedResource[]>();
export function everyResource(resources: Resources): readonly CachedResource[] {
  let all = wholeSets.get(resources);
  if (all === undefined) {
    all = [...resources.values()];
    wholeSets.set(resources, all);
  }
  return all;
}

/** Says that `list` holds exactly the resources of `resources` (the cache has it at hand when it builds a snapshot). */
export function rememberEveryResource(resources: Resources, list: readonly CachedResource[]): void {
  wholeSets.set(resources, list);
}

/** The list of `resources` if some stream asked for it already. */
export function knownEveryResource(resources: Resources): readonly CachedResource[] | undefined {
  return wholeSets.get(resources);
}

/**
 * What `cache` holds for the pair, if anything. Looked up before the pair's computation is made
 * into a closure (memo): every stream asks for the same pair, and only the first computes it.
 */
function known<T>(cache: WeakMap<Resources, WeakMap<Resources, T>>, previous: Resources, next: Resources): T | undefined {
  return cache.get(previous)?.get(next);
}

function memo<T>(cache: WeakMap<Resources, WeakMap<Resources, T>>, previous: Resources, next: Resources, compute: () => T): T {
  let byNext = cache.get(previous);
  if (byNext === undefined) {
    byNext = new WeakMap();
    cache.set(previous, byNext);
  }
  let value = byNext.get(next);
  if (value === undefined) {
    value = compute();
    byNext.set(next, value);
  }
  return value;
}

const changes = new WeakMap<Resources, WeakMap<Resources, CachedResource[]>>();
/** What is new or changed in `next` since `previous`: only the names that may differ are looked at when the two share a base. */
export function changedBetween(previous: Resources, next: Resources): CachedResource[] {
  return known(changes, previous, next) ?? computeChanged(previous, next);
}

function computeChanged(previous: Resources, next: Resources): CachedResource[] {
  return memo(changes, previous, next, () => {
    const candidates = namesThatMayDiffer(previous, next);
    if (candidates === undefined) return everyResource(next).filter((resource) => previous.get(resource.name)?.version !== resource.version);
    const changed: CachedResource[] = [];
    for (const name of candidates) {
      const resource = next.get(name);
      if (resource !== undefined && previous.get(name)?.version !== resource.version) changed.push(resource);
    }
    return changed;
  });
}

const gones = new WeakMap<Resources, WeakMap<Resources, Map<string, CachedResource>>>();
/** What `previous` has and `next` does not. */
export function goneBetween(previous: Resources, next: Resources): ReadonlyMap<string, CachedResource> {
  return known(gones, previous, next) ?? computeGone(previous, next);
}

function computeGone(previous: Resources, next: Resources): ReadonlyMap<string, CachedResource> {
  return memo(gones, previous, next, () => {
    const candidates = namesThatMayDiffer(previous, next);
    if (candidates === undefined) return new Map([...previous].filter(([name]) => !next.has(name)));
    const gone = new Map<string, CachedResource>();
    for (const name of candidates) {
      const resource = previous.get(name);
      if (resource !== undefined && !next.has(name)) gone.set(name, resource);
    }
    return gone;
  });
}


const goneNames = new WeakMap<Resources, WeakMap<Resources, readonly string[]>>();
/** The names of goneBetween(previous, next), as one array shared by every stream that goes from the one to the other. */
export function goneNamesBetween(previous: Resources, next: Resources): readonly string[] {
  return known(goneNames, previous, next) ?? computeGoneNames(previous, next);
}

function computeGoneNames(previous: Resources, next: Resources): readonly string[] {
  return memo(goneNames, previous, next, () => [...goneBetween(previous, next).keys()]);
}

/** No resources: where a new stream starts from. */
export const NO_RESOURCES: Resources = new Map();
