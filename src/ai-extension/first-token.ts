import { StringDecoder } from 'node:string_decoder';
import { isRecord } from './json.js';
import { asBuffer } from './protocol.js';

/**
 * Reads a provider's answer as it arrives and says when the first content-bearing token is there.
 * Keep-alives do not count: SSE comments (": keep-alive"), events without data, OpenAI chunks whose
 * deltas carry only a role or empty content, Anthropic's message_start / ping / content_block_start
 * of text, Gemini events whose candidates have no text or call yet, and whitespace before a JSON
 * body. Anything that ends the wait otherwise (an error
 * event, a finish_reason, [DONE], a non-JSON event) counts too: the client must get it now.
 */
export class FirstTokenWatch {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private seen = false;

  /** `eventStream`: the answer is SSE; else a JSON body, whose first non-blank byte counts. */
  constructor(private readonly eventStream: boolean) {}

  get arrived(): boolean {
    return this.seen;
  }

  /** Feeds the next chunk; true once a content token (or anything the client must get) has arrived. */
  push(bytes: Uint8Array): boolean {
    if (this.seen) return true;
    const text = this.decoder.write(asBuffer(bytes));
    if (!this.eventStream) {
      if (text.trim() !== '') this.seen = true;
      return this.seen;
    }
    this.pending += text.replace(/\r\n?/g, '\n');
    let end = this.pending.indexOf('\n\n');
    while (end >= 0 && !this.seen) {
      const event = this.pending.slice(0, end);
      this.pending = this.pending.slice(end + 2);
      if (eventHasContent(event)) this.seen = true;
      end = this.pending.indexOf('\n\n');
    }
    return this.seen;
  }
}

function eventHasContent(event: string): boolean {
  const data = event
    .split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).replace(/^ /, ''))
    .join('\n');
  if (data.trim() === '') return false;
  if (data.trim() === '[DONE]') return true;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return true;
  }
  if (!isRecord(parsed)) return true;
  if (parsed['error'] !== undefined) return true;
  if (typeof parsed['type'] === 'string') return anthropicEventHasContent(parsed);
  if (parsed['candidates'] !== undefined || parsed['promptFeedback'] !== undefined) return geminiEventHasContent(parsed);
  const choices = parsed['choices'];
  if (!Array.isArray(choices)) return false;
  return choices.some((choice) => {
    if (!isRecord(choice)) return false;
    if (choice['finish_reason'] !== null && choice['finish_reason'] !== undefined) return true;
    const delta = choice['delta'];
    if (!isRecord(delta)) return false;
    return nonEmpty(delta['content']) || nonEmpty(delta['refusal']) || nonEmpty(delta['reasoning_content'])
      || nonEmpty(delta['tool_calls']) || nonEmpty(delta['function_call']) || nonEmpty(delta['audio']);
  });
}

/** Anthropic's Messages stream: text, thinking and tool input come in content_block_delta. */
function anthropicEventHasContent(event: Record<string, unknown>): boolean {
  switch (event['type']) {
    case 'message_start':
    case 'ping':
      return false;
    case 'content_block_start': {
      const block = event['content_block'];
      return isRecord(block) && block['type'] !== 'text' && block['type'] !== 'thinking';
    }
    case 'content_block_delta': {
      const delta = event['delta'];
      if (!isRecord(delta)) return false;
      return nonEmpty(delta['text']) || nonEmpty(delta['partial_json']) || nonEmpty(delta['thinking']);
    }
    case 'content_block_stop':
      return false;
    default:
      // message_delta (stop reason), message_stop, error: the answer is ending, let it through.
      return true;
  }
}

/** Part kinds that carry content besides text (a thought flag or signature alone does not). */
const GEMINI_CONTENT_PARTS = ['functionCall', 'inlineData', 'fileData', 'executableCode', 'codeExecutionResult'] as const;

/**
 * Gemini's streamGenerateContent (native Vertex AI path): each event is a whole
 * GenerateContentResponse, its content in candidates[].content.parts[] (text, thought text,
 * functionCall, inline data...). A finishReason or a blocked prompt ends the answer.
 */
function geminiEventHasContent(event: Record<string, unknown>): boolean {
  const feedback = event['promptFeedback'];
  if (isRecord(feedback) && feedback['blockReason'] !== undefined) return true;
  const candidates = event['candidates'];
  if (!Array.isArray(candidates)) return false;
  return candidates.some((candidate) => {
    if (!isRecord(candidate)) return false;
    if (candidate['finishReason'] !== undefined && candidate['finishReason'] !== null) return true;
    const content = candidate['content'];
    const parts = isRecord(content) ? content['parts'] : undefined;
    if (!Array.isArray(parts)) return false;
    return parts.some((part) => isRecord(part) && (nonEmpty(part['text']) || GEMINI_CONTENT_PARTS.some((key) => part[key] !== undefined && part[key] !== null)));
  });
}

function nonEmpty(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v === 'string') return v !== '';
  if (Array.isArray(v)) return v.length > 0;
  return true;
}
