/**
 * What an OpenAI-shaped attempt needs from the client's JSON body (its top-level `model`,
 * `stream` and `stream_options.include_usage`), read without parsing the messages, and the body
 * with only its `model` changed, the rest of its bytes kept as sent.
 *
 * Parsing the whole body and serializing it again cost most of the extension's CPU on a long
 * chat (a 256 KiB body: JSON.parse and the garbage of its objects were a third of the attempt),
 * and changed what the client wrote: integers past 2^53 lost digits, escapes and number forms
 * were rewritten.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

const KEYS = { model: Buffer.from('"model"'), stream: Buffer.from('"stream"'), stream_options: Buffer.from('"stream_options"') } as const;
type Key = keyof typeof KEYS;

function isSpace(b: number | undefined): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

function skipSpace(body: Buffer, at: number): number {
  let i = at;
  while (isSpace(body[i])) i++;
  return i;
}

/** Index just past the string whose opening quote is at `at`, or -1. Structural bytes are ASCII, so UTF-8 needs no decoding. */
function endOfString(body: Buffer, at: number): number {
  let i = at + 1;
  for (;;) {
    const quote = body.indexOf(QUOTE, i);
    if (quote < 0) return -1;
    let backslashes = 0;
    while (body[quote - 1 - backslashes] === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    i = quote + 1;
  }
}

/** Index just past the value that starts at `at`, or -1 when its strings or brackets do not close. */
function endOfValue(body: Buffer, at: number): number {
  const first = body[at];
  if (first === QUOTE) return endOfString(body, at);
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    // A number or a literal: up to the next delimiter.
    let i = at;
    while (i < body.length && body[i] !== COMMA && body[i] !== CLOSE_BRACE && body[i] !== CLOSE_BRACKET && !isSpace(body[i])) i++;
    return i > at ? i : -1;
  }
  let depth = 0;
  let i = at;
  while (i < body.length) {
    const b = body[i];
    if (b === QUOTE) {
      i = endOfString(body, i);
      if (i < 0) return -1;
      continue;
    }
    if (b === OPEN_BRACE || b === OPEN_BRACKET) depth++;
    else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
      depth--;
      if (depth === 0) return i + 1;
    }
    i++;
  }
  return -1;
}

/** Which wanted key the key string in body[start, end) is, escapes and all. */
function keyAt(body: Buffer, start: number, end: number): Key | undefined {
  for (const key of ['model', 'stream', 'stream_options'] as const) {
    const bytes = KEYS[key];
    if (end - start === bytes.length && body.compare(bytes, 0, bytes.length, start, end) === 0) return key;
  }
  const slash = body.indexOf(BACKSLASH, start);
  if (slash < 0 || slash >= end) return undefined;
  try {
    const name: unknown = JSON.parse(body.toString('utf8', start, end));
    return name === 'model' || name === 'stream' || name === 'stream_options' ? name : undefined;
  } catch {
    return undefined;
  }
}

interface Range {
  start: number;
  end: number;
}

export interface ChatFields {
  /** The top-level `model` (any JSON value), undefined when absent. */
  model: unknown;
  stream: boolean;
  includeUsage: boolean;
  /** Where the last top-level `model` value lies; absent when the body has none. */
  modelAt?: Range;
  /** Where the object's opening brace is, and whether it has no member. */
  open: number;
  empty: boolean;
}

function parseRange(body: Buffer, range: Range | undefined): unknown {
  if (range === undefined) return undefined;
  try {
    return JSON.parse(body.toString('utf8', range.start, range.end)) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The fields of a body that scans as one JSON object (the last of duplicate keys, as JSON.parse
 * reads them), else undefined: the body goes on as the client sent it. Values nested deeper
 * are skipped by their strings and brackets, not checked token by token: a body that is broken
 * only inside its messages has its model replaced like any other, and its provider refuses it
 * as it would have anyway.
 */
export function readChatFields(body: Buffer): ChatFields | undefined {
  let i = skipSpace(body, 0);
  if (body[i] !== OPEN_BRACE) return undefined;
  const open = i;
  i = skipSpace(body, i + 1);
  const empty = body[i] === CLOSE_BRACE;
  const found: Partial<Record<Key, Range>> = {};
  if (!empty) {
    for (;;) {
      if (body[i] !== QUOTE) return undefined;
      const keyEnd = endOfString(body, i);
      if (keyEnd < 0) return undefined;
      const key = keyAt(body, i, keyEnd);
      i = skipSpace(body, keyEnd);
      if (body[i] !== COLON) return undefined;
      const start = skipSpace(body, i + 1);
      const end = endOfValue(body, start);
      if (end < 0) return undefined;
      if (key !== undefined) found[key] = { start, end };
      i = skipSpace(body, end);
      if (body[i] === CLOSE_BRACE) break;
      if (body[i] !== COMMA) return undefined;
      i = skipSpace(body, i + 1);
    }
  }
  if (skipSpace(body, i + 1) !== body.length) return undefined;
  const options = parseRange(body, found.stream_options);
  const includeUsage = typeof options === 'object' && options !== null && !Array.isArray(options) && (options as Record<string, unknown>)['include_usage'] === true;
  return {
    model: parseRange(body, found.model),
    stream: parseRange(body, found.stream) === true,
    includeUsage,
    ...(found.model !== undefined ? { modelAt: found.model } : {}),
    open,
    empty,
  };
}

/** The body with its top-level `model` set: the value replaced where it lies, or the key added first. */
export function withModel(body: Buffer, fields: ChatFields, model: string): Buffer {
  const value = Buffer.from(JSON.stringify(model));
  const at = fields.modelAt;
  if (at !== undefined) return Buffer.concat([body.subarray(0, at.start), value, body.subarray(at.end)]);
  const head = Buffer.from(`${JSON.stringify('model')}:${value.toString('utf8')}${fields.empty ? '' : ','}`);
  return Buffer.concat([body.subarray(0, fields.open + 1), head, body.subarray(fields.open + 1)]);
}
