/**
 * A V8 heap snapshot file read as a graph, for bench/heap-owners.ts and bench/heap-shapes.ts:
 * node v's edges are firstEdge[v] .. firstEdge[v + 1] - 1; target(e) is the node edge e points to.
 */
import { readFileSync } from 'node:fs';

interface SnapshotFile {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]]; edge_fields: string[]; edge_types: [string[], ...unknown[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

export interface HeapGraph {
  /** Node count; node 0 is the root. */
  readonly n: number;
  readonly firstEdge: Uint32Array;
  type(v: number): string;
  name(v: number): string;
  self(v: number): number;
  target(e: number): number;
  edgeType(e: number): string;
  /** A property's name, or `[index]` for elements and hidden edges. */
  edgeName(e: number): string;
}

/** Element i of a, 0 past its end (the snapshot's arrays are dense). */
export const at = (a: ArrayLike<number>, i: number): number => a[i] ?? 0;

export function readHeapSnapshot(file: string): HeapGraph {
  const s = JSON.parse(readFileSync(file, 'utf8')) as SnapshotFile;
  const meta = s.snapshot.meta;
  const NF = meta.node_fields.length;
  const EF = meta.edge_fields.length;
  const nodeTypes = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const { nodes, edges, strings } = s;
  const n = nodes.length / NF;
  const iType = meta.node_fields.indexOf('type');
  const iName = meta.node_fields.indexOf('name');
  const iSelf = meta.node_fields.indexOf('self_size');
  const iEdges = meta.node_fields.indexOf('edge_count');
  const eType = meta.edge_fields.indexOf('type');
  const eName = meta.edge_fields.indexOf('name_or_index');
  const eTo = meta.edge_fields.indexOf('to_node');
  const firstEdge = new Uint32Array(n + 1);
  for (let v = 0; v < n; v++) firstEdge[v + 1] = at(firstEdge, v) + at(nodes, v * NF + iEdges);
  const edgeType = (e: number): string => edgeTypes[at(edges, e * EF + eType)] ?? '?';
  return {
    n,
    firstEdge,
    type: (v) => nodeTypes[at(nodes, v * NF + iType)] ?? '?',
    name: (v) => strings[at(nodes, v * NF + iName)] ?? '',
    self: (v) => at(nodes, v * NF + iSelf),
    target: (e) => at(edges, e * EF + eTo) / NF,
    edgeType,
    edgeName: (e) => {
      const t = edgeType(e);
      const raw = at(edges, e * EF + eName);
      return t === 'element' || t === 'hidden' ? `[${raw}]` : (strings[raw] ?? '?');
    },
  };
}
