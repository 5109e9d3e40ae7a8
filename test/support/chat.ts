/** A chat completion's outcome: the HTTP status, who answered (the fake's `x-fake-provider`) and the body. */
export interface ChatAnswer {
  status: number;
  answeredBy: string | null;
  body: string;
}

/** One chat completion (model "client-model", "hello") POSTed to `url`, with `headers` added; gives up after 10 s. */
export async function chatCompletion(url: string, headers: Record<string, string> = {}): Promise<ChatAnswer> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }] }),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, answeredBy: res.headers.get('x-fake-provider'), body: await res.text() };
}

/** What a streamed chat completion said, and when each non-empty piece of its text arrived (ms after the request started). */
export interface StreamedText {
  text: string;
  arrivals: number[];
}

/**
 * Reads a streamed chat completion (the openai client's stream) to its end. `arrivals[0]` is the
 * first token's time; the spread to the last arrival tells words passed on as the provider wrote
 * them from an answer held back whole.
 */
export async function readStreamedText(stream: AsyncIterable<{ choices: readonly { delta: { content?: string | null } }[] }>, started: number): Promise<StreamedText> {
  const arrivals: number[] = [];
  let text = '';
  for await (const chunk of stream) {
    const content = chunk.choices[0]?.delta.content ?? '';
    if (content !== '') arrivals.push(performance.now() - started);
    text += content;
  }
  return { text, arrivals };
}
