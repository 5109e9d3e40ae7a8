import { randomUUID } from 'node:crypto';
import { conversation, dataUrl, type BlockShapes } from './chat-turns.js';
import { isRecord, num, parseObject, records, str, type JsonRecord, type Usage } from './json.js';
import { openaiCompletion, openaiUsage } from './openai-shapes.js';
import { SseEvents } from './sse-events.js';

/**
 * OpenAI Chat Completions ⇄ Gemini generateContent (Vertex AI's native API): the request becomes
 * `contents` and `systemInstruction`, and the answer (JSON, or streamGenerateContent's SSE with
 * alt=sse) comes back in OpenAI's shape.
 */

/** data: URLs go inline; other URLs as file data, which Gemini fetches itself. */
const GEMINI_PARTS: BlockShapes = {
  text: (text) => ({ text }),
  keepsEmptyTextParts: false,
  image: (url) => {
    const data = dataUrl(url);
    return data ? { inlineData: { mimeType: data.mediaType, data: data.data } } : { fileData: { fileUri: url, mimeType: 'image/*' } };
  },
  toolUse: (_id, name, args) => ({ functionCall: { name, args } }),
  toolResult: (_id, name, text) => ({ functionResponse: { name, response: parseObject(text) ?? { content: text } } }),
};

/** An OpenAI chat completion request → a generateContent request. */
export function toGenerateContentRequest(body: JsonRecord): JsonRecord {
  const { system, turns } = conversation(records(body['messages']), GEMINI_PARTS);
  const contents = turns.map((t) => ({ role: t.role === 'assistant' ? 'model' : 'user', parts: t.content }));
  const out: JsonRecord = { contents };
  if (system.length > 0) out['systemInstruction'] = { parts: [{ text: system.join('\n\n') }] };
  const config: JsonRecord = {};
  const maxTokens = num(body['max_completion_tokens']) ?? num(body['max_tokens']);
  if (maxTokens !== undefined) config['maxOutputTokens'] = maxTokens;
  const temperature = num(body['temperature']);
  if (temperature !== undefined) config['temperature'] = temperature;
  const topP = num(body['top_p']);
  if (topP !== undefined) config['topP'] = topP;
  const stop = body['stop'];
  if (typeof stop === 'string') config['stopSequences'] = [stop];
  else if (Array.isArray(stop)) config['stopSequences'] = stop.filter((s): s is string => typeof s === 'string');
  if (Object.keys(config).length > 0) out['generationConfig'] = config;
  const declarations = records(body['tools'])
    .map((t) => (isRecord(t['function']) ? t['function'] : undefined))
    .filter((f): f is JsonRecord => f !== undefined)
    .map((f) => ({ name: str(f['name']) ?? '', ...(str(f['description']) !== undefined ? { description: f['description'] } : {}), ...(isRecord(f['parameters']) ? { parameters: f['parameters'] } : {}) }));
  if (declarations.length > 0) {
    out['tools'] = [{ functionDeclarations: declarations }];
    const choice = body['tool_choice'];
    const mode = choice === 'none' ? 'NONE' : choice === 'required' || isRecord(choice) ? 'ANY' : choice === 'auto' ? 'AUTO' : undefined;
    const only = isRecord(choice) && isRecord(choice['function']) ? str(choice['function']['name']) : undefined;
    if (mode !== undefined) out['toolConfig'] = { functionCallingConfig: { mode, ...(only ? { allowedFunctionNames: [only] } : {}) } };
  }
  return out;
}

const FINISH: Record<string, string> = {
  STOP: 'stop',
  MAX_TOKENS: 'length',
  SAFETY: 'content_filter',
  RECITATION: 'content_filter',
  BLOCKLIST: 'content_filter',
  PROHIBITED_CONTENT: 'content_filter',
  SPII: 'content_filter',
};

export function geminiUsage(usage: unknown): Usage {
  const u = isRecord(usage) ? usage : {};
  return { input: num(u['promptTokenCount']) ?? 0, output: num(u['candidatesTokenCount']) ?? 0 };
}

interface CandidateView {
  text: string;
  calls: { name: string; args: unknown }[];
  finish: string | undefined;
}

function candidate(answer: JsonRecord): CandidateView {
  const first = records(answer['candidates'])[0] ?? {};
  const content = isRecord(first['content']) ? first['content'] : {};
  const ps = records(content['parts']);
  const calls = ps.map((p) => (isRecord(p['functionCall']) ? p['functionCall'] : undefined)).filter((c): c is JsonRecord => c !== undefined);
  const reason = str(first['finishReason']);
  return {
    // Parts marked thought are the model's reasoning, not its answer.
    text: ps.filter((p) => p['thought'] !== true).map((p) => str(p['text']) ?? '').join(''),
    calls: calls.map((c) => ({ name: str(c['name']) ?? '', args: c['args'] ?? {} })),
    finish: reason === undefined ? undefined : calls.length > 0 ? 'tool_calls' : (FINISH[reason] ?? 'stop'),
  };
}

/** A generateContent answer → an OpenAI chat.completion. */
export function fromGenerateContentResponse(answer: JsonRecord, model: string): { completion: JsonRecord; usage: Usage } {
  const c = candidate(answer);
  const usage = geminiUsage(answer['usageMetadata']);
  const toolCalls = c.calls.map((call, i) => ({ id: `call_${i}_${randomUUID().slice(0, 8)}`, type: 'function', function: { name: call.name, arguments: JSON.stringify(call.args) } }));
  return {
    usage,
    completion: openaiCompletion({
      id: str(answer['responseId']) ?? `chatcmpl-${randomUUID()}`,
      created: Math.floor(Date.now() / 1000),
      model: str(answer['modelVersion']) ?? model,
      text: c.text,
      toolCalls,
      finishReason: c.finish ?? 'stop',
      usage,
    }),
  };
}

/** Google's error ({"error": {code, message, status}}, sometimes inside an array) in OpenAI's shape. */
export function geminiErrorToOpenAI(body: unknown, status: number): JsonRecord {
  const outer = Array.isArray(body) ? body[0] : body;
  const error = isRecord(outer) && isRecord(outer['error']) ? outer['error'] : {};
  const type = str(error['status']) ?? 'vertex_error';
  return { error: { message: str(error['message']) ?? `Vertex AI answered ${status}`, type, param: null, code: type } };
}

/** streamGenerateContent?alt=sse → OpenAI chat.completion.chunk events, as they arrive. */
export class GeminiStreamTranslator {
  private readonly events = new SseEvents();
  private readonly id = `chatcmpl-${randomUUID()}`;
  private readonly created = Math.floor(Date.now() / 1000);
  private usage: Usage = { input: 0, output: 0 };
  private started = false;
  private finished = false;
  private errored = false;
  private calls = 0;

  constructor(private model: string, private readonly includeUsage: boolean) {}

  get tokens(): Usage {
    return { ...this.usage };
  }

  push(chunk: string): string {
    return this.events.push(chunk).map((event) => this.translate(event)).join('');
  }

  end(): string {
    const rest = this.events.rest();
    let out = rest === '' ? '' : this.translate(rest);
    if (this.errored) return out;
    if (!this.finished) out += this.chunk({}, 'stop');
    if (this.includeUsage) {
      out += `data: ${JSON.stringify({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, system_fingerprint: null, choices: [], usage: openaiUsage(this.usage) })}\n\n`;
    }
    return `${out}data: [DONE]\n\n`;
  }

  private chunk(delta: JsonRecord, finish: string | null = null): string {
    return `data: ${JSON.stringify({ id: this.id, object: 'chat.completion.chunk', created: this.created, model: this.model, system_fingerprint: null, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
  }

  private translate(event: string): string {
    const data = event.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
    const answer = parseObject(data);
    if (answer === undefined) return '';
    if (this.errored) return '';
    if (isRecord(answer['error'])) {
      this.finished = true;
      this.errored = true;
      return `data: ${JSON.stringify(geminiErrorToOpenAI(answer, 500))}\n\n`;
    }
    this.model = str(answer['modelVersion']) ?? this.model;
    if (answer['usageMetadata'] !== undefined) this.usage = geminiUsage(answer['usageMetadata']);
    const c = candidate(answer);
    let out = '';
    if (!this.started) {
      this.started = true;
      out += this.chunk({ role: 'assistant', content: '', refusal: null });
    }
    if (c.text !== '') out += this.chunk({ content: c.text });
    for (const call of c.calls) {
      out += this.chunk({ tool_calls: [{ index: this.calls, id: `call_${this.calls}_${randomUUID().slice(0, 8)}`, type: 'function', function: { name: call.name, arguments: JSON.stringify(call.args) } }] });
      this.calls++;
    }
    if (c.finish !== undefined && !this.finished) {
      this.finished = true;
      out += this.chunk({}, this.calls > 0 ? 'tool_calls' : c.finish);
    }
    return out;
  }
}
