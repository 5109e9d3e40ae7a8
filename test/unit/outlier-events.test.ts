import { mkdtempSync, appendFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import type { IR, MemberIR } from '../../src/ir/model.js';
import { OutlierEventTail, ejectionReporter, memberAt, parseOutlierEvent, type OutlierEvent } from '../../src/observability/outlier-events.js';

// Lines as Envoy 1.40 wrote them (test/e2e/member-cool-down.test.ts).
const EJECT = '{"type":"CONSECUTIVE_GATEWAY_FAILURE","timestamp":"2026-12-05T03:14:40.119Z","cluster_name":"backend/ai/chat","upstream_url":"127.0.0.1:37407","action":"EJECT","num_ejections":1,"enforced":true,"eject_consecutive_event":{}}';
const UNEJECT = '{"type":"CONSECUTIVE_5XX","timestamp":"2026-12-05T03:14:41.139Z","secs_since_last_action":"1","cluster_name":"backend/ai/chat","upstream_url":"127.0.0.1:37407","action":"UNEJECT","num_ejections":1,"enforced":false}';

function member(name: string, address: string, port: number): MemberIR {
  return { name, address, port, weight: 1, tls: false, metadata: { backend: 'ai/chat', member: name } } as unknown as MemberIR;
}

const ir = {
  clusters: [{
    name: 'backend/ai/chat',
    backend: { kind: 'Backend', namespace: 'ai', name: 'chat' },
    priorities: [
      { level: 0, members: [member('primary', '127.0.0.1', 37407)] },
      { level: 1, members: [member('openai', 'api.openai.com', 443)] },
    ],
  }],
} as unknown as IR;

describe('Envoy outlier events by member', () => {
  it('reads ejections and un-ejections as Envoy writes them, and nothing else', () => {
    expect(parseOutlierEvent(EJECT)).toEqual({ cluster: 'backend/ai/chat', upstream: '127.0.0.1:37407', action: 'EJECT', type: 'CONSECUTIVE_GATEWAY_FAILURE', ejections: 1, enforced: true });
    expect(parseOutlierEvent(UNEJECT)?.action).toBe('UNEJECT');
    expect(parseOutlierEvent('not json')).toBeUndefined();
    expect(parseOutlierEvent('{"action":"EJECT"}')).toBeUndefined();
  });

  it('names the member by address and port, and a resolved hostname by its port when it is the only one', () => {
    expect(memberAt(ir, 'backend/ai/chat', '127.0.0.1:37407')).toEqual({ backend: 'ai/chat', member: 'primary', priority: 0 });
    expect(memberAt(ir, 'backend/ai/chat', '162.159.140.245:443')).toEqual({ backend: 'ai/chat', member: 'openai', priority: 1 });
    expect(memberAt(ir, 'backend/ai/chat', '10.0.0.9:8080')).toBeUndefined();
    expect(memberAt(ir, 'backend/ai/other', '127.0.0.1:37407')).toBeUndefined();
  });

  it('follows the file as Envoy appends to it, a line split across writes included, and starts over when it is truncated', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'outlier-events-'));
    const path = join(dir, 'events.log');
    const seen: OutlierEvent[] = [];
    const tail = new OutlierEventTail(path, (e) => seen.push(e));
    try {
      await tail.poll();
      expect(seen).toEqual([]);
      appendFileSync(path, `${EJECT}\n${UNEJECT.slice(0, 40)}`);
      await tail.poll();
      expect(seen.map((e) => e.action)).toEqual(['EJECT']);
      appendFileSync(path, `${UNEJECT.slice(40)}\n`);
      await tail.poll();
      expect(seen.map((e) => e.action)).toEqual(['EJECT', 'UNEJECT']);
      writeFileSync(path, `${EJECT}\n`);
      await tail.poll();
      expect(seen.map((e) => e.action)).toEqual(['EJECT', 'UNEJECT', 'EJECT']);
    } finally {
      tail.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ejections at an address several members share, without an admin API to ask', () => {
  const shared = {
    clusters: [{
      name: 'backend/ai/chat',
      backend: { kind: 'Backend', namespace: 'ai', name: 'chat' },
      priorities: [0, 1, 2].map((level) => ({ level, members: [{ ...member(['first', 'second', 'third'][level] ?? '', '127.0.0.1', 37407), hostname: 'models.llm.test' }] })),
    }],
  } as unknown as IR;

  it('the lowest priority not held ejected is ejected, and the first held comes back first', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
    const registry = new Registry();
    const report = ejectionReporter({ logger, registry, ir: () => shared });
    const event = parseOutlierEvent(EJECT) as OutlierEvent;
    const back = parseOutlierEvent(UNEJECT) as OutlierEvent;
    for (const e of [event, event, back, event]) report(e);
    await vi.waitFor(() => expect(lines).toHaveLength(4));
    expect(lines.map((l) => `${String(l['member'])}@${String(l['priority'])}`)).toEqual(['first@0', 'second@1', 'first@0', 'first@0']);
    const gauge = await registry.getSingleMetricAsString('switchyard_member_ejected');
    expect(gauge).toContain('switchyard_member_ejected{backend="ai/chat",member="first"} 1');
    expect(gauge).toContain('switchyard_member_ejected{backend="ai/chat",member="second"} 1');
  });
});
