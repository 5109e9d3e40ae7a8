import { condition, type Condition } from '../api/conditions.js';
import { CONTROLLER_NAME, GATEWAY_GROUP, type Gateway, type GatewayListener } from '../api/gateway.js';
import { secretValue, type Secret } from '../api/secret.js';
import type { CertificateIR } from '../ir/model.js';
import type { Inputs } from './inputs.js';
import { referencePermitted } from './references.js';
import type { GatewayClassStatus, GatewayStatus, ListenerStatus, WarningEvent } from './status.js';

/** A Gateway listener Switchyard serves. */
export interface ServedListener {
  gateway: Gateway;
  spec: GatewayListener;
  /** Envoy listener this Gateway listener lands on: one per (Gateway, port). */
  envoyListener: string;
  certificates: string[];
  attachedRoutes: number;
  conditions: Condition[];
}

export interface TranslatedGateways {
  classStatuses: GatewayClassStatus[];
  /** Gateways of our classes, keyed "ns/name". */
  gateways: Map<string, { gateway: Gateway; listeners: ServedListener[] }>;
  certificates: CertificateIR[];
  events: WarningEvent[];
}

export function envoyListenerName(gateway: Gateway, port: number): string {
  return `${gateway.metadata.namespace}/${gateway.metadata.name}/${port}`;
}

export function certificateName(namespace: string, name: string): string {
  return `certificate/${namespace}/${name}`;
}

export function translateGateways(inputs: Inputs): TranslatedGateways {
  const ours = new Set<string>();
  const classStatuses: GatewayClassStatus[] = [];
  for (const gc of inputs.gatewayClasses) {
    if (gc.spec.controllerName !== CONTROLLER_NAME) continue;
    ours.add(gc.metadata.name);
    classStatuses.push({
      kind: 'GatewayClass', namespace: '', name: gc.metadata.name,
      conditions: [condition('Accepted', true, 'Accepted', `handled by ${CONTROLLER_NAME}`, gc.metadata.generation)],
    });
  }

  const secrets = new Map<string, Secret>(inputs.secrets.map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s]));
  const certificates = new Map<string, CertificateIR>();
  const events: WarningEvent[] = [];
  const gateways = new Map<string, { gateway: Gateway; listeners: ServedListener[] }>();
  /** port → owning Gateway: two Gateways cannot share an Envoy port. */
  const portOwner = new Map<number, string>();

  const sorted = [...inputs.gateways].sort(byAgeThenName);
  for (const gw of sorted) {
    if (!ours.has(gw.spec.gatewayClassName)) continue;
    const gen = gw.metadata.generation;
    const key = `${gw.metadata.namespace}/${gw.metadata.name}`;
    const listeners: ServedListener[] = [];
    const seen = new Map<number, { protocol: string; hostnames: Set<string> }>();
    for (const l of gw.spec.listeners) {
      const conditions: Condition[] = [];
      const owner = portOwner.get(l.port);
      const onPort = seen.get(l.port);
      const hostname = l.hostname ?? '';
      let conflict: { reason: string; message: string } | undefined;
      if (owner !== undefined && owner !== key) {
        conflict = { reason: 'PortUnavailable', message: `port ${l.port} is already used by Gateway ${owner}` };
      } else if (onPort && onPort.protocol !== l.protocol) {
        conflict = { reason: 'ProtocolConflict', message: `port ${l.port} is used by another listener with protocol ${onPort.protocol}` };
      } else if (onPort?.hostnames.has(hostname)) {
        conflict = { reason: 'HostnameConflict', message: `another listener on port ${l.port} has hostname "${hostname || '*'}"` };
      }
      const certs: string[] = [];
      let refProblem: { reason: string; message: string } | undefined;
      if (l.protocol === 'HTTPS') {
        if (l.tls?.mode === 'Passthrough') {
          refProblem = { reason: 'UnsupportedValue', message: 'tls.mode Passthrough is not supported on HTTPS listeners; use Terminate' };
        }
        const refs = l.tls?.certificateRefs ?? [];
        if (refs.length === 0 && !refProblem) refProblem = { reason: 'InvalidCertificateRef', message: 'HTTPS listeners need tls.certificateRefs' };
        for (const ref of refs) {
          const ns = ref.namespace ?? gw.metadata.namespace;
          if ((ref.group ?? '') !== '' || (ref.kind ?? 'Secret') !== 'Secret') {
            refProblem = { reason: 'InvalidCertificateRef', message: `certificateRef ${ref.name}: only core Secrets are supported` };
            continue;
          }
          if (!referencePermitted(inputs.referenceGrants, { group: GATEWAY_GROUP, kind: 'Gateway', namespace: gw.metadata.namespace }, { group: '', kind: 'Secret', namespace: ns, name: ref.name })) {
            refProblem = { reason: 'RefNotPermitted', message: `Secret ${ns}/${ref.name} is in another namespace and no ReferenceGrant allows it` };
            continue;
          }
          const secret = secrets.get(`${ns}/${ref.name}`);
          const crt = secret ? secretValue(secret, 'tls.crt') : undefined;
          const keyPem = secret ? secretValue(secret, 'tls.key') : undefined;
          if (!crt || !keyPem) {
            refProblem = { reason: 'InvalidCertificateRef', message: secret ? `Secret ${ns}/${ref.name} lacks tls.crt or tls.key` : `Secret ${ns}/${ref.name} not found` };
            continue;
          }
          const name = certificateName(ns, ref.name);
          certificates.set(name, { name, certificateChain: crt, privateKey: keyPem });
          certs.push(name);
        }
      }
      const accepted = !conflict && !(l.protocol === 'HTTPS' && certs.length === 0);
      conditions.push(condition('Accepted', !conflict, conflict ? conflict.reason : 'Accepted', conflict ? conflict.message : 'listener is valid', gen));
      conditions.push(condition('Conflicted', Boolean(conflict), conflict ? conflict.reason : 'NoConflicts', conflict ? conflict.message : 'no conflicts', gen));
      conditions.push(condition('ResolvedRefs', !refProblem, refProblem ? refProblem.reason : 'ResolvedRefs', refProblem ? refProblem.message : 'all references are resolved', gen));
      conditions.push(condition('Programmed', false, accepted ? 'Pending' : 'Invalid', accepted ? 'waiting for a connected Envoy to acknowledge the configuration' : 'this listener is not served', gen));
      if (refProblem) events.push({ object: { kind: 'Gateway', namespace: gw.metadata.namespace, name: gw.metadata.name }, reason: refProblem.reason, message: `listener ${l.name}: ${refProblem.message}` });
      if (accepted) {
        portOwner.set(l.port, key);
        const entry = onPort ?? { protocol: l.protocol, hostnames: new Set<string>() };
        entry.hostnames.add(hostname);
        seen.set(l.port, entry);
      }
      listeners.push({ gateway: gw, spec: l, envoyListener: envoyListenerName(gw, l.port), certificates: accepted ? certs : [], attachedRoutes: 0, conditions });
    }
    gateways.set(key, { gateway: gw, listeners });
  }
  return { classStatuses, gateways, certificates: [...certificates.values()], events };
}

export function isServed(l: ServedListener): boolean {
  return l.conditions.find((c) => c.type === 'Accepted')?.status === 'True' && (l.spec.protocol === 'HTTP' || l.certificates.length > 0);
}

export function gatewayStatus(gw: Gateway, listeners: ServedListener[]): GatewayStatus {
  const gen = gw.metadata.generation;
  const served = listeners.filter(isServed);
  const listenerStatuses: ListenerStatus[] = listeners.map((l) => ({
    name: l.spec.name,
    attachedRoutes: l.attachedRoutes,
    supportedKinds: [{ group: GATEWAY_GROUP, kind: 'HTTPRoute' }],
    conditions: l.conditions,
  }));
  return {
    kind: 'Gateway',
    namespace: gw.metadata.namespace,
    name: gw.metadata.name,
    listeners: listenerStatuses,
    conditions: [
      condition('Accepted', served.length > 0, served.length > 0 ? 'Accepted' : 'ListenersNotValid', served.length > 0 ? 'Gateway is valid' : 'no listener of this Gateway can be served', gen),
      condition('Programmed', false, served.length > 0 ? 'Pending' : 'Invalid', served.length > 0 ? 'waiting for a connected Envoy to acknowledge the configuration' : 'nothing is served for this Gateway', gen),
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
