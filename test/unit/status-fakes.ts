import type { CoreV1Event } from '@kubernetes/client-node';
import { pino } from 'pino';
import { refKey, type ObjectRef } from '../../src/status/kinds.js';
import { KubeApiError, type EventClient, type KubeObject, type LeaseClient, type LeaseRecord, type StatusClient } from '../../src/status/kube-api.js';

/**
 * In-memory stand-ins for the API server with its optimistic concurrency: every write bumps
 * resourceVersion, a write naming an older one gets 409, a missing object 404.
 */

export const quietLogger = pino({ level: 'silent' });

function copy<T>(v: T): T {
  return structuredClone(v);
}

export class FakeObjects implements StatusClient {
  readonly objects = new Map<string, KubeObject>();
  private rv = 100;
  gets = 0;
  puts = 0;
  /** Runs before a PUT is applied; may change the stored object (a concurrent writer) or throw. */
  beforePut?: (ref: ObjectRef) => void;

  put(ref: ObjectRef, object: Omit<KubeObject, 'metadata'> & { metadata?: Partial<KubeObject['metadata']> }): KubeObject {
    const stored: KubeObject = {
      ...copy(object),
      metadata: { uid: `uid-${ref.name}`, generation: 1, ...copy(object.metadata ?? {}), name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}), resourceVersion: String(++this.rv) },
    };
    this.objects.set(refKey(ref), stored);
    return copy(stored);
  }

  /** Another client changes the status (bumps resourceVersion). */
  mutateStatus(ref: ObjectRef, change: (status: Record<string, unknown>) => void): void {
    const o = this.objects.get(refKey(ref));
    if (!o) throw new Error(`no ${refKey(ref)}`);
    const status = o.status ?? {};
    change(status);
    o.status = status;
    o.metadata.resourceVersion = String(++this.rv);
  }

  read(ref: ObjectRef): KubeObject | undefined {
    const o = this.objects.get(refKey(ref));
    return o ? copy(o) : undefined;
  }

  async get(ref: ObjectRef): Promise<KubeObject | undefined> {
    this.gets++;
    await Promise.resolve();
    return this.read(ref);
  }

  async replaceStatus(ref: ObjectRef, object: KubeObject): Promise<KubeObject> {
    await Promise.resolve();
    this.beforePut?.(ref);
    const stored = this.objects.get(refKey(ref));
    if (!stored) throw new KubeApiError(404, `${refKey(ref)} not found`);
    if (object.metadata.resourceVersion !== stored.metadata.resourceVersion) throw new KubeApiError(409, `${refKey(ref)}: the object has been modified`);
    this.puts++;
    stored.status = copy(object.status ?? {});
    stored.metadata.resourceVersion = String(++this.rv);
    return copy(stored);
  }
}

export class FakeLeases implements LeaseClient {
  private readonly leases = new Map<string, LeaseRecord>();
  private rv = 1;
  /** When set, every call fails as an unreachable API server would. */
  down = false;

  record(namespace: string, name: string): LeaseRecord | undefined {
    const l = this.leases.get(`${namespace}/${name}`);
    return l ? { ...l } : undefined;
  }

  async get(namespace: string, name: string): Promise<LeaseRecord | undefined> {
    await Promise.resolve();
    if (this.down) throw new KubeApiError(0, 'connect ECONNREFUSED');
    return this.record(namespace, name);
  }

  async create(namespace: string, name: string, spec: Omit<LeaseRecord, 'resourceVersion'>): Promise<LeaseRecord> {
    await Promise.resolve();
    if (this.down) throw new KubeApiError(0, 'connect ECONNREFUSED');
    const key = `${namespace}/${name}`;
    if (this.leases.has(key)) throw new KubeApiError(409, `lease ${key} already exists`);
    const l = { ...spec, resourceVersion: String(++this.rv) };
    this.leases.set(key, l);
    return { ...l };
  }

  async replace(namespace: string, name: string, resourceVersion: string, spec: Omit<LeaseRecord, 'resourceVersion'>): Promise<LeaseRecord> {
    await Promise.resolve();
    if (this.down) throw new KubeApiError(0, 'connect ECONNREFUSED');
    const key = `${namespace}/${name}`;
    const cur = this.leases.get(key);
    if (!cur) throw new KubeApiError(404, `lease ${key} not found`);
    if (cur.resourceVersion !== resourceVersion) throw new KubeApiError(409, `lease ${key} was modified`);
    const l = { ...spec, resourceVersion: String(++this.rv) };
    this.leases.set(key, l);
    return { ...l };
  }
}

export class FakeEvents implements EventClient {
  readonly events = new Map<string, CoreV1Event>();
  creates = 0;
  replaces = 0;
  /** Creates that fail as an overloaded API server would. */
  failCreates = 0;

  async create(event: CoreV1Event): Promise<CoreV1Event> {
    await Promise.resolve();
    if (this.failCreates > 0) {
      this.failCreates--;
      throw new KubeApiError(429, 'too many requests');
    }
    const key = `${event.metadata.namespace ?? ''}/${event.metadata.name ?? ''}`;
    if (this.events.has(key)) throw new KubeApiError(409, `event ${key} already exists`);
    this.creates++;
    this.events.set(key, copy(event));
    return copy(event);
  }

  async get(namespace: string, name: string): Promise<CoreV1Event | undefined> {
    await Promise.resolve();
    const e = this.events.get(`${namespace}/${name}`);
    return e ? copy(e) : undefined;
  }

  async replace(event: CoreV1Event): Promise<CoreV1Event> {
    await Promise.resolve();
    this.replaces++;
    this.events.set(`${event.metadata.namespace ?? ''}/${event.metadata.name ?? ''}`, copy(event));
    return copy(event);
  }
}
