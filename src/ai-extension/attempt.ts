import { ATTEMPT_KEYS, CONNECTION_READY_ATTRIBUTE, LIMIT_KEYS, attemptAttribute, type AttemptKey } from '../envoy/ai-extension.js';
import { parseModelAliases } from './models.js';
import type { DecodedValue } from './protocol.js';
import type { MemberLimits } from './limits.js';
import { REFUSAL_CAUSES, type RefusalCause } from './refusals.js';

export type AuthKind = 'SecretRef' | 'Inline' | 'Passthrough' | 'None' | 'ServiceAccountKey' | 'AwsKeys';

/**
 * The member Envoy picked for one attempt, as its endpoint metadata describes it (written by the
 * translator, src/translate/backends.ts; read through CEL attributes, src/envoy/ai-extension.ts).
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

/** Each key's CEL expression, as Envoy names the field: built once, read on every attempt. */
const ATTRIBUTE_NAMES = Object.fromEntries([...ATTEMPT_KEYS, ...LIMIT_KEYS].map((key) => [key, attemptAttribute(key)])) as Record<AttemptKey, string>;

const AUTH_KINDS: readonly string[] = ['SecretRef', 'Inline', 'Passthrough', 'None', 'ServiceAccountKey', 'AwsKeys'];

function text(v: DecodedValue | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v.stringValue === 'string' && v.stringValue !== '') return v.stringValue;
  if (typeof v.numberValue === 'number') return String(v.numberValue);
  return undefined;
}

/** Reads the attempt's target from ProcessingRequest.attributes; an error string says what is missing. */
export function attemptTarget(attributes: ReadonlyMap<string, DecodedValue> | undefined): AttemptTarget | { error: string } {
  const get = (key: AttemptKey): string | undefined => text(attributes?.get(ATTRIBUTE_NAMES[key]));
  const backend = get('backend');
  const member = get('member');
  const provider = get('provider');
  if (backend === undefined || member === undefined || provider === undefined) {
    const missing = ATTEMPT_KEYS.filter((k) => ['backend', 'member', 'provider'].includes(k) && get(k) === undefined);
    return { error: `the picked endpoint carries no AI member metadata (${missing.join(', ')} missing): is this cluster an AI Backend served by Switchyard?` };
  }
  const kind = get('authKind') ?? 'None';
  const target: AttemptTarget = {
    backend,
    member,
    provider,
    priority: Number(get('priority') ?? 0),
    authKind: AUTH_KINDS.includes(kind) ? (kind as AuthKind) : 'None',
  };
  const optional = ['path', 'hostname', 'model', 'authHeader', 'credential', 'apiVersion', 'deployment', 'drillKey'] as const;
  for (const key of optional) {
    const value = get(key);
    if (value !== undefined) target[key] = value;
  }
  // "cause" (the next priority) or "cause>level" (a named pool, served at that Envoy priority).
  const fallbacks: RefusalCause[] = [];
  for (const entry of (get('fallbacks') ?? '').split(',')) {
    const [cause = '', to] = entry.split('>');
    if (!(REFUSAL_CAUSES as readonly string[]).includes(cause)) continue;
    fallbacks.push(cause as RefusalCause);
    const level = Number(to);
    if (to !== undefined && Number.isInteger(level) && level >= 0) (target.fallbackLevels ??= {})[cause as RefusalCause] = level;
  }
  if (fallbacks.length > 0) target.fallbacks = fallbacks;
  const deadline = Number(get('firstTokenTimeoutMs'));
  if (Number.isFinite(deadline) && deadline > 0) target.firstTokenTimeoutMs = deadline;
  const aliases = parseModelAliases(get('modelAliases'));
  if (aliases !== undefined) target.modelAliases = aliases;
  const rpm = Number(get('requestsPerMinute'));
  const tpm = Number(get('tokensPerMinute'));
  if (rpm > 0 || tpm > 0) target.limits = { ...(rpm > 0 ? { requestsPerMinute: rpm } : {}), ...(tpm > 0 ? { tokensPerMinute: tpm } : {}) };
  return target;
}

/** Whether Envoy had a connection to the picked host ready when the attempt began (CONNECTION_READY_ATTRIBUTE). */
export function connectionReady(attributes: ReadonlyMap<string, DecodedValue> | undefined): boolean {
  return attributes?.has(CONNECTION_READY_ATTRIBUTE) === true;
}
