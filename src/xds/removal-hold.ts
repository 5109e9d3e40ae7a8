import { TypeUrl } from '../envoy/resources.js';

/**
 * Make-before-break for removals (xDS protocol, "Eventual consistency considerations"): a
 * cluster that leaves the configuration may still be named by the routes a client is serving,
 * because the RDS/LDS update that stops naming it is pushed after CDS. Removing it first would
 * answer 503 "no cluster" (NC) in between. So a stream keeps sending removed clusters (and
 * their assignments, without which Envoy would empty them) until every listener and route
 * response it sent since has been ACKed; only then does it push the removal.
 *
 * A NACKed route update keeps the hold: Envoy goes on serving its previous routes, which may
 * still name the cluster.
 */

/** Types whose resources name clusters. */
const REFERRING_TYPES: readonly string[] = [TypeUrl.listener, TypeUrl.route];

export function refersToClusters(typeUrl: string): boolean {
  return REFERRING_TYPES.includes(typeUrl);
}

/** Removed clusters a stream still serves, by name, with whatever the stream needs to resend them. */
export class ClusterHold<T> {
  private readonly held = new Map<string, T>();

  get size(): number {
    return this.held.size;
  }

  hold(name: string, value: T): void {
    this.held.set(name, value);
  }

  /** A cluster that came back is served from the configuration again, not from the hold. */
  forget(name: string): void {
    this.held.delete(name);
  }

  has(name: string): boolean {
    return this.held.has(name);
  }

  entries(): IterableIterator<[string, T]> {
    return this.held.entries();
  }

  clear(): void {
    this.held.clear();
  }
}
