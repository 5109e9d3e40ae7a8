import { describe, expect, it } from 'vitest';
import { DURATION_HINT } from '../../src/api/duration.js';
import { formatProblem, parseManifest, type Problem } from '../../src/api/manifest.js';

const passthrough = { kind: 'Passthrough' };
const openai = { provider: { openai: { authToken: passthrough } } };

function backend(spec: Record<string, unknown>, name = 'chat'): Record<string, unknown> {
  return { apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name, namespace: 'ai' }, spec };
}

function problems(doc: unknown): Problem[] {
  const r = parseManifest(doc, 'backends.yaml#0');
  if (r.ok !== false) throw new Error(`expected validation problems, got ok=${String(r.ok)}`);
  return r.problems;
}

function only(doc: unknown): Problem {
  const list = problems(doc);
  expect(list, JSON.stringify(list)).toHaveLength(1);
  return list[0] as Problem;
}

describe('parseManifest error messages: the field path and how to fix it', () => {
  it('an empty pool names the priority and says to add a member or drop the priority', () => {
    const p = only(backend({ type: 'AI', ai: { multipool: { priorities: [{ pool: [openai] }, { pool: [] }] } } }));
    expect(p.field).toBe('spec.ai.multipool.priorities[1].pool');
    expect(p.message).toMatch(/at least one pool member.*add one or remove the empty priority/);
  });

  it('member limits with neither limit say what to set', () => {
    const p = only(backend({ type: 'AI', ai: { multipool: { priorities: [{ pool: [{ ...openai, limits: {} }] }] } } }));
    expect(p.field).toBe('spec.ai.multipool.priorities[0].pool[0].limits');
    expect(p.message).toMatch(/requestsPerMinute or tokensPerMinute, e\.g\. \{requestsPerMinute: 60\}/);
  });

  it('both llm and multipool', () => {
    const p = only(backend({ type: 'AI', ai: { llm: openai, multipool: { priorities: [{ pool: [openai] }] } } }));
    expect(p.field).toBe('spec.ai');
    expect(p.message).toBe('set exactly one of llm or multipool, not both');
  });

  it('neither llm nor multipool', () => {
    expect(only(backend({ type: 'AI', ai: {} })).message).toMatch(/set exactly one of llm .* or multipool/);
  });

  it('negative retry attempts', () => {
    const p = only(backend({ type: 'AI', ai: { llm: openai }, retry: { attempts: -1 } }));
    expect(p.field).toBe('spec.retry.attempts');
    expect(p.message).toMatch(/cannot be negative/);
  });

  it('an unknown field is named, at its parent path, with a hint to check the spelling', () => {
    const p = only(backend({ type: 'AI', ai: { llm: { provider: { openai: { modle: 'gpt-4o', authToken: passthrough } } } } }));
    expect(p.field).toBe('spec.ai.llm.provider.openai');
    expect(p.message).toMatch(/unknown field "modle".*spelling/);
  });

  it('a duration without a unit shows an example of a valid one', () => {
    const p = only(backend({ type: 'AI', ai: { llm: openai }, retry: { perTryTimeout: '10' } }));
    expect(p.field).toBe('spec.retry.perTryTimeout');
    expect(p.message).toContain(DURATION_HINT);
  });

  it('two providers in one member: split them', () => {
    const p = only(backend({ type: 'AI', ai: { multipool: { priorities: [{ pool: [{ provider: { openai: { authToken: passthrough }, anthropic: { authToken: passthrough } } }] }] } } }));
    expect(p.field).toBe('spec.ai.multipool.priorities[0].pool[0].provider');
    expect(p.message).toMatch(/found openai and anthropic; split them/);
  });

  it('SecretRef without secretRef says which Secret key it needs', () => {
    const p = only(backend({ type: 'AI', ai: { llm: { provider: { openai: { authToken: { kind: 'SecretRef' } } } } } }));
    expect(p.field).toBe('spec.ai.llm.provider.openai.authToken.secretRef');
    expect(p.message).toMatch(/secretRef\.name.*"Authorization"/);
  });

  it('vertexai with both an access token and a service-account key: set exactly one', () => {
    const vertex = { model: 'gemini-2.0-flash', projectId: 'p', region: 'us-central1', authToken: passthrough, serviceAccountKey: { secretRef: { name: 'sa' } } };
    const p = only(backend({ type: 'AI', ai: { llm: { provider: { vertexai: vertex } } } }));
    expect(p.field).toBe('spec.ai.llm.provider.vertexai');
    expect(p.message).toContain('exactly one of authToken (an access token) or serviceAccountKey');
  });

  it('a bedrock region that is not an AWS region shows one', () => {
    const p = only(backend({ type: 'AI', ai: { llm: { provider: { bedrock: { model: 'amazon.nova-lite-v1:0', region: 'US East', credentials: { secretRef: { name: 'aws' } } } } } } }));
    expect(p.field).toBe('spec.ai.llm.provider.bedrock.region');
    expect(p.message).toContain('e.g. "us-east-1"');
  });

  it('a missing required field is called missing', () => {
    const p = only(backend({ type: 'AI', ai: { llm: { provider: { gemini: { authToken: passthrough } } } } }));
    expect(p.field).toBe('spec.ai.llm.provider.gemini.model');
    expect(p.message).toMatch(/^required field is missing/);
  });

  it('a wrong apiVersion says which one to use', () => {
    const p = only({ ...backend({ type: 'Static', static: { priorities: [{ hosts: [{ host: '10.0.0.1', port: 80 }] }] } }), apiVersion: 'switchyard.dev/v1' });
    expect(p.field).toBe('apiVersion');
    expect(p.message).toContain('switchyard.dev/v1alpha1');
  });

  it('reports every problem of a document, not only the first', () => {
    const list = problems(backend({ type: 'AI', ai: { llm: openai }, retry: { attempts: -1, perTryTimeout: 'soon' }, outlierDetecton: {} }));
    expect(list.map((p) => p.field).sort()).toEqual(['spec', 'spec.retry.attempts', 'spec.retry.perTryTimeout']);
  });

  it('formatProblem names the file, the object and the field', () => {
    const p = only(backend({ type: 'AI', ai: { llm: openai }, retry: { attempts: -1 } }));
    expect(formatProblem(p)).toBe('backends.yaml#0: Backend ai/chat: spec.retry.attempts: attempts (retries after the first try) cannot be negative');
  });
});

describe('parseManifest outcomes', () => {
  it('accepts a valid Backend and defaults its namespace', () => {
    const doc = backend({ type: 'AI', ai: { llm: openai } });
    delete (doc.metadata as Record<string, unknown>).namespace;
    const r = parseManifest(doc);
    expect(r.ok).toBe(true);
    if (r.ok === true) expect(r.id).toEqual({ kind: 'Backend', namespace: 'default', name: 'chat' });
  });

  it('ignores kinds Switchyard does not read, and empty documents', () => {
    expect(parseManifest({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }).ok).toBe('ignored');
    expect(parseManifest(null).ok).toBe('ignored');
  });

  it('refuses a document that is not a mapping, or has no kind', () => {
    expect(problems(['a', 'list'])[0]?.message).toMatch(/mapping with apiVersion, kind and metadata/);
    expect(problems({ metadata: { name: 'x' } })[0]?.field).toBe('kind');
  });
});

describe('strict input: Secrets and Gateway API objects', () => {
  const secret = (data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'openai-key', namespace: 'ai' }, data });

  it('a Secret data value that is not base64 names the Secret and the key, never the value', () => {
    const p = only(secret({ Authorization: 'sk-live-not base64!', other: 'c2stMQ==' }));
    expect(p.object).toEqual({ kind: 'Secret', namespace: 'ai', name: 'openai-key' });
    expect(p.field).toBe('data.Authorization');
    expect(p.message).toMatch(/not base64.*stringData/);
    expect(formatProblem(p)).not.toContain('sk-live');
  });

  it('accepts base64 data with and without padding, and empty values', () => {
    const r = parseManifest(secret({ a: 'c2stMQ==', b: 'YWJj', c: 'YWI=', d: '' }));
    expect(r.ok).toBe(true);
  });

  const route = (spec: Record<string, unknown>) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'chat', namespace: 'ai', managedFields: [{}] }, spec, status: { parents: [] } });

  it('serves a Gateway API object with unknown fields and names each field (forward compatibility)', () => {
    const r = parseManifest(route({ parentRefs: [{ name: 'edge' }], rules: [{ backendRef: [{ name: 'x' }], backendRefs: [{ name: 'chat', futureKnob: 1 }] }], sessionStuff: {} }), 'routes.yaml#0');
    if (r.ok !== true) throw new Error(`expected the route to be served, got ${JSON.stringify(r)}`);
    expect(r.warnings.map((w) => w.field)).toEqual(['spec.rules[0].backendRef', 'spec.rules[0].backendRefs[0].futureKnob', 'spec.sessionStuff']);
    expect(r.warnings[0]).toMatchObject({ source: 'routes.yaml#0', object: { kind: 'HTTPRoute', namespace: 'ai', name: 'chat' } });
    expect(r.warnings[0]?.message).toMatch(/serves the object without it/);
  });

  it('reports nothing for a Gateway API object that uses only known fields, nor for metadata and status', () => {
    const r = parseManifest(route({ parentRefs: [{ name: 'edge' }], rules: [{ backendRefs: [{ name: 'chat', weight: 1 }] }] }));
    expect(r.ok === true && r.warnings).toEqual([]);
  });
});

