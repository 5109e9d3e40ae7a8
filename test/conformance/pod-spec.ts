import path from 'node:path';

/** The parts of a core/v1 Pod the node agent reads. */
export interface Pod {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
  };
  spec: {
    nodeName?: string;
    schedulerName?: string;
    serviceAccountName?: string;
    hostNetwork?: boolean;
    initContainers?: Container[];
    containers: Container[];
    volumes?: Volume[];
    terminationGracePeriodSeconds?: number;
  };
  status?: { phase?: string };
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: unknown[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    fieldRef?: { fieldPath: string };
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    configMapKeyRef?: { name: string; key: string; optional?: boolean };
    resourceFieldRef?: unknown;
  };
}

export interface Volume {
  name: string;
  secret?: { secretName: string; items?: KeyToPath[]; defaultMode?: number; optional?: boolean };
  configMap?: { name: string; items?: KeyToPath[]; defaultMode?: number; optional?: boolean };
  emptyDir?: unknown;
}

export interface KeyToPath {
  key: string;
  path: string;
  mode?: number;
}

/**
 * Images the agent can run, each mapped to a binary built from source by scripts/k8s-tools.sh
 * (no container runtime on these machines). Matched on the repository without the tag: the
 * conformance manifests pin tags we cannot rebuild exactly, the binaries come from the suite's own
 * module version instead. Any other image is refused with a message naming it.
 */
export interface ImageBinary {
  repository: string;
  /** File name in the binary directory (.k8s/bin). */
  binary: string;
  /** The image's ENTRYPOINT, so a pod `command` equal to it is accepted. */
  entrypoint: string[];
}

export const KNOWN_IMAGES: readonly ImageBinary[] = [
  { repository: 'gcr.io/k8s-staging-gateway-api/echo-basic', binary: 'echo-basic', entrypoint: ['/echo-basic'] },
  { repository: 'registry.k8s.io/coredns/coredns', binary: 'coredns', entrypoint: ['/coredns'] },
];

/** A pod the agent cannot run as asked; the message names the pod, the field and what is supported. */
export class UnsupportedPod extends Error {
  override name = 'UnsupportedPod';
}

export function imageRepository(image: string): string {
  const noDigest = image.split('@')[0] ?? image;
  const lastSlash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  return colon > lastSlash ? noDigest.slice(0, colon) : noDigest;
}

export function podRef(pod: Pod): string {
  return `${pod.metadata.namespace}/${pod.metadata.name}`;
}

/** The command line a container runs: the mapped binary plus the pod's args. */
export function commandFor(pod: Pod, index: number, binDir: string): { file: string; args: string[] } {
  const c = pod.spec.containers[index];
  if (!c) throw new Error(`pod ${podRef(pod)} has no container ${index}`);
  const field = `spec.containers[${index}]`;
  const known = KNOWN_IMAGES.find((k) => k.repository === imageRepository(c.image));
  if (!known) {
    const list = KNOWN_IMAGES.map((k) => k.repository).join(', ');
    throw new UnsupportedPod(`pod ${podRef(pod)} ${field}.image: ${c.image} has no local binary; the conformance node runs only ${list} (add a build to scripts/k8s-tools.sh and an entry to KNOWN_IMAGES)`);
  }
  if (c.command && c.command.join('\0') !== known.entrypoint.join('\0')) {
    throw new UnsupportedPod(`pod ${podRef(pod)} ${field}.command: ${JSON.stringify(c.command)} replaces the image's entrypoint; the conformance node only runs the image's own binary (${known.entrypoint.join(' ')})`);
  }
  return { file: path.join(binDir, known.binary), args: c.args ?? [] };
}

/** Reads a secret or config map key for env and volumes. */
export type KeyLookup = (kind: 'Secret' | 'ConfigMap', name: string) => Promise<Record<string, Buffer> | undefined>;

export interface PodFacts {
  podIp: string;
  hostIp: string;
  nodeName: string;
}

/** The value of a downward-API fieldRef, as the kubelet resolves it (pkg/fieldpath). */
export function fieldRefValue(pod: Pod, fieldPath: string, facts: PodFacts): string | undefined {
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (m) return (m[1] === 'labels' ? pod.metadata.labels : pod.metadata.annotations)?.[m[2] ?? ''] ?? '';
  switch (fieldPath) {
    case 'metadata.name':
      return pod.metadata.name;
    case 'metadata.namespace':
      return pod.metadata.namespace;
    case 'metadata.uid':
      return pod.metadata.uid;
    case 'spec.nodeName':
      return facts.nodeName;
    case 'spec.serviceAccountName':
      return pod.spec.serviceAccountName ?? '';
    case 'status.podIP':
    case 'status.podIPs':
      return facts.podIp;
    case 'status.hostIP':
    case 'status.hostIPs':
      return facts.hostIp;
    default:
      return undefined;
  }
}

/** The container's environment: HOSTNAME as the kubelet sets it, then its env entries in order, with $(VAR) expanded. */
export async function containerEnv(pod: Pod, index: number, facts: PodFacts, lookup: KeyLookup): Promise<Record<string, string>> {
  const c = pod.spec.containers[index];
  if (!c) throw new Error(`pod ${podRef(pod)} has no container ${index}`);
  const env: Record<string, string> = { HOSTNAME: pod.metadata.name };
  if (c.envFrom && c.envFrom.length > 0) throw new UnsupportedPod(`pod ${podRef(pod)} spec.containers[${index}].envFrom is not supported by the conformance node`);
  for (const [i, e] of (c.env ?? []).entries()) {
    const field = `spec.containers[${index}].env[${i}]`;
    if (e.valueFrom === undefined) {
      env[e.name] = expand(e.value ?? '', env);
      continue;
    }
    const from = e.valueFrom;
    if (from.fieldRef) {
      const v = fieldRefValue(pod, from.fieldRef.fieldPath, facts);
      if (v === undefined) throw new UnsupportedPod(`pod ${podRef(pod)} ${field}.valueFrom.fieldRef.fieldPath: ${from.fieldRef.fieldPath} is not supported by the conformance node`);
      env[e.name] = v;
    } else if (from.secretKeyRef || from.configMapKeyRef) {
      const kind = from.secretKeyRef ? 'Secret' : 'ConfigMap';
      const ref = from.secretKeyRef ?? from.configMapKeyRef;
      if (!ref) continue;
      const data = await lookup(kind, ref.name);
      const v = data?.[ref.key];
      if (v === undefined) {
        if (ref.optional) continue;
        throw new Error(`pod ${podRef(pod)} ${field}: ${kind} ${pod.metadata.namespace}/${ref.name} has no key ${ref.key} (yet)`);
      }
      env[e.name] = v.toString('utf8');
    } else {
      throw new UnsupportedPod(`pod ${podRef(pod)} ${field}.valueFrom: only fieldRef, secretKeyRef and configMapKeyRef are supported by the conformance node`);
    }
  }
  return env;
}

/** $(VAR) references to earlier variables, $$ escapes, as in the Kubernetes API (unknown ones stay as written). */
function expand(value: string, env: Record<string, string>): string {
  return value.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, name: string | undefined) => {
    if (name === undefined) return '$';
    return env[name] ?? all;
  });
}

export interface VolumeFile {
  /** Path relative to the volume's root. */
  path: string;
  content: Buffer;
  mode: number;
}

/** The files of a secret or configMap volume (emptyDir: none), with items and modes applied. */
export async function volumeFiles(pod: Pod, volume: Volume, lookup: KeyLookup): Promise<VolumeFile[]> {
  const field = `spec.volumes[${volume.name}]`;
  const source = volume.secret
    ? { kind: 'Secret' as const, name: volume.secret.secretName, ...volume.secret }
    : volume.configMap
      ? { kind: 'ConfigMap' as const, ...volume.configMap }
      : undefined;
  if (!source) {
    if (volume.emptyDir !== undefined) return [];
    throw new UnsupportedPod(`pod ${podRef(pod)} ${field}: only secret, configMap and emptyDir volumes are supported by the conformance node`);
  }
  const data = await lookup(source.kind, source.name);
  if (data === undefined) {
    if (source.optional) return [];
    throw new Error(`pod ${podRef(pod)} ${field}: ${source.kind} ${pod.metadata.namespace}/${source.name} not found (yet)`);
  }
  const mode = source.defaultMode ?? 0o644;
  const items: KeyToPath[] = source.items ?? Object.keys(data).map((key) => ({ key, path: key }));
  return items.map((item) => {
    const value = data[item.key];
    if (value === undefined) throw new Error(`pod ${podRef(pod)} ${field}: ${source.kind} ${pod.metadata.namespace}/${source.name} has no key ${item.key}`);
    if (item.path.startsWith('/') || item.path.split('/').includes('..')) throw new UnsupportedPod(`pod ${podRef(pod)} ${field}.items: path ${item.path} leaves the volume`);
    return { path: item.path, content: value, mode: item.mode ?? mode };
  });
}
