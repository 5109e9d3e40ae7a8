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

/** The memo toAttemptFormResources and prebuildAttemptForms keep for `form` and `options`: `previous` when it is for the same. */
function memoFor(options: Partial<EnvoyOptions>, form: AttemptFactsForm, previous: AttemptFormsMemo | undefined): { opts: EnvoyOptions; memo: AttemptFormsMemo } {
  const opts = { ...DEFAULT_ENVOY_OPTIONS, ...options };
  const key = optionsKey(opts);
  const memo = previous !== undefined && previous.form === form && previous.options === key ? previous : { form, options: key, built: new WeakMap<ClusterIR, BuiltForm>() };
  return { opts, memo };
}

function buildForm(c: ClusterIR, opts: EnvoyOptions, form: AttemptFactsForm): BuiltForm {
  return {
    cluster: encodedStandIn(toEnvoyCluster(c, opts, form)),
    endpoints: c.discovery === 'eds' ? encodedStandIn(toClusterLoadAssignment(c, opts, form)) : undefined,
  };
}

/**
 * Builds, into the memo, the AI clusters of `ir` in `form` that it lacks (only those named in
 * `only` when given), until `enough()` says to stop (asked every few clusters): the same work
 * as toAttemptFormResources, in slices, so a caller can build the form of 10,000 clusters
 * without holding its event loop (0.85 s in one go). `done` when nothing is left to build; a
 * toAttemptFormResources with the returned memo then only collects.
 */
export function prebuildAttemptForms(
  ir: IR,
  options: Partial<EnvoyOptions>,
  form: AttemptFactsForm,
  previous: AttemptFormsMemo | undefined,
  only: ReadonlySet<string> | undefined,
  enough: () => boolean,
): { memo: AttemptFormsMemo; done: boolean } {
  const { opts, memo } = memoFor(options, form, previous);
  let sinceCheck = 0;
  for (const c of ir.clusters) {
    if (c.ai === undefined || (only !== undefined && !only.has(c.name)) || memo.built.has(c)) continue;
    if (++sinceCheck > PREBUILD_CHECK_EVERY) {
      sinceCheck = 1;
      if (enough()) return { memo, done: false };
    }
    memo.built.set(c, buildForm(c, opts, form));
  }
  return { memo, done: true };
}

/** Clusters built between two asks of enough(): about 1 ms of work. */
const PREBUILD_CHECK_EVERY = 8;

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
  const { opts, memo } = memoFor(options, form, previous);
  const built = memo.built;
  const clusters: EnvoyResource[] = [];
  const endpoints: EnvoyResource[] = [];
  for (const c of ir.clusters) {
    if (c.ai === undefined || (only !== undefined && !only.has(c.name))) continue;
    let done = built.get(c);
    if (done === undefined) {
      done = buildForm(c, opts, form);
      built.set(c, done);
    }
    clusters.push(done.cluster);
    if (done.endpoints !== undefined) endpoints.push(done.endpoints);
  }
  return { resources: { clusters, endpoints }, memo };
}
