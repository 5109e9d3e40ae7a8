/**
 * What `switchyard translate -f FILE -o yaml` prints, computed without the file system: the same
 * document parsing (parseManifestFile), the same snapshot building (ManifestStore, which stamps
 * generations), the same pipeline and report (runPipeline, translateReport). The golden test also
 * runs the real command on every case and requires the same bytes.
 */
import { stringify } from 'yaml';
import type { XdsResources } from '../../src/envoy/resources.js';
import { runPipeline, translateReport } from '../../src/pipeline.js';
import { ManifestStore, parseManifestFile, type Snapshot } from '../../src/providers/manifest-files.js';
import type { Inputs } from '../../src/translate/inputs.js';

/** Listener address the printed resources bind to (what a Gateway pod's Envoy uses). */
export const PRINTED_LISTENER_ADDRESS = '0.0.0.0';

/** Manifest files, named as users see them (e.g. "test/golden/x.in.yaml"), in path order → one snapshot. */
export function snapshotOf(files: readonly { name: string; text: string }[]): Snapshot {
  return new ManifestStore().build(files.map((f) => ({ name: f.name, documents: parseManifestFile(f.name, f.text) })));
}

/**
 * The printed form of a translation: `{xds, statuses}` as YAML, secret values redacted. The one
 * place golden files are rendered; it belongs with the `translate` command (src/cli), whose
 * YAML options it repeats.
 */
export function renderTranslateOutput(inputs: Inputs): string {
  const report = translateReport(runPipeline(inputs, { listenerAddress: PRINTED_LISTENER_ADDRESS }));
  // Shared sub-objects (one config source spread into many resources) print in full, not as YAML aliases.
  return stringify(report, { lineWidth: 0, aliasDuplicateObjects: false });
}

/**
 * The Envoy resources as an Envoy that serves every Gateway receives them (secret values
 * included; without the listeners of a port an older Gateway holds): for validation, never for
 * printing.
 */
export function envoyResources(inputs: Inputs): XdsResources {
  const { xds, planes } = runPipeline(inputs, { listenerAddress: PRINTED_LISTENER_ADDRESS });
  const leftOut = (field: keyof XdsResources): ReadonlySet<string> => new Set(planes.shared.excluded[field] ?? []);
  const keep = (field: keyof XdsResources): XdsResources[typeof field] => xds[field].filter((r) => !leftOut(field).has(String(r['name'])));
  return { listeners: keep('listeners'), routes: keep('routes'), clusters: xds.clusters, endpoints: xds.endpoints, secrets: xds.secrets };
}
