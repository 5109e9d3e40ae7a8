import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { inject } from 'vitest';
import { isNotFound, KubeClient, type RawObject } from '../../src/providers/kubernetes/api-client.js';
import { collectionPath, WATCHED_KINDS, type WatchedKind } from '../../src/providers/kubernetes/kinds.js';

/**
 * Talking to the test API server from tests: a client on the kubeconfig the global setup
 * provides, objects by manifest, and namespaces that are really gone afterwards. No
 * kube-controller-manager runs next to the test API server, so nothing empties and finalizes a
 * deleted namespace: `remove()` deletes what the tests put there, then finalizes it itself.
 */

export function testKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfig'));
  return kc;
}

/**
 * How long a change may take to show up (in the API server, a provider's snapshot, a status, a
 * Lease) before a Kubernetes test gives up: a bound on failure only, sized for a loaded 2-core
 * machine. Tests judge what happened and in which order, never how fast.
 */
export const K8S_SETTLE_MS = 15_000;

export function testClient(): KubeClient {
  return new KubeClient(testKubeConfig());
}

export function randomSuffix(): string {
  return randomBytes(3).toString('hex');
}

function kindOf(manifest: RawObject): WatchedKind {
  const k = WATCHED_KINDS.find((w) => w.kind === manifest['kind']);
  if (!k) throw new Error(`test helper: kind ${String(manifest['kind'])} is not one the provider watches`);
  return k;
}

function metaOf(manifest: RawObject): { name: string; namespace?: string } {
  const meta = manifest['metadata'];
  if (typeof meta !== 'object' || meta === null || !('name' in meta) || typeof meta.name !== 'string') throw new Error('test helper: manifest has no metadata.name');
  const namespace = 'namespace' in meta && typeof meta.namespace === 'string' ? meta.namespace : undefined;
  return { name: meta.name, ...(namespace ? { namespace } : {}) };
}

export function objectPath(manifest: RawObject): string {
  const k = kindOf(manifest);
  const { name, namespace } = metaOf(manifest);
  return `${collectionPath(k, k.namespaced ? namespace : undefined)}/${encodeURIComponent(name)}`;
}

/** Creates the object (POST); the API server's copy is returned. */
export async function createObject(client: KubeClient, manifest: RawObject): Promise<RawObject> {
  const k = kindOf(manifest);
  const { namespace } = metaOf(manifest);
  const got = await client.request({ method: 'POST', path: collectionPath(k, k.namespaced ? namespace : undefined), body: manifest });
  return got as RawObject;
}

/** JSON merge patch of the object. */
export async function patchObject(client: KubeClient, manifest: RawObject, patch: RawObject): Promise<void> {
  await client.request({ method: 'PATCH', path: objectPath(manifest), body: patch, contentType: 'application/merge-patch+json' });
}

/** Deletes the object; one that is already gone is fine. */
export async function deleteObject(client: KubeClient, manifest: RawObject): Promise<void> {
  try {
    await client.request({ method: 'DELETE', path: objectPath(manifest) });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

export interface TestNamespace {
  name: string;
  /** Deletes every object of the kinds the provider watches in it, then the namespace, and finalizes it. */
  remove(): Promise<void>;
}

export async function createTestNamespace(client: KubeClient, prefix: string, labels: Record<string, string> = {}): Promise<TestNamespace> {
  const name = `${prefix}-${randomSuffix()}`;
  await client.request({ method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } } });
  return { name, remove: () => removeNamespace(client, name) };
}

export async function removeNamespace(client: KubeClient, name: string): Promise<void> {
  for (const k of WATCHED_KINDS.filter((w) => w.namespaced)) {
    let items: RawObject[] = [];
    try {
      items = (await client.list(collectionPath(k, name))).items;
    } catch (err) {
      if (isNotFound(err)) continue;
      throw err;
    }
    for (const item of items) {
      const meta = item['metadata'];
      const itemName = typeof meta === 'object' && meta !== null && 'name' in meta && typeof meta.name === 'string' ? meta.name : '';
      await deleteObject(client, { kind: k.kind, metadata: { name: itemName, namespace: name } });
    }
  }
  try {
    await client.request({ method: 'DELETE', path: `/api/v1/namespaces/${name}` });
    await client.request({ method: 'PUT', path: `/api/v1/namespaces/${name}/finalize`, body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name }, spec: { finalizers: [] } } });
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/**
 * Compacts etcd's history up to now when the tests run on the local control plane (make k8s-up),
 * as the API server itself does every 5 minutes: old resourceVersions are then really gone.
 * Returns false on another cluster, where only its own compaction (every 5 minutes) does that.
 */
export async function compactEtcdIfLocal(): Promise<boolean> {
  const root = path.resolve(import.meta.dirname, '../..');
  const portFile = path.join(root, '.k8s/run/etcd.port');
  if (path.resolve(inject('kubeconfig')) !== path.join(root, '.k8s/kubeconfig') || !existsSync(portFile)) return false;
  const etcd = `http://127.0.0.1:${readFileSync(portFile, 'utf8').trim()}`;
  // etcd's JSON gateway: any range answers with the current revision in its header.
  const range = await fetch(`${etcd}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: 'AA==', limit: 1 }) });
  const header: unknown = ((await range.json()) as { header?: unknown }).header;
  const revision = typeof header === 'object' && header !== null && 'revision' in header ? String(header.revision) : '';
  if (!revision) throw new Error(`etcd at ${etcd} did not report its revision`);
  const compact = await fetch(`${etcd}/v3/kv/compaction`, { method: 'POST', body: JSON.stringify({ revision, physical: true }) });
  // Compacting to a revision already compacted is refused; either way history before it is gone.
  if (!compact.ok && !(await compact.text()).includes('compacted')) throw new Error(`etcd compaction failed: ${compact.status}`);
  return true;
}
