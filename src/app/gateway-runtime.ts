import type { Logger } from 'pino';
import type { Backend } from '../api/backend.js';
import { formatProblem, SCHEMAS, warmSchemas, type Problem } from '../api/manifest.js';
import type { EnvoyOptions } from '../envoy/options.js';
import { KIND_FIELD, PUSH_ORDER, TypeUrl, type XdsResources } from '../envoy/resources.js';
import { startHealthServer, type HealthServer } from '../observability/health.js';
import { createMetrics, type SwitchyardMetrics } from '../observability/metrics.js';
import { holdYoungGeneration } from '../observability/young-generation.js';
import { collectBeforeRehearsal, collectionLogFields } from '../observability/idle-compaction.js';
import { toXdsResourcesReusing, type DataPlanes, type EnvoyState } from '../envoy/index.js';
import { prebuildAttemptForms, toAttemptFormResources, type AttemptFormsMemo } from '../envoy/attempt-forms.js';
import type { GatewayIR } from '../ir/model.js';
import type { Readiness } from '../observability/health.js';
import { translate, type TranslationState } from '../translate/index.js';
import type { Inputs } from '../translate/inputs.js';
import type { IR } from '../ir/model.js';
import { replacedAt } from '../ir/delta.js';
import type { Snapshot } from '../providers/manifest-files.js';
import { StatusBook } from '../status/book.js';
import { DnsProbe } from '../status/dns-probe.js';
import { applyFleetHealthAt, applyFleetHealthSteps, fleetHealthEdit, fleetHealthViewSteps, LoadWindow, reportingOf, sameFleetHealthSteps, type FleetHealthEntry, type FleetHealthMemo, type FleetHealthView, type LoadSource, type Reporting, type ResolvesFn } from '../status/fleet-health.js';
import { FleetLoad, mergeFleetViews, remoteFeedback, shareOfClients, shareOfLoad, type FleetExchange } from '../status/fleet-share.js';
import { servedAsUpdateSteps, type ClientTypeFeedback, type FleetTypeFeedback, ProgrammedMemo, type ServedAs, type ServedAsMemo } from '../status/programmed.js';
import { OBJECTS_PER_STEP, runSteps, SlicedRun, type Steps } from '../status/steps.js';
import type { ObjectStatus, WarningEvent } from '../translate/status.js';
import { SHARED_VIEW, SnapshotCache, type AttemptForms } from '../xds/cache.js';
import { loadReportingService } from '../xds/lrs.js';
import { XdsServer } from '../xds/server.js';
import { xdsServerCredentials, xdsTlsMode, type XdsServerTls } from '../xds/tls.js';
import { asAddressInUse, assertServingPortsFree } from './ports.js';
import { ResourceQuarantine } from './resource-quarantine.js';
import { RouteQuarantine } from './route-quarantine.js';

/** How long the first statuses wait for a first client to be sent its configuration (see firstStatuses). */
export const FIRST_STATUS_WAIT_MS = 500;
/**
 * How long, once the first response is handed to its stream, the first statuses and the edit
 * rehearsal wait for that client to ACK or NACK it (to have read all of it) before they run anyway.
 */
export const FIRST_RECEIPT_WAIT_MS = 2_000;
/** How long xDS feedback (ACK, NACK, disconnect) waits to be folded into one status rebuild. */
export const STATUS_COALESCE_MS = 50;
/** Status passes a run of translations may drop in a row before one is let finish (a stream of edits faster than a pass must not keep status unwritten). */
export const MAX_SUPERSEDED = 2;

/** The longest turn the legacy attempt facts form is built in (an older Envoy joining), so xDS and status never wait behind it. */
const LEGACY_BUILD_SLICE_MS = 20;
/** How long the legacy form is kept built after the last older Envoy left: one that comes back (a restart, a rollback) is served at once. */
const LEGACY_FORM_KEPT_MS = 10 * 60_000;

/** Whether two attempt forms are the same views served the same resources (the very objects, in the same order). */
function sameForms(a: AttemptForms, b: AttemptForms): boolean {
  const sameList = (x: readonly unknown[], y: readonly unknown[]): boolean => x.length === y.length && x.every((item, i) => item === y[i]);
  return a.views.size === b.views.size && [...a.views].every((view) => b.views.has(view))
    && sameList(a.resources.clusters, b.resources.clusters) && sameList(a.resources.endpoints, b.resources.endpoints);
}

/** Where inputs come from: the file provider or the Kubernetes provider. */
export interface SnapshotProvider {
  /** The first snapshot; rejects when the source cannot be read at all. */
  start(): Promise<Snapshot>;
  onChange(listener: (snapshot: Snapshot) => void): () => void;
  stop(): Promise<void>;
  /**
   * Calls `listener` with true when the provider begins reading what may be a change and false
   * when it is done (after onChange's listeners, if it was one): status work waits meanwhile.
   */
  onReading?(listener: (reading: boolean) => void): void;
}

/** Where statuses and warnings go besides the log: the Kubernetes status writer and event recorder. */
export interface StatusSink {
  /** Every object's current status (translation plus xDS feedback), after each change. */
  statuses(all: readonly ObjectStatus[]): void;
  /** The warnings of the latest translation, all of them. */
  warnings(events: readonly WarningEvent[]): void;
}

export interface StatusOverlay {
  apply(statuses: ObjectStatus[]): ObjectStatus[];
  /** Registers the runtime's "compute statuses again". */
  onChange(listener: () => void): void;
}

/** Where a command that serves Envoy listens (xDS, metrics), what it tells Envoy, and where it logs. */
export interface ServingOptions {
  xdsPort: number;
  xdsHost: string;
  /** Serve xDS over TLS (mTLS when it has a CA); plaintext without. */
  xdsTls?: XdsServerTls;
  metricsPort: number;
  metricsHost: string;
  envoy: Partial<EnvoyOptions>;
  logger: Logger;
  /** Envoys' load reports (LRS) → member figures and Degraded in Backend status. */
  loadReporting?: Partial<LoadReportingSettings>;
  /**
   * Test seam, set by no command line flag and no input: rewrites translation output before the
   * quarantine, so a test can make the real Envoy reject what translation accepts.
   */
  testOnlyRewrite?: (xds: XdsResources) => XdsResources;
}

/**
 * What runs the Gateways' data planes (src/infrastructure/host.ts): a sibling of the status
 * writer, fed the Gateways of each translation; it decides their listener addresses before the
 * Envoy stage and adds what it knows (addresses, readiness) to their status.
 */
export interface Infrastructure {
  /** "namespace/name" -> the address the Gateway's listeners bind (EnvoyOptions.gatewayAddresses). */
  addresses(gateways: readonly GatewayIR[]): ReadonlyMap<string, string>;
  /** The snapshot of the last addresses() call is in the cache: start or stop data planes to match. */
  apply(): void;
  statuses(all: readonly ObjectStatus[]): ObjectStatus[];
  /** A data plane changed state: statuses and readiness are to be read again. */
  onChange(listener: () => void): () => void;
  readiness(): Readiness;
  /** Per Gateway, for /statusz. */
  views(): unknown[];
}


export interface LoadReportingSettings {
  /** How often each Envoy reports (LoadStatsResponse.load_reporting_interval). */
  intervalMs: number;
  /** The sliding window figures and Degraded describe. */
  windowMs: number;
  /** Figures and Degraded are recomputed at most this often, so status does not churn. */
  refreshMs: number;
}

export const DEFAULT_LOAD_REPORTING: LoadReportingSettings = { intervalMs: 2_000, windowMs: 60_000, refreshMs: 10_000 };

export interface GatewayRuntimeOptions extends ServingOptions {
  provider: SnapshotProvider;
  statusSink?: StatusSink;
  infrastructure?: Infrastructure;
  /** Logged with the "serving" line: where the configuration comes from. */
  origin: Record<string, string>;
  /** Every translation's IR, after it is served (the infrastructure provider acts on it). */
  onTranslated?: (ir: IR) => void;
  /** A last step over statuses (Gateway addresses from the infrastructure), re-run when it says so. */
  statusOverlay?: StatusOverlay;
  /** Series of another process served on this /metrics too (serve's AI extension). */
  extraMetrics?: () => Promise<string>;
  /**
   * The other controller replicas: what their Envoys ACKed, rejected and reported is merged with
   * this replica's own before statuses are computed, and this replica's is handed to them.
   */
  fleet?: FleetExchange;
  /** How long the first statuses wait for a first response to leave (FIRST_STATUS_WAIT_MS). */
  firstStatusWaitMs?: number;
  /** Objects from which an edit is rehearsed after the start (REHEARSAL_MIN_OBJECTS). */
  rehearsalMinObjects?: number;
  /** The largest V8 heap in use collected before that rehearsal (collectBeforeRehearsal; idle compaction's maxHeapBytes). */
  startCollectionMaxHeapBytes?: number;
}

/**
 * From this many objects an edit is rehearsed after the start (rehearseEdit in
 * startGatewayRuntime): below, an edit's lists are short and its code, run cold, costs little.
 * At 50 Backends (402 objects) it did not: the first edit compiled the schemas and the
 * translation's edit paths lazily, 5-7 ms of serve's main thread (perf, 50 x 1,000 delta, issue 9).
 */
export const REHEARSAL_MIN_OBJECTS = 100;

/**
 * The start is not over (RunningGateway.settled) until this long after the last change from the
 * provider: the CLI's full GC then (at 10,000 Backends 0.2-0.3 CPU-s, seconds on a busy machine)
 * would otherwise hold up the next edit of someone editing as the start ends.
 */
export const SETTLE_AFTER_EDIT_MS = 2_000;

/** Whether two objects have the same JSON text, key order included. */
function sameJsonText(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Whether a configuration has an edit worth rehearsing: a Backend to copy, among at least `minObjects` objects. */
function rehearsalWanted(inputs: Inputs, minObjects: number): boolean {
  if (inputs.backends.length === 0) return false;
  let objects = 0;
  for (const list of [inputs.gatewayClasses, inputs.gateways, inputs.httpRoutes, inputs.backends, inputs.secrets, inputs.referenceGrants, inputs.services, inputs.endpointSlices, inputs.namespaces]) objects += list.length;
  return objects >= minObjects;
}

/** Objects status passes looked at since the start, per stage: what an edit or an ACK costs, for tests and benches. */
export interface StatusWork {
  passes: number;
  programmed: number;
  health: number;
  book: number;
}

export interface RunningGateway {
  xdsPort: number;
  metricsPort: number;
  statuses(): ObjectStatus[];
  /** Objects status passes looked at since the start (StatusWork). */
  statusWork(): StatusWork;
  problems(): Problem[];
  cache: SnapshotCache;
  xds: XdsServer;
  metrics: SwitchyardMetrics;
  /**
   * Resolves once the start is over: a client has read the first configuration (its ACK or NACK,
   * or FIRST_RECEIPT_WAIT_MS after it left; or no client came for FIRST_STATUS_WAIT_MS), an edit was rehearsed for a large configuration (see
   * rehearseEdit), the status work that followed is done and no change came from the provider
   * for SETTLE_AFTER_EDIT_MS. At stop() at the latest.
   */
  settled: Promise<void>;
  /** Stops the provider, the xDS server and the health server. */
  stop(): Promise<void>;
}

/** Beyond this many status changes in one publication (a first load, a fleet's first ACK), one line sums them up. */
const STATUS_LINES_MAX = 100;

/** A condition that says something is wrong, not only that it is not done yet. */
function troubled(s: ObjectStatus): boolean {
  return 'conditions' in s && s.conditions.some((c) => c.status === 'False' && c.reason !== 'Pending');
}

/**
 * Status changes in the log: one line per object, or, when there are many, one line per object
 * that has a problem and one summary (20,000 lines at a first load of 10,000 Backends were 8% of
 * serve's start).
 */
export function logStatusChanges(log: Logger, changed: readonly ObjectStatus[]): void {
  runSteps(logStatusChangesSteps(log, changed));
}

/** logStatusChanges in steps (src/status/steps.ts). */
function* logStatusChangesSteps(log: Logger, changed: readonly ObjectStatus[]): Steps<void> {
  const line = (s: ObjectStatus): void => log.info({ object: `${s.kind} ${s.namespace ? `${s.namespace}/` : ''}${s.name}`, conditions: conditionsSummary(s) }, 'status changed');
  if (changed.length <= STATUS_LINES_MAX) {
    for (const s of changed) line(s);
    return;
  }
  const byKind: Record<string, number> = {};
  const tally: Record<string, number> = {};
  let problems = 0;
  for (let i = 0; i < changed.length; i++) {
    if (i % OBJECTS_PER_STEP === OBJECTS_PER_STEP - 1) yield;
    const s = changed[i]!;
    byKind[s.kind] = (byKind[s.kind] ?? 0) + 1;
    for (const c of 'conditions' in s ? s.conditions : []) {
      const key = conditionText(c);
      tally[key] = (tally[key] ?? 0) + 1;
    }
    if (troubled(s)) {
      problems++;
      line(s);
    }
  }
  log.info({ objects: changed.length, byKind, conditions: tally, withProblems: problems }, 'statuses changed (objects with a problem are logged one by one)');
}

/** "Programmed=True", "ResolvedRefs=False(SecretNotFound)". */
function conditionText(c: { type: string; status: string; reason: string }): string {
  return `${c.type}=${c.status}${c.status === 'True' ? '' : `(${c.reason})`}`;
}

function conditionsSummary(s: ObjectStatus): string {
  return ('conditions' in s ? s.conditions : []).map(conditionText).join(' ');
}

/** What a status pass is asked to do. */
interface StatusRequest {
  /** Fleet health computed again first: for the clusters a translation replaced ('edit'), or for all. */
  health?: 'edit' | 'full';
  /** Publish even when the health computed again is what statuses were built with. */
  publish: boolean;
  /** The latest translation's statuses are not published yet: a reader has the pass done at once. */
  translation: boolean;
}

const AFTER_TRANSLATION: StatusRequest = { health: 'edit', publish: true, translation: true };

/** One pass that does what both ask. */
function mergeRequests(a: StatusRequest | undefined, b: StatusRequest | undefined): StatusRequest | undefined {
  if (a === undefined || b === undefined) return a ?? b;
  const health = a.health === 'full' || b.health === 'full' ? 'full' : (a.health ?? b.health);
  return { ...(health !== undefined ? { health } : {}), publish: a.publish || b.publish, translation: a.translation || b.translation };
}

/**
 * The pipeline every command that serves Envoy shares: a provider's snapshots are translated,
 * cached and served over ADS; statuses are kept from translation and from what the Envoys ACK
 * or NACK, logged when they change and handed to the status sink.
 */
export async function startGatewayRuntime(opts: GatewayRuntimeOptions): Promise<RunningGateway> {
  await assertServingPortsFree(opts);
  const log = opts.logger;
  const metrics = createMetrics({ processMetrics: true });
  const cache = new SnapshotCache();
  const lrs = { ...DEFAULT_LOAD_REPORTING, ...opts.loadReporting };
  const loadWindow = new LoadWindow(lrs.windowMs);
  const dnsProbe = new DnsProbe(undefined, undefined, lrs.refreshMs);
  const startedAt = Date.now();
  const onReport = (r: Parameters<typeof loadWindow.record>[0]): void => {
    loadWindow.record(r);
    refreshOnFirstReport();
  };
  const loadReports = loadReportingService({ intervalMs: lrs.intervalMs, onReport, logger: log.child({ component: 'lrs' }) });
  const xds = new XdsServer({ cache, logger: log.child({ component: 'xds' }), services: [loadReports] });
  const book = new StatusBook();
  const provider = opts.provider;
  let translated: ObjectStatus[] = [];
  let servedAs: ServedAs = new Map();
  let servedViews = new Set<string>();
  let servedAsMemo: ServedAsMemo | undefined;
  let ir: IR | undefined;
  let fleetHealth: FleetHealthView = new Map();
  /** Whether some Envoy had reported load when fleetHealth was last computed. */
  let reportedAtRefresh = false;
  /** The reporting state fleetHealth was last computed with in full: an edit with another one computes it in full again. */
  let healthReporting: Reporting | undefined;
  /** The DNS probe's answers (DnsProbe.changes) fleetHealth was last computed with. */
  let healthDns = -1;
  /** The cluster list fleetHealth was computed from: an edit recomputes only the clusters it replaced. */
  let healthClusters: IR['clusters'] = [];
  // Each status stage hands on the object it made last time when nothing it reads moved, so one
  // edit among many objects reaches the status book as a few replaced objects, not all of them.
  const programmedMemo = new ProgrammedMemo();
  const healthMemo: FleetHealthMemo = new WeakMap();
  let problems: Problem[] = [];
  let loaded = false;
  /** xds.fleetChanges when statuses were last computed: ACKs that changed nothing cost nothing. */
  let publishedFleet = -1;

  const localClients = (): ClientTypeFeedback[] =>
    xds.clients().flatMap((c) =>
      c.types.map((t) => ({
        nodeId: c.nodeId,
        view: c.gateway ?? SHARED_VIEW,
        typeUrl: t.typeUrl,
        state: t.state,
        ...(t.sentVersion !== undefined ? { sentVersion: t.sentVersion } : {}),
        ...(t.state === 'rejected' && t.lastNack ? { nackMessage: t.lastNack.message } : {}),
      })),
    );
  const fleet = opts.fleet;
  // The whole fleet's load when replicas share it, this replica's own otherwise.
  const fleetLoad: LoadSource = fleet ? new FleetLoad(loadWindow, () => fleet.remotes().map((r) => r.load)) : loadWindow;
  fleet?.attach(() => ({ views: shareOfClients(localClients()), load: shareOfLoad(loadWindow, ir?.clusters.map((c) => c.name) ?? []) }));
  // Only views some object is served by count; a view a replica names that no object has here is not made up.
  const currentVersion = (view: string, typeUrl: string): string | undefined =>
    servedViews.has(view) ? cache.view(view === SHARED_VIEW ? undefined : view).snapshot(typeUrl)?.version : undefined;

  /** The translation servedAs is yet to be worked out for: at the next status publication, not before Envoy's responses leave. */
  let servedPending: { ir: IR; planes: ServedAsMemo['planes'] } | undefined;
  // What moved since each stage last took it in, so that a pass looks at those objects only:
  // objects whose served resources moved (the Programmed stage takes them), Backends whose
  // health entry moved and indexes whose status moved in an earlier stage (the status book
  // takes them). 'all': the stages run over every object. Dropped passes leave them for the next.
  let servedDirty: Set<string> | 'all' = 'all';
  let healthDirty: Set<string> | 'all' = 'all';
  let stageDirty: Set<number> | 'all' = 'all';
  const addDirty = <T>(to: Set<T> | 'all', more: Iterable<T> | undefined): Set<T> | 'all' => {
    if (to === 'all' || more === undefined) return 'all';
    for (const x of more) to.add(x);
    return to;
  };
  /** Statuses after the Gateway overlays and after fleet health: the pass's own lists, changed in place at what moved. */
  let overlaid: ObjectStatus[] = [];
  let healthy: ObjectStatus[] = [];
  /** Indexes of the Gateways in those lists: the overlays (addresses, data planes) may move them at any pass. */
  let gatewayAt: number[] = [];
  let quarantined = false;
  /** A pass over every object began and did not commit (dropped): the next one goes over every object too. */
  let wholePending = false;
  /** Objects examined by status passes, per stage (RunningGateway.statusWork). */
  const work: StatusWork = { passes: 0, programmed: 0, health: 0, book: 0 };

  function* settleServedAs(): Steps<void> {
    const pending = servedPending;
    if (pending === undefined) return;
    const servedBefore = servedAsMemo;
    const next = yield* servedAsUpdateSteps(pending.ir, pending.planes, servedAsMemo);
    if (servedPending === pending) servedPending = undefined;
    servedAs = next.servedAs;
    servedDirty = addDirty(servedDirty, next.changed);
    servedAsMemo = { ir: pending.ir, planes: pending.planes, servedAs };
    // Views come from data planes, which an edit that keeps them does not change.
    if (servedBefore?.planes !== pending.planes) servedViews = new Set([...servedAs.values()].flatMap((o) => o.views));
  }

  /** The Gateway overlays (resource quarantine, data planes, addresses): elementwise, Gateways alone are theirs to change. */
  const overlays = (statuses: readonly ObjectStatus[]): ObjectStatus[] => {
    const isolated = resourceQuarantine.statuses(statuses, servedAs, latest?.inputs.gateways ?? []);
    const hosted = opts.infrastructure ? opts.infrastructure.statuses(isolated) : isolated;
    return opts.statusOverlay ? opts.statusOverlay.apply(hosted) : hosted;
  };

  function* publishStatuses(): Steps<void> {
    yield* settleServedAs();
    publishedFleet = xds.fleetChanges;
    fleet?.localChanged();
    // This replica's per-view ledger, with what the other replicas' Envoys did OR-ed in.
    const own = xds.fleet();
    const merged: ReadonlyMap<string, ReadonlyMap<string, FleetTypeFeedback>> = fleet
      ? mergeFleetViews(own, remoteFeedback(fleet.remotes(), currentVersion, new Set(xds.clients().map((c) => c.nodeId))))
      : own;
    const views = new Map([...merged].filter(([view]) => servedViews.has(view)));
    // Translation hands over an unchanged object's status as the same object at the same index:
    // a pointer comparison per object finds what an edit replaced.
    let look: number[] | undefined;
    const replaced = servedDirty === 'all' ? undefined : replacedAt(programmedMemo.lastGiven(), translated);
    if (replaced !== undefined && servedDirty !== 'all') {
      const at = new Set(replaced);
      for (const key of servedDirty) {
        const i = programmedMemo.indexOf(key);
        if (i !== undefined) at.add(i);
      }
      look = [...at];
    }
    const moved = yield* programmedMemo.updateSteps(translated, look, servedAs, { views });
    servedDirty = new Set();
    stageDirty = addDirty(stageDirty, moved);
    const fed = programmedMemo.out;
    const holding = resourceQuarantine.holding();
    let result: { changed: ObjectStatus[]; removed: string[] };
    if (wholePending || stageDirty === 'all' || healthDirty === 'all' || holding || quarantined || overlaid.length !== fed.length) {
      wholePending = true;
      overlaid = overlays(fed).slice();
      healthy = (yield* applyFleetHealthSteps(overlaid, fleetHealth, lrs.windowMs, (namespace, name) => book.get('Backend', namespace, name), healthMemo)).slice();
      gatewayAt = [];
      for (let i = 0; i < healthy.length; i++) if (healthy[i]!.kind === 'Gateway') gatewayAt.push(i);
      result = yield* book.updateSteps(healthy);
      work.health += healthy.length;
    } else {
      const at = new Set<number>(stageDirty);
      for (const i of gatewayAt) at.add(i);
      for (const key of healthDirty) {
        const i = programmedMemo.indexOf(key);
        if (i !== undefined) at.add(i);
      }
      const indexes = [...at];
      const redone = overlays(indexes.map((i) => fed[i]!));
      for (let n = 0; n < indexes.length; n++) overlaid[indexes[n]!] = redone[n]!;
      applyFleetHealthAt(overlaid, indexes, healthy, fleetHealth, lrs.windowMs, (namespace, name) => book.get('Backend', namespace, name), healthMemo);
      result = yield* book.updateAtSteps(healthy, indexes);
      work.health += indexes.length;
    }
    work.passes++;
    work.programmed += programmedMemo.examined;
    work.book += book.examined;
    quarantined = holding;
    wholePending = false;
    stageDirty = new Set();
    healthDirty = new Set();
    const { changed, removed } = result;
    // The book holds the new statuses: from here the pass is not dropped (its changes would go
    // unlogged and unwritten), a newer one waits for its end.
    passCommitted = true;
    yield* logStatusChangesSteps(log, changed);
    if (opts.statusSink && (changed.length > 0 || removed.length > 0)) opts.statusSink.statuses(book.all());
  }

  /**
   * `edit`: only the clusters a translation replaced are computed again; otherwise all of them.
   * Returns true when the members' health differs from what statuses were last built with.
   */
  function* refreshHealth(edit: boolean): Steps<boolean> {
    if (!ir) return false;
    const irNow = ir;
    reportedAtRefresh = fleetLoad.reporterCount() > 0;
    const starting = Date.now() - startedAt < lrs.windowMs;
    const reporting = reportingOf(fleetLoad, starting);
    const dnsAtStart = dnsProbe.changes;
    const clustersBefore = healthClusters;
    const resolves: ResolvesFn = (host) => dnsProbe.resolution(host);
    const replaced = edit ? replacedAt(clustersBefore, irNow.clusters) : undefined;
    // An edit that replaced no DNS cluster asks for no other hostname (the timer probes them again
    // anyway). Answers are used at the next refresh: status never waits on DNS.
    const dnsTouched = replaced === undefined || replaced.some((i) => irNow.clusters[i]?.discovery === 'dns' || clustersBefore[i]?.discovery === 'dns');
    if (dnsTouched) void dnsProbe.refresh(irNow.clusters.filter((c) => c.discovery === 'dns').flatMap((c) => c.priorities.flatMap((p) => p.members.map((m) => m.address))));
    // Without load reports a member's health reads only its cluster and the DNS answers: a timer
    // tick that finds both as they were has nothing to compute (10,000 Backends' worth each time).
    if (!edit && reporting !== 'yes' && reporting === healthReporting && irNow.clusters === clustersBefore && dnsProbe.changes === healthDns) return false;
    healthClusters = irNow.clusters;
    if (replaced !== undefined && reporting === healthReporting) {
      // The clusters the edit replaced, in the view itself; what moved is what statuses and metrics follow.
      const moved = fleetHealthEdit(fleetHealth, clustersBefore, irNow, replaced, fleetLoad, reporting, undefined, resolves);
      healthDirty = addDirty(healthDirty, moved.keys());
      for (const [key, was] of moved) {
        const backend = key.slice('Backend/'.length);
        for (const h of was?.health ?? []) {
          const labels = { backend, member: h.name, priority: String(h.priority) };
          metrics.memberRequests.remove(labels);
          metrics.memberErrors.remove(labels);
        }
        metrics.backendDegraded.remove({ backend });
        const entry = fleetHealth.get(key);
        if (entry !== undefined) setHealthMetrics(backend, entry);
      }
      return moved.size > 0;
    }
    const before = fleetHealth;
    // An edit keeps the entries of the clusters it did not replace, unless the reporting state moved.
    const readAll = !edit || reporting !== healthReporting;
    const next = yield* fleetHealthViewSteps(irNow, fleetLoad, undefined, resolves, starting, edit ? { view: fleetHealth, clusters: clustersBefore } : undefined, fleetHealth);
    const changed = !(yield* sameFleetHealthSteps(before, next));
    fleetHealth = next;
    healthReporting = reporting;
    // Only a computation over every cluster read every DNS answer (an edit reads those of the clusters it replaced).
    if (readAll) healthDns = dnsAtStart;
    if (changed) {
      const moved = new Set<string>();
      for (const [key, entry] of next) if (before.get(key) !== entry) moved.add(key);
      for (const key of before.keys()) if (!next.has(key)) moved.add(key);
      healthDirty = addDirty(healthDirty, moved);
    }
    // An edit that left every figure as it was has nothing to publish; the timer refreshes metrics.
    if (edit && !changed) return false;
    // In one go: a scrape between slices would read some Backends' series and not others'.
    metrics.memberRequests.reset();
    metrics.memberErrors.reset();
    metrics.backendDegraded.reset();
    for (const [key, entry] of fleetHealth) setHealthMetrics(key.slice('Backend/'.length), entry);
    return changed;
  }

  function setHealthMetrics(backend: string, entry: FleetHealthEntry): void {
    const failing = entry.health.some((h) => h.failing);
    if (entry.reporting === 'yes' || failing) metrics.backendDegraded.set({ backend }, failing ? 1 : 0);
    if (entry.reporting !== 'yes') return;
    for (const h of entry.health) {
      const labels = { backend, member: h.name, priority: String(h.priority) };
      metrics.memberRequests.set(labels, h.figures.requests);
      metrics.memberErrors.set(labels, h.figures.errors);
    }
  }

  // A status pass over 10,000 objects holds the event loop for a quarter of a second, just when
  // the Envoys that waited for the first configuration connect: passes run in slices, with turns
  // of the loop between them. One pass at a time; what is asked meanwhile is merged into the next.
  let passCommitted = false;
  /** Passes dropped in a row for a newer translation (statusesAfterTranslation). */
  let superseded = 0;
  /** What the running pass was asked, and what the next one is. */
  let inFlight: StatusRequest | undefined;
  let queued: StatusRequest | undefined;
  let nextPass: NodeJS.Immediate | undefined;
  const passes = new SlicedRun((err) => log.error({ err }, 'status publication failed; the next change or health tick tries again'));
  function* statusPass(r: StatusRequest): Steps<void> {
    const healthMoved = r.health === undefined ? false : yield* refreshHealth(r.health === 'edit');
    if (r.publish || healthMoved) yield* publishStatuses();
  }
  const startQueued = (): void => {
    clearImmediate(nextPass);
    nextPass = undefined;
    if (passes.running || queued === undefined) return;
    const r = queued;
    queued = undefined;
    inFlight = r;
    passCommitted = false;
    passes.start(statusPass(r), () => {
      superseded = 0;
      inFlight = undefined;
      if (queued !== undefined) nextPass ??= setImmediate(startQueued);
      else settleIfQuiet();
    });
  };
  /** `now`: the first slice runs in this turn (a timer's), else in the next. */
  const requestStatuses = (r: StatusRequest, now: boolean): void => {
    queued = mergeRequests(queued, r);
    if (passes.running) return;
    if (now) startQueued();
    else nextPass ??= setImmediate(startQueued);
  };
  // A translation's pass supersedes one that has not published yet: its statuses would be out of
  // date as soon as they were. What that pass was asked is done by the new one.
  // Not without end, though: edits that keep coming faster than a pass ends would leave status
  // unwritten; after MAX_SUPERSEDED passes in a row were dropped, the running one is let finish.
  const statusesAfterTranslation = (): void => {
    if (passes.running && !passCommitted && superseded < MAX_SUPERSEDED) {
      superseded += 1;
      passes.drop();
      queued = mergeRequests(queued, inFlight);
      inFlight = undefined;
    }
    requestStatuses(AFTER_TRANSLATION, false);
  };

  // ACKs arrive once per Envoy per push: with a fleet, rebuilding every status for each one would
  // cost fleet size × objects. They are folded into one rebuild per STATUS_COALESCE_MS.
  let statusTimer: NodeJS.Timeout | undefined;
  const scheduleStatuses = (): void => {
    statusTimer ??= setTimeout(() => {
      statusTimer = undefined;
      requestStatuses({ publish: true, translation: false }, true);
    }, STATUS_COALESCE_MS);
  };

  const scheduleFleetStatuses = (): void => {
    if (xds.fleetChanges !== publishedFleet) scheduleStatuses();
  };

  // The first load report (no Envoy reported before) ends Degraded=Unknown/AwaitingLoadReports at
  // once rather than at the next tick: replicas tick out of phase, and a leader that died before
  // its tick would leave a status its successor, already past its own, has to rewrite.
  let reportingCheck: NodeJS.Immediate | undefined;
  function refreshOnFirstReport(): void {
    if (reportedAtRefresh) return;
    reportingCheck ??= setImmediate(() => {
      reportingCheck = undefined;
      if (!reportedAtRefresh && fleetLoad.reporterCount() > 0) requestStatuses({ health: 'full', publish: false, translation: false }, true);
    });
  }
  // Load reports arrive all the time; status follows them at this pace only, and only when the
  // health they give changed: rebuilding every status for nothing would cost the event loop
  // hundreds of ms at a thousand Backends every refresh.
  // Replicas share their load, which may move while this replica's view stays: they always publish.
  const healthTimer = setInterval(() => requestStatuses({ health: 'full', publish: fleet !== undefined, translation: false }, true), lrs.refreshMs);
  healthTimer.unref();

  const quarantine = new RouteQuarantine();
  const resourceQuarantine = new ResourceQuarantine();
  // The quarantine reasons about versions of the whole route set; an Envoy of one Gateway ACKs
  // and NACKs its view's versions. Each view version maps to the whole set's version of its time.
  const routeVersionOfView = new Map<string, string>();
  const noteRouteVersions = (whole: string | undefined): void => {
    if (whole === undefined) return;
    for (const view of cache.allViews()) {
      const version = view.snapshot(TypeUrl.route)?.version;
      if (version === undefined) continue;
      routeVersionOfView.delete(version);
      routeVersionOfView.set(version, whole);
    }
    // The newest versions are what Envoys ACK or NACK; older ones are not asked for again.
    for (const version of routeVersionOfView.keys()) {
      if (routeVersionOfView.size <= 256) break;
      routeVersionOfView.delete(version);
    }
  };
  const wholeRouteVersion = (version: string): string => {
    const known = routeVersionOfView.get(version);
    if (known !== undefined) return known;
    // A view is created when its first Envoy connects, after the translation that noted versions:
    // its current version is the current whole configuration's. Without this, that Envoy's first
    // ACK would match no fingerprints and its next NACK would suspect every route.
    for (const view of cache.allViews()) {
      if (view.snapshot(TypeUrl.route)?.version !== version) continue;
      const whole = cache.snapshot(TypeUrl.route)?.version;
      if (whole !== undefined) routeVersionOfView.set(version, whole);
      return whole ?? version;
    }
    return version;
  };
  let latest: Snapshot | undefined;
  // What the last translation and Envoy stage built, per object: an edit redoes only what it touches.
  let translationState: TranslationState | undefined;
  let envoyState: EnvoyState | undefined;
  /** What the cache serves now, to serve it again in other attempt facts forms without translating. */
  let lastServed: { ir: IR; envoy: Partial<EnvoyOptions>; xds: XdsResources; planes: DataPlanes } | undefined;
  let attemptFormsMemo: AttemptFormsMemo | undefined;
  /** The views served the legacy form now: those whose older Envoys asked and whose form is built. */
  const legacyServed = new Set<string>();
  /** Drops the built legacy form a while after the last older Envoy left: one that reconnects (a restart, a switch back) finds it built. */
  let legacyMemoExpiry: NodeJS.Timeout | undefined;
  let legacyBuilding = false;
  /** The legacy form whose cache overlay buildLegacyForms prepared in slices, for the attemptForms call that serves it. */
  let preparedForms: AttemptForms | undefined;
  let runtimeStopped = false;
  const legacyClusters = (views: ReadonlySet<string>, planes: DataPlanes): ReadonlySet<string> | undefined =>
    // The shared data plane holds every cluster; a Gateway's, only those its routes reach.
    views.has(SHARED_VIEW) ? undefined : new Set([...views].flatMap((view) => planes.gateways.get(view)?.clusters ?? []));
  /**
   * The legacy attempt facts form of the AI clusters for the data planes that still have an Envoy
   * of the release before (the server says which: src/xds/attempt-forms.ts); nothing is built
   * while there is none. A data plane whose form is not built yet is left out, and its form is
   * built in slices off the request path (buildLegacyForms); its older Envoys wait for it
   * (the server holds their streams). Edits while it is served rebuild only what they changed.
   */
  const attemptForms = (served: IR, envoy: Partial<EnvoyOptions>, planes: DataPlanes): AttemptForms | undefined => {
    // Only the call right after the preparation may hand it over; no later one keeps it alive.
    const prepared = preparedForms;
    preparedForms = undefined;
    const wanted = xds.legacyAttemptFactsViews();
    for (const view of legacyServed) if (!wanted.has(view)) legacyServed.delete(view);
    if (wanted.size === 0) {
      if (attemptFormsMemo !== undefined && legacyMemoExpiry === undefined) {
        legacyMemoExpiry = setTimeout(() => {
          legacyMemoExpiry = undefined;
          if (xds.legacyAttemptFactsViews().size === 0) attemptFormsMemo = undefined;
        }, LEGACY_FORM_KEPT_MS);
        legacyMemoExpiry.unref();
      }
      return undefined;
    }
    clearTimeout(legacyMemoExpiry);
    legacyMemoExpiry = undefined;
    if ([...wanted].some((view) => !legacyServed.has(view))) scheduleLegacyBuild();
    if (legacyServed.size === 0) return undefined;
    const built = toAttemptFormResources(served, envoy, 'legacy', attemptFormsMemo, legacyClusters(legacyServed, planes));
    attemptFormsMemo = built.memo;
    const forms: AttemptForms = { views: new Set(legacyServed), resources: built.resources };
    // The very object the cache's overlay was prepared for, so that it takes that overlay.
    return prepared !== undefined && sameForms(prepared, forms) ? prepared : forms;
  };
  const scheduleLegacyBuild = (): void => {
    if (legacyBuilding) return;
    legacyBuilding = true;
    setImmediate(() => void buildLegacyFormsSafely().finally(() => (legacyBuilding = false)));
  };
  /**
   * Builds the legacy form of the data planes that want it in slices of LEGACY_BUILD_SLICE_MS,
   * each on a turn of its own, from what the cache serves at that moment (an edit in between is
   * followed), then serves it and lets their older Envoys' streams go on.
   */
  const buildLegacyForms = async (): Promise<void> => {
    for (;;) {
      if (runtimeStopped || lastServed === undefined) return;
      const wanted = xds.legacyAttemptFactsViews();
      const pending = [...wanted].filter((view) => !legacyServed.has(view));
      if (pending.length === 0) return;
      const { ir: served, envoy, xds: resources, planes } = lastServed;
      const started = performance.now();
      const step = prebuildAttemptForms(served, envoy, 'legacy', attemptFormsMemo, legacyClusters(wanted, planes), () => performance.now() - started >= LEGACY_BUILD_SLICE_MS);
      attemptFormsMemo = step.memo;
      if (!step.done) {
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      // Serving the built form is the cache's overlay of it over the configuration (about 20,000
      // resources at 10,000 AI Backends, 40-80 ms in one go): prepared in slices too, then taken
      // whole by the setResources below. An edit in between starts it over from what it changed.
      const views = new Set([...legacyServed, ...pending].filter((view) => wanted.has(view)));
      const forms: AttemptForms = { views, resources: toAttemptFormResources(served, envoy, 'legacy', attemptFormsMemo, legacyClusters(views, planes)).resources };
      const overlay = cache.prepareForms(forms);
      let sliceStart = performance.now();
      let moved = false;
      while (!overlay.step(() => performance.now() - sliceStart >= LEGACY_BUILD_SLICE_MS)) {
        await new Promise((resolve) => setImmediate(resolve));
        if (runtimeStopped || lastServed?.xds !== resources) {
          moved = true;
          break;
        }
        sliceStart = performance.now();
      }
      if (moved) continue;
      for (const view of pending) legacyServed.add(view);
      preparedForms = forms;
      cache.setResources(resources, planes, attemptForms(served, envoy, planes));
      xds.attemptFormsServed();
    }
  };
  const buildLegacyFormsSafely = async (): Promise<void> => {
    try {
      await buildLegacyForms();
    } catch (err) {
      log.error({ err }, 'serving the AI clusters in another attempt facts form failed; the current form keeps being served, and the older Envoys waiting for it get it');
      // An older Envoy held for ever serves nothing at all; with the facts string it serves all but its AI routes.
      xds.attemptFormsServed(true);
    }
  };

  // Status after a translation waits for the next turn of the event loop: the responses the cache
  // just queued reach the sockets only once this turn ends, and Programmed and fleet health over
  // 10,000 objects would hold them back. Several translations in one turn make one pass.
  // The first translation's wait until the servers listen: at a first load of 10,000 Backends
  // they are half a second that Envoy's first response would otherwise wait behind.
  let firstStatusesPending = false;
  /**
   * Whoever reads statuses (statuses(), /statusz) gets those of the latest translation, not the
   * ones before it, nor a pass half done: what is left of it is done now.
   */
  const currentStatuses = (): ObjectStatus[] => {
    if (firstStatusesPending) {
      firstStatusesPending = false;
      statusesAfterTranslation();
    }
    passes.finish();
    if (queued?.translation === true) {
      startQueued();
      passes.finish();
    }
    return book.all();
  };

  /**
   * Runs `report` (log lines, metrics of a change) once the writes of this turn of the event loop
   * have left: an edit's push writes to its first streams in the turn the edit is read and
   * translated, and HTTP/2 sends those writes only when that turn is over, after whatever else
   * it runs. The log is written synchronously (src/observability/logger.ts): a few lines cost
   * 0.2-0.3 ms before an edit's first byte, and a slow stderr (a full pipe, a file on a busy disk)
   * held it up by milliseconds (issue 9). At the first load at once: no push is held up.
   */
  const afterThisTurn = (report: () => void): void => {
    if (!loaded) {
      report();
      return;
    }
    setImmediate(() => {
      try {
        report();
      } catch (err) {
        log.error({ err }, 'reporting a change failed');
      }
    });
  };

  /** Status passes are held until a change's push has left (translateAndServe). */
  let holdingForPushes = false;
  /** `rehearsal`: the same configuration again (rehearseEdit): served, statuses passed over, but neither counted, logged nor handed on. */
  const translateAndServe = (snapshot: Snapshot, rehearsal = false): void => {
    const started = process.hrtime.bigint();
    // A first translation keeps nearly all it allocates, as a load does (young-generation.ts).
    const release = holdYoungGeneration();
    try {
      quarantine.refresh(snapshot.inputs.httpRoutes);
      const excluded = quarantine.excluded();
      const inputs = excluded.size === 0
        ? snapshot.inputs
        : { ...snapshot.inputs, httpRoutes: snapshot.inputs.httpRoutes.filter((r) => !excluded.has(`${r.metadata.namespace}/${r.metadata.name}`)) };
      const translation = translate(inputs, translationState);
      const gatewayAddresses = opts.infrastructure?.addresses(translation.ir.gateways);
      const envoy = gatewayAddresses ? { ...opts.envoy, gatewayAddresses } : opts.envoy;
      const built = toXdsResourcesReusing(translation.ir, envoy, envoyState);
      const translatedXds = built.xds;
      const result = { translation, xds: resourceQuarantine.filter(opts.testOnlyRewrite ? opts.testOnlyRewrite(translatedXds) : translatedXds), planes: built.planes };
      const change = cache.setResources(result.xds, result.planes, attemptForms(translation.ir, envoy, result.planes));
      // Status work waits until the change has been pushed to every stream and those writes have
      // left: a slice of a pass (this translation's, or one under way) in the turn of the
      // fan-out's last slice would run before the last streams' bytes are sent (issue 9). Only
      // when the push takes more than its first slice (its writes otherwise leave before any
      // status slice), and one hold at a time: edits that keep coming must not starve status.
      if (xds.pushing && !holdingForPushes) {
        holdingForPushes = true;
        const releaseStatus = passes.hold();
        xds.whenPushesSent(() => {
          holdingForPushes = false;
          releaseStatus();
        });
      }
      lastServed = { ir: translation.ir, envoy, xds: result.xds, planes: result.planes };
      const changedTypes = new Set<string>([...change.changed, ...[...change.views.values()].flat()]);
      translationState = translation.state;
      envoyState = built.state;
      opts.infrastructure?.apply();
      const routeVersion = cache.snapshot(TypeUrl.route)?.version;
      noteRouteVersions(routeVersion);
      const routesAgain = quarantine.served(routeVersion, result.translation.ir);
      const resourcesAgain = resourceQuarantine.afterServe(changedTypes);
      if (routesAgain || resourcesAgain) retranslate();
      if (rehearsal && (change.changed.length > 0 || change.views.size > 0)) {
        log.warn({ changed: change.changed.map((t) => t.split('.').pop()) }, 'an edit rehearsed after the start changed what is served, though the configuration was the same; the new resources are served');
      }
      // Held-out routes get their status from a translation that includes them, with Accepted=False.
      translated = excluded.size === 0 ? result.translation.statuses : [...result.translation.statuses, ...quarantine.statuses(translate(snapshot.inputs).statuses)];
      servedPending = { ir: result.translation.ir, planes: result.planes };
      ir = result.translation.ir;
      if (rehearsal) {
        statusesAfterTranslation();
        return;
      }
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      afterThisTurn(() => {
        metrics.translations.inc();
        metrics.translationDuration.observe(seconds);
        for (const kind of PUSH_ORDER) metrics.resources.set({ type: kind }, result.xds[KIND_FIELD[kind]].length);
        for (const e of result.translation.events) log.warn({ object: `${e.object.kind} ${e.object.namespace}/${e.object.name}`, reason: e.reason }, e.message);
        log.info({ changed: change.changed.map((t) => t.split('.').pop()), clusters: result.xds.clusters.length, listeners: result.xds.listeners.length }, 'configuration translated');
      });
      if (!loaded) firstStatusesPending = true;
      else {
        // This translation's pass is the first one (see firstStatuses).
        firstStatusesPending = false;
        statusesAfterTranslation();
      }
      loaded = true;
      opts.onTranslated?.(result.translation.ir);
      opts.statusSink?.warnings(result.translation.events);
    } catch (err) {
      // A translation that cannot be encoded must not replace what Envoy is serving.
      log.error({ err }, 'translation failed; the previous configuration keeps being served');
    } finally {
      release();
    }
  };

  /**
   * The start, after the first translation: 'serving' until a client has read the first
   * configuration (firstStatuses), when an edit is rehearsed; 'publishing' until the status work
   * that follows is done and nothing is being read (settleIfQuiet); then 'settled', and
   * `settled` resolves (the CLI collects the start's garbage then, src/cli/main.ts).
   */
  let startStage: 'serving' | 'publishing' | 'settled' = 'serving';
  let resolveSettled: () => void = () => undefined;
  const settled = new Promise<void>((resolve) => (resolveSettled = resolve));
  /** When a change last came from the provider after the first load. */
  let lastEditAt = Number.NEGATIVE_INFINITY;
  let settleTimer: NodeJS.Timeout | undefined;
  const settleIfQuiet = (): void => {
    if (startStage !== 'publishing' || passes.running || queued !== undefined || statusTimer !== undefined || releaseReading !== undefined) return;
    // Someone editing already is not kept waiting behind the start's garbage collection: it
    // waits for a pause in the edits.
    const wait = lastEditAt + SETTLE_AFTER_EDIT_MS - Date.now();
    if (wait > 0) {
      clearTimeout(settleTimer);
      settleTimer = setTimeout(settleIfQuiet, wait);
      settleTimer.unref();
      return;
    }
    startStage = 'settled';
    resolveSettled();
  };

  /**
   * Rehearses an edit after the start, so that the user's first edit runs code that is compiled
   * and optimized rather than code never run yet: at 10,000 Backends, code that only edits run
   * (comparing the lists of every stage with the last translation's, the cache's walk over the
   * resources it serves) and schemas the load skipped (warmSchemas) made the first edits cost 2-3
   * times the later ones, and the first byte of the first two reached Envoy at about 100 ms
   * instead of 40 (issue 9). The first Backend is replaced by a copy of itself, then the
   * configuration is translated again as it is: nothing served changes (the cache compares the
   * bytes) and no status either. False when there is nothing worth rehearsing.
   */
  const rehearseEdit = (): boolean => {
    const snapshot = latest;
    if (snapshot === undefined || !rehearsalWanted(snapshot.inputs, opts.rehearsalMinObjects ?? REHEARSAL_MIN_OBJECTS)) return false;
    const { inputs } = snapshot;
    const cpu = process.cpuUsage();
    const started = performance.now();
    warmSchemas((kind) => (kind === 'Backend' ? inputs.backends[0] : kind === 'Secret' ? inputs.secrets[0] : inputs.httpRoutes[0]));
    const backends = inputs.backends.slice();
    const first = backends[0] as Backend;
    // As the schema returns it, as an edited Backend most often is: a configuration of common
    // Backends was loaded through a fast path that builds objects of other shapes, and the first
    // of the schema's shape made V8 drop the code it had compiled for them all along the pipeline.
    const reparsed = SCHEMAS.Backend.safeParse(first);
    const schemaShaped = reparsed.success && sameJsonText(reparsed.data, first);
    backends[0] = schemaShaped ? (reparsed.data as Backend) : { ...first };
    translateAndServe({ ...snapshot, inputs: { ...inputs, backends } }, true);
    // Back to the provider's very objects: the next edit is compared with them.
    translateAndServe(snapshot, true);
    const used = process.cpuUsage(cpu);
    log.debug({ ms: Math.round(performance.now() - started), cpuMs: Math.round((used.user + used.system) / 1000), backend: schemaShaped ? "the schema's" : 'a copy' }, 'start: an edit rehearsed (the same configuration translated again)');
    return true;
  };

  const apply = (snapshot: Snapshot): void => {
    if (loaded) lastEditAt = Date.now();
    latest = snapshot;
    problems = snapshot.problems;
    const found = snapshot.problems;
    afterThisTurn(() => {
      metrics.configProblems.set(found.length);
      for (const p of found) log.warn({ problem: formatProblem(p) }, 'configuration problem');
    });
    translateAndServe(snapshot);
  };

  // Outside the xDS server's event dispatch: translating again pushes to every stream.
  const retranslate = (): void => {
    setImmediate(() => {
      if (latest) translateAndServe(latest);
    });
  };

  opts.statusOverlay?.onChange(scheduleStatuses);
  fleet?.onChange(() => {
    scheduleStatuses();
    refreshOnFirstReport();
  });
  let releaseReading: (() => void) | undefined;
  opts.infrastructure?.onChange(scheduleStatuses);

  // A push is one response per stream, and the counter hashes its labels on every inc: counted
  // here and added once per turn of the event loop (a scrape may see a push a turn late).
  const pushCounts = new Map<string, number>();
  let pushCountsDue = false;
  xds.on('sent', (e) => {
    pushCounts.set(e.typeUrl, (pushCounts.get(e.typeUrl) ?? 0) + 1);
    if (pushCountsDue) return;
    pushCountsDue = true;
    setImmediate(() => {
      pushCountsDue = false;
      for (const [typeUrl, count] of pushCounts) metrics.xdsPushes.inc({ type_url: typeUrl }, count);
      pushCounts.clear();
    });
  });
  xds.on('ack', (e) => {
    if (e.typeUrl === TypeUrl.route && quarantine.ack(e.nodeId, wholeRouteVersion(e.version))) retranslate();
    if (resourceQuarantine.ack(e)) retranslate();
  });
  // Status follows the fleet's ACK state per version, not each ACK, connect or disconnect.
  xds.on('fleet', scheduleFleetStatuses);
  // At once, not on a later turn: a data plane whose last older Envoy left gets its AI clusters
  // back in the facts string (nothing else), and one that has a form built already is served it
  // before the joining Envoy's first response; a form still to build is built in slices
  // (buildLegacyForms) while the server holds that Envoy's stream.
  xds.on('attemptForms', () => {
    if (lastServed === undefined) return;
    try {
      cache.setResources(lastServed.xds, lastServed.planes, attemptForms(lastServed.ir, lastServed.envoy, lastServed.planes));
    } catch (err) {
      log.error({ err }, 'serving the AI clusters in another attempt facts form failed; the current form keeps being served');
    }
  });
  xds.on('nack', (e) => {
    metrics.xdsNacks.inc({ type_url: e.typeUrl });
    log.warn({ node: e.nodeId, typeUrl: e.typeUrl, version: e.version }, `Envoy rejected configuration: ${e.message}`);
    if (e.typeUrl === TypeUrl.route && quarantine.nack(e.nodeId, wholeRouteVersion(e.version), e.message)) {
      log.warn({ node: e.nodeId, held: [...quarantine.excluded()] }, 'leaving the HTTPRoutes Envoy rejected out of the configuration');
      retranslate();
    }
    if (resourceQuarantine.nack(e)) {
      log.warn({ node: e.nodeId, held: resourceQuarantine.held() }, 'holding the resources Envoy rejected at their last accepted version');
      retranslate();
    }
    // A NACK the fleet ledger already had changes no status, but what the quarantine holds may.
    scheduleStatuses();
  });
  xds.on('connected', (e) => {
    metrics.xdsClients.inc({ kind: e.kind });
    log.info({ node: e.nodeId, kind: e.kind }, 'Envoy connected');
  });
  xds.on('disconnected', (e) => {
    metrics.xdsClients.dec({ kind: e.kind });
    resourceQuarantine.forget(e.streamId);
    log.info({ node: e.nodeId, kind: e.kind }, 'Envoy disconnected');
  });

  // The servers listen before the configuration is read: an Envoy that is up already (serve
  // restarted, or started beside it) connects at once and is sent the first configuration the
  // moment it is translated, instead of dialling a closed port and backing off (issue 9). A
  // stream waits, answered nothing, while the cache has no snapshot (ads-stream.ts), so no
  // Envoy is ever sent an empty configuration in place of the one it holds.
  let xdsPort: number;
  let health: HealthServer;
  try {
    xdsPort = await xds
      .start({ port: opts.xdsPort, host: opts.xdsHost, ...(opts.xdsTls ? { credentials: xdsServerCredentials(opts.xdsTls) } : {}) })
      .catch((err: unknown) => Promise.reject(asAddressInUse(err, 'xds', opts.xdsHost, opts.xdsPort)));
    health = await startHealthServer({
      port: opts.metricsPort,
      host: opts.metricsHost,
      registry: metrics.registry,
      ready: () => (!loaded ? { ready: false, reason: 'the configuration has not been translated yet' } : (opts.infrastructure?.readiness() ?? true)),
      statusz: () => ({
        statuses: currentStatuses(),
        problems: problems.map((p) => ({ ...p, text: formatProblem(p) })),
        clients: xds.clients(),
        ...(fleet ? { replicaShares: fleet.stats() } : {}),
        ...(opts.infrastructure ? { dataPlanes: opts.infrastructure.views() } : {}),
      }),
      ...(opts.extraMetrics ? { extraMetrics: opts.extraMetrics } : {}),
    }).catch((err: unknown) => Promise.reject(asAddressInUse(err, 'metrics', opts.metricsHost, opts.metricsPort)));
  } catch (err) {
    clearInterval(healthTimer);
    await xds.stop();
    throw err;
  }
  log.info({ ...opts.origin, xdsPort, xdsTls: xdsTlsMode(opts.xdsTls), metricsPort: health.port }, 'switchyard listening; reading the configuration');
  // The first statuses wait for the first response to leave, or FIRST_STATUS_WAIT_MS without a
  // client: Envoys that waited for this process connect now, and at 10,000 Backends a status pass
  // is half a CPU-second whose slices would come between the first one and its configuration.
  // A reader (statuses(), /statusz) still has them at once (currentStatuses).
  let firstStatusTimer: NodeJS.Timeout | undefined;
  const firstStatuses = (): void => {
    xds.off('sent', firstStatusesSoon);
    clearTimeout(firstStatusTimer);
    stopWaitingForReceipt();
    if (firstStatusesPending) {
      firstStatusesPending = false;
      statusesAfterTranslation();
    }
    if (startStage !== 'serving') return;
    startStage = 'publishing';
    // The start's garbage goes before the rehearsal and the status pass add theirs (issue 9: the start's peak RSS).
    const collected = runtimeStopped ? undefined : collectBeforeRehearsal(opts.startCollectionMaxHeapBytes);
    if (collected !== undefined) log.debug(collectionLogFields(collected), 'start: its garbage collected before the edit rehearsal');
    if (!runtimeStopped) rehearseEdit();
    settleIfQuiet();
  };
  // Once the client has read the first response (its ACK or NACK says so), or after
  // FIRST_RECEIPT_WAIT_MS: a response of 10,000 clusters is tens of MB, written over many turns of
  // the event loop, and the edit rehearsal (two translations in one turn) and the first status
  // pass run in front of whatever is left of it: at 10,000 Backends on a busy machine the whole
  // response reached the client 2 s after it was handed to its stream, behind them (issue 9).
  // Heard from before the first translation: a client that connected while the configuration was
  // read is sent its first response by that translation.
  let firstSent = false;
  let receiptTimer: NodeJS.Timeout | undefined;
  function received(): void {
    stopWaitingForReceipt();
    // After this turn: whatever else this turn wrote leaves before the pass begins.
    setImmediate(firstStatuses);
  }
  function stopWaitingForReceipt(): void {
    xds.off('ack', received);
    xds.off('nack', received);
    clearTimeout(receiptTimer);
  }
  function firstStatusesSoon(): void {
    xds.off('sent', firstStatusesSoon);
    firstSent = true;
    xds.on('ack', received);
    xds.on('nack', received);
    receiptTimer = setTimeout(received, FIRST_RECEIPT_WAIT_MS);
  }
  xds.on('sent', firstStatusesSoon);
  try {
    apply(await provider.start());
  } catch (err) {
    // Nothing to serve: the ports are let go, and whatever the provider had started (watchers) with them.
    xds.off('sent', firstStatusesSoon);
    clearInterval(healthTimer);
    await xds.stop();
    await health.close();
    await provider.stop().catch((stopErr: unknown) => log.debug({ err: stopErr }, 'the provider failed to stop after failing to start'));
    throw err;
  }
  provider.onChange(apply);
  // A change being read goes to Envoy before status work: a pass under way (the first after a
  // start of 10,000 Backends is half a CPU-second) would otherwise take a slice at each of the
  // read's turns of the event loop, in front of the edit's first byte.
  provider.onReading?.((reading) => {
    if (reading) releaseReading ??= passes.hold();
    else {
      releaseReading?.();
      releaseReading = undefined;
      // A read that found no change ends with no status pass.
      settleIfQuiet();
    }
  });
  log.info({ ...opts.origin, xdsPort, xdsTls: xdsTlsMode(opts.xdsTls), metricsPort: health.port }, 'switchyard serving');
  // Without a first response yet, FIRST_STATUS_WAIT_MS from now; a failed first translation has none to wait for.
  if (!firstStatusesPending) firstStatuses();
  else if (!firstSent) firstStatusTimer = setTimeout(firstStatuses, opts.firstStatusWaitMs ?? FIRST_STATUS_WAIT_MS);

  return {
    xdsPort,
    metricsPort: health.port,
    statuses: currentStatuses,
    statusWork: () => ({ ...work }),
    problems: () => problems,
    cache,
    xds,
    metrics,
    settled,
    async stop() {
      runtimeStopped = true;
      clearTimeout(settleTimer);
      startStage = 'settled';
      resolveSettled();
      clearTimeout(legacyMemoExpiry);
      releaseReading?.();
      firstStatusesPending = false;
      firstStatuses();
      clearTimeout(statusTimer);
      clearImmediate(nextPass);
      passes.drop();
      queued = undefined;
      clearImmediate(reportingCheck);
      clearInterval(healthTimer);
      await provider.stop();
      await xds.stop();
      await health.close();
    },
  };
}
