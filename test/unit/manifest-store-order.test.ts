import { describe, expect, it } from 'vitest';
import type { ManifestFile } from '../../src/providers/manifest-files.js';
import { ManifestStore, parseManifestFile } from '../../src/providers/manifest-files.js';

/**
 * Each kind's list in a snapshot is in the order of the objects' keys ("<kind>/<namespace>/<name>",
 * by code units), whether the store sorts every object (the first load of many) or puts a few in
 * place (an edit). Namespaces that start alike are where the two could part: "a-b/x" comes
 * before "a/x" ("-" is below "/"), "a0/x" after it.
 */

const NAMESPACES = ['a', 'a-b', 'a-0', 'a0', 'ab'] as const;
const NAMES = ['x', 'x-1', 'x.1', 'y'] as const;

const secret = (namespace: string, name: string, value = 'k'): string => `apiVersion: v1\nkind: Secret\nmetadata: {name: ${name}, namespace: ${namespace}}\nstringData: {Authorization: ${value}}\n`;
const file = (name: string, docs: readonly string[]): ManifestFile => ({ name, documents: parseManifestFile(name, docs.join('---\n')) });
const keysOf = (secrets: readonly { metadata: { namespace: string; name: string } }[]): string[] => secrets.map((s) => `${s.metadata.namespace}/${s.metadata.name}`);
const sorted = (keys: readonly string[]): string[] => [...keys].sort();

/** Every (namespace, name) pair, `copies` times over with a numbered suffix, in an order that is not the keys'. */
function pairs(copies: number): [string, string][] {
  const out: [string, string][] = [];
  for (let c = 0; c < copies; c++) for (const name of NAMES) for (const namespace of [...NAMESPACES].reverse()) out.push([namespace, c === 0 ? name : `${name}-c${c}`]);
  return out;
}

describe('ManifestStore lists', () => {
  it('are in key order when a few objects are put in place', () => {
    const few = pairs(1);
    expect(few.length).toBeLessThanOrEqual(64);
    const { inputs } = new ManifestStore().build([file('a.yaml', few.map(([ns, n]) => secret(ns, n)))]);
    expect(keysOf(inputs.secrets)).toEqual(sorted(few.map(([ns, n]) => `${ns}/${n}`)));
  });

  it('are in key order when many objects are sorted, and stay so through edits that add, remove and replace a few', () => {
    const many = pairs(5);
    expect(many.length).toBeGreaterThan(64);
    const store = new ManifestStore();
    const first = store.build([file('a.yaml', many.map(([ns, n]) => secret(ns, n)))]);
    expect(keysOf(first.inputs.secrets)).toEqual(sorted(many.map(([ns, n]) => `${ns}/${n}`)));

    // Gone: every "a-b" secret named x; new: a few in "a" and "a0"; replaced: "a-0/y" with another value.
    const edited = many.filter(([ns, n]) => !(ns === 'a-b' && n === 'x'));
    const added: [string, string][] = [['a', 'w'], ['a0', 'a'], ['a', 'x-0']];
    const docs = [...edited, ...added].map(([ns, n]) => secret(ns, n, ns === 'a-0' && n === 'y' ? 'k2' : 'k'));
    const second = store.build([file('a.yaml', docs)]);
    expect(keysOf(second.inputs.secrets)).toEqual(sorted([...edited, ...added].map(([ns, n]) => `${ns}/${n}`)));
    const replaced = second.inputs.secrets.find((s) => s.metadata.namespace === 'a-0' && s.metadata.name === 'y');
    expect(replaced?.stringData).toEqual({ Authorization: 'k2' });
    // The order a store that never saw the first version gives the second (all sorted at once).
    expect(keysOf(second.inputs.secrets)).toEqual(keysOf(new ManifestStore().build([file('a.yaml', docs)]).inputs.secrets));
  });
});
