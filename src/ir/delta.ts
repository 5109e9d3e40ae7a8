/**
 * Change sets by identity. Providers hand over the same object while it is unchanged, and an
 * edit usually replaces objects in place (same key, same position in the key-ordered list), so
 * comparing two lists item by item tells what changed at the cost of a pointer comparison each.
 */

import { hash } from 'node:crypto';

/** More replaced items than this and a keyed rebuild costs no more than following the changes. */
const MAX_REPLACED = 512;

/**
 * The indexes at which `next` holds another object than `previous`, when the two have the same
 * length and few items differ; undefined when they cannot be lined up (items added or removed, or
 * most of them replaced): then the caller matches items by key.
 */
export function replacedAt<T>(previous: readonly T[] | undefined, next: readonly T[]): number[] | undefined {
  if (previous === undefined || previous.length !== next.length) return undefined;
  const at: number[] = [];
  if (previous === next) return at;
  for (let i = 0; i < next.length; i++) {
    if (previous[i] !== next[i]) {
      if (at.length === MAX_REPLACED) return undefined;
      at.push(i);
    }
  }
  return at;
}

/** Same length, same objects in the same order. */
export function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A short fingerprint of `text` (the JSON of an object), for telling a changed object from an
 * equal one later, by comparison only (never printed): kept per object it costs 32 one-byte
 * characters instead of the whole text (which, for a credential, is also its secret value).
 */
export function contentKey(text: string): string {
  // The whole digest as one character per byte ('binary' is latin1): a flat string, made in one step. A slice of a
  // longer encoding would keep that text alive, and encoding a Buffer's part costs 3x the hash.
  return hash('sha256', text, 'binary');
}
