import { StringDecoder } from 'node:string_decoder';
import { EventStreamDecoder } from './eventstream.js';
import { isRecord, parseObject } from './json.js';
import { asBuffer } from './protocol.js';

/** How an answer's body is framed: SSE events, AWS binary event-stream messages (Bedrock), or one JSON body. */
export type AnswerFraming = 'sse' | 'eventstream' | 'json';

/** The framing a provider's answer headers announce. */
export function answerFraming(contentType: string): AnswerFraming {
  if (contentType.includes('text/event-stream')) return 'sse';
  return contentType.includes('application/vnd.amazon.eventstream') ? 'eventstream' : 'json';
}

/**
 * Reads a provider's answer as it arrives and says when the first content-bearing token is there.
 * Keep-alives do not count: SSE comments (": keep-alive"), events without data, OpenAI chunks whose
 * deltas carry only a role or empty content, Anthropic's message_start / ping / content_block_start
 * of text, Gemini events whose candidates have no text or call yet, Bedrock's messageStart and
 * empty text deltas, and whitespace before a JSON body. Anything that ends the wait otherwise (an
 * error event, a finish_reason, [DONE], a non-JSON event, a corrupt event stream) counts too: the
 * client must get it now.
 */
export class FirstTokenWatch {
  private readonly decoder = new StringDecoder('utf8');
  private frames: EventStreamDecoder | undefined;
  private pending = '';
  private seen = false;

  /** A JSON body's first non-blank byte counts; SSE and event-stream answers are read event by event. */
  constructor(private readonly framing: AnswerFraming) {}

  get arrived(): boolean {
    return this.seen;
  }

  /** Feeds the next chunk; true once a content token (or anything the client must get) has arrived. */
  push(bytes: Uint8Array): boolean {
    if (this.seen) return true;
    if (this.framing === 'eventstream') return this.pushFrames(bytes);
    const text = this.decoder.write(asBuffer(bytes));
    if (this.framing === 'json') {
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

  private pushFrames(bytes: Uint8Array): boolean {
    const frames = (this.frames ??= new EventStreamDecoder());
    for (const frame of frames.push(bytes)) {
      if (converseEventHasContent(frame.headers, frame.payload)) {
        this.seen = true;
        break;
      }
    }
    // A stream that cannot be decoded any more is translated into an error chunk: let it through.
    if (frames.error !== undefined) this.seen = true;
    return this.seen;
  }
}

/**
 * Bedrock's converse-stream: text and tool input come in contentBlockDelta, a tool call starts
 * with contentBlockStart; messageStop and metadata end the answer, an exception ends it too.
 */
function converseEventHasContent(headers: Record<string, string>, payload: Buffer): boolean {
  if (headers[':message-type'] !== undefined && headers[':message-type'] !== 'event') return true;
  const body = parseObject(payload.toString('utf8'));
  switch (headers[':event-type']) {
    case 'messageStart':
    case 'contentBlockStop':
      return false;
    case 'contentBlockStart': {
      const start = body?.['start'];
      return isRecord(start) && isRecord(start['toolUse']);
    }
    case 'contentBlockDelta': {
      const delta = body?.['delta'];
      if (!isRecord(delta)) return false;
      return nonEmpty(delta['text']) || isRecord(delta['toolUse']) || isRecord(delta['reasoningContent']);
    }
    default:
      // messageStop, metadata, or an event this reader does not know: let the answer go on.
      return true;
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
