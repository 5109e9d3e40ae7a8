import type { Condition } from '../api/conditions.js';
import type { ParentReference } from '../api/httproute.js';

export interface MemberStatus {
  name: string;
  provider: string;
  usable: boolean;
  /** Why the member is out, e.g. SecretNotFound; absent when usable. */
  reason?: string;
  message?: string;
  /** Attempts Envoy made to it over the last load window (LRS), all Envoys together; rounded. */
  requests?: number;
  /** Of those, the ones that failed (5xx, failed connections). */
  errors?: number;
}

export interface PriorityStatus {
  /** Index in spec (multipool.priorities[i] / static.priorities[i]). */
  priority: number;
  /** Envoy priority level this pool is served at; absent when none of its members is usable. */
  envoyPriority?: number;
  members: MemberStatus[];
}

export interface BackendStatus {
  kind: 'Backend';
  namespace: string;
  name: string;
  /** metadata.uid: a Backend created again under its name gets its status written (see HTTPRouteStatus.uid). */
  uid?: string;
  conditions: Condition[];
  priorities: PriorityStatus[];
  /** Envoy priority levels in use (pools with at least one usable member). */
  servedPriorities: number;
  usableMembers: number;
  totalMembers: number;
}

export interface ListenerStatus {
  name: string;
  attachedRoutes: number;
  supportedKinds: { group: string; kind: string }[];
  conditions: Condition[];
}

export interface GatewayStatus {
  kind: 'Gateway';
  namespace: string;
  name: string;
  /** metadata.uid: a Gateway created again under its name gets its status written (see HTTPRouteStatus.uid). */
  uid?: string;
  conditions: Condition[];
  listeners: ListenerStatus[];
  /**
   * status.addresses, set by the infrastructure that runs the Gateway's data plane (never by
   * translation). Absent: not ours to say, the object's own are kept; empty: none (yet).
   */
  addresses?: GatewayAddress[];
}

export interface GatewayAddress {
  type: 'IPAddress' | 'Hostname';
  value: string;
}

export interface GatewayClassStatus {
  kind: 'GatewayClass';
  namespace: string;
  name: string;
  conditions: Condition[];
  /** Gateway API feature names (pkg/features), sorted ascending. */
  supportedFeatures: string[];
}

export interface RouteParentStatus {
  parentRef: ParentReference;
  controllerName: string;
  conditions: Condition[];
}

export interface HTTPRouteStatus {
  kind: 'HTTPRoute';
  namespace: string;
  name: string;
  /**
   * metadata.uid of the route translated: a route deleted and created again under its name (the
   * conformance suite does so within milliseconds) translates to the same parents, yet has no
   * status; a new uid makes the status writer write it again.
   */
  uid?: string;
  parents: RouteParentStatus[];
}

/** Status for an object Switchyard could not read at all (schema errors) and serves nothing for. */
export interface InvalidStatus {
  kind: string;
  namespace: string;
  name: string;
  conditions: Condition[];
}

export type ObjectStatus = BackendStatus | GatewayStatus | GatewayClassStatus | HTTPRouteStatus | InvalidStatus;

/** Warning events for unusable references (emitted by the Kubernetes status writer, logged in file mode). */
export interface WarningEvent {
  object: { kind: string; namespace: string; name: string };
  reason: string;
  message: string;
}
