import { ATTEMPT_FACTS_FORMAT } from '../envoy/attempt-facts.js';
import type { NodeInfo } from './wire.js';

/**
 * Which data planes must be served the previous release's attempt facts form (one endpoint
 * metadata key and CEL attribute per fact, src/envoy/attempt-forms.ts): those with an Envoy
 * connected whose bootstrap does not say its AI extension reads the facts string. The version
 * skew rule (src/ai-extension/README.md): a controller serves data planes of its own release and
 * of the one before without a failed request, so during a rolling upgrade every Envoy of a data
 * plane gets the form its oldest extension reads, and the facts string once the last older
 * Envoy has left. The server only reports the views; which resources they get is decided and
 * built outside it (src/app/gateway-runtime.ts), so the server never translates.
 */

/**
 * Envoy's own user agent: only an Envoy runs the AI extension's ext_proc filter. Other xDS clients
 * (the AI extension's credentials client, gRPC's xDS client) never read the facts, and must not
 * hold a data plane in the legacy form.
 */
const ENVOY_USER_AGENT = 'envoy';

/** Whether this client needs the legacy form: an Envoy whose node metadata names no facts format this release writes. */
export function needsLegacyAttemptFacts(node: NodeInfo | undefined): boolean {
  return node !== undefined && node.userAgent === ENVOY_USER_AGENT && node.attemptFacts !== ATTEMPT_FACTS_FORMAT;
}

/** The streams that need the legacy form, by view key; the set of those views, kept up to date. */
export class AttemptFormViews {
  private readonly streams = new Map<string, Set<number>>();
  private current: ReadonlySet<string> = new Set();

  /** The views (Gateway "namespace/name", or SHARED_VIEW) served the legacy form now. */
  get legacy(): ReadonlySet<string> {
    return this.current;
  }

  /** A stream of `view` that needs the legacy form was selected; true when the set of legacy views changed. */
  add(view: string, stream: number): boolean {
    let streams = this.streams.get(view);
    if (streams === undefined) {
      streams = new Set();
      this.streams.set(view, streams);
    }
    streams.add(stream);
    return this.update();
  }

  /** That stream closed; true when the set of legacy views changed. */
  remove(view: string, stream: number): boolean {
    const streams = this.streams.get(view);
    if (streams === undefined || !streams.delete(stream)) return false;
    if (streams.size === 0) this.streams.delete(view);
    return this.update();
  }

  private update(): boolean {
    if (this.streams.size === this.current.size && [...this.streams.keys()].every((key) => this.current.has(key))) return false;
    this.current = new Set(this.streams.keys());
    return true;
  }
}
