import { condition } from '../api/conditions.js';
import type { HTTPRoute } from '../api/httproute.js';
import type { IR, RouteIR } from '../ir/model.js';
import type { ObjectStatus } from '../translate/status.js';
import { CulpritSearch } from './culprit-search.js';

/**
 * Defence in depth behind the translator's own checks: HTTPRoutes that Envoy still rejects are
 * left out of the configuration, so one bad route does not freeze its listener.
 *
 * Why here and how. Envoy rejects a RouteConfiguration whole and keeps the last one it accepted,
 * so after one NACK every later route change on that listener is ignored (a new valid route
 * answers 404) until the bad route is gone. The translator stays pure; the runtime, which sees
 * ACKs and NACKs, keeps this small state and translates again without the routes it holds out.
 *
 * The search itself (culprit-search.ts) is shared with the quarantine of the other types
 * (resource-quarantine.ts); what differs is the unit: here an HTTPRoute, since one
 * RouteConfiguration holds every route of a listener.
 *
 * - Each pushed route version is fingerprinted per HTTPRoute (the route entries it contributed).
 * - On a NACK of version V by an Envoy, the suspects are the HTTPRoutes whose contribution differs
 *   between V and the last version that Envoy ACKed (everything, if it never ACKed one). One
 *   suspect, or a suspect Envoy's message names, is the culprit: it is quarantined with Envoy's
 *   reason in its own status. Several suspects are all held out, and each ACK re-admits the next
 *   one alone: the NACK that follows a re-admission has exactly one suspect. Probing costs nothing
 *   to traffic, since Envoy keeps its last good configuration through a NACK.
 * - A quarantined route is re-admitted when its spec changes (or it is deleted and re-created).
 *
 * An Envoy that rejects what others accept (for example
 * one bootstrapped by hand with Envoy's default RE2 program size limit) still gets the culprit
 * quarantined for every Envoy: the controller serves one configuration.
 */
/** A route's spec as JSON, per route object: the provider keeps an unchanged route's object. */
const specJson = new WeakMap<HTTPRoute, string>();

export class RouteQuarantine {
  /** Route key → its route entries, per pushed route version (recent ones only). */
  private readonly fingerprints = new Map<string, Map<string, Contribution>>();
  private readonly ackedByNode = new Map<string, string>();
  /** Culprits are keyed by HTTPRoute, with the spec they were rejected with as their fingerprint. */
  private readonly search = new CulpritSearch();
  /** The routes of the last translation; keyed and stringified only when a culprit or NACK asks. */
  private routes: readonly HTTPRoute[] = [];
  private byKey: Map<string, HTTPRoute> | undefined;
  private current: string | undefined;
  /**
   * The version last served and its IR, fingerprinted once this turn ends: at a first load of
   * 10,000 routes the response need not wait for a pass over them. Whatever needs them (a NACK,
   * the next translation, which may reuse the IR's objects) fingerprints it first.
   */
  private pending: { version: string; ir: IR } | undefined;
  private pendingTimer: NodeJS.Immediate | undefined;

  private spec(key: string): string | undefined {
    this.byKey ??= new Map(this.routes.map((r) => [routeKey(r), r]));
    const route = this.byKey.get(key);
    if (route === undefined) return undefined;
    let json = specJson.get(route);
    if (json === undefined) {
      json = JSON.stringify(route.spec);
      specJson.set(route, json);
    }
    return json;
  }

  /** Before each translation: forgets culprits whose spec changed or that were deleted. */
  refresh(routes: readonly HTTPRoute[]): void {
    this.settle();
    this.routes = routes;
    this.byKey = undefined;
    // With nothing held there is nothing to forget: an edit among many routes costs no pass over them.
    if (this.search.held().size > 0) this.search.refresh((key) => this.spec(key));
  }

  /** HTTPRoutes ("namespace/name") to leave out of the next translation. */
  excluded(): ReadonlySet<string> {
    return this.search.held();
  }

  /**
   * After a push: the route version served and the IR it came from. True when the runtime must
   * translate again: a re-admitted route that changed nothing (no new version, so no ACK to wait
   * for) lets the next suspect in at once.
   */
  served(version: string | undefined, ir: IR): boolean {
    if (version === undefined) return false;
    const unchanged = version === this.current;
    this.current = version;
    if (!this.fingerprints.has(version) && this.pending?.version !== version) {
      this.settle();
      this.pending = { version, ir };
      this.pendingTimer = setImmediate(() => this.settle());
    }
    this.prune();
    if (!unchanged || !this.search.admitting) return false;
    return this.search.admitNext();
  }

  /** An Envoy ACKed route version `version`; true when the runtime must translate again. */
  ack(node: string, version: string): boolean {
    this.ackedByNode.set(node, version);
    this.prune();
    if (version !== this.current) return false;
    return this.search.admitNext();
  }

  /** An Envoy NACKed route version `version`; true when the runtime must translate again. */
  nack(node: string, version: string, message: string): boolean {
    this.settle();
    const rejected = this.fingerprints.get(version);
    if (!rejected) return false;
    const base = this.fingerprints.get(this.ackedByNode.get(node) ?? '') ?? new Map<string, Contribution>();
    const suspects = new Map([...rejected.keys()].filter((k) => !sameContribution(rejected.get(k), base.get(k))).map((k) => [k, this.spec(k) ?? '']));
    return this.search.rejected(node, suspects, message, (k) => message.includes(`${k}/rule/`));
  }

  /** Statuses of the held-out routes, from a translation that included them: Accepted=False, why. */
  statuses(full: readonly ObjectStatus[]): ObjectStatus[] {
    const out: ObjectStatus[] = [];
    for (const s of full) {
      if (s.kind !== 'HTTPRoute' || !('parents' in s)) continue;
      const key = `${s.namespace}/${s.name}`;
      const culprit = this.search.culprit(key);
      const held = this.search.isPending(key);
      if (!culprit && !held) continue;
      const accepted = culprit
        ? { status: false, reason: 'UnsupportedValue', message: `Envoy ${culprit.node} rejected this route: ${culprit.reason}; the route is left out until its spec changes, the rest of the listener is served` }
        : { status: false, reason: 'Pending', message: 'held out while Switchyard finds which changed route Envoy rejected' };
      out.push({
        ...s,
        parents: s.parents.map((p) => ({
          ...p,
          conditions: p.conditions.map((c) => {
            if (c.type !== 'Accepted') return c;
            return condition('Accepted', accepted.status, accepted.reason, accepted.message, c.observedGeneration);
          }),
        })),
      });
    }
    return out;
  }

  /** Fingerprints the pending version, if any. */
  private settle(): void {
    if (this.pendingTimer !== undefined) clearImmediate(this.pendingTimer);
    this.pendingTimer = undefined;
    const pending = this.pending;
    if (pending === undefined) return;
    this.pending = undefined;
    this.fingerprints.set(pending.version, routeFingerprints(pending.ir));
    this.prune();
  }

  /** Keeps the fingerprints of the current version, of every version an Envoy last ACKed, and of the 8 newest. */
  private prune(): void {
    const keep = new Set([...this.ackedByNode.values(), ...(this.current ? [this.current] : []), ...[...this.fingerprints.keys()].slice(-8)]);
    for (const v of this.fingerprints.keys()) if (!keep.has(v)) this.fingerprints.delete(v);
  }
}

function routeKey(r: HTTPRoute): string {
  return `${r.metadata.namespace}/${r.metadata.name}`;
}

/**
 * What one HTTPRoute contributes to the route type: its entries, each with where it is placed
 * (listener and virtual host names).
 */
type Contribution = { readonly where: string; readonly route: RouteIR }[];

/**
 * A route entry's JSON, per entry object: translation hands over the same object while the entry
 * is unchanged (the Envoy stage reuses its output on the same grounds), so only entries that are
 * new objects are ever stringified, and only when a NACK compares them.
 */
const routeJsons = new WeakMap<RouteIR, string>();

function routeJson(r: RouteIR): string {
  let json = routeJsons.get(r);
  if (json === undefined) {
    json = JSON.stringify(r);
    routeJsons.set(r, json);
  }
  return json;
}

/** Equal entries in the same places: the same objects, or equal JSON where they are not. */
function sameContribution(a: Contribution | undefined, b: Contribution | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i];
    return y !== undefined && x.where === y.where && (x.route === y.route || routeJson(x.route) === routeJson(y.route));
  });
}

/** Each HTTPRoute's contribution to the route type. */
export function routeFingerprints(ir: IR): Map<string, Contribution> {
  const parts = new Map<string, Contribution>();
  for (const l of ir.listeners) {
    for (const vh of l.virtualHosts) {
      const where = `${l.name} ${vh.name}`;
      for (const r of vh.routes) {
        // Entries of no HTTPRoute (GET /v1/models, written from the others) cannot be held out.
        const at = r.name.indexOf('/rule/');
        if (at < 0) continue;
        const key = r.name.slice(0, at);
        const list = parts.get(key);
        if (list === undefined) parts.set(key, [{ where, route: r }]);
        else list.push({ where, route: r });
      }
    }
  }
  return parts;
}
