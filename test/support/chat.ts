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
