import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

/**
 * The Kubernetes tests run against a real API server: the one KUBECONFIG names, or the local
 * control plane of `make k8s-up` (started here when it is not running). A cluster that cannot
 * be had fails the run with the reason; nothing is skipped.
 */
export default function setup(project: TestProject): void {
  const root = path.resolve(import.meta.dirname, '../..');
  let kubeconfig = process.env.KUBECONFIG;
  if (!kubeconfig) {
    process.stderr.write('k8s tests: starting the local control plane (scripts/k8s-up.sh)\n');
    execFileSync(path.join(root, 'scripts/k8s-up.sh'), { stdio: ['ignore', 'inherit', 'inherit'] });
    kubeconfig = path.join(root, '.k8s/kubeconfig');
  }
  if (!existsSync(kubeconfig)) throw new Error(`k8s tests: kubeconfig ${kubeconfig} does not exist: run make k8s-up or set KUBECONFIG`);
  const kubectl = process.env.KUBECTL ?? path.join(root, '.k8s/bin/kubectl');
  try {
    execFileSync(kubectl, ['--kubeconfig', kubeconfig, 'get', '--raw', '/readyz'], { stdio: 'pipe', timeout: 20_000 });
  } catch (err) {
    const detail = err instanceof Error && 'stderr' in err ? String((err as { stderr: unknown }).stderr) : String(err);
    throw new Error(`k8s tests: the API server behind ${kubeconfig} is not ready: ${detail.trim()}`);
  }
  process.env.KUBECONFIG = kubeconfig;
  project.provide('kubeconfig', kubeconfig);
  project.provide('kubectl', kubectl);
}

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
    kubectl: string;
  }
}
