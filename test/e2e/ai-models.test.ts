import { request } from 'node:http';
import OpenAI, { NotFoundError } from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { GATEWAY, NAMESPACE, gatewayManifests, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';

/**
 * Routing by the request's model through the real Envoy, with the official OpenAI client: two
 * HTTPRoutes send `gpt-4o` and the `fast` alias (or any `llama-*`) to two Backends by a
 * headers match on x-switchyard-model, which the Gateway sets from the JSON body. Each attempt's
 * member gets its own model for the alias, failover included; GET /v1/models lists what the
 * Gateway serves; an unknown model is OpenAI's 404.
 */

const MANY_HOST = 'many.models.test';
const MANY_ALIASES = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`team-${String(i).padStart(2, '0')}-assistant`, 'llama-3.1-8b']));

let gw: GatewayFixture;
let gpt: FakeProvider;
let vllm: FakeProvider;
let backup: FakeProvider;

function member(name: string, hostname: string, fake: FakeProvider | undefined, extra: Manifest = {}): Manifest {
  return {
    name,
    provider: { openaiCompatible: { host: hostname, port: 80, tls: false, ...extra } },
    hostOverride: { host: fake?.host ?? '', port: fake?.port ?? 0 },
  };
}

function backend(name: string, ai: Manifest): Manifest {
  return { apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name, namespace: NAMESPACE }, spec: { type: 'AI', ai, outlierDetection: { enabled: false } } };
}

function route(name: string, spec: Manifest): Manifest {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: NAMESPACE }, spec: { parentRefs: [{ name: GATEWAY }], ...spec } };
}

function modelRule(header: Manifest, backendName: string): Manifest {
  return {
    matches: [{ path: { type: 'PathPrefix', value: '/v1' }, headers: [{ name: 'x-switchyard-model', ...header }] }],
    backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: backendName }],
  };
}

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'ai-models',
    providers: ['gpt', 'vllm', 'backup'],
    manifests: ({ listenerPort, fakes }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        backend('gpt', { llm: { provider: { openaiCompatible: { host: 'gpt.models.test', port: 80, tls: false, model: 'gpt-4o' } }, hostOverride: { host: fakes['gpt']?.host ?? '', port: fakes['gpt']?.port ?? 0 } } }),
        backend('many', { models: MANY_ALIASES, llm: { provider: { openaiCompatible: { host: 'many.models.test', port: 80, tls: false } }, hostOverride: { host: fakes['vllm']?.host ?? '', port: fakes['vllm']?.port ?? 0 } } }),
        backend('local', {
          // The alias for members that take the client's model; the backup names its own.
          models: { fast: 'llama-3.1-8b' },
          multipool: {
            priorities: [
              { pool: [member('vllm', 'vllm.models.test', fakes['vllm'])] },
              { pool: [{ ...member('backup', 'backup.models.test', fakes['backup']), models: { fast: 'qwen2.5-7b' } }] },
            ],
          },
        }),
      ],
      'routes.yaml': [
        route('gpt', { rules: [modelRule({ value: 'gpt-4o' }, 'gpt')] }),
        route('local', { rules: [modelRule({ type: 'RegularExpression', value: 'fast|llama-.*' }, 'local')] }),
        // Another host, whose model list outgrows Envoy's default 4 KiB direct response body.
        route('many', { hostnames: [MANY_HOST], rules: [{ backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: 'many' }] }] }),
      ],
    }),
    waitForBackends: ['gpt', 'local', 'many'],
  });
  gpt = gw.fakes['gpt'] as FakeProvider;
  vllm = gw.fakes['vllm'] as FakeProvider;
  backup = gw.fakes['backup'] as FakeProvider;
});

afterAll(async () => {
  await gw?.stop();
});

beforeEach(async () => {
  await gw.resetFakes();
});

async function ask(model: string, client: OpenAI = gw.client()): Promise<{ answeredBy: string | null; content: string }> {
  const { data, response } = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hello' }] }).withResponse();
  return { answeredBy: response.headers.get('x-fake-provider'), content: data.choices[0]?.message.content ?? '' };
}

const modelsSent = (f: FakeProvider): unknown[] => f.received().map((r) => (r.body as { model?: unknown } | undefined)?.model);

describe('routing by model', () => {
  it('sends each model to the Backend whose rule matches it', async () => {
    expect((await ask('gpt-4o')).answeredBy).toBe('gpt');
    expect((await ask('fast')).answeredBy).toBe('vllm');
    expect((await ask('llama-3.1-70b')).answeredBy).toBe('vllm');
    expect(modelsSent(gpt)).toEqual(['gpt-4o']);
    // The alias becomes the member's model; a model that is no alias passes unchanged.
    expect(modelsSent(vllm)).toEqual(['llama-3.1-8b', 'llama-3.1-70b']);
    expect(modelsSent(backup)).toEqual([]);
    // The routing header is the Gateway's own: no provider receives it.
    for (const f of [gpt, vllm]) expect(f.received().map((r) => r.headers['x-switchyard-model'])).toEqual(f.received().map(() => undefined));
  });

  it('gives each attempt its member\'s model for the alias: the failover target is sent its own', async () => {
    await vllm.setMode({ kind: 'status', status: 503 });
    const answer = await ask('fast');
    expect(answer.answeredBy).toBe('backup');
    expect(modelsSent(vllm)).toEqual(['llama-3.1-8b']);
    expect(modelsSent(backup)).toEqual(['qwen2.5-7b']);
  });

  it('routes a streamed request by its model and streams the answer back', async () => {
    const stream = await gw.client().chat.completions.create({ model: 'fast', stream: true, messages: [{ role: 'user', content: 'hello' }] });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('answered by vllm');
    expect(modelsSent(vllm)).toEqual(['llama-3.1-8b']);
  });

  it('routes a request larger than Envoy\'s 1 MiB default buffer by its model', async () => {
    const { response } = await gw.client().chat.completions.create({ model: 'fast', messages: [{ role: 'user', content: 'x'.repeat(3 * 1024 * 1024) }] }).withResponse();
    expect(response.headers.get('x-fake-provider')).toBe('vllm');
    expect(modelsSent(vllm)).toEqual(['llama-3.1-8b']);
  });

  it('routes by the body, not by a header the client sends itself', async () => {
    const spoofing = new OpenAI({ baseURL: `http://127.0.0.1:${gw.listenerPort}/v1`, apiKey: 'sk-client', maxRetries: 0, timeout: 20_000, defaultHeaders: { 'x-switchyard-model': 'gpt-4o' } });
    expect((await ask('fast', spoofing)).answeredBy).toBe('vllm');
    // With no model in the body, the client's header is removed before any route is chosen.
    const noModel = await fetch(`http://127.0.0.1:${gw.listenerPort}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-switchyard-model': 'gpt-4o' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hello' }] }),
    });
    expect(noModel.status).toBe(404);
    expect(gpt.received()).toEqual([]);
    // A content-type with parameters (many clients send a charset) is read too.
    const charset = await fetch(`http://127.0.0.1:${gw.listenerPort}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'Application/JSON; charset=UTF-8' },
      body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] }),
    });
    expect(charset.headers.get('x-fake-provider')).toBe('gpt');
  });

  it('answers an unknown model with OpenAI\'s 404 model_not_found, calling no provider', async () => {
    const failure = await ask('gpt-5').then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(NotFoundError);
    const notFound = failure as NotFoundError;
    expect(notFound.status).toBe(404);
    expect(notFound.code).toBe('model_not_found');
    expect(notFound.type).toBe('invalid_request_error');
    expect(notFound.message).toContain('`gpt-5` does not exist or is not served by this gateway');
    for (const f of [gpt, vllm, backup]) expect(f.received()).toEqual([]);
  });

  it('lists every model of a host, past Envoy\'s 4 KiB default for a direct response', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: gw.listenerPort, path: '/v1/models', headers: { host: MANY_HOST } }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c)).on('end', () => resolve(text));
      });
      req.on('error', reject).end();
    });
    expect(body.length).toBeGreaterThan(4096);
    const ids = (JSON.parse(body) as { data: { id: string }[] }).data.map((m) => m.id);
    expect(ids).toEqual(Object.keys(MANY_ALIASES).sort());
  });
});

describe('GET /v1/models', () => {
  it('lists the models and aliases the Gateway routes, in OpenAI\'s format', async () => {
    const models = [];
    for await (const m of gw.client().models.list()) models.push(m);
    expect(models).toEqual([
      { id: 'fast', object: 'model', created: 0, owned_by: `${NAMESPACE}/local` },
      { id: 'gpt-4o', object: 'model', created: 0, owned_by: `${NAMESPACE}/gpt` },
    ]);
    for (const f of [gpt, vllm, backup]) expect(f.received()).toEqual([]);
  });
});
