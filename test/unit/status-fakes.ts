import type { CoreV1Event } from '@kubernetes/client-node';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { refKey, type ObjectRef } from '../../src/status/kinds.js';
import { KubeApiError, type EventClient, type KubeObject, type LeaseClient, type LeaseRecord, type LeaseSpec, type StatusClient } from '../../src/status/kube-api.js';

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

/** One call a replica made to the Lease API, with performance.now() as it began and as it returned. */
export interface LeaseCall {
  op: 'get' | 'create' | 'replace';
  startedAt: number;
  endedAt: number;
  /** The Lease as the call returned it (undefined: none, or the call failed). */
  result?: LeaseRecord;
  /** The holder a create or replace asked for. */
  holder?: string;
  ok: boolean;
  /**
   * performance.now() in a setImmediate queued as the call returned: after the caller's
   * microtasks that followed the call (all of a LeaderElector's try but its next timer), so what
   * the caller timed right after the call lies between endedAt and settledAt.
   */
  settledAt?: number;
}

/**
 * One replica's client of a Lease API (a FakeLeases, or a real one) that records its calls in
 * order, so a test can judge a replica by its tries (which try took the Lease, what it had seen
 * before) instead of by the wall clock, which on a loaded machine also counts the time the
 * process waited for a core. `startedAt` is taken as the caller calls, `endedAt` before it resumes.
 */
export class RecordingLeases implements LeaseClient {
  readonly calls: LeaseCall[] = [];
  constructor(private readonly leases: LeaseClient) {}

  get(namespace: string, name: string): Promise<LeaseRecord | undefined> {
    return this.recorded('get', undefined, () => this.leases.get(namespace, name));
  }

  create(namespace: string, name: string, spec: LeaseSpec): Promise<LeaseRecord> {
    return this.recorded('create', spec.holderIdentity, () => this.leases.create(namespace, name, spec));
  }

  replace(namespace: string, name: string, resourceVersion: string, spec: LeaseSpec): Promise<LeaseRecord> {
    return this.recorded('replace', spec.holderIdentity, () => this.leases.replace(namespace, name, resourceVersion, spec));
  }

  private async recorded<T extends LeaseRecord | undefined>(op: LeaseCall['op'], holder: string | undefined, call: () => Promise<T>): Promise<T> {
    const startedAt = performance.now();
    const entry = (ok: boolean, result?: LeaseRecord): LeaseCall => ({
      op, startedAt, endedAt: performance.now(), ok, ...(result ? { result } : {}), ...(holder !== undefined ? { holder } : {}),
    });
    const push = (made: LeaseCall): void => {
      this.calls.push(made);
      setImmediate(() => {
        made.settledAt = performance.now();
      });
    };
    try {
      const result = await call();
      push(entry(true, result));
      return result;
    } catch (err) {
      push(entry(false));
      throw err;
    }
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
