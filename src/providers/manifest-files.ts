import { isAscii } from 'node:buffer';
import type { Hash } from 'node:crypto';
import { createHash } from 'node:crypto';
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
import { bytesFingerprint, textFingerprint } from './text-fingerprint.js';

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
 * What one document of a manifest file turned out to be: an instance of one of the classes
 * below, told apart by `state`. `source` is "<file>#<index from 0>".
 * A configuration is tens of thousands of documents, and a document is kept for as long as its
 * file is unchanged: each keeps its file's name (one string for the whole file) and its index,
 * its hashes as small integers in its own slots, and its object's id is read from the object;
 * `source`, `id` and `content` are worked out when asked for (problems, status, rare paths).
 */
export type ManifestDocument = ObjectDocument | InvalidDocument | SyntaxDocument | IgnoredDocument;

/**
 * What every document has: its place, and (0, 0 when absent) a hash of its text, so that the
 * next parse of its file reuses it when its text is the same (see manifestDocuments).
 */
abstract class PlacedDocument {
  textHigh = 0;
  textLow = 0;
  constructor(
    /** The name of the file it is in (ManifestFile.name). */
    readonly file: string,
    readonly index: number,
  ) {}

  get source(): string {
    return sourceName(this.file, this.index);
  }

  /** Whether a hash of its text is known and equals `high`, `low`. */
  hasText(high: number, low: number): boolean {
    return (this.textHigh !== 0 || this.textLow !== 0) && this.textHigh === high && this.textLow === low;
  }
}

/** A document that defines a valid object. */
export class ObjectDocument extends PlacedDocument {
  /** Its warnings and declared generation, which nearly every document is without: one slot for both. */
  private readonly details: { warnings: Problem[]; generation: number | undefined } | undefined;
  /** contentHigh and contentLow once worked out (0, 0 before). */
  private high = 0;
  private low = 0;

  constructor(
    file: string,
    index: number,
    readonly object: KnownObject,
    warnings: Problem[],
    generation: number | undefined,
  ) {
    super(file, index);
    this.details = warnings.length > 0 || generation !== undefined ? { warnings, generation } : undefined;
  }

  /**
   * A hash of the object's everything but metadata and status, to tell a spec change (generation
   * bump) from none. Worked out when first compared, from the validated object (which the
   * document keeps anyway): only an edit compares two versions of an object, and at a first load
   * of 10,000 Backends hashing the 80,000 documents' canonical JSON was a tenth of the load's CPU,
   * spent before the first configuration could leave (issue 9). The object, not the text: two
   * documents that validate to the same object are the same spec, as for an API server that
   * prunes unknown fields and applies defaults before it compares.
   */
  get contentHigh(): number {
    if (this.high === 0 && this.low === 0) this.digestContent();
    return this.high;
  }

  get contentLow(): number {
    if (this.high === 0 && this.low === 0) this.digestContent();
    return this.low;
  }

  /** Takes over `other`'s content hash if it was worked out already (`other` holds the same object). */
  sameContentAs(other: ObjectDocument): this {
    this.high = other.high;
    this.low = other.low;
    return this;
  }

  private digestContent(): void {
    [this.high, this.low] = documentDigest(canonicalJson(specOf(this.object.value)));
  }

  get state(): 'object' {
    return 'object';
  }

  /** What is served anyway but the user should know (fields Switchyard ignores). */
  get warnings(): Problem[] {
    return this.details?.warnings ?? NO_PROBLEMS;
  }

  /** The generation the document declares, if any. */
  get generation(): number | undefined {
    return this.details?.generation;
  }

  get id(): ObjectId {
    const { metadata } = this.object.value;
    return { kind: internedKind(this.object.kind), namespace: metadata.namespace, name: metadata.name };
  }

  get content(): string {
    return digestText(this.contentHigh, this.contentLow);
  }
}

/** A document that names an object but does not validate: its problems say why. */
export class InvalidDocument extends PlacedDocument {
  constructor(
    file: string,
    index: number,
    readonly id: ObjectId | undefined,
    readonly problems: Problem[],
    readonly contentHigh: number,
    readonly contentLow: number,
    readonly generation: number | undefined,
  ) {
    super(file, index);
  }

  get state(): 'invalid' {
    return 'invalid';
  }

  get content(): string {
    return digestText(this.contentHigh, this.contentLow);
  }
}

/** A document that could not be read (YAML syntax, too large): what it defines is unknown. */
export class SyntaxDocument extends PlacedDocument {
  constructor(
    file: string,
    index: number,
    readonly problems: Problem[],
  ) {
    super(file, index);
  }

  get state(): 'syntax' {
    return 'syntax';
  }
}

/** An empty document, or one of a kind Switchyard does not read. */
export class IgnoredDocument extends PlacedDocument {
  constructor(
    file: string,
    index: number,
    readonly id: ObjectId | undefined,
    readonly reason: string,
  ) {
    super(file, index);
  }

  get state(): 'ignored' {
    return 'ignored';
  }
}

function sourceName(file: string, index: number): string {
  return `${file}#${index}`;
}

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
    yield parseJsonDocument(name, 0, typeof content === 'string' ? content : content.toString('utf8'), limits);
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
    const [textHigh, textLow] = bytesFingerprint(bytes, from, to);
    const before = previous?.[index];
    if (before !== undefined && before.state !== 'syntax' && before.hasText(textHigh, textLow) && before.index === index && before.file === name) {
      index++;
      yield before;
      continue;
    }
    const moved = byText?.get(textHigh);
    if (moved !== undefined && moved.hasText(textHigh, textLow)) {
      yield relocated(moved, index++);
      continue;
    }
    const doc = parseYamlDocument(name, index, yamlChunk(bytes, from, to, firstLine), limits);
    if (doc.state === 'syntax' && to - from <= limits.documentBytes) {
      // A document that does not parse may be one the split cut wrong (a quote left open across
      // a marker line): from its start, the yaml package reads the rest of the file itself.
      yield* wholeFileDocuments(name, bytes.subarray(from), limits, index, firstLine);
      return;
    }
    index++;
    if (doc.state !== 'syntax') {
      doc.textHigh = textHigh;
      doc.textLow = textLow;
    }
    yield doc;
  }
}

/** The documents of a previous parse that may be reused, by the hash of their text. */
function reusableDocuments(previous: readonly ManifestDocument[] | undefined): Map<number, ReusableDocument> | undefined {
  if (previous === undefined || previous.length === 0) return undefined;
  // Keyed by the hash's first half (a small integer, no string made per document); the second is
  // checked on use, and a document whose first half another has is parsed again instead.
  const byText = new Map<number, ReusableDocument>();
  for (const doc of previous) {
    if (doc.state === 'syntax' || (doc.textHigh === 0 && doc.textLow === 0)) continue;
    if (!byText.has(doc.textHigh)) byText.set(doc.textHigh, doc);
  }
  return byText;
}

type ReusableDocument = Exclude<ManifestDocument, { state: 'syntax' }>;

/** A reused document at another index: the same validated object, its problems naming the new index. */
function relocated(doc: ReusableDocument, index: number): ManifestDocument {
  const was = doc.source;
  const source = sourceName(doc.file, index);
  const at = (p: Problem): Problem => (p.source === was ? { ...p, source } : p);
  let moved: ReusableDocument;
  switch (doc.state) {
    case 'object':
      moved = new ObjectDocument(doc.file, index, doc.object, doc.warnings.map(at), doc.generation).sameContentAs(doc);
      break;
    case 'invalid':
      moved = new InvalidDocument(doc.file, index, doc.id, doc.problems.map(at), doc.contentHigh, doc.contentLow, doc.generation);
      break;
    case 'ignored':
      moved = new IgnoredDocument(doc.file, index, doc.id, doc.reason);
      break;
  }
  moved.textHigh = doc.textHigh;
  moved.textLow = doc.textLow;
  return moved;
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
    const [start = 0, , end = text.length] = doc.range;
    const large = tooLarge(name, index, Buffer.byteLength(text.slice(start, end)), limits);
    yield large ?? documentFrom(name, index, doc, lineCounter, firstLine);
    index++;
  }
}

function tooLarge(file: string, index: number, bytes: number, limits: ConfigLimits): ManifestDocument | undefined {
  if (bytes <= limits.documentBytes) return undefined;
  return syntaxError(file, index, limitMessage('this document', bytes, 'documentBytes', limits));
}

function syntaxError(file: string, index: number, message: string): SyntaxDocument {
  return new SyntaxDocument(file, index, [{ source: sourceName(file, index), field: '', message }]);
}

function parseJsonDocument(file: string, index: number, text: string, limits: ConfigLimits): ManifestDocument {
  const large = tooLarge(file, index, Buffer.byteLength(text), limits);
  if (large) return large;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return parseYamlDocument(file, index, { text, firstLine: 1 }, limits);
  }
  return classify(value, file, index);
}

function parseYamlDocument(file: string, index: number, chunk: YamlChunk, limits: ConfigLimits): ManifestDocument {
  const large = tooLarge(file, index, Buffer.byteLength(chunk.text), limits);
  if (large) return large;
  const quick = quickYamlValue(chunk.text, chunk.bytes);
  if (quick !== undefined) return classify(quick.value, file, index, quick.detached === true);
  const { LineCounter, parseDocument } = yaml();
  const lineCounter = new LineCounter();
  // prettyErrors would append the offending source line to messages, and that line may be a secret.
  const doc = parseDocument(chunk.text, { lineCounter, prettyErrors: false });
  return documentFrom(file, index, doc, lineCounter, chunk.firstLine);
}

/** A document as the yaml package parsed it; `firstLine`: the line of the file its text starts on. */
function documentFrom(file: string, index: number, doc: Yaml.Document.Parsed, lineCounter: Yaml.LineCounter, firstLine: number): ManifestDocument {
  const [first, ...more] = doc.errors;
  if (first) {
    const { line, col } = lineCounter.linePos(first.pos[0]);
    const extra = more.length > 0 ? ` (and ${more.length} more error${more.length > 1 ? 's' : ''} in this document)` : '';
    return syntaxError(file, index, `YAML syntax error at line ${line + firstLine - 1}, column ${col}: ${first.message}${extra}`);
  }
  let value: unknown;
  try {
    value = doc.toJS();
  } catch (err) {
    // toJS throws on alias bombs ("Excessive alias count") and unresolvable aliases.
    return syntaxError(file, index, `YAML error: ${err instanceof Error ? err.message : String(err)}`);
  }
  return classify(value, file, index);
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
  // The block reader never reads a tag or a directive (it gives up on "!" and "%" where a node
  // or a line starts): the checks for them, a scan of the whole text each, are for js-yaml.
  if (text.includes('!')) return undefined;
  const block = readBlockYaml(text, bytes);
  if (block !== undefined) return bytes === undefined ? block : { value: block.value, detached: true };
  if (DIRECTIVE.test(text) || INDENTED_MARKER.test(text)) return undefined;
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
 * Replaces, in place, every string of a freshly validated object by its internalized copy (see
 * interned). Not for objects whose strings hold no document text (detached): the block reader
 * decoded those deduplicated already (yaml-block.ts, deduplicated), and the schemas add none but
 * their literals.
 */
function internStrings(value: unknown): void {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (typeof item === 'string') value[i] = interned(item);
      else internStrings(item);
    }
    return;
  }
  if (!isRecord(value)) return;
  for (const key of Object.keys(value)) {
    const item = value[key];
    if (typeof item === 'string') value[key] = interned(item);
    else internStrings(item);
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
function classify(value: unknown, file: string, index: number, detached = false): ManifestDocument {
  const result = parseManifest(value, sourceName(file, index));
  if (result.ok === 'ignored') return new IgnoredDocument(file, index, result.id, result.reason);
  const generation = declaredGeneration(value);
  if (result.ok) {
    // The id is read from the object (ObjectDocument.id): its namespace and name, interned here
    // (or deduplicated as they were read, for a detached value).
    if (!detached) internStrings(result.object.value);
    return new ObjectDocument(file, index, result.object, result.warnings, generation);
  }
  const [contentHigh, contentLow] = specContent(value);
  return new InvalidDocument(file, index, result.id, result.problems, contentHigh, contentLow, generation);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Everything but metadata and status (what Kubernetes bumps `metadata.generation` for), hashed: the text would double the memory a configuration costs. */
function specContent(value: unknown): readonly [number, number] {
  // One document's canonical text is small: built whole and hashed once, it costs half of
  // canonicalHash's piecewise writes (the same bytes are hashed either way).
  return documentDigest(canonicalJson(specOf(value)));
}

/**
 * What tells one version of a document's text, or of its spec, from another: kept per document,
 * twice, so kept small: 64 bits as two 32-bit integers, which V8 keeps in the document's own
 * slots, where the shortest string took 32 bytes more each (160,000 digests at 10,000 Backends).
 * The texts are the user's own files: what is needed is no accidental collision, not resistance
 * to an attacker (who could edit the file), so the fingerprint is a non-cryptographic one
 * (text-fingerprint.ts).
 */
function documentDigest(text: string): readonly [number, number] {
  return textFingerprint(text);
}

/** A digest as text: for maps keyed by it, and for ManifestDocument.content. */
function digestText(high: number, low: number): string {
  return `${high}:${low}`;
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

/**
 * An object's key: made when needed, and kept only by the few records of objects with problems
 * (ObjectTable keeps the object's own name instead), so not interned.
 */
function keyOf(id: ObjectId): string {
  return `${id.kind}/${id.namespace}/${id.name}`;
}

/** The key of the object a definition defines (read from the object itself when valid, without making its id). */
function keyOfDefinition(d: Definition): string {
  if (d.state === 'invalid') return keyOf(d.id as ObjectId);
  const { metadata } = d.object.value;
  return `${d.object.kind}/${metadata.namespace}/${metadata.name}`;
}

function describe(id: ObjectId): string {
  return `${id.kind} ${id.namespace ? `${id.namespace}/` : ''}${id.name}`;
}

/** A definition of a valid object: what an object is served from. */
type ServedDefinition = ObjectDocument;

/** Everything the store keeps of one object. */
class ObjectEntry {
  constructor(
    /**
     * Every definition, in no particular order (see definitionsOf): the definition itself when it
     * is the only one, as nearly every object's is (a list of one per object cost 4 MiB over
     * 80,000 objects).
     */
    public definitions: Definition | Definition[] | undefined,
    /**
     * The generation last given to it (none yet: undefined), and the definition whose spec (its
     * content hash) it was given for: the document, not its hash, which is worked out only when
     * an edit compares it (ObjectDocument.contentHigh).
     */
    public generation: number | undefined,
    public content: Definition | undefined,
    /**
     * What the object serves: its valid definition, else its last valid version (the last good),
     * else nothing; its document's object is what `object` was stamped from (while a file is
     * unchanged, it is the same object, and so is `object`). Kept in the entry, not in a record of
     * its own: a record per object cost 6 MiB at 10,000 Backends.
     */
    public served: ServedDefinition | undefined,
    public object: KnownObject | undefined,
    public servedGeneration: number,
  ) {}
}

/**
 * What the store keeps of one object: its entry; or, for the usual object, its document alone,
 * standing for the entry it would have (an entry per object cost 6 MiB at 10,000 Backends):
 * - decided (its object stamped with a generation): its one definition, served as stamped, with
 *   that generation, for its content (see ManifestStore.compact);
 * - not yet decided (no generation: only within a build, between reading a new definition and
 *   deciding it): its one definition, nothing served yet.
 */
type StoredObject = ObjectEntry | ObjectDocument;

/** The generation a stored document was decided with, or undefined when it is still to be decided. */
function decidedGeneration(doc: ObjectDocument): number | undefined {
  return doc.object.value.metadata.generation;
}

/** What an object serves, from what the store keeps of it. */
function servedObjectOf(stored: StoredObject | undefined): KnownObject | undefined {
  if (stored instanceof ObjectDocument) return decidedGeneration(stored) === undefined ? undefined : stored.object;
  return stored?.object;
}

/** The definition an object is served from, from what the store keeps of it. */
function servedDefinitionOf(stored: StoredObject | undefined): ServedDefinition | undefined {
  if (stored instanceof ObjectDocument) return decidedGeneration(stored) === undefined ? undefined : stored;
  return stored?.served;
}

/**
 * A document that defines an object (an invalid one with an id included); it knows its file
 * and index there. The document itself: a record per definition cost 5 MiB at 10,000 Backends.
 */
type Definition = ObjectDocument | InvalidDocument;

/** What one file contributes to a snapshot, kept while the file is the same (its documents the same array). */
interface FileContribution {
  documents: readonly ManifestDocument[];
  readProblem: Problem | undefined;
  /** Its read problem, syntax errors and invalid documents, in document order. */
  problems: Problem[];
  /** Set when the file is broken (unreadable, or a document with a syntax error): what is wrong with it. */
  broken: Problem[] | undefined;
}

/** Whether a document defines an object (its definitions are read from its file's documents: a list of them cost 0.6 MiB at 10,000 Backends). */
function isDefinition(doc: ManifestDocument): doc is Definition {
  return doc.state === 'object' || (doc.state === 'invalid' && doc.id !== undefined);
}

/** The Inputs list of each kind. */
type ObjectLists = Omit<Inputs, 'invalid' | 'unknownFields'>;

/**
 * What the store keeps of each object, by key ("<kind>/<namespace>/<name>"): kept by kind and
 * namespace, then by name, the name being the object's own string, so that no key string is kept
 * per object (80,000 of them, with their entries in V8's string table, cost 5 MiB at 10,000
 * Backends). A key is cut at its second "/" (names and most namespaces have none; a key is
 * always cut the same way, so a namespace with one only changes where).
 */
class ObjectTable {
  private readonly groups = new Map<string, Map<string, StoredObject>>();
  /** The last key cut, and its pieces: a build asks about one key several times in a row. */
  private lastKey: string | undefined;
  private lastGroup = '';
  private lastName = '';
  /** Where the last key cut anew was cut (its second "/"; -1: it has none, and the next key is cut anew). */
  private lastCutAt = -1;

  get(key: string): StoredObject | undefined {
    this.cut(key);
    return this.groups.get(this.lastGroup)?.get(this.lastName);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** `name`: the object's own name, kept instead of a piece of the key when they are equal. */
  set(key: string, value: StoredObject, name?: string): void {
    this.cut(key);
    let group = this.groups.get(this.lastGroup);
    if (group === undefined) {
      group = new Map();
      this.groups.set(this.lastGroup, group);
    }
    group.set(name === this.lastName ? name : this.lastName, value);
  }

  delete(key: string): void {
    this.cut(key);
    const group = this.groups.get(this.lastGroup);
    if (group === undefined) return;
    group.delete(this.lastName);
    if (group.size === 0) this.groups.delete(this.lastGroup);
  }

  /**
   * Every object, in the order of its key: groups ("<kind>/<namespace>") hold one "/" each, so
   * none followed by "/" starts another, and keys compare as their groups do, then their names.
   */
  *inKeyOrder(): Generator<StoredObject> {
    const groups = [...this.groups.keys()].sort((a, b) => byCodeUnits(`${a}/`, `${b}/`));
    for (const groupKey of groups) {
      const group = this.groups.get(groupKey) as Map<string, StoredObject>;
      for (const name of [...group.keys()].sort(byCodeUnits)) yield group.get(name) as StoredObject;
    }
  }

  private cut(key: string): void {
    if (key === this.lastKey) return;
    const group = this.lastGroup;
    // Keys come grouped (a file's Secrets, then its Backend...; a build's keys in key order): the
    // last group, one "/" in it, followed by a "/" is where the key is cut, and is kept as it is.
    if (this.lastCutAt > 0 && key.charCodeAt(group.length) === SLASH && key.startsWith(group)) {
      this.lastName = key.slice(group.length + 1);
    } else {
      const at = key.indexOf('/', key.indexOf('/') + 1);
      this.lastGroup = key.slice(0, at);
      this.lastName = key.slice(at + 1);
      this.lastCutAt = at;
    }
    this.lastKey = key;
  }
}

/**
 * Compares two keys of one kind by what follows the kind, "<namespace>/<name>", as byCodeUnits
 * compares the keys, without making either string.
 */
function compareKeyTails(namespaceA: string, nameA: string, namespaceB: string, nameB: string): number {
  if (namespaceA === namespaceB) return byCodeUnits(nameA, nameB);
  const lengthA = namespaceA.length + 1 + nameA.length;
  const lengthB = namespaceB.length + 1 + nameB.length;
  const at = (namespace: string, name: string, i: number): number => (i < namespace.length ? namespace.charCodeAt(i) : i === namespace.length ? SLASH : name.charCodeAt(i - namespace.length - 1));
  for (let i = 0; i < lengthA && i < lengthB; i++) {
    const a = at(namespaceA, nameA, i);
    const b = at(namespaceB, nameB, i);
    if (a !== b) return a - b;
  }
  return lengthA - lengthB;
}

const SLASH = 0x2f;

/** What relist reads of a listed object. */
type ListedObject = { metadata: { name: string; namespace: string } };

/** A key's kind, and the rest cut as ObjectTable cuts it (compareKeyTails reads them as one). */
function keyParts(key: string): [string, string, string] {
  const first = key.indexOf('/');
  const second = key.indexOf('/', first + 1);
  return [key.slice(0, first), key.slice(first + 1, second), key.slice(second + 1)];
}

/** A served object's place in a list of its kind sorted by key: where it is, or where it goes (`found` false). */
function placeInList(list: readonly ListedObject[], namespace: string, name: string): { at: number; found: boolean } {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const { metadata } = list[mid] as ListedObject;
    if (compareKeyTails(metadata.namespace, metadata.name, namespace, name) < 0) lo = mid + 1;
    else hi = mid;
  }
  const there = list[lo];
  return { at: lo, found: there !== undefined && compareKeyTails(there.metadata.namespace, there.metadata.name, namespace, name) === 0 };
}

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
  private readonly entries = new ObjectTable();
  private readonly files = new Map<string, FileContribution>();
  /** Objects served from a broken file that defines them no more (see decide). */
  private readonly held = new Set<string>();
  private readonly invalid = new Map<string, InvalidObject>();
  /** The problems of the definitions that lost to another, by object. */
  private readonly duplicates = new Map<string, Problem[]>();
  /** The unknown-field warnings of the served definition, by object. */
  private readonly warnings = new Map<string, { id: ObjectId; warnings: Problem[] }>();
  /** The objects served, in a list per kind sorted by key (see relist). */
  private lists: ObjectLists = emptyLists();
  private invalidList: InvalidObject[] = [];
  /** Each file's place in the files of the last build that was given them all (its order is theirs). */
  private position: Map<string, number> | undefined;
  /** The files with problems, and their problems in file order (undefined: to be gathered again). */
  private readonly problemFiles = new Set<string>();
  private fileProblems: Problem[] | undefined = [];

  /**
   * `files` must be sorted by name: of several definitions of an object, the one served so far
   * wins, else the first. `changed` (see FileChanges): the files that may differ from the last
   * build's; with it, the build looks at them alone, not at `files`.
   */
  build(files: readonly ManifestFile[], changed?: FileChanges): Snapshot {
    const steps = this.building(files, changed);
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
  async buildYielding(files: readonly ManifestFile[], changed?: FileChanges, sliceMs = BUILD_SLICE_MS): Promise<Snapshot> {
    const steps = this.building(files, changed);
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
  private *building(files: readonly ManifestFile[], changed: FileChanges | undefined): Generator<void, Snapshot> {
    const affected = new Set<string>();
    const count = { steps: 0 };
    let position = this.position;
    if (changed !== undefined && position !== undefined && followsLastBuild(changed, position)) {
      // Only what the caller says may have changed: an edit of one file among 10,000 visits that
      // file, where walking every file (a map of their places, a look at each) cost 6-13 ms.
      const order = position;
      for (const name of [...changed.keys()].sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0))) {
        const file = changed.get(name);
        if (file !== undefined) yield* this.take(file, affected, count);
        else if (this.files.has(name)) this.drop(name, affected);
      }
    } else {
      position = new Map<string, number>();
      for (let i = 0; i < files.length; i++) position.set((files[i] as ManifestFile).name, i);
      this.position = position;
      for (const name of [...this.files.keys()]) if (!position.has(name)) this.drop(name, affected);
      for (const file of files) yield* this.take(file, affected, count);
    }

    // Why a duplicate's winner wins depends on what was served at the last build ("served first"
    // once it has been): objects defined twice are decided at every build. They are few.
    for (const key of this.duplicates.keys()) affected.add(key);

    // The keys whose served object changed, and how many of them came or went.
    const changedKeys: string[] = [];
    let moved = 0;
    const invalidBefore = this.invalid.size;
    let invalidChanged = false;
    for (const key of affected) {
      if (++count.steps % BUILD_STEP === 0) yield;
      const was = servedObjectOf(this.entries.get(key));
      const wasInvalid = this.invalid.get(key);
      this.decide(key, position);
      const now = servedObjectOf(this.entries.get(key));
      if (was !== now) changedKeys.push(key);
      if ((was === undefined) !== (now === undefined)) moved++;
      if (wasInvalid !== this.invalid.get(key)) invalidChanged = true;
    }
    if (invalidChanged || invalidBefore !== this.invalid.size) this.invalidList = [...this.invalid.keys()].sort(byCodeUnits).map((k) => this.invalid.get(k) as InvalidObject);
    if (changedKeys.length > 0) yield* this.relist(changedKeys, moved);
    if (this.fileProblems === undefined) {
      const order = position;
      const withProblems = [...this.problemFiles].sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
      this.fileProblems = withProblems.flatMap((name) => this.files.get(name)?.problems ?? NO_PROBLEMS);
    }

    // The lists themselves, not copies: the store never changes a list it has handed out (relist
    // writes to copies), and a copy of every list per edit was 18 lists of up to 60,000 objects.
    const inputs: Inputs = { ...this.lists, invalid: this.invalidList };
    const problems: Problem[] = [...this.fileProblems];
    for (const key of this.byFirstDefinition(this.duplicates.keys(), position)) problems.push(...(this.duplicates.get(key) as Problem[]));
    for (const key of this.byFirstDefinition(this.warnings.keys(), position)) {
      const { id, warnings } = this.warnings.get(key) as { id: ObjectId; warnings: Problem[] };
      problems.push(...warnings);
      noteUnknownFields(inputs, id, warnings);
    }
    return { inputs, problems };
  }

  /** A file as the last build took it (undefined: none took it); given back to a build, it changes nothing. */
  builtFile(name: string): ManifestFile | undefined {
    const contribution = this.files.get(name);
    if (contribution === undefined) return undefined;
    // The very array the build took (take() knows a file by it); no one changes it.
    const documents = contribution.documents as ManifestDocument[];
    return contribution.readProblem === undefined ? { name, documents } : { name, documents, readProblem: contribution.readProblem };
  }

  /**
   * The definitions a file's objects are served from: its documents' that define one, and, while
   * the file is broken, those of the objects it served before that it is kept serving (decideEntry).
   */
  servedDefinitions(name: string): ManifestDocument[] {
    const contribution = this.files.get(name);
    if (contribution === undefined) return [];
    const served: ManifestDocument[] = contribution.documents.filter(isDefinition);
    if (contribution.broken === undefined) return served;
    for (const key of this.held) {
      const definition = servedDefinitionOf(this.entries.get(key));
      if (definition?.file === name) served.push(definition);
    }
    return served;
  }

  /** Reads one file's definitions into the store when they are not those of its last build. */
  private *take(file: ManifestFile, affected: Set<string>, count: { steps: number }): Generator<void, void> {
    const before = this.files.get(file.name);
    if (before !== undefined && before.documents === file.documents && before.readProblem === file.readProblem) return;
    const contribution = yield* contributionOf(file);
    this.files.set(file.name, contribution);
    this.noteProblems(file.name, before, contribution);
    const kept = new Set<ManifestDocument>();
    const previous = new Set(before?.documents);
    for (const definition of contribution.documents) {
      if (!isDefinition(definition)) continue;
      if (++count.steps % BUILD_STEP === 0) yield;
      if (previous.has(definition)) {
        kept.add(definition);
        continue;
      }
      const key = keyOfDefinition(definition);
      affected.add(key);
      if (!this.entries.has(key) && definition.state === 'object' && decidedGeneration(definition) === undefined) {
        this.entries.set(key, definition, definition.object.value.metadata.name);
        continue;
      }
      const entry = this.entry(key, definition.state === 'object' ? definition.object.value.metadata.name : definition.id?.name);
      const had = entry.definitions;
      if (had === undefined) entry.definitions = definition;
      // A literal of two: a list grown by push from empty keeps room for 17.
      else if (!Array.isArray(had)) entry.definitions = [had, definition];
      else had.push(definition);
    }
    this.forget(file.name, before?.documents ?? [], kept, affected);
  }

  /** Forgets a file that is gone. */
  private drop(name: string, affected: Set<string>): void {
    const contribution = this.files.get(name);
    if (contribution === undefined) return;
    this.files.delete(name);
    this.noteProblems(name, contribution, undefined);
    this.forget(name, contribution.documents, new Set(), affected);
  }

  /** Keeps the list of files with problems, and drops the problems' list when a file's problems changed. */
  private noteProblems(name: string, before: FileContribution | undefined, after: FileContribution | undefined): void {
    const had = before !== undefined && before.problems.length > 0;
    const has = after !== undefined && after.problems.length > 0;
    if (has) this.problemFiles.add(name);
    else this.problemFiles.delete(name);
    if (had || has) this.fileProblems = undefined;
  }

  /** Drops a file's definitions but those `kept`; what they defined, and what the file served without defining it, is decided again. */
  private forget(file: string, documents: readonly ManifestDocument[], kept: ReadonlySet<ManifestDocument>, affected: Set<string>): void {
    for (const definition of documents) {
      if (!isDefinition(definition) || kept.has(definition)) continue;
      const key = keyOfDefinition(definition);
      const rest = this.listOfDefinitions(key).filter((d) => d !== definition);
      if (this.entries.has(key)) this.entry(key).definitions = rest.length > 1 ? rest : rest[0];
      affected.add(key);
    }
    for (const key of this.held) if (servedDefinitionOf(this.entries.get(key))?.file === file) affected.add(key);
  }

  /** decideEntry on the object's whole entry, kept as its document alone afterwards when that says it all. */
  private decide(key: string, position: ReadonlyMap<string, number>): void {
    const stored = this.entries.get(key);
    if (stored instanceof ObjectDocument && decidedGeneration(stored) === undefined && this.decideNew(key, stored)) return;
    if (stored instanceof ObjectDocument) this.entry(key);
    this.decideEntry(key, position);
    this.compact(key);
  }

  /**
   * decide for an object this build met first, in one valid definition (every object of a first
   * load): what decideEntry and compact come to for it, without the entry they would make and drop
   * (80,000 at a first load of 10,000 Backends, a third of the store's build; issue 9). Its
   * generation is the declared one, else 1; it is served from its document, kept as the document
   * alone. False (nothing done) when its object carries another generation than that.
   */
  private decideNew(key: string, def: ObjectDocument): boolean {
    const generation = def.generation ?? 1;
    const current = def.object.value.metadata.generation;
    if (current !== undefined && current !== generation) return false;
    this.held.delete(key);
    this.duplicates.delete(key);
    if (def.warnings.length > 0) this.warnings.set(key, { id: def.id, warnings: def.warnings });
    else this.warnings.delete(key);
    stamped(def.object, generation);
    this.invalid.delete(key);
    return true;
  }

  /**
   * Keeps an object as its document alone (see StoredObject) when its entry says no more than
   * that: one valid definition, served as it was stamped, with the generation it was stamped
   * with, given for that definition's content.
   */
  private compact(key: string): void {
    const entry = this.entries.get(key);
    if (!(entry instanceof ObjectEntry)) return;
    const served = entry.served;
    if (served === undefined || entry.definitions !== served || entry.object !== served.object) return;
    if (entry.generation !== entry.servedGeneration || decidedGeneration(served) !== entry.generation) return;
    if (entry.content === undefined || !sameContent(entry.content, served)) return;
    this.entries.set(key, served);
  }

  /** What is served for one object, and what is said about it, from its definitions. */
  private decideEntry(key: string, position: ReadonlyMap<string, number>): void {
    const list = this.definitionsOf(key, position);
    if (list.length === 0) {
      this.duplicates.delete(key);
      this.warnings.delete(key);
      // A syntax error can hide which objects a document defines. Objects last loaded from a file
      // that is now broken keep being served: a half-saved file must not take routes offline.
      const entry = this.existingEntry(key);
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
        const otherId = other.id as ObjectId;
        problems.push({
          source: other.source,
          object: otherId,
          field: 'metadata.name',
          message: `${describe(otherId)} is defined in both ${other.file} (${other.source}) and ${chosen.winner.file} (${chosen.winner.source}); ${chosen.why}, and this definition is ignored. Remove one of them or give it another name`,
        });
      }
      this.duplicates.set(key, problems);
    } else this.duplicates.delete(key);

    const def = chosen.winner;
    const file = def.file;
    const id = def.id as ObjectId;
    const generation = this.nextGeneration(key, def);
    if (def.state === 'object') {
      if (def.warnings.length > 0) this.warnings.set(key, { id, warnings: def.warnings });
      else this.warnings.delete(key);
      // The same object as last time when nothing changed, so translation can skip it by reference.
      const entry = this.entry(key);
      const before = entry.served;
      if (before === undefined || entry.servedGeneration !== generation || before.file !== file || !sameObject(before, def)) {
        entry.served = def;
        entry.object = stamped(def.object, generation);
        entry.servedGeneration = generation;
      } else if (before !== def) {
        // The same object, now defined by another document of the same file (one that moved, or
        // was read again): served from it, the old document is let go, and when it holds the very
        // object served (a moved one does) the entry is kept as the document alone again.
        entry.served = def;
      }
      this.invalid.delete(key);
      return;
    }
    this.warnings.delete(key);
    // An invalid definition leaves what is served as it is: the last good version, if any.
    const good = this.existingEntry(key)?.served;
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
    const stored = this.entries.get(key);
    if (stored instanceof ObjectDocument) return [stored];
    const had = stored?.definitions;
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

  /**
   * Makes new lists (the last snapshot's are left as they are) with the objects whose served
   * version changed: a few are put in place in copies of their kinds' lists (the other kinds'
   * lists are the last snapshot's); many (the first load) are sorted by key with the rest.
   */
  private *relist(changed: readonly string[], moved: number): Generator<void, void> {
    if (moved > 64) {
      yield;
      const lists = emptyInputs();
      let steps = 0;
      for (const stored of this.entries.inKeyOrder()) {
        if (++steps % BUILD_STEP === 0) yield;
        const object = servedObjectOf(stored);
        if (object !== undefined) addToInputs(lists, object);
      }
      this.lists = lists;
      return;
    }
    const lists: ObjectLists = { ...this.lists };
    const copied = new Set<string>();
    // A kind's list copied once, at its first change.
    const writable = (kind: string): ListedObject[] => {
      if (!copied.has(kind)) {
        copied.add(kind);
        setListOfKind(lists, kind, [...listOfKind(lists, kind)]);
      }
      return listOfKind(lists, kind);
    };
    // Objects gone first, then objects new or replaced, each found by its key in its kind's list.
    for (const key of changed) {
      if (servedObjectOf(this.entries.get(key)) !== undefined) continue;
      const [kind, namespace, name] = keyParts(key);
      const { at, found } = placeInList(listOfKind(lists, kind), namespace, name);
      if (found) writable(kind).splice(at, 1);
    }
    for (const key of changed) {
      const now = servedObjectOf(this.entries.get(key));
      if (now === undefined) continue;
      const list = writable(now.kind) as unknown[];
      const { at, found } = placeInList(list as ListedObject[], now.value.metadata.namespace, now.value.metadata.name);
      if (found) list[at] = now.value;
      else list.splice(at, 0, now.value);
    }
    this.lists = lists;
  }

  /**
   * The entry of an object, made when the store first hears of it (`name`: its own name, kept as
   * the table's key), or made whole from the document it was kept as (see StoredObject).
   */
  private entry(key: string, name?: string): ObjectEntry {
    const stored = this.entries.get(key);
    if (stored instanceof ObjectEntry) return stored;
    let entry: ObjectEntry;
    if (stored === undefined) entry = new ObjectEntry(undefined, undefined, undefined, undefined, undefined, 0);
    else {
      const generation = decidedGeneration(stored);
      entry = generation === undefined ? new ObjectEntry(stored, undefined, undefined, undefined, undefined, 0) : new ObjectEntry(stored, generation, stored, stored, stored.object, generation);
    }
    this.entries.set(key, entry, name);
    return entry;
  }

  /** The entry of an object the store knows of (see entry), else undefined. */
  private existingEntry(key: string): ObjectEntry | undefined {
    return this.entries.has(key) ? this.entry(key) : undefined;
  }

  /**
   * Which of several definitions of one object is used. A new file must not take over an object
   * another file serves (it would change what runs without anyone editing that file): the
   * definition in the file that serves the object wins; on first sight, the first by file path.
   */
  private chooseDefinition(key: string, list: readonly Definition[]): { winner: Definition; why: string } {
    const first = list[0] as Definition;
    if (list.length === 1) return { winner: first, why: '' };
    const servedFrom = servedDefinitionOf(this.entries.get(key))?.file;
    const incumbent = servedFrom === undefined ? undefined : list.find((d) => d.file === servedFrom);
    if (incumbent !== undefined) return { winner: incumbent, why: `the definition at ${incumbent.source} was served first and keeps being served` };
    return { winner: first, why: `the definition at ${first.source} is used (first by file path, then document index)` };
  }

  private nextGeneration(key: string, def: Definition): number {
    const entry = this.entry(key);
    const prev = entry.generation;
    const declared = def.generation;
    let generation: number;
    if (declared !== undefined) generation = declared;
    else if (prev === undefined) generation = 1;
    else generation = entry.content !== undefined && sameContent(entry.content, def) ? prev : prev + 1;
    entry.generation = generation;
    entry.content = def;
    return generation;
  }
}

/** Objects handled between two points where a build may pause: a few milliseconds of work. */
const BUILD_STEP = 1024;
/** How long buildYielding works before it gives the event loop a turn. */
const BUILD_SLICE_MS = 20;

/** A file's problems (its definitions are its documents that define an object: isDefinition). */
function* contributionOf(file: ManifestFile): Generator<void, FileContribution> {
  const problems: Problem[] = [];
  let broken: Problem[] | undefined;
  if (file.readProblem) {
    problems.push(file.readProblem);
    broken = [file.readProblem];
  }
  for (let index = 0; index < file.documents.length; index++) {
    if ((index + 1) % BUILD_STEP === 0) yield;
    const doc = file.documents[index] as ManifestDocument;
    if (doc.state === 'syntax') {
      problems.push(...doc.problems);
      broken = [...(broken ?? []), ...doc.problems];
    } else if (doc.state === 'invalid') problems.push(...doc.problems);
  }
  return { documents: file.documents, readProblem: file.readProblem, problems, broken };
}

function emptyLists(): ObjectLists {
  const { invalid: _invalid, ...lists } = emptyInputs();
  return lists;
}

/**
 * What a caller of ManifestStore.build knows changed since its last build: the files that may
 * differ from what it was given then, by name, each with what it holds now (undefined: gone).
 * Every other file is the very ManifestFile it was given then, in the same order. A name the
 * last build did not have makes it a build of every file.
 */
export type FileChanges = ReadonlyMap<string, ManifestFile | undefined>;

/** Whether the files `changed` names can be followed from the last build's: no new file among them. */
function followsLastBuild(changed: FileChanges, position: ReadonlyMap<string, number>): boolean {
  for (const [name, file] of changed) if (file !== undefined && !position.has(name)) return false;
  return true;
}

/** The list of Inputs each kind's objects are filed in (as addToInputs files them). */
const LIST_OF_KIND: ReadonlyMap<string, keyof ObjectLists> = new Map<string, keyof ObjectLists>([
  ['GatewayClass', 'gatewayClasses'],
  ['Gateway', 'gateways'],
  ['HTTPRoute', 'httpRoutes'],
  ['Backend', 'backends'],
  ['Secret', 'secrets'],
  ['ReferenceGrant', 'referenceGrants'],
  ['Service', 'services'],
  ['EndpointSlice', 'endpointSlices'],
  ['Namespace', 'namespaces'],
]);

function setListOfKind(lists: ObjectLists, kind: string, list: ListedObject[]): void {
  const key = LIST_OF_KIND.get(kind);
  if (key !== undefined) (lists as Record<keyof ObjectLists, ListedObject[]>)[key] = list;
}

/** The list objects of a kind are filed in; an empty one for a kind never listed. */
function listOfKind(lists: ObjectLists, kind: string): ListedObject[] {
  const key = LIST_OF_KIND.get(kind);
  return key === undefined ? [] : (lists[key] as ListedObject[]);
}

/**
 * Whether a definition is the object already served: the very object (its file was not read
 * again), or one equal to it (its file was, for an edit elsewhere in it). Equal objects stay the
 * same object, so translation skips them.
 */
function sameObject(before: ObjectDocument, def: ObjectDocument): boolean {
  if (before.object === def.object) return true;
  return sameContent(before, def) && before.object.kind === def.object.kind && sameMetadata(before.object.value.metadata, def.object.value.metadata);
}

/** Whether two definitions have the same spec: the same document, else equal content hashes (worked out here if need be). */
function sameContent(a: Definition, b: Definition): boolean {
  return a === b || (a.contentHigh === b.contentHigh && a.contentLow === b.contentLow);
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
