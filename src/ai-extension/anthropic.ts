import { conversation, dataUrl, type BlockShapes } from './chat-turns.js';
import { isRecord, num, records, str, type JsonRecord, type Usage } from './json.js';
import { openaiCompletion, openaiUsage } from './openai-shapes.js';
import { SseEvents } from './sse-events.js';

/**
 * OpenAI Chat Completions ⇄ Anthropic Messages: the request a client wrote for OpenAI becomes a
 * Messages request, and the answer (JSON or the SSE stream, event by event) comes back in
 * OpenAI's shape, so an unmodified OpenAI SDK can fail over to Claude.
 */

/** Anthropic requires max_tokens; OpenAI clients often leave it out. */
export const DEFAULT_MAX_TOKENS = 4096;

/** data: URLs become Anthropic's base64 source; other URLs stay URLs. */
const MESSAGES_BLOCKS: BlockShapes = {
  text: (text) => ({ type: 'text', text }),
  keepsEmptyTextParts: true,
  image: (url) => {
    const data = dataUrl(url);
    return { type: 'image', source: data ? { type: 'base64', media_type: data.mediaType, data: data.data } : { type: 'url', url } };
  },
  toolUse: (id, name, input) => ({ type: 'tool_use', id, name, input }),
  toolResult: (id, _name, text) => ({ type: 'tool_result', tool_use_id: id, content: text }),
};

function toolChoice(choice: unknown): JsonRecord | undefined {
  if (choice === 'auto') return { type: 'auto' };
  if (choice === 'required') return { type: 'any' };
  if (choice === 'none') return { type: 'none' };
  if (isRecord(choice) && isRecord(choice['function'])) return { type: 'tool', name: str(choice['function']['name']) ?? '' };
  return undefined;
}

/** An OpenAI chat completion request → an Anthropic Messages request for `model`. */
export function toAnthropicRequest(body: JsonRecord, model: string | undefined): JsonRecord {
  const { system, turns } = conversation(records(body['messages']), MESSAGES_BLOCKS);
  const out: JsonRecord = {
    model: model ?? str(body['model']) ?? '',
    max_tokens: num(body['max_completion_tokens']) ?? num(body['max_tokens']) ?? DEFAULT_MAX_TOKENS,
    messages: turns,
  };
  if (system.length > 0) out['system'] = system.join('\n\n');
  const temperature = num(body['temperature']);
  // OpenAI allows 0-2, Anthropic 0-1.
  if (temperature !== undefined) out['temperature'] = Math.min(1, Math.max(0, temperature));
  const topP = num(body['top_p']);
  if (topP !== undefined) out['top_p'] = topP;
  const stop = body['stop'];
  if (typeof stop === 'string') out['stop_sequences'] = [stop];
  else if (Array.isArray(stop)) out['stop_sequences'] = stop.filter((s): s is string => typeof s === 'string');
  if (body['stream'] === true) out['stream'] = true;
  const tools = records(body['tools'])
    .map((t) => (isRecord(t['function']) ? t['function'] : undefined))
    .filter((f): f is JsonRecord => f !== undefined)
    .map((f) => ({
      name: str(f['name']) ?? '',
      ...(str(f['description']) !== undefined ? { description: f['description'] } : {}),
      input_schema: isRecord(f['parameters']) ? f['parameters'] : { type: 'object', properties: {} },
    }));
  if (tools.length > 0) out['tools'] = tools;
  const choice = toolChoice(body['tool_choice']);
  if (choice && tools.length > 0) out['tool_choice'] = choice;
  const user = str(body['user']);
  if (user !== undefined) out['metadata'] = { user_id: user };
  return out;
}

const FINISH: Record<string, string> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  pause_turn: 'stop',
  max_tokens: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
};

export function finishReason(stopReason: unknown): string {
  return FINISH[str(stopReason) ?? ''] ?? 'stop';
}

export function anthropicUsage(usage: unknown): Usage {
  const u = isRecord(usage) ? usage : {};
  const input = (num(u['input_tokens']) ?? 0) + (num(u['cache_read_input_tokens']) ?? 0) + (num(u['cache_creation_input_tokens']) ?? 0);
  return { input, output: num(u['output_tokens']) ?? 0 };
}

const now = (): number => Math.floor(Date.now() / 1000);

/** An Anthropic Messages answer → an OpenAI chat.completion. */
export function fromAnthropicResponse(message: JsonRecord): { completion: JsonRecord; usage: Usage } {
  const blocks = records(message['content']);
  const text = blocks.filter((b) => b['type'] === 'text').map((b) => str(b['text']) ?? '').join('');
  const toolCalls = blocks
    .filter((b) => b['type'] === 'tool_use')
    .map((b) => ({ id: str(b['id']) ?? '', type: 'function', function: { name: str(b['name']) ?? '', arguments: JSON.stringify(b['input'] ?? {}) } }));
  const usage = anthropicUsage(message['usage']);
  const completion = openaiCompletion({
    id: str(message['id']) ?? `chatcmpl-${Date.now()}`,
    created: now(),
    model: str(message['model']) ?? '',
    text,
    toolCalls,
    finishReason: finishReason(message['stop_reason']),
    usage,
  });
  return { completion, usage };
}

/** Anthropic's error body ({type: error, error: {type, message}}) in OpenAI's shape. */
export function toOpenAIError(body: JsonRecord | undefined, status: number): JsonRecord {
  const error = isRecord(body?.['error']) ? body['error'] : {};
  return {
    error: {
      message: str(error['message']) ?? `Anthropic answered ${status}`,
      type: str(error['type']) ?? 'api_error',
      param: null,
      code: str(error['type']) ?? null,
    },
  };
}

/**
 * Anthropic's SSE events → OpenAI chat.completion.chunk events, as they arrive. Input may split
 * an event anywhere; output holds only complete events, so each piece can be sent on at once.
 */
export class AnthropicStreamTranslator {
  private readonly events = new SseEvents();
  private id = `chatcmpl-${Date.now()}`;
  private model = '';
  private readonly created = now();
  private readonly usage: Usage = { input: 0, output: 0 };
  private toolIndex = -1;
  private done = false;

  constructor(private readonly includeUsage: boolean) {}

  get tokens(): Usage {
    return { ...this.usage };
  }

  push(chunk: string): string {
    return this.events.push(chunk).map((event) => this.translate(event)).join('');
  }

  /** The provider closed the stream: whatever a complete last event still holds. */
  end(): string {
    const rest = this.events.rest();
    return rest === '' ? '' : this.translate(rest);
  }

  private chunk(delta: JsonRecord, finish: string | null = null): string {
    const body = {
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.model,
      system_fingerprint: null,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    };
    return `data: ${JSON.stringify(body)}\n\n`;
  }

  private translate(event: string): string {
    const data = event
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).trimStart())
      .join('\n');
    if (data === '' || this.done) return '';
    let payload: unknown;
    try {
      payload = JSON.parse(data);
    } catch {
      return '';
    }
    if (!isRecord(payload)) return '';
    switch (payload['type']) {
      case 'message_start': {
        const message = isRecord(payload['message']) ? payload['message'] : {};
        this.id = str(message['id']) ?? this.id;
        this.model = str(message['model']) ?? this.model;
        const usage = anthropicUsage(message['usage']);
        this.usage.input = usage.input;
        this.usage.output = usage.output;
        return this.chunk({ role: 'assistant', content: '', refusal: null });
      }
      case 'content_block_start': {
        const block = isRecord(payload['content_block']) ? payload['content_block'] : {};
        if (block['type'] === 'tool_use') {
          this.toolIndex++;
          return this.chunk({
            tool_calls: [{ index: this.toolIndex, id: str(block['id']) ?? '', type: 'function', function: { name: str(block['name']) ?? '', arguments: '' } }],
          });
        }
        const text = block['type'] === 'text' ? (str(block['text']) ?? '') : '';
        return text === '' ? '' : this.chunk({ content: text });
      }
      case 'content_block_delta': {
        const delta = isRecord(payload['delta']) ? payload['delta'] : {};
        if (delta['type'] === 'text_delta') return this.chunk({ content: str(delta['text']) ?? '' });
        if (delta['type'] === 'input_json_delta') {
          return this.chunk({ tool_calls: [{ index: Math.max(0, this.toolIndex), function: { arguments: str(delta['partial_json']) ?? '' } }] });
        }
        return '';
      }
      case 'message_delta': {
        const delta = isRecord(payload['delta']) ? payload['delta'] : {};
        const usage = isRecord(payload['usage']) ? payload['usage'] : {};
        this.usage.output = num(usage['output_tokens']) ?? this.usage.output;
        return delta['stop_reason'] !== undefined && delta['stop_reason'] !== null ? this.chunk({}, finishReason(delta['stop_reason'])) : '';
      }
      case 'message_stop': {
        this.done = true;
        let out = '';
        if (this.includeUsage) {
          const body = { id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, system_fingerprint: null, choices: [], usage: openaiUsage(this.usage) };
          out += `data: ${JSON.stringify(body)}\n\n`;
        }
        return `${out}data: [DONE]\n\n`;
      }
      case 'error': {
        this.done = true;
        const error = isRecord(payload['error']) ? payload['error'] : {};
        // OpenAI SDKs raise an APIError for a chunk that carries `error`.
        const body = { error: { message: str(error['message']) ?? 'Anthropic stream error', type: str(error['type']) ?? 'api_error', param: null, code: null } };
        return `data: ${JSON.stringify(body)}\n\n`;
      }
      default:
        return '';
    }
  }
}
