import { ATTEMPT_FACTS_ATTRIBUTE, CONNECTION_READY_ATTRIBUTE } from '../envoy/ai-extension.js';
import { ATTEMPT_FACTS_KEY, decodeAttemptFacts, type AttemptFacts } from '../envoy/attempt-facts.js';
import { legacyAttemptFacts } from './legacy-facts.js';
import type { DecodedValue } from './protocol.js';
import type { MemberLimits } from './limits.js';
import { REFUSAL_CAUSES, type RefusalCause } from './refusals.js';

export type AuthKind = 'SecretRef' | 'Inline' | 'Passthrough' | 'None' | 'ServiceAccountKey' | 'AwsKeys';

/**
 * The member Envoy picked for one attempt, as its endpoint metadata describes it (written by the
 * translator, src/translate/backends.ts, packed by src/envoy/attempt-facts.ts; read through one
 * CEL attribute, src/envoy/ai-extension.ts).
 */
export interface AttemptTarget {
  backend: string;
  member: string;
  priority: number;
  provider: string;
  /** Path of the provider's chat completions endpoint, query included. */
  path?: string;
  hostname?: string;
  model?: string;
  /** Header that carries the credential (`Authorization`, `api-key`, `x-api-key`, ...). */
  authHeader?: string;
  authKind: AuthKind;
  /** SDS name of the credential (`credential/<namespace>/<secret>`). */
  credential?: string;
  apiVersion?: string;
  deployment?: string;
  /** Time from the attempt's start to its first content token, after which it is abandoned. */
  firstTokenTimeoutMs?: number;
  /** SDS name of the Backend's drill key (`credential/<namespace>/<secret>`); absent: drills are ignored. */
  drillKey?: string;
  /** Refusals this member's pool hands on (context_length_exceeded, content_policy). */
  fallbacks?: readonly RefusalCause[];
  /** The Envoy priority a refusal goes to when its pool names one (else the next priority). */
  fallbackLevels?: Partial<Record<RefusalCause, number>>;
  /** Client model (alias) → the model this member is sent. */
  modelAliases?: Record<string, string>;
  /** Per-minute limits of the member (src/ai-extension/limits.ts). */
  limits?: MemberLimits;
}

const AUTH_KINDS: readonly string[] = ['SecretRef', 'Inline', 'Passthrough', 'None', 'ServiceAccountKey', 'AwsKeys'];

/** Reads the attempt's target from ProcessingRequest.attributes; an error string says what is missing. */
export function attemptTarget(attributes: ReadonlyMap<string, DecodedValue> | undefined): AttemptTarget | { error: string } {
  const text = attributes?.get(ATTEMPT_FACTS_ATTRIBUTE)?.stringValue;
  let facts: AttemptFacts | { error: string };
  if (text !== undefined && text !== '') facts = decodeAttemptFacts(text);
  else {
    // A data plane configured in the previous release's form: one attribute per fact.
    const legacy = attributes === undefined ? undefined : legacyAttemptFacts(attributes);
    if (legacy === undefined) {
      return { error: `the picked endpoint carries no AI member metadata (switchyard.dev ${ATTEMPT_FACTS_KEY} missing): is this cluster an AI Backend served by Switchyard?` };
    }
    facts = legacy;
  }
  if ('error' in facts) return { error: `the picked endpoint's AI member metadata cannot be read: ${facts.error}` };
  const { backend, member, provider } = facts;
  if (backend === undefined || member === undefined || provider === undefined) {
    const missing = Object.entries({ backend, member, provider }).flatMap(([k, v]) => (v === undefined ? [k] : []));
    return { error: `the picked endpoint carries no AI member metadata (${missing.join(', ')} missing): is this cluster an AI Backend served by Switchyard?` };
  }
  const kind = facts.authKind ?? 'None';
  const target: AttemptTarget = {
    backend,
    member,
    provider,
    priority: facts.priority ?? 0,
    authKind: AUTH_KINDS.includes(kind) ? (kind as AuthKind) : 'None',
  };
  if (facts.path !== undefined) target.path = facts.path;
  if (facts.hostname !== undefined) target.hostname = facts.hostname;
  if (facts.model !== undefined) target.model = facts.model;
  if (facts.authHeader !== undefined) target.authHeader = facts.authHeader;
  if (facts.credential !== undefined) target.credential = facts.credential;
  if (facts.apiVersion !== undefined) target.apiVersion = facts.apiVersion;
  if (facts.deployment !== undefined) target.deployment = facts.deployment;
  if (facts.drillKey !== undefined) target.drillKey = facts.drillKey;
  if (facts.fallbacks !== undefined) readFallbacks(facts.fallbacks, target);
  const deadline = facts.firstTokenTimeoutMs;
  if (deadline !== undefined && Number.isFinite(deadline) && deadline > 0) target.firstTokenTimeoutMs = deadline;
  if (facts.modelAliases !== undefined) target.modelAliases = facts.modelAliases;
  const rpm = facts.requestsPerMinute ?? 0;
  const tpm = facts.tokensPerMinute ?? 0;
  if (rpm > 0 || tpm > 0) target.limits = { ...(rpm > 0 ? { requestsPerMinute: rpm } : {}), ...(tpm > 0 ? { tokensPerMinute: tpm } : {}) };
  return target;
}

/** "cause" (the next priority) or "cause>level" (a named pool, served at that Envoy priority), comma-separated. */
function readFallbacks(text: string, target: AttemptTarget): void {
  const fallbacks: RefusalCause[] = [];
  for (const entry of text.split(',')) {
    const [cause = '', to] = entry.split('>');
    if (!(REFUSAL_CAUSES as readonly string[]).includes(cause)) continue;
    fallbacks.push(cause as RefusalCause);
    const level = Number(to);
    if (to !== undefined && Number.isInteger(level) && level >= 0) (target.fallbackLevels ??= {})[cause as RefusalCause] = level;
  }
  if (fallbacks.length > 0) target.fallbacks = fallbacks;
}

/** Whether Envoy had a connection to the picked host ready when the attempt began (CONNECTION_READY_ATTRIBUTE). */
export function connectionReady(attributes: ReadonlyMap<string, DecodedValue> | undefined): boolean {
  return attributes?.has(CONNECTION_READY_ATTRIBUTE) === true;
}
