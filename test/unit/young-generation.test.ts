import { getHeapSpaceStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { holdYoungGeneration } from '../../src/observability/young-generation.js';

function newSpaceBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? Number.NaN;
}

/** Objects that all survive, as a load or a first translation makes them: what makes V8 grow its young generation. */
function pileUp(): unknown[] {
  const kept: unknown[] = [];
  for (let i = 0; i < 800_000; i++) kept.push({ index: i, name: `object-${i}` });
  return kept;
}

describe('holdYoungGeneration', () => {
  it('keeps the young generation at its size while held, through nested holds, and lets it grow once all are released', () => {
    const start = newSpaceBytes();
    const outer = holdYoungGeneration();
    const inner = holdYoungGeneration();
    inner();
    // A release called twice must not release the outer hold.
    inner();
    let kept = pileUp();
    expect(newSpaceBytes()).toBeLessThanOrEqual(start);
    outer();
    kept = [kept, pileUp(), pileUp()];
    expect(newSpaceBytes()).toBeGreaterThan(start);
    expect(kept).toHaveLength(3);
  });
});
