import { z } from 'zod';
import { TypeUrl } from '../envoy/resources.js';
import type { LoadFigures, LoadSource } from './fleet-health.js';
import { shortNackReason, type ClientTypeFeedback } from './programmed.js';

/**
 * What one controller replica tells the others about its own Envoys, so that whichever replica
 * leads writes Programmed and fleet health from the whole fleet (DESIGN.md, "Status from the
 * whole fleet"). Compact by construction: Envoys of one view that are in the same state (the
 * same version ACKed, pending or rejected per type) are one group with a count, so the size
 * follows the number of distinct states, not the number of Envoys; load is per endpoint that
 * had traffic in the window. Versions are content hashes of the served resources (src/xds/cache.ts),
 * equal on every replica that translated the same inputs, so a version ACKed from one replica
 * means the same configuration to all of them. No secret value is in here: versions are hashes,
 * and NACK reasons of secrets (SDS) are left out.
 */

export const SHARE_FORMAT = 1;

/** Envoy NACK text of a secret may quote the resource: never shared. */
const SECRET_NACK = 'Envoy rejected a secret (its detail stays in the log of the replica it is connected to)';

/** A view with this many distinct states is mid-rollout or misbehaving: the largest groups and every rejection are kept. */
const MAX_GROUPS_PER_VIEW = 32;

const typeStateSchema = z.object({
  state: z.enum(['pending', 'acked', 'rejected']),
  version: z.string().max(200).optional(),
  reason: z.string().max(400).optional(),
});

const nodeGroupSchema = z.object({
  /** How many Envoys are in this state. */
  nodes: z.number().int().positive(),
  /** One of them, named in a Rejected condition. */
  node: z.string().max(300),
  /** Per type URL. */
  types: z.record(z.string(), typeStateSchema),
});

/** [priority, endpoint address ('' = the pool as a whole), requests, errors] over the window. */
const loadEntrySchema = z.tuple([z.number().int().nonnegative(), z.string().max(300), z.number().nonnegative(), z.number().nonnegative()]);

export const replicaShareSchema = z.object({
  format: z.literal(SHARE_FORMAT),
  replica: z.string().min(1),
  /** Per view (a Gateway "namespace/name", or the shared view). */
  views: z.record(z.string(), z.array(nodeGroupSchema)),
  load: z.object({
    windowMs: z.number().positive(),
    /** Envoys that reported load within the window. */
    reporters: z.number().int().nonnegative(),
    /** Per Envoy cluster. */
    clusters: z.record(z.string(), z.array(loadEntrySchema)),
  }),
});

export type ReplicaShare = z.infer<typeof replicaShareSchema>;
export type SharedNodeGroup = z.infer<typeof nodeGroupSchema>;
export type SharedLoad = ReplicaShare['load'];

type SharedTypeState = z.infer<typeof typeStateSchema>;

function sharedState(c: ClientTypeFeedback): SharedTypeState {
  const out: SharedTypeState = { state: c.state };
  if (c.sentVersion !== undefined) out.version = c.sentVersion;
  if (c.state === 'rejected') out.reason = c.typeUrl === TypeUrl.secret ? SECRET_NACK : shortNackReason(c.nackMessage ?? '');
  return out;
}

/** This replica's Envoys, grouped per view by identical state. Pure; the same input gives the same output. */
export function shareOfClients(clients: readonly ClientTypeFeedback[]): ReplicaShare['views'] {
  const perView = new Map<string, Map<string, Record<string, SharedTypeState>>>();
  for (const c of clients) {
    let nodes = perView.get(c.view);
    if (!nodes) perView.set(c.view, (nodes = new Map()));
    let types = nodes.get(c.nodeId);
    if (!types) nodes.set(c.nodeId, (types = {}));
    types[c.typeUrl] = sharedState(c);
  }
  const views: ReplicaShare['views'] = {};
  for (const view of [...perView.keys()].sort()) {
    const groups = new Map<string, SharedNodeGroup>();
    for (const [node, types] of perView.get(view)!) {
      const sorted = Object.fromEntries(Object.entries(types).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
      const signature = JSON.stringify(sorted);
      const group = groups.get(signature);
      if (group) {
        group.nodes++;
        if (node < group.node) group.node = node;
      } else {
        groups.set(signature, { nodes: 1, node, types: sorted });
      }
    }
    const rejected = (g: SharedNodeGroup): boolean => Object.values(g.types).some((t) => t.state === 'rejected');
    const all = [...groups.values()].sort((a, b) => Number(rejected(b)) - Number(rejected(a)) || b.nodes - a.nodes || (a.node < b.node ? -1 : 1));
    views[view] = all.slice(0, MAX_GROUPS_PER_VIEW).sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }
  return views;
}

/** This replica's load over the window, for the clusters served now. */
export function shareOfLoad(load: LoadSource, clusters: readonly string[]): SharedLoad {
  const out: SharedLoad = { windowMs: load.windowMs, reporters: load.reporterCount(), clusters: {} };
  for (const name of [...clusters].sort()) {
    const entries: [number, string, number, number][] = [];
    for (const [priority, endpoints] of load.cluster(name)) {
      for (const [address, f] of endpoints) if (f.requests > 0) entries.push([priority, address, f.requests, f.errors]);
    }
    if (entries.length === 0) continue;
    entries.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    out.clusters[name] = entries;
  }
  return out;
}

/** This replica's own load window plus what the other replicas last shared of theirs. */
export class FleetLoad implements LoadSource {
  constructor(
    private readonly own: LoadSource,
    private readonly remote: () => readonly SharedLoad[],
  ) {}

  get windowMs(): number {
    return this.own.windowMs;
  }

  reporterCount(): number {
    return this.remote().reduce((n, r) => n + r.reporters, this.own.reporterCount());
  }

  cluster(name: string): Map<number, Map<string, LoadFigures>> {
    const out = new Map<number, Map<string, LoadFigures>>();
    const add = (priority: number, address: string, requests: number, errors: number): void => {
      let pool = out.get(priority);
      if (!pool) out.set(priority, (pool = new Map()));
      const f = pool.get(address) ?? { requests: 0, errors: 0 };
      pool.set(address, { requests: f.requests + requests, errors: f.errors + errors });
    };
    for (const [priority, endpoints] of this.own.cluster(name)) for (const [address, f] of endpoints) add(priority, address, f.requests, f.errors);
    for (const r of this.remote()) for (const [priority, address, requests, errors] of r.clusters[name] ?? []) add(priority, address, requests, errors);
    return out;
  }
}

/** A remote share as read from its object; a clear error naming the object and what is wrong. */
export function parseReplicaShare(text: string, object: string): ReplicaShare {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${object}: data["share.json"] is not JSON (${err instanceof Error ? err.message : String(err)}); the replica that owns it rewrites it on its next heartbeat, or delete the object`);
  }
  const parsed = replicaShareSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = (issue?.path ?? []).map((k, i) => (typeof k === 'number' ? `[${k}]` : typeof k === 'string' && /^[A-Za-z_]\w*$/.test(k) ? `${i === 0 ? '' : '.'}${k}` : `[${JSON.stringify(String(k))}]`)).join('');
    throw new Error(`${object}: data["share.json"]${path ? ` field ${path}` : ''}: ${issue?.message ?? 'invalid'}; a replica of another Switchyard version may have written it (format ${SHARE_FORMAT} expected)`);
  }
  return parsed.data;
}

/** What a replica shares of itself, before it is stamped with its name and format. */
export type LocalShare = Omit<ReplicaShare, 'format' | 'replica'>;

/** How the pipeline of one replica meets the others' (src/app/replica-share.ts keeps it in Kubernetes). */
export interface FleetExchange {
  /** The other replicas' latest shares, those still alive (heartbeat not expired). */
  remotes(): readonly ReplicaShare[];
  /** Registers "compute statuses again": a share arrived, changed, or expired. */
  onChange(listener: () => void): void;
  /** Where this replica's share comes from; read when it is next written. */
  attach(local: () => LocalShare): void;
  /** This replica's share may have changed: write it soon (coalesced, at a bounded rate, only if it did). */
  localChanged(): void;
  /** For /statusz: whose shares count now, and how writing this one's went. */
  stats(): { writes: number; skipped: number; failures: number; remotes: string[] };
}

/** What the other replicas' Envoys did with one view's current version of one type. */
export interface RemoteTypeFeedback {
  acked: boolean;
  /** FleetTypeFeedback.version and .held. */
  version?: string;
  held?: ReadonlySet<string>;
  rejected: { nodeId: string; message: string }[];
}

/**
 * The other replicas' Envoys per view and type, judged against this replica's current versions
 * (`current(view, typeUrl)`): acked when some Envoy ACKed that version (for the named types,
 * routes, endpoints and secrets, whose versions are per subscription, any ACK, as for this
 * replica's own Envoys), with every NACK. The shape of a per-view fleet ledger, so it can be
 * OR-ed into one (mergeFleetViews) where Programmed is computed per view rather than per client.
 */
export function remoteFeedback(
  shares: readonly ReplicaShare[],
  current: (view: string, typeUrl: string) => string | undefined,
  /** Envoys connected to this replica: what they say here wins over the share of a replica they left. */
  localNodes: ReadonlySet<string> = new Set(),
): Map<string, Map<string, RemoteTypeFeedback>> {
  const out = new Map<string, Map<string, RemoteTypeFeedback>>();
  for (const share of shares) {
    for (const [view, groups] of Object.entries(share.views)) {
      let types = out.get(view);
      if (!types) out.set(view, (types = new Map()));
      for (const g of groups) {
        // A group of one is that Envoy alone; in a larger group the others still count.
        if (localNodes.has(g.node) && g.nodes === 1) continue;
        for (const [typeUrl, t] of Object.entries(g.types)) {
          const now = current(view, typeUrl);
          let f = types.get(typeUrl);
          if (!f) types.set(typeUrl, (f = { acked: false, ...(now !== undefined ? { version: now } : {}), held: new Set<string>(), rejected: [] }));
          const versioned = typeUrl === TypeUrl.cluster || typeUrl === TypeUrl.listener;
          if (t.state === 'acked' && (!versioned || t.version === now)) f.acked = true;
          // What it runs: the version it ACKed (for the types whose versions are compared, else the current one).
          const held = f.held as Set<string>;
          if (t.state === 'acked' && versioned && t.version !== undefined) held.add(t.version);
          if (t.state === 'acked' && !versioned && now !== undefined) held.add(now);
          if (t.state === 'rejected') f.rejected.push({ nodeId: g.node, message: t.reason ?? '' });
        }
      }
    }
  }
  return out;
}

/** This replica's per-view feedback with the others' folded in: acked if acked anywhere, every NACK. */
export function mergeFleetViews<T extends RemoteTypeFeedback>(
  own: ReadonlyMap<string, ReadonlyMap<string, T>>,
  remote: ReadonlyMap<string, ReadonlyMap<string, RemoteTypeFeedback>>,
): Map<string, Map<string, RemoteTypeFeedback>> {
  const out = new Map<string, Map<string, RemoteTypeFeedback>>();
  for (const source of [own, remote]) {
    for (const [view, types] of source) {
      let merged = out.get(view);
      if (!merged) out.set(view, (merged = new Map()));
      for (const [typeUrl, f] of types) {
        const m = merged.get(typeUrl) ?? { acked: false, rejected: [] };
        const version = m.version ?? f.version;
        merged.set(typeUrl, {
          acked: m.acked || f.acked,
          ...(version !== undefined ? { version } : {}),
          held: new Set([...(m.held ?? []), ...(f.held ?? [])]),
          rejected: [...m.rejected, ...f.rejected],
        });
      }
    }
  }
  return out;
}
