import type { MatchIR } from '../ir/model.js';

/** Route entry with what Gateway API precedence needs to order it. */
export interface RankedRoute<T> {
  route: T;
  match: MatchIR;
  createdAt: string;
  routeKey: string;
  ruleIndex: number;
  matchIndex: number;
}

/**
 * Gateway API HTTPRoute precedence: exact path, then longest prefix, then method, then most
 * header matches, then most query matches, then oldest route, then name, then rule order.
 */
export function compareRoutes<T>(a: RankedRoute<T>, b: RankedRoute<T>): number {
  if (pathRank(a.match) !== pathRank(b.match)) return pathRank(b.match) - pathRank(a.match);
  if (a.match.path.value.length !== b.match.path.value.length) return b.match.path.value.length - a.match.path.value.length;
  if (methodRank(a.match) !== methodRank(b.match)) return methodRank(b.match) - methodRank(a.match);
  if (a.match.headers.length !== b.match.headers.length) return b.match.headers.length - a.match.headers.length;
  if (a.match.queryParams.length !== b.match.queryParams.length) return b.match.queryParams.length - a.match.queryParams.length;
  if (a.createdAt !== b.createdAt) return a.createdAt < b.createdAt ? -1 : 1;
  if (a.routeKey !== b.routeKey) return a.routeKey < b.routeKey ? -1 : 1;
  if (a.ruleIndex !== b.ruleIndex) return a.ruleIndex - b.ruleIndex;
  return a.matchIndex - b.matchIndex;
}

// Module functions, not closures made per comparison: sorting 10,000 routes compares them over
// a hundred thousand times, and tsx (which runs serve in development and the benches) names
// every closure it makes.
function pathRank(m: MatchIR): number {
  return m.path.kind === 'Exact' ? 2 : m.path.kind === 'RegularExpression' ? 1 : 0;
}

function methodRank(m: MatchIR): number {
  return m.method ? 1 : 0;
}
