import { setFlagsFromString } from 'node:v8';

/**
 * Keeps the bytecode of functions a long-running command has not run lately (issue 9).
 *
 * V8 throws away the bytecode of a function its last six major GCs found unused ("flushing"),
 * and with it the function's feedback and optimized code. A control plane runs the code of an
 * edit (re-read, translation, the fan-out of a change) only when a user edits something, minutes
 * or hours apart, while its connected fleet, status work and keepalives go on running GCs: in the
 * xds-e2e bench at 10,000 Backends, the GC before the first edit flushed 80 functions of that
 * path (onCacheChange, pushChange, translateGateways, ...) that the start and the push rehearsal
 * had compiled, and the edit ran them from their source again, unoptimized. What is kept is the
 * bytecode of functions that ran once: a few MB, against an edit that pays to compile them anew.
 * flush_bytecode is read at every major GC, so setting it at run time takes effect; an operator's
 * own setting is left alone.
 */
export function keepCompiledCode(options: readonly string[] = [...process.execArgv, process.env['NODE_OPTIONS'] ?? '']): boolean {
  if (options.some((arg) => /flush[-_]bytecode/.test(arg))) return false;
  setFlagsFromString('--no-flush-bytecode');
  return true;
}
