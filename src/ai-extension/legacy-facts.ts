import { LEGACY_ATTEMPT_KEYS, legacyAttemptAttribute, type LegacyAttemptKey } from '../envoy/ai-extension.js';
import type { AttemptFacts } from '../envoy/attempt-facts.js';
import type { DecodedValue } from './protocol.js';

/**
 * The member facts as the release before the facts string sent them: one endpoint metadata key
 * per fact, each read through its own CEL attribute (LEGACY_ATTEMPT_KEYS). An extension meets
 * them when Envoy's configuration comes from a controller of that release, or from this one
 * serving a data plane that still has an Envoy of that release (src/ai-extension/README.md,
 * "Version skew").
 */

/** Each key's expression, built once: read on every attempt of a legacy data plane. */
const ATTRIBUTES: readonly (readonly [LegacyAttemptKey, string])[] = LEGACY_ATTEMPT_KEYS.map((key) => [key, legacyAttemptAttribute(key)] as const);

const NUMBER_KEYS: ReadonlySet<LegacyAttemptKey> = new Set(['priority', 'firstTokenTimeoutMs', 'requestsPerMinute', 'tokensPerMinute']);

/** A scalar CEL leaf as Envoy sends it: strings as string_value, numbers (priority) as number_value. */
function text(v: DecodedValue | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v.stringValue === 'string' && v.stringValue !== '') return v.stringValue;
  if (typeof v.numberValue === 'number') return String(v.numberValue);
  return undefined;
}

/** The old release sent the aliases as one JSON object string (a CEL map arrives as "CelMap value"). */
function aliasesOf(json: string): Record<string, string> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  // No prototype: an alias named "__proto__" is an alias like any other, as in the facts string.
  const out = Object.create(null) as Record<string, string>;
  for (const [alias, model] of Object.entries(parsed)) if (typeof model === 'string') out[alias] = model;
  return out;
}

/**
 * The member's facts from the legacy per-key attributes, or undefined when Envoy sent none of
 * them (the endpoint is not an AI member of either release).
 */
export function legacyAttemptFacts(attributes: ReadonlyMap<string, DecodedValue>): AttemptFacts | undefined {
  const facts: AttemptFacts = {};
  let found = false;
  for (const [key, attribute] of ATTRIBUTES) {
    const value = text(attributes.get(attribute));
    if (value === undefined) continue;
    found = true;
    if (key === 'modelAliases') {
      const aliases = aliasesOf(value);
      if (aliases !== undefined) facts.modelAliases = aliases;
    } else if (NUMBER_KEYS.has(key)) {
      (facts as Record<string, number>)[key] = Number(value);
    } else {
      (facts as Record<string, string>)[key] = value;
    }
  }
  return found ? facts : undefined;
}
