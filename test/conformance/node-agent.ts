/**
 * A minimal kubelet + scheduler for running the Gateway API conformance suite without a container
 * runtime: it registers one Node, binds every unscheduled pod to it, runs each pod's containers as
 * local processes in the pod's own network namespace (pod-network.ts, pod-process.ts), reports pod
 * status like a kubelet (phase, podIP(s), conditions, containerStatuses), restarts exited
 * containers, and on deletion kills the processes, removes the namespace and deletes the pod with
 * grace 0. Only images with a locally built binary run (pod-spec.ts KNOWN_IMAGES); any other pod
 * is refused loudly and stays Pending with the reason in its status.
 *
 * Needs root (network namespaces, veths, mounts). Usage:
 *   tsx test/conformance/node-agent.ts --kubeconfig .k8s/kubeconfig --bin-dir .k8s/bin --state-dir .k8s/conformance
 * It prints one line per event; SIGTERM or SIGINT stops every pod and removes the network.
 */
import { parseArgs } from 'node:util';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { KubeClient, describeKubeError, isGone, isNotFound, type RawObject } from '../../src/providers/kubernetes/api-client.js';
import { loadKubeConfig } from '../../src/providers/kubernetes/kubeconfig.js';
import { DEFAULT_BRIDGE, DEFAULT_SUBNET, PodNetwork, podNetworkFor, type PodAttachment } from './pod-network.js';
import { isListening, startContainer, stopContainer, writeVolumes, type ContainerProcess, type LaunchContext } from './pod-process.js';
import { podRef, UnsupportedPod, type Pod } from './pod-spec.js';

const { values: opts } = parseArgs({
  options: {
    kubeconfig: { type: 'string' },
    'node-name': { type: 'string', default: 'switchyard-conformance' },
    'bin-dir': { type: 'string', default: '.k8s/bin' },
    'state-dir': { type: 'string', default: '.k8s/conformance' },
    bridge: { type: 'string', default: DEFAULT_BRIDGE },
    subnet: { type: 'string', default: DEFAULT_SUBNET },
  },
});

const nodeName = opts['node-name'] ?? 'switchyard-conformance';
const binDir = path.resolve(opts['bin-dir'] ?? '.k8s/bin');
const stateDir = path.resolve(opts['state-dir'] ?? '.k8s/conformance');
const network = new PodNetwork(podNetworkFor(opts.subnet ?? DEFAULT_SUBNET, opts.bridge ?? DEFAULT_BRIDGE));
const hostIp = network.config.hostIp;
const client = new KubeClient(loadKubeConfig(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}).config);
const stop = new AbortController();

function say(msg: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 23)} node-agent: ${msg}\n`);
}
function shout(msg: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 23)} node-agent: ERROR ${msg}\n`);
}

const microTime = (): string => new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- the Node and its heartbeat ----------------------------------------------------------------

async function registerNode(): Promise<void> {
  const node = {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: nodeName, labels: { 'kubernetes.io/hostname': nodeName, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' } },
  };
  try {
    await client.request({ method: 'POST', path: '/api/v1/nodes', body: node });
  } catch (err) {
    if (!(err instanceof Error && 'status' in err && err.status === 409)) throw err;
  }
  await patchNodeStatus();
}

async function patchNodeStatus(): Promise<void> {
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const capacity = { cpu: '2', memory: '8Gi', pods: '110', 'ephemeral-storage': '20Gi' };
  const status = {
    addresses: [
      { type: 'InternalIP', address: hostIp },
      { type: 'Hostname', address: nodeName },
    ],
    capacity,
    allocatable: capacity,
    conditions: [
      { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'switchyard conformance node agent is running', lastHeartbeatTime: now, lastTransitionTime: now },
    ],
    nodeInfo: {
      kubeletVersion: 'v0.0.0-switchyard-node-agent', kubeProxyVersion: '', operatingSystem: 'linux', architecture: 'amd64',
      containerRuntimeVersion: 'processes://', kernelVersion: '', osImage: '', machineID: '', systemUUID: '', bootID: '',
    },
  };
  await client.request({ method: 'PATCH', path: `/api/v1/nodes/${nodeName}/status`, contentType: 'application/merge-patch+json', body: { status } });
}

/** Renews the node Lease every 10 s, as a kubelet does, so the node lifecycle controller keeps the node Ready. */
async function heartbeat(): Promise<void> {
  const leasePath = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${nodeName}`;
  while (!stop.signal.aborted) {
    try {
      try {
        await client.request({ method: 'PATCH', path: leasePath, contentType: 'application/merge-patch+json', body: { spec: { renewTime: microTime() } } });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await client.request({
          method: 'POST',
          path: '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases',
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: nodeName, namespace: 'kube-node-lease' }, spec: { holderIdentity: nodeName, leaseDurationSeconds: 40, renewTime: microTime() } },
        });
      }
    } catch (err) {
      if (!stop.signal.aborted) shout(`node lease renewal failed: ${describeKubeError(err)}`);
    }
    await sleep(10_000);
  }
}

// ---- list + watch ------------------------------------------------------------------------------

/** Keeps a collection in view: onSync with the full list after each (re)list, onEvent for each change. */
async function informer(resource: string, fieldSelector: string, onSync: (items: RawObject[]) => void, onEvent: (type: string, obj: RawObject) => void): Promise<void> {
  while (!stop.signal.aborted) {
    try {
      const list = await client.list(`${resource}?fieldSelector=${encodeURIComponent(fieldSelector)}`, stop.signal);
      onSync(list.items);
      let rv = list.resourceVersion;
      for (;;) {
        await client.watch({
          path: resource,
          query: { fieldSelector, resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 300 },
          signal: stop.signal,
          idleTimeoutMs: 330_000,
          onEvent: (e) => {
            const meta = e.object['metadata'] as { resourceVersion?: string } | undefined;
            if (meta?.resourceVersion) rv = meta.resourceVersion;
            if (e.type !== 'BOOKMARK') onEvent(e.type, e.object);
          },
        });
      }
    } catch (err) {
      if (stop.signal.aborted) return;
      if (!isGone(err)) shout(`watch ${resource} (${fieldSelector}): ${describeKubeError(err)}; listing again`);
      await sleep(1000);
    }
  }
}

// ---- scheduling: every pod lands on this node --------------------------------------------------

const binding = new Set<string>();
function bind(obj: RawObject): void {
  const pod = obj as unknown as Pod;
  if (pod.spec.nodeName || pod.metadata.deletionTimestamp || binding.has(pod.metadata.uid)) return;
  binding.add(pod.metadata.uid);
  const target = `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/binding`;
  client
    .request({ method: 'POST', path: target, body: { apiVersion: 'v1', kind: 'Binding', metadata: { name: pod.metadata.name, uid: pod.metadata.uid }, target: { apiVersion: 'v1', kind: 'Node', name: nodeName } } })
    .then(() => say(`bound ${podRef(pod)}`))
    .catch((err: unknown) => {
      binding.delete(pod.metadata.uid);
      if (!isNotFound(err)) shout(`binding ${podRef(pod)} failed: ${describeKubeError(err)}`);
    });
}

// ---- running pods --------------------------------------------------------------------------------

interface PodState {
  pod: Pod;
  attachment?: PodAttachment;
  containers: Map<string, ContainerProcess>;
  restarts: Map<string, number>;
  ready: Map<string, boolean>;
  startTime?: string;
  stopping: boolean;
  /** Serializes work on one pod. */
  queue: Promise<void>;
}

const pods = new Map<string, PodState>();

function enqueue(state: PodState, work: () => Promise<void>): void {
  state.queue = state.queue.then(work).catch((err: unknown) => shout(`pod ${podRef(state.pod)}: ${err instanceof Error ? err.message : String(err)}`));
}

async function lookup(namespace: string, kind: 'Secret' | 'ConfigMap', name: string): Promise<Record<string, Buffer> | undefined> {
  const plural = kind === 'Secret' ? 'secrets' : 'configmaps';
  let obj: unknown;
  try {
    obj = await client.request({ path: `/api/v1/namespaces/${namespace}/${plural}/${name}` });
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  const o = obj as { data?: Record<string, string>; binaryData?: Record<string, string> };
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(o.data ?? {})) out[k] = kind === 'Secret' ? Buffer.from(v, 'base64') : Buffer.from(v, 'utf8');
  for (const [k, v] of Object.entries(o.binaryData ?? {})) out[k] = Buffer.from(v, 'base64');
  return out;
}

function podDir(pod: Pod): string {
  return path.join(stateDir, 'pods', pod.metadata.uid);
}

async function patchPodStatus(state: PodState, extra: { phase: string; waiting?: { reason: string; message: string } }): Promise<void> {
  const pod = state.pod;
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const allReady = extra.phase === 'Running' && pod.spec.containers.every((c) => state.ready.get(c.name) === true);
  const cond = (type: string, ok: boolean, reason?: string) => ({ type, status: ok ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: now, ...(reason && !ok ? { reason } : {}) });
  const ip = state.attachment?.ip;
  const status = {
    phase: extra.phase,
    hostIP: hostIp,
    hostIPs: [{ ip: hostIp }],
    ...(ip ? { podIP: ip, podIPs: [{ ip }] } : {}),
    startTime: state.startTime ?? now,
    conditions: [
      cond('PodReadyToStartContainers', state.attachment !== undefined),
      cond('Initialized', true),
      cond('ContainersReady', allReady, 'ContainersNotReady'),
      cond('Ready', allReady, 'ContainersNotReady'),
      cond('PodScheduled', true),
    ],
    containerStatuses: pod.spec.containers.map((c) => {
      const p = state.containers.get(c.name);
      const running = p !== undefined && p.child.exitCode === null && p.child.signalCode === null;
      return {
        name: c.name,
        image: c.image,
        imageID: c.image,
        ready: running && state.ready.get(c.name) === true,
        started: running,
        restartCount: state.restarts.get(c.name) ?? 0,
        ...(p?.child.pid !== undefined ? { containerID: `process://${p.child.pid}` } : {}),
        state: running
          ? { running: { startedAt: p.startedAt.replace(/\.\d{3}Z$/, 'Z') } }
          : { waiting: extra.waiting ?? { reason: 'ContainerCreating', message: '' } },
      };
    }),
  };
  try {
    await client.request({
      method: 'PATCH',
      path: `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}/status`,
      contentType: 'application/merge-patch+json',
      body: { metadata: { uid: pod.metadata.uid }, status },
    });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

function podSeen(obj: RawObject): void {
  const pod = obj as unknown as Pod;
  let state = pods.get(pod.metadata.uid);
  if (!state) {
    if (pod.metadata.deletionTimestamp && pod.status?.phase !== 'Running') {
      // Deleted before it ever ran here: nothing to stop, finish the deletion.
      void deletePodObject(pod);
      return;
    }
    state = { pod, containers: new Map(), restarts: new Map(), ready: new Map(), stopping: false, queue: Promise.resolve() };
    pods.set(pod.metadata.uid, state);
    const s = state;
    enqueue(s, () => startPod(s));
    return;
  }
  state.pod = pod;
  if (pod.metadata.deletionTimestamp && !state.stopping) {
    state.stopping = true;
    const s = state;
    enqueue(s, async () => {
      await stopPod(s, Math.min((pod.metadata.deletionGracePeriodSeconds ?? 30) * 1000, 10_000));
      await deletePodObject(pod);
    });
  }
}

function podGone(obj: RawObject): void {
  const pod = obj as unknown as Pod;
  const state = pods.get(pod.metadata.uid);
  if (!state || state.stopping) return;
  state.stopping = true;
  enqueue(state, () => stopPod(state, 2000));
}

async function deletePodObject(pod: Pod): Promise<void> {
  try {
    await client.request({
      method: 'DELETE',
      path: `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}`,
      body: { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid: pod.metadata.uid } },
    });
    say(`deleted ${podRef(pod)}`);
  } catch (err) {
    if (!isNotFound(err) && !(err instanceof Error && 'status' in err && err.status === 409)) throw err;
  }
}

async function startPod(state: PodState): Promise<void> {
  const pod = state.pod;
  try {
    if (pod.spec.hostNetwork) throw new UnsupportedPod(`pod ${podRef(pod)} spec.hostNetwork: host-network pods are not supported by the conformance node`);
    if (pod.spec.initContainers?.length) throw new UnsupportedPod(`pod ${podRef(pod)} spec.initContainers: not supported by the conformance node`);
    state.attachment ??= await network.attach(pod.metadata.uid);
    state.startTime ??= new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const ctx = launchContext(state, state.attachment);
    const volumes = await writeVolumes(pod, ctx);
    for (const [i, c] of pod.spec.containers.entries()) {
      if (state.stopping) return;
      if (state.containers.has(c.name)) continue;
      const p = await startContainer(pod, i, volumes, ctx);
      state.containers.set(c.name, p);
      state.ready.set(c.name, false);
      void watchContainer(state, i, p, volumes, ctx);
    }
    say(`started ${podRef(pod)} at ${state.attachment.ip}`);
    await patchPodStatus(state, { phase: 'Running' });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof UnsupportedPod) {
      shout(message);
      await patchPodStatus(state, { phase: 'Pending', waiting: { reason: 'CreateContainerConfigError', message } });
      return;
    }
    // Usually a Secret or ConfigMap the pod needs that is not created yet: try again.
    say(`pod ${podRef(pod)} cannot start yet: ${message}`);
    await patchPodStatus(state, { phase: 'Pending', waiting: { reason: 'CreateContainerConfigError', message } }).catch(() => undefined);
    setTimeout(() => { if (!state.stopping) enqueue(state, () => startPod(state)); }, 2000).unref();
  }
}

function launchContext(state: PodState, a: PodAttachment): LaunchContext {
  const pod = state.pod;
  return {
    binDir,
    podDir: podDir(pod),
    logDir: path.join(stateDir, 'logs'),
    netns: a.netns,
    facts: { podIp: a.ip, hostIp, nodeName },
    lookup: (kind, name) => lookup(pod.metadata.namespace, kind, name),
  };
}

/** Marks the container ready once it listens, restarts it (restartPolicy Always) when it exits. */
async function watchContainer(state: PodState, index: number, p: ContainerProcess, volumes: Map<string, string>, ctx: LaunchContext): Promise<void> {
  const name = p.name;
  let exited = false;
  void p.exited.then(() => { exited = true; });
  const deadline = Date.now() + 60_000;
  while (!exited && !state.stopping && Date.now() < deadline) {
    if (p.child.pid !== undefined && isListening(p.child.pid)) {
      state.ready.set(name, true);
      enqueue(state, () => patchPodStatus(state, { phase: 'Running' }));
      say(`${podRef(state.pod)} container ${name} ready (listening)`);
      break;
    }
    await sleep(100);
  }
  if (!exited && !state.stopping && state.ready.get(name) !== true) shout(`${podRef(state.pod)} container ${name} does not listen on any port after 60 s; left not ready`);
  const code = await p.exited;
  if (state.stopping || state.containers.get(name) !== p) return;
  const restarts = (state.restarts.get(name) ?? 0) + 1;
  state.restarts.set(name, restarts);
  state.ready.set(name, false);
  shout(`${podRef(state.pod)} container ${name} exited with ${code}; restart ${restarts} (log: ${ctx.logDir})`);
  state.containers.delete(name);
  enqueue(state, () => patchPodStatus(state, { phase: 'Running', waiting: { reason: 'CrashLoopBackOff', message: `exited with ${code}` } }));
  await sleep(Math.min(10_000, 500 * 2 ** Math.min(restarts, 5)));
  if (state.stopping) return;
  enqueue(state, async () => {
    if (state.stopping) return;
    const next = await startContainer(state.pod, index, volumes, ctx);
    state.containers.set(name, next);
    void watchContainer(state, index, next, volumes, ctx);
    await patchPodStatus(state, { phase: 'Running' });
  });
}

async function stopPod(state: PodState, graceMs: number): Promise<void> {
  await Promise.all([...state.containers.values()].map((p) => stopContainer(p, graceMs)));
  state.containers.clear();
  if (state.attachment) await network.detach(state.attachment);
  await rm(podDir(state.pod), { recursive: true, force: true });
  pods.delete(state.pod.metadata.uid);
  say(`stopped ${podRef(state.pod)}`);
}

// ---- main ----------------------------------------------------------------------------------------

async function shutdown(signal: string): Promise<void> {
  if (stop.signal.aborted) return;
  say(`${signal}: stopping ${pods.size} pods and removing the pod network`);
  stop.abort();
  for (const s of pods.values()) s.stopping = true;
  await Promise.all([...pods.values()].map((s) => stopPod(s, 2000).catch(() => undefined)));
  await network.tearDown();
  client.close();
  process.exit(0);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the conformance node agent needs root (network namespaces, veth pairs, mounts)');
  await mkdir(path.join(stateDir, 'pods'), { recursive: true });
  await rm(path.join(stateDir, 'pods'), { recursive: true, force: true });
  await network.setUp();
  await registerNode();
  say(`node ${nodeName} registered; bridge ${network.config.bridge} ${hostIp}/${network.config.prefixLength}, pods ${network.config.firstPodIp}-${network.config.lastPodIp}`);
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  void heartbeat();
  void informer('/api/v1/pods', 'spec.nodeName=', (items) => items.forEach(bind), (type, obj) => { if (type !== 'DELETED') bind(obj); });
  await informer(
    '/api/v1/pods',
    `spec.nodeName=${nodeName}`,
    (items) => {
      const seen = new Set<string>();
      for (const obj of items) {
        seen.add((obj as unknown as Pod).metadata.uid);
        podSeen(obj);
      }
      for (const s of pods.values()) if (!seen.has(s.pod.metadata.uid)) podGone(s.pod as unknown as RawObject);
    },
    (type, obj) => (type === 'DELETED' ? podGone(obj) : podSeen(obj)),
  );
}

main().catch(async (err: unknown) => {
  shout(err instanceof Error ? err.message : String(err));
  await network.tearDown().catch(() => undefined);
  process.exit(1);
});
