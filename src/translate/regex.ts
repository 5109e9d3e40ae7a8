import { createRequire } from 'node:module';
import { REGEX_PROGRAM_SIZE_LIMIT } from '../api/httproute.js';

// Envoy compiles safe_regex with RE2; JavaScript's RegExp accepts another language, so RE2
// itself (compiled to WebAssembly, loaded once) judges each pattern before Envoy sees it. The
// package's RE2 class is bypassed: it rewrites the pattern as JavaScript syntax first and never
// frees the compiled program, whose fixed 16 MiB heap then runs out after a few thousand
// patterns and exits the process. The wrapped C++ object is given the pattern as Envoy gets it
// and deleted at once.
interface WrappedRE2 {
  ok(): boolean;
  error(): string;
  delete(): void;
}
type WrappedRE2Class = new (pattern: string, ignoreCase: boolean, multiline: boolean, dotAll: boolean) => WrappedRE2;
let wrappedRE2: WrappedRE2Class | undefined;

/**
 * Loaded at the first regex: the WebAssembly instance's fixed heap is 16 MiB of memory that a
 * configuration without regex matches never needs (issue 9).
 */
function re2Class(): WrappedRE2Class {
  wrappedRE2 ??= (createRequire(import.meta.url)('re2-wasm/build/wasm/re2.js') as { WrappedRE2: WrappedRE2Class }).WrappedRE2;
  return wrappedRE2;
}

/** RE2's complaint about `pattern`, or undefined when Envoy will compile it. */
export function re2Error(pattern: string): string | undefined {
  // Sized before compiling: re2-wasm has a fixed 16 MiB heap, and a pattern too large for it
  // aborts the WebAssembly instance for good, which would leave every later pattern unjudged.
  const size = sizeBound(pattern);
  if (size !== undefined && size > REGEX_PROGRAM_SIZE_LIMIT) {
    return `its RE2 program has about ${size} instructions, more than the ${REGEX_PROGRAM_SIZE_LIMIT} Envoy accepts; use smaller repetition counts (e.g. [a-z0-9]+ instead of [a-z0-9]{64})`;
  }
  const re = new (re2Class())(pattern, false, false, false);
  try {
    return re.ok() ? undefined : re.error();
  } finally {
    re.delete();
  }
}

/** The bound, or undefined for a pattern the estimator cannot read (RE2 then explains why). */
function sizeBound(pattern: string): number | undefined {
  try {
    return re2ProgramSizeBound(pattern);
  } catch {
    return undefined;
  }
}

/*
 * An upper bound of RE2's ProgramSize() for a valid pattern (an invalid one may throw). re2-wasm does
 * not expose the compiled program, so the instruction count is estimated from the syntax tree
 * the way RE2's compiler spends instructions: one per byte of a literal, one per ASCII range of
 * a class (more for Unicode and negated classes, which RE2 compiles to UTF-8 byte sequences), one
 * per alternative, repeat or empty-width assertion, two per capture, four for the program's own
 * frame (fail, match, the unanchored `.*?` prefix), and x{n,m} expanded into n copies plus m-n
 * optional ones, as RE2's simplifier does. Calibrated against Envoy 1.40's own count
 * (`/x/[a-z0-9]{64}` and `x{0,64}` are exact; other shapes are over, never under), which
 * test/unit/envoy-values.test.ts checks on generated patterns with the real Envoy.
 */

const FRAME = 4;
// Measured on Envoy 1.40 (instructions per class inside a repeat): \p{L} 7, [\p{L}\p{N}] 10,
// [^/] 2, [^a-z0-9] 3, [[:^alpha:]] 3, \W 5, a Unicode range 1 per UTF-8 length. The bounds
// below sit above each: a negated class costs its ranges plus NEGATION. A Unicode property
// costs far more than Envoy counts because the checker's own RE2 (re2-wasm, an older RE2 in a
// fixed 16 MiB heap) spends hundreds of instructions on one: 75 copies of \p{L} exhaust it. At
// 40, no pattern within the limit comes near that.
const NAMED_CLASS = 40;
const POSIX_CLASS = 4;
const NEGATION = 2;

interface Cursor {
  s: string;
  i: number;
}

function utf8Length(cp: number): number {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

export function re2ProgramSizeBound(pattern: string): number {
  const c: Cursor = { s: pattern, i: 0 };
  return FRAME + alternation(c, false);
}

function alternation(c: Cursor, fold: boolean): number {
  let total = 0;
  let branches = 0;
  let f = fold;
  for (;;) {
    const r = concatenation(c, f);
    total += r.cost;
    f = r.fold;
    branches++;
    if (c.s[c.i] === '|') {
      c.i++;
      continue;
    }
    break;
  }
  return total + (branches - 1);
}

function concatenation(c: Cursor, fold: boolean): { cost: number; fold: boolean } {
  let cost = 0;
  let f = fold;
  while (c.i < c.s.length && c.s[c.i] !== '|' && c.s[c.i] !== ')') {
    const a = atom(c, f);
    f = a.fold;
    cost += repeat(c, a.cost);
  }
  return { cost, fold: f };
}

/** Applies a following quantifier, if any, to an atom of `cost` instructions. */
function repeat(c: Cursor, cost: number): number {
  let out = cost;
  for (;;) {
    const ch = c.s[c.i];
    if (ch === '*' || ch === '+' || ch === '?') {
      c.i++;
      out = out + 1;
    } else if (ch === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(c.s.slice(c.i));
      if (!m) return out;
      c.i += m[0].length;
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] === '' ? undefined : Number(m[3]);
      out = max === undefined ? Math.max(min, 1) * out + 1 : min * out + (max - min) * (out + 1);
    } else {
      return out;
    }
    if (c.s[c.i] === '?') c.i++; // non-greedy: same program size
  }
}

function atom(c: Cursor, fold: boolean): { cost: number; fold: boolean } {
  const ch = c.s.codePointAt(c.i) ?? 0;
  const char = String.fromCodePoint(ch);
  if (char === '(') return group(c, fold);
  if (char === '[') return { cost: charClass(c), fold };
  if (char === '\\') return { cost: escape(c, fold), fold };
  c.i += char.length;
  if (char === '.') return { cost: 3, fold };
  if (char === '^' || char === '$') return { cost: 1, fold };
  return { cost: utf8Length(ch) * (fold && ch >= 0x80 ? 2 : 1), fold };
}

function group(c: Cursor, fold: boolean): { cost: number; fold: boolean } {
  c.i++; // (
  let capture = true;
  let inner = fold;
  if (c.s[c.i] === '?') {
    const named = /^\?P?<[^>]*>/.exec(c.s.slice(c.i));
    if (named) {
      c.i += named[0].length;
    } else {
      const flags = /^\?([imsU-]*)(:|\))/.exec(c.s.slice(c.i));
      if (!flags) throw new Error(`unexpected group syntax at ${c.i}`);
      c.i += flags[0].length;
      const [on, off] = (flags[1] ?? '').split('-');
      const nextFold = on?.includes('i') ? true : off?.includes('i') ? false : fold;
      // "(?i)" alone changes the flags of the rest of the enclosing group.
      if (flags[2] === ')') return { cost: 0, fold: nextFold };
      inner = nextFold;
      capture = false;
    }
  }
  const cost = alternation(c, inner);
  c.i++; // )
  return { cost: cost + (capture ? 2 : 0), fold };
}

const PERL_CLASS: Record<string, number> = { d: 1, w: 4, s: 4, D: 1 + NEGATION, W: 4 + NEGATION, S: 4 + NEGATION };

/** An escape outside a class; returns its instruction count. */
function escape(c: Cursor, fold: boolean): number {
  const next = c.s[c.i + 1] ?? '';
  if (next === 'Q') {
    const end = c.s.indexOf('\\E', c.i + 2);
    const text = c.s.slice(c.i + 2, end < 0 ? undefined : end);
    c.i = end < 0 ? c.s.length : end + 2;
    return [...text].reduce((n, x) => n + utf8Length(x.codePointAt(0) ?? 0) * (fold ? 2 : 1), 0);
  }
  const single = classEscape(c);
  if (single.kind === 'class') return single.cost;
  if (single.kind === 'empty') return 1;
  return utf8Length(single.cp) * (fold && single.cp >= 0x80 ? 2 : 1);
}

type Escaped = { kind: 'char'; cp: number } | { kind: 'class'; cost: number } | { kind: 'empty' };

/** Reads one escape sequence at c.i (which points at the backslash). */
function classEscape(c: Cursor): Escaped {
  const rest = c.s.slice(c.i + 1);
  const hex = /^x(\{([0-9A-Fa-f]+)\}|[0-9A-Fa-f]{2})/.exec(rest);
  if (hex) {
    c.i += 1 + hex[0].length;
    return { kind: 'char', cp: parseInt(hex[2] ?? hex[0].slice(1), 16) };
  }
  const octal = /^[0-7]{1,3}/.exec(rest);
  if (octal) {
    c.i += 1 + octal[0].length;
    return { kind: 'char', cp: parseInt(octal[0], 8) };
  }
  const prop = /^[pP](\{[^}]*\}|.)/u.exec(rest);
  if (prop) {
    c.i += 1 + prop[0].length;
    return { kind: 'class', cost: NAMED_CLASS };
  }
  const cp = rest.codePointAt(0) ?? 0;
  const letter = String.fromCodePoint(cp);
  c.i += 1 + letter.length;
  const perl = PERL_CLASS[letter];
  if (perl !== undefined) return { kind: 'class', cost: perl };
  if ('bBAz'.includes(letter)) return { kind: 'empty' };
  if (letter === 'C') return { kind: 'class', cost: 1 };
  return { kind: 'char', cp };
}

/** A bracketed class `[...]` at c.i. */
function charClass(c: Cursor): number {
  c.i++; // [
  let cost = 0;
  if (c.s[c.i] === '^') {
    c.i++;
    cost += NEGATION;
  }
  let first = true;
  while (c.i < c.s.length && (c.s[c.i] !== ']' || first)) {
    first = false;
    const posix = /^\[:\^?[a-z]+:\]/.exec(c.s.slice(c.i));
    if (posix) {
      c.i += posix[0].length;
      cost += POSIX_CLASS;
      continue;
    }
    const lo = classMember(c);
    if (lo.kind === 'class') {
      cost += lo.cost;
      continue;
    }
    let hi = lo.cp;
    if (c.s[c.i] === '-' && c.s[c.i + 1] !== ']' && c.i + 1 < c.s.length) {
      c.i++;
      const h = classMember(c);
      if (h.kind === 'char') hi = h.cp;
    }
    // A range across UTF-8 lengths splits into one byte sequence per length.
    cost += lo.cp < 0x80 && hi < 0x80 ? 1 : 2 * (utf8Length(hi) - utf8Length(lo.cp) + 1);
  }
  c.i++; // ]
  return cost;
}

function classMember(c: Cursor): { kind: 'char'; cp: number } | { kind: 'class'; cost: number } {
  if (c.s[c.i] === '\\') {
    const e = classEscape(c);
    return e.kind === 'empty' ? { kind: 'char', cp: 0x62 } : e;
  }
  const cp = c.s.codePointAt(c.i) ?? 0;
  c.i += String.fromCodePoint(cp).length;
  return { kind: 'char', cp };
}
