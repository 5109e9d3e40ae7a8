import { randomBytes } from 'node:crypto';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, type CoreV1Event } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CONTROLLER_NAME } from '../../src/api/gateway.js';
import { parseManifest } from '../../src/api/manifest.js';
import { StatusBook } from '../../src/status/book.js';
import type { EventRecorder } from '../../src/status/events.js';
import { kubeStatusApi, type KubeStatusApi, type LeaseClient } from '../../src/status/kube-api.js';
import { StatusReporter } from '../../src/status/reporter.js';
import { StatusWriter } from '../../src/status/writer.js';
import { addToInputs, emptyInputs, type Inputs } from '../../src/translate/inputs.js';
import { translate } from '../../src/translate/index.js';
import { quietLogger, RecordingLeases } from '../unit/status-fakes.js';
import { K8S_SETTLE_MS } from '../support/kube-cluster.js';
import { createNamespace } from '../support/kube.js';
import { expectTookReleasedLeaseAtOnce } from '../support/lease-tries.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * The status writer, event recorder and leader election against the real API server. What the
 * Kubernetes provider will do (watch, translate on change) is stood in for by a loop that lists
 * this test's objects every 100 ms and runs the real translator. The tests wait for that loop's
 * rounds and for the writer to be idle, never for a fixed time, and assert what was written, not
 * how fast: on a loaded machine every step is late alike. How long a change took to show is
 * printed for the record.
 */

const GW = 'gateway.networking.k8s.io';
const SECRET_VALUE = `sk-test-${randomBytes(8).toString('hex')}`;

let ns: { name: string; remove(): Promise<void> };
let kc: KubeConfig;
let custom: CustomObjectsApi;
let core: CoreV1Api;
let api: KubeStatusApi;
const className = `switchyard-status-${randomBytes(3).toString('hex')}`;

type Json = Record<string, unknown>;

function isJson(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What the provider will hand translation: this namespace's objects and our GatewayClass. */
async function readInputs(namespace: string): Promise<Inputs> {
  const inputs = emptyInputs();
  const lists: unknown[] = await Promise.all([
    custom.listClusterCustomObject({ group: GW, version: 'v1', plural: 'gatewayclasses', fieldSelector: `metadata.name=${className}` }),
    custom.listNamespacedCustomObject({ group: GW, version: 'v1', namespace, plural: 'gateways' }),
    custom.listNamespacedCustomObject({ group: GW, version: 'v1', namespace, plural: 'httproutes' }),
    custom.listNamespacedCustomObject({ group: 'switchyard.dev', version: 'v1alpha1', namespace, plural: 'backends' }),
  ]);
  const docs: unknown[] = lists.flatMap((l) => (isJson(l) && Array.isArray(l.items) ? l.items : []));
  const secrets = await core.listNamespacedSecret({ namespace });
  for (const s of secrets.items) {
    docs.push({ apiVersion: 'v1', kind: 'Secret', metadata: { name: s.metadata?.name, namespace: s.metadata?.namespace }, ...(s.data ? { data: s.data } : {}) });
  }
  for (const doc of docs) {
    const parsed = parseManifest(doc);
    if (parsed.ok === true) addToInputs(inputs, parsed.object);
    else if (parsed.ok === false) throw new Error(`test object does not parse: ${JSON.stringify(parsed.problems)}`);
  }
  return inputs;
}

/** Translation → StatusBook → StatusReporter (leader election gating the writer and the recorder). */
class MiniController {
  readonly book: StatusBook;
  readonly reporter: StatusReporter;
  private running = false;
  private loop?: Promise<void>;
  /** Failures of the stand-in provider loop (listing, parsing); it retries on the next round. */
  readonly loopErrors: string[] = [];
  /** Rounds of the loop that translated and published. */
  private rounds = 0;

  constructor(readonly namespace: string, identity: string, opts: { bookClock?: () => string; leases?: LeaseClient } = {}) {
    this.book = new StatusBook(opts.bookClock);
    this.reporter = new StatusReporter({ api: opts.leases ? { ...api, leases: opts.leases } : api, namespace, identity, logger: quietLogger, election: { name: 'status-test' } });
  }

  /**
   * Waits until the loop has translated and published `n` more times: with n = 2, at least one
   * round listed the objects after this call (the first may have listed before).
   */
  async translated(n = 2): Promise<void> {
    const target = this.rounds + n;
    await waitFor(() => this.rounds >= target, { what: `${n} more rounds of the test controller's loop (errors: ${this.loopErrors.slice(-3).join('; ')})`, timeoutMs: K8S_SETTLE_MS });
  }

  get writer(): StatusWriter {
    return this.reporter.writer;
  }

  get recorder(): EventRecorder {
    return this.reporter.recorder;
  }

  async start({ lead = true } = {}): Promise<void> {
    this.running = true;
    this.reporter.start();
    if (lead) await waitFor(() => this.reporter.isLeader(), { what: 'the test controller to lead', timeoutMs: 20_000 });
    this.loop = (async () => {
      while (this.running) {
        try {
          const t = translate(await readInputs(this.namespace));
          this.book.update(t.statuses);
          this.reporter.publish(this.book.all(), t.events);
          this.rounds++;
        } catch (err) {
          this.loopErrors.push(err instanceof Error ? err.message : String(err));
        }
        await sleep(100);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    await this.reporter.stop();
  }
}

async function getObject(plural: string, name: string, group = 'switchyard.dev', version = 'v1alpha1'): Promise<Json> {
  const got: unknown = await custom.getNamespacedCustomObject({ group, version, namespace: ns.name, plural, name });
  if (!isJson(got)) throw new Error(`${plural}/${name} is not an object`);
  return got;
}

function conditionsOf(status: unknown): Json[] {
  return isJson(status) && Array.isArray(status.conditions) ? status.conditions.filter(isJson) : [];
}

function condition(obj: Json, type: string): Json | undefined {
  return conditionsOf(obj.status).find((c) => c.type === type);
}

function resourceVersionOf(obj: Json): string {
  return isJson(obj.metadata) && typeof obj.metadata.resourceVersion === 'string' ? obj.metadata.resourceVersion : '';
}

async function warningEvents(name: string): Promise<CoreV1Event[]> {
  const list = await core.listNamespacedEvent({ namespace: ns.name, fieldSelector: `involvedObject.name=${name},type=Warning` });
  return list.items;
}

const backendManifest = (name: string): Json => ({
  apiVersion: 'switchyard.dev/v1alpha1',
  kind: 'Backend',
  metadata: { name, namespace: ns.name },
  spec: {
    ai: {
      multipool: {
        priorities: [
          { pool: [{ name: 'primary', provider: { openai: { model: 'gpt-4o', authToken: { kind: 'SecretRef', secretRef: { name: 'openai-key' } } } } }] },
          { pool: [{ name: 'local', provider: { openaiCompatible: { host: '10.0.0.7', port: 8000, model: 'llama' } } }] },
        ],
      },
    },
  },
});

beforeAll(async () => {
  ns = await createNamespace('status');
  kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfig'));
  custom = kc.makeApiClient(CustomObjectsApi);
  core = kc.makeApiClient(CoreV1Api);
  api = kubeStatusApi(kc);
});

afterAll(async () => {
  if (!ns) return;
  // Without a kube-controller-manager (the local control plane has none) deleting a namespace
  // leaves its objects in etcd: remove them one collection at a time.
  const namespace = ns.name;
  await Promise.allSettled([
    custom.deleteClusterCustomObject({ group: GW, version: 'v1', plural: 'gatewayclasses', name: className }),
    ...[['switchyard.dev', 'v1alpha1', 'backends'], [GW, 'v1', 'gateways'], [GW, 'v1', 'httproutes']].map(([group = '', version = '', plural = '']) =>
      custom.deleteCollectionNamespacedCustomObject({ group, version, namespace, plural })),
    core.deleteCollectionNamespacedSecret({ namespace }),
    core.deleteCollectionNamespacedEvent({ namespace }),
    kc.makeApiClient(CoordinationV1Api).deleteCollectionNamespacedLease({ namespace }),
  ]);
  await ns.remove();
});

describe('status writing against the API server', () => {
  let ctl: MiniController;
  let backendUid = '';

  beforeAll(async () => {
    ctl = new MiniController(ns.name, 'replica-a', { bookClock: () => new Date().toISOString() });
    await ctl.start();
  });
  afterAll(async () => {
    await ctl?.stop();
  });

  it('writes ResolvedRefs=False/SecretNotFound for a Backend with a missing Secret, with a Warning Event', async () => {
    const created: unknown = await custom.createNamespacedCustomObject({ group: 'switchyard.dev', version: 'v1alpha1', namespace: ns.name, plural: 'backends', body: backendManifest('chat') });
    const t0 = Date.now();
    backendUid = isJson(created) && isJson(created.metadata) && typeof created.metadata.uid === 'string' ? created.metadata.uid : '';
    const obj = await waitFor(async () => {
      const o = await getObject('backends', 'chat');
      return condition(o, 'ResolvedRefs')?.reason === 'SecretNotFound' ? o : undefined;
    }, { what: 'ResolvedRefs=False/SecretNotFound on Backend chat', timeoutMs: K8S_SETTLE_MS });
    process.stdout.write(`status: SecretNotFound written ${Date.now() - t0} ms after the Backend was created\n`);
    const generation = isJson(obj.metadata) ? obj.metadata.generation : undefined;
    expect(condition(obj, 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'SecretNotFound', observedGeneration: generation });
    expect(condition(obj, 'Accepted')).toMatchObject({ status: 'True', observedGeneration: generation });
    expect(obj.status).toMatchObject({
      observedGeneration: generation,
      usableMembers: 1,
      totalMembers: 2,
      servedPriorities: 1,
      priorities: [
        { priority: 0, members: [{ name: 'primary', usable: false, reason: 'SecretNotFound' }] },
        { priority: 1, envoyPriority: 0, members: [{ name: 'local', usable: true }] },
      ],
    });

    const [event] = await waitFor(async () => {
      const es = (await warningEvents('chat')).filter((e) => e.reason === 'SecretNotFound');
      return es.length > 0 ? es : undefined;
    }, { what: 'a SecretNotFound Warning Event on Backend chat', timeoutMs: K8S_SETTLE_MS });
    expect(event).toMatchObject({
      type: 'Warning',
      reason: 'SecretNotFound',
      count: 1,
      involvedObject: { apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', namespace: ns.name, name: 'chat', uid: backendUid },
      reportingComponent: CONTROLLER_NAME,
      reportingInstance: 'replica-a',
      source: { component: 'switchyard-controller' },
    });
    expect(event?.message).toContain('openai-key');
    expect(event?.involvedObject.resourceVersion).toMatch(/^\d+$/);
  });

  it('reports a Secret without the expected key without ever copying its contents, then clears once it is fixed', async () => {
    await core.createNamespacedSecret({ namespace: ns.name, body: { metadata: { name: 'openai-key' }, stringData: { 'api-key': SECRET_VALUE } } });
    await waitFor(async () => condition(await getObject('backends', 'chat'), 'ResolvedRefs')?.reason === 'SecretKeyMissing', { what: 'ResolvedRefs=False/SecretKeyMissing', timeoutMs: K8S_SETTLE_MS });
    await waitFor(async () => (await warningEvents('chat')).some((e) => e.reason === 'SecretKeyMissing'), { what: 'a SecretKeyMissing Warning Event', timeoutMs: K8S_SETTLE_MS });

    await core.replaceNamespacedSecret({ namespace: ns.name, name: 'openai-key', body: { metadata: { name: 'openai-key' }, stringData: { Authorization: SECRET_VALUE } } });
    const t0 = Date.now();
    const obj = await waitFor(async () => {
      const o = await getObject('backends', 'chat');
      return condition(o, 'ResolvedRefs')?.status === 'True' ? o : undefined;
    }, { what: 'ResolvedRefs=True once the Secret has its key', timeoutMs: K8S_SETTLE_MS });
    process.stdout.write(`status: ResolvedRefs=True written ${Date.now() - t0} ms after the Secret was fixed\n`);
    expect(obj.status).toMatchObject({ usableMembers: 2, servedPriorities: 2 });

    const everything = JSON.stringify({ status: obj.status, events: await warningEvents('chat') });
    expect(everything).not.toContain(SECRET_VALUE);
    expect(everything).not.toContain(Buffer.from(SECRET_VALUE).toString('base64'));
  });

  it('writes nothing while nothing changed: counters stay, resourceVersion does not move, even when every object is re-synced', async () => {
    await ctl.translated();
    await ctl.writer.idle();
    const before = await getObject('backends', 'chat');
    const counters = ctl.writer.counters();
    // Other inputs change (translation runs and produces the same Backend status)...
    await core.createNamespacedSecret({ namespace: ns.name, body: { metadata: { name: 'unrelated' }, stringData: { Authorization: 'x' } } });
    await ctl.translated();
    await ctl.writer.idle();
    // ...and a leadership flap makes the writer re-read and compare every object (idle() waits for those syncs).
    ctl.writer.setLeading(false);
    ctl.writer.setLeading(true);
    await ctl.writer.idle();
    const after = ctl.writer.counters();
    const context = JSON.stringify({ before: counters, after, loopErrors: ctl.loopErrors.slice(-3) });
    expect(after.writes, context).toBe(counters.writes);
    expect(after.errors, context).toBe(0);
    expect(after.skipped, context).toBeGreaterThan(counters.skipped);
    const now = await getObject('backends', 'chat');
    expect(resourceVersionOf(now), JSON.stringify({ before: before.status, now: now.status })).toBe(resourceVersionOf(before));
    expect(ctl.loopErrors.filter((e) => e.includes('does not parse'))).toEqual([]);
  });

  it('keeps lastTransitionTime when a restarted controller (new book, new writer, later clock) writes the same statuses', async () => {
    // A problem that persists across the restart: its Event must not be emitted twice.
    const broken = backendManifest('broken');
    await custom.createNamespacedCustomObject({ group: 'switchyard.dev', version: 'v1alpha1', namespace: ns.name, plural: 'backends', body: { ...broken, spec: JSON.parse(JSON.stringify(broken.spec).replace('openai-key', 'absent-key')) as unknown } });
    await waitFor(async () => (await warningEvents('broken')).length === 1, { what: 'the Warning Event on Backend broken', timeoutMs: K8S_SETTLE_MS });
    await ctl.translated();
    await ctl.writer.idle();
    const before = await getObject('backends', 'chat');
    const brokenBefore = await getObject('backends', 'broken');
    await ctl.stop();
    // The Lease was released: the new instance leads at once.
    ctl = new MiniController(ns.name, 'replica-b', { bookClock: () => new Date(Date.now() + 3_600_000).toISOString() });
    await ctl.start();
    // Leading, it translated and handed the writer every status, and the writer compared them all.
    await ctl.translated();
    await ctl.writer.idle();
    expect(ctl.writer.counters()).toMatchObject({ writes: 0, errors: 0 });
    expect(ctl.writer.counters().skipped).toBeGreaterThan(0);
    const after = await getObject('backends', 'chat');
    expect(resourceVersionOf(after)).toBe(resourceVersionOf(before));
    expect(conditionsOf(after.status).map((c) => c.lastTransitionTime)).toEqual(conditionsOf(before.status).map((c) => c.lastTransitionTime));
    expect(resourceVersionOf(await getObject('backends', 'broken'))).toBe(resourceVersionOf(brokenBefore));
    // The new replica does not re-emit the Event an earlier one reported for a problem that persists.
    await ctl.recorder.idle();
    expect(ctl.recorder.counters()).toMatchObject({ created: 0, bumped: 0, errors: 0 });
    const events = await warningEvents('broken');
    expect(events.map((e) => [e.reason, e.count, e.reportingInstance])).toEqual([['SecretNotFound', 1, 'replica-a']]);
  });

  it('writes only from the replica holding the Lease; a standby takes over writing when the leader stops', async () => {
    const standbyTries = new RecordingLeases(api.leases);
    const standby = new MiniController(ns.name, 'replica-standby', { leases: standbyTries });
    await standby.start({ lead: false });
    // It found the Lease held twice, and translated and published meanwhile: a leader would have written.
    await waitFor(() => standbyTries.calls.filter((c) => c.op === 'get' && c.ok).length >= 2, { what: 'the standby to read the held Lease twice', timeoutMs: K8S_SETTLE_MS });
    await standby.translated();
    await standby.writer.idle();
    expect(standby.reporter.isLeader()).toBe(false);
    expect(standby.writer.counters()).toEqual({ writes: 0, skipped: 0, conflicts: 0, notFound: 0, errors: 0 });
    expect(standby.recorder.counters()).toMatchObject({ created: 0, bumped: 0 });

    await ctl.stop();
    ctl = standby;
    // The stopped leader released its Lease, so the standby takes it at its next try (every 1 s),
    // not after the 15 s lease duration a killed leader leaves: judged by the standby's tries.
    await waitFor(() => standby.reporter.isLeader(), { what: 'the standby to lead', timeoutMs: 15_000 + K8S_SETTLE_MS, intervalMs: 10 });
    expectTookReleasedLeaseAtOnce(standbyTries.calls, 'replica-standby', 'replica-b');
    await core.deleteNamespacedSecret({ namespace: ns.name, name: 'openai-key' });
    // Both: the test's read can return the new status before the writer has handled its own
    // write's response (seen at load 18); a status someone else wrote leaves writes at 0.
    await waitFor(async () => condition(await getObject('backends', 'chat'), 'ResolvedRefs')?.reason === 'SecretNotFound' && standby.writer.counters().writes > 0, { what: 'SecretNotFound written by the new leader', timeoutMs: K8S_SETTLE_MS });
  });

  it('counts a status for an object that is gone as notFound, not as an error', async () => {
    await custom.deleteNamespacedCustomObject({ group: 'switchyard.dev', version: 'v1alpha1', namespace: ns.name, plural: 'backends', name: 'chat' });
    // A writer of its own: the running loop would drop the deleted Backend from its next update.
    const writer = new StatusWriter({ client: api.objects, logger: quietLogger });
    writer.setLeading(true);
    writer.update([{ kind: 'Backend', namespace: ns.name, name: 'chat', conditions: [], priorities: [], servedPriorities: 0, usableMembers: 0, totalMembers: 0 }]);
    await writer.idle();
    expect(writer.counters()).toEqual({ writes: 0, skipped: 0, conflicts: 0, notFound: 1, errors: 0 });
    await writer.stop();
  });

  it('writes GatewayClass, Gateway (with listeners) and HTTPRoute status, leaving another controller’s route parents untouched', async () => {
    await custom.createClusterCustomObject({ group: GW, version: 'v1', plural: 'gatewayclasses', body: { apiVersion: `${GW}/v1`, kind: 'GatewayClass', metadata: { name: className }, spec: { controllerName: CONTROLLER_NAME } } });
    for (const [name, cls] of [['gw', className], ['theirs', 'example-other-class']] as const) {
      await custom.createNamespacedCustomObject({ group: GW, version: 'v1', namespace: ns.name, plural: 'gateways', body: { apiVersion: `${GW}/v1`, kind: 'Gateway', metadata: { name }, spec: { gatewayClassName: cls, listeners: [{ name: 'http', port: 8080, protocol: 'HTTP' }] } } });
    }
    await custom.createNamespacedCustomObject({ group: 'switchyard.dev', version: 'v1alpha1', namespace: ns.name, plural: 'backends', body: backendManifest('chat2') });
    const route: unknown = await custom.createNamespacedCustomObject({
      group: GW, version: 'v1', namespace: ns.name, plural: 'httproutes',
      body: { apiVersion: `${GW}/v1`, kind: 'HTTPRoute', metadata: { name: 'r' }, spec: { parentRefs: [{ name: 'theirs' }, { name: 'gw' }], rules: [{ backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: 'chat2' }] }] } },
    });
    // The other controller writes its entry (as it would for its own Gateway).
    const theirs = {
      parentRef: { group: GW, kind: 'Gateway', name: 'theirs' },
      controllerName: 'example.com/other-controller',
      conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'accepted by the other controller', observedGeneration: 1, lastTransitionTime: '2024-02-03T04:05:06Z' }],
    };
    if (!isJson(route)) throw new Error('route create returned no object');
    await custom.replaceNamespacedCustomObjectStatus({ group: GW, version: 'v1', namespace: ns.name, plural: 'httproutes', name: 'r', body: { ...route, status: { parents: [theirs] } } });

    const routeStatus = await waitFor(async () => {
      const o = await getObject('httproutes', 'r', GW, 'v1');
      const parents = isJson(o.status) && Array.isArray(o.status.parents) ? o.status.parents.filter(isJson) : [];
      // Until the informer has Gateway "theirs" (another class), r's parentRef to it names a
      // Gateway not found, and that entry is ours: wait for the settled status, one entry each.
      const ours = parents.filter((p) => p.controllerName === CONTROLLER_NAME);
      return ours.length === 1 && isJson(ours[0]?.parentRef) && ours[0].parentRef.name === 'gw' && parents.length === 2 ? parents : undefined;
    }, { what: 'our one parent entry (Gateway gw) beside theirs on HTTPRoute r', timeoutMs: K8S_SETTLE_MS });
    expect(routeStatus).toHaveLength(2);
    expect(routeStatus[0]).toEqual(theirs);
    expect(routeStatus[1]).toMatchObject({ parentRef: { group: GW, kind: 'Gateway', name: 'gw' }, controllerName: CONTROLLER_NAME });
    expect(conditionsOf(routeStatus[1])).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'Accepted', status: 'True', observedGeneration: 1 }), expect.objectContaining({ type: 'ResolvedRefs', status: 'True' })]));

    const gw = await waitFor(async () => {
      const o = await getObject('gateways', 'gw', GW, 'v1');
      const listeners = isJson(o.status) && Array.isArray(o.status.listeners) ? o.status.listeners.filter(isJson) : [];
      return condition(o, 'Accepted')?.status === 'True' && listeners[0]?.attachedRoutes === 1 ? o : undefined;
    }, { what: 'Accepted and one attached route on Gateway gw', timeoutMs: K8S_SETTLE_MS });
    expect(isJson(gw.status) ? gw.status.listeners : undefined).toEqual([
      expect.objectContaining({ name: 'http', attachedRoutes: 1, supportedKinds: [{ group: GW, kind: 'HTTPRoute' }], conditions: expect.arrayContaining([expect.objectContaining({ type: 'Accepted', status: 'True' })]) }),
    ]);
    // Not our Gateway: untouched (the CRD's default "Waiting for controller").
    expect(condition(await getObject('gateways', 'theirs', GW, 'v1'), 'Accepted')).toMatchObject({ status: 'Unknown', reason: 'Pending' });
    const cls: unknown = await custom.getClusterCustomObject({ group: GW, version: 'v1', plural: 'gatewayclasses', name: className });
    expect(isJson(cls) ? condition(cls, 'Accepted') : undefined).toMatchObject({ status: 'True', observedGeneration: 1 });

    // The route leaves our Gateway: our entry goes, theirs stays exactly as it was.
    const current = await getObject('httproutes', 'r', GW, 'v1');
    await custom.replaceNamespacedCustomObject({ group: GW, version: 'v1', namespace: ns.name, plural: 'httproutes', name: 'r', body: { ...current, spec: { ...(isJson(current.spec) ? current.spec : {}), parentRefs: [{ name: 'theirs' }] } } });
    const left = await waitFor(async () => {
      const o = await getObject('httproutes', 'r', GW, 'v1');
      const parents = isJson(o.status) && Array.isArray(o.status.parents) ? o.status.parents : [];
      return parents.length === 1 ? parents : undefined;
    }, { what: 'our parent entry to be removed', timeoutMs: K8S_SETTLE_MS });
    expect(left).toEqual([theirs]);
  });
});
