import type { JsonRecord, Usage } from './json.js';

/** OpenAI's shapes that the vendor translators (Anthropic, Bedrock, Gemini) answer in. */

export function openaiUsage(u: Usage): JsonRecord {
  return { prompt_tokens: u.input, completion_tokens: u.output, total_tokens: u.input + u.output };
}

/** A vendor's whole answer as OpenAI's chat.completion (content is null when only tools were called). */
export function openaiCompletion(a: { id: string; created: number; model: string; text: string; toolCalls: readonly unknown[]; finishReason: string; usage: Usage }): JsonRecord {
  const tools = a.toolCalls.length > 0;
  return {
    id: a.id,
    object: 'chat.completion',
    created: a.created,
    model: a.model,
    system_fingerprint: null,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: tools && a.text === '' ? null : a.text, refusal: null, ...(tools ? { tool_calls: a.toolCalls } : {}) },
        logprobs: null,
        finish_reason: a.finishReason,
      },
    ],
    usage: openaiUsage(a.usage),
  };
}
