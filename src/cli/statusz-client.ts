import { UsageError } from './flags.js';

/**
 * `--from URL` of `switchyard status` and `switchyard drill`: the /statusz of a running serve or
 * controller (its metrics port), read as JSON. Each command checks the shape it needs; this
 * names the address, and the flag to check, when nothing usable answers.
 */
export async function readStatusz(base: string, command: 'status' | 'drill'): Promise<{ url: URL; json: unknown }> {
  let url: URL;
  try {
    url = new URL('/statusz', base);
  } catch {
    throw new UsageError(`--from must be the http:// address of a running serve or controller's metrics port (e.g. http://127.0.0.1:9090), got "${base}"`, command);
  }
  let text: string;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    text = await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.trim()}`);
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? ` (${err.cause.message})` : '';
    throw new Error(`--from ${base}: cannot read ${url.href}: ${err instanceof Error ? err.message : String(err)}${cause}; is serve or controller running with --metrics-port ${url.port || '80'}?`);
  }
  try {
    return { url, json: JSON.parse(text) };
  } catch {
    throw new Error(`--from ${base}: ${url.href} did not answer JSON; is it a switchyard metrics port?`);
  }
}
