import { condition, type Condition } from '../api/conditions.js';
import { ACCESS_LOG_ANNOTATION, ACCESS_LOG_FORMATS, CONTROLLER_NAME, GATEWAY_GROUP, isServedProtocol, type AccessLogFormat, type Gateway, type GatewayListener, type ServedProtocol } from '../api/gateway.js';
import type { Secret } from '../api/secret.js';
import { secretKey, type SecretLookup } from './credentials.js';
import type { CertificateIR } from '../ir/model.js';
import { checkServingCertificate } from './certificates.js';
import { SUPPORTED_FEATURES } from './features.js';
import type { Inputs } from './inputs.js';
import { referencePermitted } from './references.js';
import type { GatewayClassStatus, GatewayStatus, ListenerStatus, WarningEvent } from './status.js';

/** A Gateway listener and what translation decided about it (served or not). */
export interface ServedListener {
  gateway: Gateway;
  spec: GatewayListener;
  /** Envoy listener this Gateway listener lands on: one per (Gateway, port). */
  envoyListener: string;
  certificates: string[];
  /** Route kinds this listener takes: allowedRoutes.kinds that Switchyard serves, or the protocol's default. */
  supportedKinds: { group: string; kind: string }[];
  /** Routes attached per the Gateway API rule (allowedRoutes and parentRefs), served or not. */
  attachedRoutes: number;
  /** Set when the listener gets no Envoy configuration: why, for its status and its routes. */
  notServed?: string;
  conditions: Condition[];
}

export interface TranslatedGateways {
  classStatuses: GatewayClassStatus[];
  /** Gateways of our classes, keyed "ns/name". */
  gateways: Map<string, { gateway: Gateway; listeners: ServedListener[]; accessLog?: AccessLogFormat }>;
  certificates: CertificateIR[];
  events: WarningEvent[];
}

export function envoyListenerName(gateway: Gateway, port: number): string {
  return `${gateway.metadata.namespace}/${gateway.metadata.name}/${port}`;
}

export function certificateName(namespace: string, name: string): string {
  return `certificate/${namespace}/${name}`;
}

/** Listener Accepted=False reasons that are also Conflicted=True (Gateway API ListenerConditionConflicted). */
const CONFLICTS: readonly string[] = ['PortUnavailable', 'ProtocolConflict', 'HostnameConflict'];

/** Route kinds Switchyard serves, per listener protocol. */
const KINDS_BY_PROTOCOL: Record<ServedProtocol, readonly string[]> = { HTTP: ['HTTPRoute'], HTTPS: ['HTTPRoute'] };

interface Problem {
  reason: string;
  message: string;
}

/**
 * Listener.allowedRoutes.kinds against what the protocol serves. Gateway API: kinds that are not
 * supported are left out of status.supportedKinds and make ResolvedRefs False/InvalidRouteKinds;
 * the supported ones stay listed and usable.
 */
function routeKinds(l: GatewayListener): { supported: { group: string; kind: string }[]; problem?: Problem } {
  const served = isServedProtocol(l.protocol) ? KINDS_BY_PROTOCOL[l.protocol] : [];
  const asked = l.allowedRoutes?.kinds;
  if (asked === undefined) return { supported: served.map((kind) => ({ group: GATEWAY_GROUP, kind })) };
  const supported: { group: string; kind: string }[] = [];
  const refused: string[] = [];
  for (const k of asked) {
    const group = k.group ?? GATEWAY_GROUP;
    if (group === GATEWAY_GROUP && served.includes(k.kind)) {
      if (!supported.some((s) => s.kind === k.kind)) supported.push({ group, kind: k.kind });
    } else refused.push(group === GATEWAY_GROUP ? k.kind : `${group}/${k.kind}`);
  }
  if (refused.length === 0) return { supported };
  const offer = served.length > 0 ? `${l.protocol} listeners take ${served.join(', ')}` : `Switchyard serves no route kind on protocol ${l.protocol}`;
  return { supported, problem: { reason: 'InvalidRouteKinds', message: `allowedRoutes.kinds: ${refused.join(', ')} ${refused.length > 1 ? 'are' : 'is'} not supported; ${offer}` } };
}

/** tls.certificateRefs of an HTTPS listener, each resolved and checked as Envoy would load it. */
function listenerCertificates(
  gw: Gateway,
  l: GatewayListener,
  inputs: Inputs,
  secrets: SecretLookup,
  certificates: Map<string, CertificateIR>,
): { names: string[]; problems: Problem[] } {
  const names: string[] = [];
  const problems: Problem[] = [];
  const refs = l.tls?.certificateRefs ?? [];
  if (refs.length === 0) problems.push({ reason: 'InvalidCertificateRef', message: 'HTTPS listeners need tls.certificateRefs' });
  refs.forEach((ref, i) => {
    const field = `tls.certificateRefs[${i}]`;
    const ns = ref.namespace ?? gw.metadata.namespace;
    const group = ref.group ?? '';
    const kind = ref.kind ?? 'Secret';
    if (group !== '' || kind !== 'Secret') {
      problems.push({ reason: 'InvalidCertificateRef', message: `${field}: group "${group}" kind "${kind}" is not supported; reference a core Secret (group "", kind Secret)` });
      return;
    }
    if (!referencePermitted(inputs.referenceGrants, { group: GATEWAY_GROUP, kind: 'Gateway', namespace: gw.metadata.namespace }, { group: '', kind: 'Secret', namespace: ns, name: ref.name })) {
      problems.push({ reason: 'RefNotPermitted', message: `${field}: Secret ${ns}/${ref.name} is in another namespace and no ReferenceGrant in ${ns} allows it` });
      return;
    }
    const secret = secrets.get(secretKey(ns, ref.name));
    if (!secret) {
      problems.push({ reason: 'InvalidCertificateRef', message: `${field}: Secret ${ns}/${ref.name} not found` });
      return;
    }
    const check = checkServingCertificate(secret);
    if (!check.ok) {
      problems.push({ reason: 'InvalidCertificateRef', message: `${field}: ${check.message}` });
      return;
    }
    const name = certificateName(ns, ref.name);
    certificates.set(name, { name, ...check.certificate });
    names.push(name);
  });
  return { names, problems };
}

export function translateGateways(inputs: Inputs, secretLookup?: SecretLookup): TranslatedGateways {
  const ours = new Set<string>();
  const classStatuses: GatewayClassStatus[] = [];
  for (const gc of inputs.gatewayClasses) {
    if (gc.spec.controllerName !== CONTROLLER_NAME) continue;
    ours.add(gc.metadata.name);
    classStatuses.push({
      kind: 'GatewayClass', namespace: '', name: gc.metadata.name,
      conditions: [condition('Accepted', true, 'Accepted', `handled by ${CONTROLLER_NAME}`, gc.metadata.generation)],
      supportedFeatures: [...SUPPORTED_FEATURES],
    });
  }

  const secrets = secretLookup ?? new Map<string, Secret>(inputs.secrets.map((s) => [secretKey(s.metadata.namespace, s.metadata.name), s]));
  const certificates = new Map<string, CertificateIR>();
  const events: WarningEvent[] = [];
  const gateways = new Map<string, { gateway: Gateway; listeners: ServedListener[]; accessLog?: AccessLogFormat }>();
  // Each Gateway is its own data plane (Gateway API), so two Gateways on one port do not
  // conflict; an Envoy that serves every Gateway leaves the younger one's listener out
  // (src/envoy/data-planes.ts), which is no fault of the Gateway.

  const sorted = [...inputs.gateways].sort(byAgeThenName);
  for (const gw of sorted) {
    if (!ours.has(gw.spec.gatewayClassName)) continue;
    const gen = gw.metadata.generation;
    const key = `${gw.metadata.namespace}/${gw.metadata.name}`;
    const listeners: ServedListener[] = [];
    const seen = new Map<number, { protocol: string; hostnames: Set<string> }>();
    for (const l of gw.spec.listeners) {
      const kinds = routeKinds(l);
      let invalid: Problem | undefined;
      let certs: string[] = [];
      const refProblems: Problem[] = [];
      if (!isServedProtocol(l.protocol)) {
        invalid = { reason: 'UnsupportedProtocol', message: `protocol ${l.protocol} is not supported; Switchyard serves HTTP and HTTPS listeners` };
      } else {
        const onPort = seen.get(l.port);
        const hostname = l.hostname ?? '';
        if (onPort && onPort.protocol !== l.protocol) {
          invalid = { reason: 'ProtocolConflict', message: `port ${l.port} is used by another listener with protocol ${onPort.protocol}` };
        } else if (onPort?.hostnames.has(hostname)) {
          invalid = { reason: 'HostnameConflict', message: `another listener on port ${l.port} has hostname "${hostname || '*'}"` };
        } else if (l.protocol === 'HTTPS' && l.tls?.mode === 'Passthrough') {
          // The CRD refuses it (CEL); file mode gets the same answer here.
          invalid = { reason: 'UnsupportedValue', message: 'tls.mode Passthrough is not supported on HTTPS listeners; use Terminate' };
        }
        if (l.protocol === 'HTTPS') {
          const resolved = listenerCertificates(gw, l, inputs, secrets, certificates);
          certs = resolved.names;
          refProblems.push(...resolved.problems);
        }
      }
      if (kinds.problem) refProblems.push(kinds.problem);
      const conflicted = invalid !== undefined && CONFLICTS.includes(invalid.reason);
      const notServed = invalid?.message ?? (l.protocol === 'HTTPS' && certs.length === 0 ? `no usable certificate: ${refProblems.map((p) => p.message).join('; ')}` : undefined);
      const conditions: Condition[] = [
        condition('Accepted', !invalid, invalid ? invalid.reason : 'Accepted', invalid ? invalid.message : 'listener is valid', gen),
        condition('Conflicted', conflicted, conflicted && invalid ? invalid.reason : 'NoConflicts', conflicted && invalid ? invalid.message : 'no conflicts', gen),
        refProblems.length === 0
          ? condition('ResolvedRefs', true, 'ResolvedRefs', 'all references are resolved', gen)
          : condition('ResolvedRefs', false, refProblems[0]?.reason ?? 'InvalidCertificateRef', refProblems.map((p) => p.message).join('; '), gen),
        condition('Programmed', false, notServed ? 'Invalid' : 'Pending', notServed ? `this listener is not served: ${notServed}` : 'waiting for a connected Envoy to acknowledge the configuration', gen),
      ];
      for (const p of refProblems) events.push({ object: { kind: 'Gateway', namespace: gw.metadata.namespace, name: gw.metadata.name }, reason: p.reason, message: `listener ${l.name}: ${p.message}` });
      if (invalid?.reason === 'UnsupportedProtocol') events.push({ object: { kind: 'Gateway', namespace: gw.metadata.namespace, name: gw.metadata.name }, reason: invalid.reason, message: `listener ${l.name}: ${invalid.message}` });
      if (!invalid) {
        const entry = seen.get(l.port) ?? { protocol: l.protocol, hostnames: new Set<string>() };
        entry.hostnames.add(l.hostname ?? '');
        seen.set(l.port, entry);
      }
      listeners.push({
        gateway: gw,
        spec: l,
        envoyListener: envoyListenerName(gw, l.port),
        certificates: notServed ? [] : certs,
        supportedKinds: kinds.supported,
        attachedRoutes: 0,
        ...(notServed ? { notServed } : {}),
        conditions,
      });
    }
    const accessLog = gatewayAccessLog(gw);
    if ('error' in accessLog) events.push({ object: { kind: 'Gateway', namespace: gw.metadata.namespace, name: gw.metadata.name }, reason: 'InvalidAnnotation', message: accessLog.error });
    gateways.set(key, { gateway: gw, listeners, ...('format' in accessLog && accessLog.format !== undefined ? { accessLog: accessLog.format } : {}) });
  }
  return { classStatuses, gateways, certificates: [...certificates.values()], events };
}

/**
 * The Gateway's access-log annotation: a format, none (the command's default), or an error naming
 * the field and the fix; with an error the listeners keep the default and keep serving.
 */
export function gatewayAccessLog(gw: Gateway): { format?: AccessLogFormat } | { error: string } {
  const asked = gw.metadata.annotations?.[ACCESS_LOG_ANNOTATION];
  if (asked === undefined) return {};
  const format = ACCESS_LOG_FORMATS.find((f) => f === asked.trim());
  if (format !== undefined) return { format };
  return { error: `metadata.annotations["${ACCESS_LOG_ANNOTATION}"] is "${asked}"; use one of ${ACCESS_LOG_FORMATS.join(', ')} (the listeners keep the default access log meanwhile)` };
}

export function isServed(l: ServedListener): boolean {
  return l.notServed === undefined;
}

/** Whether the listener takes routes of this kind (allowedRoutes.kinds, narrowed to what it serves). */
export function listenerTakesKind(l: ServedListener, kind: string): boolean {
  return l.supportedKinds.some((k) => k.group === GATEWAY_GROUP && k.kind === kind);
}

/** `annotationProblem`: an annotation that could not be used, said in Accepted (still True: the Gateway serves). */
export function gatewayStatus(gw: Gateway, listeners: ServedListener[], annotationProblem?: string): GatewayStatus {
  const gen = gw.metadata.generation;
  const served = listeners.filter(isServed);
  const unserved = listeners.filter((l) => !isServed(l));
  const listenerStatuses: ListenerStatus[] = listeners.map((l) => ({
    name: l.spec.name,
    attachedRoutes: l.attachedRoutes,
    supportedKinds: l.supportedKinds.map((k) => ({ ...k })),
    conditions: l.conditions,
  }));
  const names = unserved.map((l) => l.spec.name).join(', ');
  const why = `${unserved.length > 1 ? 'listeners' : 'listener'} ${names} ${unserved.length > 1 ? 'are' : 'is'} not served (each listener's conditions say why)`;
  // The Gateway is ours and taken in charge even when some listeners are not: each listener's
  // own conditions say why it is not served, and the others keep serving (Gateway API allows
  // Accepted=True with reason ListenersNotValid).
  const note = annotationProblem === undefined ? '' : `; ${annotationProblem}`;
  const accepted = unserved.length === 0
    ? condition('Accepted', true, 'Accepted', `Gateway is valid${note}`, gen)
    : condition('Accepted', true, 'ListenersNotValid', `${served.length > 0 ? `${why}; the other listeners are served` : `${why}; no listener of this Gateway is served`}${note}`, gen);
  return {
    kind: 'Gateway',
    namespace: gw.metadata.namespace,
    name: gw.metadata.name,
    ...(gw.metadata.uid !== undefined ? { uid: gw.metadata.uid } : {}),
    listeners: listenerStatuses,
    conditions: [
      accepted,
      served.length > 0
        ? condition('Programmed', false, 'Pending', 'waiting for a connected Envoy to acknowledge the configuration', gen)
        : condition('Programmed', false, 'Invalid', `nothing is served for this Gateway: ${why}`, gen),
    ],
  };
}

function byAgeThenName(a: Gateway, b: Gateway): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = `${a.metadata.namespace}/${a.metadata.name}`;
  const kb = `${b.metadata.namespace}/${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
