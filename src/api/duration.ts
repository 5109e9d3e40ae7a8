/**
 * Durations: Gateway API (GEP-2257: "1h2m3s500ms", units h/m/s/ms, at most four parts) and the
 * Backend API (same form) parse to milliseconds; Envoy wants proto3 JSON Duration strings.
 */
const GEP_2257 = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
/** The pattern in the CRD's OpenAPI schema, by which the API docs recognise a duration. */
export const DURATION_PATTERN = GEP_2257.source;
const PART = /([0-9]{1,5})(ms|h|m|s)/g;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1_000, ms: 1 };

export const DURATION_HINT = 'use a duration such as "500ms", "2s", "1m30s" (units h, m, s, ms)';

export function parseDuration(text: string): number | undefined {
  if (!GEP_2257.test(text)) return undefined;
  let total = 0;
  for (const match of text.matchAll(PART)) {
    total += Number(match[1]) * (UNIT_MS[match[2] ?? ''] ?? 0);
  }
  return total;
}

/** Milliseconds → proto3 JSON Duration ("0.025s", "15s"). */
export function toEnvoyDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const millis = ms % 1000;
  if (millis === 0) return `${seconds}s`;
  return `${seconds}.${String(millis).padStart(3, '0').replace(/0+$/, '')}s`;
}
