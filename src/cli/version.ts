import { readFileSync } from 'node:fs';
import { parseFlags } from './flags.js';
import { output } from './flag-values.js';

/** The Envoy release Switchyard is built and tested against (kept equal to scripts/ensure-envoy.sh). */
export const EXPECTED_ENVOY_VERSION = '1.40.0';

export interface VersionInfo {
  switchyard: string;
  node: string;
  envoy: string;
}

/** This package's version (package.json sits two levels up from src/cli and from dist/cli). */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export function versionInfo(): VersionInfo {
  return { switchyard: packageVersion(), node: process.versions.node, envoy: EXPECTED_ENVOY_VERSION };
}

export function formatVersion(v: VersionInfo): string {
  return `switchyard ${v.switchyard}\nnode ${v.node}\nenvoy ${v.envoy} (expected by this release)\n`;
}

export async function runVersion(args: string[]): Promise<number> {
  const { values } = parseFlags('version', { args, options: { output: { type: 'string', short: 'o' } } });
  const info = versionInfo();
  process.stdout.write(values.output === undefined ? formatVersion(info) : await output(info, values.output));
  return 0;
}
