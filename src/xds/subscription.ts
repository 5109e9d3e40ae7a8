import { TypeUrl } from '../envoy/resources.js';
import type { CachedResource } from './cache.js';

/** The explicit wildcard resource name (xDS protocol, "How the client specifies what resources to return"). */
export const WILDCARD = '*';

/**
 * Types for which a first request naming no resources means "all of them" (legacy wildcard).
 * For EDS, RDS and SDS an empty list means "none": those are always asked for by name.
 */
const LEGACY_WILDCARD_TYPES: ReadonlySet<string> = new Set([TypeUrl.listener, TypeUrl.cluster]);

export function allowsLegacyWildcard(typeUrl: string): boolean {
  return LEGACY_WILDCARD_TYPES.has(typeUrl);
}

/**
 * For LDS and CDS a response is the full set the client holds, so a resource missing from it is
 * deleted; for the other types absence means nothing (the client unsubscribes instead).
 */
export function absenceMeansRemoval(typeUrl: string): boolean {
  return LEGACY_WILDCARD_TYPES.has(typeUrl);
}

/**
 * The ClusterLoadAssignment names that EDS clusters among `clusters` read. Envoy builds a new
 * cluster object for every updated Cluster and keeps it warming until it receives that
 * assignment again, even when the assignment did not change (seen on Envoy 1.40: without a
 * resend it waits for initial_fetch_timeout, 15 s), so the server resends these after CDS.
 */
export function assignmentNamesOf(clusters: readonly CachedResource[]): readonly string[] {
  let names = assignmentNames.get(clusters);
  if (names === undefined) {
    names = readAssignmentNames(clusters);
    assignmentNames.set(clusters, names);
  }
  return names;
}

function readAssignmentNames(clusters: readonly CachedResource[]): string[] {
  const names: string[] = [];
  for (const { resource, name } of clusters) {
    const eds = resource['eds_cluster_config'];
    const isEds = resource['type'] === 'EDS' || resource['type'] === 3;
    if (!isEds) continue;
    const serviceName = typeof eds === 'object' && eds !== null && !Array.isArray(eds) ? eds['service_name'] : undefined;
    names.push(typeof serviceName === 'string' && serviceName !== '' ? serviceName : name);
  }
  return names;
}

/**
 * By list: a fleet's streams are sent the same lists of clusters (a snapshot's every resource, a
 * change shared by the streams it reaches), a thousand names to read off a thousand clusters
 * each time. The lists are read only once made, as are these names.
 */
const assignmentNames = new WeakMap<readonly CachedResource[], readonly string[]>();
