import { isRecord } from './json.js';

/** Refusals a pool may hand to the next priority (Backend contextWindowFallback, contentPolicyFallback). */
export const REFUSAL_CAUSES = ['context_length_exceeded', 'content_policy'] as const;
export type RefusalCause = (typeof REFUSAL_CAUSES)[number];

/** Error bodies are small; one larger than this is not a refusal worth reading. */
export const MAX_REFUSAL_BODY = 64 * 1024;

const CONTEXT_CODES = new Set(['context_length_exceeded', 'string_above_max_length']);
const CONTENT_CODES = new Set(['content_filter', 'content_policy_violation', 'responsibleaipolicyviolation']);
/** Anthropic ("prompt is too long: 250000 tokens > 200000 maximum", "input length and `max_tokens` exceed context limit"), Gemini ("The input token count (N) exceeds the maximum number of tokens allowed (M)"), vLLM and others ("maximum context length is"). */
const CONTEXT_MESSAGE = /prompt is too long|exceed(s)? context limit|input token count .*exceeds the maximum|maximum context length/i;

/**
 * Reads a provider's 400 answer and says whether it is a refusal another model may not give: the
 * request is over this model's context window, or its content policy refused it. OpenAI and Azure
 * OpenAI say so in `error.code` (Azure also in `error.innererror.code`); Anthropic and Gemini only
 * in the message.
 */
export function refusalCause(status: number, body: string): RefusalCause | undefined {
  if (status !== 400) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  // Gemini's OpenAI-compatible endpoint answers errors as a one-element array.
  const root = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!isRecord(root)) return undefined;
  const error = root['error'];
  if (!isRecord(error)) return undefined;
  const codes = [error['code'], isRecord(error['innererror']) ? error['innererror']['code'] : undefined]
    .filter((c): c is string => typeof c === 'string')
    .map((c) => c.toLowerCase());
  if (codes.some((c) => CONTEXT_CODES.has(c))) return 'context_length_exceeded';
  if (codes.some((c) => CONTENT_CODES.has(c))) return 'content_policy';
  const message = typeof error['message'] === 'string' ? error['message'] : '';
  if (CONTEXT_MESSAGE.test(message)) return 'context_length_exceeded';
  return undefined;
}
