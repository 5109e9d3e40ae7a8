/**
 * The client's JSON body with only its top-level `model` changed, the rest of its bytes kept as
 * sent. Re-serializing the parsed body instead cost a second pass over every message of a long
 * chat on each attempt, and changed what the client wrote: integers past 2^53 lost digits,
 * escapes and number forms were rewritten.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;
/** `"model"`: the key as almost every client writes it (no escapes). */
const MODEL_KEY = Buffer.from('"model"');

function isSpace(b: number | undefined): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

function skipSpace(body: Buffer, at: number): number {
  let i = at;
  while (isSpace(body[i])) i++;
  return i;
}

/** Index just past the string whose opening quote is at `at`. Structural bytes are ASCII, so UTF-8 needs no decoding. */
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

/** Index just past the value that starts at `at` (after white space). */
function endOfValue(body: Buffer, at: number): number {
  if (body[at] === QUOTE) return endOfString(body, at);
  if (body[at] !== OPEN_BRACE && body[at] !== OPEN_BRACKET) {
    // A number or a literal: up to the next delimiter.
    let i = at;
    while (i < body.length && body[i] !== COMMA && body[i] !== CLOSE_BRACE && body[i] !== CLOSE_BRACKET && !isSpace(body[i])) i++;
    return i;
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

/** Whether the key string in body[start, end) reads `model`, escapes and all. */
function isModelKey(body: Buffer, start: number, end: number): boolean {
  if (end - start === MODEL_KEY.length && body.compare(MODEL_KEY, 0, MODEL_KEY.length, start, end) === 0) return true;
  if (body.indexOf(BACKSLASH, start) < 0 || body.indexOf(BACKSLASH, start) >= end) return false;
  try {
    return JSON.parse(body.toString('utf8', start, end)) === 'model';
  } catch {
    return false;
  }
}

/** How every letter of `model` starts when written as an escape (\u006d, \u006f, \u0064, \u0065, \u006c). */
const MODEL_LETTER_ESCAPE = Buffer.from('\\u006');

/**
 * The one place `"model"` appears as a key in `body`, when it appears exactly once and no key can
 * spell it with escapes. Inside a JSON string every quote is escaped, so an unescaped `"model"`
 * is a string token, and a key when a colon follows: a body that JSON.parse read with a
 * top-level model, and that holds one such key, holds it at the top level.
 */
function onlyModelKey(body: Buffer): number | undefined {
  if (body.includes(MODEL_LETTER_ESCAPE)) return undefined;
  let found: number | undefined;
  for (let at = body.indexOf(MODEL_KEY); at >= 0; at = body.indexOf(MODEL_KEY, at + MODEL_KEY.length)) {
    let backslashes = 0;
    while (body[at - 1 - backslashes] === BACKSLASH) backslashes++;
    if (backslashes % 2 === 1) continue;
    if (body[skipSpace(body, at + MODEL_KEY.length)] !== COLON) continue;
    if (found !== undefined) return undefined;
    found = at;
  }
  return found;
}

/**
 * `body` (a JSON object, already parsed whole by the caller, `hasModel` when it has a top-level
 * `model` key) with its top-level `model` set to `model`: the value of its last `model` key
 * replaced (JSON.parse keeps the last of duplicates, as does every provider's parser we know of),
 * or the key added first when it has none. Undefined when the bytes do not scan as one object
 * (the caller then serializes it itself).
 */
export function spliceModel(body: Buffer, model: string, hasModel = true): Buffer | undefined {
  const value = Buffer.from(JSON.stringify(model));
  if (hasModel) {
    // The usual body: one model key. Found without walking the messages, which are most of it.
    const key = onlyModelKey(body);
    if (key !== undefined) {
      const start = skipSpace(body, skipSpace(body, key + MODEL_KEY.length) + 1);
      const end = endOfValue(body, start);
      if (end > start) return Buffer.concat([body.subarray(0, start), value, body.subarray(end)]);
    }
  }
  let i = skipSpace(body, 0);
  if (body[i] !== OPEN_BRACE) return undefined;
  const open = i;
  i = skipSpace(body, i + 1);
  let found: { start: number; end: number } | undefined;
  if (body[i] !== CLOSE_BRACE) {
    for (;;) {
      if (body[i] !== QUOTE) return undefined;
      const keyEnd = endOfString(body, i);
      if (keyEnd < 0) return undefined;
      const isModel = isModelKey(body, i, keyEnd);
      i = skipSpace(body, keyEnd);
      if (body[i] !== COLON) return undefined;
      const start = skipSpace(body, i + 1);
      const end = endOfValue(body, start);
      if (end < 0) return undefined;
      if (isModel) found = { start, end };
      i = skipSpace(body, end);
      if (body[i] === CLOSE_BRACE) break;
      if (body[i] !== COMMA) return undefined;
      i = skipSpace(body, i + 1);
    }
  }
  if (skipSpace(body, i + 1) !== body.length) return undefined;
  if (found !== undefined) return Buffer.concat([body.subarray(0, found.start), value, body.subarray(found.end)]);
  const empty = body[skipSpace(body, open + 1)] === CLOSE_BRACE;
  return Buffer.concat([body.subarray(0, open + 1), MODEL_KEY, Buffer.of(COLON), value, ...(empty ? [] : [Buffer.of(COMMA)]), body.subarray(open + 1)]);
}
