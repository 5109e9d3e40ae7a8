import { describe, expect, it } from 'vitest';
import type { MatchIR } from '../../src/ir/model.js';
import { compareRoutes, type RankedRoute } from '../../src/translate/precedence.js';

interface Spec {
  id: string;
  path?: MatchIR['path'];
  method?: string;
  headers?: number;
  queryParams?: number;
  createdAt?: string;
  routeKey?: string;
  ruleIndex?: number;
  matchIndex?: number;
}

function ranked(s: Spec): RankedRoute<string> {
  const match: MatchIR = {
    path: s.path ?? { kind: 'PathPrefix', value: '/' },
    headers: Array.from({ length: s.headers ?? 0 }, (_, i) => ({ name: `h${i}`, value: 'v', regex: false })),
    queryParams: Array.from({ length: s.queryParams ?? 0 }, (_, i) => ({ name: `q${i}`, value: 'v', regex: false })),
    ...(s.method ? { method: s.method } : {}),
  };
  return { route: s.id, match, createdAt: s.createdAt ?? '', routeKey: s.routeKey ?? 'ns/route', ruleIndex: s.ruleIndex ?? 0, matchIndex: s.matchIndex ?? 0 };
}

/** Sorts from a scrambled order, so the result depends on the comparator only. */
function order(specs: Spec[]): string[] {
  const items = specs.map(ranked);
  const scrambled = [...items.slice(1), ...items.slice(0, 1)].reverse();
  return scrambled.sort(compareRoutes).map((r) => r.route);
}

describe('compareRoutes (Gateway API HTTPRoute precedence)', () => {
  it('puts Exact paths first, then regular expressions, then prefixes', () => {
    expect(order([
      { id: 'prefix', path: { kind: 'PathPrefix', value: '/v1/chat/completions' } },
      { id: 'regex', path: { kind: 'RegularExpression', value: '/v1/.*' } },
      { id: 'exact', path: { kind: 'Exact', value: '/v1' } },
    ])).toEqual(['exact', 'regex', 'prefix']);
  });

  it('orders prefixes longest first, so "/" comes last', () => {
    expect(order([
      { id: 'root', path: { kind: 'PathPrefix', value: '/' } },
      { id: 'v1-chat', path: { kind: 'PathPrefix', value: '/v1/chat' } },
      { id: 'v1', path: { kind: 'PathPrefix', value: '/v1' } },
    ])).toEqual(['v1-chat', 'v1', 'root']);
  });

  it('on equal paths: a method match, then more header matches, then more query matches', () => {
    expect(order([
      { id: 'plain' },
      { id: 'one-query', queryParams: 1 },
      { id: 'two-headers', headers: 2 },
      { id: 'one-header-two-queries', headers: 1, queryParams: 2 },
      { id: 'method', method: 'POST' },
    ])).toEqual(['method', 'two-headers', 'one-header-two-queries', 'one-query', 'plain']);
  });

  it('a longer prefix beats a method or header match on a shorter one', () => {
    expect(order([
      { id: 'short-with-method', path: { kind: 'PathPrefix', value: '/v' }, method: 'GET', headers: 3 },
      { id: 'long', path: { kind: 'PathPrefix', value: '/v1/x' } },
    ])).toEqual(['long', 'short-with-method']);
  });

  it('breaks full ties by the older route, then namespace/name, then rule and match order', () => {
    expect(order([
      { id: 'new', createdAt: '2025-03-01T00:00:00Z', routeKey: 'a/a' },
      { id: 'old-b', createdAt: '2025-01-01T00:00:00Z', routeKey: 'ns/b' },
      { id: 'old-a-rule1', createdAt: '2025-01-01T00:00:00Z', routeKey: 'ns/a', ruleIndex: 1 },
      { id: 'old-a-rule0-match1', createdAt: '2025-01-01T00:00:00Z', routeKey: 'ns/a', ruleIndex: 0, matchIndex: 1 },
      { id: 'old-a-rule0-match0', createdAt: '2025-01-01T00:00:00Z', routeKey: 'ns/a', ruleIndex: 0, matchIndex: 0 },
    ])).toEqual(['old-a-rule0-match0', 'old-a-rule0-match1', 'old-a-rule1', 'old-b', 'new']);
  });

  it('is a consistent order: a before b exactly when b is after a', () => {
    const all = [
      ranked({ id: '1', path: { kind: 'Exact', value: '/a' } }),
      ranked({ id: '2', method: 'GET' }),
      ranked({ id: '3', headers: 1, createdAt: '2025-01-01T00:00:00Z' }),
      ranked({ id: '4', headers: 1, routeKey: 'x/y' }),
    ];
    for (const a of all) for (const b of all) expect(Math.sign(compareRoutes(a, b)) + 0).toBe(0 - Math.sign(compareRoutes(b, a)));
  });
});
