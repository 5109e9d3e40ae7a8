/**
 * A host's /v1/models answer followed edit by edit (modelsAfterEdit) equals the answer built from
 * all its routes (hostModels): random route lists over Backends that serve overlapping model ids
 * (so the owner of an id is the first route to serve it, and an edit can change it), random
 * edits that remove, add and move routes, some of them narrowing by model header, some reaching
 * no AI Backend, some claiming /v1/models themselves.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RouteIR } from '../../src/ir/model.js';
import { hostModels, modelsAfterEdit, type ServedModels } from '../../src/translate/models.js';

const served = new Map<string, ServedModels>([
  ['backend/ai/a', { owner: 'ai/a', ids: ['m1', 'm2'] }],
  ['backend/ai/b', { owner: 'ai/b', ids: ['m2', 'm3'] }],
  ['backend/ai/c', { owner: 'ai/c', ids: ['m1', 'm3', 'm4'] }],
  ['backend/ai/d', { owner: 'ai/d', ids: [] }],
]);
const CLUSTERS = [...served.keys(), 'service/ai/web/80'];

interface RouteSpec {
  clusters: number[];
  header: 'none' | 'exact' | 'regex';
  claims: boolean;
}

const routeArb: fc.Arbitrary<RouteSpec> = fc.record({
  clusters: fc.array(fc.nat(CLUSTERS.length - 1), { minLength: 1, maxLength: 2 }),
  header: fc.constantFrom('none', 'none', 'exact', 'regex'),
  claims: fc.nat(9).map((n) => n === 0),
});

let made = 0;
function route(spec: RouteSpec): RouteIR {
  const header = spec.header === 'exact' ? [{ name: 'x-switchyard-model', value: 'm3', regex: false }] : spec.header === 'regex' ? [{ name: 'x-switchyard-model', value: 'm[12]', regex: true }] : [];
  return {
    name: `r${made++}`,
    match: { path: spec.claims ? { kind: 'Exact', value: '/v1/models' } : { kind: 'PathPrefix', value: '/' }, headers: header, queryParams: [] },
    action: { kind: 'forward', clusters: spec.clusters.map((c) => ({ name: CLUSTERS[c] as string, weight: 1 })), timeoutMs: 0, autoHostRewrite: true },
  };
}

const editArb = fc.record({
  remove: fc.array(fc.nat(), { maxLength: 3 }),
  add: fc.array(fc.tuple(fc.nat(), routeArb), { maxLength: 3 }),
});

describe('a host\'s /v1/models answer after an edit', () => {
  it('is the answer built from all its routes, edit after edit', () => {
    let followed = 0;
    fc.assert(
      fc.property(fc.array(routeArb, { minLength: 1, maxLength: 12 }), fc.array(editArb, { minLength: 1, maxLength: 8 }), (initial, edits) => {
        let routes = initial.map(route);
        let models = hostModels(routes, served, 'vh');
        for (const edit of edits) {
          const next = routes.slice();
          const removed: RouteIR[] = [];
          for (const r of edit.remove) {
            if (next.length === 0) break;
            removed.push(...next.splice(r % next.length, 1));
          }
          const added: RouteIR[] = [];
          for (const [at, spec] of edit.add) {
            const r = route(spec);
            added.push(r);
            next.splice(at % (next.length + 1), 0, r);
          }
          const after = modelsAfterEdit(models, next, removed, added, served, 'vh');
          const full = hostModels(next, served, 'vh');
          if (after !== undefined) {
            followed++;
            expect(after.route).toEqual(full?.route);
            expect([...after.owners].sort()).toEqual([...(full?.owners ?? [])].sort());
          }
          models = after ?? full;
          routes = next;
        }
      }),
      { numRuns: 300 },
    );
    // The edits were followed, not only built again: the comparison above was made.
    expect(followed).toBeGreaterThan(300);
  });

  it('is followed edit by edit when it can be (not built again from every route)', () => {
    const routes = [route({ clusters: [0], header: 'none', claims: false }), route({ clusters: [1], header: 'none', claims: false })];
    const before = hostModels(routes, served, 'vh');
    const moved = route({ clusters: [2], header: 'none', claims: false });
    const next = [moved, ...routes.slice(1)];
    const after = modelsAfterEdit(before, next, [routes[0] as RouteIR], [moved], served, 'vh');
    // m1 and m3 now first served by ai/c; m2 by ai/b, once ai/a left.
    expect(after?.owners).toEqual(new Map([['m1', 'ai/c'], ['m2', 'ai/b'], ['m3', 'ai/c'], ['m4', 'ai/c']]));
    expect(after?.route).toEqual(hostModels(next, served, 'vh')?.route);
  });
});
