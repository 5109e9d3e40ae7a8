import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { condition } from '../../src/api/conditions.js';
import { CONTROLLER_NAME } from '../../src/api/gateway.js';
import { ownStatus, toObjectStatus } from '../../src/cli/status.js';
import { badConditions, isBadCondition, statusTable } from '../../src/cli/status-view.js';
import { runPipeline } from '../../src/pipeline.js';
import { FileProvider } from '../../src/providers/file.js';
import { desiredStatus } from '../../src/status/desired.js';
import type { ObjectStatus } from '../../src/translate/status.js';

/**
 * `switchyard status --kubeconfig` reads back what the status writer wrote: the `.status` that
 * desiredStatus() builds, parsed by toObjectStatus(), must show the same table as translation.
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const SHOWN = new Set(['Gateway', 'HTTPRoute', 'Backend']);
let dir = '';
let statuses: ObjectStatus[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'switchyard-status-view-'));
  cpSync(join(ROOT, 'examples'), dir, { recursive: true, filter: (src) => !src.includes('/demo') });
  writeFileSync(join(dir, 'lost.yaml'), `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lost, namespace: ai}
spec:
  parentRefs: [{name: ai-gateway}]
  rules: [{backendRefs: [{group: switchyard.dev, kind: Backend, name: nowhere}]}]
`);
  const provider = new FileProvider({ path: dir, resyncIntervalMs: 0 });
  const snapshot = await provider.start();
  await provider.stop();
  statuses = runPipeline(snapshot.inputs).translation.statuses.filter((s) => SHOWN.has(s.kind));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('status read back from the API server', () => {
  it('shows what translation said, from the .status the writer puts', () => {
    const ctx = { controllerName: CONTROLLER_NAME, now: '2030-01-01T00:00:00Z' };
    const readBack = statuses.map((s) => {
      const written = desiredStatus(s, { metadata: { name: s.name, namespace: s.namespace, generation: 2 } }, ctx);
      // As the API server returns it: JSON, with another controller's parent entry beside ours.
      const raw = JSON.parse(JSON.stringify(written)) as Record<string, unknown>;
      if (s.kind === 'HTTPRoute' && Array.isArray(raw['parents'])) raw['parents'].push({ parentRef: { name: 'theirs' }, controllerName: 'example.com/other', conditions: [] });
      return toObjectStatus(s.kind, s.namespace, s.name, ownStatus(s.kind, raw));
    });
    expect(statuses.length).toBeGreaterThanOrEqual(5);
    expect(statusTable(readBack)).toBe(statusTable(statuses));
    expect(statusTable(readBack)).not.toContain('theirs');
    expect(badConditions(readBack)).toEqual(['HTTPRoute ai/lost ResolvedRefs=False(BackendNotFound)']);
  });

  it('shows an object without any status yet as such, not as an error', () => {
    const fresh = toObjectStatus('Backend', 'ai', 'new', undefined);
    expect(statusTable([fresh])).toMatch(/^Backend +ai\/new +members 0\/0 usable, 0\/0 priorities served$/m);
    expect(badConditions([fresh])).toEqual([]);
  });
});

describe('which conditions are problems', () => {
  it('False on positive conditions and True on negative ones; Programmed=False/Pending is not one', () => {
    expect(isBadCondition(condition('ResolvedRefs', false, 'BackendNotFound', 'x', 1))).toBe(true);
    expect(isBadCondition(condition('Accepted', true, 'Accepted', 'x', 1))).toBe(false);
    expect(isBadCondition(condition('Conflicted', true, 'HostnameConflict', 'x', 1))).toBe(true);
    expect(isBadCondition(condition('Conflicted', false, 'NoConflicts', 'x', 1))).toBe(false);
    expect(isBadCondition(condition('Programmed', false, 'Pending', 'x', 1))).toBe(false);
    expect(isBadCondition(condition('Programmed', false, 'Rejected', 'x', 1))).toBe(true);
  });
});
