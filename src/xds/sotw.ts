import type { Logger } from 'pino';
import { TypeUrl, kindOfTypeUrl, type TypeUrlValue } from '../envoy/resources.js';
import { versionOfSet, type CachedResource, type SnapshotCache } from './cache.js';
import type { StreamHooks } from './client-state.js';
import { ClusterHold, refersToClusters } from './removal-hold.js';
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

export interface SotwStreamOptions {
  cache: SnapshotCache;
  bodies: SharedResponseBodies;
  hooks: StreamHooks;
  send: (message: Buffer) => void;
  logger: Logger;
}

/**
 * One state-of-the-world ADS stream: subscriptions per type, nonces, ACK/NACK, and pushes of
 * the full subscribed set when (and only when) it differs from what this client was sent.
 */
export class SotwStream {
  private readonly types = new Map<string, SotwTypeState>();
  /** Removed clusters still served until the routes that may name them are ACKed (removal-hold.ts). */
  private readonly held = new ClusterHold<CachedResource>();
  private identified = false;
  private nonceCounter = 0;

  constructor(private readonly options: SotwStreamOptions) {}

  onRequest(request: DiscoveryRequest): void {
    const { hooks, logger } = this.options;
    if (!this.identified && request.node !== undefined) {
      this.identified = true;
      hooks.identify(request.node);
    }
    if (kindOfTypeUrl(request.typeUrl) === undefined) {
      logger.debug({ typeUrl: request.typeUrl }, 'xds: request for a type Switchyard does not serve');
      return;
    }
    let state = this.types.get(request.typeUrl);
    const first = state === undefined;
    if (state === undefined) {
      state = { wildcard: false, names: new Set(), lastNonce: undefined, lastVersion: undefined, sent: new Map(), settled: true };
      this.types.set(request.typeUrl, state);
    }
    if (request.responseNonce !== '') {
      if (request.responseNonce !== state.lastNonce) {
        // xDS protocol: a request with an older nonce is superseded by the response in flight.
        logger.debug({ typeUrl: request.typeUrl, nonce: request.responseNonce }, 'xds: stale nonce ignored');
        return;
      }
      const version = state.lastVersion ?? '';
      if (request.errorDetail !== undefined) {
        hooks.nacked(request.typeUrl, version, request.errorDetail);
      } else {
        state.settled = true;
        hooks.acked(request.typeUrl, request.versionInfo);
      }
    }
    const changed = this.updateSubscription(state, request, first);
    if (first || changed) this.push(request.typeUrl, state);
    if (refersToClusters(request.typeUrl)) this.releaseHeldClusters();
  }

  /** Pushes, in the order given (make-before-break), every changed type this client watches. */
  onCacheChange(changed: readonly TypeUrlValue[]): void {
    if (changed.includes(TypeUrl.cluster)) this.holdRemovedClusters();
    for (const typeUrl of changed) {
      const state = this.types.get(typeUrl);
      if (state !== undefined) this.push(typeUrl, state);
    }
    this.releaseHeldClusters();
  }

  private updateSubscription(state: SotwTypeState, request: DiscoveryRequest, first: boolean): boolean {
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

  private push(typeUrl: string, state: SotwTypeState): void {
    const snapshot = this.options.cache.snapshot(typeUrl);
    if (snapshot === undefined) return;
    const selected: CachedResource[] = [];
    if (state.wildcard) {
      selected.push(...snapshot.resources.values());
    } else {
      for (const name of state.names) {
        const resource = snapshot.resources.get(name) ?? this.stillServed(typeUrl, state, name);
        if (resource !== undefined) selected.push(resource);
      }
    }
    const holding = typeUrl === TypeUrl.cluster && state.wildcard && this.held.size > 0;
    if (holding) for (const [, resource] of this.held.entries()) selected.push(resource);
    const updated = selected.filter((resource) => state.sent.get(resource.name)?.version !== resource.version);
    const news = updated.length > 0;
    const removals = absenceMeansRemoval(typeUrl) && selected.length < state.sent.size;
    // A wildcard client waits for its first response even when the set is empty (Envoy's
    // initialization blocks on the first CDS and LDS responses).
    const unanswered = state.wildcard && state.lastNonce === undefined;
    if (!news && !removals && !unanswered) return;
    // A set that differs from the snapshot gets its own version, and so its own shared body.
    const version = state.wildcard && !holding ? snapshot.version : versionOfSet(selected);
    const body = this.options.bodies.get(typeUrl, version, selected);
    const nonce = String(++this.nonceCounter);
    state.lastNonce = nonce;
    state.lastVersion = version;
    state.settled = false;
    state.sent = new Map(selected.map((resource) => [resource.name, resource]));
    this.options.send(withNonce(body, nonce));
    this.options.hooks.sent(typeUrl, version);
    this.options.logger.debug({ typeUrl, version, nonce, resources: selected.length }, 'xds: sotw response sent');
    if (typeUrl === TypeUrl.cluster) this.resendAssignments(assignmentNamesOf(updated));
  }

  /** Clusters this client holds that the configuration dropped: kept while routes may name them. */
  private holdRemovedClusters(): void {
    const state = this.types.get(TypeUrl.cluster);
    const current = this.options.cache.snapshot(TypeUrl.cluster)?.resources;
    if (state === undefined || current === undefined) return;
    for (const [name] of this.held.entries()) if (current.has(name)) this.held.forget(name);
    if (!this.servesRoutes()) return;
    for (const [name, resource] of state.sent) {
      if (!current.has(name) && (state.wildcard || state.names.has(name))) this.held.hold(name, resource);
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

  private servesRoutes(): boolean {
    return [...this.types.keys()].some(refersToClusters);
  }

  /** Pushes the held removals once every listener and route response this client was sent is ACKed. */
  private releaseHeldClusters(): void {
    if (this.held.size === 0) return;
    for (const [typeUrl, state] of this.types) if (refersToClusters(typeUrl) && !state.settled) return;
    this.held.clear();
    const clusters = this.types.get(TypeUrl.cluster);
    if (clusters !== undefined) this.push(TypeUrl.cluster, clusters);
  }

  private resendAssignments(names: readonly string[]): void {
    const endpoints = this.types.get(TypeUrl.endpoint);
    if (endpoints === undefined || names.length === 0) return;
    for (const name of names) endpoints.sent.delete(name);
    this.push(TypeUrl.endpoint, endpoints);
  }
}
