import type { Hash } from 'node:crypto';
import { createHash, hash } from 'node:crypto';
import { readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Document } from 'yaml';
import { Composer, LineCounter, Parser, parseDocument } from 'yaml';
import type { KnownObject, Problem } from '../api/manifest.js';
import { parseManifest } from '../api/manifest.js';
import type { ObjectId } from '../api/meta.js';
import type { Inputs, InvalidObject } from '../translate/inputs.js';
import { addToInputs, emptyInputs, noteUnknownFields } from '../translate/inputs.js';

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
  const split = splitYaml(bytes);
  if (split.unsure) {
    yield* wholeFileDocuments(name, bytes, limits);
    return;
  }
  const byText = reusableDocuments(previous);
  let index = 0;
  for (const { from, to, firstLine } of split.chunks) {
    const source = interned(`${name}#${index}`);
    const text = hash('sha256', bytes.subarray(from, to), 'base64');
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
    const doc = parseYamlDocument(source, { text: bytes.toString('utf8', from, to), firstLine }, limits);
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
  const lineCounter = new LineCounter();
  // prettyErrors would append the offending source line to messages, and that line may be a secret.
  const doc = parseDocument(chunk.text, { lineCounter, prettyErrors: false });
  return documentFrom(source, doc, lineCounter, chunk.firstLine);
}

/** A document as the yaml package parsed it; `firstLine`: the line of the file its text starts on. */
function documentFrom(source: string, doc: Document.Parsed, lineCounter: LineCounter, firstLine: number): ManifestDocument {
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

/** One YAML document's text and the line of the file it starts on (from 1). */
interface YamlChunk {
  text: string;
  firstLine: number;
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
 * (a byte order mark, which it skips at a document's start; a carriage return alone, which ends
 * a line for it; "..." outside a document, which opens an empty one): the caller parses the
 * whole file with the yaml package instead.
 */
export function splitYaml(bytes: Buffer): { chunks: ChunkBounds[]; unsure: boolean } {
  const chunks: ChunkBounds[] = [];
  let unsure = bytes.includes(BYTE_ORDER_MARK);
  for (let cr = bytes.indexOf(CARRIAGE_RETURN); cr !== -1 && !unsure; cr = bytes.indexOf(CARRIAGE_RETURN, cr + 1)) {
    if (bytes[cr + 1] !== NEWLINE) unsure = true;
  }
  let start = 0;
  let startLine = 1;
  let explicit = false;
  let content = false;
  let line = 1;
  let pos = 0;
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
          chunks.push({ from: start, to: pos, firstLine: startLine });
          start = pos;
          startLine = line;
        }
        // Otherwise directives (%YAML, %TAG) and comments before the marker belong to this document.
        explicit = true;
        const rest = current.slice(3).trim();
        content = rest !== '' && !rest.startsWith('#');
      } else if (DOCUMENT_END.test(current)) {
        if (!explicit && !content) unsure = true;
        else chunks.push({ from: start, to: Math.min(next, bytes.length), firstLine: startLine });
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
  if (explicit || content) chunks.push({ from: start, to: bytes.length, firstLine: startLine });
  return { chunks, unsure };
}

/** splitYaml's documents as text (for a file it is unsure of, its best guess). */
export function* yamlDocuments(source: string | Buffer): Generator<YamlChunk> {
  const bytes = typeof source === 'string' ? Buffer.from(source, 'utf8') : source;
  for (const { from, to, firstLine } of splitYaml(bytes).chunks) yield { text: bytes.toString('utf8', from, to), firstLine };
}

/**
 * The internalized copy of `text`: V8 keeps one copy of each such string for the whole process.
 * The yaml package's scalars are slices of their document's text, and a slice keeps that whole
 * text alive: without this, a loaded configuration would keep its entire source in memory, and
 * one copy per document of every repeated value (namespace, apiVersion, kind, provider names).
 * A property key is always internalized, and Object.keys hands it back. The object has no
 * prototype, so V8 keeps it as a dictionary: a literal `{ [text]: 0 }` would create a hidden
 * class per distinct key, garbage that raised the load's peak by a tenth.
 */
function interned(text: string): string {
  const holder: Record<string, number> = Object.create(null) as Record<string, number>;
  holder[text] = 0;
  return Object.keys(holder)[0] ?? text;
}

/** Replaces, in place, every string of a freshly validated object by its internalized copy (see interned). */
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

/** Shared by every document without warnings: one empty array, not one per document. */
const NO_PROBLEMS: Problem[] = [];

function classify(value: unknown, source: string): ManifestDocument {
  const result = parseManifest(value, source);
  if (result.ok === 'ignored') return { state: 'ignored', source, reason: result.reason, ...(result.id ? { id: result.id } : {}) };
  const content = specContent(value);
  const generation = declaredGeneration(value);
  const gen = generation === undefined ? {} : { generation };
  if (result.ok) {
    internStrings(result.object.value);
    const { kind, namespace, name } = result.id;
    const id: ObjectId = { kind: interned(kind), namespace: interned(namespace), name: interned(name) };
    return { state: 'object', source, id, object: result.object, content, warnings: result.warnings.length > 0 ? result.warnings : NO_PROBLEMS, ...gen };
  }
  return { state: 'invalid', source, problems: result.problems, content, ...(result.id ? { id: result.id } : {}), ...gen };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Everything but metadata and status (what Kubernetes bumps `metadata.generation` for), hashed: the text would double the memory a configuration costs. */
function specContent(value: unknown): string {
  const { metadata: _metadata, status: _status, ...rest } = isRecord(value) ? value : { value };
  // 96 bits tell one version of a spec from the next; kept per document, so kept short (and
  // encoded from those bytes alone: a slice of the full digest would keep the full digest alive).
  return canonicalHash(rest).digest().toString('base64', 0, 12);
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

/** JSON with sorted keys, so reordering keys in a file is not a change. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (!isRecord(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort(byCodeUnits)) sorted[k] = v[k];
    return sorted;
  });
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

/** An object as it is served, with where it came from. */
interface Served {
  id: ObjectId;
  object: KnownObject;
  /** The parsed object `object` was stamped from: while a file is unchanged, it is the same object, and so is `object`. */
  from: KnownObject;
  /** Its spec's hash (ManifestDocument content). */
  content: string;
  file: string;
  generation: number;
}

/** A document that defines an object, and the file it is in (the document itself is not copied: there is one per object). */
interface Definition {
  doc: Extract<ManifestDocument, { state: 'object' | 'invalid' }>;
  id: ObjectId;
  file: string;
}

/**
 * Turns successive reads of the manifest files into Inputs snapshots. It remembers, across reads,
 * the last valid version of every object (so a bad edit does not take a working Backend offline)
 * and each object's generation (so statuses can carry observedGeneration).
 */
export class ManifestStore {
  private served = new Map<string, Served>();
  private readonly lastGood = new Map<string, Served>();
  private readonly generations = new Map<string, { generation: number; content: string }>();
  /** The keys of `served`, sorted. */
  private order: string[] = [];
  /** Each document's Definition, kept while it comes from the same file: a build that reads one file allocates for that file only. */
  private readonly definitionOf = new WeakMap<ManifestDocument, Definition>();

  /** `files` must be sorted by name: of several definitions of an object, the one served so far wins, else the first. */
  build(files: readonly ManifestFile[]): Snapshot {
    const problems: Problem[] = [];
    /** Every definition of each object, in file path order, then document order; then only the one used. */
    const definitions = new Map<string, Definition | Definition[]>();
    const broken = new Map<string, Problem[]>();

    for (const file of files) {
      if (file.readProblem) {
        problems.push(file.readProblem);
        broken.set(file.name, [file.readProblem]);
      }
      for (const doc of file.documents) {
        if (doc.state === 'ignored') continue;
        if (doc.state === 'syntax') {
          problems.push(...doc.problems);
          broken.set(file.name, [...(broken.get(file.name) ?? []), ...doc.problems]);
          continue;
        }
        if (doc.state === 'invalid') problems.push(...doc.problems);
        if (!doc.id) continue;
        const key = keyOf(doc.id);
        let definition = this.definitionOf.get(doc);
        if (definition === undefined || definition.file !== file.name) {
          definition = { doc, id: doc.id, file: file.name };
          this.definitionOf.set(doc, definition);
        }
        const earlier = definitions.get(key);
        if (earlier === undefined) definitions.set(key, definition);
        else if (Array.isArray(earlier)) earlier.push(definition);
        else definitions.set(key, [earlier, definition]);
      }
    }

    for (const [key, list] of definitions) {
      if (!Array.isArray(list)) continue;
      const chosen = this.chooseDefinition(key, list);
      definitions.set(key, chosen.winner);
      for (const other of list) {
        if (other === chosen.winner) continue;
        problems.push({
          source: other.doc.source,
          object: other.id,
          field: 'metadata.name',
          message: `${describe(other.id)} is defined in both ${other.file} (${other.doc.source}) and ${chosen.winner.file} (${chosen.winner.doc.source}); ${chosen.why}, and this definition is ignored. Remove one of them or give it another name`,
        });
      }
    }

    const inputs = emptyInputs();
    const invalid: InvalidObject[] = [];
    const served = new Map<string, Served>();

    for (const [key, chosen] of definitions) {
      if (Array.isArray(chosen)) continue; // not reached: every list was replaced by its winner above
      const { doc: def, file, id } = chosen;
      const generation = this.nextGeneration(key, def.content, def.generation);
      if (def.state === 'object') {
        problems.push(...def.warnings);
        noteUnknownFields(inputs, id, def.warnings);
        // The same object as last time when nothing changed, so translation can skip it by reference.
        const before = this.served.get(key);
        const entry: Served =
          before !== undefined && before.generation === generation && before.file === file && sameObject(before, def)
            ? before
            : { id, object: stamped(def.object, generation), from: def.object, content: def.content, file, generation };
        served.set(key, entry);
        this.lastGood.set(key, entry);
        continue;
      }
      const good = this.lastGood.get(key);
      if (good) served.set(key, good);
      invalid.push({ ...id, generation, problems: def.problems, servingLastGood: good !== undefined });
    }

    // A syntax error can hide which objects a document defines. Objects last loaded from a file
    // that is now broken keep being served: a half-saved file must not take routes offline.
    for (const [key, prev] of this.served) {
      const fileProblems = broken.get(prev.file);
      if (!fileProblems || definitions.has(key)) continue;
      served.set(key, prev);
      invalid.push({ ...prev.id, generation: prev.generation, problems: fileProblems, servingLastGood: true });
    }

    // Objects no file defines any more are gone: a later object of the same name starts afresh.
    for (const key of [...this.lastGood.keys()]) if (!served.has(key)) this.lastGood.delete(key);
    for (const key of [...this.generations.keys()]) if (!served.has(key) && !definitions.has(key)) this.generations.delete(key);
    this.served = served;

    // The order of the last build holds while the same objects are served (an edit, not an
    // addition or removal): sorting tens of thousands of keys costs more than checking them.
    if (this.order.length !== served.size || !this.order.every((k) => served.has(k))) this.order = [...served.keys()].sort(byCodeUnits);
    for (const k of this.order) addToInputs(inputs, (served.get(k) as Served).object);
    inputs.invalid = invalid.sort((a, b) => byCodeUnits(keyOf(a), keyOf(b)));
    return { inputs, problems };
  }

  /**
   * Which of several definitions of one object is used. A new file must not take over an object
   * another file serves (it would change what runs without anyone editing that file): the
   * definition in the file that serves the object wins; on first sight, the first by file path.
   */
  private chooseDefinition(key: string, list: readonly Definition[]): { winner: Definition; why: string } {
    const first = list[0] as Definition;
    if (list.length === 1) return { winner: first, why: '' };
    const servedFrom = this.served.get(key)?.file;
    const incumbent = servedFrom === undefined ? undefined : list.find((d) => d.file === servedFrom);
    if (incumbent !== undefined) return { winner: incumbent, why: `the definition at ${incumbent.doc.source} was served first and keeps being served` };
    return { winner: first, why: `the definition at ${first.doc.source} is used (first by file path, then document index)` };
  }

  private nextGeneration(key: string, content: string, declared: number | undefined): number {
    const prev = this.generations.get(key);
    let generation: number;
    if (declared !== undefined) generation = declared;
    else if (!prev) generation = 1;
    else generation = prev.content === content ? prev.generation : prev.generation + 1;
    if (prev?.generation !== generation || prev.content !== content) this.generations.set(key, { generation, content });
    return generation;
  }
}

/**
 * Whether a definition is the object already served: the very object (its file was not read
 * again), or one equal to it (its file was, for an edit elsewhere in it). Equal objects stay the
 * same object, so translation skips them.
 */
function sameObject(before: Served, def: Extract<ManifestDocument, { state: 'object' }>): boolean {
  if (before.from === def.object) return true;
  return before.content === def.content && before.from.kind === def.object.kind && sameMetadata(before.from.value.metadata, def.object.value.metadata);
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
    o.value.metadata.generation = generation;
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
