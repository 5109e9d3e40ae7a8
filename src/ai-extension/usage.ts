import { isRecord, num, parseObject, str, type Usage } from './json.js';

/** Past this many bytes a JSON answer is not kept for its usage field: counting stops, traffic does not. */
const MAX_JSON_BYTES = 4 * 1024 * 1024;

function fromOpenAI(usage: unknown): Usage | undefined {
  if (!isRecord(usage)) return undefined;
  const input = num(usage['prompt_tokens']);
  const output = num(usage['completion_tokens']);
  if (input === undefined && output === undefined) return undefined;
  return { input: input ?? 0, output: output ?? 0 };
}

/**
 * Reads the token usage of an OpenAI-style answer while it passes through untouched: the `usage`
 * of a JSON body, or of the SSE chunk that carries it (stream_options.include_usage).
 */
export class OpenAIUsageReader {
  private json = '';
  private pending = '';
  private tooLarge = false;
  private found: Usage | undefined;
  /** The answer's `model` (the provider's name for what answered: gen_ai.response.model). */
  model: string | undefined;

  constructor(private readonly streaming: boolean) {}

  push(chunk: string): void {
    if (this.streaming) {
      this.pending += chunk;
      const last = this.pending.lastIndexOf('\n\n');
      if (last < 0) return;
      const complete = this.pending.slice(0, last);
      this.pending = this.pending.slice(last + 2);
      // The first event names the model; after it only the chunk with usage is parsed.
      if (this.model === undefined) {
        const first = complete.split('\n').find((line) => line.startsWith('data:') && line.includes('"model"'));
        if (first !== undefined) this.model = str(parseObject(first.slice(5).trim())?.['model']);
      }
      if (!complete.includes('"usage"')) return;
      for (const line of complete.split('\n')) {
        if (!line.startsWith('data:') || !line.includes('"usage"')) continue;
        const usage = fromOpenAI(parseObject(line.slice(5).trim())?.['usage']);
        if (usage) this.found = usage;
      }
      return;
    }
    if (this.tooLarge) return;
    if (this.json.length + chunk.length > MAX_JSON_BYTES) {
      this.tooLarge = true;
      this.json = '';
      return;
    }
    this.json += chunk;
  }

  end(): Usage | undefined {
    if (!this.streaming && !this.tooLarge && this.json !== '') {
      const answer = parseObject(this.json);
      this.found = fromOpenAI(answer?.['usage']);
      this.model = str(answer?.['model']);
    }
    return this.found;
  }
}
