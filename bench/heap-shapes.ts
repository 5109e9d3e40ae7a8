/**
 * What each owner's data is made of (a companion to bench/heap-owners.ts): reads a V8 heap
 * snapshot and, for each NAME in turn (a property or closure variable), walks the data reachable
 * from it that an earlier NAME did not reach, and prints it grouped by shape: objects by
 * constructor and first property names, strings by length, arrays; with count and bytes each.
 * So "lists,entries" gives the parsed objects, then what the store keeps besides them.
 *
 *   node --max-old-space-size=4000 --import tsx bench/heap-shapes.ts FILE NAME[,NAME...] [TOP]
 *   e.g. CONFIG_LOAD_SNAPSHOT=/tmp/load.heapsnapshot npm run bench -- --suite config-load
 *        bench/heap-shapes.ts /tmp/load.heapsnapshot lists,entries,files 12
 */
import { at, readHeapSnapshot } from './heap-snapshot.js';

const [file, namesArg, topArg] = process.argv.slice(2);
if (file === undefined || namesArg === undefined) throw new Error('usage: bench/heap-shapes.ts FILE.heapsnapshot NAME[,NAME...] [TOP]');
const top = Number(topArg ?? 15);
const { n, firstEdge, type, name, self, target, edgeType, edgeName } = readHeapSnapshot(file);

const DATA = new Set(['object', 'array', 'string', 'concatenated string', 'sliced string', 'number', 'native', 'bigint', 'hidden', 'object shape']);
const SKIP = new Set(['__proto__', 'constructor', 'prototype']);
const isString = (t: string): boolean => t === 'string' || t === 'concatenated string' || t === 'sliced string';

function shapeOf(v: number): string {
  const t = type(v);
  // Strings grouped by length in steps of 8 (what V8 allocates them in).
  if (isString(t)) return `${t}, ${Math.ceil(name(v).length / 8) * 8 - 7}-${Math.ceil(name(v).length / 8) * 8} characters`;
  if (t !== 'object') return `${t} ${name(v).slice(0, 40)}`;
  const props: string[] = [];
  for (let e = at(firstEdge, v); e < at(firstEdge, v + 1) && props.length < 6; e++) if (edgeType(e) === 'property' && edgeName(e) !== '__proto__') props.push(edgeName(e));
  return `${name(v)} {${props.join(',')}}`;
}

// Data only: contexts and V8 internals other than arrays and hash tables lead to code.
const isData = (v: number): boolean => {
  const t = type(v);
  return DATA.has(t) && !name(v).startsWith('system / Context') && (t !== 'hidden' || /Array|Map|Hash/.test(name(v)));
};

const seen = new Uint8Array(n);
const mib = (b: number): string => (b / 1024 / 1024).toFixed(2);
for (const owner of namesArg.split(',').filter((x) => x !== '')) {
  const todo: number[] = [];
  for (let v = 0; v < n; v++) {
    for (let e = at(firstEdge, v); e < at(firstEdge, v + 1); e++) {
      const t = edgeType(e);
      if ((t === 'property' || t === 'context') && edgeName(e) === owner) todo.push(target(e));
    }
  }
  const roots = todo.length;
  const groups = new Map<string, { bytes: number; count: number }>();
  let total = 0;
  while (todo.length > 0) {
    const v = todo.pop() ?? 0;
    if (seen[v] === 1) continue;
    seen[v] = 1;
    if (!isData(v)) continue;
    total += self(v);
    const shape = shapeOf(v);
    const g = groups.get(shape) ?? { bytes: 0, count: 0 };
    g.bytes += self(v);
    g.count++;
    groups.set(shape, g);
    for (let e = at(firstEdge, v); e < at(firstEdge, v + 1); e++) {
      if (edgeType(e) === 'weak' || edgeType(e) === 'shortcut' || SKIP.has(edgeName(e))) continue;
      todo.push(target(e));
    }
  }
  console.log(`\n${owner} (${roots} found): ${mib(total)} MiB not reached from an earlier name`);
  for (const [shape, g] of [...groups].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top)) {
    console.log(`${mib(g.bytes).padStart(8)} MiB ${String(g.count).padStart(8)} x ${(g.bytes / g.count).toFixed(0).padStart(5)} B  ${shape}`);
  }
}
