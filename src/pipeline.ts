import { toDataPlanes, toXdsResources, type DataPlanes } from './envoy/index.js';
import type { EnvoyOptions } from './envoy/options.js';
import type { XdsResources } from './envoy/resources.js';
import { redactSecrets } from './envoy/secrets.js';
import type { Inputs } from './translate/inputs.js';
import { translate, type Translation } from './translate/index.js';
import type { ObjectStatus } from './translate/status.js';

/** One pass of the pipeline: inputs → translate → Envoy resources. Pure. */
export interface PipelineResult {
  translation: Translation;
  xds: XdsResources;
  /** Which of those resources each data plane (a Gateway's Envoys, or the shared one) receives. */
  planes: DataPlanes;
}

export function runPipeline(inputs: Inputs, envoy: Partial<EnvoyOptions> = {}): PipelineResult {
  const translation = translate(inputs);
  return { translation, xds: toXdsResources(translation.ir, envoy), planes: toDataPlanes(translation.ir, envoy) };
}

/** What `switchyard translate` prints: exactly what would be served (secrets redacted) and every status. */
export interface TranslateReport {
  xds: XdsResources;
  statuses: ObjectStatus[];
}

export function translateReport(result: PipelineResult): TranslateReport {
  return { xds: redactSecrets(result.xds), statuses: result.translation.statuses };
}
