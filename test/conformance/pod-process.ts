import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { commandFor, containerEnv, podRef, UnsupportedPod, volumeFiles, type KeyLookup, type Pod, type PodFacts } from './pod-spec.js';

/**
 * The container side of the conformance node: each container of a pod runs as a local process
 * inside the pod's network namespace (`ip netns exec`, which also gives it a private mount
 * namespace). Volumes are files under the pod's state directory bind-mounted at their mountPath
 * there; a mountPath whose parent does not exist on the host (/etc/secret-volume) is created in a
 * tmpfs-backed overlay of its nearest existing ancestor, so the host's tree is never touched.
 */

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * A shell script that makes the container's mounts, then execs the binary and arguments given to
 * it. The binary is opened before the mounts and run through /proc/self/fd: a mount may hide its
 * path (coredns mounts its ConfigMap at /root, where the build cache lives).
 */
export function mountScript(mounts: { source: string; target: string }[], scratch: string): string {
  const lines = ['#!/bin/sh', 'set -e', 'exec 3<"$1"', 'shift'];
  const overlaid = new Set<string>();
  for (const [i, m] of mounts.entries()) {
    let anchor = m.target;
    while (!existsSync(anchor)) anchor = path.dirname(anchor);
    if (anchor !== m.target && !overlaid.has(anchor)) {
      overlaid.add(anchor);
      const dir = path.join(scratch, `overlay-${i}`);
      lines.push(
        `mkdir -p ${quote(dir)}`,
        `mount -t tmpfs tmpfs ${quote(dir)}`,
        `mkdir ${quote(`${dir}/upper`)} ${quote(`${dir}/work`)}`,
        `mount -t overlay overlay -o ${quote(`lowerdir=${anchor},upperdir=${dir}/upper,workdir=${dir}/work`)} ${quote(anchor)}`,
      );
    }
    lines.push(`mkdir -p ${quote(m.target)}`, `mount --bind ${quote(m.source)} ${quote(m.target)}`);
  }
  lines.push('exec /proc/self/fd/3 "$@"');
  return `${lines.join('\n')}\n`;
}

export interface ContainerProcess {
  name: string;
  child: ChildProcess;
  startedAt: string;
  exited: Promise<number | null>;
}

export interface LaunchContext {
  binDir: string;
  /** This pod's directory: volumes, scripts, logs. */
  podDir: string;
  logDir: string;
  netns: string;
  facts: PodFacts;
  lookup: KeyLookup;
}

/** Writes the pod's volumes once; containers mount them. */
export async function writeVolumes(pod: Pod, ctx: LaunchContext): Promise<Map<string, string>> {
  const dirs = new Map<string, string>();
  for (const volume of pod.spec.volumes ?? []) {
    const dir = path.join(ctx.podDir, 'volumes', volume.name);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    for (const f of await volumeFiles(pod, volume, ctx.lookup)) {
      const file = path.join(dir, f.path);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, f.content);
      await chmod(file, f.mode);
    }
    dirs.set(volume.name, dir);
  }
  return dirs;
}

export async function startContainer(pod: Pod, index: number, volumes: Map<string, string>, ctx: LaunchContext): Promise<ContainerProcess> {
  const c = pod.spec.containers[index];
  if (!c) throw new Error(`pod ${podRef(pod)} has no container ${index}`);
  const { file, args } = commandFor(pod, index, ctx.binDir);
  if (!existsSync(file)) throw new Error(`pod ${podRef(pod)}: ${file} is missing (scripts/k8s-tools.sh conformance builds it)`);
  const env = await containerEnv(pod, index, ctx.facts, ctx.lookup);
  const mounts = (c.volumeMounts ?? []).map((m, i) => {
    const source = volumes.get(m.name);
    if (!source) throw new UnsupportedPod(`pod ${podRef(pod)} spec.containers[${index}].volumeMounts[${i}].name: no volume ${m.name}`);
    if (m.subPath) throw new UnsupportedPod(`pod ${podRef(pod)} spec.containers[${index}].volumeMounts[${i}].subPath is not supported by the conformance node`);
    return { source, target: m.mountPath };
  });
  const scratch = path.join(ctx.podDir, `mnt-${c.name}`);
  const script = path.join(ctx.podDir, `start-${c.name}.sh`);
  await mkdir(scratch, { recursive: true });
  await writeFile(script, mountScript(mounts, scratch), { mode: 0o755 });
  await mkdir(ctx.logDir, { recursive: true });
  const logFile = path.join(ctx.logDir, `${pod.metadata.namespace}_${pod.metadata.name}_${c.name}.log`);
  const log = openSync(logFile, 'a');
  // PATH for `mount` and friends inside the script; nothing else of the agent's environment leaks in.
  const child = spawn('ip', ['netns', 'exec', ctx.netns, '/bin/sh', script, file, ...args], {
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
    stdio: ['ignore', log, log],
    detached: true,
  });
  closeSync(log);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : null)));
    child.once('error', () => resolve(127));
  });
  return { name: c.name, child, startedAt: new Date().toISOString(), exited };
}

/** True once the process listens on a TCP or UDP port: what "ready" means without probes here. */
export function isListening(pid: number): boolean {
  for (const table of ['tcp', 'tcp6', 'udp', 'udp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      return false;
    }
    const rows = text.split('\n').slice(1);
    // TCP state 0A is LISTEN; a bound UDP socket shows state 07 with no remote address.
    if (rows.some((r) => { const f = r.trim().split(/\s+/); return f[3] === '0A' || (table.startsWith('udp') && f[3] === '07'); })) return true;
  }
  return false;
}

/** SIGTERM to the container's process group, SIGKILL after graceMs. */
export async function stopContainer(p: ContainerProcess, graceMs: number): Promise<void> {
  const pid = p.child.pid;
  if (pid === undefined || p.child.exitCode !== null || p.child.signalCode !== null) return;
  const signal = (s: NodeJS.Signals): void => {
    try {
      process.kill(-pid, s);
    } catch {
      // already gone
    }
  };
  signal('SIGTERM');
  const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), graceMs).unref());
  if ((await Promise.race([p.exited, timer])) === 'timeout') {
    signal('SIGKILL');
    await p.exited;
  }
}
