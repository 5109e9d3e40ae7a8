import type { DecodedValue } from '../../src/ai-extension/protocol.js';
import { ATTEMPT_FACTS_ATTRIBUTE, CONNECTION_READY_ATTRIBUTE } from '../../src/envoy/ai-extension.js';
import { encodeAttemptFacts, type AttemptFacts } from '../../src/envoy/attempt-facts.js';

/** A member's facts as tests write them: every value as text (priority '1'), aliases as a map. */
export type MemberFactsText = Partial<Record<Exclude<keyof AttemptFacts, 'modelAliases'>, string>> & { modelAliases?: Record<string, string> };

const NUMBERS = ['priority', 'firstTokenTimeoutMs', 'requestsPerMinute', 'tokensPerMinute'] as const;

/** The facts string Envoy would send for an endpoint with these facts (src/envoy/attempt-facts.ts). */
export function memberFactsString(values: MemberFactsText): string {
  const facts: AttemptFacts = {};
  for (const [key, value] of Object.entries(values) as [keyof AttemptFacts, unknown][]) {
    if (value === undefined) continue;
    if ((NUMBERS as readonly string[]).includes(key)) Object.assign(facts, { [key]: Number(value) });
    else Object.assign(facts, { [key]: value });
  }
  return encodeAttemptFacts(facts);
}

/**
 * ProcessingRequest.attributes as Envoy 1.40 gives them for an attempt on a member with these
 * facts; `ready`: Envoy had a connection to it ready (CONNECTION_READY_ATTRIBUTE).
 */
export function attemptAttributes(values: MemberFactsText, ready = false): Map<string, DecodedValue> {
  const map = new Map<string, DecodedValue>([[ATTEMPT_FACTS_ATTRIBUTE, { stringValue: memberFactsString(values) }]]);
  if (ready) map.set(CONNECTION_READY_ATTRIBUTE, { stringValue: '23.132us' });
  return map;
}
