import { isRecord, parseObject, records, str, type JsonRecord } from './json.js';

/**
 * OpenAI's chat messages read as the vendors that are not OpenAI want them: system text apart,
 * then alternating user/assistant turns of content blocks. The walk is the same for Anthropic,
 * Bedrock Converse and Gemini; only the shape of each block is the vendor's (a BlockShapes).
 */

export type Block = JsonRecord;
export type TurnRole = 'user' | 'assistant';

export interface Turn {
  role: TurnRole;
  content: Block[];
}

/** How one vendor writes each kind of block. */
export interface BlockShapes {
  text(text: string): Block;
  /** A text part `""` of an array content: Anthropic takes it, Converse and Gemini refuse empty text. */
  keepsEmptyTextParts: boolean;
  /** An `image_url` part's URL (a data: URL or a remote one); undefined: the vendor cannot take it. */
  image(url: string): Block | undefined;
  /** An assistant's tool call, its arguments parsed (`{}` when they are not a JSON object). */
  toolUse(id: string, name: string, input: JsonRecord): Block;
  /** A tool message's text; `name` is the called function's, found by the call's id (`""` if unknown). */
  toolResult(id: string, name: string, text: string): Block;
}

/** A message's content as one text: the text parts joined by newlines, anything else left out. */
export function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  return records(content)
    .map((part) => (part['type'] === 'text' ? (str(part['text']) ?? '') : ''))
    .filter((t) => t !== '')
    .join('\n');
}

/** `data:<media type>;base64,<data>` split in two; undefined for any other URL. */
export function dataUrl(url: string): { mediaType: string; data: string } | undefined {
  const match = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  return match ? { mediaType: match[1] ?? '', data: match[2] ?? '' } : undefined;
}

export function contentBlocks(content: unknown, shapes: BlockShapes): Block[] {
  if (typeof content === 'string') return content === '' ? [] : [shapes.text(content)];
  const blocks: Block[] = [];
  for (const part of records(content)) {
    if (part['type'] === 'text' && typeof part['text'] === 'string') {
      if (part['text'] !== '' || shapes.keepsEmptyTextParts) blocks.push(shapes.text(part['text']));
    } else if (part['type'] === 'image_url') {
      const image = part['image_url'];
      const url = isRecord(image) ? str(image['url']) : str(image);
      const block = url === undefined ? undefined : shapes.image(url);
      if (block) blocks.push(block);
    }
  }
  return blocks;
}

/** OpenAI messages → system texts and alternating user/assistant turns. */
export function conversation(messages: JsonRecord[], shapes: BlockShapes): { system: string[]; turns: Turn[] } {
  const system: string[] = [];
  const turns: Turn[] = [];
  // A tool message names only the call's id; Gemini answers a function by its name.
  const callNames = new Map<string, string>();
  const push = (role: TurnRole, blocks: Block[]): void => {
    if (blocks.length === 0) return;
    const last = turns.at(-1);
    // No vendor here takes two turns of one role in a row (several tool results, for one).
    if (last && last.role === role) last.content.push(...blocks);
    else turns.push({ role, content: [...blocks] });
  };
  for (const m of messages) {
    const role = m['role'];
    if (role === 'system' || role === 'developer') {
      const text = textOf(m['content']);
      if (text !== '') system.push(text);
    } else if (role === 'user') {
      push('user', contentBlocks(m['content'], shapes));
    } else if (role === 'assistant') {
      const blocks = contentBlocks(m['content'], shapes);
      for (const call of records(m['tool_calls'])) {
        const fn = isRecord(call['function']) ? call['function'] : {};
        const id = str(call['id']) ?? '';
        const name = str(fn['name']) ?? '';
        callNames.set(id, name);
        blocks.push(shapes.toolUse(id, name, parseObject(str(fn['arguments']) ?? '') ?? {}));
      }
      push('assistant', blocks);
    } else if (role === 'tool') {
      const id = str(m['tool_call_id']) ?? '';
      push('user', [shapes.toolResult(id, callNames.get(id) ?? '', textOf(m['content']))]);
    }
  }
  return { system, turns };
}
