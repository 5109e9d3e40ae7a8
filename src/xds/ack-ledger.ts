/**
 * What the fleet has done with each view's current version of each type, kept up to date one
 * ACK or NACK at a time (O(1) each), so that status reads it once per batch instead of scanning
 * every client. It outlives streams on purpose: an Envoy that disconnects keeps serving what it
 * ACKed, so a fleet that reconnects to the same versions changes nothing here, and no status.
 */

export interface FleetNack {
  readonly nodeId: string;
  /** Envoy's error_detail.message, with the secret values it may quote redacted. */
  readonly message: string;
}

/** One type of one view, as status reads it. */
export interface FleetTypeState {
  /** Some Envoy of the view ACKed the view's current version of the type (or holds what it means for it). */
  readonly acked: boolean;
  /** The view's current version of the type, the one `acked` is about. */
  readonly version?: string;
  /** The version of the type the fleet last ACKed, which its Envoys run (ack() keeps the newest). */
  readonly held: ReadonlySet<string>;
  /** Envoys whose last reply for the type was a NACK, oldest first. */
  readonly rejected: FleetNack[];
}

interface Entry {
  /** The view's version of the type this entry's `acked` is about. */
  version: string;
  acked: boolean;
  /**
   * The newest version of the type some Envoy of the view ACKed. An Envoy that NACKs the next one
   * keeps running it, so when the view goes back to it (the resource quarantine serving the
   * content Envoy accepted in place of what it rejected) it is programmed before the re-push is
   * ACKed: the other objects of that type are not held back by the rejected one.
   */
  lastAcked: string | undefined;
  /**
   * nodeId → what it rejected (its own version of the type) and why: cleared by that node's next
   * ACK of the type or by its being sent another version, not by its disconnecting.
   */
  nacks: Map<string, { version: string; message: string }>;
}

export class AckLedger {
  /** view key → type URL → entry. */
  private readonly entries = new Map<string, Map<string, Entry>>();
  private revision = 0;

  /** Grows by one whenever what status reads changed: nothing to recompute while it stays put. */
  get changes(): number {
    return this.revision;
  }

  /** `nodeId` ACKed (or holds) `version`, the view's current version of `typeUrl`. True when that changed what status reads. */
  ack(view: string, typeUrl: string, version: string, nodeId: string): boolean {
    const entry = this.at(view, typeUrl, version);
    let changed = !entry.acked;
    entry.acked = true;
    entry.lastAcked = version;
    // Most ACKs come from nodes without a NACK standing: no delete (a Map's delete can reallocate it).
    if (entry.nacks.size > 0 && entry.nacks.delete(nodeId)) changed = true;
    if (changed) this.revision++;
    return changed;
  }

  /**
   * `nodeId` NACKed `clientVersion` of `typeUrl` (its own version), sent while the view's version
   * was `version`. True when that changed what status reads.
   */
  nack(view: string, typeUrl: string, version: string, nodeId: string, message: string, clientVersion: string): boolean {
    const entry = this.at(view, typeUrl, version);
    const standing = entry.nacks.get(nodeId);
    if (standing?.message === message && standing.version === clientVersion) return false;
    // Re-inserted so that the newest NACK is last.
    entry.nacks.delete(nodeId);
    entry.nacks.set(nodeId, { version: clientVersion, message });
    this.revision++;
    return true;
  }

  /**
   * `nodeId` was sent `clientVersion` of `typeUrl`: a NACK of another version no longer stands
   * (it is pending again, as go-control-plane sees it); the very version it rejected, sent again
   * after a reconnect, keeps it. True when that changed what status reads.
   */
  sent(view: string, typeUrl: string, nodeId: string, clientVersion: string): boolean {
    const entry = this.entries.get(view)?.get(typeUrl);
    if (entry === undefined || entry.nacks.size === 0) return false;
    const standing = entry.nacks.get(nodeId);
    if (standing === undefined || standing.version === clientVersion) return false;
    entry.nacks.delete(nodeId);
    this.revision++;
    return true;
  }

  /**
   * The view moved to `version` of `typeUrl`: nobody has ACKed it yet, unless it is the version the
   * fleet last ACKed (it went back to it). NACKs of nodes still
   * connected stay until they ACK (a named subscription is not pushed again when only other
   * resources changed); those of nodes gone can never be cleared and go.
   */
  moved(view: string, typeUrl: string, version: string, connected: (nodeId: string) => boolean): void {
    const entry = this.entries.get(view)?.get(typeUrl);
    if (entry === undefined || entry.version === version) return;
    entry.version = version;
    entry.acked = version === entry.lastAcked;
    for (const nodeId of [...entry.nacks.keys()]) if (!connected(nodeId)) entry.nacks.delete(nodeId);
    this.revision++;
  }

  /** The fleet's state of `typeUrl` in `view`, judged against the view's `current` version. */
  state(view: string, typeUrl: string, current: string | undefined): FleetTypeState | undefined {
    const entry = this.entries.get(view)?.get(typeUrl);
    if (entry === undefined) return undefined;
    return {
      acked: entry.acked && entry.version === current,
      ...(current !== undefined ? { version: current } : {}),
      held: new Set(entry.lastAcked !== undefined ? [entry.lastAcked] : []),
      rejected: [...entry.nacks].map(([nodeId, { message }]) => ({ nodeId, message })),
    };
  }

  /** Every view some Envoy was ever served from, with the types it asked for. */
  views(): IterableIterator<[string, ReadonlyMap<string, unknown>]> {
    return this.entries.entries();
  }

  private at(view: string, typeUrl: string, version: string): Entry {
    let types = this.entries.get(view);
    if (types === undefined) {
      types = new Map();
      this.entries.set(view, types);
    }
    let entry = types.get(typeUrl);
    if (entry === undefined) {
      entry = { version, acked: false, lastAcked: undefined, nacks: new Map() };
      types.set(typeUrl, entry);
    } else if (entry.version !== version) {
      entry.version = version;
      entry.acked = version === entry.lastAcked;
    }
    return entry;
  }
}
