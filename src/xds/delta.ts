import { TypeUrl } from '../envoy/resources.js';
import { AdsStream, type AdsStreamOptions } from './ads-stream.js';
import { versionOfSet, type CachedResource, type TypeSnapshot } from './cache.js';
import { WILDCARD, allowsLegacyWildcard, assignmentNamesOf } from './subscription.js';
import { deltaResourceEntry, deltaResponse, type DeltaDiscoveryRequest } from './wire.js';

/** Delta `Resource` entries are the same for every client; encode each once per resource version. */
const entries = new WeakMap<CachedResource, Uint8Array>();

function entryOf(resource: CachedResource): Uint8Array {
  let entry = entries.get(resource);
  if (entry === undefined) {
    entry = deltaResourceEntry(resource.name, resource.version, resource.any);
    entries.set(resource, entry);
  }
  return entry;
}

/** Unanswered nonces kept per type; Envoy ACKs each delta response, usually at once. */
const MAX_OUTSTANDING_NONCES = 64;

interface DeltaTypeState {
  wildcard: boolean;
  names: Set<string>;
  /** What the client holds: name → version (from initial_resource_versions, then what we sent). */
  known: Map<string, string>;
  /** nonce → system version of that response, the view's version it stands for and the resources it updated, until ACKed or NACKed. */
  outstanding: Map<string, { version: string; viewVersion: string; updated: CachedResource[] }>;
  answered: boolean;
  /** The last reply was a NACK: the client still serves an older version. */
  rejected: boolean;
}

export type DeltaStreamOptions = AdsStreamOptions;

/**
 * One incremental (delta) ADS stream: per-resource versions, subscribe/unsubscribe, removals
 * in removed_resources, and only the resources whose version the client does not hold.
 */
export class DeltaStream extends AdsStream<DeltaDiscoveryRequest, DeltaTypeState, true> {
  /** Both carry removals that waited for the release (mayRemove). */
  protected readonly heldBack = [TypeUrl.cluster, TypeUrl.endpoint];

  protected newState(request: DeltaDiscoveryRequest): DeltaTypeState {
    return { wildcard: false, names: new Set(), known: new Map(request.initialResourceVersions), outstanding: new Map(), answered: false, rejected: false };
  }

  protected acceptReply(state: DeltaTypeState, request: DeltaDiscoveryRequest): boolean {
    const { hooks, logger } = this.options;
    // Delta requests that carry a nonce are ACKs or NACKs and nothing else (xDS protocol).
    const sent = state.outstanding.get(request.responseNonce);
    state.outstanding.delete(request.responseNonce);
    if (sent === undefined) {
      logger.debug({ typeUrl: request.typeUrl, nonce: request.responseNonce }, 'xds: delta reply to an unknown nonce');
    } else if (request.errorDetail !== undefined) {
      state.rejected = true;
      hooks.nacked(request.typeUrl, sent.version, sent.viewVersion, request.errorDetail, sent.updated);
    } else {
      state.rejected = false;
      hooks.acked(request.typeUrl, sent.version, sent.viewVersion, sent.updated);
    }
    return true;
  }

  protected updateSubscription(state: DeltaTypeState, request: DeltaDiscoveryRequest, first: boolean): boolean {
    let changed = false;
    if (first && request.subscribe.length === 0 && allowsLegacyWildcard(request.typeUrl)) {
      state.wildcard = true;
      changed = true;
    }
    for (const name of request.subscribe) {
      if (name === WILDCARD) {
        changed ||= !state.wildcard;
        state.wildcard = true;
      } else if (!state.names.has(name)) {
        state.names.add(name);
        changed = true;
      }
    }
    for (const name of request.unsubscribe) {
      if (name === WILDCARD) {
        changed ||= state.wildcard;
        state.wildcard = false;
        continue;
      }
      state.names.delete(name);
      // Still wanted through the wildcard: the client keeps it, so we must keep tracking it.
      if (!state.wildcard) state.known.delete(name);
    }
    if (!state.wildcard) {
      for (const name of state.known.keys()) if (!state.names.has(name)) state.known.delete(name);
    }
    return changed;
  }

  protected select(_typeUrl: string, state: DeltaTypeState, snapshot: TypeSnapshot): CachedResource[] {
    if (state.wildcard) return [...snapshot.resources.values()];
    const selected: CachedResource[] = [];
    for (const name of state.names) {
      const resource = snapshot.resources.get(name);
      if (resource !== undefined) selected.push(resource);
    }
    return selected;
  }

  protected respond(typeUrl: string, state: DeltaTypeState, inScope: CachedResource[], snapshot: TypeSnapshot, viewVersion: string): void {
    const updated = inScope.filter((resource) => state.known.get(resource.name) !== resource.version);
    const removed = [...state.known.keys()].filter((name) => !snapshot.resources.has(name) && this.mayRemove(typeUrl, name));
    // A wildcard client waits for a first response even when there is nothing to send.
    if (updated.length === 0 && removed.length === 0 && !(state.wildcard && !state.answered)) {
      // Once the responses in flight are ACKed the client holds what the view's new version means for it.
      const last = [...state.outstanding.values()].at(-1);
      if (last !== undefined) last.viewVersion = viewVersion;
      else if (state.answered && !state.rejected) this.options.hooks.holds(typeUrl, viewVersion);
      return;
    }
    state.answered = true;
    for (const resource of updated) state.known.set(resource.name, resource.version);
    for (const name of removed) state.known.delete(name);
    // Held clusters are part of what the client holds, so of the version it acknowledges.
    const held = typeUrl === TypeUrl.cluster ? [...this.held.entries()].map(([name]) => ({ name, version: state.known.get(name) ?? '' })) : [];
    const version = state.wildcard && held.length === 0 ? snapshot.version : versionOfSet([...inScope, ...held]);
    const nonce = this.nextNonce();
    state.outstanding.set(nonce, { version, viewVersion, updated });
    if (state.outstanding.size > MAX_OUTSTANDING_NONCES) {
      const oldest = state.outstanding.keys().next().value;
      if (oldest !== undefined) state.outstanding.delete(oldest);
    }
    this.deliver(typeUrl, deltaResponse({ typeUrl, systemVersion: version, entries: updated.map(entryOf), removed, nonce }));
    this.options.hooks.sent(typeUrl, version);
    this.options.logger.debug(
      { typeUrl, version, nonce, updated: updated.length, removed: removed.length },
      'xds: delta response sent',
    );
    if (typeUrl === TypeUrl.cluster) this.resendAssignments(assignmentNamesOf(updated));
  }

  protected holdGone(clusters: DeltaTypeState, current: ReadonlyMap<string, CachedResource>): void {
    for (const name of clusters.known.keys()) if (!current.has(name)) this.held.hold(name, true);
  }

  /** While any cluster is held, assignment removals wait too: they would empty it. */
  private mayRemove(typeUrl: string, name: string): boolean {
    if (typeUrl === TypeUrl.cluster) return !this.held.has(name);
    if (typeUrl === TypeUrl.endpoint) return this.held.size === 0;
    return true;
  }

  protected isSettled(state: DeltaTypeState): boolean {
    return state.outstanding.size === 0 && !state.rejected;
  }

  protected forgetSent(state: DeltaTypeState, name: string): void {
    state.known.delete(name);
  }
}
