import { isAscii } from 'node:buffer';
import type { Hash } from 'node:crypto';
import { createHash, hash } from 'node:crypto';
import { readdir, realpath, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as JsYaml from 'js-yaml';
import type * as Yaml from 'yaml';
import { interned } from '../api/interned.js';
import type { KnownObject, Problem } from '../api/manifest.js';
import { parseManifest, SCHEMAS } from '../api/manifest.js';
import type { ObjectId } from '../api/meta.js';
import type { Inputs, InvalidObject } from '../translate/inputs.js';
import { addToInputs, emptyInputs, noteUnknownFields } from '../translate/inputs.js';
import { readBlockYaml } from './yaml-block.js';

/**
 * The two YAML packages, loaded the first time a document needs them: readBlockYaml reads most
 * manifests alone, and a serve that never needs them would keep them resident for nothing
 * (their code, sources and module records, about 1 MB; issue 9).
 */
const requireHere = createRequire(import.meta.url);
let jsYamlPackage: typeof JsYaml | undefined;
let yamlPackage: typeof Yaml | undefined;
const jsYaml = (): typeof JsYaml => (jsYamlPackage ??= requireHere('js-yaml') as typeof JsYaml);
const yaml = (): typeof Yaml => (yamlPackage ??= requireHere('yaml') as typeof Yaml);

/** What a provider hands to the pipeline: the inputs to translate and what is wrong with the sources. */
export interface Snapshot {
  inputs: Inputs;
  problems: Problem[];
}

/**
 * How much configuration file mode reads. Defaults:
 * - a document: 1.5 MiB, what etcd (and so a Kubernetes cluster) accepts for one object by
 *   default: whatever fits a cluster fits a file, and one runaway document cannot stall a reload;
 * - a file: 64 MiB: 10,000 multipool Backends (3 priorities x 2 members) with their 60,000
 *   Secrets and 10,000 HTTPRoutes are 37 MiB of YAML (bench/config-load.ts), so one file holds
 *   them with room to spare;
 * - everything under the path: 128 MiB, three and a half times that set. Loading costs a few
 *   times the input in memory (bench row "config load"), so this bounds the controller's memory.
 */
export interface ConfigLimits {
  documentBytes: number;
  fileBytes: number;
  totalBytes: number;
}

export const DEFAULT_CONFIG_LIMITS: Readonly<ConfigLimits> = {
  documentBytes: 1.5 * 1024 * 1024,
  fileBytes: 64 * 1024 * 1024,
  totalBytes: 128 * 1024 * 1024,
};

/** The `serve` and `translate` flag that raises each limit, named in every limit error. */
export const CONFIG_LIMIT_FLAGS: Readonly<Record<keyof ConfigLimits, string>> = {
  documentBytes: '--max-document-size',
  fileBytes: '--max-file-size',
  totalBytes: '--max-config-size',
};

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${Number((bytes / 1024 / 1024).toFixed(1))} MiB`;
  if (bytes >= 1024) return `${Number((bytes / 1024).toFixed(1))} KiB`;
  return `${bytes} bytes`;
}

/** The message of a limit error: what is too large, by how much, and which flag raises the limit. */
export function limitMessage(what: string, bytes: number, limit: keyof ConfigLimits, limits: ConfigLimits): string {
  return `${what} is ${formatBytes(bytes)}, more than the ${formatBytes(limits[limit])} allowed; split it, or raise the limit with ${CONFIG_LIMIT_FLAGS[limit]}`;
}

/**
 * What one document of a manifest file turned out to be. `source` is "<file>#<index from 0>".
 * `text`: a hash of the document's text, so the next parse of its file reuses this document
 * when its text is the same (see manifestDocuments); absent when it must be parsed again.
 */
export type ManifestDocument =
  /** `content`: a hash of everything but metadata and status, to tell a spec change (generation bump) from none. */
  | { state: 'object'; source: string; id: ObjectId; object: KnownObject; content: string; generation?: number; warnings: Problem[]; text?: string }
  | { state: 'invalid'; source: string; id?: ObjectId; problems: Problem[]; content: string; generation?: number; text?: string }
  | { state: 'syntax'; source: string; problems: Problem[] }
  | { state: 'ignored'; source: string; id?: ObjectId; reason: string; text?: string };

/** One manifest file as read: `name` is how it is shown to users and the order duplicates are judged by. */
export interface ManifestFile {
  name: string;
  documents: ManifestDocument[];
  /** Set when the file could not be read at all (permissions, a directory in its place). */
  readProblem?: Problem;
}

const MANIFEST_EXTENSION = /\.(ya?ml|json)$/i;

export interface ManifestTree {
  /** Absolute paths of the manifest files, in the order duplicates are judged by. */
  files: string[];
  /** Directories whose entries decide what the tree contains: the ones a watcher must watch. */
  directories: string[];
}

/**
 * Lists the manifests under `root` (a file, or a directory searched recursively).
 * Entries starting with "." are skipped: editors keep swap and backup files there, and a mounted
 * Kubernetes ConfigMap keeps the same files a second time under "..data" and "..<timestamp>".
 */
export async function listManifestTree(root: string): Promise<ManifestTree> {
  const info = await stat(root);
  if (!info.isDirectory()) return { files: [path.resolve(root)], directories: [path.dirname(path.resolve(root))] };
  const files: string[] = [];
  const directories: string[] = [];
  const seen = new Set<string>();
  async function walk(dir: string): Promise<void> {
    // A symlinked directory may point back up the tree; its real path is visited once.
    const real = await realpath(dir).catch(() => undefined);
    if (real === undefined || seen.has(real)) return;
    seen.add(real);
    directories.push(dir);
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const full = path.join(dir, entry.name);
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await stat(full).catch(() => undefined);
        isDir = target?.isDirectory() ?? false;
        isFile = target?.isFile() ?? false;
      }
      if (isDir) await walk(full);
      else if (isFile && MANIFEST_EXTENSION.test(entry.name)) files.push(full);
    }
  }
  await walk(path.resolve(root));
  files.sort(byCodeUnits);
  return { files, directories };
}

/** The name users see for a file: relative to `base` when inside it, so it can be opened as printed. */
export function displayName(file: string, base: string): string {
  const rel = path.relative(base, file);
  return rel === '' || rel.startsWith('..') || path.isAbsolute(rel) ? file : rel.split(path.sep).join('/');
}

/**
 * Splits a manifest file into documents and validates each one; a broken document never hides the others.
 * Documents are parsed one at a time (see yamlDocuments): a parsed YAML tree costs tens of times
 * its text, and only one is alive at once.
 * JSON files are read with JSON.parse, and, when that fails, with the YAML parser (JSON is YAML
 * 1.2) for the error: JSON.parse quotes the broken input in its message, and that may be a credential.
 */
export function parseManifestFile(name: string, content: string | Buffer, limits: ConfigLimits = DEFAULT_CONFIG_LIMITS, previous?: readonly ManifestDocument[]): ManifestDocument[] {
  return [...manifestDocuments(name, content, limits, previous)];
}

/**
 * parseManifestFile one document at a time, for a caller that yields to the event loop between them.
 * `previous`: the documents of the file's last parse. A document whose text is unchanged is not
 * parsed again: the previous document is given back (the very object when it kept its index, else
 * a copy naming its new index that holds the same validated object), so an edit to one document
 * of a large file parses that document alone, and translation sees the others unchanged.
 */
export function* manifestDocuments(name: string, content: string | Buffer, limits: ConfigLimits = DEFAULT_CONFIG_LIMITS, previous?: readonly ManifestDocument[]): Generator<ManifestDocument> {
  if (/\.json$/i.test(name)) {
    yield parseJsonDocument(interned(`${name}#0`), typeof content === 'string' ? content : content.toString('utf8'), limits);
    return;
  }
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  const state = { unsure: unsureBytes(bytes) };
  // The documents are split off as they are read, so a caller that pauses between documents
  // never waits for the split of a whole large file (a tenth of a second for 37 MiB). Only a
  // "..." line can make the split unsure past its start: a file with one is split in full first.
  let chunks: Iterable<ChunkBounds> = state.unsure ? [] : yamlChunkBounds(bytes, state);
  if (!state.unsure && hasDocumentEndLine(bytes)) chunks = [...chunks];
  if (state.unsure) {
    yield* wholeFileDocuments(name, bytes, limits);
    return;
  }
  const byText = reusableDocuments(previous);
  let index = 0;
  for (const { from, to, firstLine } of chunks) {
    const source = interned(`${name}#${index}`);
    const text = documentDigest(bytes.subarray(from, to));
    const before = previous?.[index];
    index++;
    if (before !== undefined && before.state !== 'syntax' && before.text === text && before.source === source) {
      yield before;
      continue;
    }
    const moved = byText?.get(text);
    if (moved !== undefined) {
      yield relocated(moved, source);
      continue;
    }
    const doc = parseYamlDocument(source, yamlChunk(bytes, from, to, firstLine), limits);
    if (doc.state === 'syntax' && to - from <= limits.documentBytes) {
      // A document that does not parse may be one the split cut wrong (a quote left open across
      // a marker line): from its start, the yaml package reads the rest of the file itself.
      yield* wholeFileDocuments(name, bytes.subarray(from), limits, index - 1, firstLine);
      return;
    }
    if (doc.state !== 'syntax') doc.text = text;
    yield doc;
  }
}

/** The documents of a previous parse that may be reused, by the hash of their text. */
function reusableDocuments(previous: readonly ManifestDocument[] | undefined): Map<string, ReusableDocument> | undefined {
  if (previous === undefined || previous.length === 0) return undefined;
  const byText = new Map<string, ReusableDocument>();
  for (const doc of previous) if (doc.state !== 'syntax' && doc.text !== undefined && !byText.has(doc.text)) byText.set(doc.text, doc);
  return byText;
}

type ReusableDocument = Exclude<ManifestDocument, { state: 'syntax' }>;

/** A reused document at another index: the same validated object, its problems naming the new index. */
function relocated(doc: ReusableDocument, source: string): ManifestDocument {
  const at = (p: Problem): Problem => (p.source === doc.source ? { ...p, source } : p);
  switch (doc.state) {
    case 'object':
      return { ...doc, source, warnings: doc.warnings.length > 0 ? doc.warnings.map(at) : doc.warnings };
    case 'invalid':
      return { ...doc, source, problems: doc.problems.map(at) };
    case 'ignored':
      return { ...doc, source };
  }
}

/**
 * The yaml package's own reading of a file (`bytes`: from a document start on, which is
 * document `index` and line `firstLine` of the file), one document at a time: for the files
 * whose document boundaries the text split cannot vouch for. Slower, never wrong.
 */
function* wholeFileDocuments(name: string, bytes: Buffer, limits: ConfigLimits, index = 0, firstLine = 1): Generator<ManifestDocument> {
  const text = bytes.toString('utf8');
  const { Composer, LineCounter, Parser } = yaml();
  const lineCounter = new LineCounter();
  const composer = new Composer({ prettyErrors: false });
  for (const doc of composer.compose(new Parser(lineCounter.addNewLine).parse(text))) {
    const source = interned(`${name}#${index++}`);
    const [start = 0, , end = text.length] = doc.range;
    const large = tooLarge(source, Buffer.byteLength(text.slice(start, end)), limits);
    yield large ?? documentFrom(source, doc, lineCounter, firstLine);
  }
}

function tooLarge(source: string, bytes: number, limits: ConfigLimits): ManifestDocument | undefined {
  if (bytes <= limits.documentBytes) return undefined;
  return { state: 'syntax', source, problems: [{ source, field: '', message: limitMessage('this document', bytes, 'documentBytes', limits) }] };
}

function parseJsonDocument(source: string, text: string, limits: ConfigLimits): ManifestDocument {
  const large = tooLarge(source, Buffer.byteLength(text), limits);
  if (large) return large;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return parseYamlDocument(source, { text, firstLine: 1 }, limits);
  }
  return classify(value, source);
}

function parseYamlDocument(source: string, chunk: YamlChunk, limits: ConfigLimits): ManifestDocument {
  const large = tooLarge(source, Buffer.byteLength(chunk.text), limits);
  if (large) return large;
  const quick = quickYamlValue(chunk.text, chunk.bytes);
  if (quick !== undefined) return classify(quick.value, source, quick.detached === true);
  const { LineCounter, parseDocument } = yaml();
  const lineCounter = new LineCounter();
  // prettyErrors would append the offending source line to messages, and that line may be a secret.
  const doc = parseDocument(chunk.text, { lineCounter, prettyErrors: false });
  return documentFrom(source, doc, lineCounter, chunk.firstLine);
}

/** A document as the yaml package parsed it; `firstLine`: the line of the file its text starts on. */
function documentFrom(source: string, doc: Yaml.Document.Parsed, lineCounter: Yaml.LineCounter, firstLine: number): ManifestDocument {
  const [first, ...more] = doc.errors;
  if (first) {
    const { line, col } = lineCounter.linePos(first.pos[0]);
    const extra = more.length > 0 ? ` (and ${more.length} more error${more.length > 1 ? 's' : ''} in this document)` : '';
    return { state: 'syntax', source, problems: [{ source, field: '', message: `YAML syntax error at line ${line + firstLine - 1}, column ${col}: ${first.message}${extra}` }] };
  }
  let value: unknown;
  try {
    value = doc.toJS();
  } catch (err) {
    // toJS throws on alias bombs ("Excessive alias count") and unresolvable aliases.
    return { state: 'syntax', source, problems: [{ source, field: '', message: `YAML error: ${err instanceof Error ? err.message : String(err)}` }] };
  }
  return classify(value, source);
}

/**
 * A document's value read by readBlockYaml when it is in that reader's subset (most manifests
 * are), else by js-yaml, several times faster than the yaml package; or undefined
 * when the yaml package must read it: whatever js-yaml refuses (syntax errors, aliases, deep
 * nesting), so that errors keep the yaml package's wording and line numbers, and what the two
 * read differently: tags and directives (%YAML 1.1 changes the schema), null keys (the yaml
 * package makes them "", js-yaml "null") and "__proto__" keys. Both read YAML 1.2's core schema
 * otherwise; the unit test manifest-yaml-readers compares them on generated documents.
 */
export function quickYamlValue(text: string, bytes?: Buffer): { value: unknown; detached?: boolean } | undefined {
  if (text.includes('!') || DIRECTIVE.test(text)) return undefined;
  const block = readBlockYaml(text, bytes);
  if (block !== undefined) return bytes === undefined ? block : { value: block.value, detached: true };
  if (INDENTED_MARKER.test(text)) return undefined;
  let value: unknown;
  try {
    const { CORE_SCHEMA, load } = jsYaml();
    value = load(text, { schema: CORE_SCHEMA, maxAliases: 0 });
  } catch {
    return undefined;
  }
  // A document that is not a mapping is an error the yaml package words (and js-yaml reads an
  // indented "---" as null where the yaml package reads the string "---").
  if (!isRecord(value) || hasNullKey(value)) return undefined;
  return { value };
}

const DIRECTIVE = /^%/m;
/**
 * An indented "---" (js-yaml reads it as a marker, the yaml package as text) or any "..." line
 * (js-yaml reads on past it, the yaml package sees a second document). The split never hands
 * a document with a "..." line here but for a file read whole, and those go to the yaml package.
 */
const INDENTED_MARKER = /^(?:[ \t]+---|[ \t]*\.\.\.)/m;

function hasNullKey(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasNullKey);
  if (!isRecord(value)) return false;
  for (const key of Object.keys(value)) if (key === 'null' || key === '__proto__' || hasNullKey(value[key])) return true;
  return false;
}

/**
 * One YAML document's text and the line of the file it starts on (from 1); `bytes`, when the
 * text is ASCII: its bytes, one per character, which the block reader decodes its strings from.
 */
interface YamlChunk {
  text: string;
  firstLine: number;
  bytes?: Buffer;
}

function yamlChunk(bytes: Buffer, from: number, to: number, firstLine: number): YamlChunk {
  const own = bytes.subarray(from, to);
  // A byte past ASCII may start a character of several bytes, or be invalid UTF-8 (read as U+FFFD).
  if (isAscii(own)) return { text: bytes.toString('latin1', from, to), firstLine, bytes: own };
  return { text: bytes.toString('utf8', from, to), firstLine };
}

const DOCUMENT_START = /^---(?:[ \t]|$)/;
const DOCUMENT_END = /^\.\.\.(?:[ \t]|$)/;
const NOTHING = /^(?:[ \t]*(?:#.*)?)$/;
const NEWLINE = 0x0a;
const DASH = 0x2d;
const DOT = 0x2e;

/** Where one document of a file is: byte offsets, and the line it starts on (from 1). */
interface ChunkBounds {
  from: number;
  to: number;
  firstLine: number;
}

const BYTE_ORDER_MARK = Buffer.from([0xef, 0xbb, 0xbf]);
const CARRIAGE_RETURN = 0x0d;

/**
 * Splits YAML into documents at the marker lines "---" and "..." in column 0, which YAML
 * forbids inside any scalar (c-forbidden), so a split there never cuts a value. What counts as a
 * document is what the yaml package's parseAllDocuments counts: text after an explicit "---",
 * or any text with content; comments and directives alone are not a document.
 * Works on the file's bytes: only each document is decoded to a string, never the whole file.
 * `unsure`: the text holds what this line model does not follow the yaml package's lexer on
 * (a byte order mark past the file's start, which it skips at a document's start; a carriage
 * return alone, which ends a line for it; "..." outside a document, which opens an empty one):
 * the caller parses the whole file with the yaml package instead.
 */
export function splitYaml(bytes: Buffer): { chunks: ChunkBounds[]; unsure: boolean } {
  const state = { unsure: unsureBytes(bytes) };
  const chunks = state.unsure ? [] : [...yamlChunkBounds(bytes, state)];
  return { chunks, unsure: state.unsure };
}

/** The byte order mark editors put at the start of a file is dropped, as the yaml package does. */
function byteOrderMarkLength(bytes: Buffer): number {
  return bytes.subarray(0, 3).equals(BYTE_ORDER_MARK) ? 3 : 0;
}

/** What makes splitYaml unsure of a file before it reads a line: a byte order mark past the start, a carriage return alone. */
function unsureBytes(bytes: Buffer): boolean {
  if (bytes.includes(BYTE_ORDER_MARK, byteOrderMarkLength(bytes))) return true;
  for (let cr = bytes.indexOf(CARRIAGE_RETURN); cr !== -1; cr = bytes.indexOf(CARRIAGE_RETURN, cr + 1)) {
    if (bytes[cr + 1] !== NEWLINE) return true;
  }
  return false;
}

const DOCUMENT_END_LINE = Buffer.from('\n...');

/** Whether a line starts with "...", the one thing that can make splitYaml unsure once it has started. */
function hasDocumentEndLine(bytes: Buffer): boolean {
  const bom = byteOrderMarkLength(bytes);
  return bytes.includes(DOCUMENT_END_LINE) || (bytes[bom] === DOT && bytes[bom + 1] === DOT && bytes[bom + 2] === DOT);
}

/**
 * splitYaml's documents, one at a time, for bytes unsureBytes passed; stops, setting
 * `state.unsure`, at a "..." line outside a document.
 */
function* yamlChunkBounds(bytes: Buffer, state: { unsure: boolean }): Generator<ChunkBounds> {
  const bom = byteOrderMarkLength(bytes);
  let unsure = false;
  let start = bom;
  let startLine = 1;
  let explicit = false;
  let content = false;
  let line = 1;
  let pos = bom;
  while (pos <= bytes.length && !unsure) {
    const newline = bytes.indexOf(NEWLINE, pos);
    const end = newline === -1 ? bytes.length : newline;
    const next = newline === -1 ? bytes.length + 1 : newline + 1;
    const lead = bytes[pos];
    // Inside a document only marker lines matter: the rest is not decoded here.
    if (!content || lead === DASH || lead === DOT) {
      const current = bytes.toString('latin1', pos, end).replace(/\r$/, '');
      if (DOCUMENT_START.test(current)) {
        if (explicit || content) {
          yield { from: start, to: pos, firstLine: startLine };
          start = pos;
          startLine = line;
        }
        // Otherwise directives (%YAML, %TAG) and comments before the marker belong to this document.
        explicit = true;
        const rest = current.slice(3).trim();
        content = rest !== '' && !rest.startsWith('#');
      } else if (DOCUMENT_END.test(current)) {
        if (!explicit && !content) {
          unsure = true;
          state.unsure = true;
        } else yield { from: start, to: Math.min(next, bytes.length), firstLine: startLine };
        start = Math.min(next, bytes.length);
        startLine = line + 1;
        explicit = false;
        content = false;
      } else if (!content && !NOTHING.test(current) && !current.startsWith('%')) {
        content = true;
      }
    }
    pos = next;
    line++;
  }
  if (explicit || content) yield { from: start, to: bytes.length, firstLine: startLine };
}

/** splitYaml's documents as text (for a file it is unsure of, its best guess). */
export function* yamlDocuments(source: string | Buffer): Generator<YamlChunk> {
  const bytes = typeof source === 'string' ? Buffer.from(source, 'utf8') : source;
  for (const { from, to, firstLine } of splitYaml(bytes).chunks) yield { text: bytes.toString('utf8', from, to), firstLine };
}

/**
 * `text` or an equal string met lately: for strings that keep no document text alive (the block
 * reader decodes them from the file's bytes), the repeats of a configuration (namespaces, kinds,
 * models, a Secret's name in the Backend after it) are what interning would save, and adding each
 * new string to V8's table of internalized strings was a sixth of the first load's CPU.
 */
function deduplicated(text: string): string {
  const slot = recentSlot(text);
  const recent = RECENT_STRINGS[slot];
  if (recent === text) return recent;
  RECENT_STRINGS[slot] = text;
  return text;
}

/**
 * A string's slot among the recent ones: a hash of every character of a short string (of 32 at
 * most of a longer one). Three characters were not enough: "p0-m0", "p1-m0" and "p2-m0" (member
 * names, and the Secret names made of them) took turns in one slot, and each of 60,000 members
 * kept its own copy of its name.
 */
function recentSlot(text: string): number {
  const length = text.length;
  const step = length <= 32 ? 1 : length >> 5;
  let h = length;
  for (let i = 0; i < length; i += step) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h ^= h >>> 15;
  return h & (RECENT_STRINGS.length - 1);
}

/** Strings deduplicated lately, by a hash of their length and three of their characters. */
const RECENT_STRINGS: (string | undefined)[] = new Array<string | undefined>(4096).fill(undefined);


/**
 * Replaces, in place, every string of a freshly validated object by its internalized copy (see
 * interned), or, for strings that hold no document text (`detached`), by an equal one met lately.
 */
function internStrings(value: unknown, detached = false): void {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (typeof item === 'string') value[i] = detached ? deduplicated(item) : interned(item);
      else internStrings(item, detached);
    }
    return;
  }
  if (!isRecord(value)) return;
  for (const key of Object.keys(value)) {
    const item = value[key];
    if (typeof item === 'string') value[key] = detached ? deduplicated(item) : interned(item);
    else internStrings(item, detached);
  }
}

/** The kinds' names as the schemas' keys spell them: property keys, interned already. */
const KIND_NAMES: ReadonlyMap<string, string> = new Map(Object.keys(SCHEMAS).map((k) => [k, k]));

function internedKind(kind: string): string {
  return KIND_NAMES.get(kind) ?? interned(kind);
}

/** Shared by every document without warnings: one empty array, not one per document. */
const NO_PROBLEMS: Problem[] = [];

/** `detached`: the value's strings hold no document text (see YamlChunk). */
function classify(value: unknown, source: string, detached = false): ManifestDocument {
  const result = parseManifest(value, source);
  if (result.ok === 'ignored') return { state: 'ignored', source, reason: result.reason, ...(result.id ? { id: result.id } : {}) };
  const content = specContent(value);
  const generation = declaredGeneration(value);
  const gen = generation === undefined ? {} : { generation };
  if (result.ok) {
    internStrings(result.object.value, detached);
    // The id's namespace and name are the object's own, interned just now; its kind one of a few.
    const { metadata } = result.object.value;
    const id: ObjectId = { kind: internedKind(result.id.kind), namespace: metadata.namespace, name: metadata.name };
    return { state: 'object', source, id, object: result.object, content, warnings: result.warnings.length > 0 ? result.warnings : NO_PROBLEMS, ...gen };
  }
  return { state: 'invalid', source, problems: result.problems, content, ...(result.id ? { id: result.id } : {}), ...gen };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Everything but metadata and status (what Kubernetes bumps `metadata.generation` for), hashed: the text would double the memory a configuration costs. */
function specContent(value: unknown): string {
  // One document's canonical text is small: built whole and hashed once, it costs half of
  // canonicalHash's piecewise writes (the same bytes are hashed either way).
  return documentDigest(canonicalJson(specOf(value)));
}

/**
 * What tells one version of a document's text, or of its spec, from another: kept per document,
 * twice, so kept short. The first 96 bits of SHA-1, one character per byte ('binary', latin1) straight
 * from the hash: 12 characters are a string of 32 bytes in V8's heap, where the base64 of the
 * whole digest took 48 (160,000 digests at 10,000 Backends). A cut shorter than 13 characters
 * is a copy, never a slice that keeps the longer string alive; a digest cut from a Buffer costs
 * a Buffer per call. The texts are the user's own files: what is needed is no accidental
 * collision (96 bits are ample), not resistance to an attacker (who could edit the file).
 */
function documentDigest(data: Buffer | string): string {
  return hash('sha1', data, 'binary').slice(0, 12);
}

/** A document without metadata and status; the keys are not copied when there are none to drop. */
function specOf(value: unknown): unknown {
  if (!isRecord(value)) return { value };
  if (!('metadata' in value) && !('status' in value)) return value;
  const { metadata: _metadata, status: _status, ...rest } = value;
  return rest;
}

/**
 * A hash of canonicalJson(value), computed without building that text: for a whole snapshot it
 * is as large as the configuration, and a fingerprint must not cost a copy of it.
 */
export function canonicalDigest(value: unknown): string {
  return canonicalHash(value).digest('base64');
}

function canonicalHash(value: unknown): Hash {
  const hash = createHash('sha256');
  let pending = '';
  const write = (piece: string): void => {
    pending += piece;
    if (pending.length >= 65_536) {
      hash.update(pending);
      pending = '';
    }
  };
  const visit = (v: unknown): void => {
    if (v === null || typeof v !== 'object') {
      write(JSON.stringify(v) ?? 'null');
      return;
    }
    if (Array.isArray(v)) {
      write('[');
      v.forEach((item, i) => {
        if (i > 0) write(',');
        visit(item === undefined || typeof item === 'function' ? null : item);
      });
      write(']');
      return;
    }
    if (v instanceof Date) {
      write(JSON.stringify(v));
      return;
    }
    write('{');
    let first = true;
    const record = v as Record<string, unknown>;
    for (const key of Object.keys(record).sort(byCodeUnits)) {
      const item = record[key];
      if (item === undefined || typeof item === 'function') continue;
      write(`${first ? '' : ','}${JSON.stringify(key)}:`);
      first = false;
      visit(item);
    }
    write('}');
  };
  visit(value);
  hash.update(pending);
  return hash;
}

function declaredGeneration(value: unknown): number | undefined {
  if (!isRecord(value) || !isRecord(value.metadata)) return undefined;
  const g = value.metadata.generation;
  return typeof g === 'number' && Number.isInteger(g) ? g : undefined;
}

/**
 * JSON with sorted keys, so reordering keys in a file is not a change. The text is
 * JSON.stringify's with every object's keys sorted (array-index keys first, in numeric order, as
 * an object holding them enumerates them; then by code units), written directly: a replacer
 * that builds a sorted copy of each object cost a tenth of the first load of 10,000 Backends.
 * test/property/canonical-json checks it against that replacer on generated values.
 */
export function canonicalJson(value: unknown): string {
  // JSON.stringify's result for undefined, functions and symbols, typed as its declaration is.
  return canonicalText(value) ?? (JSON.stringify(value) as string);
}

/** canonicalJson of one value; undefined for what JSON.stringify leaves out (undefined, functions, symbols). */
function canonicalText(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return Number.isFinite(v) ? String(v) : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object': {
      if (v === null) return 'null';
      if (Array.isArray(v)) {
        let out = '[';
        for (let i = 0; i < v.length; i++) out += `${i > 0 ? ',' : ''}${canonicalText(v[i]) ?? 'null'}`;
        return `${out}]`;
      }
      if (!isPlainData(v)) return JSON.stringify(v, sortedKeysReplacer);
      const record = v as Record<string, unknown>;
      const keys = Object.keys(record);
      // Own keys list array indices first: when the first is not one, none is, and the default
      // sort compares code units natively.
      if (keys.length > 1) keys.sort(isArrayIndex(keys[0] as string) ? byEnumerationOrder : undefined);
      let out = '{';
      let first = true;
      for (const key of keys) {
        // A sorted copy made by assignment would take "__proto__" as its prototype: it never appeared.
        if (key === '__proto__') continue;
        const item = canonicalText(record[key]);
        if (item === undefined) continue;
        out += `${first ? '' : ','}${quotedKey(key)}:${item}`;
        first = false;
      }
      return `${out}}`;
    }
    case 'bigint':
      // Throws, as JSON.stringify does.
      return JSON.stringify(v);
    default:
      return undefined;
  }
}

/** JSON.stringify(key), remembered: manifests use a few hundred keys, 80,000 times over at 10,000 Backends. */
function quotedKey(key: string): string {
  let quoted = QUOTED_KEYS.get(key);
  if (quoted === undefined) {
    quoted = JSON.stringify(key);
    // Bounded: record keys (labels, model aliases) are the user's, and may be many.
    if (QUOTED_KEYS.size < 4096) QUOTED_KEYS.set(key, quoted);
  }
  return quoted;
}

const QUOTED_KEYS = new Map<string, string>();

/** A plain object JSON.stringify would write as its own keys (no toJSON, no class of its own). */
function isPlainData(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return (proto === Object.prototype || proto === null) && typeof (v as { toJSON?: unknown }).toJSON !== 'function';
}

/** canonicalJson for values of other shapes (Dates, class instances): JSON.stringify with a sorted copy of each object. */
function sortedKeysReplacer(_key: string, v: unknown): unknown {
  if (!isRecord(v)) return v;
  const sorted: Record<string, unknown> = {};
  for (const k of Object.keys(v).sort(byCodeUnits)) sorted[k] = v[k];
  return sorted;
}

/** The order an object built by inserting keys sorted by code units enumerates them in: array indices first, numerically. */
function byEnumerationOrder(a: string, b: string): number {
  const ia = isArrayIndex(a);
  const ib = isArrayIndex(b);
  if (ia && ib) return Number(a) - Number(b);
  if (ia !== ib) return ia ? -1 : 1;
  return byCodeUnits(a, b);
}

const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

function isArrayIndex(key: string): boolean {
  const c = key.charCodeAt(0);
  return c >= 0x30 && c <= 0x39 && ARRAY_INDEX.test(key) && Number(key) < 4294967295;
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Interned: the key is kept in three maps per object, and a concatenation would keep its pieces too. */
function keyOf(id: ObjectId): string {
  return interned(`${id.kind}/${id.namespace}/${id.name}`);
}

function describe(id: ObjectId): string {
  return `${id.kind} ${id.namespace ? `${id.namespace}/` : ''}${id.name}`;
}

/** A definition of a valid object: what an object is served from. */
type ServedDefinition = Definition & { doc: Extract<ManifestDocument, { state: 'object' }> };

/** Everything the store keeps of one object. */
interface ObjectEntry {
  /**
   * Every definition, in no particular order (see definitionsOf): the definition itself when it
   * is the only one, as nearly every object's is (a list of one per object cost 4 MiB over
   * 80,000 objects).
   */
  definitions: Definition | Definition[] | undefined;
  /** The generation last given to it (none yet: undefined), and the spec (ManifestDocument content) it was given for. */
  generation: number | undefined;
  content: string;
  /**
   * What the object serves: its valid definition, else its last valid version (the last good),
   * else nothing; its document's object is what `object` was stamped from (while a file is
   * unchanged, it is the same object, and so is `object`). Kept in the entry, not in a record of
   * its own: a record per object cost 6 MiB at 10,000 Backends.
   */
  served: ServedDefinition | undefined;
  object: KnownObject | undefined;
  servedGeneration: number;
}

/** A document that defines an object, the file it is in and its index there (the document itself is not copied: there is one per object). */
interface Definition {
  doc: Extract<ManifestDocument, { state: 'object' | 'invalid' }>;
  id: ObjectId;
  key: string;
  file: string;
  index: number;
}

/** What one file contributes to a snapshot, kept while the file is the same (its documents the same array). */
interface FileContribution {
  documents: readonly ManifestDocument[];
  readProblem: Problem | undefined;
  /** Its read problem, syntax errors and invalid documents, in document order. */
  problems: Problem[];
  /** Set when the file is broken (unreadable, or a document with a syntax error): what is wrong with it. */
  broken: Problem[] | undefined;
  definitions: Definition[];
}

/** The Inputs list of each kind. */
type ObjectLists = Omit<Inputs, 'invalid' | 'unknownFields'>;

/**
 * Turns successive reads of the manifest files into Inputs snapshots. It remembers, across reads,
 * the last valid version of every object (so a bad edit does not take a working Backend offline)
 * and each object's generation (so statuses can carry observedGeneration).
 * A build costs what changed: the files whose documents are not the same array as last time
 * are compared document by document, and only the objects they define, or defined, are decided
 * again; the rest of the snapshot is the last one's.
 */
export class ManifestStore {
  /**
   * What the store knows of each object, by key: one record in one map (four maps of 80,000
   * entries each, and a record per object for its generation, cost 10 MiB at 10,000 Backends).
   */
  private readonly entries = new Map<string, ObjectEntry>();
  private readonly files = new Map<string, FileContribution>();
  /** Objects served from a broken file that defines them no more (see decide). */
  private readonly held = new Set<string>();
  private readonly invalid = new Map<string, InvalidObject>();
  /** The problems of the definitions that lost to another, by object. */
  private readonly duplicates = new Map<string, Problem[]>();
  /** The unknown-field warnings of the served definition, by object. */
  private readonly warnings = new Map<string, { id: ObjectId; warnings: Problem[] }>();
  /**
   * The keys of the objects served, sorted. Keys start with their kind, so each kind's keys are
   * a run of this list, in the order of that kind's list (see indexInList).
   */
  private order: string[] = [];
  private lists: ObjectLists = emptyInputs();
  private invalidList: InvalidObject[] = [];

  /** `files` must be sorted by name: of several definitions of an object, the one served so far wins, else the first. */
  build(files: readonly ManifestFile[]): Snapshot {
    const steps = this.building(files);
    for (;;) {
      const step = steps.next();
      if (step.done === true) return step.value;
    }
  }

  /**
   * build, giving the event loop a turn whenever `sliceMs` of work have passed: the first build
   * of 10,000 Backends (80,000 objects) is half a second of work, which must not hold up xDS
   * streams, health probes and timers. Builds must not overlap (the file provider's reloads
   * never do): the store is half updated while one waits.
   */
  async buildYielding(files: readonly ManifestFile[], sliceMs = BUILD_SLICE_MS): Promise<Snapshot> {
    const steps = this.building(files);
    let sliceStart = performance.now();
    for (;;) {
      const step = steps.next();
      if (step.done === true) return step.value;
      if (performance.now() - sliceStart >= sliceMs) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
    }
  }

  /** The work of a build, pausing (yield) every BUILD_STEP objects so that a caller may let others run. */
  private *building(files: readonly ManifestFile[]): Generator<void, Snapshot> {
    let steps = 0;
    const position = new Map<string, number>();
    files.forEach((file, i) => position.set(file.name, i));
    const affected = new Set<string>();
    for (const [name, contribution] of this.files) {
      if (position.has(name)) continue;
      this.files.delete(name);
      this.forget(name, contribution.definitions, new Set(), affected);
    }
    for (const file of files) {
      const before = this.files.get(file.name);
      if (before !== undefined && before.documents === file.documents && before.readProblem === file.readProblem) continue;
      const contribution = yield* contributionOf(file, before);
      this.files.set(file.name, contribution);
      const kept = new Set<ManifestDocument>();
      const previous = new Set(before?.definitions);
      for (const definition of contribution.definitions) {
        if (++steps % BUILD_STEP === 0) yield;
        if (previous.has(definition)) {
          kept.add(definition.doc);
          continue;
        }
        const entry = this.entry(definition.key);
        const had = entry.definitions;
        if (had === undefined) entry.definitions = definition;
        // A literal of two: a list grown by push from empty keeps room for 17.
        else if (!Array.isArray(had)) entry.definitions = [had, definition];
        else had.push(definition);
        affected.add(definition.key);
      }
      this.forget(file.name, before?.definitions ?? [], kept, affected);
    }

    // Why a duplicate's winner wins depends on what was served at the last build ("served first"
    // once it has been): objects defined twice are decided at every build. They are few.
    for (const key of this.duplicates.keys()) affected.add(key);

    const replaced: string[] = [];
    let membershipChanged = false;
    const invalidBefore = this.invalid.size;
    let invalidChanged = false;
    for (const key of affected) {
      if (++steps % BUILD_STEP === 0) yield;
      const was = this.entries.get(key)?.object;
      const wasInvalid = this.invalid.get(key);
      this.decide(key, position);
      const now = this.entries.get(key)?.object;
      if ((was === undefined) !== (now === undefined)) membershipChanged = true;
      else if (was !== now) replaced.push(key);
      if (wasInvalid !== this.invalid.get(key)) invalidChanged = true;
    }
    if (invalidChanged || invalidBefore !== this.invalid.size) this.invalidList = [...this.invalid.keys()].sort(byCodeUnits).map((k) => this.invalid.get(k) as InvalidObject);

    if (membershipChanged) yield* this.relist(affected);
    else if (replaced.length > 0) {
      const lists = copyLists(this.lists);
      for (const key of replaced) {
        const object = this.entries.get(key)?.object as KnownObject;
        setInList(lists, object, this.indexInList(key, object.kind));
      }
      this.lists = lists;
    }

    const inputs: Inputs = { ...copyLists(this.lists), invalid: [...this.invalidList] };
    const problems: Problem[] = [];
    for (const file of files) problems.push(...(this.files.get(file.name) as FileContribution).problems);
    for (const key of this.byFirstDefinition(this.duplicates.keys(), position)) problems.push(...(this.duplicates.get(key) as Problem[]));
    for (const key of this.byFirstDefinition(this.warnings.keys(), position)) {
      const { id, warnings } = this.warnings.get(key) as { id: ObjectId; warnings: Problem[] };
      problems.push(...warnings);
      noteUnknownFields(inputs, id, warnings);
    }
    return { inputs, problems };
  }

  /** Drops a file's definitions but those `kept`; what they defined, and what the file served without defining it, is decided again. */
  private forget(file: string, definitions: readonly Definition[], kept: ReadonlySet<ManifestDocument>, affected: Set<string>): void {
    for (const definition of definitions) {
      if (kept.has(definition.doc)) continue;
      const rest = this.listOfDefinitions(definition.key).filter((d) => d !== definition);
      const entry = this.entries.get(definition.key);
      if (entry !== undefined) entry.definitions = rest.length > 1 ? rest : rest[0];
      affected.add(definition.key);
    }
    for (const key of this.held) if (this.entries.get(key)?.served?.file === file) affected.add(key);
  }

  /** What is served for one object, and what is said about it, from its definitions. */
  private decide(key: string, position: ReadonlyMap<string, number>): void {
    const list = this.definitionsOf(key, position);
    if (list.length === 0) {
      this.duplicates.delete(key);
      this.warnings.delete(key);
      // A syntax error can hide which objects a document defines. Objects last loaded from a file
      // that is now broken keep being served: a half-saved file must not take routes offline.
      const entry = this.entries.get(key);
      const prev = entry?.served;
      const broken = prev === undefined ? undefined : this.files.get(prev.file)?.broken;
      if (entry !== undefined && prev !== undefined && broken !== undefined) {
        this.held.add(key);
        this.invalid.set(key, { ...prev.id, generation: entry.servedGeneration, problems: broken, servingLastGood: true });
        return;
      }
      // Objects no file defines any more are gone: a later object of the same name starts afresh.
      this.held.delete(key);
      this.entries.delete(key);
      this.invalid.delete(key);
      return;
    }
    this.held.delete(key);
    const chosen = this.chooseDefinition(key, list);
    if (list.length > 1) {
      const problems: Problem[] = [];
      for (const other of list) {
        if (other === chosen.winner) continue;
        problems.push({
          source: other.doc.source,
          object: other.id,
          field: 'metadata.name',
          message: `${describe(other.id)} is defined in both ${other.file} (${other.doc.source}) and ${chosen.winner.file} (${chosen.winner.doc.source}); ${chosen.why}, and this definition is ignored. Remove one of them or give it another name`,
        });
      }
      this.duplicates.set(key, problems);
    } else this.duplicates.delete(key);

    const winner = chosen.winner;
    const { doc: def, file, id } = winner;
    const generation = this.nextGeneration(key, def.content, def.generation);
    if (def.state === 'object') {
      if (def.warnings.length > 0) this.warnings.set(key, { id, warnings: def.warnings });
      else this.warnings.delete(key);
      // The same object as last time when nothing changed, so translation can skip it by reference.
      const entry = this.entry(key);
      const before = entry.served;
      if (before === undefined || entry.servedGeneration !== generation || before.file !== file || !sameObject(before.doc, def)) {
        entry.served = winner as ServedDefinition;
        entry.object = stamped(def.object, generation);
        entry.servedGeneration = generation;
      }
      this.invalid.delete(key);
      return;
    }
    this.warnings.delete(key);
    // An invalid definition leaves what is served as it is: the last good version, if any.
    const good = this.entries.get(key)?.served;
    const previous = this.invalid.get(key);
    // The same record when nothing changed, so the sorted list is not rebuilt for nothing.
    if (previous === undefined || previous.generation !== generation || previous.problems !== def.problems || previous.servingLastGood !== (good !== undefined)) {
      this.invalid.set(key, { ...id, generation, problems: def.problems, servingLastGood: good !== undefined });
    }
  }

  /** An object's definitions in file path order, then document order. */
  private definitionsOf(key: string, position: ReadonlyMap<string, number>): Definition[] {
    const list = this.listOfDefinitions(key);
    if (list.length > 1) list.sort((a, b) => (position.get(a.file) ?? 0) - (position.get(b.file) ?? 0) || a.index - b.index);
    return list;
  }

  /** An object's definitions as a list: the stored list itself when there are several (definitionsOf sorts it in place). */
  private listOfDefinitions(key: string): Definition[] {
    const had = this.entries.get(key)?.definitions;
    if (had === undefined) return [];
    return Array.isArray(had) ? had : [had];
  }

  /** Keys in the order their first definitions come in the files (how problems were always listed). */
  private byFirstDefinition(keys: Iterable<string>, position: ReadonlyMap<string, number>): string[] {
    const first = (key: string): Definition | undefined => this.definitionsOf(key, position)[0];
    return [...keys].sort((a, b) => {
      const da = first(a);
      const db = first(b);
      if (da === undefined || db === undefined) return byCodeUnits(a, b);
      return (position.get(da.file) ?? 0) - (position.get(db.file) ?? 0) || da.index - db.index;
    });
  }

  /** Rebuilds the lists of every kind, after objects came or went. */
  private *relist(affected: ReadonlySet<string>): Generator<void, void> {
    const isServed = (k: string): boolean => this.entries.get(k)?.object !== undefined;
    const gone = this.order.filter((k) => !isServed(k));
    const listed = (k: string): boolean => this.order[sortedIndex(this.order, k)] === k;
    const added = [...affected].filter((k) => isServed(k) && !listed(k));
    // A few objects more or less are put in place; many are sorted with the rest.
    if (gone.length + added.length > 64) {
      yield;
      const order: string[] = [];
      for (const [key, entry] of this.entries) if (entry.object !== undefined) order.push(key);
      this.order = order.sort(byCodeUnits);
      yield;
    }
    else {
      const order = gone.length > 0 ? this.order.filter(isServed) : [...this.order];
      for (const key of added) order.splice(sortedIndex(order, key), 0, key);
      this.order = order;
    }
    const lists = emptyInputs();
    let steps = 0;
    for (const key of this.order) {
      if (++steps % BUILD_STEP === 0) yield;
      addToInputs(lists, this.entries.get(key)?.object as KnownObject);
    }
    this.lists = lists;
  }

  /**
   * Where a served object is in its kind's list: its place among the sorted keys, less that of
   * its kind's first key (every key of a kind starts with "<kind>/", so they are a run of the
   * sorted keys, in the order relist filed them in).
   */
  private indexInList(key: string, kind: string): number {
    return sortedIndex(this.order, key) - sortedIndex(this.order, `${kind}/`);
  }

  /** The entry of an object, made when the store first hears of it. */
  private entry(key: string): ObjectEntry {
    let entry = this.entries.get(key);
    if (entry === undefined) {
      entry = { definitions: undefined, generation: undefined, content: '', served: undefined, object: undefined, servedGeneration: 0 };
      this.entries.set(key, entry);
    }
    return entry;
  }

  /**
   * Which of several definitions of one object is used. A new file must not take over an object
   * another file serves (it would change what runs without anyone editing that file): the
   * definition in the file that serves the object wins; on first sight, the first by file path.
   */
  private chooseDefinition(key: string, list: readonly Definition[]): { winner: Definition; why: string } {
    const first = list[0] as Definition;
    if (list.length === 1) return { winner: first, why: '' };
    const servedFrom = this.entries.get(key)?.served?.file;
    const incumbent = servedFrom === undefined ? undefined : list.find((d) => d.file === servedFrom);
    if (incumbent !== undefined) return { winner: incumbent, why: `the definition at ${incumbent.doc.source} was served first and keeps being served` };
    return { winner: first, why: `the definition at ${first.doc.source} is used (first by file path, then document index)` };
  }

  private nextGeneration(key: string, content: string, declared: number | undefined): number {
    const entry = this.entry(key);
    const prev = entry.generation;
    let generation: number;
    if (declared !== undefined) generation = declared;
    else if (prev === undefined) generation = 1;
    else generation = entry.content === content ? prev : prev + 1;
    entry.generation = generation;
    entry.content = content;
    return generation;
  }
}

/** Objects handled between two points where a build may pause: a few milliseconds of work. */
const BUILD_STEP = 1024;
/** How long buildYielding works before it gives the event loop a turn. */
const BUILD_SLICE_MS = 20;

/** A file's definitions and problems; a document defined before keeps its Definition, so it is recognised as unchanged. */
function* contributionOf(file: ManifestFile, before: FileContribution | undefined): Generator<void, FileContribution> {
  const known = new Map<ManifestDocument, Definition>();
  for (const d of before?.definitions ?? []) known.set(d.doc, d);
  const problems: Problem[] = [];
  let broken: Problem[] | undefined;
  if (file.readProblem) {
    problems.push(file.readProblem);
    broken = [file.readProblem];
  }
  const definitions: Definition[] = [];
  for (let index = 0; index < file.documents.length; index++) {
    if ((index + 1) % BUILD_STEP === 0) yield;
    const doc = file.documents[index] as ManifestDocument;
    if (doc.state === 'ignored') continue;
    if (doc.state === 'syntax') {
      problems.push(...doc.problems);
      broken = [...(broken ?? []), ...doc.problems];
      continue;
    }
    if (doc.state === 'invalid') problems.push(...doc.problems);
    if (!doc.id) continue;
    definitions.push(known.get(doc) ?? { doc, id: doc.id, key: keyOf(doc.id), file: file.name, index });
  }
  return { documents: file.documents, readProblem: file.readProblem, problems, broken, definitions };
}

function copyLists(lists: ObjectLists): ObjectLists {
  return {
    gatewayClasses: [...lists.gatewayClasses],
    gateways: [...lists.gateways],
    httpRoutes: [...lists.httpRoutes],
    backends: [...lists.backends],
    secrets: [...lists.secrets],
    referenceGrants: [...lists.referenceGrants],
    services: [...lists.services],
    endpointSlices: [...lists.endpointSlices],
    namespaces: [...lists.namespaces],
  };
}

/** The list an object of this kind is filed in (addToInputs). */
function listOf(lists: ObjectLists, o: KnownObject): readonly unknown[] {
  switch (o.kind) {
    case 'GatewayClass':
      return lists.gatewayClasses;
    case 'Gateway':
      return lists.gateways;
    case 'HTTPRoute':
      return lists.httpRoutes;
    case 'Backend':
      return lists.backends;
    case 'Secret':
      return lists.secrets;
    case 'ReferenceGrant':
      return lists.referenceGrants;
    case 'Service':
      return lists.services;
    case 'EndpointSlice':
      return lists.endpointSlices;
    case 'Namespace':
      return lists.namespaces;
  }
}

/** Puts a new version of an object where its previous version was in its kind's list. */
function setInList(lists: ObjectLists, o: KnownObject, index: number): void {
  switch (o.kind) {
    case 'GatewayClass':
      lists.gatewayClasses[index] = o.value;
      return;
    case 'Gateway':
      lists.gateways[index] = o.value;
      return;
    case 'HTTPRoute':
      lists.httpRoutes[index] = o.value;
      return;
    case 'Backend':
      lists.backends[index] = o.value;
      return;
    case 'Secret':
      lists.secrets[index] = o.value;
      return;
    case 'ReferenceGrant':
      lists.referenceGrants[index] = o.value;
      return;
    case 'Service':
      lists.services[index] = o.value;
      return;
    case 'EndpointSlice':
      lists.endpointSlices[index] = o.value;
      return;
    case 'Namespace':
      lists.namespaces[index] = o.value;
      return;
  }
}

/** Where `key` goes in the sorted `order`. */
function sortedIndex(order: readonly string[], key: string): number {
  let lo = 0;
  let hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((order[mid] as string) < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Whether a definition is the object already served: the very object (its file was not read
 * again), or one equal to it (its file was, for an edit elsewhere in it). Equal objects stay the
 * same object, so translation skips them.
 */
function sameObject(before: Extract<ManifestDocument, { state: 'object' }>, def: Extract<ManifestDocument, { state: 'object' }>): boolean {
  if (before.object === def.object) return true;
  return before.content === def.content && before.object.kind === def.object.kind && sameMetadata(before.object.value.metadata, def.object.value.metadata);
}

/**
 * Metadata equal but for `generation`: stamping sets it in place on a parsed object that had none
 * (stamped), and the generations were compared already.
 */
function sameMetadata(a: { generation?: number | undefined }, b: { generation?: number | undefined }): boolean {
  const { generation: _a, ...restA } = a;
  const { generation: _b, ...restB } = b;
  return canonicalJson(restA) === canonicalJson(restB);
}

function isNameAndNamespace(metadata: object): boolean {
  let keys = 0;
  for (const key in metadata) {
    if (key !== 'name' && key !== 'namespace') return false;
    keys++;
  }
  return keys === 2 && Object.keys(metadata)[0] === 'name';
}

function stamp<T extends { metadata: { generation?: number | undefined } }>(value: T, generation: number): T {
  return { ...value, metadata: { ...value.metadata, generation } };
}

/**
 * The object with its generation. A parsed object no snapshot has seen yet (no generation) is
 * stamped in place, and one that has it already is served as it is: a copy per object would cost
 * a tenth of what the configuration keeps in memory. An object served before under another
 * generation is copied, so the snapshots that hold it do not change.
 */
function stamped(o: KnownObject, generation: number): KnownObject {
  const current = o.value.metadata.generation;
  if (current === generation) return o;
  if (current === undefined) {
    const metadata = o.value.metadata;
    // Most objects' metadata is a name and a namespace: a property added to that literal goes to
    // a property array of its own (40 bytes), where a literal of three holds it in place.
    if (isNameAndNamespace(metadata)) o.value.metadata = { name: metadata.name, namespace: metadata.namespace, generation };
    else metadata.generation = generation;
    return o;
  }
  switch (o.kind) {
    case 'GatewayClass':
      return { kind: o.kind, value: stamp(o.value, generation) };
    case 'Gateway':
      return { kind: o.kind, value: stamp(o.value, generation) };
    case 'HTTPRoute':
      return { kind: o.kind, value: stamp(o.value, generation) };
    case 'Backend':
      return { kind: o.kind, value: stamp(o.value, generation) };
    case 'Secret':
      return { kind: o.kind, value: stamp(o.value, generation) };
    case 'ReferenceGrant':
      return { kind: o.kind, value: stamp(o.value, generation) };
    case 'Service':
      return { kind: o.kind, value: stamp(o.value, generation) };
    case 'EndpointSlice':
      return { kind: o.kind, value: stamp(o.value, generation) };
    case 'Namespace':
      return { kind: o.kind, value: stamp(o.value, generation) };
  }
}
