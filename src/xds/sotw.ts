import { TypeUrl } from '../envoy/resources.js';
import { AdsStream, type AdsStreamOptions } from './ads-stream.js';
import { versionOfSet, type CachedResource, type TypeSnapshot } from './cache.js';
import { WILDCARD, absenceMeansRemoval, allowsLegacyWildcard, assignmentNamesOf } from './subscription.js';
import { sotwResponseBody, withNonce, type DiscoveryRequest } from './wire.js';

/**
 * Response bodies (DiscoveryResponse without nonce) shared by every SotW stream of the server,
 * keyed by type and set version: a thousand wildcard clients cost one encode per change.
 */
export class SharedResponseBodies {
  private readonly bodies = new Map<string, Map<string, Uint8Array>>();

  get(typeUrl: string, version: string, resources: readonly CachedResource[]): Uint8Array {
    let byVersion = this.bodies.get(typeUrl);
    if (byVersion === undefined) {
      byVersion = new Map();
      this.bodies.set(typeUrl, byVersion);
    }
    let body = byVersion.get(version);
    if (body === undefined) {
      body = sotwResponseBody(typeUrl, version, resources.map((resource) => resource.any));
      byVersion.set(version, body);
    }
    return body;
  }

  /** Drops the bodies of types that changed; the subsets of the old version are not asked for again. */
  invalidate(typeUrls: readonly string[]): void {
    for (const typeUrl of typeUrls) this.bodies.delete(typeUrl);
  }
}

interface SotwTypeState {
  wildcard: boolean;
  names: Set<string>;
  /** Nonce of the last response: only a request carrying it is an ACK/NACK; older ones are stale. */
  lastNonce: string | undefined;
  lastVersion: string | undefined;
  /** What the client was last sent, by name. */
  sent: Map<string, CachedResource>;
  /** The last response was ACKed (or none was sent yet). */
  settled: boolean;
}

export interface SotwStreamOptions extends AdsStreamOptions {
  bodies: SharedResponseBodies;
}

/**
 * One state-of-the-world ADS stream: subscriptions per type, nonces, ACK/NACK, and pushes of
 * the full subscribed set when (and only when) it differs from what this client was sent.
 */
export class SotwStream extends AdsStream<DiscoveryRequest, SotwTypeState, CachedResource> {
  /**
   * Only the cluster set: once the held clusters go, the assignments served on for them name
   * nothing, and an EDS set that only shrank is not pushed (absenceMeansRemoval).
   */
  protected readonly heldBack = [TypeUrl.cluster];
  private readonly bodies: SharedResponseBodies;

  constructor(options: SotwStreamOptions) {
    super(options);
    this.bodies = options.bodies;
  }

  protected newState(): SotwTypeState {
    return { wildcard: false, names: new Set(), lastNonce: undefined, lastVersion: undefined, sent: new Map(), settled: true };
  }

  protected acceptReply(state: SotwTypeState, request: DiscoveryRequest): boolean {
    const { hooks, logger } = this.options;
    if (request.responseNonce !== state.lastNonce) {
      // xDS protocol: a request with an older nonce is superseded by the response in flight.
      logger.debug({ typeUrl: request.typeUrl, nonce: request.responseNonce }, 'xds: stale nonce ignored');
      return false;
    }
    const version = state.lastVersion ?? '';
    if (request.errorDetail !== undefined) {
      hooks.nacked(request.typeUrl, version, request.errorDetail, [...state.sent.values()]);
    } else {
      state.settled = true;
      hooks.acked(request.typeUrl, request.versionInfo, [...state.sent.values()]);
    }
    return true;
  }

  protected updateSubscription(state: SotwTypeState, request: DiscoveryRequest, first: boolean): boolean {
    const names = request.resourceNames;
    const wildcard = names.includes(WILDCARD) || (names.length === 0 && allowsLegacyWildcard(request.typeUrl) && (first || state.wildcard));
    const explicit = new Set(names.filter((name) => name !== WILDCARD));
    const changed = wildcard !== state.wildcard || explicit.size !== state.names.size || [...explicit].some((name) => !state.names.has(name));
    state.wildcard = wildcard;
    state.names = explicit;
    // A client drops what it unsubscribes from; if it asks again it must be sent again.
    if (!wildcard) {
      for (const name of state.sent.keys()) if (!explicit.has(name)) state.sent.delete(name);
    }
    return changed;
  }

  protected select(typeUrl: string, state: SotwTypeState, snapshot: TypeSnapshot): CachedResource[] {
    const selected: CachedResource[] = [];
    if (state.wildcard) {
      selected.push(...snapshot.resources.values());
    } else {
      for (const name of state.names) {
        const resource = snapshot.resources.get(name) ?? this.stillServed(typeUrl, state, name);
        if (resource !== undefined) selected.push(resource);
      }
    }
    if (this.holding(typeUrl, state)) for (const [, resource] of this.held.entries()) selected.push(resource);
    return selected;
  }

  protected respond(typeUrl: string, state: SotwTypeState, selected: CachedResource[], snapshot: TypeSnapshot): void {
    const holding = this.holding(typeUrl, state);
    const updated = selected.filter((resource) => state.sent.get(resource.name)?.version !== resource.version);
    const news = updated.length > 0;
    const removals = absenceMeansRemoval(typeUrl) && selected.length < state.sent.size;
    // A wildcard client waits for its first response even when the set is empty (Envoy's
    // initialization blocks on the first CDS and LDS responses).
    const unanswered = state.wildcard && state.lastNonce === undefined;
    if (!news && !removals && !unanswered) return;
    // A set that differs from the snapshot gets its own version, and so its own shared body.
    const version = state.wildcard && !holding ? snapshot.version : versionOfSet(selected);
    const body = this.bodies.get(typeUrl, version, selected);
    const nonce = this.nextNonce();
    state.lastNonce = nonce;
    state.lastVersion = version;
    state.settled = false;
    state.sent = new Map(selected.map((resource) => [resource.name, resource]));
    this.deliver(typeUrl, withNonce(body, nonce));
    this.options.hooks.sent(typeUrl, version);
    this.options.logger.debug({ typeUrl, version, nonce, resources: selected.length }, 'xds: sotw response sent');
    if (typeUrl === TypeUrl.cluster) this.resendAssignments(assignmentNamesOf(updated));
  }

  private holding(typeUrl: string, state: SotwTypeState): boolean {
    return typeUrl === TypeUrl.cluster && state.wildcard && this.held.size > 0;
  }

  /** Subscribed clusters gone from the configuration are kept, as last sent, while routes may name them. */
  protected holdGone(clusters: SotwTypeState, current: ReadonlyMap<string, CachedResource>): void {
    for (const [name, resource] of clusters.sent) {
      if (!current.has(name) && (clusters.wildcard || clusters.names.has(name))) this.held.hold(name, resource);
    }
  }

  /**
   * A subscribed resource gone from the configuration that must still be sent: a held cluster,
   * or, while clusters are held, an assignment (Envoy empties an EDS cluster whose assignment
   * disappears from a SotW response).
   */
  private stillServed(typeUrl: string, state: SotwTypeState, name: string): CachedResource | undefined {
    if (typeUrl === TypeUrl.cluster) return this.held.has(name) ? state.sent.get(name) : undefined;
    if (typeUrl === TypeUrl.endpoint && this.held.size > 0) return state.sent.get(name);
    return undefined;
  }

  protected isSettled(state: SotwTypeState): boolean {
    return state.settled;
  }

  protected forgetSent(state: SotwTypeState, name: string): void {
    state.sent.delete(name);
  }
}
