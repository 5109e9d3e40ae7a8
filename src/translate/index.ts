import { condition } from '../api/conditions.js';
import { formatProblem, UNKNOWN_FIELD_HINT } from '../api/manifest.js';
import type { Backend } from '../api/backend.js';
import type { EndpointSlice } from '../api/endpointslice.js';
import type { HTTPRoute } from '../api/httproute.js';
import type { Namespace } from '../api/namespace.js';
import type { Service } from '../api/service.js';
import type { Secret } from '../api/secret.js';
import { isServedProtocol, type Gateway, type GatewayClass } from '../api/gateway.js';
import type { CredentialIR, GatewayIR, IR, ListenerIR, VirtualHostIR } from '../ir/model.js';
import { translateBackend, type TranslatedBackend } from './backends.js';
import { gatewayAccessLog, gatewayStatus, isServed, translateGateways, type TranslatedGateways } from './gateways.js';
import type { Inputs, InvalidObject, ReferenceGrant } from './inputs.js';
import { compareRoutes } from './precedence.js';
import { modelsRoute, type ServedModels } from './models.js';
import { translateRoute, type PlacedRoute, type TranslatedRoute } from './routes.js';
import { ServiceBackends } from './services.js';
import type { InvalidStatus, ObjectStatus, WarningEvent } from './status.js';
import { serviceAccountIndex } from './credentials.js';

export interface Translation {
  ir: IR;
  statuses: ObjectStatus[];
  events: WarningEvent[];
  /** What the next translation may reuse: give it back as `translate(next, translation.state)`. */
  state: TranslationState;
}

/** Secrets (or Backends) a stage read, with what it found: the stage's result holds while each is the same object. */
type Reads<V> = ReadonlyArray<readonly [string, V | undefined]>;

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

interface RouteMemo {
  route: HTTPRoute;
  gateways: TranslatedGateways;
  namespaces: readonly Namespace[];
  grants: readonly ReferenceGrant[];
  /** The ServiceBackends it resolved Services with, if it resolved any. */
  services: ServiceBackends | undefined;
  /** The Backends it looked up, as what a route reads of one (routeView). */
  backends: Reads<string>;
  result: TranslatedRoute;
}

interface ListenerMemo {
  /** Everything of the listener but its routes, as JSON. */
  shape: string;
  placed: readonly PlacedRoute[];
  ir: ListenerIR;
}

/**
 * Per-object results of one translation and what each read (the dependency index): a Backend's
 * result depends on the Backend and the Secrets it looked up; a route's on the route, the
 * Gateways, Namespaces, ReferenceGrants, the Services if it used any, and the Backends it looked
 * up. Objects are compared by identity: providers hand over the same object while it is
 * unchanged, so the change set is what is not the same object. A result reused is the same
 * object, down to the IR, so the Envoy stage and the cache can skip it by reference.
 */
export interface TranslationState {
  readonly secrets: { list: readonly Secret[]; byKey: ReadonlyMap<string, Secret> } | undefined;
  readonly gateways: GatewayStage | undefined;
  readonly services: ServiceStage | undefined;
  readonly backends: ReadonlyMap<string, BackendMemo>;
  readonly routes: ReadonlyMap<string, RouteMemo>;
  readonly listeners: ReadonlyMap<string, ListenerMemo>;
}

const EMPTY_STATE: TranslationState = { secrets: undefined, gateways: undefined, services: undefined, backends: new Map(), routes: new Map(), listeners: new Map() };

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

/** What translateRoute reads of a Backend (routes.ts backendTarget): its retry plan, its cluster's name, why it is unavailable. */
function routeView(b: TranslatedBackend): string {
  let view = routeViews.get(b);
  if (view === undefined) {
    view = JSON.stringify([b.retry, b.cluster?.name ?? null, b.unavailable ?? null]);
    routeViews.set(b, view);
  }
  return view;
}

/** routeView of each TranslatedBackend (never changed once built), computed once. */
const routeViews = new WeakMap<TranslatedBackend, string>();

/** Same length, same objects in the same order. */
function sameItems<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function unchanged<V>(reads: Reads<V>, lookup: Pick<ReadonlyMap<string, V>, 'get'>): boolean {
  for (const [k, v] of reads) if (lookup.get(k) !== v) return false;
  return true;
}

/** A lookup that records what was asked and found. */
function recording<V>(from: Pick<ReadonlyMap<string, V>, 'get'>): { lookup: Pick<ReadonlyMap<string, V>, 'get'>; reads: [string, V | undefined][] } {
  const reads: [string, V | undefined][] = [];
  return {
    reads,
    lookup: {
      get(k: string): V | undefined {
        const v = from.get(k);
        reads.push([k, v]);
        return v;
      },
    },
  };
}

function sortedByKey<T extends { metadata: { namespace: string; name: string } }>(items: readonly T[]): readonly T[] {
  // Providers hand over objects in key order already: checking costs less than sorting.
  for (let i = 1; i < items.length; i++) {
    if (byCodeUnits(key((items[i - 1] as T).metadata), key((items[i] as T).metadata)) > 0) return [...items].sort((x, y) => byCodeUnits(key(x.metadata), key(y.metadata)));
  }
  return items;
}

/**
 * Inputs → IR + statuses. Pure: no I/O, no clock, deterministic order. With `previous` (the
 * state of the last translation), objects that are the same as then, and read the same, are not
 * translated again: the output is equal, byte for byte, to translating from scratch.
 */
export function translate(inputs: Inputs, previous: TranslationState = EMPTY_STATE): Translation {
  const secrets =
    previous.secrets !== undefined && sameItems(previous.secrets.list, inputs.secrets)
      ? previous.secrets.byKey
      : new Map<string, Secret>(inputs.secrets.map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s]));

  let gwStage = previous.gateways;
  let gwReused = false;
  if (
    gwStage !== undefined &&
    sameItems(gwStage.gatewayClasses, inputs.gatewayClasses) &&
    sameItems(gwStage.gateways, inputs.gateways) &&
    sameItems(gwStage.grants, inputs.referenceGrants) &&
    unchanged(gwStage.secrets, secrets)
  ) {
    gwReused = true;
    // Counted again below, route by route.
    for (const { listeners } of gwStage.result.gateways.values()) for (const l of listeners) l.attachedRoutes = 0;
  } else {
    const rec = recording(secrets);
    gwStage = { gatewayClasses: inputs.gatewayClasses, gateways: inputs.gateways, grants: inputs.referenceGrants, secrets: rec.reads, result: translateGateways(inputs, rec.lookup) };
  }
  const gw = gwStage.result;
  const events: WarningEvent[] = [...gw.events];
  for (const u of inputs.unknownFields ?? []) {
    events.push({ object: { kind: u.kind, namespace: u.namespace, name: u.name }, reason: 'UnknownFields', message: `unknown field${u.fields.length > 1 ? 's' : ''} ${u.fields.join(', ')}: ${UNKNOWN_FIELD_HINT}` });
  }

  const backends = new Map<string, TranslatedBackend>();
  const backendMemos = new Map<string, BackendMemo>();
  for (const b of sortedByKey(inputs.backends)) {
    const k = key(b.metadata);
    let memo = previous.backends.get(k);
    if (memo === undefined || memo.backend !== b || !unchanged(memo.secrets, secrets)) {
      const rec = recording(secrets);
      memo = { backend: b, result: translateBackend(b, rec.lookup), secrets: rec.reads };
    }
    backendMemos.set(k, memo);
    backends.set(memo.result.key, memo.result);
    events.push(...memo.result.events);
  }

  // A route reads of a Backend only what routeView keeps: a change elsewhere in the Backend
  // (its members, outlier detection) leaves its routes as they were.
  const viewCache = new Map<string, string | undefined>();
  const backendViews = {
    get(k: string): string | undefined {
      if (viewCache.has(k)) return viewCache.get(k);
      const b = backends.get(k);
      const view = b === undefined ? undefined : routeView(b);
      viewCache.set(k, view);
      return view;
    },
  };

  let serviceStage = previous.services;
  if (serviceStage === undefined || !sameItems(serviceStage.services, inputs.services) || !sameItems(serviceStage.endpointSlices, inputs.endpointSlices)) {
    serviceStage = { services: inputs.services, endpointSlices: inputs.endpointSlices, result: new ServiceBackends(inputs.services, inputs.endpointSlices) };
  }
  const services = serviceStage.result;
  const namespaces = new Map<string, Namespace>(inputs.namespaces.map((n) => [n.metadata.name, n]));
  const foreignGateways = new Set(inputs.gateways.map((g) => key(g.metadata)).filter((k) => !gw.gateways.has(k)));
  const placed: PlacedRoute[] = [];
  const routeStatuses: ObjectStatus[] = [];
  const routeMemos = new Map<string, RouteMemo>();
  for (const route of sortedByKey(inputs.httpRoutes)) {
    const k = key(route.metadata);
    let memo = previous.routes.get(k);
    const reusable =
      gwReused &&
      memo !== undefined &&
      memo.route === route &&
      memo.gateways === gw &&
      (memo.services === undefined || memo.services === services) &&
      sameItems(memo.namespaces, inputs.namespaces) &&
      sameItems(memo.grants, inputs.referenceGrants) &&
      unchanged(memo.backends, backendViews);
    if (memo !== undefined && reusable) {
      for (const l of memo.result.attachedTo) l.attachedRoutes++;
    } else {
      const rec = recording(backends);
      const viewed = rec.reads;
      let usedServices = false;
      const resolver = {
        resolve: (namespace: string, name: string, port: number | undefined) => {
          usedServices = true;
          return services.resolve(namespace, name, port);
        },
      };
      const result = translateRoute(route, { gateways: gw.gateways, foreignGateways, backends: rec.lookup, services: resolver, namespaces, grants: inputs.referenceGrants });
      memo = { route, gateways: gw, namespaces: inputs.namespaces, grants: inputs.referenceGrants, services: usedServices ? services : undefined, backends: viewed.map(([k]) => [k, backendViews.get(k)] as const), result };
    }
    routeMemos.set(k, memo);
    const t = memo.result;
    placed.push(...t.placed);
    events.push(...t.events);
    if (t.status.parents.length > 0) routeStatuses.push(t.status);
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
  const modelsByCluster = new Map<string, ServedModels>();
  for (const b of backends.values()) if (b.cluster && b.models) modelsByCluster.set(b.cluster.name, b.models);
  // The /v1/models answer of a listener depends on its Backends' models, not only on its routes.
  const modelsKey = JSON.stringify([...modelsByCluster]);
  const placedBy = new Map<string, PlacedRoute[]>();
  for (const p of placed) {
    const list = placedBy.get(p.envoyListener);
    if (list) list.push(p);
    else placedBy.set(p.envoyListener, [p]);
  }
  const listenerMemos = new Map<string, ListenerMemo>();
  const listenerIrs = listeners.map((l) => {
    const mine = placedBy.get(l.name) ?? [];
    const shape = `${JSON.stringify(l)}\0${modelsKey}`;
    const memo = previous.listeners.get(l.name);
    if (memo !== undefined && memo.shape === shape && sameItems(memo.placed, mine)) {
      listenerMemos.set(l.name, memo);
      return memo.ir;
    }
    l.virtualHosts = virtualHosts(l.name, mine, modelsByCluster);
    listenerMemos.set(l.name, { shape, placed: mine, ir: l });
    return l;
  });

  const credentials = new Map<string, CredentialIR>();
  for (const b of backends.values()) for (const c of b.credentials) credentials.set(c.name, c);
  const index = serviceAccountIndex(credentials.values());
  if (index !== undefined) credentials.set(index.name, index);

  const statuses = noteLastGood(
    [
      ...gw.classStatuses,
      ...[...gw.gateways.values()].map((g) => {
        const accessLog = gatewayAccessLog(g.gateway);
        return gatewayStatus(g.gateway, g.listeners, 'error' in accessLog ? accessLog.error : undefined);
      }),
      ...routeStatuses,
      ...[...backends.values()].map((b) => b.status),
      ...invalidStatuses(inputs),
    ],
    inputs,
  );

  const ir: IR = {
    gateways: [...gw.gateways.values()].map((g) => gatewayIr(g.gateway)).sort((a, b) => byCodeUnits(key(a), key(b))),
    listeners: listenerIrs.sort((a, b) => byCodeUnits(a.name, b.name)),
    clusters: [
      ...[...backends.values()].flatMap((b) => (b.cluster ? [b.cluster] : [])),
      // A Service port becomes a cluster only when a served route sends traffic to it.
      ...services.clustersNamed(forwardedClusters(placed)).sort((a, b) => byCodeUnits(a.name, b.name)),
    ],
    credentials: [...credentials.values()].sort((a, b) => byCodeUnits(a.name, b.name)),
    certificates: [...gw.certificates].sort((a, b) => byCodeUnits(a.name, b.name)),
  };
  return { ir, statuses, events, state: { secrets: { list: inputs.secrets, byKey: secrets }, gateways: gwStage, services: serviceStage, backends: backendMemos, routes: routeMemos, listeners: listenerMemos } };
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

function forwardedClusters(placed: readonly PlacedRoute[]): Set<string> {
  const names = new Set<string>();
  for (const p of placed) if (p.route.action.kind === 'forward') for (const c of p.route.action.clusters) names.add(c.name);
  return names;
}

function virtualHosts(listener: string, placed: PlacedRoute[], modelsByCluster: ReadonlyMap<string, ServedModels>): VirtualHostIR[] {
  const byHost = new Map<string, PlacedRoute[]>();
  for (const p of placed) {
    const routes = byHost.get(p.hostname);
    if (routes) routes.push(p);
    else byHost.set(p.hostname, [p]);
  }
  return [...byHost.entries()]
    .sort(([a], [b]) => (a === '*' ? 1 : b === '*' ? -1 : byCodeUnits(a, b)))
    .map(([hostname, placedRoutes]) => {
      const name = `${listener}/${hostname}`;
      const routes = [...placedRoutes].sort(compareRoutes).map((r) => r.route);
      const models = modelsRoute(routes, modelsByCluster, name);
      return { name, domains: [hostname], routes: models ? [models, ...routes] : routes };
    });
}

/** Code-unit order: the same on every runtime (localeCompare follows the ICU build and locale) and far cheaper. */
function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function key(m: { namespace: string; name: string }): string {
  return `${m.namespace}/${m.name}`;
}
