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
    if (!existsSync(choice.kubeconfig)) throw new Error(`kubeconfig ${choice.kubeconfig} (from --kubeconfig) does not exist: check the path, or leave --kubeconfig out to use $KUBECONFIG, the in-cluster service account or ~/.kube/config`);
    loadFile(config, choice.kubeconfig, '--kubeconfig');
    source = choice.kubeconfig;
  } else if (env['KUBECONFIG']) {
    const files = env['KUBECONFIG'].split(path.delimiter).filter((f) => f !== '');
    const missing = files.filter((f) => !existsSync(f));
    if (missing.length === files.length) throw new Error(`KUBECONFIG names ${files.join(', ')}, and none of them exists`);
    const [first, ...rest] = files.filter((f) => existsSync(f));
    loadFile(config, first ?? '', 'KUBECONFIG');
    for (const f of rest) {
      const more = new KubeConfig();
      loadFile(more, f, 'KUBECONFIG');
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
    loadFile(config, file, '~/.kube/config');
    source = file;
  }
  const context = config.getCurrentContext();
  if (!context) throw new Error(`kubeconfig ${source} has no current-context: set one (kubectl config use-context NAME) or give another file`);
  const cluster = config.getCurrentCluster();
  if (!cluster) throw new Error(`kubeconfig ${source}: the current context "${context}" names no cluster: fix its contexts[].context.cluster or give another file`);
  return { config, source, server: cluster.server };
}

/**
 * Loads one kubeconfig file; an unreadable or malformed file is an error naming the file, where it
 * came from (`via`) and what is wrong, instead of the YAML parser's bare message.
 */
function loadFile(config: KubeConfig, file: string, via: string): void {
  try {
    config.loadFromFile(file);
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? String(err.code) : '';
    const message = err instanceof Error ? err.message : String(err);
    const what = code === 'EACCES' ? 'cannot be read (permission denied)'
      : code === 'EISDIR' ? 'is a directory, not a kubeconfig file'
      : code !== '' && code.startsWith('E') ? `cannot be read (${code})`
      : `is not a valid kubeconfig: ${message.split('\n')[0] ?? message}`;
    throw new Error(`kubeconfig ${file} (from ${via}) ${what}; fix it or point ${via === 'KUBECONFIG' ? 'KUBECONFIG' : '--kubeconfig'} at another file`, { cause: err });
  }
}
