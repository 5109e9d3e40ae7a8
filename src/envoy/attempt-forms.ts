import type { ClusterIR, IR } from '../ir/model.js';
import type { AttemptFactsForm } from './ai-extension.js';
import { toClusterLoadAssignment, toEnvoyCluster } from './clusters.js';
import { encodedStandIn } from './encoded.js';
import { DEFAULT_ENVOY_OPTIONS, type EnvoyOptions } from './options.js';
import type { EnvoyResource, XdsResources } from './resources.js';

/**
 * The resources whose bytes depend on the attempt facts form: every AI cluster and, for those
 * served over EDS, its ClusterLoadAssignment. A data plane served in the 'legacy' form gets these
 * in place of the ones of the same names toXdsResources built ('packed'); everything else is the
 * same in both forms.
 */
export type AttemptFormResources = Pick<XdsResources, 'clusters' | 'endpoints'>;

/** What one AI cluster gave in a form: reused while the IR object is the same. */
interface BuiltForm {
  readonly cluster: EnvoyResource;
  readonly endpoints: EnvoyResource | undefined;
}

/** What toAttemptFormResources keeps between calls. */
export interface AttemptFormsMemo {
  readonly form: AttemptFactsForm;
  readonly options: string;
  readonly built: WeakMap<ClusterIR, BuiltForm>;
}

function optionsKey(opts: EnvoyOptions): string {
  return JSON.stringify({ ...opts, gatewayAddresses: [...(opts.gatewayAddresses ?? new Map<string, string>())] });
}

/**
 * The AI clusters of `ir` (and their EDS assignments) in `form`, encoded once (encodedStandIn);
 * only those named in `only` when given (the clusters of the data planes that need the form).
 * Pure but for `previous`: an AI cluster whose IR object was seen by the last call with the same
 * form and options is not built again, so following an edit costs what it changed. Only built
 * while some data plane needs a form other than the one toXdsResources built.
 */
export function toAttemptFormResources(
  ir: IR,
  options: Partial<EnvoyOptions>,
  form: AttemptFactsForm,
  previous?: AttemptFormsMemo,
  only?: ReadonlySet<string>,
): { resources: AttemptFormResources; memo: AttemptFormsMemo } {
  const opts = { ...DEFAULT_ENVOY_OPTIONS, ...options };
  const key = optionsKey(opts);
  const built = previous !== undefined && previous.form === form && previous.options === key ? previous.built : new WeakMap<ClusterIR, BuiltForm>();
  const clusters: EnvoyResource[] = [];
  const endpoints: EnvoyResource[] = [];
  for (const c of ir.clusters) {
    if (c.ai === undefined || (only !== undefined && !only.has(c.name))) continue;
    let done = built.get(c);
    if (done === undefined) {
      done = {
        cluster: encodedStandIn(toEnvoyCluster(c, opts, form)),
        endpoints: c.discovery === 'eds' ? encodedStandIn(toClusterLoadAssignment(c, opts, form)) : undefined,
      };
      built.set(c, done);
    }
    clusters.push(done.cluster);
    if (done.endpoints !== undefined) endpoints.push(done.endpoints);
  }
  return { resources: { clusters, endpoints }, memo: { form, options: key, built } };
}
