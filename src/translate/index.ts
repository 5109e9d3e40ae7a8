import { condition } from '../api/conditions.js';
import { formatProblem, UNKNOWN_FIELD_HINT } from '../api/manifest.js';
import type { Namespace } from '../api/namespace.js';
import type { Secret } from '../api/secret.js';
import { isServedProtocol, type Gateway } from '../api/gateway.js';
import type { CredentialIR, GatewayIR, IR, ListenerIR, VirtualHostIR } from '../ir/model.js';
import { translateBackend, type TranslatedBackend } from './backends.js';
import { gatewayAccessLog, gatewayStatus, isServed, translateGateways } from './gateways.js';
import type { Inputs } from './inputs.js';
import { compareRoutes } from './precedence.js';
import { modelsRoute, type ServedModels } from './models.js';
import { translateRoute, type PlacedRoute } from './routes.js';
import { ServiceBackends } from './services.js';
import type { InvalidStatus, ObjectStatus, WarningEvent } from './status.js';

export interface Translation {
  ir: IR;
  statuses: ObjectStatus[];
  events: WarningEvent[];
}

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

/** Marks an object that keeps serving its last valid version while its current version is invalid. */
function noteLastGood(statuses: ObjectStatus[], inputs: Inputs): void {
  for (const o of inputs.invalid.filter((i) => i.servingLastGood)) {
    const s = statuses.find((x) => x.kind === o.kind && x.namespace === o.namespace && x.name === o.name);
    if (!s || !('conditions' in s)) continue;
    const accepted = s.conditions.find((c) => c.type === 'Accepted');
    const message = `${o.problems.map(formatProblem).join('; ')}; the last valid version keeps being served`;
    if (accepted) Object.assign(accepted, { status: 'False', reason: 'Invalid', message });
  }
}

/** Inputs → IR + statuses. Pure: no I/O, no clock, deterministic order. */
export function translate(inputs: Inputs): Translation {
  const secrets = new Map<string, Secret>(inputs.secrets.map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s]));
  const gw = translateGateways(inputs);
  const events: WarningEvent[] = [...gw.events];
  for (const u of inputs.unknownFields ?? []) {
    events.push({ object: { kind: u.kind, namespace: u.namespace, name: u.name }, reason: 'UnknownFields', message: `unknown field${u.fields.length > 1 ? 's' : ''} ${u.fields.join(', ')}: ${UNKNOWN_FIELD_HINT}` });
  }

  const backends = new Map<string, TranslatedBackend>();
  for (const b of [...inputs.backends].sort((x, y) => byCodeUnits(key(x.metadata), key(y.metadata)))) {
    const t = translateBackend(b, secrets);
    backends.set(t.key, t);
    events.push(...t.events);
  }

  const services = new ServiceBackends(inputs.services, inputs.endpointSlices);
  const namespaces = new Map<string, Namespace>(inputs.namespaces.map((n) => [n.metadata.name, n]));
  const foreignGateways = new Set(inputs.gateways.map((g) => key(g.metadata)).filter((k) => !gw.gateways.has(k)));
  const placed: PlacedRoute[] = [];
  const routeStatuses: ObjectStatus[] = [];
  for (const route of [...inputs.httpRoutes].sort((x, y) => byCodeUnits(key(x.metadata), key(y.metadata)))) {
    const t = translateRoute(route, { gateways: gw.gateways, foreignGateways, backends, services, namespaces, grants: inputs.referenceGrants });
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
  for (const l of listeners) l.virtualHosts = virtualHosts(l.name, placed.filter((p) => p.envoyListener === l.name), modelsByCluster);

  const credentials = new Map<string, CredentialIR>();
  for (const b of backends.values()) for (const c of b.credentials) credentials.set(c.name, c);

  const statuses: ObjectStatus[] = [
    ...gw.classStatuses,
    ...[...gw.gateways.values()].map((g) => {
      const accessLog = gatewayAccessLog(g.gateway);
      return gatewayStatus(g.gateway, g.listeners, 'error' in accessLog ? accessLog.error : undefined);
    }),
    ...routeStatuses,
    ...[...backends.values()].map((b) => b.status),
    ...invalidStatuses(inputs),
  ];
  noteLastGood(statuses, inputs);

  const ir: IR = {
    gateways: [...gw.gateways.values()].map((g) => gatewayIr(g.gateway)).sort((a, b) => byCodeUnits(key(a), key(b))),
    listeners: listeners.sort((a, b) => byCodeUnits(a.name, b.name)),
    clusters: [
      ...[...backends.values()].flatMap((b) => (b.cluster ? [b.cluster] : [])),
      // A Service port becomes a cluster only when a served route sends traffic to it.
      ...services.clustersNamed(forwardedClusters(placed)).sort((a, b) => byCodeUnits(a.name, b.name)),
    ],
    credentials: [...credentials.values()].sort((a, b) => byCodeUnits(a.name, b.name)),
    certificates: [...gw.certificates].sort((a, b) => byCodeUnits(a.name, b.name)),
  };
  return { ir, statuses, events };
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
