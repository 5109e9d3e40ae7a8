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

type StringFact = 'backend' | 'member' | 'provider' | 'model' | 'path' | 'hostname' | 'authHeader' | 'authKind' | 'credential' | 'apiVersion' | 'deployment' | 'fallbacks' | 'drillKey';
type NumberFact = 'priority' | 'firstTokenTimeoutMs' | 'requestsPerMinute' | 'tokensPerMinute';

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

const CODE_OF_NUMBER: Readonly<Record<string, NumberFact>> = { l: 'priority', t: 'firstTokenTimeoutMs', r: 'requestsPerMinute', q: 'tokensPerMinute' };
const CODE_OF_STRING: Readonly<Record<string, StringFact>> = {
  b: 'backend', m: 'member', p: 'provider', o: 'model', u: 'path', h: 'hostname', a: 'authHeader', k: 'authKind',
  c: 'credential', v: 'apiVersion', d: 'deployment', f: 'fallbacks', x: 'drillKey',
};

const COLON = 0x3a;
const ZERO = 0x30;
const NINE = 0x39;
/** Ten digits would pass 2^31; no metadata value comes near a billion characters. */
const MAX_LENGTH_DIGITS = 9;

/** Reads `length ":"` at `at`; the value's start and end, or an error naming the offset. */
function readLength(text: string, at: number): { start: number; end: number } | string {
  let length = 0;
  let i = at;
  for (; i < text.length && i - at <= MAX_LENGTH_DIGITS; i++) {
    const c = text.charCodeAt(i);
    if (c < ZERO || c > NINE) break;
    length = length * 10 + (c - ZERO);
  }
  if (i === at) return `no length at offset ${at}`;
  if (i - at > MAX_LENGTH_DIGITS) return `length at offset ${at} is too long`;
  if (text.charCodeAt(i) !== COLON) return `no ":" after the length at offset ${at}`;
  const start = i + 1;
  if (length > text.length - start) return `a value of ${length} characters at offset ${start} runs past the end (${text.length})`;
  return { start, end: start + length };
}

function readAliases(text: string): Record<string, string> | string {
  // No prototype: an alias named "__proto__" is an alias like any other.
  const aliases = Object.create(null) as Record<string, string>;
  let at = 0;
  while (at < text.length) {
    const alias = readLength(text, at);
    if (typeof alias === 'string') return `modelAliases: ${alias}`;
    const model = readLength(text, alias.end);
    if (typeof model === 'string') return `modelAliases: ${model}`;
    aliases[text.slice(alias.start, alias.end)] = text.slice(model.start, model.end);
    at = model.end;
  }
  return aliases;
}

/**
 * Reads a facts string (format 1). Exact: every string encodeAttemptFacts writes reads back as
 * its facts; anything else is an error saying where it went wrong. A code it does not know (a
 * fact a newer controller added) is skipped.
 */
export function decodeAttemptFacts(text: string): AttemptFacts | { error: string } {
  if (!text.startsWith(ATTEMPT_FACTS_FORMAT)) {
    return { error: `the member facts are in format "${text.slice(0, 1)}", this AI extension reads format ${ATTEMPT_FACTS_FORMAT}: run the AI extension of the controller's Switchyard version` };
  }
  const facts: AttemptFacts = {};
  let at = ATTEMPT_FACTS_FORMAT.length;
  while (at < text.length) {
    const code = text.charAt(at);
    const bounds = readLength(text, at + 1);
    if (typeof bounds === 'string') return { error: `the member facts are malformed: ${bounds}` };
    at = bounds.end;
    const str = CODE_OF_STRING[code];
    if (str !== undefined) {
      facts[str] = text.slice(bounds.start, bounds.end);
      continue;
    }
    const num = CODE_OF_NUMBER[code];
    if (num !== undefined) {
      facts[num] = Number(text.slice(bounds.start, bounds.end));
      continue;
    }
    if (code === FACT_CODES.modelAliases) {
      const aliases = readAliases(text.slice(bounds.start, bounds.end));
      if (typeof aliases === 'string') return { error: `the member facts are malformed: ${aliases}` };
      facts.modelAliases = aliases;
    }
  }
  return facts;
}
