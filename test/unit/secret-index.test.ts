import { describe, expect, it } from 'vitest';
import type { Secret } from '../../src/api/secret.js';
import { SecretIndex, SecretsInKeyOrder } from '../../src/translate/index.js';
import { secretKey } from '../../src/translate/credentials.js';

const secret = (i: number, value: string): Secret => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: `key-${i}`, namespace: 'ai' }, stringData: { Authorization: value } }) as Secret;

describe('SecretIndex', () => {
  it('finds every Secret as last replaced, through edits that fold the replaced ones into a new map and edits that do not', () => {
    const n = 4_000;
    let index = new SecretIndex(new Map(Array.from({ length: n }, (_, i) => [`ai/key-${i}`, secret(i, 'v0')])), new Map());
    const first = index;
    const latest = new Map<number, string>();
    for (let edit = 1; edit <= 1_200; edit++) {
      const i = (edit * 7919) % n;
      const value = `v${edit}`;
      latest.set(i, value);
      index = index.with(new Map([[`ai/key-${i}`, secret(i, value)]]));
      if (edit % 97 === 0) for (const probe of [i, (i + 1) % n, 0]) expect(index.get(`ai/key-${probe}`)?.stringData?.['Authorization']).toBe(latest.get(probe) ?? 'v0');
    }
    for (let i = 0; i < n; i++) expect(index.get(`ai/key-${i}`)?.stringData?.['Authorization']).toBe(latest.get(i) ?? 'v0');
    // The index of the first translation still says what it said.
    for (const i of latest.keys()) expect(first.get(`ai/key-${i}`)?.stringData?.['Authorization']).toBe('v0');
    expect(index.get('ai/none')).toBeUndefined();
  });
});

describe('SecretsInKeyOrder', () => {
  const of = (namespace: string, name: string, value = 'v'): Secret => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, stringData: { Authorization: value } }) as Secret;
  const byKey = (a: Secret, b: Secret): number => {
    const [x, y] = [`${a.metadata.namespace}/${a.metadata.name}`, `${b.metadata.namespace}/${b.metadata.name}`];
    return x < y ? -1 : x > y ? 1 : 0;
  };

  it('finds what a map of the same list finds, namespaces that start alike and names across them included', () => {
    // "a-b/x" sorts before "a/x" ("-" before "/") though "a" is the shorter namespace.
    const namespaces = ['a', 'a-b', 'a0', 'ab', 'b', 'ai', 'ai-2'];
    const names = ['x', 'x-1', 'x.1', 'y', 'key', 'key-10', 'key-2'];
    const list = namespaces.flatMap((ns) => names.map((n) => of(ns, n, `${ns}:${n}`))).sort(byKey);
    expect(SecretsInKeyOrder.holds(list)).toBe(true);
    const index = new SecretsInKeyOrder(list);
    const map = new Map(list.map((s) => [secretKey(s.metadata.namespace, s.metadata.name), s]));
    for (const ns of [...namespaces, 'a-', 'c', '']) {
      for (const n of [...names, 'w', 'z', 'key-1']) {
        const k = secretKey(ns, n);
        expect(index.get(k), k).toBe(map.get(k));
      }
    }
    expect(map.size).toBe(list.length);
    expect(index.get('not-a-key')).toBeUndefined();
  });

  it('says a list out of key order is not one, and finds the last of equal keys as a map does', () => {
    expect(SecretsInKeyOrder.holds([of('a', 'x'), of('a-b', 'x')])).toBe(false);
    expect(SecretsInKeyOrder.holds([of('ai', 'key-2'), of('ai', 'key-10')])).toBe(false);
    const twice = [of('ai', 'key', 'first'), of('ai', 'key', 'second'), of('ai', 'later')];
    expect(SecretsInKeyOrder.holds(twice)).toBe(true);
    expect(new SecretsInKeyOrder(twice).get(secretKey('ai', 'key'))?.stringData?.['Authorization']).toBe('second');
  });
});
