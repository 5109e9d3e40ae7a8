/**
 * Whether an object's current `.status` already says what we would write. Times are compared as
 * instants to the second (the API server and other clients print `2025-01-02T03:04:05Z`, a
 * JavaScript clock `2025-01-02T03:04:05.000Z`), key order and absent-versus-undefined do not
 * count. Pure.
 */

function canonical(value: unknown, key?: string): unknown {
  if (key === 'lastTransitionTime' && typeof value === 'string') {
    const ms = Date.parse(value);
    return Number.isNaN(ms) ? value : Math.floor(ms / 1000);
  }
  if (Array.isArray(value)) return value.map((v) => canonical(v));
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v: unknown = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = canonical(v, k);
    }
    return out;
  }
  return value;
}

export function sameStatus(current: unknown, desired: unknown): boolean {
  return JSON.stringify(canonical(current ?? {})) === JSON.stringify(canonical(desired ?? {}));
}

/** Dotted paths of the top-level status fields that differ, for logs ("conditions", "parents"). */
export function changedFields(current: Record<string, unknown> | undefined, desired: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(current ?? {}), ...Object.keys(desired)]);
  return [...keys].filter((k) => !sameStatus(current?.[k], desired[k])).sort();
}
