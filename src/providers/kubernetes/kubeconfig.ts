import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';

export interface LoadedKubeConfig {
  config: KubeConfig;
  /** Where it came from, for logs: a file path or "in-cluster". */
  source: string;
  server: string;
}

export interface KubeConfigChoice {
  /** --kubeconfig: wins over everything else. */
  kubeconfig?: string;
  env?: NodeJS.ProcessEnv;
  home?: string;
}

/**
 * The API server to talk to, in the order client-go's tools use: an explicit file, $KUBECONFIG,
 * the in-cluster service account (KUBERNETES_SERVICE_HOST), then ~/.kube/config.
 */
export function loadKubeConfig(choice: KubeConfigChoice = {}): LoadedKubeConfig {
  const env = choice.env ?? process.env;
  const config = new KubeConfig();
  let source: string;
  if (choice.kubeconfig) {
    if (!existsSync(choice.kubeconfig)) throw new Error(`kubeconfig ${choice.kubeconfig} does not exist`);
    config.loadFromFile(choice.kubeconfig);
    source = choice.kubeconfig;
  } else if (env['KUBECONFIG']) {
    const files = env['KUBECONFIG'].split(path.delimiter).filter((f) => f !== '');
    const missing = files.filter((f) => !existsSync(f));
    if (missing.length === files.length) throw new Error(`KUBECONFIG names ${files.join(', ')}, and none of them exists`);
    const [first, ...rest] = files.filter((f) => existsSync(f));
    config.loadFromFile(first ?? '');
    for (const f of rest) {
      const more = new KubeConfig();
      more.loadFromFile(f);
      config.mergeConfig(more);
    }
    source = files.join(path.delimiter);
  } else if (env['KUBERNETES_SERVICE_HOST']) {
    config.loadFromCluster();
    source = 'in-cluster service account';
  } else {
    const file = path.join(choice.home ?? homedir(), '.kube', 'config');
    if (!existsSync(file)) {
      throw new Error('no Kubernetes configuration: pass --kubeconfig PATH, set KUBECONFIG, run inside a cluster, or create ~/.kube/config');
    }
    config.loadFromFile(file);
    source = file;
  }
  const cluster = config.getCurrentCluster();
  if (!cluster) throw new Error(`kubeconfig ${source}: the current context "${config.getCurrentContext()}" names no cluster`);
  return { config, source, server: cluster.server };
}
