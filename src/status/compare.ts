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

/**
 * The condition types whose status, reason or message differ (added or removed ones too), for
 * logs: "conditions" alone does not say whether Programmed or Degraded moved.
 */
export function changedConditions(current: Record<string, unknown> | undefined, desired: Record<string, unknown>): string[] {
  const byType = (s: Record<string, unknown> | undefined): Map<string, string> => {
    const out = new Map<string, string>();
    const list = s?.['conditions'];
    if (!Array.isArray(list)) return out;
    for (const c of list as unknown[]) {
      if (typeof c !== 'object' || c === null) continue;
      const { type, status, reason, message } = c as Record<string, unknown>;
      if (typeof type === 'string') out.set(type, JSON.stringify([status, reason, message]));
    }
    return out;
  };
  const before = byType(current);
  const after = byType(desired);
  return [...new Set([...before.keys(), ...after.keys()])].filter((t) => before.get(t) !== after.get(t)).sort();
}

/** Dotted paths of the top-level status fields that differ, for logs ("conditions", "parents"). */
export function changedFields(current: Record<string, unknown> | undefined, desired: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(current ?? {}), ...Object.keys(desired)]);
  return [...keys].filter((k) => !sameStatus(current?.[k], desired[k])).sort();
}
