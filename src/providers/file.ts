import { createHash, hash } from 'node:crypto';
import type { BigIntStats, FSWatcher } from 'node:fs';
import { readFileSync, statSync, watch } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Problem } from '../api/manifest.js';
import type { ObjectId } from '../api/meta.js';
import { formatProblem } from '../api/manifest.js';
import { silentLogger } from '../observability/logger.js';
import { holdYoungGeneration } from '../observability/young-generation.js';
import type { ConfigLimits, ManifestFile, ManifestDocument, Snapshot } from './manifest-files.js';
import { canonicalDigest, DEFAULT_CONFIG_LIMITS, displayName, limitMessage, listManifestTree, manifestDocuments, ManifestStore } from './manifest-files.js';

export type { Snapshot } from './manifest-files.js';

export interface FileProviderOptions {
  /** A manifest file, or a directory searched recursively for *.yaml, *.yml and *.json. */
  path: string;
  logger?: Logger;
  /**
   * Quiet time after the last file event before reloading, so a burst of writes gives one
   * snapshot. The first event after a quiet time is acted on at once (see `leadingEdge`).
   */
  debounceMs?: number;
  /**
   * Reads the first change after `debounceMs` without one at once instead of after the quiet
   * time, and publishes it when it is a whole edit (see leadingEditProblem); the events that
   * follow within the window give one more pass at its end. Default true.
   */
  leadingEdge?: boolean;
  /** Upper bound on that wait, so a file rewritten without pause is still picked up. */
  maxDelayMs?: number;
  /** Full re-read at this interval in case the kernel dropped events (inotify queue overflow); 0 disables. */
  resyncIntervalMs?: number;
  /** File names in problems and logs are relative to this directory (default: the working directory). */
  sourceRoot?: string;
  /** Size limits per document, per file and in total (DEFAULT_CONFIG_LIMITS for what is not given). */
  limits?: Partial<ConfigLimits>;
  /**
   * How long a file written in place (or left defining nothing) must stay unchanged before the
   * objects it no longer defines go; until then they are served as last built, so a writer
   * between its truncate and its write never takes routes offline (see holdUnsettled). A file
   * renamed into place, or deleted, acts at once. Default 1000 ms.
   */
  settleMs?: number;
}

/**
 * A file whose content would take away objects it served: served as last built until it has
 * stayed unchanged for the settle time (see FileProvider.holdUnsettled).
 */
interface HeldFile {
  name: string;
  /** Its documents as last built: what a leading pass judges the writer's next save against. */
  served: readonly ManifestDocument[];
  /** Its stat when last seen, and when a pass first saw that stat: the settle time runs from then. */
  stamp: string | undefined;
  changedAt: number;
}

/** A file modified this close to when it was read is read again at the next reload (see readFiles). */
const RACY_MS = 50;

/** How long parsing runs before it lets other work on the event loop run. */
const PARSE_SLICE_MS = 20;

/**
 * Files up to this size are stat'ed and read synchronously, between the same 20 ms pauses as
 * parsing: for each of them a promise-based read is four round trips through libuv's thread pool
 * (open, fstat, read, close), and at 10,000 one-Backend files those round trips cost the first
 * load more CPU than the reads themselves and most of its wall time (the event loop idle between
 * hops). A larger file is read without blocking, its parse dwarfing the hops.
 */
const SYNC_READ_BYTES = 1024 * 1024;

/** The whole configuration is larger than the total limit: nothing of it is read. */
class ConfigTooLarge extends Error {
  override name = 'ConfigTooLarge';
}

export type SnapshotListener = (snapshot: Snapshot) => void;

/**
 * A file as last parsed. Its stat (`stamp`) tells whether it must be read again; the `digest` of
 * its bytes whether it must be parsed again (the text itself is not kept).
 */
interface ParsedFile {
  /** The name in problems and logs (displayName), worked out once. */
  name: string;
  stamp: string;
  /** Bytes at the stat the stamp comes from: a pass that stats only what changed still totals every file. */
  size: number;
  /** Whether the file may have changed since without its stamp changing (see readFiles). */
  racy: boolean;
  digest: string;
  documents: ManifestDocument[];
  /** What a pass hands on for this file while it stays the same (one object, not one per pass). */
  file?: ManifestFile;
}

/** A file's stat as a pass judges it. */
interface FileStamp {
  stamp: string;
  size: number;
  /** Modified so close to the stat that it may change again with the same stamp (see readFiles). */
  racy: boolean;
}

/** What the last pass read, per file of its listing, in order: a pass over the same listing starts from it. */
interface LastRead {
  files: readonly string[];
  /** undefined: the file was gone when read. */
  out: (ManifestFile | undefined)[];
  /** Each file's part of the fingerprint ('' when gone). */
  lines: string[];
  sizes: number[];
  total: number;
  position: Map<string, number>;
  /** Files read racy: the next pass reads them again whatever its events named. */
  racy: Set<string>;
  /** The lines' fingerprint (LineSet): a pass that reads a few files changes it by their lines. */
  lineSet: LineSet;
  /** Entries of `out` that are undefined (gone): with none, `out` is the list of files itself. */
  gone: number;
}

/**
 * A fingerprint of a set of distinct lines (each names its file), kept by XOR of each line's
 * digest: replacing one line costs two digests, not the whole text again (10,000 lines joined
 * and hashed at every edit of one file). Equal sets give equal fingerprints; another set differs
 * but by a 2^-128 chance. Never printed.
 */
class LineSet {
  private readonly lanes = new Int32Array(4);
  private count = 0;

  private toggle(line: string): void {
    const d = hash('sha256', line, 'buffer');
    for (let k = 0; k < 4; k++) this.lanes[k]! ^= d.readInt32LE(k * 4);
  }

  add(line: string): void {
    if (line === '') return;
    this.toggle(line);
    this.count++;
  }

  remove(line: string): void {
    if (line === '') return;
    this.toggle(line);
    this.count--;
  }

  fingerprint(): string {
    return `${this.count}:${[...this.lanes].map((x) => (x >>> 0).toString(16)).join('.')}`;
  }
}

/**
 * What a pass must look at again: every file ('all': the first load, a resync, an event that
 * named no file or one not read before), or only the files file events named, all of them read
 * before. Any other file is taken as it was without a stat, unless it was racy. `list`: an entry
 * was added, removed or renamed, so the tree is listed again.
 */
type Scope = 'all' | { touched: Set<string>; list: boolean };

/** What a reload read: the files, and a fingerprint of their bytes that tells whether anything changed. */
interface ReadResult {
  files: ManifestFile[];
  fingerprint: string;
  /** The files read again whose documents changed, with what they held before (undefined: new). */
  changed: ChangedFile[];
  /** Files read before that are gone. */
  removed: number;
}

interface ChangedFile {
  path: string;
  name: string;
  /** The stat the read was judged by; a file still being written has another one afterwards. */
  stamp: string | undefined;
  before: readonly ManifestDocument[] | undefined;
  after: readonly ManifestDocument[];
  readProblem: Problem | undefined;
}

/**
 * Serves the manifests under a path as Inputs snapshots and reports every change.
 * Directories, not files, are watched: editors and Kubernetes ConfigMap mounts replace files by
 * rename, which ends a watch on the file itself, while the directory sees the new entry.
 */
/** Rejects with an error naming the path and the fix when the configuration path cannot be read. */
export async function assertConfigPathReadable(root: string): Promise<void> {
  try {
    await stat(root);
  } catch (err) {
    const code = errorCode(err);
    const what = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read (permission denied)' : `cannot be read (${code})`;
    throw new Error(`configuration path ${root} ${what}: give a manifest file or a directory of them`, { cause: err });
  }
}

export class FileProvider {
  private readonly root: string;
  private readonly logger: Logger;
  private readonly debounceMs: number;
  private readonly maxDelayMs: number;
  private readonly resyncIntervalMs: number;
  private readonly sourceRoot: string;
  private readonly limits: ConfigLimits;
  private readonly store = new ManifestStore();
  private readonly parsed = new Map<string, ParsedFile>();
  private readonly watchers = new Map<string, FSWatcher>();
  private readonly listeners = new Set<SnapshotListener>();
  private readonly readingListeners = new Set<(reading: boolean) => void>();
  private snapshot: Snapshot | undefined;
  private fingerprint = '';
  private readonly leadingEdge: boolean;
  private timer: NodeJS.Timeout | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private readonly settleMs: number;
  /** Files held back by path (see HeldFile), and the pass that looks at them again when they settle. */
  private readonly held = new Map<string, HeldFile>();
  private settleTimer: NodeJS.Timeout | undefined;
  /** Files read before whose last event was a write in place, not a rename into place (see noteEvent). */
  private readonly writtenInPlace = new Set<string>();
  private firstEventAt: number | undefined;
  /** When the last pass that found a change ended: an event within debounceMs of it waits for the trailing pass. */
  private lastChangeAt = Number.NEGATIVE_INFINITY;
  private loading: Promise<unknown> | undefined;
  private reloadRequested = false;
  /**
   * The last leading pass found a save half done (a file truncated and not yet written, say): the
   * writer's next write comes with an event of its own, and that event is read at once by another
   * leading pass, instead of after the debounce (the trailing pass stays due all the same).
   */
  private retryLeading = false;
  /** Set by a deferred leading pass: whether the next event may have another (retryLeading). */
  private retryable = false;
  /** What the last deferred leading pass read (ReadResult.fingerprint). */
  private deferredFingerprint = '';
  /** File events so far: a pass tells whether one came while it ran. */
  private events = 0;
  /**
   * What the files a deferred leading pass read held before it (undefined: new), until a pass
   * decides: a second leading pass judges the save against what was served, not against the
   * half done file the first one parsed.
   */
  private readonly beforeDeferred = new Map<string, readonly ManifestDocument[] | undefined>();
  private stopped = false;
  /** What the file events since the last pass began touched (see Scope). */
  private scope: Scope = 'all';
  /** The tree as last listed: a pass whose events added or removed nothing does not list it again. */
  private tree: { files: string[]; directories: string[] } | undefined;
  private lastRead: LastRead | undefined;
  /**
   * The files read again since the store's last build, with what each holds now (undefined:
   * gone); undefined when every file may have changed (a pass over all of them, or no build yet).
   * The store's build after an edit looks at these alone.
   */
  private sinceBuild: Map<string, ManifestFile | undefined> | undefined;

  constructor(options: FileProviderOptions) {
    this.root = options.path;
    this.logger = (options.logger ?? silentLogger()).child({ component: 'file-provider' });
    // An editor's save is a few events within a millisecond or two (truncate, write, rename): a
    // short quiet time coalesces them; the cap keeps a file rewritten without pause from waiting
    // long. A whole save reaches translation at once (leadingEdge), one caught half done in about
    // 20 ms, a stream of writes every 80 ms at most.
    this.debounceMs = options.debounceMs ?? 20;
    this.maxDelayMs = options.maxDelayMs ?? Math.max(80, 4 * this.debounceMs);
    this.leadingEdge = options.leadingEdge ?? true;
    this.resyncIntervalMs = options.resyncIntervalMs ?? 30_000;
    this.sourceRoot = options.sourceRoot ?? process.cwd();
    this.limits = { ...DEFAULT_CONFIG_LIMITS, ...options.limits };
    // Long enough for a writer's pause between its truncate and its write (a large cp, an editor,
    // a script on a busy machine); short enough that emptying a file on purpose reads as done.
    this.settleMs = options.settleMs ?? 1000;
  }

  /** Loads the manifests once and starts watching. Rejects when the path does not exist. */
  async start(): Promise<Snapshot> {
    // Before the first await: a stop() while the path is checked or first read must win, or the
    // watchers made after it would keep the provider (and its store) alive with nothing to stop them.
    this.stopped = false;
    await assertConfigPathReadable(this.root);
    const first = this.reload();
    this.loading = first;
    try {
      await first;
    } finally {
      if (this.loading === first) this.loading = undefined;
    }
    if (this.stopped) throw new Error(`file provider for ${this.root} was stopped while it was starting; start it again to serve it`);
    if (this.resyncIntervalMs > 0) {
      this.resyncTimer = setInterval(() => {
        this.widenScope('all');
        this.requestReload();
      }, this.resyncIntervalMs);
      this.resyncTimer.unref();
    }
    if (!this.snapshot) throw new Error(`configuration path ${this.root} disappeared while it was being read`);
    return this.snapshot;
  }

  /** Calls `listener` with every later snapshot whose content differs from the previous one. */
  onChange(listener: SnapshotListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` with true when a pass after the first load begins and false when it ends (after onChange's listeners). */
  onReading(listener: (reading: boolean) => void): void {
    this.readingListeners.add(listener);
  }

  current(): Snapshot | undefined {
    return this.snapshot;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.resyncTimer);
    clearTimeout(this.settleTimer);
    this.timer = undefined;
    this.resyncTimer = undefined;
    this.settleTimer = undefined;
    for (const w of this.watchers.values()) {
      w.close();
      // Their listeners hold this provider: a closed watcher still referenced elsewhere must not keep it.
      w.removeAllListeners();
    }
    this.watchers.clear();
    await this.loading;
  }

  /**
   * A file event. The first after a quiet time (no pass found a change for debounceMs, none is
   * running or waiting) is read at once: a single save reaches translation without waiting out
   * the debounce. The events after it wait for one trailing pass, debounced as before, but for
   * the first one after a leading pass that found the save half done (retryLeading).
   */
  private requestReload(): void {
    if (this.stopped) return;
    this.events++;
    if (this.retryLeading && this.loading === undefined) {
      this.runReload(true, true);
      return;
    }
    const now = Date.now();
    if (this.leadingEdge && this.timer === undefined && this.loading === undefined && now - this.lastChangeAt >= this.debounceMs) {
      this.runReload(true);
      return;
    }
    this.scheduleTrailing();
  }

  private scheduleTrailing(): void {
    if (this.stopped) return;
    const now = Date.now();
    this.firstEventAt ??= now;
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.debounceMs, this.firstEventAt + this.maxDelayMs - now));
    this.timer = setTimeout(() => this.runReload(false), wait);
  }

  /**
   * `retry`: a leading pass again, at an event after one that found the save half done; the
   * trailing pass that one scheduled stays due (and a retry that reads nothing new allows another
   * until it runs: a writer's truncate and its write may come as two events).
   */
  private runReload(leading: boolean, retry = false): void {
    if (!retry) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.firstEventAt = undefined;
    }
    // Reloads never overlap: an event during a reload asks for one more afterwards.
    if (this.loading) {
      this.reloadRequested = true;
      return;
    }
    this.retryLeading = false;
    const eventsBefore = this.events;
    this.setReading(true);
    this.loading = this.reload(leading, retry)
      .then((outcome) => {
        if (outcome === 'unchanged') return;
        this.lastChangeAt = Date.now();
        // What the leading pass saw was not a whole edit: the trailing pass decides, even if no
        // event comes; the writer's next event, if it comes first, has it read again at once.
        if (outcome === 'deferred') {
          this.reloadRequested = true;
          this.retryLeading = this.retryable;
        }
      })
      .catch((err: unknown) => this.logger.error({ err }, 'file provider: reload failed; keeping the previous configuration'))
      .finally(() => {
        this.loading = undefined;
        this.setReading(false);
        // The writer's event came while the half done save was being read.
        if (this.retryLeading && this.events !== eventsBefore && !this.stopped) {
          this.reloadRequested = false;
          this.runReload(true, true);
          return;
        }
        if (this.reloadRequested) {
          this.reloadRequested = false;
          this.scheduleTrailing();
        }
      });
  }

  private setReading(reading: boolean): void {
    for (const listener of this.readingListeners) {
      try {
        listener(reading);
      } catch (err) {
        this.logger.error({ err }, 'file provider: a reading listener threw');
      }
    }
  }

  private async reload(leading = false, retry = false): Promise<ReloadOutcome> {
    const release = holdYoungGeneration();
    // Events during this pass make the scope of the next one.
    const scope = this.scope;
    this.scope = { touched: new Set(), list: false };
    let outcome: ReloadOutcome | undefined;
    try {
      outcome = await this.reloadHeld(leading, scope, retry);
      return outcome;
    } finally {
      // A pass that decided nothing leaves what it was to look at to the next one.
      if (outcome === undefined || outcome === 'deferred') this.widenScope(scope);
      else {
        this.beforeDeferred.clear();
        // A held file's next save is judged against what it serves, as after a deferred pass.
        for (const [file, held] of this.held) this.beforeDeferred.set(file, held.served);
      }
      this.scheduleSettle();
      release();
    }
  }

  /** Adds what `more` touched to what the next pass looks at. */
  private widenScope(more: Scope): void {
    if (this.scope === 'all') return;
    if (more === 'all') {
      this.scope = 'all';
      return;
    }
    for (const file of more.touched) this.scope.touched.add(file);
    this.scope.list ||= more.list;
  }

  /**
   * A watcher's event in `dir`. Only an event naming a file read before narrows the next pass to
   * it; anything else (no name, a new or hidden entry, a directory, a ConfigMap's `..data` swap)
   * has it look at every file.
   */
  private noteEvent(dir: string, eventType: string, filename: string | Buffer | null): void {
    const file = typeof filename === 'string' ? path.join(dir, filename) : undefined;
    if (file !== undefined) {
      // Written in place (truncated, written: 'change') its writer may be half way; renamed into
      // place ('rename') it was written whole beforehand, or it is new (see holdUnsettled).
      if (eventType !== 'change') this.writtenInPlace.delete(file);
      else if (this.parsed.has(file)) this.writtenInPlace.add(file);
      // Kept until a rename: a file that is written in place once usually always is.
    }
    if (this.scope === 'all') return;
    if (file === undefined || !this.parsed.has(file)) {
      this.scope = 'all';
      return;
    }
    this.scope.touched.add(file);
    // 'rename': the entry may be gone or replaced.
    if (eventType !== 'change') this.scope.list = true;
  }

  /**
   * `leading`: the pass right after the first event of a burst, which may catch an editor's save
   * half done (a file truncated and not yet written, renamed away and not yet replaced, a document
   * cut short). It publishes only a whole edit (leadingEditProblem) and otherwise leaves the files
   * to the trailing pass, without touching the store: what was served, its last good versions and
   * generations stay as they were.
   */
  private async reloadHeld(leading: boolean, scope: Scope, retry: boolean): Promise<ReloadOutcome> {
    let next: Snapshot;
    let directories: string[];
    let fingerprint: string;
    try {
      const listed = scope === 'all' || scope.list || this.tree === undefined;
      // Not listed again, the root is still stat'ed (synchronously, as readTouched's files): a path
      // gone mid-replace goes to the catch below.
      const tree = this.tree !== undefined && !listed ? (statSync(this.root), this.tree) : await listManifestTree(this.root);
      this.tree = tree;
      directories = tree.directories;
      const read = await this.readFiles(tree.files, scope === 'all' ? undefined : scope.touched, listed);
      fingerprint = read.fingerprint;
      if (fingerprint === this.fingerprint) {
        if (!this.stopped) this.syncWatchers(directories);
        return 'unchanged';
      }
      if (leading) {
        const judged = this.sinceDeferred(read.changed);
        const problem = leadingEditProblem(read.removed, judged);
        if (problem !== undefined) {
          for (const file of judged) if (!this.beforeDeferred.has(file.path)) this.beforeDeferred.set(file.path, file.before);
          // A file gone leaves nothing to judge another leading pass against: the trailing pass
          // decides. A retry that read what the pass before it read has not had its chance.
          this.retryable = read.removed === 0 && (!retry || read.fingerprint === this.deferredFingerprint);
          this.deferredFingerprint = read.fingerprint;
          this.logger.debug({ reason: problem }, 'file provider: a change is not a whole edit yet; reading it again at the next event or after the debounce');
          if (!this.stopped) this.syncWatchers(directories);
          return 'deferred';
        }
      }
      const files = await this.holdUnsettled(read);
      // A pass that held a file back has not served what it read: the pass after the settle time,
      // reading the same bytes, must not take them for what is served.
      if (this.held.size > 0) fingerprint = `${fingerprint}\0held\0${[...this.held.keys()].join('\0')}`;
      next = await this.store.buildYielding(files, this.sinceBuild);
      this.sinceBuild = new Map();
    } catch (err) {
      this.sinceBuild = undefined;
      // The path itself is gone at the first event: an editor replacing it, most likely.
      if (leading) {
        this.retryable = false;
        return 'deferred';
      }
      if (!this.snapshot) throw err;
      // The path itself is gone (mid-replace, or unmounted), or grew past the total limit:
      // serving nothing would drop every route, so the last configuration stays.
      const problem: Problem = {
        source: displayName(this.root, this.sourceRoot),
        field: '',
        message:
          err instanceof ConfigTooLarge
            ? `${err.message}; serving the configuration last loaded until it is back under the limit`
            : `cannot read the configuration path (${errorCode(err)}); serving the configuration last loaded from it until it is back`,
      };
      next = { inputs: this.snapshot.inputs, problems: [problem] };
      // Watching the parent too notices a directory that comes back under the same name.
      directories = [...this.watchers.keys(), path.dirname(path.resolve(this.root))];
      this.tree = undefined;
      fingerprint = `unreadable:${canonicalDigest(problem)}`;
    }
    if (this.stopped) return 'unchanged';
    this.syncWatchers(directories);
    if (fingerprint === this.fingerprint) return 'unchanged';
    const initial = this.snapshot === undefined;
    this.fingerprint = fingerprint;
    // Bytes changed but no object did (a new empty file, a held file, a comment): nothing to tell.
    if (this.snapshot !== undefined && sameSnapshot(this.snapshot, next)) return 'unchanged';
    this.snapshot = next;
    if (initial) {
      this.report(next);
      return 'published';
    }
    // Once the writes of this turn (the change's push, made by the listeners) have left: the log
    // is written synchronously, and a line held the change's first byte to Envoy (issue 9).
    setImmediate(() => {
      try {
        this.report(next);
      } catch {
        // A log that cannot be written is no reason to stop serving.
      }
    });
    for (const listener of this.listeners) {
      try {
        listener(next);
      } catch (err) {
        this.logger.error({ err }, 'file provider: a change listener threw');
      }
    }
    return 'published';
  }

  /**
   * The files a pass builds, where a file that may be its writer half way (see unsure: written in
   * place, by `cat >`, `cp`, an editor that truncates and then writes, or defining nothing) and
   * that no longer defines objects served from it, or does not parse, goes on serving them as
   * they were until it has stayed the same for settleMs: a writer that truncates a file and
   * writes it 100 ms later must not take routes offline in between. What the file defines now is
   * served at once; its syntax errors are handed on (reported, ManifestStore keeps serving what
   * they hide) and what it no longer defines is removed once it has settled. Not held: a file
   * renamed into place that defines something (written whole elsewhere first: an atomic save,
   * sed -i, a ConfigMap swap), a deleted file, an unreadable one. Looks only at the files this
   * pass read changed, those a deferred pass read, and those held.
   */
  private async holdUnsettled(read: ReadResult): Promise<readonly ManifestFile[]> {
    const last = this.lastRead;
    if (last === undefined || this.snapshot === undefined) return read.files;
    const candidates = new Set<string>(this.held.keys());
    for (const file of read.changed) candidates.add(file.path);
    for (const file of this.beforeDeferred.keys()) candidates.add(file);
    if (candidates.size === 0) return read.files;
    const now = Date.now();
    const substitutes = new Map<string, ManifestFile>();
    // Thousands of files rewritten at once are thousands of candidates: the same pauses as reading them.
    let since = performance.now();
    for (const file of candidates) {
      if (performance.now() - since > PARSE_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        since = performance.now();
      }
      const position = last.position.get(file);
      const current = position === undefined ? undefined : last.out[position];
      const before = this.held.get(file);
      // Not held: gone, unreadable (the store serves what it served), or served as it is.
      const unsure = current !== undefined && current.readProblem === undefined ? this.unsure(file, current) : undefined;
      if (current === undefined || unsure === undefined) {
        if (before !== undefined) {
          this.held.delete(file);
          if (current !== undefined) this.sinceBuild?.set(current.name, current);
        }
        continue;
      }
      const { lost, broken } = unsure;
      const stamp = this.parsed.get(file)?.stamp;
      const held: HeldFile =
        before === undefined ? { name: current.name, served: this.store.builtFile(current.name)?.documents ?? [], stamp, changedAt: now } : before.stamp === stamp ? before : { ...before, stamp, changedAt: now };
      const what = broken ? 'does not parse' : definesSomething(current) ? `no longer defines ${describeDefinitions(lost)}` : 'defines nothing';
      if (now - held.changedAt >= this.settleMs) {
        this.held.delete(file);
        this.sinceBuild?.set(current.name, current);
        // A file left broken or empty is more likely a writer that stopped half way than an edit.
        this.logger[broken || !definesSomething(current) ? 'warn' : 'info'](
          { source: current.name, objects: lost.length },
          broken
            ? `file provider: ${current.name} ${what} for ${this.settleMs} ms: its problems are reported, and what it served keeps being served until it parses`
            : `file provider: ${current.name} ${what} for ${this.settleMs} ms: what it no longer defines is removed`,
        );
        continue;
      }
      if (before === undefined) {
        this.logger.debug(
          { source: current.name, objects: lost.length },
          `file provider: ${current.name} ${what}; serving what it served until it is written again, for ${this.settleMs} ms at most (delete the file to remove its objects at once)`,
        );
      }
      this.held.set(file, held);
      // What the file defines now is served at once, what it no longer defines (or hides in a
      // document that does not parse) as it was; its syntax errors wait for the settle time.
      const substitute: ManifestFile = { name: current.name, documents: [...current.documents.filter((doc) => doc.state !== 'syntax'), ...lost] };
      substitutes.set(current.name, substitute);
      this.sinceBuild?.set(current.name, substitute);
    }
    if (substitutes.size === 0) return read.files;
    return read.files.map((file) => substitutes.get(file.name) ?? file);
  }

  /**
   * Whether a file as read now may be its writer half way, and what it would take away: it does
   * not parse or no longer defines objects served from it, and it was written in place (a file
   * renamed into place was written whole beforehand) or defines nothing at all.
   */
  private unsure(file: string, current: ManifestFile): { lost: ManifestDocument[]; broken: boolean } | undefined {
    const broken = current.documents.some((doc) => doc.state === 'syntax');
    if (!this.writtenInPlace.has(file) && definesSomething(current)) return undefined;
    const lost = lostDefinitions(this.store.servedDefinitions(current.name), current);
    return lost.length > 0 || broken ? { lost, broken } : undefined;
  }

  /** A pass when the earliest held file has stayed the same for settleMs. */
  private scheduleSettle(): void {
    clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
    if (this.held.size === 0 || this.stopped) return;
    let first = Number.POSITIVE_INFINITY;
    for (const held of this.held.values()) first = Math.min(first, held.changedAt);
    this.settleTimer = setTimeout(
      () => {
        this.settleTimer = undefined;
        this.widenScope({ touched: new Set(this.held.keys()), list: false });
        this.runReload(false);
      },
      Math.max(0, first + this.settleMs - Date.now()) + 1,
    );
    this.settleTimer.unref();
  }

  /**
   * The files a leading pass judges: those it read changed, and those an earlier leading pass
   * deferred, each against what it held before that pass (beforeDeferred): a file the earlier
   * pass read whole and this one did not read changed is judged all the same.
   */
  private sinceDeferred(changed: readonly ChangedFile[]): readonly ChangedFile[] {
    if (this.beforeDeferred.size === 0) return changed;
    const judged = changed.map((file) => (this.beforeDeferred.has(file.path) ? { ...file, before: this.beforeDeferred.get(file.path) } : file));
    const read = new Set(changed.map((file) => file.path));
    for (const [file, before] of this.beforeDeferred) {
      if (read.has(file)) continue;
      const now = this.parsed.get(file);
      const name = now?.name ?? displayName(file, this.sourceRoot);
      // Gone since: judged as a file that cannot be read.
      const readProblem = now === undefined ? { source: name, field: '', message: 'the file is gone' } : undefined;
      judged.push({ path: file, name, stamp: now?.stamp, before, after: now?.documents ?? [], readProblem });
    }
    return judged;
  }

  /**
   * Reads what changed since the last reload: a file whose stat (size, mtime, ctime, inode) is
   * the same is not read again; one that was read but has the same bytes is not parsed again.
   * `touched`: only these files (and those never read, or read racy) are looked at; every other
   * one is taken as last read, without a stat (at 10,000 one-Backend files, stat'ing them all and
   * going over each was most of an edit's time). `listed`: the tree was listed again, so files
   * read before and gone since are forgotten.
   */
  private async readFiles(files: readonly string[], touched: ReadonlySet<string> | undefined, listed: boolean): Promise<ReadResult> {
    const last = this.lastRead;
    if (touched !== undefined && !listed && last !== undefined && last.files === files) return this.readTouched(last, touched);
    const out: ManifestFile[] = [];
    const changed: ChangedFile[] = [];
    let removed = 0;
    if (listed) {
      const present = new Set(files);
      for (const cached of [...this.parsed.keys()]) {
        if (present.has(cached)) continue;
        this.parsed.delete(cached);
        removed++;
      }
    }
    // Sizes first: a configuration over the total limit is not read at all.
    const sizes: number[] = [];
    const stamps: (FileStamp | undefined)[] = [];
    // File times are kernel ticks, coarser than a nanosecond: a file modified in the tick it was
    // read in may change again in that tick with the same size and stamp, so it is read again
    // next time (the "racy clean" rule of git's index).
    const statedAt = Date.now();
    let total = 0;
    let since = performance.now();
    for (const file of files) {
      if (performance.now() - since > PARSE_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        since = performance.now();
      }
      const known = touched === undefined || touched.has(file) ? undefined : this.parsed.get(file);
      const stamp = known !== undefined && !known.racy ? { stamp: known.stamp, size: known.size, racy: false } : stampOf(file, statedAt);
      sizes.push(stamp?.size ?? 0);
      stamps.push(stamp);
      total += stamp?.size ?? 0;
    }
    if (total > this.limits.totalBytes) {
      throw new ConfigTooLarge(limitMessage(`the configuration under ${displayName(this.root, this.sourceRoot)} (${files.length} files)`, total, 'totalBytes', this.limits));
    }
    const read: LastRead = { files, out: [], lines: [], sizes, total, position: new Map(), racy: new Set(), lineSet: new LineSet(), gone: 0 };
    this.sinceBuild = undefined;
    since = performance.now();
    for (const [i, file] of files.entries()) {
      if (performance.now() - since > PARSE_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        since = performance.now();
      }
      const size = sizes[i] ?? 0;
      const one = await this.readOne(file, size, stamps[i], size <= SYNC_READ_BYTES);
      read.position.set(file, i);
      read.out.push(one.file);
      read.lines.push(one.line);
      read.lineSet.add(one.line);
      if (one.file !== undefined) out.push(one.file);
      else read.gone++;
      if (one.changed !== undefined) changed.push(one.changed);
      if (one.gone) removed++;
      if (this.parsed.get(file)?.racy === true) read.racy.add(file);
    }
    this.lastRead = read;
    return { files: out, fingerprint: read.lineSet.fingerprint(), changed, removed };
  }

  /**
   * readFiles for a pass whose events named files read before, over the same listing: only those
   * files, and those read racy, are stat'ed and read again; the rest is what the last pass read.
   */
  private async readTouched(last: LastRead, touched: ReadonlySet<string>): Promise<ReadResult> {
    const statedAt = Date.now();
    const look = new Set([...touched, ...last.racy].filter((file) => last.position.has(file)));
    const stamps = new Map<string, FileStamp | undefined>();
    let total = last.total;
    // A few files, stat'ed and read synchronously up to SYNC_READ_BYTES like a full pass's: each
    // promise-based stat or read is a round trip through libuv's thread pool, and on a busy
    // machine those round trips were most of the time from a save to its first byte to Envoy
    // (issue 9). A save caught half done this way is read again at the writer's next event
    // (retryLeading), not after the debounce. Many files (a burst that touched them all) are
    // read between the same pauses as a full pass's.
    let since = performance.now();
    for (const file of look) {
      if (performance.now() - since > PARSE_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        since = performance.now();
      }
      const stamp = stampOf(file, statedAt);
      stamps.set(file, stamp);
      total += (stamp?.size ?? 0) - (last.sizes[last.position.get(file) ?? -1] ?? 0);
    }
    if (total > this.limits.totalBytes) {
      throw new ConfigTooLarge(limitMessage(`the configuration under ${displayName(this.root, this.sourceRoot)} (${last.files.length} files)`, total, 'totalBytes', this.limits));
    }
    // The last pass's lists, changed in place at the files read again, each file's entries
    // together once it was read: at 10,000 files, copying them at every edit was most of this
    // pass's allocation. A pass that fails half way leaves the files it read recorded as read.
    const read = last;
    const changed: ChangedFile[] = [];
    let removed = 0;
    since = performance.now();
    for (const file of look) {
      if (performance.now() - since > PARSE_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        since = performance.now();
      }
      const i = last.position.get(file) ?? -1;
      const stamp = stamps.get(file);
      const name = this.parsed.get(file)?.name ?? displayName(file, this.sourceRoot);
      const size = stamp?.size ?? 0;
      const one = await this.readOne(file, size, stamp, size <= SYNC_READ_BYTES);
      this.sinceBuild?.set(name, one.file);
      if (read.out[i] === undefined) read.gone--;
      if (one.file === undefined) read.gone++;
      read.out[i] = one.file;
      read.lineSet.remove(read.lines[i] ?? '');
      read.lineSet.add(one.line);
      read.lines[i] = one.line;
      read.total += (stamp?.size ?? 0) - (read.sizes[i] ?? 0);
      read.sizes[i] = stamp?.size ?? 0;
      if (one.changed !== undefined) changed.push(one.changed);
      if (one.gone) {
        removed++;
        // The listing has it still: the next pass lists the tree again.
        this.parsed.delete(file);
        this.tree = undefined;
      }
      if (this.parsed.get(file)?.racy === true) read.racy.add(file);
      else read.racy.delete(file);
    }
    this.lastRead = read;
    // ManifestStore reads the list during the build and keeps none of it.
    const files = read.gone === 0 ? (read.out as ManifestFile[]) : read.out.filter((f): f is ManifestFile => f !== undefined);
    return { files, fingerprint: read.lineSet.fingerprint(), changed, removed };
  }

  /**
   * One file of a pass: what it holds (undefined when it is gone), its line of the pass's
   * fingerprint ('' when gone), and what changed in it.
   */
  private async readOne(file: string, size: number, stamp: FileStamp | undefined, sync: boolean): Promise<{ file: ManifestFile | undefined; line: string; changed?: ChangedFile; gone?: true }> {
    const known = this.parsed.get(file);
    const name = known?.name ?? displayName(file, this.sourceRoot);
    if (size > this.limits.fileBytes) {
      // Not read: a broken file, so the objects last loaded from it keep being served.
      const message = limitMessage('this file', size, 'fileBytes', this.limits);
      const readProblem = { source: name, field: '', message };
      return { file: { name, documents: [], readProblem }, line: `${name}\0problem\0${message}\n`, changed: { path: file, name, stamp: undefined, before: known?.documents, after: [], readProblem } };
    }
    if (stamp !== undefined && known !== undefined && !known.racy && known.stamp === stamp.stamp) {
      known.file ??= { name, documents: known.documents };
      return { file: known.file, line: `${name}\0${known.digest}\n` };
    }
    // Bytes, not a string: documents are decoded one at a time (parseManifestFile).
    let bytes: Buffer;
    try {
      bytes = sync ? readFileSync(file) : await readFile(file);
    } catch (err) {
      // Deleted between listing and reading: the next event reloads without it.
      if (errorCode(err) === 'ENOENT') return { file: undefined, line: '', gone: true };
      const message = `cannot read the file (${errorCode(err)})`;
      const readProblem = { source: name, field: '', message };
      return { file: { name, documents: [], readProblem }, line: `${name}\0problem\0${message}\n`, changed: { path: file, name, stamp: undefined, before: known?.documents, after: [], readProblem } };
    }
    // Grown since stat: judged by what was read.
    if (bytes.length > this.limits.fileBytes) {
      const message = limitMessage('this file', bytes.length, 'fileBytes', this.limits);
      const readProblem = { source: name, field: '', message };
      return { file: { name, documents: [], readProblem }, line: `${name}\0problem\0${message}\n`, changed: { path: file, name, stamp: undefined, before: known?.documents, after: [], readProblem } };
    }
    const digest = createHash('sha256').update(bytes).digest('base64');
    let entry: ParsedFile;
    if (known?.digest !== digest) {
      // After a deferred leading pass, documents are reused from what was served (beforeDeferred),
      // not from the half done file that pass parsed: an edit of one document parses one.
      entry = { name, stamp: stamp?.stamp ?? '', size: bytes.length, racy: stamp?.racy ?? true, digest, documents: await this.parse(name, bytes, this.beforeDeferred.get(file) ?? known?.documents) };
      for (const doc of entry.documents) {
        if (doc.state === 'ignored' && doc.id) this.logger.debug({ source: doc.source, kind: doc.id.kind }, `file provider: ${doc.reason}; ignored`);
      }
    } else {
      entry = { ...known, stamp: stamp?.stamp ?? '', size: bytes.length, racy: stamp?.racy ?? true };
    }
    this.parsed.set(file, entry);
    releaseNow(bytes);
    entry.file ??= { name, documents: entry.documents };
    const changed = entry.documents !== known?.documents ? { path: file, name, stamp: stamp?.stamp, before: known?.documents, after: entry.documents, readProblem: undefined } : undefined;
    return { file: entry.file, line: `${name}\0${digest}\n`, ...(changed !== undefined ? { changed } : {}) };
  }

  /**
   * Parses a file (only the documents whose text changed since `previous`), yielding to the event loop every few milliseconds: a large file takes seconds
   * to parse, and meanwhile the xDS server must keep answering (Envoy's keepalive, new streams)
   * and the health endpoints their probes.
   */
  private async parse(name: string, bytes: Buffer, previous: readonly ManifestDocument[] | undefined): Promise<ManifestDocument[]> {
    const documents: ManifestDocument[] = [];
    let since = performance.now();
    for (const doc of manifestDocuments(name, bytes, this.limits, previous)) {
      documents.push(doc);
      if (performance.now() - since > PARSE_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        since = performance.now();
      }
    }
    return documents;
  }

  private syncWatchers(directories: readonly string[]): void {
    const wanted = new Set(directories);
    for (const [dir, watcher] of this.watchers) {
      if (!wanted.has(dir)) {
        watcher.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of wanted) {
      if (this.watchers.has(dir)) continue;
      try {
        const watcher = watch(dir, { persistent: false }, (eventType, filename) => {
          this.noteEvent(dir, eventType, filename);
          this.requestReload();
        });
        watcher.on('error', (err) => {
          // The directory went away; the reload decides whether it comes back and rewatches it.
          watcher.close();
          if (this.watchers.get(dir) === watcher) this.watchers.delete(dir);
          this.logger.debug({ dir, err }, 'file provider: watch ended');
          this.widenScope('all');
          this.requestReload();
        });
        this.watchers.set(dir, watcher);
      } catch (err) {
        const hint = errorCode(err) === 'ENOSPC' ? '; raise fs.inotify.max_user_watches' : '';
        this.logger.warn({ dir, err }, `file provider: cannot watch ${dir}${hint}; changes there are seen at the next resync`);
      }
    }
  }

  private report(snapshot: Snapshot): void {
    const { inputs, problems } = snapshot;
    this.logger.info(
      {
        gatewayClasses: inputs.gatewayClasses.length,
        gateways: inputs.gateways.length,
        httpRoutes: inputs.httpRoutes.length,
        backends: inputs.backends.length,
        secrets: inputs.secrets.length,
        invalid: inputs.invalid.length,
        problems: problems.length,
      },
      'file provider: configuration loaded',
    );
    // Problem messages name fields and files, never values, so a broken Secret stays secret.
    for (const p of problems) this.logger.warn({ source: p.source, field: p.field }, formatProblem(p));
  }
}

type ReloadOutcome = 'unchanged' | 'published' | 'deferred';

/**
 * Why what a leading pass read may be an edit caught half done, or undefined when it is a whole
 * one: the same files as before, and each changed file read cleanly (no read problem, syntax
 * error or invalid document), defining the same objects in the same order as before and not
 * written to since it was read. A file truncated and not yet written, renamed away and not yet
 * replaced, or cut inside a document fails one of these. So does a real change of that kind
 * (a new object, a file added or removed, a bad edit): the trailing pass takes those, as every
 * change before the leading pass existed.
 */
function leadingEditProblem(removed: number, changed: readonly ChangedFile[]): string | undefined {
  if (removed > 0) return 'a file was removed';
  for (const file of changed) {
    if (file.before === undefined) return `${file.name} is new`;
    if (file.readProblem !== undefined) return `${file.name}: ${file.readProblem.message}`;
    if (file.after.length !== file.before.length) return `${file.name} has ${file.after.length} documents instead of ${file.before.length}`;
    for (let i = 0; i < file.after.length; i++) {
      const now = file.after[i] as ManifestDocument;
      if (now.state === 'syntax' || now.state === 'invalid') return `${now.source} is not valid`;
      if (!sameObject(now, file.before[i] as ManifestDocument)) return `${now.source} defines another object than before`;
    }
  }
  // A writer between two writes leaves a prefix that can parse; its next write changes the stat.
  for (const file of changed) {
    const info = stampOf(file.path, 0);
    if (info === undefined || info.stamp !== file.stamp) return `${file.name} changed while it was read`;
  }
  return undefined;
}

/**
 * The definitions of `served` whose objects `now` does not define (a document of `now` that does
 * not parse defines nothing that can be known).
 */
function lostDefinitions(served: readonly ManifestDocument[], now: ManifestFile): ManifestDocument[] {
  const key = (id: ObjectId): string => `${id.kind}/${id.namespace}/${id.name}`;
  const defined = new Set<string>();
  for (const doc of now.documents) if ((doc.state === 'object' || doc.state === 'invalid') && doc.id !== undefined) defined.add(key(doc.id));
  return served.filter((doc) => (doc.state === 'object' || doc.state === 'invalid') && doc.id !== undefined && !defined.has(key(doc.id)));
}

function definesSomething(file: ManifestFile): boolean {
  return file.documents.some((doc) => doc.state === 'object' || doc.state === 'invalid');
}

/** The objects a few documents define, for a log line. */
function describeDefinitions(documents: readonly ManifestDocument[]): string {
  const named: string[] = [];
  for (const doc of documents.slice(0, 3)) {
    const id = doc.state === 'object' || doc.state === 'invalid' ? doc.id : undefined;
    if (id !== undefined) named.push(`${id.kind} ${id.namespace ? `${id.namespace}/` : ''}${id.name}`);
  }
  return documents.length > 3 ? `${named.join(', ')} and ${documents.length - 3} more objects` : named.join(', ');
}

/** Whether two snapshots hold the very same lists and problems (the store hands out a list again only when it did not change). */
function sameSnapshot(a: Snapshot, b: Snapshot): boolean {
  const keys = Object.keys(a.inputs) as (keyof Snapshot['inputs'])[];
  if (keys.length !== Object.keys(b.inputs).length) return false;
  for (const key of keys) if (a.inputs[key] !== b.inputs[key]) return false;
  return a.problems.length === b.problems.length && a.problems.every((problem, i) => problem === b.problems[i]);
}

function sameObject(a: ManifestDocument, b: ManifestDocument): boolean {
  if (a.state === 'syntax' || b.state === 'syntax') return false;
  // An empty document, or one of no kind Switchyard reads, defines nothing either way.
  if (a.id === undefined || b.id === undefined) return a.state === 'ignored' && b.state === 'ignored' && a.id === b.id;
  return a.id.kind === b.id.kind && a.id.namespace === b.id.namespace && a.id.name === b.id.name;
}

/**
 * Frees a large file's bytes at once (every document decoded from them is a copy). Unreachable
 * bytes are otherwise freed by the next full garbage collection, which during a large load comes
 * after the snapshot is built: the whole file again on top of the load's peak. Only a buffer
 * that owns its memory alone is released; small ones share Node's pool with other buffers.
 */
function releaseNow(bytes: Buffer): void {
  const owner = bytes.buffer;
  if (bytes.length < 1024 * 1024 || bytes.byteOffset !== 0 || owner.byteLength !== bytes.length || !(owner instanceof ArrayBuffer)) return;
  // ArrayBuffer.prototype.transfer (ES2024, Node 21+) detaches the buffer and frees its memory; our TypeScript lib predates it.
  (owner as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer }).transfer?.(0);
}

/** A file's stat, or undefined when it is gone (deleted between listing and reading: it is skipped). */
function stampOf(file: string, statedAt: number): FileStamp | undefined {
  try {
    return stampFrom(statSync(file, { bigint: true }), statedAt);
  } catch {
    return undefined;
  }
}

function stampFrom(info: BigIntStats, statedAt: number): FileStamp {
  return {
    stamp: `${info.size}/${info.mtimeNs}/${info.ctimeNs}/${info.ino}`,
    size: Number(info.size),
    racy: Number(info.mtimeNs / 1_000_000n) >= statedAt - RACY_MS || Number(info.ctimeNs / 1_000_000n) >= statedAt - RACY_MS,
  };
}

function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.message : String(err);
}
