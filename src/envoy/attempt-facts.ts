import type { MemberMetadata } from '../ir/model.js';

/**
 * What the AI extension needs to know of the member Envoy picked for an attempt, carried in ONE
 * string of the endpoint's metadata (key ATTEMPT_FACTS_KEY, namespace switchyard.dev) and read
 * through ONE CEL attribute. With a CEL attribute per fact, Envoy 1.40 evaluated 18 expressions
 * per attempt and sent a Struct keyed by each 70-character expression; and each fact cost every
 * endpoint a Struct entry (its key and a Value wrapper). The facts travel with their endpoint, so
 * Envoy and the extension never disagree on a member during an edit.
 *
 * Format 1 (stable: a fact added later gets a new code, which older extensions skip):
 *
 *   facts := "1" field*
 *   field := code length ":" value      code: one ASCII letter (FACT_CODES); length: decimal count
 *                                       of the value's UTF-16 code units; a fact with no value is
 *                                       left out
 *   value of modelAliases := (length ":" alias length ":" model)*
 *
 * Lengths, not separators: any value (commas, quotes, colons, digits, any Unicode) is read back
 * exactly with no escaping, and a decoder slices instead of scanning and unescaping.
 */
export const ATTEMPT_FACTS_FORMAT = '1';

/** The endpoint metadata key of the facts string. */
export const ATTEMPT_FACTS_KEY = 'attempt';

/** The facts as the extension reads them: MemberMetadata's, numbers as numbers. */
export interface AttemptFacts {
  backend?: string;
  member?: string;
  priority?: number;
  provider?: string;
  model?: string;
  path?: string;
  hostname?: string;
  authHeader?: string;
  authKind?: string;
  credential?: string;
  apiVersion?: string;
  deployment?: string;
  firstTokenTimeoutMs?: number;
  fallbacks?: string;
  modelAliases?: Record<string, string>;
  drillKey?: string;
  requestsPerMinute?: number;
  tokensPerMinute?: number;
}

/** Each fact's code, in the order the encoder writes them. Never reuse or change a code. */
export const FACT_CODES = {
  backend: 'b',
  member: 'm',
  priority: 'l',
  provider: 'p',
  model: 'o',
  path: 'u',
  hostname: 'h',
  authHeader: 'a',
  authKind: 'k',
  credential: 'c',
  apiVersion: 'v',
  deployment: 'd',
  firstTokenTimeoutMs: 't',
  fallbacks: 'f',
  modelAliases: 's',
  drillKey: 'x',
  requestsPerMinute: 'r',
  tokensPerMinute: 'q',
} as const satisfies Record<keyof AttemptFacts, string>;

const FACT_ORDER = Object.keys(FACT_CODES) as (keyof AttemptFacts)[];

function field(code: string, value: string): string {
  return `${code}${value.length}:${value}`;
}

/**
 * The facts string of a member. Takes MemberMetadata or AttemptFacts alike; keys it does not
 * know (the Kubernetes Secret's name) are not written: the credential is a reference (an SDS
 * name), never a value.
 */
export function encodeAttemptFacts(facts: AttemptFacts | MemberMetadata): string {
  return asciiFacts(facts) ?? concatenatedFacts(facts);
}

/** Each fact's code as a byte, in FACT_ORDER. */
const FACT_CODE_BYTES = FACT_ORDER.map((key) => FACT_CODES[key].charCodeAt(0));

/** The bytes of the facts string being written by asciiFacts; grown when a member's facts outgrow it. */
let factBytes = Buffer.allocUnsafe(1024);

/**
 * The facts string written as bytes and decoded once, when every value is ASCII and there are
 * no model aliases (every member of the usual configuration): one flat string per member. Built
 * by concatenation, each member's string was a tree of about 30 intermediate strings, flattened
 * again when the assignment was encoded: the Envoy stage's largest allocation at 10,000 Backends.
 * Undefined for anything else, which concatenatedFacts writes.
 */
function asciiFacts(facts: AttemptFacts | MemberMetadata): string | undefined {
  let bytes = factBytes;
  bytes[0] = ATTEMPT_FACTS_FORMAT.charCodeAt(0);
  let at = 1;
  for (let i = 0; i < FACT_ORDER.length; i++) {
    const key = FACT_ORDER[i] as keyof AttemptFacts;
    const value = facts[key];
    if (value === undefined) continue;
    if (key === 'modelAliases') {
      if (Object.keys(value as Record<string, string>).length > 0) return undefined;
      continue;
    }
    const text = typeof value === 'number' ? String(value) : (value as string);
    const length = text.length;
    if (length === 0) continue;
    // A code, at most 10 digits of length, ":" and the value.
    if (at + length + 12 > bytes.length) {
      const grown = Buffer.allocUnsafe(2 * (at + length + 12));
      bytes.copy(grown, 0, 0, at);
      bytes = factBytes = grown;
    }
    bytes[at++] = FACT_CODE_BYTES[i] as number;
    if (length < 10) bytes[at++] = ZERO + length;
    else at += bytes.write(String(length), at, 'latin1');
    bytes[at++] = COLON;
    for (let j = 0; j < length; j++) {
      const c = text.charCodeAt(j);
      if (c >= 0x80) return undefined;
      bytes[at++] = c;
    }
  }
  return bytes.toString('latin1', 0, at);
}

/** The facts string by concatenation: any value (any Unicode), model aliases. */
function concatenatedFacts(facts: AttemptFacts | MemberMetadata): string {
  let out = ATTEMPT_FACTS_FORMAT;
  for (const key of FACT_ORDER) {
    const value = facts[key];
    if (value === undefined) continue;
    if (key === 'modelAliases') {
      let pairs = '';
      for (const [alias, model] of Object.entries(value as Record<string, string>)) pairs += `${alias.length}:${alias}${model.length}:${model}`;
      if (pairs !== '') out += field(FACT_CODES.modelAliases, pairs);
      continue;
    }
    const text = typeof value === 'number' ? String(value) : (value as string);
    if (text !== '') out += field(FACT_CODES[key], text);
  }
  return out;
}

const COLON = 0x3a;
const ZERO = 0x30;
const NINE = 0x39;
/** Ten digits would pass 2^31; no metadata value comes near a billion characters. */
const MAX_LENGTH_DIGITS = 9;

/** The number lengthEnd last read. */
let lengthRead = 0;

/** Where the decimal digits from `digits` end; their number left in lengthRead (no allocation). */
function lengthEnd(text: string, digits: number): number {
  let i = digits;
  let length = 0;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < ZERO || c > NINE) break;
    length = length * 10 + (c - ZERO);
  }
  lengthRead = length;
  return i;
}

/** Why the field at `at` cannot be read (the error path only: decodeAttemptFacts reads inline). */
function malformed(text: string, at: number): string {
  const digits = at + 1;
  const i = lengthEnd(text, digits);
  const length = lengthRead;
  if (i === digits) return `no length at offset ${digits}`;
  if (i - digits > MAX_LENGTH_DIGITS) return `length at offset ${digits} is too long`;
  if (text.charCodeAt(i) !== COLON) return `no ":" after the length at offset ${digits}`;
  return `a value of ${length} characters at offset ${i + 1} runs past the end (${text.length})`;
}

/** Where the value of the field fieldEnd last read starts. */
let valueStart = 0;

/**
 * The field at `at` (code, length, ":", value): where its value ends, its start left in
 * valueStart, so that reading a field allocates nothing; -1 when it is malformed.
 */
function fieldEnd(text: string, at: number): number {
  const digits = at + 1;
  const i = lengthEnd(text, digits);
  const length = lengthRead;
  if (i === digits || i - digits > MAX_LENGTH_DIGITS || text.charCodeAt(i) !== COLON) return -1;
  valueStart = i + 1;
  if (length > text.length - valueStart) return -1;
  return valueStart + length;
}

function readAliases(text: string): Record<string, string> | string {
  // No prototype: an alias named "__proto__" is an alias like any other.
  const aliases = Object.create(null) as Record<string, string>;
  // Each pair is two fields without a code: read as fields whose code is the character before.
  let at = -1;
  while (at + 1 < text.length) {
    const aliasEnd = fieldEnd(text, at);
    if (aliasEnd < 0) return `modelAliases: ${malformed(text, at)}`;
    const alias = text.slice(valueStart, aliasEnd);
    const modelEnd = fieldEnd(text, aliasEnd - 1);
    if (modelEnd < 0) return `modelAliases: ${malformed(text, aliasEnd - 1)}`;
    aliases[alias] = text.slice(valueStart, modelEnd);
    at = modelEnd - 1;
  }
  return aliases;
}

/**
 * Reads a facts string (format 1). Exact: every string encodeAttemptFacts writes reads back as
 * its facts; anything else is an error saying where it went wrong. A code it does not know (a
 * fact a newer controller added) is skipped. Read on every attempt: one pass, a slice per value.
 */
export function decodeAttemptFacts(text: string): AttemptFacts | { error: string } {
  if (!text.startsWith(ATTEMPT_FACTS_FORMAT)) {
    return { error: `the member facts are in format "${text.slice(0, 1)}", this AI extension reads format ${ATTEMPT_FACTS_FORMAT}: run the AI extension of the controller's Switchyard version` };
  }
  const facts: AttemptFacts = {};
  let at = ATTEMPT_FACTS_FORMAT.length;
  while (at < text.length) {
    const code = text.charCodeAt(at);
    const end = fieldEnd(text, at);
    if (end < 0) return { error: `the member facts are malformed: ${malformed(text, at)}` };
    const start = valueStart;
    at = end;
    // The codes of FACT_CODES (the fuzz test holds the two together).
    switch (code) {
      case 0x62: facts.backend = text.slice(start, at); break; // b
      case 0x6d: facts.member = text.slice(start, at); break; // m
      case 0x6c: facts.priority = Number(text.slice(start, at)); break; // l
      case 0x70: facts.provider = text.slice(start, at); break; // p
      case 0x6f: facts.model = text.slice(start, at); break; // o
      case 0x75: facts.path = text.slice(start, at); break; // u
      case 0x68: facts.hostname = text.slice(start, at); break; // h
      case 0x61: facts.authHeader = text.slice(start, at); break; // a
      case 0x6b: facts.authKind = text.slice(start, at); break; // k
      case 0x63: facts.credential = text.slice(start, at); break; // c
      case 0x76: facts.apiVersion = text.slice(start, at); break; // v
      case 0x64: facts.deployment = text.slice(start, at); break; // d
      case 0x74: facts.firstTokenTimeoutMs = Number(text.slice(start, at)); break; // t
      case 0x66: facts.fallbacks = text.slice(start, at); break; // f
      case 0x78: facts.drillKey = text.slice(start, at); break; // x
      case 0x72: facts.requestsPerMinute = Number(text.slice(start, at)); break; // r
      case 0x71: facts.tokensPerMinute = Number(text.slice(start, at)); break; // q
      case 0x73: { // s
        const aliases = readAliases(text.slice(start, at));
        if (typeof aliases === 'string') return { error: `the member facts are malformed: ${aliases}` };
        facts.modelAliases = aliases;
        break;
      }
      default: // a fact of a later controller: skipped
    }
  }
  return facts;
}
