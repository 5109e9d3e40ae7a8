import type { CachedResource } from './cache.js';

/**
 * Differences between two snapshots of one type, computed once per pair of snapshots and
 * shared by every stream that goes from the one to the other (a thousand streams, one diff).
 */

type Resources = ReadonlyMap<string, CachedResource>;

/** Every resource of a snapshot as an array, built once per snapshot. */
const wholeSets = new WeakMap<Resources, CachedResource[]>();
export function everyResource(resources: Resources): CachedResource[] {
  let all = wholeSets.get(resources);
  if (all === undefined) {
    all = [...resources.values()];
    wholeSets.set(resources, all);
  }
  return all;
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
/** What is new or changed in `next` since `previous`. */
export function changedBetween(previous: Resources, next: Resources): CachedResource[] {
  return memo(changes, previous, next, () => everyResource(next).filter((resource) => previous.get(resource.name)?.version !== resource.version));
}

const gones = new WeakMap<Resources, WeakMap<Resources, Map<string, CachedResource>>>();
/** What `previous` has and `next` does not. */
export function goneBetween(previous: Resources, next: Resources): ReadonlyMap<string, CachedResource> {
  return memo(gones, previous, next, () => new Map([...previous].filter(([name]) => !next.has(name))));
}

/** No resources: where a new stream starts from. */
export const NO_RESOURCES: Resources = new Map();
