import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { aiBackend, gatewayManifests, httpRoute, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';

/**
 * Context-window and content-policy fallback through the real Envoy and the AI extension: a pool
 * whose member answers 400 context_length_exceeded (or a content-filter refusal, in OpenAI's or
 * Azure OpenAI's words) hands the request to the next priority when the pool says so; any other
 * 400 reaches the client and nothing else is called. The official OpenAI client talks to the gateway.
 */

const HOSTS = { p0: 'small.llm.test', p1: 'large.llm.test' } as const;

let gw: GatewayFixture;
let p0: FakeProvider;
let p1: FakeProvider;

function withFallbacks(backend: Manifest, first: Record<string, string>): Manifest {
  const spec = backend['spec'] as { ai: { multipool: { priorities: Record<string, unknown>[] } } };
  Object.assign(spec.ai.multipool.priorities[0] ?? {}, first);
  return backend;
}

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'ai-fallbacks',
    providers: ['p0', 'p1'],
    manifests: ({ listenerPort, fakes }) => {
      const pools = [[{ name: 'small', fake: fakes['p0']!, hostname: HOSTS.p0 }], [{ name: 'large', fake: fakes['p1']!, hostname: HOSTS.p1 }]];
      return {
        'gateway.yaml': gatewayManifests(listenerPort),
        'backends.yaml': [
          withFallbacks(aiBackend({ name: 'chat', priorities: pools, outlierDetection: { enabled: false } }), { contextWindowFallback: 'NextPool', contentPolicyFallback: 'NextPool' }),
          withFallbacks(aiBackend({ name: 'context-only', priorities: pools, outlierDetection: { enabled: false } }), { contextWindowFallback: 'NextPool' }),
        ],
        'routes.yaml': [
          httpRoute('chat', [
            { path: '/v1', backend: 'chat' },
            { path: '/context-only/v1', rewritePrefix: '/v1', backend: 'context-only' },
          ]),
        ],
      };
    },
    waitForBackends: ['chat', 'context-only'],
  });
  ({ p0, p1 } = gw.fakes as Record<'p0' | 'p1', FakeProvider>);
});

afterAll(async () => {
  await gw?.stop();
});

beforeEach(async () => {
  await gw.resetFakes();
});

async function failures(member: string, cause: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('switchyard_ai_failures_total{') && l.includes(`member="${member}"`) && l.includes(`cause="${cause}"`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('a pool with contextWindowFallback: NextPool', () => {
  it('hands an OpenAI context_length_exceeded to the next priority, counted by cause', async () => {
    const before = await failures('small', 'context_length_exceeded');
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const answer = await gw.chat();
    expect(answer.content).toBe('answered by p1');
    expect(p0.received()).toHaveLength(1);
    expect(p1.received()[0]?.headers['x-envoy-attempt-count']).toBe('2');
    expect(await failures('small', 'context_length_exceeded')).toBe(before + 1);
  });

  it('does so for a streamed request too: the client gets the larger pool\'s stream', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    const stream = await gw.client().chat.completions.create({ model: 'client-model', messages: [{ role: 'user', content: 'a long prompt' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('answered by p1');
    expect(p0.received()).toHaveLength(1);
  });

  it('passes any other 400 to the client untouched, and calls no other pool', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'invalid' });
    const failure = await gw.chatFailure();
    expect(failure.status).toBe(400);
    expect(failure.message).toContain("Invalid value for 'temperature'");
    expect(p0.received()).toHaveLength(1);
    expect(p1.received()).toHaveLength(0);
  });
});

describe('a pool with contentPolicyFallback: NextPool', () => {
  it('hands an Azure OpenAI content_filter refusal to the next priority', async () => {
    const before = await failures('small', 'content_policy');
    await p0.setMode({ kind: 'refusal', refusal: 'content_policy', api: 'azureopenai' });
    const answer = await gw.chat();
    expect(answer.content).toBe('answered by p1');
    expect(p0.received()).toHaveLength(1);
    expect(await failures('small', 'content_policy')).toBe(before + 1);
  });

  it('hands an OpenAI content_filter refusal to the next priority', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'content_policy', api: 'openai' });
    expect((await gw.chat()).content).toBe('answered by p1');
  });
});

describe('a pool without the fallback', () => {
  it('gives the client its content-policy refusal as the provider said it; the next pool is never called', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'content_policy', api: 'azureopenai' });
    const failure = await gw.chatFailure('/context-only/v1');
    expect(failure.status).toBe(400);
    expect(failure.message).toContain('content management policy');
    expect(p1.received()).toHaveLength(0);
  });

  it('the last pool\'s own refusal reaches the client when it has no fallback either', async () => {
    await p0.setMode({ kind: 'refusal', refusal: 'context_length' });
    await p1.setMode({ kind: 'refusal', refusal: 'context_length' });
    const failure = await gw.chatFailure();
    expect(failure.status).toBe(400);
    expect(failure.message).toContain('maximum context length is 8192 tokens');
    expect(p0.received()).toHaveLength(1);
    expect(p1.received()).toHaveLength(1);
  });
});
