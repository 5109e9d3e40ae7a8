import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { logStatusChanges } from '../../src/app/gateway-runtime.js';
import type { ObjectStatus } from '../../src/translate/status.js';

function backend(i: number, missing: boolean): ObjectStatus {
  return {
    kind: 'Backend',
    namespace: 'ai',
    name: `chat-${i}`,
    conditions: [
      { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'Backend is valid' },
      missing
        ? { type: 'ResolvedRefs', status: 'False', reason: 'SecretNotFound', message: `Secret ai/key-${i} not found` }
        : { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'all references resolved' },
      { type: 'Programmed', status: 'False', reason: 'Pending', message: 'waiting for a connected Envoy to acknowledge the configuration' },
    ],
    priorities: [],
    servedPriorities: 0,
    usableMembers: 0,
    totalMembers: 0,
  } as ObjectStatus;
}

function logged(changed: ObjectStatus[]): Record<string, unknown>[] {
  const lines: string[] = [];
  logStatusChanges(pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }), changed);
  return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('status change log lines', () => {
  it('logs each object of a small change', () => {
    const lines = logged([backend(1, false), backend(2, true)]);
    expect(lines.map((l) => [l['msg'], l['object']])).toEqual([['status changed', 'Backend ai/chat-1'], ['status changed', 'Backend ai/chat-2']]);
    expect(lines[1]?.['conditions']).toBe('Accepted=True ResolvedRefs=False(SecretNotFound) Programmed=False(Pending)');
  });

  it('sums up a large one in one line, still naming every object with a problem (Pending is none)', () => {
    const changed = Array.from({ length: 500 }, (_, i) => backend(i, i % 100 === 7));
    const lines = logged(changed);
    expect(lines.filter((l) => l['msg'] === 'status changed').map((l) => l['object'])).toEqual(['Backend ai/chat-7', 'Backend ai/chat-107', 'Backend ai/chat-207', 'Backend ai/chat-307', 'Backend ai/chat-407']);
    const summary = lines.filter((l) => l['msg'] !== 'status changed');
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatchObject({
      objects: 500,
      byKind: { Backend: 500 },
      withProblems: 5,
      conditions: { 'Accepted=True': 500, 'ResolvedRefs=True': 495, 'ResolvedRefs=False(SecretNotFound)': 5, 'Programmed=False(Pending)': 500 },
    });
  });
});
