import { setFlagsFromString } from 'node:v8';

/**
 * V8 doubles its young generation whenever enough objects survive it, up to 64 MiB per
 * semi-space (128 MiB resident, without pointer compression as Node ships). Everything a load
 * or a first translation keeps survives, so either pushed it to that maximum: 3.4x a 37.7 MiB
 * file on top of the configuration itself while loading it, and 112 MiB more while translating,
 * encoding and caching it (bench row config-load). While a configuration loads or is translated,
 * the young generation keeps the size it has; it grows again once that work is done.
 * semi_space_growth_factor is read each time V8 grows the space, so setting it at run time takes
 * effect; an operator's own setting of it is left alone.
 */
const OPERATOR_SET_GROWTH = [...process.execArgv, process.env['NODE_OPTIONS'] ?? ''].some((arg) => arg.includes('semi-space-growth-factor') || arg.includes('semi_space_growth_factor'));
let holds = 0;

/** Keeps the young generation at its size until the returned release is called (holds nest). */
export function holdYoungGeneration(): () => void {
  if (OPERATOR_SET_GROWTH) return () => undefined;
  if (holds++ === 0) setFlagsFromString('--semi-space-growth-factor=1');
  let released = false;
  return () => {
    if (released) return;
    released = true;
    // V8's default factor.
    if (--holds === 0) setFlagsFromString('--semi-space-growth-factor=2');
  };
}
