import { createRequire } from 'node:module';

// Envoy compiles safe_regex with RE2; JavaScript's RegExp accepts another language, so RE2
// itself (compiled to WebAssembly, loaded once) judges each pattern before Envoy sees it.
const require = createRequire(import.meta.url);
const { RE2 } = require('re2-wasm') as { RE2: new (pattern: string, flags: string) => unknown };

/** RE2's complaint about `pattern`, or undefined when Envoy will compile it. */
export function re2Error(pattern: string): string | undefined {
  try {
    new RE2(pattern, 'u');
    return undefined;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // "Invalid regular expression: /<pattern>/u: <RE2's text>": keep RE2's text.
    return message.replace(/^Invalid regular expression: \/.*\/u: /s, '');
  }
}
