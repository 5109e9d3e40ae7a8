import { afterEach, describe, expect, it, vi } from 'vitest';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { resources } from '../support/xds-stream.js';

/**
 * A completed push rehearsal runs once a fleet has connected and the server idles: it ends with
 * one full GC (collectAfterPushRehearsal), so that the garbage of the fleet's connecting is not
 * marked by V8 during the fleet's first edits. The GC itself is replaced here: what is asserted is
 * that it runs once, after the rehearsal's pushes, and is reported.
 */
const calls: { inRehearsal: boolean }[] = [];
let serverUnderTest: XdsServer | undefined;

vi.mock('../../src/observability/idle-compaction.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/observability/idle-compaction.js')>();
  return {
    ...original,
    collectAfterPushRehearsal: () => {
      calls.push({ inRehearsal: serverUnderTest?.pushRehearsal === 'running' });
      return { ms: 3, cpuMs: 5, usedBeforeBytes: 50 * 1024 * 1024, usedAfterBytes: 45 * 1024 * 1024 };
    },
  };
});

afterEach(() => {
  calls.length = 0;
});

describe('push rehearsal, garbage collection', () => {
  it.each(['delta', 'sotw'] as const)('collects once at the end of a completed %s rehearsal, and says so in its result', async (protocol) => {
    const cache = new SnapshotCache();
    cache.setResources(resources());
    const server = new XdsServer({ cache, rehearsePushes: false });
    serverUnderTest = server;
    try {
      const result = await server.rehearsePushes({ streams: 3, edits: 2 }, protocol);
      expect(result.completed).toBe(true);
      expect(calls).toEqual([{ inRehearsal: true }]);
      expect(result.collected).toEqual({ ms: 3, cpuMs: 5, usedBeforeMB: 50, usedAfterMB: 45 });
    } finally {
      serverUnderTest = undefined;
      await server.stop();
    }
  });
});
