/**
 * A reader for the YAML that manifests are almost always written in: block mappings and
 * sequences, keys that are plain words, values on one line (plain, or quoted without escapes),
 * comments. It reads such a document several times faster than js-yaml, which reads it a
 * character at a time through a general state machine. Anything else (flow collections, block
 * scalars, anchors, tags, escapes, numbers other than plain integers, multi-line values, tabs,
 * control characters, duplicate keys) makes it give up, and the general readers decide: so
 * it needs to be right only on what it accepts, where it must read what the yaml package
 * reads (YAML 1.2, core schema); test/unit/manifest-yaml-readers compares them.
 */

/** Thrown through the reader when the text is not in its subset. */
class NotBlockYaml extends Error {}

const GIVE_UP = new NotBlockYaml();

/** Characters no document in the subset holds: controls (the yaml package refuses most), tabs, a byte order mark, carriage returns. */
const OUTSIDE_SUBSET = /[\x00-\x09\x0B-\x1F\x7F-\x9F\uFEFF\uFFFE\uFFFF]/;

/** A key in the subset: a word (labels and annotations keys included), never one the core schema reads as null or a boolean. */
const KEY = /^[A-Za-z_][A-Za-z0-9_./-]*$/;
const NOT_A_STRING_KEY = /^(?:[Nn]ull|NULL|[Tt]rue|TRUE|[Ff]alse|FALSE)$/;

/** Integers read exactly as the same number by every reader. */
const PLAIN_INT = /^(?:0|[1-9][0-9]{0,14})$/;
/** The core schema's other numbers (yaml's schema/core int.js and float.js): left to the general readers. */
const OTHER_NUMBER = /^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;

const SPACE = 0x20;
const HASH = 0x23;
const DASH = 0x2d;
const COLON = 0x3a;
const DOUBLE_QUOTE = 0x22;
const SINGLE_QUOTE = 0x27;
const PERCENT = 0x25;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/** Characters a plain scalar must not start with (YAML c-indicator), and "-", "." and "+" handled apart. */
const INDICATORS = new Set([...'-?:,[]{}#&*!|>%@`'].map((c) => c.charCodeAt(0)));

/**
 * The document's value when `text` (one document) is in the subset and its top level is a
 * mapping; undefined otherwise.
 */
export function readBlockYaml(text: string, bytes?: Buffer): { value: Record<string, unknown> } | undefined {
  if (OUTSIDE_SUBSET.test(text)) return undefined;
  try {
    const reader = new BlockReader(text, bytes);
    if (reader.count === 0 || reader.indent(0) !== 0) return undefined;
    const value = reader.mapping(0);
    return reader.at === reader.count ? { value } : undefined;
  } catch (err) {
    // A stack overflow on absurdly deep nesting is the general readers' to report too.
    if (err === GIVE_UP || err instanceof RangeError) return undefined;
    throw err;
  } finally {
    // A document of thousands of lines is rare: its table is not kept for the small ones after it.
    if (LINES.length > MAX_KEPT_LINES_LENGTH) LINES = new Int32Array(INITIAL_LINES_LENGTH);
  }
}

/**
 * The lines with content of the document being read (not blank, not comments alone), three
 * numbers each: indentation, where the content starts, where it ends. One table for every
 * document, grown as needed: three arrays of each of the 80,000 documents of 10,000 Backends,
 * grown a push at a time, were the reader's largest allocation. It can be shared because a
 * document is read whole, synchronously, before the next one starts.
 */
const INITIAL_LINES_LENGTH = 3 * 256;
const MAX_KEPT_LINES_LENGTH = 3 * 4096;
let LINES = new Int32Array(INITIAL_LINES_LENGTH);

/**
 * A document's reader over LINES (lines from 0 to count).
 * `bytes`: the document's bytes, one per character of `text` (ASCII), given when its strings are to
 * be decoded from them: a slice of `text` would keep the whole document's text alive.
 */
class BlockReader {
  count = 0;
  /** The line being read. */
  at = 0;

  constructor(
    private readonly text: string,
    private readonly bytes?: Buffer,
  ) {
    let first = true;
    let lines = LINES;
    let count = 0;
    for (let lineStart = 0; lineStart <= text.length; ) {
      let end = text.indexOf('\n', lineStart);
      if (end === -1) end = text.length;
      let start = lineStart;
      while (start < end && text.charCodeAt(start) === SPACE) start++;
      const indent = start - lineStart;
      lineStart = end + 1;
      if (start === end || text.charCodeAt(start) === HASH) continue;
      if (indent === 0 && (text.startsWith('---', start) || text.startsWith('...', start) || text.charCodeAt(start) === PERCENT)) {
        // A "---" opening the document, alone or before a comment, is the only marker line in the subset.
        if (!first || !text.startsWith('---', start) || !isBlankOrComment(text, start + 3, end)) throw GIVE_UP;
        first = false;
        continue;
      }
      first = false;
      if (3 * count + 3 > lines.length) {
        const grown = new Int32Array(lines.length * 2);
        grown.set(lines);
        lines = LINES = grown;
      }
      lines[3 * count] = indent;
      lines[3 * count + 1] = start;
      lines[3 * count + 2] = end;
      count++;
    }
    this.count = count;
  }

  /** The indentation of line `line`. */
  indent(line: number): number {
    return LINES[3 * line] as number;
  }

  /** A block mapping whose keys are at `indent`, from the current line on. */
  mapping(indent: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    while (this.at < this.count && this.indent(this.at) === indent) {
      const start = LINES[3 * this.at + 1] as number;
      const end = LINES[3 * this.at + 2] as number;
      if (isSequenceItem(this.text, start, end)) throw GIVE_UP;
      const colon = this.text.indexOf(':', start);
      if (colon === -1 || colon >= end) throw GIVE_UP;
      const key = keyAt(this.text, start, colon);
      if (Object.hasOwn(out, key)) throw GIVE_UP;
      const after = colon + 1;
      if (after < end && this.text.charCodeAt(after) !== SPACE) throw GIVE_UP;
      out[key] = this.valueAfter(indent, after, end, false);
    }
    if (this.at < this.count && this.indent(this.at) > indent) throw GIVE_UP;
    return out;
  }

  /** A block sequence whose "-" are at `indent`, from the current line on. */
  private sequence(indent: number): unknown[] {
    const out: unknown[] = [];
    while (this.at < this.count && this.indent(this.at) === indent) {
      const start = LINES[3 * this.at + 1] as number;
      const end = LINES[3 * this.at + 2] as number;
      if (!isSequenceItem(this.text, start, end)) break;
      let content = start + 1;
      while (content < end && this.text.charCodeAt(content) === SPACE) content++;
      if (content === end || this.text.charCodeAt(content) === HASH) {
        out.push(this.valueAfter(indent, content, end, true));
        continue;
      }
      if (isSequenceItem(this.text, content, end)) throw GIVE_UP;
      if (startsWithKey(this.text, content, end)) {
        // "- key: value": a mapping whose keys are at the column of this first key.
        const column = indent + (content - start);
        LINES[3 * this.at] = column;
        LINES[3 * this.at + 1] = content;
        out.push(this.mapping(column));
        continue;
      }
      out.push(this.scalar(content, end));
      this.at++;
      if (this.at < this.count && this.indent(this.at) > indent) throw GIVE_UP;
    }
    if (this.at < this.count && this.indent(this.at) > indent) throw GIVE_UP;
    return out;
  }

  /**
   * The value after a key's ":" or a "-" (`item`) at `indent`: on the same line, or the block
   * below it (null when there is none).
   */
  private valueAfter(indent: number, from: number, end: number, item: boolean): unknown {
    let pos = from;
    while (pos < end && this.text.charCodeAt(pos) === SPACE) pos++;
    if (pos < end && this.text.charCodeAt(pos) !== HASH) {
      const value = this.scalar(pos, end);
      this.at++;
      if (this.at < this.count && this.indent(this.at) > indent) throw GIVE_UP;
      return value;
    }
    this.at++;
    if (this.at === this.count) return null;
    const next = this.indent(this.at);
    const start = LINES[3 * this.at + 1] as number;
    const lineEnd = LINES[3 * this.at + 2] as number;
    if (next > indent) return isSequenceItem(this.text, start, lineEnd) ? this.sequence(next) : this.mapping(next);
    // "key:" followed by "- item" lines at the key's own indentation; after an item's "-", such a line is the next item.
    if (next === indent && !item && isSequenceItem(this.text, start, lineEnd)) return this.sequence(indent);
    return null;
  }

  /** text[start, end) as a string of its own (see bytes): an equal one decoded lately when there is one (see deduplicated). */
  private cut(start: number, end: number): string {
    if (this.bytes === undefined) return this.text.slice(start, end);
    const slot = recentSlot(this.text, start, end);
    const recent = RECENT_STRINGS[slot];
    // Compared in place: a repeat is neither decoded nor allocated.
    if (recent !== undefined && recent.length === end - start && this.text.startsWith(recent, start)) return recent;
    const decoded = this.bytes.toString('latin1', start, end);
    RECENT_STRINGS[slot] = decoded;
    return decoded;
  }

  /** A scalar from `start` to the end of its line (less a comment), or GIVE_UP. */
  private scalar(start: number, end: number): unknown {
    const text = this.text;
    const first = text.charCodeAt(start);
    if (first === DOUBLE_QUOTE) {
      const close = text.indexOf('"', start + 1);
      if (close === -1 || close >= end) throw GIVE_UP;
      const slash = text.indexOf('\\', start + 1);
      if (slash !== -1 && slash < close) throw GIVE_UP;
      if (!isBlankOrComment(text, close + 1, end)) throw GIVE_UP;
      return this.cut(start + 1, close);
    }
    if (first === SINGLE_QUOTE) {
      let pos = start + 1;
      let doubled = false;
      for (;;) {
        const quote = text.indexOf("'", pos);
        if (quote === -1 || quote >= end) throw GIVE_UP;
        if (text.charCodeAt(quote + 1) === SINGLE_QUOTE && quote + 1 < end) {
          doubled = true;
          pos = quote + 2;
          continue;
        }
        if (!isBlankOrComment(text, quote + 1, end)) throw GIVE_UP;
        const inner = this.cut(start + 1, quote);
        if (!doubled) return inner;
        const unquoted = inner.replaceAll("''", "'");
        return this.bytes === undefined ? unquoted : deduplicated(unquoted);
      }
    }
    if (first === OPEN_BRACKET || first === OPEN_BRACE) {
      // Of flow collections, the subset has the empty ones ("filters: []"), which tools write for nothing.
      const close = text.charCodeAt(start + 1);
      if (close !== (first === OPEN_BRACKET ? CLOSE_BRACKET : CLOSE_BRACE) || !isBlankOrComment(text, start + 2, end)) throw GIVE_UP;
      return first === OPEN_BRACKET ? [] : {};
    }
    if (INDICATORS.has(first)) throw GIVE_UP;
    let stop = end;
    for (let pos = start + 1; pos < end; pos++) {
      const c = text.charCodeAt(pos);
      if (c === HASH && text.charCodeAt(pos - 1) === SPACE) {
        stop = pos;
        break;
      }
      // ": " (or ":" ending the value) would make it a mapping, or an error.
      if (c === COLON && (pos + 1 === end || text.charCodeAt(pos + 1) === SPACE)) throw GIVE_UP;
    }
    while (stop > start && text.charCodeAt(stop - 1) === SPACE) stop--;
    if (text.charCodeAt(stop - 1) === COLON) throw GIVE_UP;
    return plainValue(this.cut(start, stop));
  }
}

/**
 * `text` or an equal string decoded lately. The block reader's strings, decoded from a file's
 * bytes (BlockReader.bytes), keep no document text alive, and are what a configuration repeats
 * (namespaces, kinds, models, a Secret's name in the Backend after it): each is deduplicated
 * against the recent ones as it is read (BlockReader.cut), which saves memory as interning would,
 * without adding each new string to V8's table of internalized strings (a sixth of the first
 * load's CPU once), and, since a repeat is compared in the text, without decoding it at all.
 */
function deduplicated(text: string): string {
  const slot = recentSlot(text, 0, text.length);
  const recent = RECENT_STRINGS[slot];
  if (recent === text) return recent;
  RECENT_STRINGS[slot] = text;
  return text;
}

/**
 * The slot of text[start, end) among the recent strings: a hash of every character of a short
 * string (of 32 at most of a longer one). Three characters were not enough: "p0-m0", "p1-m0" and
 * "p2-m0" (member names, and the Secret names made of them) took turns in one slot, and each of
 * 60,000 members kept its own copy of its name.
 */
function recentSlot(text: string, start: number, end: number): number {
  const length = end - start;
  const step = length <= 32 ? 1 : length >> 5;
  let h = length;
  for (let i = start; i < end; i += step) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h ^= h >>> 15;
  return h & (RECENT_STRINGS.length - 1);
}

/** Strings decoded lately, by a hash of their characters (recentSlot). */
const RECENT_STRINGS: (string | undefined)[] = new Array<string | undefined>(4096).fill(undefined);

/** What the core schema makes of a plain scalar, for the values the subset reads. */
function plainValue(s: string): unknown {
  switch (s) {
    case '~':
    case 'null':
    case 'Null':
    case 'NULL':
      return null;
    case 'true':
    case 'True':
    case 'TRUE':
      return true;
    case 'false':
    case 'False':
    case 'FALSE':
      return false;
  }
  const c = s.charCodeAt(0);
  if ((c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x2b) {
    if (PLAIN_INT.test(s)) return Number(s);
    if (OTHER_NUMBER.test(s)) throw GIVE_UP;
  }
  return s;
}

/**
 * The key text[start, end), checked against KEY. Manifests repeat a few dozen keys over and over
 * (80,000 documents at 10,000 Backends hold over a million keys): a key seen lately is handed back
 * from a small table, compared in place, so it is neither cut out of the text nor checked again.
 */
function keyAt(text: string, start: number, end: number): string {
  const length = end - start;
  const slot = (length * 31 + text.charCodeAt(start) * 7 + text.charCodeAt(end - 1)) & (RECENT_KEYS.length - 1);
  const recent = RECENT_KEYS[slot];
  if (recent !== undefined && recent.length === length && text.startsWith(recent, start)) return recent;
  const key = text.slice(start, end);
  if (!KEY.test(key) || NOT_A_STRING_KEY.test(key) || key === '__proto__') throw GIVE_UP;
  RECENT_KEYS[slot] = key;
  return key;
}

/** Keys that passed keyAt's checks, by a hash of their length and first and last characters. */
const RECENT_KEYS: (string | undefined)[] = new Array<string | undefined>(512).fill(undefined);

/** Whether a line's content is a sequence item: "-" followed by a space or nothing. */
function isSequenceItem(text: string, start: number, end: number): boolean {
  return text.charCodeAt(start) === DASH && (start + 1 === end || text.charCodeAt(start + 1) === SPACE);
}

/** Whether content starts with a key and its ":" (then the line is a mapping entry). */
function startsWithKey(text: string, start: number, end: number): boolean {
  const colon = text.indexOf(':', start);
  if (colon === -1 || colon >= end) return false;
  if (colon + 1 < end && text.charCodeAt(colon + 1) !== SPACE) return false;
  return KEY.test(text.slice(start, colon));
}

/** Whether text[from, end) is blank or a comment (a "#" after a space). */
function isBlankOrComment(text: string, from: number, end: number): boolean {
  let pos = from;
  while (pos < end && text.charCodeAt(pos) === SPACE) pos++;
  if (pos === end) return true;
  return text.charCodeAt(pos) === HASH && pos > from;
}
