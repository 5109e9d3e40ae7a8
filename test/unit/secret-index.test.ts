import { describe, expect, it } from 'vitest';
import type { Secret } from '../../src/api/secret.js';
import { SecretIndex } from '../../src/translate/index.js';

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
