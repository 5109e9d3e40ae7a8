/**
 * Who holds serve's heap (issue 9): reads a V8 heap snapshot (bench/serve-memory.ts with
 * SERVE_MEMORY_SNAPSHOT=FILE) and prints
 * - the heap by node type;
 * - the dominator tree down to MIN_MB: what each object alone keeps alive (freed with it);
 * - the objects only the root dominates (held from two places or more, e.g. a manifest held by
 *   the store and by translation), grouped by their first property names, with where they are held;
 * - for each NAME given: everything reachable from properties and closure variables of that name
 *   through data (objects, arrays, strings, array buffers; not functions, prototypes or maps), so
 *   shared data counts for every owner that reaches it.
 *
 *   node --max-old-space-size=4000 --import tsx bench/heap-owners.ts FILE [MIN_MB] [NAME,NAME...]
 *   e.g. bench/heap-owners.ts serve.heapsnapshot 0.3 store,translationState,book,cache,quarantine
 */
import { at, readHeapSnapshot } from './heap-snapshot.js';

const MB = 1e6;
const [file, minArg, namesArg] = process.argv.slice(2);
if (file === undefined) throw new Error('usage: bench/heap-owners.ts FILE.heapsnapshot [MIN_MB] [NAME,NAME...]');
const minBytes = Number(minArg ?? 0.3) * MB;
const { n, firstEdge, type, name, self, target, edgeType, edgeName } = readHeapSnapshot(file);
// Weak references and the snapshot's shortcuts keep nothing alive.
const strong = (e: number): boolean => edgeType(e) !== 'weak' && edgeType(e) !== 'shortcut';
const label = (v: number): string => `${type(v)} ${name(v).slice(0, 60).replace(/\s+/g, ' ')}`;
const mb = (b: number): string => (b / MB).toFixed(2);

// Post-order from the root over strong edges, then dominators (Cooper, Harvey and Kennedy).
const order = new Int32Array(n).fill(-1);
const post: number[] = [];
const stack: [number, number][] = [[0, at(firstEdge, 0)]];
order[0] = -2;
while (stack.length > 0) {
  const top = stack[stack.length - 1] as [number, number];
  const [v] = top;
  let pushed = false;
  while (top[1] < at(firstEdge, v + 1)) {
    const e = top[1]++;
    if (!strong(e)) continue;
    const w = target(e);
    if (order[w] !== -1) continue;
    order[w] = -2;
    stack.push([w, at(firstEdge, w)]);
    pushed = true;
    break;
  }
  if (!pushed) {
    stack.pop();
    order[v] = post.length;
    post.push(v);
  }
}
const predStart = new Uint32Array(n + 1);
for (const v of post) for (let e = at(firstEdge, v); e < at(firstEdge, v + 1); e++) if (strong(e)) predStart[target(e) + 1] = at(predStart, target(e) + 1) + 1;
for (let v = 0; v < n; v++) predStart[v + 1] = at(predStart, v + 1) + at(predStart, v);
const preds = new Int32Array(at(predStart, n));
const fill = predStart.slice(0, n);
for (const v of post) {
  for (let e = at(firstEdge, v); e < at(firstEdge, v + 1); e++) {
    if (!strong(e)) continue;
    const w = target(e);
    preds[at(fill, w)] = v;
    fill[w] = at(fill, w) + 1;
  }
}
const idom = new Int32Array(n).fill(-1);
idom[0] = 0;
const intersect = (a: number, b: number): number => {
  while (a !== b) {
    while (at(order, a) < at(order, b)) a = at(idom, a);
    while (at(order, b) < at(order, a)) b = at(idom, b);
  }
  return a;
};
for (let changed = true; changed; ) {
  changed = false;
  for (let k = post.length - 1; k >= 0; k--) {
    const v = post[k] ?? 0;
    if (v === 0) continue;
    let dom = -1;
    for (let p = at(predStart, v); p < at(predStart, v + 1); p++) {
      const u = at(preds, p);
      if (idom[u] !== -1) dom = dom === -1 ? u : intersect(u, dom);
    }
    if (dom !== idom[v]) {
      idom[v] = dom;
      changed = true;
    }
  }
}
const retained = new Float64Array(n);
for (const v of post) {
  retained[v] = at(retained, v) + self(v);
  if (v !== 0) retained[at(idom, v)] = at(retained, at(idom, v)) + at(retained, v);
}

console.log(`${file}: ${mb(at(retained, 0))} MB reachable`);
const byType = new Map<string, number>();
for (const v of post) byType.set(type(v), (byType.get(type(v)) ?? 0) + self(v));
console.log(`by type: ${[...byType].sort((a, b) => b[1] - a[1]).filter(([, b]) => b >= 0.01 * MB).map(([t, b]) => `${t} ${mb(b)}`).join(', ')}`);

const via = (from: number, to: number): string => {
  for (let e = at(firstEdge, from); e < at(firstEdge, from + 1); e++) if (target(e) === to && strong(e)) return edgeName(e);
  return '(held from several places)';
};
const children = new Map<number, number[]>();
for (const v of post) if (v !== 0 && at(retained, v) >= minBytes) children.set(at(idom, v), [...(children.get(at(idom, v)) ?? []), v]);
console.log(`\ndominator tree (what each object alone keeps alive), down to ${mb(minBytes)} MB:`);
const walk = (v: number, depth: number): void => {
  for (const w of (children.get(v) ?? []).sort((a, b) => at(retained, b) - at(retained, a))) {
    console.log(`${'  '.repeat(depth)}${mb(at(retained, w))} MB ${via(v, w)} -> ${label(w)}`);
    if (depth < 12) walk(w, depth + 1);
  }
};
walk(0, 0);

console.log('\nheld from several places (dominated by the root only), by their first properties:');
const groups = new Map<string, { bytes: number; count: number; sample: number }>();
for (const v of post) {
  if (at(idom, v) !== 0 || v === 0) continue;
  const props: string[] = [];
  for (let e = at(firstEdge, v); e < at(firstEdge, v + 1) && props.length < 6; e++) if (edgeType(e) === 'property') props.push(edgeName(e));
  const key = `${label(v).slice(0, 40)} {${props.join(',')}}`;
  const g = groups.get(key) ?? { bytes: 0, count: 0, sample: v };
  g.bytes += at(retained, v);
  g.count++;
  groups.set(key, g);
}
for (const [key, g] of [...groups].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 20)) {
  if (g.bytes < minBytes) break;
  const holders: string[] = [];
  for (let p = at(predStart, g.sample); p < at(predStart, g.sample + 1) && holders.length < 4; p++) holders.push(`${via(at(preds, p), g.sample)} of ${label(at(preds, p)).slice(0, 40)}`);
  console.log(`${mb(g.bytes)} MB ${g.count} x ${key}\n    held by: ${holders.join(' | ')}`);
}

const names = (namesArg ?? '').split(',').filter((x) => x !== '');
if (names.length > 0) {
  console.log('\nreachable through data from properties or closure variables named:');
  const data = new Set(['object', 'array', 'string', 'concatenated string', 'sliced string', 'number', 'native', 'bigint', 'hidden']);
  const skip = new Set(['__proto__', 'map', 'constructor', 'prototype']);
  const reach = (from: number): number => {
    const seen = new Uint8Array(n);
    const todo = [from];
    let bytes = 0;
    while (todo.length > 0) {
      const v = todo.pop() ?? 0;
      if (seen[v] === 1) continue;
      seen[v] = 1;
      bytes += self(v);
      for (let e = at(firstEdge, v); e < at(firstEdge, v + 1); e++) {
        if (!strong(e) || skip.has(edgeName(e))) continue;
        const w = target(e);
        // Contexts and hidden V8 internals lead to code and to everything a closure sees.
        if (!data.has(type(w)) || name(w).startsWith('system / Context') || (type(w) === 'hidden' && !name(w).includes('Array'))) continue;
        todo.push(w);
      }
    }
    return bytes;
  };
  const done = new Set<number>();
  for (const v of post) {
    for (let e = at(firstEdge, v); e < at(firstEdge, v + 1); e++) {
      const t = edgeType(e);
      if ((t !== 'property' && t !== 'context') || !names.includes(edgeName(e))) continue;
      const w = target(e);
      if (done.has(w)) continue;
      done.add(w);
      const bytes = reach(w);
      if (bytes >= minBytes) console.log(`${mb(bytes)} MB ${edgeName(e)} of ${label(v).slice(0, 40)} -> ${label(w)}`);
    }
  }
}
