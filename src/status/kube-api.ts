import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  V1MicroTime,
  type CoreV1Event,
  type KubeConfig,
  type V1Lease,
} from '@kubernetes/client-node';
import { STATUS_KINDS, type ObjectRef } from './kinds.js';

/**
 * The Kubernetes API calls the status package makes, behind three small interfaces so the
 * writer, the event recorder and the leader elector are tested against fakes and run against
 * the real API server through `kubeStatusApi`.
 */

/** An object as read from the API server, reduced to what status writing looks at. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
  } & Record<string, unknown>;
  spec?: unknown;
  status?: Record<string, unknown>;
}

/** An API error with the HTTP status the server answered (0 when no answer came). */
export class KubeApiError extends Error {
  override name = 'KubeApiError';
  constructor(readonly status: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export function isConflict(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 409;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof KubeApiError && err.status === 404;
}

export interface StatusClient {
  /** The object with its status; undefined when it does not exist. */
  get(ref: ObjectRef): Promise<KubeObject | undefined>;
  /** PUT of the status subresource; `object.metadata.resourceVersion` makes it conditional (409 on conflict). */
  replaceStatus(ref: ObjectRef, object: KubeObject): Promise<KubeObject>;
}

export interface LeaseRecord {
  resourceVersion: string;
  holderIdentity: string;
  leaseDurationSeconds: number;
  leaseTransitions: number;
  /** RFC 3339 with microseconds, as the API server keeps it. */
  acquireTime?: string;
  renewTime?: string;
}

export type LeaseSpec = Omit<LeaseRecord, 'resourceVersion'>;

export interface LeaseClient {
  get(namespace: string, name: string): Promise<LeaseRecord | undefined>;
  /** 409 when someone created it first. */
  create(namespace: string, name: string, spec: LeaseSpec): Promise<LeaseRecord>;
  /** Conditional on `resourceVersion` (409 on conflict). */
  replace(namespace: string, name: string, resourceVersion: string, spec: LeaseSpec): Promise<LeaseRecord>;
}

export interface EventClient {
  /** 409 when an event of that name exists. */
  create(event: CoreV1Event): Promise<CoreV1Event>;
  get(namespace: string, name: string): Promise<CoreV1Event | undefined>;
  replace(event: CoreV1Event): Promise<CoreV1Event>;
}

/** Turns whatever the client library threw into a KubeApiError that names the call. */
function apiError(what: string, err: unknown): KubeApiError {
  if (err instanceof KubeApiError) return err;
  if (err instanceof ApiException) {
    const code = typeof err.code === 'number' ? err.code : 0;
    return new KubeApiError(code, `${what}: ${code} ${serverMessage(err.body) ?? 'no message'}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new KubeApiError(0, `${what}: ${message}`, { cause: err });
}

/** The `message` of a metav1.Status body, which the client library hands over raw or parsed. */
function serverMessage(body: unknown): string | undefined {
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body.slice(0, 500);
    }
  }
  if (typeof parsed === 'object' && parsed !== null && 'message' in parsed && typeof parsed.message === 'string') return parsed.message;
  return undefined;
}

function isKubeObject(v: unknown): v is KubeObject {
  if (typeof v !== 'object' || v === null || !('metadata' in v)) return false;
  const meta = v.metadata;
  return typeof meta === 'object' && meta !== null && 'name' in meta && typeof meta.name === 'string';
}

function asKubeObject(what: string, v: unknown): KubeObject {
  if (!isKubeObject(v)) throw new KubeApiError(0, `${what}: the API server answered something that is not an object`);
  return v;
}

/** Lease times arrive as strings although the generated types say Date. */
function timeText(v: unknown): string | undefined {
  if (v instanceof Date) return v.toISOString();
  return typeof v === 'string' ? v : undefined;
}

function leaseRecord(lease: V1Lease): LeaseRecord {
  const spec = lease.spec ?? {};
  const record: LeaseRecord = {
    resourceVersion: lease.metadata?.resourceVersion ?? '',
    holderIdentity: spec.holderIdentity ?? '',
    leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
    leaseTransitions: spec.leaseTransitions ?? 0,
  };
  const acquired = timeText(spec.acquireTime);
  const renewed = timeText(spec.renewTime);
  if (acquired) record.acquireTime = acquired;
  if (renewed) record.renewTime = renewed;
  return record;
}

function leaseBody(namespace: string, name: string, spec: LeaseSpec, resourceVersion?: string): V1Lease {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) },
    spec: {
      holderIdentity: spec.holderIdentity,
      leaseDurationSeconds: spec.leaseDurationSeconds,
      leaseTransitions: spec.leaseTransitions,
      ...(spec.acquireTime ? { acquireTime: new V1MicroTime(spec.acquireTime) } : {}),
      ...(spec.renewTime ? { renewTime: new V1MicroTime(spec.renewTime) } : {}),
    },
  };
}

export interface KubeStatusApi {
  objects: StatusClient;
  leases: LeaseClient;
  events: EventClient;
}

/** The three clients on one kubeconfig. */
export function kubeStatusApi(kc: KubeConfig): KubeStatusApi {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const coordination = kc.makeApiClient(CoordinationV1Api);
  const core = kc.makeApiClient(CoreV1Api);

  const objects: StatusClient = {
    async get(ref) {
      const r = STATUS_KINDS[ref.kind];
      const what = `get ${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}`;
      try {
        const got: unknown = r.namespaced
          ? await custom.getNamespacedCustomObjectStatus({ group: r.group, version: r.version, plural: r.plural, namespace: ref.namespace, name: ref.name })
          : await custom.getClusterCustomObjectStatus({ group: r.group, version: r.version, plural: r.plural, name: ref.name });
        return asKubeObject(what, got);
      } catch (err) {
        const e = apiError(what, err);
        if (e.status === 404) return undefined;
        throw e;
      }
    },
    async replaceStatus(ref, object) {
      const r = STATUS_KINDS[ref.kind];
      const what = `update status of ${ref.kind} ${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}`;
      try {
        const got: unknown = r.namespaced
          ? await custom.replaceNamespacedCustomObjectStatus({ group: r.group, version: r.version, plural: r.plural, namespace: ref.namespace, name: ref.name, body: object })
          : await custom.replaceClusterCustomObjectStatus({ group: r.group, version: r.version, plural: r.plural, name: ref.name, body: object });
        return asKubeObject(what, got);
      } catch (err) {
        throw apiError(what, err);
      }
    },
  };

  const leases: LeaseClient = {
    async get(namespace, name) {
      try {
        return leaseRecord(await coordination.readNamespacedLease({ namespace, name }));
      } catch (err) {
        const e = apiError(`get Lease ${namespace}/${name}`, err);
        if (e.status === 404) return undefined;
        throw e;
      }
    },
    async create(namespace, name, spec) {
      try {
        return leaseRecord(await coordination.createNamespacedLease({ namespace, body: leaseBody(namespace, name, spec) }));
      } catch (err) {
        throw apiError(`create Lease ${namespace}/${name}`, err);
      }
    },
    async replace(namespace, name, resourceVersion, spec) {
      try {
        return leaseRecord(await coordination.replaceNamespacedLease({ namespace, name, body: leaseBody(namespace, name, spec, resourceVersion) }));
      } catch (err) {
        throw apiError(`update Lease ${namespace}/${name}`, err);
      }
    },
  };

  const events: EventClient = {
    async create(event) {
      const namespace = event.metadata.namespace ?? 'default';
      try {
        return await core.createNamespacedEvent({ namespace, body: event });
      } catch (err) {
        throw apiError(`create Event ${namespace}/${event.metadata.name ?? ''}`, err);
      }
    },
    async get(namespace, name) {
      try {
        return await core.readNamespacedEvent({ namespace, name });
      } catch (err) {
        const e = apiError(`get Event ${namespace}/${name}`, err);
        if (e.status === 404) return undefined;
        throw e;
      }
    },
    async replace(event) {
      const namespace = event.metadata.namespace ?? 'default';
      const name = event.metadata.name ?? '';
      try {
        return await core.replaceNamespacedEvent({ namespace, name, body: event });
      } catch (err) {
        throw apiError(`update Event ${namespace}/${name}`, err);
      }
    },
  };

  return { objects, leases, events };
}
