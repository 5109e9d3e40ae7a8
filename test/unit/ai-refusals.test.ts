import { describe, expect, it } from 'vitest';
import { refusalCause } from '../../src/ai-extension/refusals.js';

const json = (v: unknown): string => JSON.stringify(v);

describe('refusalCause', () => {
  it('reads OpenAI\'s and Azure OpenAI\'s error codes', () => {
    expect(refusalCause(400, json({ error: { message: 'This model\'s maximum context length is 8192 tokens.', type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' } }))).toBe('context_length_exceeded');
    expect(refusalCause(400, json({ error: { message: 'filtered', type: 'invalid_request_error', param: 'prompt', code: 'content_filter' } }))).toBe('content_policy');
    expect(refusalCause(400, json({ error: { message: 'Your request was rejected as a result of our safety system.', code: 'content_policy_violation' } }))).toBe('content_policy');
    expect(refusalCause(400, json({ error: { message: 'filtered', type: null, code: 'content_filter', status: 400, innererror: { code: 'ResponsibleAIPolicyViolation' } } }))).toBe('content_policy');
  });

  it('reads Anthropic\'s and Gemini\'s messages', () => {
    expect(refusalCause(400, json({ type: 'error', error: { type: 'invalid_request_error', message: 'prompt is too long: 250001 tokens > 200000 maximum' } }))).toBe('context_length_exceeded');
    expect(refusalCause(400, json({ type: 'error', error: { type: 'invalid_request_error', message: 'input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000' } }))).toBe('context_length_exceeded');
    expect(refusalCause(400, json([{ error: { code: 400, message: 'The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).', status: 'INVALID_ARGUMENT' } }]))).toBe('context_length_exceeded');
  });

  it('says nothing of other 400s, other statuses, or bodies that are not JSON errors', () => {
    expect(refusalCause(400, json({ error: { message: 'Invalid value for \'temperature\'', code: 'invalid_value' } }))).toBeUndefined();
    expect(refusalCause(400, json({ type: 'error', error: { type: 'invalid_request_error', message: 'messages: text content blocks must be non-empty' } }))).toBeUndefined();
    expect(refusalCause(500, json({ error: { code: 'context_length_exceeded' } }))).toBeUndefined();
    expect(refusalCause(400, 'Bad Request')).toBeUndefined();
    expect(refusalCause(400, json({ message: 'no error object' }))).toBeUndefined();
  });
});
