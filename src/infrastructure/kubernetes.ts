import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { JsonObject } from '../envoy/resources.js';
import type { IR } from '../ir/model.js';
import type { GatewayAddress } from '../translate/status.js';
import {
  DATA_PLANE_LABEL,
  GATEWAY_ANNOTATION,
  MANAGED_BY,
  dataPlaneObjects,
  gatewayKey,
  serviceAddresses,
  type DataPlaneSettings,
} from './data-plane-objects.js';

/**
 * The Kubernetes infrastructure provider: one Envoy data plane per Gateway of our classes
 * (data-plane-objects.ts), kept as translation says with server-side apply, deleted with its
 * Gateway; and the addresses its Services get, for Gateway status. A sibling of the status
 * writer: it acts on translation output, and only the leader writes (every replica watches the
 * Services, so a new leader reports addresses at once).
 */

/** The two calls it makes, which the Kubernetes provider's client has (structurally). */
export interface InfrastructureClient {
  request(req: { method?: 'GET' | 'PATCH' | 'DELETE'; path: string; query?: Record<string, string | number | boolean | undefined>; body?: unknown; contentType?: string; signal?: AbortSignal }): Promise<unknown>;
  watch(w: {
    path: string;
    query: Record<string, string | number | boolean | undefined>;
    signal: AbortSignal;
    onEvent(event: { type: string; object: Record<string, unknown> }): void;
    idleTimeoutMs: number;
  }): Promise<void>;
}

export type { GatewayAddress } from '../translate/status.js';

export interface KubernetesInfrastructureOptions {
  client: InfrastructureClient;
  settings: DataPlaneSettings;
  logger: Logger;
  /** Retry after a failed apply or watch, doubling up to maxMs. */
  backoff?: { initialMs: number; maxMs: number };
  /** While leading, compare with the API server this often (objects deleted by hand come back). */
  resyncMs?: number;
}

/** Field manager of every write: server-side apply owns exactly the fields we set, nothing else. */
export const FIELD_MANAGER = 'switchyard';

const KINDS = [
  { kind: 'ServiceAccount', path: '/api/v1', plural: 'serviceaccounts' },
  { kind: 'ConfigMap', path: '/api/v1', plural: 'configmaps' },
  { kind: 'Service', path: '/api/v1', plural: 'services' },
  { kind: 'Deployment', path: '/apis/apps/v1', plural: 'deployments' },
] as const;

const SELECTOR = `app.kubernetes.io/managed-by=${MANAGED_BY},${DATA_PLANE_LABEL}`;

function collection(kind: (typeof KINDS)[number], namespace: string): string {
  return `${kind.path}/namespaces/${namespace}/${kind.plural}`;
}

function rec(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function statusCode(err: unknown): number | undefined {
  const s = rec(err)['status'];
  return typeof s === 'number' ? s : undefined;
}

export class KubernetesInfrastructure {
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private leading = false;
  private ir: IR | undefined;
  /** Body hash of what was last applied, by "<Kind>/<name>": unchanged objects are not sent again. */
  private readonly applied = new Map<string, string>();
  private running: Promise<void> | undefined;
  private dirty = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs: number;
  private readonly addressesByGateway = new Map<string, GatewayAddress[]>();
  /** Gateway key by Service name, to drop addresses when a Service is deleted. */
  private readonly gatewayOfService = new Map<string, string>();
  private watching: Promise<void> | undefined;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly addressListeners: (() => void)[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;
  private readonly problems = new Map<string, string>();

  constructor(private readonly opts: KubernetesInfrastructureOptions) {
    this.log = opts.logger.child({ component: 'infrastructure' });
    this.backoff = opts.backoff ?? { initialMs: 500, maxMs: 30_000 };
    this.retryMs = this.backoff.initialMs;
  }

  /** Starts watching the data planes' Services (every replica). */
  start(): void {
    this.watching ??= this.watchServices();
  }

  /** The latest translation: what every data plane should be. */
  update(ir: IR): void {
    this.ir = ir;
    this.schedule();
  }

  setLeading(leading: boolean): void {
    this.leading = leading;
    clearInterval(this.resyncTimer);
    this.resyncTimer = undefined;
    if (leading && !this.abort.signal.aborted) {
      this.resyncTimer = setInterval(() => this.schedule(), this.opts.resyncMs ?? 60_000);
      this.resyncTimer.unref();
    }
    // A new term starts from what the API server has, not from what an earlier term applied.
    this.applied.clear();
    this.schedule();
  }

  /** Called when a Gateway's addresses change (a Service got its load balancer, was deleted...). */
  onAddresses(listener: () => void): void {
    this.addressListeners.push(listener);
  }

  private addressesChanged(): void {
    for (const l of this.addressListeners) l();
  }

  /** Addresses of each Gateway's Service, by "namespace/name". */
  addresses(): ReadonlyMap<string, GatewayAddress[]> {
    return this.addressesByGateway;
  }

  /** Resolves once no reconcile is running or pending (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  async stop(): Promise<void> {
    this.leading = false;
    clearTimeout(this.retryTimer);
    clearInterval(this.resyncTimer);
    this.abort.abort(new Error('infrastructure stopped'));
    await this.idle();
    await this.watching?.catch(() => undefined);
  }

  private schedule(): void {
    if (!this.leading || this.abort.signal.aborted) return;
    if (this.running) {
      this.dirty = true;
      return;
    }
    this.running = this.reconcile()
      .then((ok) => {
        if (ok) this.retryMs = this.backoff.initialMs;
        else this.retryLater();
      })
      .catch((err: unknown) => {
        this.log.error({ err: errorText(err) }, 'data plane reconcile failed; retrying');
        this.retryLater();
      })
      .finally(() => {
        this.running = undefined;
        if (this.dirty) {
          this.dirty = false;
          this.schedule();
        }
      });
  }

  private retryLater(): void {
    clearTimeout(this.retryTimer);
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, this.backoff.maxMs);
    this.retryTimer = setTimeout(() => {
      this.applied.clear();
      this.schedule();
    }, wait);
  }

  /**
   * One pass: list what exists, apply every wanted object that is new, changed or missing (deleted
   * by hand), delete every one of ours no Gateway wants. True when all went through.
   */
  private async reconcile(): Promise<boolean> {
    const ir = this.ir;
    if (!ir) return true;
    const s = this.opts.settings;
    const existing = new Set<string>();
    for (const kind of KINDS) {
      const names = await this.listNames(kind);
      if (names === undefined) return false;
      for (const n of names) existing.add(`${kind.kind}/${n}`);
    }
    const ports = new Map<string, number[]>();
    for (const l of ir.listeners) {
      const key = gatewayKey(l.gateway);
      ports.set(key, [...(ports.get(key) ?? []), l.port]);
    }
    const wanted = new Set<string>();
    let ok = true;
    for (const g of ir.gateways) {
      const objects = dataPlaneObjects(g, ports.get(gatewayKey(g)) ?? [], s);
      this.reportProblems(gatewayKey(g), objects.problems);
      // The ServiceAccount and ConfigMap first: the pods need both to start.
      for (const o of [objects.serviceAccount, objects.configMap, objects.deployment, ...(objects.service ? [objects.service] : [])]) {
        const id = `${String(o['kind'])}/${String(rec(o['metadata'])['name'])}`;
        wanted.add(id);
        if (!existing.has(id)) this.applied.delete(id);
        if (!this.leading) return true;
        ok = (await this.apply(o, id, gatewayKey(g))) && ok;
      }
    }
    const gateways = new Set(ir.gateways.map(gatewayKey));
    for (const key of this.problems.keys()) if (!gateways.has(key)) this.problems.delete(key);
    for (const id of existing) {
      if (!this.leading) return true;
      if (!wanted.has(id)) ok = (await this.deleteObject(id)) && ok;
    }
    return ok;
  }

  /** Each Gateway's problems are logged when they change, not on every pass. */
  private reportProblems(gateway: string, problems: string[]): void {
    const text = problems.join('\n');
    if ((this.problems.get(gateway) ?? '') === text) return;
    this.problems.set(gateway, text);
    for (const p of problems) this.log.warn({ gateway }, p);
  }

  private async listNames(kind: (typeof KINDS)[number]): Promise<string[] | undefined> {
    const ns = this.opts.settings.namespace;
    try {
      const list = rec(await this.opts.client.request({ path: collection(kind, ns), query: { labelSelector: SELECTOR }, signal: this.abort.signal }));
      const items = Array.isArray(list['items']) ? list['items'] : [];
      return items.map((i) => rec(rec(i)['metadata'])['name']).filter((n): n is string => typeof n === 'string' && n !== '');
    } catch (err) {
      if (!this.abort.signal.aborted) this.log.error({ err: errorText(err) }, `cannot list the ${kind.plural} of data planes in ${ns}; retrying`);
      return undefined;
    }
  }

  private async apply(object: JsonObject, id: string, gateway: string): Promise<boolean> {
    const body = JSON.stringify(object);
    const hash = createHash('sha256').update(body).digest('hex');
    if (this.applied.get(id) === hash) return true;
    const kind = KINDS.find((k) => k.kind === object['kind']);
    if (!kind) throw new Error(`infrastructure: no API path for kind ${String(object['kind'])}`);
    const name = String(rec(object['metadata'])['name']);
    try {
      // force: take over the fields we set even if another manager touched them; every field we
      // do not set (a user's annotation or label, another container's fields) stays theirs.
      await this.opts.client.request({
        method: 'PATCH',
        path: `${collection(kind, this.opts.settings.namespace)}/${name}`,
        query: { fieldManager: FIELD_MANAGER, force: true },
        body: object,
        contentType: 'application/apply-patch+yaml',
        signal: this.abort.signal,
      });
      this.applied.set(id, hash);
      this.log.info({ gateway, object: id }, 'data plane object applied');
      return true;
    } catch (err) {
      this.applied.delete(id);
      if (this.abort.signal.aborted) return true;
      this.log.error({ gateway, object: id, err: errorText(err) }, `cannot apply ${kind.kind} ${this.opts.settings.namespace}/${name} for Gateway ${gateway}; retrying`);
      return false;
    }
  }

  private async deleteObject(id: string): Promise<boolean> {
    const [kindName = '', name = ''] = id.split('/');
    const kind = KINDS.find((k) => k.kind === kindName);
    if (!kind) return true;
    const ns = this.opts.settings.namespace;
    this.applied.delete(id);
    try {
      await this.opts.client.request({ method: 'DELETE', path: `${collection(kind, ns)}/${name}`, query: { propagationPolicy: 'Background' }, signal: this.abort.signal });
      this.log.info({ object: id }, 'data plane object deleted: its Gateway is gone');
      return true;
    } catch (err) {
      if (statusCode(err) === 404 || this.abort.signal.aborted) return true;
      this.log.error({ object: id, err: errorText(err) }, `cannot delete ${kind.kind} ${ns}/${name}; retrying`);
      return false;
    }
  }

  /** List, then watch from the list's version; on any failure, start over after a back-off. */
  private async watchServices(): Promise<void> {
    const path = collection(KINDS[2], this.opts.settings.namespace);
    let wait = this.backoff.initialMs;
    while (!this.abort.signal.aborted) {
      try {
        const list = rec(await this.opts.client.request({ path, query: { labelSelector: SELECTOR }, signal: this.abort.signal }));
        const items = Array.isArray(list['items']) ? list['items'] : [];
        const before = JSON.stringify([...this.addressesByGateway]);
        this.addressesByGateway.clear();
        this.gatewayOfService.clear();
        for (const item of items) this.observe('ADDED', rec(item));
        if (JSON.stringify([...this.addressesByGateway]) !== before) this.addressesChanged();
        const resourceVersion = rec(list['metadata'])['resourceVersion'];
        wait = this.backoff.initialMs;
        await this.opts.client.watch({
          path,
          query: { labelSelector: SELECTOR, resourceVersion: typeof resourceVersion === 'string' ? resourceVersion : undefined, timeoutSeconds: 300, allowWatchBookmarks: true },
          signal: this.abort.signal,
          idleTimeoutMs: 330_000,
          onEvent: (e) => {
            if (this.observe(e.type, e.object)) this.addressesChanged();
          },
        });
      } catch (err) {
        if (this.abort.signal.aborted) return;
        this.log.warn({ err: errorText(err) }, 'watch of data plane Services failed; listing again');
        await sleep(wait, undefined, { signal: this.abort.signal }).catch(() => undefined);
        wait = Math.min(wait * 2, this.backoff.maxMs);
      }
    }
  }

  /** Folds one Service event in; true when a Gateway's addresses changed. */
  private observe(type: string, service: Record<string, unknown>): boolean {
    if (type === 'BOOKMARK') return false;
    const meta = rec(service['metadata']);
    const name = typeof meta['name'] === 'string' ? meta['name'] : '';
    const gateway = rec(meta['annotations'])[GATEWAY_ANNOTATION];
    const key = typeof gateway === 'string' ? gateway : this.gatewayOfService.get(name);
    if (key === undefined) return false;
    const before = JSON.stringify(this.addressesByGateway.get(key) ?? []);
    if (type === 'DELETED') {
      this.gatewayOfService.delete(name);
      this.addressesByGateway.delete(key);
      // Deleted with its Gateway, or by hand: the next pass tells which, and puts it back if wanted.
      this.schedule();
    } else {
      this.gatewayOfService.set(name, key);
      this.addressesByGateway.set(key, serviceAddresses(service));
    }
    return JSON.stringify(this.addressesByGateway.get(key) ?? []) !== before;
  }
}
