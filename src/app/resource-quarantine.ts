import { condition, type Condition } from '../api/conditions.js';
import type { Gateway } from '../api/gateway.js';
import { KIND_FIELD, resourceName, TypeUrl, type EnvoyResource, type ResourceKind, type XdsResources } from '../envoy/resources.js';
import type { ServedAs } from '../status/programmed.js';
import { certificateName, envoyListenerName } from '../translate/gateways.js';
import type { ObjectStatus } from '../translate/status.js';
import { contentVersion, type CachedResource } from '../xds/cache.js';
import type { StreamKind } from '../xds/client-state.js';
import { CulpritSearch, namesResource } from './culprit-search.js';

/** The types whose resources are quarantined one by one (routes are quarantined per HTTPRoute: route-quarantine.ts). */
export const GUARDED_KINDS: readonly ResourceKind[] = ['cluster', 'endpoint', 'secret', 'listener'];

const LABEL: Record<string, string> = {
  [TypeUrl.cluster]: 'cluster',
  [TypeUrl.endpoint]: 'endpoints of cluster',
  [TypeUrl.secret]: 'secret',
  [TypeUrl.listener]: 'listener',
};

/** What one ACK or NACK says about one stream's type (the xDS server's ack and nack events). */
export interface Reply {
  streamId: number;
  nodeId: string;
  kind: StreamKind;
  typeUrl: string;
  resources: readonly CachedResource[];
}

/**
 * Defence in depth for Clusters, ClusterLoadAssignments, Secrets and Listeners: a resource Envoy
 * rejects although translation let it through is held at the version an Envoy last accepted (or
 * withdrawn when none ever was), and its object says why; every other resource keeps moving.
 *
 * Why here. Envoy applies the valid resources of a rejected CDS or LDS update and keeps the rest
 * as they were, but the controller would read the NACK as "nothing of this type is programmed"
 * and every later version would carry the bad resource again. A filter between translation and
 * the cache, with its state here in the app layer, keeps the pipeline stages pure.
 *
 * The unit is the resource name. On a NACK the suspects are the resources of the rejected
 * response whose content differs from what that Envoy last accepted (delta: every resource of the
 * response, which carries only changes); Envoy's error_detail usually names the culprit (CDS and
 * LDS: "Error adding/updating cluster(s) NAME: ..."; SDS names none); if it does not and
 * several changed, all are held at their accepted version and let in again one per ACK
 * (culprit-search.ts). A culprit is let in again when translation produces different content
 * for it (its object changed); the status clears once Envoy accepts it.
 */
export class ResourceQuarantine {
  private readonly searches = new Map<string, CulpritSearch>(GUARDED_KINDS.map((k) => [TypeUrl[k], new CulpritSearch()]));
  /** Per type: name → the last content of it that an Envoy accepted (the cache's own record: no copy per resource). */
  private readonly accepted = new Map<string, Map<string, CachedResource>>();
  /**
   * Per SotW stream and type: the set it last ACKed (the response's own array, so a fleet costs
   * one reference per stream). A delta NACK needs none: it carries only what changed.
   */
  private readonly ackedSets = new Map<number, Map<string, readonly CachedResource[]>>();
  /** Per type: what the last filter served. */
  private readonly served = new Map<string, readonly EnvoyResource[]>();
  /**
   * Per type: the resources of the last ACK folded into `accepted`. A fleet ACKs one shared
   * response a thousand times (the same array): it is folded once, not a thousand times over
   * every resource of a whole configuration.
   */
  private readonly lastFolded = new Map<string, readonly CachedResource[]>();

  /** Translation output → what is served: held resources at their accepted content, or left out. */
  filter(xds: XdsResources): XdsResources {
    const out: XdsResources = { ...xds };
    for (const kind of GUARDED_KINDS) {
      const typeUrl = TypeUrl[kind];
      const field = KIND_FIELD[kind];
      const search = this.search(typeUrl);
      // Nothing held (the usual case): no fingerprints to compute, the translation is served as is.
      if (search.held().size > 0) {
        const byName = new Map(xds[field].map((r) => [resourceName(r), r]));
        search.refresh((name) => {
          const r = byName.get(name);
          return r === undefined ? undefined : contentVersion(r);
        });
        const held = search.held();
        const accepted = this.accepted.get(typeUrl);
        out[field] = xds[field].flatMap((r) => {
          const name = resourceName(r);
          if (!held.has(name)) return [r];
          const last = accepted?.get(name);
          return last ? [last.resource] : [];
        });
      }
      this.served.set(typeUrl, out[field]);
    }
    return out;
  }

  /**
   * After the filtered resources went to the cache: `changed` are the types whose served content
   * changed. A let-in resource that changed nothing gets no ACK to wait for, so the next one goes
   * in at once. True when the runtime must serve again.
   */
  afterServe(changed: ReadonlySet<string>): boolean {
    let again = false;
    for (const [typeUrl, search] of this.searches) {
      if (search.admitting && !changed.has(typeUrl)) again = search.admitNext() || again;
    }
    return again;
  }

  /** An ACK: its resources are accepted content. True when the runtime must serve again. */
  ack(reply: Reply): boolean {
    const search = this.searches.get(reply.typeUrl);
    if (search === undefined) return false;
    if (reply.kind === 'sotw') this.streamSets(reply.streamId).set(reply.typeUrl, reply.resources);
    let accepted = this.accepted.get(reply.typeUrl);
    if (accepted === undefined) {
      accepted = new Map();
      this.accepted.set(reply.typeUrl, accepted);
    }
    if (this.lastFolded.get(reply.typeUrl) !== reply.resources) {
      for (const r of reply.resources) {
        // A name met for the first time compares with itself (and is set): the version is read at
        // every fold, so that V8's code for ack(), compiled while a fleet connects (every name
        // new), has seen it and is not thrown away at the first edit ("insufficient type feedback").
        const last = accepted.get(r.name) ?? r;
        if (last.version !== r.version || last === r) accepted.set(r.name, r);
      }
      this.lastFolded.set(reply.typeUrl, reply.resources);
      this.pruneAccepted(reply.typeUrl);
    }
    if (!search.searching) return false;
    // Only an ACK of what is served now means the resources held out so far are not the problem.
    const served = new Map((this.served.get(reply.typeUrl) ?? []).map((r) => [resourceName(r), r]));
    const current = reply.resources.every((r) => {
      const now = served.get(r.name);
      return now === undefined || contentVersion(now) === r.version;
    });
    return current && search.admitNext();
  }

  /** A NACK: finds the culprit among the resources that changed for that stream. True when the runtime must serve again. */
  nack(reply: Reply & { message: string }): boolean {
    const search = this.searches.get(reply.typeUrl);
    if (search === undefined) return false;
    let changed = reply.resources;
    if (reply.kind === 'sotw') {
      const base = new Map((this.ackedSets.get(reply.streamId)?.get(reply.typeUrl) ?? []).map((r) => [r.name, r.version]));
      changed = reply.resources.filter((r) => base.get(r.name) !== r.version);
    }
    const suspects = new Map(changed.map((r) => [r.name, r.version]));
    return search.rejected(reply.nodeId, suspects, reply.message, (name) => namesResource(reply.message, name));
  }

  /** A stream ended: what it accepted no longer decides suspects. */
  forget(streamId: number): void {
    this.ackedSets.delete(streamId);
  }

  /** Some resource is held: statuses() may mark any object. */
  holding(): boolean {
    for (const s of this.searches.values()) if (s.held().size > 0) return true;
    return false;
  }

  /** "type name" of every culprit and pending suspect, for the log. */
  held(): string[] {
    return [...this.searches].flatMap(([typeUrl, s]) => [...s.held()].map((name) => `${LABEL[typeUrl] ?? typeUrl} ${name}`));
  }

  /**
   * The objects served as a held resource get Programmed=False: Rejected with Envoy's reason for
   * a culprit, Pending while the search runs. A Gateway's listener sections are marked too when
   * the resource is theirs (their port's Listener, or a Secret they name as certificate).
   */
  statuses(all: readonly ObjectStatus[], servedAs: ServedAs, gateways: readonly Gateway[]): ObjectStatus[] {
    if ([...this.searches.values()].every((s) => s.held().size === 0)) return [...all];
    const marks = new Map<string, { condition: Omit<Condition, 'observedGeneration'>; resources: { typeUrl: string; name: string }[] }>();
    for (const [key, served] of servedAs) {
      for (const r of served.resources) {
        const search = this.searches.get(r.typeUrl);
        if (search === undefined) continue;
        for (const name of r.names) {
          const mark = this.mark(r.typeUrl, name, search);
          if (mark === undefined) continue;
          const existing = marks.get(key);
          // A culprit's Rejected wins over another resource's Pending.
          if (existing === undefined || (existing.condition.reason === 'Pending' && mark.reason === 'Rejected')) marks.set(key, { condition: mark, resources: [...(existing?.resources ?? []), { typeUrl: r.typeUrl, name }] });
          else existing.resources.push({ typeUrl: r.typeUrl, name });
        }
      }
    }
    if (marks.size === 0) return [...all];
    return all.map((s) => {
      if (!('conditions' in s)) return s;
      const mark = marks.get(`${s.kind}/${s.namespace}/${s.name}`);
      if (mark === undefined) return s;
      const replace = (conditions: Condition[]): Condition[] =>
        conditions.map((c) => (c.type === 'Programmed' ? condition('Programmed', false, mark.condition.reason, mark.condition.message, c.observedGeneration) : c));
      if (s.kind === 'Gateway' && 'listeners' in s) {
        const spec = gateways.find((g) => g.metadata.namespace === s.namespace && g.metadata.name === s.name);
        const sections = new Set(mark.resources.flatMap((r) => sectionsOf(spec, r)));
        return { ...s, conditions: replace(s.conditions), listeners: s.listeners.map((l) => (sections.has(l.name) ? { ...l, conditions: replace(l.conditions) } : l)) };
      }
      return { ...s, conditions: replace(s.conditions) } as ObjectStatus;
    });
  }

  private mark(typeUrl: string, name: string, search: CulpritSearch): Omit<Condition, 'observedGeneration'> | undefined {
    const label = `${LABEL[typeUrl] ?? typeUrl} ${name}`;
    const culprit = search.culprit(name);
    if (culprit !== undefined) {
      const kept = this.accepted.get(typeUrl)?.has(name) ? 'the version it last accepted is served' : 'it is left out';
      return condition('Programmed', false, 'Rejected', `Envoy ${culprit.node} rejected ${label}: ${withoutEnvoyPrefix(culprit.reason, name)}; ${kept} until this object changes`);
    }
    if (search.isPending(name)) return condition('Programmed', false, 'Pending', `${label} is held at its last accepted version while Switchyard finds which changed resource Envoy rejected`);
    return undefined;
  }

  private search(typeUrl: string): CulpritSearch {
    const search = this.searches.get(typeUrl);
    if (search === undefined) throw new Error(`no quarantine for ${typeUrl}`);
    return search;
  }

  private streamSets(streamId: number): Map<string, readonly CachedResource[]> {
    let sets = this.ackedSets.get(streamId);
    if (sets === undefined) {
      sets = new Map();
      this.ackedSets.set(streamId, sets);
    }
    return sets;
  }

  /** Accepted content is kept only for names still served: memory follows the configuration. */
  private pruneAccepted(typeUrl: string): void {
    const accepted = this.accepted.get(typeUrl);
    const served = this.served.get(typeUrl);
    if (accepted === undefined || served === undefined || accepted.size <= served.length * 2 + 16) return;
    const names = new Set(served.map(resourceName));
    for (const name of accepted.keys()) if (!names.has(name)) accepted.delete(name);
  }
}

/** Envoy's "Error adding/updating cluster(s) NAME: " says again what the status already names. */
function withoutEnvoyPrefix(reason: string, name: string): string {
  const prefix = /^Error adding\/updating (?:cluster|listener)\(s\) /.exec(reason);
  if (prefix === null || !reason.startsWith(`${name}: `, prefix[0].length)) return reason;
  return reason.slice(prefix[0].length + name.length + 2);
}

/** The listener sections of `gateway` a held resource belongs to. */
function sectionsOf(gateway: Gateway | undefined, r: { typeUrl: string; name: string }): string[] {
  if (gateway === undefined) return [];
  const ns = gateway.metadata.namespace;
  if (r.typeUrl === TypeUrl.listener) return gateway.spec.listeners.filter((l) => r.name === envoyListenerName(gateway, l.port)).map((l) => l.name);
  if (r.typeUrl === TypeUrl.secret) {
    return gateway.spec.listeners.filter((l) => (l.tls?.certificateRefs ?? []).some((c) => r.name === certificateName(c.namespace ?? ns, c.name))).map((l) => l.name);
  }
  return [];
}
