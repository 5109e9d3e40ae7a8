import { generateKeyPairSync } from 'node:crypto';
import { APIError } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { E2E_LOAD_MARGIN_MS } from '../support/timing.js';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { startFakeBedrock, type FakeBedrock } from '../support/fake-bedrock.js';
import type { FakeVertex } from '../support/fake-vertex.js';
import { waitFor } from '../support/wait.js';
import { NAMESPACE, gatewayManifests, httpRoute, secret, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';
import { VERTEX, llmBackend, multipoolBackend, openaiMember, serviceAccountSecret, startVertexFake, vertexMember } from '../support/vendor-members.js';

/**
 * Cross-vendor failover OpenAI → AWS Bedrock → Vertex AI through the real Envoy and the AI
 * extension, with the official OpenAI client. The Bedrock fake verifies each attempt's SigV4
 * signature itself; the Vertex fake issues tokens only for a JWT signed with the service
 * account's key and accepts only tokens it issued.
 */

/** The first-token deadline of the gemini-deadline and bedrock-deadline Backends. */
const DEADLINE_MS = 2_000;
const OPENAI_KEY = 'sk-openai-cross-vendor-1';
const AWS = { region: 'us-east-1', model: 'anthropic.claude-3-5-haiku-20241022-v1:0', accessKey: 'AKIAFAKEBEDROCK01', secretKey: 'bedrock-secret-VALUE-never-shown/+1', sessionToken: 'bedrock-session-TOKEN-never-shown' } as const;

let gw: GatewayFixture;
let openai: FakeProvider;
let bedrock: FakeBedrock;
let vertex: FakeVertex;
/** Issues tokens that live 3 s: the extension must renew them before they run out. */
let shortLived: FakeVertex;
/** Streams its native events 1.5 s apart, the first at once: first token long before the last. */
let slowVertex: FakeVertex;
const logLines: string[] = [];

beforeAll(async () => {
  bedrock = await startFakeBedrock({ name: 'bedrock', ...AWS, streamIntervalMs: 40 });
  vertex = await startVertexFake('vertex');
  shortLived = await startVertexFake('vertex-short', { tokenLifetimeS: 3 });
  slowVertex = await startVertexFake('vertex-slow', { streamIntervalMs: 1_500 });
  // A key the token endpoint does not know: same account and token URI, another private key.
  const { privateKey: strangerKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const wrongKeyFile = JSON.stringify({ ...(JSON.parse(vertex.keyFile) as Record<string, unknown>), private_key: strangerKey.export({ type: 'pkcs8', format: 'pem' }).toString() });
  gw = await startGatewayFixture({
    id: 'ai-bedrock-vertex',
    providers: ['openai'],
    fakeOptions: { openai: { vendor: { api: 'openai', key: OPENAI_KEY } } },
    logLines,
    manifests: ({ listenerPort, fakes }) => {
      const fallback = openaiMember(fakes['openai']);
      const bedrockMember: Manifest = {
        name: 'bedrock',
        provider: { bedrock: { model: AWS.model, region: AWS.region, credentials: { secretRef: { name: 'aws-keys' } } } },
        hostOverride: { host: bedrock.host, port: bedrock.port, tls: false },
      };
      const secrets: Manifest[] = [
        secret('openai-key', OPENAI_KEY),
        { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'aws-keys', namespace: NAMESPACE }, stringData: { accessKey: AWS.accessKey, secretKey: AWS.secretKey, sessionToken: AWS.sessionToken } },
        { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'vertex-sa', namespace: NAMESPACE }, data: { 'key.json': Buffer.from(vertex.keyFile).toString('base64') } },
        serviceAccountSecret('vertex-short-sa', shortLived.keyFile),
        serviceAccountSecret('vertex-wrong-sa', wrongKeyFile),
        serviceAccountSecret('vertex-slow-sa', slowVertex.keyFile),
      ];
      const careful = (b: Manifest): Manifest => {
        const spec = b['spec'] as { ai: { multipool: { priorities: Record<string, unknown>[] } } };
        Object.assign(spec.ai.multipool.priorities[0] ?? {}, { contentPolicyFallback: 'NextPool' });
        return b;
      };
      const withFirstTokenTimeout = (b: Manifest, deadline: string): Manifest => {
        (b['spec'] as { ai: { firstTokenTimeout?: string } }).ai.firstTokenTimeout = deadline;
        return b;
      };
      return {
        'gateway.yaml': gatewayManifests(listenerPort),
        'secrets.yaml': secrets,
        'backends.yaml': [
          multipoolBackend('chat', [[fallback], [bedrockMember], [vertexMember(vertex, { name: 'vertex', secret: 'vertex-sa' })]]),
          llmBackend('gemini-short', vertexMember(shortLived, { secret: 'vertex-short-sa' })),
          llmBackend('bedrock-only', { provider: bedrockMember['provider'] ?? {}, hostOverride: bedrockMember['hostOverride'] ?? {} }),
          multipoolBackend('gemini-native', [[fallback], [vertexMember(vertex, { name: 'vertex-native', secret: 'vertex-sa', api: 'GenerateContent' })]]),
          llmBackend('gemini-wrong-key', vertexMember(vertex, { secret: 'vertex-wrong-sa' })),
          // A 2 s first-token deadline on the native path, OpenAI behind it.
          withFirstTokenTimeout(multipoolBackend('gemini-deadline', [[vertexMember(slowVertex, { name: 'vertex-slow', secret: 'vertex-slow-sa', api: 'GenerateContent' })], [fallback]]), '2s'),
          // A 2 s first-token deadline on Bedrock's binary event stream, OpenAI behind it.
          withFirstTokenTimeout(multipoolBackend('bedrock-deadline', [[bedrockMember], [fallback]]), '2s'),
          // Refusals answered 200 in Bedrock's and Gemini's own shapes go to OpenAI.
          careful(multipoolBackend('careful-bedrock', [[bedrockMember], [fallback]])),
          careful(multipoolBackend('careful-gemini', [[vertexMember(vertex, { name: 'vertex-careful', secret: 'vertex-sa', api: 'GenerateContent' })], [fallback]])),
        ],
        'routes.yaml': [
          httpRoute('chat', [
            { path: '/v1', backend: 'chat' },
            { path: '/short/v1', rewritePrefix: '/v1', backend: 'gemini-short' },
            { path: '/wrong/v1', rewritePrefix: '/v1', backend: 'gemini-wrong-key' },
            { path: '/native/v1', rewritePrefix: '/v1', backend: 'gemini-native' },
            { path: '/deadline/v1', rewritePrefix: '/v1', backend: 'gemini-deadline' },
            { path: '/bedrock/v1', rewritePrefix: '/v1', backend: 'bedrock-only' },
            { path: '/careful-bedrock/v1', rewritePrefix: '/v1', backend: 'careful-bedrock' },
            { path: '/bedrock-deadline/v1', rewritePrefix: '/v1', backend: 'bedrock-deadline' },
            { path: '/careful-gemini/v1', rewritePrefix: '/v1', backend: 'careful-gemini' },
          ]),
        ],
      };
    },
    waitForBackends: ['chat', 'gemini-deadline', 'gemini-short', 'gemini-wrong-key', 'gemini-native', 'bedrock-only', 'careful-bedrock', 'careful-gemini', 'bedrock-deadline'],
  });
  openai = gw.fakes['openai'] as FakeProvider;
});

afterAll(async () => {
  await gw?.stop();
  await bedrock?.close();
  await vertex?.close();
  await shortLived?.close();
  await slowVertex?.close();
});

beforeEach(async () => {
  await gw.resetFakes();
  bedrock.setMode({ kind: 'ok' });
  vertex.setMode({ kind: 'ok' });
  bedrock.clear();
  vertex.clear();
});

interface Answer {
  content: string;
  finish: string | null | undefined;
  usage: number | undefined;
  model: string | undefined;
  chunks: number;
  /** Streaming: ms from the first content chunk to the last chunk. */
  spreadMs: number;
  /** Streaming: ms from the request to the first content chunk. */
  firstContentMs: number;
}

async function chat(stream: boolean, prefix = '/v1'): Promise<Answer> {
  const messages = [{ role: 'system' as const, content: 'be brief' }, { role: 'user' as const, content: 'hello' }];
  if (!stream) {
    const data = await gw.client(prefix).chat.completions.create({ model: 'client-model', messages, max_tokens: 64 });
    expect(data.object).toBe('chat.completion');
    return { content: data.choices[0]?.message.content ?? '', finish: data.choices[0]?.finish_reason, usage: data.usage?.total_tokens, model: data.model, chunks: 0, spreadMs: 0, firstContentMs: 0 };
  }
  const startedAt = performance.now();
  const s = await gw.client(prefix).chat.completions.create({ model: 'client-model', messages, max_tokens: 64, stream: true, stream_options: { include_usage: true } });
  let content = '';
  let finish: string | null | undefined;
  let usage: number | undefined;
  let model: string | undefined;
  let chunks = 0;
  let firstContentAt: number | undefined;
  let lastAt = 0;
  for await (const chunk of s) {
    lastAt = performance.now();
    if (firstContentAt === undefined && (chunk.choices[0]?.delta.content ?? '') !== '') firstContentAt = lastAt;
    expect(chunk.object).toBe('chat.completion.chunk');
    chunks++;
    content += chunk.choices[0]?.delta.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
    usage = chunk.usage?.total_tokens ?? usage;
    model = chunk.model;
  }
  return { content, finish, usage, model, chunks, spreadMs: lastAt - (firstContentAt ?? lastAt), firstContentMs: (firstContentAt ?? lastAt) - startedAt };
}

describe('OpenAI 503 → Bedrock answers', () => {
  it('non-streaming: a signed Converse request, an OpenAI chat completion back with usage', async () => {
    await openai.setMode({ kind: 'status', status: 503 });
    const answer = await chat(false);
    expect(answer).toMatchObject({ content: 'answered by bedrock', finish: 'stop', model: AWS.model });
    expect(answer.usage).toBeGreaterThan(0);
    const [request, ...more] = bedrock.received();
    expect(more).toEqual([]);
    expect(request?.rejected).toBeUndefined();
    expect(request?.path).toBe(`/model/${encodeURIComponent(AWS.model)}/converse`);
    expect(request?.host).toBe(`bedrock-runtime.${AWS.region}.amazonaws.com`);
    expect(request?.headers['authorization']).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIAFAKEBEDROCK01\/\d{8}\/us-east-1\/bedrock\/aws4_request/);
    expect(request?.body).toEqual({
      messages: [{ role: 'user', content: [{ text: 'hello' }] }],
      system: [{ text: 'be brief' }],
      inferenceConfig: { maxTokens: 64 },
    });
    expect(request?.headers['x-envoy-attempt-count']).toBe('2');
  });

  it('streaming: converse-stream\'s binary event stream reaches the client as OpenAI SSE chunks', async () => {
    await openai.setMode({ kind: 'status', status: 503 });
    const answer = await chat(true);
    expect(answer).toMatchObject({ content: 'answered by bedrock', finish: 'stop', model: AWS.model });
    expect(answer.usage).toBeGreaterThan(0);
    expect(answer.chunks).toBeGreaterThanOrEqual(5);
    // Event by event: the fake writes one every 40 ms, so a buffered answer would arrive at once.
    expect(answer.spreadMs).toBeGreaterThan(100);
    const request = bedrock.received()[0];
    expect(request?.rejected).toBeUndefined();
    expect(request?.path).toBe(`/model/${encodeURIComponent(AWS.model)}/converse-stream`);
  });

  it('Bedrock\'s own error reaches the client in OpenAI\'s shape', async () => {
    bedrock.setMode({ kind: 'status', status: 400 });
    const failure = await gw.chatFailure('/bedrock/v1');
    expect(failure.status).toBe(400);
    // The SDK quotes error.message: it could only find it in OpenAI's shape.
    expect(failure.message).toBe('400 bedrock is failing with 400');
    expect(bedrock.received().map((r) => r.rejected)).toEqual([undefined]);
  });

  it('a wrong signature is refused by the fake (the check can fail)', async () => {
    // The request is signed for the body it had; a proxy that altered it would be caught.
    const response = await fetch(`http://${bedrock.host}:${bedrock.port}/model/${encodeURIComponent(AWS.model)}/converse`, {
      method: 'POST',
      headers: {
        host: bedrock.hostname,
        'x-amz-date': new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, ''),
        'x-amz-security-token': AWS.sessionToken,
        authorization: `AWS4-HMAC-SHA256 Credential=${AWS.accessKey}/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=${'0'.repeat(64)}`,
      },
      body: JSON.stringify({ messages: [{ role: 'user', content: [{ text: 'x' }] }] }),
    });
    expect(response.status).toBe(403);
  });
});

describe('OpenAI 503, Bedrock 503 → Vertex AI answers', () => {
  it('non-streaming: a bearer token obtained with the service-account key, Vertex\'s path and model', async () => {
    await openai.setMode({ kind: 'status', status: 503 });
    bedrock.setMode({ kind: 'status', status: 503 });
    const answer = await chat(false);
    expect(answer).toMatchObject({ content: 'answered by vertex', finish: 'stop' });
    expect(bedrock.received().map((r) => r.rejected)).toEqual([undefined]);
    const request = vertex.received()[0];
    expect(request?.rejected).toBeUndefined();
    expect(request?.path).toBe(`/v1/projects/${VERTEX.project}/locations/${VERTEX.region}/endpoints/openapi/chat/completions`);
    expect(request?.host).toBe(`${VERTEX.region}-aiplatform.googleapis.com`);
    expect(vertex.issuedTokens().map((t) => `Bearer ${t}`)).toContain(request?.headers['authorization']);
    // Nothing Bedrock's attempt set is left in the shared header map.
    expect(request?.headers['x-amz-date']).toBeUndefined();
    expect(request?.headers['x-amz-security-token']).toBeUndefined();
    expect((request?.body as { model?: string }).model).toBe(`google/${VERTEX.model}`);
    expect(request?.headers['x-envoy-attempt-count']).toBe('3');
  });

  it('streaming: Vertex\'s SSE stream reaches the client', async () => {
    await openai.setMode({ kind: 'status', status: 503 });
    bedrock.setMode({ kind: 'status', status: 503 });
    const answer = await chat(true);
    expect(answer).toMatchObject({ content: 'answered by vertex', finish: 'stop' });
    expect(answer.usage).toBe(8);
    expect(vertex.received().map((r) => r.rejected)).toEqual([undefined]);
    expect(bedrock.received().map((r) => r.path)).toEqual([`/model/${encodeURIComponent(AWS.model)}/converse-stream`]);
  });

  it('the access token is obtained once and reused across requests', async () => {
    await openai.setMode({ kind: 'status', status: 503 });
    bedrock.setMode({ kind: 'status', status: 503 });
    expect((await chat(false)).content).toBe('answered by vertex');
    vertex.clear();
    for (let i = 0; i < 4; i++) expect((await chat(false)).content).toBe('answered by vertex');
    expect(vertex.received()).toHaveLength(4);
    // (The refused key of gemini-wrong-key shares this token endpoint: its retries are not grants.)
    expect(vertex.tokenRequests().filter((g) => g.ok)).toEqual([]);
    expect(new Set(vertex.received().map((r) => r.headers['authorization'])).size).toBe(1);
  });
});

describe('OpenAI 503 → Vertex AI\'s native generateContent', () => {
  const base = `/v1/projects/${VERTEX.project}/locations/${VERTEX.region}/publishers/google/models/${VERTEX.model}`;

  it('non-streaming: contents and systemInstruction out, an OpenAI chat completion back', async () => {
    await openai.setMode({ kind: 'status', status: 503 });
    const answer = await chat(false, '/native/v1');
    expect(answer).toMatchObject({ content: 'answered by vertex', finish: 'stop', usage: 9 });
    const request = vertex.received()[0];
    expect(request?.rejected).toBeUndefined();
    expect(request?.path).toBe(`${base}:generateContent`);
    expect(request?.body).toEqual({
      contents: [{ role: 'user', parts: [{ text: 'hello' }] }],
      systemInstruction: { parts: [{ text: 'be brief' }] },
      generationConfig: { maxOutputTokens: 64 },
    });
  });

  it('streaming: streamGenerateContent?alt=sse becomes OpenAI chunks', async () => {
    await openai.setMode({ kind: 'status', status: 503 });
    const answer = await chat(true, '/native/v1');
    expect(answer).toMatchObject({ content: 'answered by vertex', finish: 'stop', usage: 9 });
    expect(vertex.received().map((r) => [r.path, r.rejected])).toEqual([[`${base}:streamGenerateContent?alt=sse`, undefined]]);
  });
});

/** A gate for the fake's stream: opened by the test, or after 5 s so that a held answer fails an assertion, not the test's timeout. */
function streamGate(): { release: () => void; released: Promise<void>; isReleased: () => boolean } {
  let open = (): void => undefined;
  let done = false;
  const released = new Promise<void>((resolve) => (open = resolve));
  const timer = setTimeout(() => release(), 5_000);
  const release = (): void => {
    done = true;
    clearTimeout(timer);
    open();
  };
  return { release, released, isReleased: () => done };
}

/** Streams a chat completion; the gate opens when the first content chunk reaches the client. */
async function gatedChat(prefix: string, gate: ReturnType<typeof streamGate>): Promise<{ content: string; firstBeforeRelease: boolean | undefined; elapsedMs: number }> {
  const started = performance.now();
  let content = '';
  let firstBeforeRelease: boolean | undefined;
  try {
    const s = await gw.client(prefix).chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'hello' }], stream: true });
    for await (const chunk of s) {
      const text = chunk.choices[0]?.delta.content ?? '';
      if (text !== '' && firstBeforeRelease === undefined) {
        firstBeforeRelease = !gate.isReleased();
        gate.release();
      }
      content += text;
    }
  } finally {
    gate.release();
  }
  return { content, firstBeforeRelease, elapsedMs: performance.now() - started };
}

describe('Bedrock streaming: the first token is not held for later events', () => {
  it('the client reads the first content chunk while Bedrock still holds back the rest of its stream', async () => {
    const gate = streamGate();
    // messageStart and the first contentBlockDelta, then nothing until the client has that text.
    bedrock.setMode({ kind: 'gated', events: 2, release: gate.released });
    const answer = await gatedChat('/bedrock/v1', gate);
    expect(answer.firstBeforeRelease).toBe(true);
    expect(answer.content).toBe('answered by bedrock');
  });

  it('with a first-token deadline, the first content event releases the held answer at once', async () => {
    const gate = streamGate();
    bedrock.setMode({ kind: 'gated', events: 2, release: gate.released });
    const answer = await gatedChat('/bedrock-deadline/v1', gate);
    expect(answer.firstBeforeRelease).toBe(true);
    expect(answer.content).toBe('answered by bedrock');
    expect(openai.received()).toHaveLength(0);
  });

  it('with a first-token deadline, messageStart alone is no token: past the deadline OpenAI answers', async () => {
    const gate = streamGate();
    bedrock.setMode({ kind: 'gated', events: 1, release: gate.released });
    const answer = await gatedChat('/bedrock-deadline/v1', gate);
    // Before the watcher read Bedrock's frames, messageStart's first byte released the answer and
    // the client waited for Bedrock's text however long it took.
    expect(answer.content).toBe('answered by openai');
    console.log(`bedrock messageStart only, 2 s deadline: answered by OpenAI in ${Math.round(answer.elapsedMs)} ms`);
    expect(answer.elapsedMs).toBeLessThan(DEADLINE_MS + E2E_LOAD_MARGIN_MS);
    expect(bedrock.received()).toHaveLength(1);
    expect(openai.received()).toHaveLength(1);
  });
});

describe('first-token deadline on Vertex AI\'s native streamGenerateContent', () => {
  it('Gemini\'s first text event releases the answer at once: the client\'s first token long before the 2 s deadline, no failover', async () => {
    slowVertex.clear();
    const answer = await chat(true, '/deadline/v1');
    // Before the watcher knew Gemini events, the answer was held for 2 s and then abandoned to OpenAI.
    expect(answer.content).toBe('answered by vertex-slow');
    // Held, the attempt would have been abandoned at the deadline and OpenAI would have answered:
    // the content above and OpenAI's empty log say it was released, not the clock (printed).
    console.log(`Gemini first content with a 2 s deadline: ${Math.round(answer.firstContentMs)} ms`);
    expect(openai.received()).toHaveLength(0);
    // The other two events come 1.5 s apart: streamed through, not held to the end; with the last
    // event 3 s after the first, the first text reached the client before the fake sent the second.
    expect(answer.spreadMs).toBeGreaterThan(2_500);
    expect(slowVertex.received().map((r) => r.rejected)).toEqual([undefined]);
  });
});

describe('Vertex AI access tokens', () => {
  it('are renewed before they expire: requests go on being answered across several token lifetimes', async () => {
    shortLived.clear();
    const used = new Set<string>();
    let answered = 0;
    const failures: string[] = [];
    await waitFor(
      async () => {
        // waitFor retries a probe that throws: failures are counted here instead.
        const answer = await gw.chat('/short/v1').catch((err: unknown) => {
          failures.push(err instanceof Error ? err.message : String(err));
          return undefined;
        });
        if (answer?.content === 'answered by vertex-short') answered++;
        for (const r of shortLived.received()) used.add(r.headers['authorization'] ?? '');
        return used.size >= 3;
      },
      { what: 'requests to carry a third access token', timeoutMs: 15_000, intervalMs: 100 },
    );
    expect(failures).toEqual([]);
    expect(shortLived.received().map((r) => r.rejected).filter((r) => r !== undefined)).toEqual([]);
    expect(shortLived.tokenRequests().every((g) => g.ok)).toBe(true);
    expect(answered).toBeGreaterThan(3);
  });

  it('a key the token endpoint refuses gives a 503 naming the member and the endpoint\'s reason, and nothing reaches Vertex', async () => {
    const err = await gw.client('/wrong/v1').chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    const failure = err as APIError;
    expect(failure.status).toBe(503);
    // The route's last attempt: the reason in OpenAI's error shape (the SDK quotes it), and in a header.
    expect(failure.message).toContain('member p0-0-vertexai (Backend ai/gemini-wrong-key) has no usable credential');
    const reason = failure.headers?.get('x-switchyard-error') ?? '';
    expect(reason).toContain('member p0-0-vertexai (Backend ai/gemini-wrong-key) has no usable credential');
    expect(reason).toContain('invalid_grant: Invalid JWT Signature.');
    expect(failure.headers?.get('x-switchyard-abandoned')).toBe('credential_unavailable');
    expect(vertex.received()).toEqual([]);
    // The key was refused when the configuration named it (above: the endpoint's reason); the
    // route's three attempts found the refusal within its back-off and did not ask again each.
    // The first attempt's stand-in waited for Envoy's first connection to Vertex (5 s): the
    // timer's own retries (1 s, then 2 s) fall in that wait.
    expect(vertex.tokenRequests().length).toBeLessThanOrEqual(3);
    expect(vertex.tokenRequests().every((g) => !g.ok && g.reason === 'Invalid JWT Signature.')).toBe(true);
  });
});

describe('secrets stay out of Envoy and the logs', () => {
  it('no AWS secret key, session token, service-account private key or access token in /config_dump or any log', async () => {
    await openai.setMode({ kind: 'status', status: 503 });
    bedrock.setMode({ kind: 'status', status: 503 });
    await chat(false);
    const dump = JSON.stringify(await gw.envoy.configDump({ includeEds: true }));
    expect(dump).toContain('credential/ai/aws-keys:aws');
    expect(dump).toContain('credential/ai/vertex-sa:service-account');
    const privateKeyLine = (JSON.parse(vertex.keyFile) as { private_key: string }).private_key.split('\n')[1] ?? '';
    expect(privateKeyLine.length).toBeGreaterThan(40);
    const secrets = [AWS.secretKey, AWS.sessionToken, privateKeyLine, OPENAI_KEY, ...vertex.issuedTokens()];
    expect(vertex.issuedTokens().length).toBeGreaterThan(0);
    for (const s of secrets) {
      expect(dump).not.toContain(s);
      expect(logLines.filter((l) => l.includes(s))).toEqual([]);
      expect(gw.envoy.logs()).not.toContain(s);
    }
  });
});

describe('content-policy refusals answered 200 by Bedrock and Gemini, with contentPolicyFallback', () => {
  for (const stopReason of ['content_filtered', 'guardrail_intervened'] as const) {
    for (const stream of [false, true]) {
      it(`Bedrock stopReason ${stopReason}, ${stream ? 'streamed' : 'not streamed'}: OpenAI answers`, async () => {
        bedrock.setMode({ kind: 'filtered', stopReason });
        const answer = await chat(stream, '/careful-bedrock/v1');
        expect(answer.content).toBe('answered by openai');
        expect(bedrock.received()).toHaveLength(1);
        expect(bedrock.received()[0]?.rejected).toBeUndefined();
      });
    }
  }

  for (const where of ['prompt', 'answer'] as const) {
    for (const stream of [false, true]) {
      it(`Gemini ${where === 'prompt' ? 'promptFeedback.blockReason' : 'finishReason SAFETY'}, ${stream ? 'streamed' : 'not streamed'}: OpenAI answers`, async () => {
        vertex.setMode({ kind: 'blocked', where });
        const answer = await chat(stream, '/careful-gemini/v1');
        expect(answer.content).toBe('answered by openai');
        expect(vertex.received()).toHaveLength(1);
        expect(vertex.received()[0]?.rejected).toBeUndefined();
      });
    }
  }

  it('their own answers still reach the client, Bedrock\'s streamed event by event', async () => {
    expect((await chat(false, '/careful-gemini/v1')).content).toBe('answered by vertex');
    const streamed = await chat(true, '/careful-bedrock/v1');
    expect(streamed.content).toBe('answered by bedrock');
    // 40 ms between Bedrock's events: held only until the first text, not buffered whole.
    expect(streamed.spreadMs).toBeGreaterThan(40);
    expect(openai.received()).toHaveLength(0);
  });
});
