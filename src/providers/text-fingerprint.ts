/**
 * 64-bit fingerprints of a manifest document's text and of its spec, computed in JavaScript.
 *
 * What they are for: telling whether a document changed between two reads of the user's own
 * files. No security property depends on them (whoever could forge a collision could edit the
 * file instead), so what matters is that accidental collisions do not happen and that computing
 * one is cheap. SHA-1 through node:crypto did the job, but at 10,000 Backends the first load
 * hashes 80,000 documents of a few hundred bytes each, where the cost is in the call (a native
 * hash context per document, a subarray and a digest string each), not in the bytes: about 2 µs
 * a document, a twentieth of the file provider's first load (issue 9).
 *
 * The mixing is MurmurHash3's (x86, 128-bit variant: its block multipliers, rotations and final
 * avalanche), on two lanes of 32 bits, 8 bytes at a time. For a given state, each step maps
 * (lane 1, lane 2) one-to-one, so two inputs of the same length that differ in one 8-byte block
 * (any single edit that keeps the length) always give different fingerprints; other pairs
 * collide by chance at about 2^-64.
 */

const C1 = 0x239b961b;
const C2 = 0xab0e9789;
const C3 = 0x38b34ae5;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function avalanche(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Lane 1 after one block word. */
function mixFirst(h1: number, h2: number, k: number): number {
  h1 ^= Math.imul(rotl(Math.imul(k, C1), 15), C2);
  h1 = (rotl(h1, 19) + h2) | 0;
  return (Math.imul(h1, 5) + 0x561ccd1b) | 0;
}

/** Lane 2 after one block word (`h1`: lane 1 already updated by the block). */
function mixSecond(h1: number, h2: number, k: number): number {
  h2 ^= Math.imul(rotl(Math.imul(k, C2), 16), C3);
  h2 = (rotl(h2, 17) + h1) | 0;
  return (Math.imul(h2, 5) + 0x0bcaa747) | 0;
}

/** The fingerprint from the lanes after the last block; `length` tells a zero-padded tail from zeros. */
function finish(h1: number, h2: number, length: number): readonly [number, number] {
  h1 ^= length;
  h2 ^= length;
  h1 = (h1 + h2) | 0;
  h2 = (h2 + h1) | 0;
  h1 = avalanche(h1);
  h2 = avalanche(h2);
  h1 = (h1 + h2) | 0;
  h2 = (h2 + h1) | 0;
  return [h1, h2];
}

/** bytes[from, to) as two 32-bit integers. */
export function bytesFingerprint(bytes: Uint8Array, from = 0, to = bytes.length): readonly [number, number] {
  let h1 = 0;
  let h2 = 0;
  let at = from;
  for (const blocksEnd = to - ((to - from) & 7); at < blocksEnd; at += 8) {
    const k1 = bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24);
    const k2 = bytes[at + 4]! | (bytes[at + 5]! << 8) | (bytes[at + 6]! << 16) | (bytes[at + 7]! << 24);
    h1 = mixFirst(h1, h2, k1);
    h2 = mixSecond(h1, h2, k2);
  }
  if (at < to) {
    // The last 1 to 7 bytes, zero-padded to a block.
    let k1 = 0;
    let k2 = 0;
    for (let i = 0; at + i < to; i++) {
      const b = bytes[at + i]!;
      if (i < 4) k1 |= b << (8 * i);
      else k2 |= b << (8 * (i - 4));
    }
    h1 = mixFirst(h1, h2, k1);
    h2 = mixSecond(h1, h2, k2);
  }
  return finish(h1, h2, to - from);
}

/** A string's UTF-16 code units as two 32-bit integers (two units a word, four a block). */
export function textFingerprint(text: string): readonly [number, number] {
  let h1 = 0;
  let h2 = 0;
  const length = text.length;
  let at = 0;
  for (const blocksEnd = length - (length & 3); at < blocksEnd; at += 4) {
    h1 = mixFirst(h1, h2, text.charCodeAt(at) | (text.charCodeAt(at + 1) << 16));
    h2 = mixSecond(h1, h2, text.charCodeAt(at + 2) | (text.charCodeAt(at + 3) << 16));
  }
  if (at < length) {
    const unit = (i: number): number => (at + i < length ? text.charCodeAt(at + i) : 0);
    h1 = mixFirst(h1, h2, unit(0) | (unit(1) << 16));
    h2 = mixSecond(h1, h2, unit(2) | (unit(3) << 16));
  }
  return finish(h1, h2, length);
}
