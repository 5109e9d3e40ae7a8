import { describe, expect, it } from 'vitest';
import { modelForAttempt } from '../../src/ai-extension/models.js';
import { BackendSpec } from '../../src/api/backend.js';
import type { RouteIR } from '../../src/ir/model.js';
import { memberModelAliases, modelsRoute, type ServedModels } from '../../src/translate/models.js';

describe('model aliases', () => {
  it('apply the Backend\'s aliases only to members without a model of their own; a member\'s own win', () => {
    const backend = { fast: 'gpt-4o-mini', smart: 'gpt-4o' };
    expect(memberModelAliases(backend, {}, undefined)).toEqual(backend);
    expect(memberModelAliases(backend, {}, 'claude-sonnet-4-5')).toBeUndefined();
    expect(memberModelAliases(backend, { models: { fast: 'claude-haiku-4-5' } }, 'claude-sonnet-4-5')).toEqual({ fast: 'claude-haiku-4-5' });
    expect(memberModelAliases(backend, { models: { fast: 'llama-3.1-8b' } }, undefined)).toEqual({ fast: 'llama-3.1-8b', smart: 'gpt-4o' });
    expect(memberModelAliases(undefined, {}, undefined)).toBeUndefined();
  });

  it('give each attempt the alias\'s model, else the member\'s, else the client\'s', () => {
    const target = { model: 'claude-sonnet-4-5', modelAliases: { fast: 'claude-haiku-4-5' } };
    expect(modelForAttempt(target, 'fast')).toBe('claude-haiku-4-5');
    expect(modelForAttempt(target, 'gpt-4o')).toBe('claude-sonnet-4-5');
    expect(modelForAttempt({ modelAliases: { fast: 'x' } }, 'other')).toBeUndefined();
    // Only the map's own keys: "constructor" is no alias.
    expect(modelForAttempt({ modelAliases: {} }, 'constructor')).toBeUndefined();
  });

  it('are refused with the field named when a name is empty or there are too many', () => {
    const spec = (models: Record<string, string>) => ({ ai: { models, llm: { provider: { openai: { authToken: { kind: 'Passthrough' } } } } } });
    const empty = BackendSpec.safeParse(spec({ fast: '' }));
    expect(empty.success).toBe(false);
    expect(empty.error?.issues[0]?.path).toEqual(['ai', 'models', 'fast']);
    const many = BackendSpec.safeParse(spec(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`m${i}`, 'x']))));
    expect(many.error?.issues[0]?.message).toBe('at most 64 model aliases');
    expect(BackendSpec.safeParse(spec({ fast: 'gpt-4o-mini' })).success).toBe(true);
  });
});

describe('GET /v1/models', () => {
  const served = new Map<string, ServedModels>([
    ['backend/ai/a', { owner: 'ai/a', ids: ['gpt-4o', 'fast'] }],
    ['backend/ai/b', { owner: 'ai/b', ids: ['llama-3.1-8b', 'claude'] }],
  ]);
  const route = (cluster: string, header?: { value: string; regex: boolean }, path = '/'): RouteIR => ({
    name: `r/${cluster}`,
    match: { path: { kind: 'PathPrefix', value: path }, headers: header ? [{ name: 'x-switchyard-model', ...header }] : [], queryParams: [] },
    action: { kind: 'forward', clusters: [{ name: cluster, weight: 1 }], timeoutMs: 0, autoHostRewrite: true },
  });
  const ids = (r: RouteIR | undefined): string[] => {
    if (r?.action.kind !== 'direct') throw new Error('expected a direct response');
    return (JSON.parse(r.action.body) as { data: { id: string }[] }).data.map((m) => m.id);
  };

  it('lists a rule\'s exact model, the models its regex lets through, and every model of a rule without one', () => {
    expect(ids(modelsRoute([route('backend/ai/a', { value: 'gpt-4o', regex: false }), route('backend/ai/b', { value: 'llama-.*', regex: true })], served, 'vh'))).toEqual(['gpt-4o', 'llama-3.1-8b']);
    expect(ids(modelsRoute([route('backend/ai/b')], served, 'vh'))).toEqual(['claude', 'llama-3.1-8b']);
  });

  it('is left to an HTTPRoute that claims /v1/models, and absent where no route reaches an AI Backend', () => {
    const own: RouteIR = { ...route('backend/ai/a'), match: { path: { kind: 'Exact', value: '/v1/models' }, headers: [], queryParams: [] } };
    expect(modelsRoute([own, route('backend/ai/a')], served, 'vh')).toBeUndefined();
    expect(modelsRoute([route('service/ai/web/80')], served, 'vh')).toBeUndefined();
  });
});
