import { describe, expect, it } from 'vitest';
import { parseDuration, toEnvoyDuration } from '../../src/api/duration.js';

describe('parseDuration (GEP-2257)', () => {
  it.each([
    ['0s', 0],
    ['500ms', 500],
    ['2s', 2_000],
    ['1m30s', 90_000],
    ['1h', 3_600_000],
    ['1h2m3s500ms', 3_723_500],
    ['99999ms', 99_999],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '10', '1.5s', '-1s', '1d', '2 s', '1S', '100000s', '1h1m1s1ms1h', 's'])('rejects %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('toEnvoyDuration (proto3 JSON Duration)', () => {
  it.each([
    [0, '0s'],
    [25, '0.025s'],
    [100, '0.1s'],
    [1_500, '1.5s'],
    [15_000, '15s'],
    [3_723_500, '3723.5s'],
  ])('%d ms is %s', (ms, text) => {
    expect(toEnvoyDuration(ms)).toBe(text);
  });

  it('round-trips what users write', () => {
    for (const text of ['25ms', '1s', '1m30s', '1h2m3s500ms']) {
      const ms = parseDuration(text) ?? Number.NaN;
      expect(Number(toEnvoyDuration(ms).slice(0, -1)) * 1000).toBeCloseTo(ms, 6);
    }
  });
});
