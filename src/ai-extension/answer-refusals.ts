import { StringDecoder } from 'node:string_decoder';
import { EventStreamDecoder } from './eventstream.js';
import { isRecord, parseObject } from './json.js';
import { SseEvents } from './sse-events.js';

/**
 * Content-policy refusals that come back as a *successful* answer (HTTP 200), in each vendor's
 * own shape, as the provider sends them (before the extension translates them to OpenAI's):
 *
 * - OpenAI, Azure OpenAI and OpenAI-compatible endpoints (Gemini's and Vertex AI's included):
 *   a choice whose `finish_reason` is `content_filter` and that carries no content;
 * - Anthropic Messages: `stop_reason: "refusal"` (streamed: on `message_delta`);
 * - Gemini `generateContent` (Vertex AI): `promptFeedback.blockReason`, or a candidate whose
 *   `finishReason` is SAFETY, PROHIBITED_CONTENT, BLOCKLIST, SPII or IMAGE_SAFETY;
 * - Bedrock Converse: `stopReason` `content_filtered` or `guardrail_intervened` (streamed: on
 *   `messageStop`).
 *
 * A streamed refusal counts only before the first content: after it, the client is already
 * reading the answer and it cannot be retried.
 */
export type AnswerFormat = 'openai' | 'anthropic' | 'gemini' | 'bedrock';

/** What the answer read so far says: a refusal, content (the client must get it), or not yet. */
export type AnswerVerdict = 'refusal' | 'content' | undefined;

const GEMINI_BLOCKED = new Set(['SAFETY', 'PROHIBITED_CONTENT', 'BLOCKLIST', 'SPII', 'IMAGE_SAFETY']);
const BEDROCK_BLOCKED = new Set(['content_filtered', 'guardrail_intervened']);

/** A refusal in a whole (non-streamed) JSON answer of `format`; undefined: an answer. */
export function isRefusalAnswer(format: AnswerFormat, body: string): boolean {
  const answer = parseObject(body);
  if (answer === undefined) return false;
  switch (format) {
    case 'openai': {
      const choices = Array.isArray(answer['choices']) ? answer['choices'] : [];
      // Every choice filtered and empty: a partly filtered answer is still an answer.
      return choices.length > 0 && choices.every((c) => isRecord(c) && c['finish_reason'] === 'content_filter' && !hasOpenAIContent(c['message']));
    }
    case 'anthropic':
      return answer['stop_reason'] === 'refusal';
    case 'gemini':
      return geminiVerdict(answer) === 'refusal';
    case 'bedrock':
      return typeof answer['stopReason'] === 'string' && BEDROCK_BLOCKED.has(answer['stopReason']);
  }
}

/**
 * Reads a streamed answer chunk by chunk until it shows content or a refusal: SSE events for
 * OpenAI, Anthropic and Gemini, the binary event stream for Bedrock.
 */
export class StreamRefusalWatch {
  private readonly decoder = new StringDecoder('utf8');
  private readonly events = new SseEvents();
  private readonly frames = new EventStreamDecoder();
  private verdict: AnswerVerdict;

  constructor(private readonly format: AnswerFormat) {}

  push(bytes: Uint8Array): AnswerVerdict {
    if (this.verdict !== undefined) return this.verdict;
    if (this.format === 'bedrock') {
      for (const frame of this.frames.push(bytes)) {
        this.verdict = bedrockEventVerdict(frame.headers[':event-type'], parseObject(frame.payload.toString('utf8')));
        if (this.verdict !== undefined) break;
      }
      return this.verdict;
    }
    for (const event of this.events.push(this.decoder.write(Buffer.from(bytes)))) {
      this.verdict = this.sseVerdict(event);
      if (this.verdict !== undefined) break;
    }
    return this.verdict;
  }

  private sseVerdict(event: string): AnswerVerdict {
    const data = event.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
    if (data === '' || data === '[DONE]') return undefined;
    const parsed = parseObject(data);
    if (parsed === undefined) return undefined;
    switch (this.format) {
      case 'openai':
        return openaiChunkVerdict(parsed);
      case 'anthropic':
        return anthropicEventVerdict(parsed);
      default:
        return geminiVerdict(parsed);
    }
  }
}

function nonEmpty(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v === 'string') return v !== '';
  if (Array.isArray(v)) return v.length > 0;
  return true;
}

function hasOpenAIContent(message: unknown): boolean {
  if (!isRecord(message)) return false;
  return nonEmpty(message['content']) || nonEmpty(message['tool_calls']) || nonEmpty(message['function_call']) || nonEmpty(message['audio']);
}

function openaiChunkVerdict(chunk: Record<string, unknown>): AnswerVerdict {
  // Azure's first chunk (prompt_filter_results) has no choices: neither content nor a refusal.
  const choices = Array.isArray(chunk['choices']) ? chunk['choices'] : [];
  for (const choice of choices) {
    if (!isRecord(choice)) continue;
    if (hasOpenAIContent(choice['delta'])) return 'content';
    if (choice['finish_reason'] === 'content_filter') return 'refusal';
  }
  return undefined;
}

function anthropicEventVerdict(event: Record<string, unknown>): AnswerVerdict {
  switch (event['type']) {
    case 'content_block_start': {
      const block = event['content_block'];
      return isRecord(block) && block['type'] === 'tool_use' ? 'content' : undefined;
    }
    case 'content_block_delta': {
      const delta = event['delta'];
      return isRecord(delta) && (nonEmpty(delta['text']) || nonEmpty(delta['partial_json']) || nonEmpty(delta['thinking'])) ? 'content' : undefined;
    }
    case 'message_delta': {
      const delta = event['delta'];
      return isRecord(delta) && delta['stop_reason'] === 'refusal' ? 'refusal' : 'content';
    }
    default:
      return undefined;
  }
}

function geminiVerdict(answer: Record<string, unknown>): AnswerVerdict {
  const feedback = answer['promptFeedback'];
  if (isRecord(feedback) && typeof feedback['blockReason'] === 'string' && feedback['blockReason'] !== 'BLOCKED_REASON_UNSPECIFIED' && feedback['blockReason'] !== 'BLOCK_REASON_UNSPECIFIED') return 'refusal';
  const candidates = Array.isArray(answer['candidates']) ? answer['candidates'] : [];
  let blocked = false;
  for (const candidate of candidates) {
    if (!isRecord(candidate)) continue;
    const content = candidate['content'];
    const parts = isRecord(content) && Array.isArray(content['parts']) ? content['parts'] : [];
    if (parts.some((p) => isRecord(p) && (nonEmpty(p['text']) || nonEmpty(p['functionCall'])))) return 'content';
    if (typeof candidate['finishReason'] === 'string' && GEMINI_BLOCKED.has(candidate['finishReason'])) blocked = true;
  }
  return blocked ? 'refusal' : undefined;
}

function bedrockEventVerdict(type: string | undefined, body: Record<string, unknown> | undefined): AnswerVerdict {
  if (body === undefined) return undefined;
  switch (type) {
    case 'contentBlockStart':
      return isRecord(body['start']) && isRecord(body['start']['toolUse']) ? 'content' : undefined;
    case 'contentBlockDelta': {
      const delta = body['delta'];
      return isRecord(delta) && (nonEmpty(delta['text']) || isRecord(delta['toolUse'])) ? 'content' : undefined;
    }
    case 'messageStop':
      return typeof body['stopReason'] === 'string' && BEDROCK_BLOCKED.has(body['stopReason']) ? 'refusal' : 'content';
    default:
      return undefined;
  }
}
