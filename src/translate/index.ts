import { condition } from '../api/conditions.js';
import { formatProblem, UNKNOWN_FIELD_HINT } from '../api/manifest.js';
import type { Backend } from '../api/backend.js';
import type { EndpointSlice } from '../api/endpointslice.js';
import type { HTTPRoute } from '../api/httproute.js';
import type { Namespace } from '../api/namespace.js';
import type { Service } from '../api/service.js';
import type { Secret } from '../api/secret.js';
import { isServedProtocol, type Gateway, type GatewayClass } from '../api/gateway.js';
import type { ClusterIR, CredentialIR, GatewayIR, IR, ListenerIR, VirtualHostIR } from '../ir/model.js';
import { translateBackend, type TranslatedBackend } from './backends.js';
import { gatewayAccessLog, gatewayStatus, isServed, translateGateways, type ServedListener, type TranslatedGateways } from './gateways.js';
import type { Inputs, InvalidObject, ReferenceGrant } from './inputs.js';
import type { ServedModels } from './models.js';
import { translateRoute, type PlacedRoute, type TranslatedRoute } from './routes.js';
import { compact } from '../ir/compact.js';
import { listenerHosts, NO_PLACEMENTS_MOVED, placementDelta, type ListenerHosts } from './virtual-hosts.js';
import { contentKey, replacedAt, sameItems } from '../ir/delta.js';
import { ServiceBackends } from './services.js';
import type { InvalidStatus, ObjectStatus, WarningEvent } from './status.js';
import { secretKey, serviceAccountIndex } from './credentials.js';
import { ChunkedList } from './chunked-list.js';

export interface Translation {
  ir: IR;
  statuses: ObjectStatus[];
  events: WarningEvent[];
  /** What the next translation may reuse: give it back as `translate(next, translation.state)`. */
  state: TranslationState;
}

/**
 * Secrets (or Backends) a stage read, with what it found: the stage's result holds while each is
 * the same object. Flat, each key followed by what it found: a pair per read cost 64 bytes, and
 * 10,000 Backends make 60,000 reads.
 */
type Reads<V> = ReadonlyArray<string | V | undefined>;

interface GatewayStage {
  gatewayClasses: readonly GatewayClass[];
  gateways: readonly Gateway[];
  grants: readonly ReferenceGrant[];
  secrets: Reads<Secret>;
  result: TranslatedGateways;
}

interface BackendMemo {
  backend: Backend;
  secrets: Reads<Secret>;
  result: TranslatedBackend;
}

interface ServiceStage {
  services: readonly Service[];
  endpointSlices: readonly EndpointSlice[];
  result: ServiceBackends;
}

/**
 * A route's result holds while the route, the Gateways, Namespaces and ReferenceGrants (checked
 * once for all routes: every memo of a state was translated or checked with that state's lists),
 * the Services it used and the Backends it looked up are what they were.
 */
interface RouteMemo {
  route: HTTPRoute;
  /** The ServiceBackends it resolved Services with, if it resolved any. */
  services: ServiceBackends | undefined;
  /** The Backends it looked up, as what a route reads of one (routeView). */
  backends: Reads<string>;
  result: TranslatedRoute;
}

interface ListenerMemo {
  /** Everything of the listener but its routes, as JSON. */
  shape: string;
  hosts: ListenerHosts;
  ir: ListenerIR;
}

/** Objects of one kind in key order, and at the same index what translating each gave. */
interface MemoList<I, M> {
  readonly items: readonly I[];
  readonly memos: ChunkedList<M>;
}

/**
 * The statuses of a translation (before noteLastGood) and where each route's and Backend's is in
 * them: an edit writes the statuses it changed into one copy of the list, where the route and
 * Backend statuses were each gathered into a list of their own and then joined with the rest.
 */
interface StatusLayout {
  /** GatewayClass and Gateway statuses, then route statuses, Backend statuses, invalid objects' statuses. */
  readonly list: readonly ObjectStatus[];
  /** How many GatewayClass and Gateway statuses come first. */
  readonly head: number;
  /** By route index, the index of its status in `list` (-1: a route with no parent has none). */
  readonly routeAt: Int32Array;
  /** The index of the first Backend's status (the others follow in Backend order). */
  readonly backendStart: number;
  /** How many invalid objects' statuses come last. */
  readonly tail: number;
}

/**
 * Per-object results of one translation and what each read (the dependency index): a Backend's
 * result depends on the Backend and the Secrets it looked up; a route's on the route, the
 * Gateways, Namespaces, ReferenceGrants, the Services if it used any, and the Backends it looked
 * up. Objects are compared by identity: providers hand over the same object while it is
 * unchanged, so the change set is what is not the same object, found by walking the key-ordered
 * lists side by side (an edit replaces objects in place). A result reused is the same object,
 * down to the IR, so the Envoy stage and the cache can skip it by reference. What is derived from
 * all Backends or all routes (route placement, models, credentials) is kept and reused while the
 * results it came from are.
 */
export interface TranslationState {
  readonly secrets: { list: readonly Secret[]; byKey: SecretIndex | SecretsInKeyOrder } | undefined;
  readonly gateways: GatewayStage | undefined;
  readonly services: ServiceStage | undefined;
  readonly namespaces: readonly Namespace[] | undefined;
  readonly grants: readonly ReferenceGrant[] | undefined;
  readonly backends: MemoList<Backend, BackendMemo>;
  readonly routes: MemoList<HTTPRoute, RouteMemo>;
  /** The Backends' results by key, as built for this list of results (only when a route looked them up). */
  readonly backendsByKey: { memos: ChunkedList<BackendMemo>; byKey: ReadonlyMap<string, TranslatedBackend> } | undefined;
  /** The Backends' Warning Events, statuses and clusters, in Backend order. */
  readonly backendEvents: readonly WarningEvent[];
  /** With, by Backend index, the index of its cluster in the list (-1: none). */
  readonly backendClusters: { list: readonly ClusterIR[]; at: Int32Array } | undefined;
  /**
   * Backend key → indexes of the routes that may read it (a superset: an entry outlives the read
   * when a route is translated again in place, which costs one look).
   */
  readonly routesByBackend: RoutesByBackend | undefined;
  /** attachedRoutes of every served listener, in Gateway order, once every route was counted. */
  readonly attached: readonly number[];
  readonly routeEvents: readonly WarningEvent[];
  readonly statuses: StatusLayout | undefined;
  readonly serviceClusters: readonly ClusterIR[];
  /** The models of the AI Backends' clusters; a listener's /v1/models answers are built again when this is another map. */
  readonly models: { byCluster: ReadonlyMap<string, ServedModels> } | undefined;
  readonly credentials: readonly CredentialIR[] | undefined;
  readonly listeners: ReadonlyMap<string, ListenerMemo>;
}

const EMPTY_STATE: TranslationState = {
  secrets: undefined,
  gateways: undefined,
  services: undefined,
  namespaces: undefined,
  grants: undefined,
  backends: { items: [], memos: ChunkedList.EMPTY },
  routes: { items: [], memos: ChunkedList.EMPTY },
  backendsByKey: undefined,
  backendEvents: [],
  backendClusters: undefined,
  routesByBackend: undefined,
  attached: [],
  routeEvents: [],
  statuses: undefined,
  serviceClusters: [],
  models: undefined,
  credentials: undefined,
  listeners: new Map(),
};

function invalidStatuses(inputs: Inputs): InvalidStatus[] {
  return inputs.invalid
    .filter((o) => !o.servingLastGood)
    .map((o) => ({
      kind: o.kind,
      namespace: o.namespace,
      name: o.name,
      conditions: [condition('Accepted', false, 'Invalid', o.problems.map(formatProblem).join('; '), o.generation)],
    }));
}

/**
 * Marks an object that keeps serving its last valid version while its current version is invalid.
 * A copy, never an edit: statuses are shared with the translation state and reused.
 */
function noteLastGood(statuses: ObjectStatus[], inputs: Inputs): ObjectStatus[] {
  const lastGood = new Map<string, InvalidObject>();
  for (const o of inputs.invalid) if (o.servingLastGood) lastGood.set(`${o.kind}/${o.namespace}/${o.name}`, o);
  if (lastGood.size === 0) return statuses;
  return statuses.map((s) => {
    const o = lastGood.get(`${s.kind}/${s.namespace}/${s.name}`);
    if (!o || !('conditions' in s)) return s;
    lastGood.delete(`${s.kind}/${s.namespace}/${s.name}`);
    const message = `${o.problems.map(formatProblem).join('; ')}; the last valid version keeps being served`;
    const conditions = s.conditions.map((c) => (c.type === 'Accepted' ? { ...c, status: 'False' as const, reason: 'Invalid', message } : c));
    return { ...s, conditions } as ObjectStatus;
  });
}

/**
 * What translateRoute reads of a Backend (routes.ts backendTarget): its retry plan, its cluster's
 * name, why it is unavailable; as a contentKey, since every route memo keeps the ones it read.
 */
function routeView(b: TranslatedBackend): string {
  let view = routeViews.get(b);
  if (view === undefined) {
    view = contentKey(JSON.stringify([b.retry, b.cluster?.name ?? null, b.unavailable ?? null]));
    routeViews.set(b, view);
  }
  return view;
}

/** routeView of each TranslatedBackend (never changed once built), computed once. */
const routeViews = new WeakMap<TranslatedBackend, string>();

/** What a listener's /v1/models answer reads of a Backend. */
function modelsView(b: TranslatedBackend): string {
  return b.cluster && b.models ? JSON.stringify([b.cluster.name, b.models]) : '';
}

function unchanged<V>(reads: Reads<V>, lookup: Pick<ReadonlyMap<string, V>, 'get'>): boolean {
  for (let i = 0; i < reads.length; i += 2) if (lookup.get(reads[i] as string) !== reads[i + 1]) return false;
  return true;
}

/** Whether one of the keys `reads` looked up is in `keys`. */
function readAny(reads: Reads<unknown>, keys: ReadonlySet<string>): boolean {
  for (let i = 0; i < reads.length; i += 2) if (keys.has(reads[i] as string)) return true;
  return false;
}

/**
 * unchanged(), knowing which keys may have changed: `changed` undefined means any may have; a
 * read of a key not in `changed` found what it finds now.
 */
function readsHold<V>(reads: Reads<V>, lookup: Pick<ReadonlyMap<string, V>, 'get'>, changed: ReadonlySet<string> | undefined): boolean {
  if (changed !== undefined && (changed.size === 0 || !readAny(reads, changed))) return true;
  return unchanged(reads, lookup);
}

/** A lookup that records what was asked and found. */
function recording<V>(from: Pick<ReadonlyMap<string, V>, 'get'>): { lookup: Pick<ReadonlyMap<string, V>, 'get'>; reads: (string | V | undefined)[] } {
  const reads: (string | V | undefined)[] = [];
  return {
    reads,
    lookup: {
      get(k: string): V | undefined {
        const v = from.get(k);
        reads.push(k, v);
        return v;
      },
    },
  };
}

type Keyed = { metadata: { namespace: string; name: string } };

/**
 * Items in key order. Providers hand them over in key order already, so checking costs less than
 * sorting; where an item is the one at the same index of the last (sorted) list, so is its
 * neighbour's order, and only the pairs around replaced items are compared.
 */
function sortedByKey<T extends Keyed>(items: readonly T[], previous: readonly T[]): readonly T[] {
  const at = replacedAt(previous, items);
  const inOrder = (i: number): boolean => byCodeUnits(key((items[i - 1] as T).metadata), key((items[i] as T).metadata)) <= 0;
  let sorted = true;
  if (at !== undefined) {
    for (const i of at) if ((i > 0 && !inOrder(i)) || (i + 1 < items.length && !inOrder(i + 1))) sorted = false;
  } else {
    for (let i = 1; i < items.length && sorted; i++) sorted = inOrder(i);
  }
  return sorted ? items : [...items].sort((x, y) => byCodeUnits(key(x.metadata), key(y.metadata)));
}

/**
 * The Secrets by key, and which keys may differ from the last translation's (undefined: any).
 * Secrets replaced in place change only their own entries.
 */
function secretsByKey(list: readonly Secret[], previous: TranslationState['secrets']): { byKey: SecretIndex | SecretsInKeyOrder; changed: ReadonlySet<string> | undefined } {
  const at = previous === undefined ? undefined : replacedAt(previous.list, list);
  if (previous !== undefined && at !== undefined) {
    if (at.length === 0) return { byKey: previous.byKey, changed: new Set() };
    // The entry replaced must be the one the map held (no other Secret of that key in the list).
    const inPlace = at.every((i) => {
      const { namespace, name } = (list[i] as Secret).metadata;
      const before = (previous.list[i] as Secret).metadata;
      return namespace === before.namespace && name === before.name && previous.byKey.get(secretKey(namespace, name)) === previous.list[i];
    });
    if (inPlace) {
      const changed = new Set<string>();
      const replaced = new Map<string, Secret>();
      for (const i of at) {
        const s = list[i] as Secret;
        const k = secretKey(s.metadata.namespace, s.metadata.name);
        replaced.set(k, s);
        changed.add(k);
      }
      // Replaced in place under the same keys: a list in key order stays in key order.
      const byKey = previous.byKey instanceof SecretsInKeyOrder ? new SecretsInKeyOrder(list) : previous.byKey.with(replaced);
      return { byKey, changed };
    }
  }
  if (SecretsInKeyOrder.holds(list)) return { byKey: new SecretsInKeyOrder(list), changed: undefined };
  // Set one by one: a list of [key, Secret] pairs for the constructor was 60,000 arrays, alive
  // together long enough to be promoted, only to be dropped.
  const byKey = new Map<string, Secret>();
  for (const s of list) byKey.set(secretKey(s.metadata.namespace, s.metadata.name), s);
  return { byKey: new SecretIndex(byKey, new Map()), changed: undefined };
}

/** What every Secret's key (secretKey) starts with, its namespace next. */
const KEY_PREFIX = secretKey('', '').slice(0, -1);
const SLASH = 0x2f;

/**
 * How namespace `a` and then a name compare with namespace `b` and then a name, as their keys
 * ("<namespace>/<name>") compare by code units: a namespace holds no "/", so where one is the
 * start of the other, the "/" that ends it meets the longer one's next character.
 */
function compareNamespaces(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  if (a.startsWith(b) || b.startsWith(a)) return (a.length > n ? a.charCodeAt(n) : SLASH) - (b.length > n ? b.charCodeAt(n) : SLASH);
  return a < b ? -1 : 1;
}

function compareSecrets(a: Secret, b: Secret): number {
  const byNamespace = compareNamespaces(a.metadata.namespace, b.metadata.namespace);
  if (byNamespace !== 0) return byNamespace;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

/**
 * The Secrets by key, found in their own list when it is in key order (as both providers hand it
 * over) by binary search: the map SecretIndex builds cost 1.8 MiB at 10,000 Backends' 60,000
 * Secrets for as long as the configuration is served, beside the list that holds them anyway.
 * Of equal keys the last is found, as a map filled in list order keeps it.
 */
export class SecretsInKeyOrder {
  constructor(private readonly list: readonly Secret[]) {}

  /** Whether `list` is in key order (SecretsInKeyOrder can find its Secrets). */
  static holds(list: readonly Secret[]): boolean {
    for (let i = 1; i < list.length; i++) if (compareSecrets(list[i - 1] as Secret, list[i] as Secret) > 0) return false;
    return true;
  }

  get(k: string): Secret | undefined {
    const slash = k.indexOf('/', KEY_PREFIX.length);
    if (slash < 0 || !k.startsWith(KEY_PREFIX)) return undefined;
    const namespace = k.slice(KEY_PREFIX.length, slash);
    const name = k.slice(slash + 1);
    // The first Secret past every one whose key is k or before it.
    let low = 0;
    let high = this.list.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      const { metadata } = this.list[mid] as Secret;
      const byNamespace = compareNamespaces(metadata.namespace, namespace);
      if (byNamespace < 0 || (byNamespace === 0 && metadata.name <= name)) low = mid + 1;
      else high = mid;
    }
    const found = this.list[low - 1];
    return found !== undefined && found.metadata.namespace === namespace && found.metadata.name === name ? found : undefined;
  }
}

/**
 * The Secrets by key: the map of a full translation, and the Secrets replaced since, kept apart,
 * so that an edit of one Secret among 60,000 adds one entry instead of copying the map of all of
 * them. The replaced ones are copied at each edit and folded into a new map once they are many.
 */
export class SecretIndex {
  constructor(
    private readonly base: ReadonlyMap<string, Secret>,
    private readonly replaced: ReadonlyMap<string, Secret>,
  ) {}

  get(k: string): Secret | undefined {
    return this.replaced.get(k) ?? this.base.get(k);
  }

  /** This index with `more` replaced (keys it holds already: an edit replaces, never adds). */
  with(more: ReadonlyMap<string, Secret>): SecretIndex {
    const replaced = new Map(this.replaced);
    for (const [k, s] of more) replaced.set(k, s);
    if (replaced.size <= MAX_REPLACED_SECRETS || replaced.size * 8 < this.base.size) return new SecretIndex(this.base, replaced);
    const base = new Map(this.base);
    for (const [k, s] of replaced) base.set(k, s);
    return new SecretIndex(base, new Map());
  }
}

/** Secrets replaced since the last full map, past which (and an eighth of the map) they are folded into a new one. */
const MAX_REPLACED_SECRETS = 256;

/** What changed among the Backends' results, for what depends on all of them. */
interface BackendChanges {
  /** Keys whose routeView changed (undefined: any may have). */
  views: Set<string> | undefined;
  models: boolean;
  credentials: boolean;
  /** Indexes translated again (undefined: the list could not be lined up with the last one). */
  rebuilt: number[] | undefined;
  /** A Backend translated again gained or lost its cluster. */
  clusters: boolean;
  /** A Backend translated again had or has Warning Events. */
  events: boolean;
  /**
   * A Backend translated again holds credentials of other names than before (with `credentials`
   * false or only values changed, the list of all credentials keeps its names).
   */
  credentialNames: boolean;
}

/**
 * The indexes of the memos that read one of `keys`. A scan, not an index kept beside the memos:
 * a Secret edit costs a look at each Backend's few reads (a millisecond at 10,000 Backends),
 * where an index by Secret cost 5 MiB for as long as the configuration is served.
 */
function readersOf(memos: ChunkedList<{ secrets: Reads<unknown> }>, keys: ReadonlySet<string>): number[] {
  const readers: number[] = [];
  // One Secret edited (the usual edit): a comparison per read instead of a hash look-up.
  const only = keys.size === 1 ? [...keys][0] : undefined;
  let i = 0;
  for (const part of memos.parts) {
    for (const { secrets: reads } of part) {
      if (only === undefined ? readAny(reads, keys) : readsKey(reads, only)) readers.push(i);
      i++;
    }
  }
  return readers;
}

function readsKey(reads: Reads<unknown>, key: string): boolean {
  for (let r = 0; r < reads.length; r += 2) if (reads[r] === key) return true;
  return false;
}

function translateBackends(
  items: readonly Backend[],
  previous: MemoList<Backend, BackendMemo>,
  secrets: Pick<ReadonlyMap<string, Secret>, 'get'>,
  changedSecrets: ReadonlySet<string> | undefined,
): { memos: ChunkedList<BackendMemo>; changes: BackendChanges } {
  const build = (b: Backend): BackendMemo => {
    const rec = recording(secrets);
    return { backend: b, result: translateBackend(b, rec.lookup), secrets: compact(rec.reads) };
  };
  const at = replacedAt(previous.items, items);
  if (at === undefined) {
    const byKey = new Map<string, BackendMemo>();
    previous.memos.forEach((m) => byKey.set(m.result.key, m));
    const memos = items.map((b) => {
      const memo = byKey.get(key(b.metadata));
      return memo !== undefined && memo.backend === b && readsHold(memo.secrets, secrets, changedSecrets) ? memo : build(b);
    });
    return { memos: ChunkedList.from(memos), changes: { views: undefined, models: true, credentials: true, rebuilt: undefined, clusters: true, events: true, credentialNames: true } };
  }
  const replacements = new Map<number, BackendMemo>();
  const rebuilt: number[] = [];
  const changes: BackendChanges = { views: new Set(), models: false, credentials: false, rebuilt, clusters: false, events: false, credentialNames: false };
  const secretsMoved = changedSecrets === undefined || changedSecrets.size > 0;
  // Only the Backends replaced, and those that read a Secret that changed, need a look.
  let candidates: Iterable<number> = at;
  if (changedSecrets === undefined) candidates = items.keys();
  else if (changedSecrets.size > 0) candidates = new Set<number>([...at, ...readersOf(previous.memos, changedSecrets)]);
  for (const i of candidates) {
    const old = previous.memos.at(i);
    const b = items[i] as Backend;
    if (old.backend === b && (!secretsMoved || readsHold(old.secrets, secrets, changedSecrets))) continue;
    const memo = build(b);
    replacements.set(i, memo);
    rebuilt.push(i);
    const was = old.result;
    const now = memo.result;
    if (was.events.length > 0 || now.events.length > 0) changes.events = true;
    if ((was.cluster === undefined) !== (now.cluster === undefined)) changes.clusters = true;
    if (was.key !== now.key) {
      changes.views?.add(was.key).add(now.key);
      changes.models = true;
      changes.credentials = true;
      changes.credentialNames = true;
      continue;
    }
    if (routeView(was) !== routeView(now)) changes.views?.add(now.key);
    if (!changes.models && modelsView(was) !== modelsView(now)) changes.models = true;
    if (!changes.credentialNames && !sameNames(was.credentials, now.credentials)) changes.credentialNames = changes.credentials = true;
    if (!changes.credentials && JSON.stringify(was.credentials) !== JSON.stringify(now.credentials)) changes.credentials = true;
  }
  return { memos: previous.memos.with(replacements), changes };
}

/**
 * Inputs → IR + statuses. Pure: no I/O, no clock, deterministic order. With `previous` (the
 * state of the last translation), objects that are the same as then, and read the same, are not
 * translated again: the output is equal, byte for byte, to translating from scratch.
 */
export function translate(inputs: Inputs, previous: TranslationState = EMPTY_STATE): Translation {
  const { byKey: secrets, changed: changedSecrets } = secretsByKey(inputs.secrets, previous.secrets);

  let gwStage = previous.gateways;
  let gwReused = false;
  if (
    gwStage !== undefined &&
    sameItems(gwStage.gatewayClasses, inputs.gatewayClasses) &&
    sameItems(gwStage.gateways, inputs.gateways) &&
    sameItems(gwStage.grants, inputs.referenceGrants) &&
    readsHold(gwStage.secrets, secrets, changedSecrets)
  ) {
    gwReused = true;
  } else {
    const rec = recording(secrets);
    gwStage = { gatewayClasses: inputs.gatewayClasses, gateways: inputs.gateways, grants: inputs.referenceGrants, secrets: rec.reads, result: translateGateways(inputs, rec.lookup) };
  }
  const gw = gwStage.result;
  const servedListeners: ServedListener[] = [];
  for (const { listeners } of gw.gateways.values()) for (const l of listeners) servedListeners.push(l);
  const events: WarningEvent[] = [...gw.events];
  for (const u of inputs.unknownFields ?? []) {
    events.push({ object: { kind: u.kind, namespace: u.namespace, name: u.name }, reason: 'UnknownFields', message: `unknown field${u.fields.length > 1 ? 's' : ''} ${u.fields.join(', ')}: ${UNKNOWN_FIELD_HINT}` });
  }

  const backendItems = sortedByKey(inputs.backends, previous.backends.items);
  const { memos: backendMemos, changes } = translateBackends(backendItems, previous.backends, secrets, changedSecrets);
  const rebuiltBackends = changes.rebuilt;
  let backendEvents = previous.backendEvents;
  if (changes.events || (rebuiltBackends === undefined && previous.backends.memos !== backendMemos)) {
    const all: WarningEvent[] = [];
    for (const m of backendMemos) if (m.result.events.length > 0) all.push(...m.result.events);
    backendEvents = all;
  }
  let backendClusters = previous.backendClusters;
  if (backendClusters === undefined || rebuiltBackends === undefined || changes.clusters) {
    const list: ClusterIR[] = [];
    const at = new Int32Array(backendMemos.length).fill(-1);
    backendMemos.forEach(({ result: b }, i) => {
      if (b.cluster) at[i] = list.push(b.cluster) - 1;
    });
    backendClusters = { list, at };
  } else if (rebuiltBackends.length > 0) {
    const list = backendClusters.list.slice();
    for (const i of rebuiltBackends) {
      const c = backendMemos.at(i).result.cluster;
      const j = backendClusters.at[i] ?? -1;
      if (c !== undefined && j >= 0) list[j] = c;
    }
    backendClusters = { list, at: backendClusters.at };
  }
  // Only a route translated again looks Backends up by key.
  // The last translation's map while every Backend's result is the same: an edit of a route among
  // 10,000 Backends then costs no map of them.
  let backends: ReadonlyMap<string, TranslatedBackend> | undefined = previous.backendsByKey?.memos === backendMemos ? previous.backendsByKey.byKey : undefined;
  const backendsByKey = (): ReadonlyMap<string, TranslatedBackend> => {
    if (backends === undefined) {
      const byKey = new Map<string, TranslatedBackend>();
      backendMemos.forEach((m) => byKey.set(m.result.key, m.result));
      backends = byKey;
    }
    return backends;
  };

  // A route reads of a Backend only what routeView keeps: a change elsewhere in the Backend
  // (its members, outlier detection) leaves its routes as they were.
  const viewCache = new Map<string, string | undefined>();
  const backendViews = {
    get(k: string): string | undefined {
      if (viewCache.has(k)) return viewCache.get(k);
      const b = backendsByKey().get(k);
      const view = b === undefined ? undefined : routeView(b);
      viewCache.set(k, view);
      return view;
    },
  };
  const changedViews = changes.views;
  const viewsHold = (reads: Reads<string>): boolean => {
    if (changedViews === undefined) return unchanged(reads, backendViews);
    if (changedViews.size === 0 || !readAny(reads, changedViews)) return true;
    return unchanged(reads, backendViews);
  };

  let serviceStage = previous.services;
  if (serviceStage === undefined || !sameItems(serviceStage.services, inputs.services) || !sameItems(serviceStage.endpointSlices, inputs.endpointSlices)) {
    serviceStage = { services: inputs.services, endpointSlices: inputs.endpointSlices, result: new ServiceBackends(inputs.services, inputs.endpointSlices) };
  }
  const services = serviceStage.result;
  const servicesSame = serviceStage === previous.services;
  const routesMayHold =
    gwReused &&
    previous.namespaces !== undefined &&
    sameItems(previous.namespaces, inputs.namespaces) &&
    previous.grants !== undefined &&
    sameItems(previous.grants, inputs.referenceGrants);
  let namespaces: Map<string, Namespace> | undefined;
  let foreignGateways: Set<string> | undefined;
  const routeItems = sortedByKey(inputs.httpRoutes, previous.routes.items);
  const routeAt = replacedAt(previous.routes.items, routeItems);
  let routesChanged = routeAt === undefined;
  const translateAt = (route: HTTPRoute): RouteMemo => {
    routesChanged = true;
    namespaces ??= new Map<string, Namespace>(inputs.namespaces.map((n) => [n.metadata.name, n]));
    foreignGateways ??= new Set(inputs.gateways.map((g) => key(g.metadata)).filter((k) => !gw.gateways.has(k)));
    const rec = recording(backendsByKey());
    const viewed = rec.reads;
    let usedServices = false;
    const resolver = {
      resolve: (namespace: string, name: string, port: number | undefined) => {
        usedServices = true;
        return services.resolve(namespace, name, port);
      },
    };
    const result = translateRoute(route, { gateways: gw.gateways, foreignGateways, backends: rec.lookup, services: resolver, namespaces, grants: inputs.referenceGrants });
    // What the route read of each Backend is its view (routeView), not the Backend's result.
    for (let i = 1; i < viewed.length; i += 2) viewed[i] = backendViews.get(viewed[i - 1] as string);
    return { route, services: usedServices ? services : undefined, backends: compact(viewed) as Reads<string>, result };
  };
  let routeMemos: ChunkedList<RouteMemo>;
  /** Indexes of the routes translated again; undefined: not followed (every route was looked at). */
  let rebuiltRoutes: number[] | undefined;
  /** The route results replaced, and what replaced them; undefined: not followed (every listener is built again). */
  let replaced: { before: RouteMemo[]; after: RouteMemo[] } | undefined;
  let routesByBackend = previous.routesByBackend;
  const attachedBefore = previous.attached;
  if (routesMayHold && servicesSame && routeAt !== undefined && changedViews !== undefined && routesByBackend !== undefined && attachedBefore.length === servedListeners.length) {
    // Lined up with the last translation, Gateways as they were: only the routes replaced and
    // those that read a Backend whose view changed need a look; the listeners' route counts are
    // the last ones, corrected for the routes translated again.
    servedListeners.forEach((l, i) => (l.attachedRoutes = attachedBefore[i] ?? 0));
    const look = new Set<number>(routeAt);
    for (const k of changedViews ?? []) {
      const readers = routesByBackend.get(k);
      if (typeof readers === 'number') look.add(readers);
      else for (const i of readers ?? []) look.add(i);
    }
    const replacements = new Map<number, RouteMemo>();
    replaced = { before: [], after: [] };
    rebuiltRoutes = [];
    for (const i of look) {
      const route = routeItems[i] as HTTPRoute;
      const old = previous.routes.memos.at(i);
      if (old.route === route && viewsHold(old.backends)) continue;
      for (const l of old.result.attachedTo) l.attachedRoutes--;
      const memo = translateAt(route);
      replacements.set(i, memo);
      rebuiltRoutes.push(i);
      replaced.before.push(old);
      replaced.after.push(memo);
      // Stale entries only cost a look: the index lists every Backend a route at i may read.
      for (let r = 0; r < memo.backends.length; r += 2) addReader(routesByBackend, memo.backends[r] as string, i, false);
    }
    routeMemos = previous.routes.memos.with(replacements);
  } else {
    for (const l of servedListeners) l.attachedRoutes = 0;
    let previousRouteByKey: Map<string, RouteMemo> | undefined;
    if (routeAt === undefined) {
      previousRouteByKey = new Map();
      for (const m of previous.routes.memos) previousRouteByKey.set(key(m.route.metadata), m);
    }
    const memos = new Array<RouteMemo>(routeItems.length);
    for (let i = 0; i < routeItems.length; i++) {
      const route = routeItems[i] as HTTPRoute;
      const memo = previousRouteByKey === undefined ? previous.routes.memos.at(i) : previousRouteByKey.get(key(route.metadata));
      const reusable = routesMayHold && memo !== undefined && memo.route === route && (memo.services === undefined || servicesSame) && viewsHold(memo.backends);
      if (memo !== undefined && reusable) {
        for (const l of memo.result.attachedTo) l.attachedRoutes++;
        memos[i] = memo;
      } else memos[i] = translateAt(route);
    }
    if (routesMayHold) {
      // Routes added or removed: what left and what joined, by identity of the results.
      const now = new Set(memos);
      const was = new Set(previous.routes.memos);
      replaced = { before: previous.routes.memos.toArray().filter((m) => !now.has(m)), after: memos.filter((m) => !was.has(m)) };
    }
    const index: RoutesByBackend = new Map();
    memos.forEach((m, i) => {
      for (let r = 0; r < m.backends.length; r += 2) addReader(index, m.backends[r] as string, i, true);
    });
    routesByBackend = index;
    routeMemos = ChunkedList.from(memos);
  }
  const attached = servedListeners.map((l) => l.attachedRoutes);
  let routeEvents = previous.routeEvents;
  const routeEventsMoved = rebuiltRoutes === undefined || replaced === undefined || replaced.before.some((m) => m.result.events.length > 0) || replaced.after.some((m) => m.result.events.length > 0);
  if (routesChanged && routeEventsMoved) {
    const allEvents: WarningEvent[] = [];
    for (const { result: t } of routeMemos) if (t.events.length > 0) allEvents.push(...t.events);
    routeEvents = allEvents;
  }

  const listeners: ListenerIR[] = [];
  for (const { gateway, listeners: served, accessLog } of gw.gateways.values()) {
    const byPort = new Map<number, ListenerIR>();
    for (const l of served.filter(isServed)) {
      const protocol = l.spec.protocol;
      if (!isServedProtocol(protocol)) continue;
      let ir = byPort.get(l.spec.port);
      if (!ir) {
        ir = {
          name: l.envoyListener,
          gateway: { namespace: gateway.metadata.namespace, name: gateway.metadata.name },
          port: l.spec.port,
          protocol,
          ...(accessLog !== undefined ? { accessLog } : {}),
          tls: [],
          virtualHosts: [],
        };
        byPort.set(l.spec.port, ir);
        listeners.push(ir);
      }
      if (l.certificates.length > 0) ir.tls.push({ certificates: [...l.certificates], serverNames: l.spec.hostname ? [l.spec.hostname] : [] });
    }
  }
  let models = previous.models;
  if (changes.models || models === undefined) {
    const byCluster = new Map<string, ServedModels>();
    for (const { result: b } of backendMemos) if (b.cluster && b.models) byCluster.set(b.cluster.name, b.models);
    // The /v1/models answer of a listener depends on its Backends' models, not only on its routes.
    models = { byCluster };
  }
  const modelsByCluster = models.byCluster;
  const moved = replaced === undefined ? undefined : placementDelta(replaced.before.map((m) => m.result), replaced.after.map((m) => m.result));
  // Every placement by listener, in route order: only for a listener built from scratch.
  let placedBy: Map<string, PlacedRoute[]> | undefined;
  const placedOn = (listener: string): readonly PlacedRoute[] => {
    placedBy ??= groupPlacements(routeMemos);
    return placedBy.get(listener) ?? [];
  };
  const listenerMemos = new Map<string, ListenerMemo>();
  const listenerIrs = listeners.map((l) => {
    const shape = JSON.stringify(l);
    const memo = previous.listeners.get(l.name);
    const before = memo !== undefined && memo.shape === shape ? memo : undefined;
    const hosts = listenerHosts(l.name, before?.hosts, moved === undefined ? 'unknown' : (moved.get(l.name) ?? NO_PLACEMENTS_MOVED), () => placedOn(l.name), modelsByCluster);
    if (before !== undefined && before.hosts.virtualHosts === hosts.virtualHosts) {
      listenerMemos.set(l.name, before);
      return before.ir;
    }
    if (before !== undefined && sameItems(before.hosts.virtualHosts, hosts.virtualHosts)) {
      listenerMemos.set(l.name, { shape, hosts, ir: before.ir });
      return before.ir;
    }
    l.virtualHosts = hosts.virtualHosts as VirtualHostIR[];
    listenerMemos.set(l.name, { shape, hosts, ir: l });
    return l;
  });

  let credentials = previous.credentials;
  if (changes.credentials || credentials === undefined) {
    const rebuilt = rebuiltBackends?.map((i) => backendMemos.at(i).result.credentials);
    credentials = (credentials !== undefined && rebuilt !== undefined && !changes.credentialNames ? withValues(credentials, rebuilt) : undefined) ?? allCredentials(backendMemos);
  }

  const gatewayStatuses: ObjectStatus[] = [...gw.gateways.values()].map((g) => {
    const accessLog = gatewayAccessLog(g.gateway);
    return gatewayStatus(g.gateway, g.listeners, 'error' in accessLog ? accessLog.error : undefined);
  });
  const head = (gw.classStatuses as ObjectStatus[]).concat(gatewayStatuses);
  const tail = invalidStatuses(inputs);
  const layout =
    patchedStatuses(previous.statuses, head, tail, routeMemos, rebuiltRoutes, backendMemos, rebuiltBackends) ?? statusLayout(head, tail, routeMemos, backendMemos);
  const statuses = noteLastGood(layout.list as ObjectStatus[], inputs);

  // A Service port becomes a cluster only when a served route sends traffic to it; a route
  // result that resolved no Service sends traffic to none.
  const servicesMoved = replaced === undefined || replaced.before.concat(replaced.after).some((m) => m.services !== undefined);
  const serviceClusters = servicesSame && (!routesChanged || !servicesMoved) ? previous.serviceClusters : services.clustersNamed(forwardedClusters(routeMemos)).sort((a, b) => byCodeUnits(a.name, b.name));
  // The Backends' list itself when no Service has a cluster: an edit of one Backend among 10,000
  // copies that list once (above), not twice.
  const clusters = serviceClusters.length === 0 ? (backendClusters.list as ClusterIR[]) : backendClusters.list.concat(serviceClusters);
  const ir: IR = {
    gateways: [...gw.gateways.values()].map((g) => gatewayIr(g.gateway)).sort((a, b) => byCodeUnits(key(a), key(b))),
    listeners: listenerIrs.sort((a, b) => byCodeUnits(a.name, b.name)),
    clusters,
    credentials: credentials as CredentialIR[],
    certificates: [...gw.certificates].sort((a, b) => byCodeUnits(a.name, b.name)),
  };
  return {
    ir,
    statuses,
    events: events.concat(backendEvents, routeEvents),
    state: {
      secrets: { list: inputs.secrets, byKey: secrets },
      gateways: gwStage,
      services: serviceStage,
      namespaces: inputs.namespaces,
      grants: inputs.referenceGrants,
      backends: { items: backendItems, memos: backendMemos },
      routes: { items: routeItems, memos: routeMemos },
      backendsByKey: backends === undefined ? undefined : { memos: backendMemos, byKey: backends },
      backendEvents,
      backendClusters,
      routesByBackend,
      attached,
      routeEvents,
      statuses: layout,
      serviceClusters,
      models,
      credentials,
      listeners: listenerMemos,
    },
  };
}

function gatewayIr(g: Gateway): GatewayIR {
  const infra = g.spec.infrastructure;
  return {
    namespace: g.metadata.namespace,
    name: g.metadata.name,
    className: g.spec.gatewayClassName,
    ...(g.metadata.creationTimestamp !== undefined ? { createdAt: g.metadata.creationTimestamp } : {}),
    // An empty value asks for any address of that type (GEP-3130).
    addresses: (g.spec.addresses ?? []).map((a) => ({ type: a.type ?? 'IPAddress', value: a.value ?? '' })),
    ...(infra
      ? {
          infrastructure: {
            labels: { ...infra.labels },
            annotations: { ...infra.annotations },
            ...(infra.parametersRef ? { parametersRef: { ...infra.parametersRef } } : {}),
          },
        }
      : {}),
  };
}

/**
 * Backend key → the index of the route that may read it, or the indexes when there are several:
 * a Backend is usually read by one route, and a list each cost 56 bytes per Backend.
 */
type RoutesByBackend = Map<string, number | number[]>;

/** `inOrder`: routes are added by increasing index (a full build), so a repeat can only be the last. */
function addReader(index: RoutesByBackend, backend: string, route: number, inOrder: boolean): void {
  const readers = index.get(backend);
  if (readers === undefined) index.set(backend, route);
  else if (typeof readers === 'number') {
    if (readers !== route) index.set(backend, [readers, route]);
  } else if (inOrder ? readers[readers.length - 1] !== route : !readers.includes(route)) readers.push(route);
}

/** Every Backend's credentials, one per name, and the service-account index, by name. */
/**
 * Every Backend's credentials, one per name (the last Backend's), in name order. One list sorted
 * in place, where a map by name, its values spread into a list and that list sorted were each as
 * large again (60,000 credentials at 10,000 Backends: large objects, kept until a full GC).
 * Backends in key order mostly give their credentials in name order already, which the sort
 * only checks.
 */
function allCredentials(memos: ChunkedList<BackendMemo>): CredentialIR[] {
  let n = 0;
  for (const part of memos.parts) for (const { result: b } of part) n += b.credentials.length;
  const list = new Array<CredentialIR>(n);
  let at = 0;
  for (const part of memos.parts) for (const { result: b } of part) for (const c of b.credentials) list[at++] = c;
  // Stable: of equal names, the last Backend's stays last, and is the one kept.
  list.sort((a, b) => byCodeUnits(a.name, b.name));
  let kept = 0;
  for (let i = 0; i < list.length; i++) {
    const c = list[i] as CredentialIR;
    if (i + 1 < list.length && (list[i + 1] as CredentialIR).name === c.name) continue;
    list[kept++] = c;
  }
  list.length = kept;
  const index = serviceAccountIndex(list);
  if (index !== undefined) list.splice(sortedIndex(list, index.name), 0, index);
  return list;
}

/** Where `name` goes in `list` (sorted by name, without it). */
function sortedIndex(list: readonly CredentialIR[], name: string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (byCodeUnits((list[mid] as CredentialIR).name, name) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The credentials list with the values of `replaced` (the Backends translated again, none of
 * which holds a name it did not hold before): a Secret edited among 60,000 costs a look-up per
 * credential of its readers, where building the list again cost a map and a sort of all of them
 * (a hundred milliseconds). The names are the same, so is the service-account index. Values of
 * one name are the same whoever holds it (one Secret's, read by every holder translated again).
 * Undefined when a name is not in the list.
 */
function withValues(list: readonly CredentialIR[], replaced: readonly (readonly CredentialIR[])[]): CredentialIR[] | undefined {
  const next = list.slice();
  for (const credentials of replaced) {
    for (const c of credentials) {
      const at = indexByName(next, c.name);
      if (at < 0) return undefined;
      next[at] = c;
    }
  }
  return next;
}

/** The index of the item named `name` in a list sorted by name (byCodeUnits), else -1. */
function indexByName(list: readonly { name: string }[], name: string): number {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const at = (list[mid] as { name: string }).name;
    if (at === name) return mid;
    if (at < name) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** The same names in the same order. */
function sameNames(a: readonly { name: string }[], b: readonly { name: string }[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if ((a[i] as { name: string }).name !== (b[i] as { name: string }).name) return false;
  return true;
}

/** The statuses of a translation: head (GatewayClasses, Gateways), routes with a parent, Backends, tail (invalid objects). */
function statusLayout(head: readonly ObjectStatus[], tail: readonly ObjectStatus[], routes: ChunkedList<RouteMemo>, backends: ChunkedList<BackendMemo>): StatusLayout {
  const list: ObjectStatus[] = head.slice();
  const routeAt = new Int32Array(routes.length).fill(-1);
  routes.forEach(({ result }, i) => {
    if (result.status.parents.length > 0) routeAt[i] = list.push(result.status) - 1;
  });
  const backendStart = list.length;
  backends.forEach(({ result }) => list.push(result.status));
  for (const s of tail) list.push(s);
  return { list: compact(list), head: head.length, routeAt, backendStart, tail: tail.length };
}

/**
 * The last statuses with the head, the tail and the statuses of the routes and Backends
 * translated again written over theirs, in one copy; undefined when they cannot be lined up
 * (another number of GatewayClasses, Gateways, invalid objects, routes or Backends, a route that
 * gained or lost its last parent, or routes or Backends not followed one by one).
 */
function patchedStatuses(
  previous: StatusLayout | undefined,
  head: readonly ObjectStatus[],
  tail: readonly ObjectStatus[],
  routes: ChunkedList<RouteMemo>,
  rebuiltRoutes: readonly number[] | undefined,
  backends: ChunkedList<BackendMemo>,
  rebuiltBackends: readonly number[] | undefined,
): StatusLayout | undefined {
  if (previous === undefined || rebuiltRoutes === undefined || rebuiltBackends === undefined) return undefined;
  if (previous.head !== head.length || previous.tail !== tail.length || previous.routeAt.length !== routes.length) return undefined;
  if (previous.list.length - previous.backendStart - previous.tail !== backends.length) return undefined;
  for (const i of rebuiltRoutes) if ((previous.routeAt[i] !== -1) !== routes.at(i).result.status.parents.length > 0) return undefined;
  const list = previous.list.slice();
  for (let i = 0; i < head.length; i++) list[i] = head[i] as ObjectStatus;
  for (const i of rebuiltRoutes) {
    const at = previous.routeAt[i] ?? -1;
    if (at >= 0) list[at] = routes.at(i).result.status;
  }
  for (const i of rebuiltBackends) list[previous.backendStart + i] = backends.at(i).result.status;
  const tailStart = list.length - tail.length;
  for (let i = 0; i < tail.length; i++) list[tailStart + i] = tail[i] as ObjectStatus;
  return { ...previous, list };
}

function forwardedClusters(memos: Iterable<RouteMemo>): Set<string> {
  const names = new Set<string>();
  for (const { result } of memos) for (const p of result.placed) if (p.route.action.kind === 'forward') for (const c of p.route.action.clusters) names.add(c.name);
  return names;
}

function groupPlacements(memos: Iterable<RouteMemo>): Map<string, PlacedRoute[]> {
  const grouped = new Map<string, PlacedRoute[]>();
  for (const { result } of memos) {
    for (const p of result.placed) {
      const list = grouped.get(p.envoyListener);
      if (list) list.push(p);
      else grouped.set(p.envoyListener, [p]);
    }
  }
  return grouped;
}

/** Code-unit order: the same on every runtime (localeCompare follows the ICU build and locale) and far cheaper. */
function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function key(m: { namespace: string; name: string }): string {
  return `${m.namespace}/${m.name}`;
}
