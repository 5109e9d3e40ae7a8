import { randomUUID } from 'node:crypto';
import { conversation, dataUrl, type BlockShapes } from './chat-turns.js';
import { EventStreamDecoder } from './eventstream.js';
import { isRecord, num, parseObject, records, str, type JsonRecord, type Usage } from './json.js';
import { openaiCompletion, openaiUsage } from './openai-shapes.js';

/**
 * OpenAI Chat Completions ⇄ Bedrock Converse: the request an OpenAI client wrote becomes a
 * Converse request (the model is in the path, not the body), and the answer (JSON, or the
 * converse-stream event stream) comes back as OpenAI's chat.completion or its SSE chunks.
 */

/** Converse takes images as bytes only: data URLs are passed, remote URLs cannot be. */
const CONVERSE_BLOCKS: BlockShapes = {
  text: (text) => ({ text }),
  keepsEmptyTextParts: false,
  image: (url) => {
    const data = dataUrl(url);
    const format = data === undefined ? null : /^image\/(png|jpeg|gif|webp)$/.exec(data.mediaType);
    return data && format ? { image: { format: format[1], source: { bytes: data.data } } } : undefined;
  },
  toolUse: (toolUseId, name, input) => ({ toolUse: { toolUseId, name, input } }),
  toolResult: (toolUseId, _name, text) => ({ toolResult: { toolUseId, content: [{ text }] } }),
};

function toolChoice(choice: unknown): JsonRecord | undefined {
  if (choice === 'auto') return { auto: {} };
  if (choice === 'required') return { any: {} };
  if (isRecord(choice) && isRecord(choice['function'])) return { tool: { name: str(choice['function']['name']) ?? '' } };
  return undefined;
}

/** An OpenAI chat completion request → a Converse request body. */
export function toConverseRequest(body: JsonRecord): JsonRecord {
  const { system, turns } = conversation(records(body['messages']), CONVERSE_BLOCKS);
  const out: JsonRecord = { messages: turns };
  if (system.length > 0) out['system'] = system.map((text) => ({ text }));
  const inference: JsonRecord = {};
  const maxTokens = num(body['max_completion_tokens']) ?? num(body['max_tokens']);
  if (maxTokens !== undefined) inference['maxTokens'] = maxTokens;
  const temperature = num(body['temperature']);
  // OpenAI allows 0-2; Converse 0-1.
  if (temperature !== undefined) inference['temperature'] = Math.min(1, Math.max(0, temperature));
  const topP = num(body['top_p']);
  if (topP !== undefined) inference['topP'] = topP;
  const stop = body['stop'];
  if (typeof stop === 'string') inference['stopSequences'] = [stop];
  else if (Array.isArray(stop)) inference['stopSequences'] = stop.filter((s): s is string => typeof s === 'string');
  if (Object.keys(inference).length > 0) out['inferenceConfig'] = inference;
  const tools = records(body['tools'])
    .map((t) => (isRecord(t['function']) ? t['function'] : undefined))
    .filter((f): f is JsonRecord => f !== undefined)
    .map((f) => ({
      toolSpec: {
        name: str(f['name']) ?? '',
        ...(str(f['description']) !== undefined ? { description: f['description'] } : {}),
        inputSchema: { json: isRecord(f['parameters']) ? f['parameters'] : { type: 'object', properties: {} } },
      },
    }));
  // Converse has no "none": a client that forbids tools gets none offered.
  if (tools.length > 0 && body['tool_choice'] !== 'none') {
    const choice = toolChoice(body['tool_choice']);
    out['toolConfig'] = { tools, ...(choice ? { toolChoice: choice } : {}) };
  }
  return out;
}

const FINISH: Record<string, string> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  tool_use: 'tool_calls',
  guardrail_intervened: 'content_filter',
  content_filtered: 'content_filter',
};

function finishReason(stopReason: unknown): string {
  return FINISH[str(stopReason) ?? ''] ?? 'stop';
}

export function converseUsage(usage: unknown): Usage {
  const u = isRecord(usage) ? usage : {};
  return { input: num(u['inputTokens']) ?? 0, output: num(u['outputTokens']) ?? 0 };
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);
const completionId = (): string => `chatcmpl-${randomUUID()}`;

/** A Converse answer → an OpenAI chat.completion (Converse names no model: the member's is used). */
export function fromConverseResponse(answer: JsonRecord, model: string): { completion: JsonRecord; usage: Usage } {
  const output = isRecord(answer['output']) ? answer['output'] : {};
  const message = isRecord(output['message']) ? output['message'] : {};
  const blocks = records(message['content']);
  const text = blocks.map((b) => str(b['text']) ?? '').join('');
  const toolCalls = blocks
    .map((b) => (isRecord(b['toolUse']) ? b['toolUse'] : undefined))
    .filter((t): t is JsonRecord => t !== undefined)
    .map((t) => ({ id: str(t['toolUseId']) ?? '', type: 'function', function: { name: str(t['name']) ?? '', arguments: JSON.stringify(t['input'] ?? {}) } }));
  const usage = converseUsage(answer['usage']);
  const completion = openaiCompletion({ id: completionId(), created: nowSeconds(), model, text, toolCalls, finishReason: finishReason(answer['stopReason']), usage });
  return { completion, usage };
}

/**
 * A Bedrock error ({"message": ...}, its type in the x-amzn-errortype header, e.g.
 * "ThrottlingException:http://internal.amazon.com/...") in OpenAI's shape.
 */
export function bedrockErrorToOpenAI(body: JsonRecord | undefined, errorType: string | undefined, status: number): JsonRecord {
  const type = errorType?.split(':')[0] || undefined;
  return {
    error: {
      message: str(body?.['message']) ?? str(body?.['Message']) ?? `Bedrock answered ${status}${type ? ` (${type})` : ''}`,
      type: type ?? 'bedrock_error',
      param: null,
      code: type ?? null,
    },
  };
}

/**
 * converse-stream's event stream → OpenAI chat.completion.chunk SSE events, as the bytes arrive.
 * Output holds only complete events, so each piece can be sent on at once.
 */
export class ConverseStreamTranslator {
  private readonly decoder = new EventStreamDecoder();
  private readonly id = completionId();
  private readonly created = nowSeconds();
  private readonly usage: Usage = { input: 0, output: 0 };
  /** Converse numbers content blocks; OpenAI numbers tool calls: block index → tool call index. */
  private readonly toolIndex = new Map<number, number>();
  private finish: string | undefined;
  private done = false;

  constructor(private readonly model: string, private readonly includeUsage: boolean) {}

  get tokens(): Usage {
    return { ...this.usage };
  }

  push(bytes: Uint8Array): string {
    let out = '';
    for (const message of this.decoder.push(bytes)) out += this.translate(message.headers, message.payload);
    if (this.decoder.error !== undefined && !this.done) out += this.error(`Bedrock event stream is corrupt (${this.decoder.error})`, 'bedrock_stream_error');
    return out;
  }

  /** The provider closed the stream: finish what Bedrock's metadata event would have finished. */
  end(): string {
    if (this.done) return '';
    if (this.decoder.pending > 0 || this.finish === undefined) return this.error('Bedrock closed the event stream before the answer was complete', 'bedrock_stream_error');
    return this.close();
  }

  private chunk(delta: JsonRecord, finish: string | null = null): string {
    const body = { id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, system_fingerprint: null, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] };
    return `data: ${JSON.stringify(body)}\n\n`;
  }

  private close(): string {
    this.done = true;
    let out = '';
    if (this.includeUsage) {
      const body = { id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, system_fingerprint: null, choices: [], usage: openaiUsage(this.usage) };
      out += `data: ${JSON.stringify(body)}\n\n`;
    }
    return `${out}data: [DONE]\n\n`;
  }

  private error(message: string, type: string): string {
    this.done = true;
    // OpenAI SDKs raise an APIError for a chunk that carries `error`.
    return `data: ${JSON.stringify({ error: { message, type, param: null, code: null } })}\n\n`;
  }

  private translate(headers: Record<string, string>, payload: Buffer): string {
    if (this.done) return '';
    const body = parseObject(payload.toString('utf8')) ?? {};
    if (headers[':message-type'] === 'exception' || headers[':message-type'] === 'error') {
      const type = headers[':exception-type'] ?? headers[':error-code'] ?? 'bedrock_error';
      return this.error(str(body['message']) ?? str(body['Message']) ?? headers[':error-message'] ?? `Bedrock stream failed: ${type}`, type);
    }
    switch (headers[':event-type']) {
      case 'messageStart':
        return this.chunk({ role: 'assistant', content: '', refusal: null });
      case 'contentBlockStart': {
        const start = isRecord(body['start']) ? body['start'] : {};
        const tool = isRecord(start['toolUse']) ? start['toolUse'] : undefined;
        if (tool === undefined) return '';
        const index = this.toolIndex.size;
        this.toolIndex.set(num(body['contentBlockIndex']) ?? index, index);
        return this.chunk({ tool_calls: [{ index, id: str(tool['toolUseId']) ?? '', type: 'function', function: { name: str(tool['name']) ?? '', arguments: '' } }] });
      }
      case 'contentBlockDelta': {
        const delta = isRecord(body['delta']) ? body['delta'] : {};
        const text = str(delta['text']);
        if (text !== undefined) return text === '' ? '' : this.chunk({ content: text });
        const tool = isRecord(delta['toolUse']) ? delta['toolUse'] : undefined;
        if (tool !== undefined) {
          const index = this.toolIndex.get(num(body['contentBlockIndex']) ?? -1) ?? Math.max(0, this.toolIndex.size - 1);
          return this.chunk({ tool_calls: [{ index, function: { arguments: str(tool['input']) ?? '' } }] });
        }
        return '';
      }
      case 'messageStop':
        this.finish = finishReason(body['stopReason']);
        return this.chunk({}, this.finish);
      case 'metadata': {
        const usage = converseUsage(body['usage']);
        this.usage.input = usage.input;
        this.usage.output = usage.output;
        return this.close();
      }
      default:
        return '';
    }
  }
}
