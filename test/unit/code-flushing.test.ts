import { describe, expect, it } from 'vitest';
import { keepCompiledCode } from '../../src/observability/code-flushing.js';

describe('keepCompiledCode', () => {
  it("turns V8's bytecode flushing off for a long-running command", () => {
    expect(keepCompiledCode(['--max-semi-space-size=16', ''])).toBe(true);
  });

  it("leaves an operator's own setting alone, on the command line or in NODE_OPTIONS", () => {
    expect(keepCompiledCode(['--flush-bytecode', ''])).toBe(false);
    expect(keepCompiledCode(['', '--no-flush_bytecode'])).toBe(false);
  });
});
