/**
 * A member's attempt facts travel in one endpoint metadata string (src/envoy/attempt-facts.ts),
 * read by one CEL attribute. The string must read back exactly whatever the values hold, never
 * carry a key, and reach the extension intact through the protobuf bytes Envoy sends.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { attemptTarget } from '../../src/ai-extension/attempt.js';
import { decodeProcessingRequest } from '../../src/ai-extension/protocol.js';
import { ATTEMPT_FACTS_ATTRIBUTE, CONNECTION_READY_ATTRIBUTE, EXT_PROC_ATTRIBUTES, aiExtensionFilter } from '../../src/envoy/ai-extension.js';
import { ATTEMPT_FACTS_KEY, FACT_CODES, decodeAttemptFacts, encodeAttemptFacts, type AttemptFacts } from '../../src/envoy/attempt-facts.js';
import { encodeResourceAny, messageType } from '../../src/envoy/proto.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { runPipeline } from '../../src/pipeline.js';
import { ManifestStore, parseManifestFile } from '../../src/providers/manifest-files.js';
import { EDGE_GATEWAY } from '../support/edge-gateway.js';

const NUMBER_FACTS = new Set(['priority', 'firstTokenTimeoutMs', 'requestsPerMinute', 'tokensPerMinute']);

/** Text that breaks separator-based formats: digits, colons, commas, quotes, escapes, any Unicode. */
const awkward = fc.oneof(
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: fc.constantFrom('1', '9', ':', ',', '"', '\\', '>', 'b', 'm', '\u0000', 'é', '😀', '\u2028') }),
  fc.string({ unit: 'binary' }),
);

const facts: fc.Arbitrary<AttemptFacts> = fc.record(
  Object.fromEntries(
    Object.keys(FACT_CODES).map((key) => [
      key,
      key === 'modelAliases'
        ? fc.dictionary(awkward, awkward, { maxKeys: 4 })
        : NUMBER_FACTS.has(key)
          ? fc.oneof(fc.nat(), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }))
          : awkward,
    ]),
  ) as { [K in keyof AttemptFacts]-?: fc.Arbitrary<NonNullable<AttemptFacts[K]>> },
  { requiredKeys: [] },
);

/** What a decoder must give back: the facts without empty strings or empty alias maps. */
function expected(f: AttemptFacts): AttemptFacts {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(f)) {
    if (value === '' || (typeof value === 'object' && Object.keys(value).length === 0)) continue;
    out[key] = value;
  }
  return out as AttemptFacts;
}

describe('attempt facts string', () => {
  it('reads back exactly what was written, for any values (fuzzed)', () => {
    fc.assert(
      fc.property(facts, (f) => {
        const decoded = decodeAttemptFacts(encodeAttemptFacts(f));
        expect(decoded).toEqual(expected(f));
        // Aliases are an own-key map whatever their names ("__proto__", "constructor").
        if ('modelAliases' in decoded && decoded.modelAliases !== undefined) expect(Object.keys(decoded.modelAliases)).toEqual(Object.keys(expected(f).modelAliases ?? {}));
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws on any string, and says where a malformed one goes wrong (fuzzed)', () => {
    fc.assert(
      fc.property(fc.oneof(awkward, facts.map((f) => encodeAttemptFacts(f)).chain((s) => fc.nat({ max: s.length }).map((n) => s.slice(0, n)))), (text) => {
        const r = decodeAttemptFacts(text);
        if ('error' in r) expect(r.error).toMatch(/format|malformed/);
      }),
      { numRuns: 3000 },
    );
    expect(decodeAttemptFacts('1b9:ai/chat-0m2:p')).toEqual({ error: expect.stringContaining('a value of 2 characters at offset 16 runs past the end (17)') });
    expect(decodeAttemptFacts('1bx:a')).toEqual({ error: expect.stringContaining('no length at offset 2') });
    expect(decodeAttemptFacts('2b1:a')).toEqual({ error: expect.stringContaining('format "2", this AI extension reads format 1') });
  });

  it('writes the facts in one fixed order, so equal members give equal bytes', () => {
    const a = encodeAttemptFacts({ priority: 1, backend: 'ai/chat', member: 'm', provider: 'openai' });
    const b = encodeAttemptFacts({ provider: 'openai', member: 'm', backend: 'ai/chat', priority: 1 });
    expect(a).toBe('1b7:ai/chatm1:ml1:1p6:openai');
    expect(b).toBe(a);
  });

  it('writes long values and lengths of several digits exactly, ASCII or not', () => {
    const long = 'm'.repeat(5000);
    expect(encodeAttemptFacts({ backend: 'ai/chat', model: long, priority: 12 })).toBe(`1b7:ai/chatl2:12o5000:${long}`);
    expect(encodeAttemptFacts({ backend: 'ai/chat', model: `${long}é` })).toBe(`1b7:ai/chato5001:${long}é`);
    expect(decodeAttemptFacts(encodeAttemptFacts({ model: long, member: 'x'.repeat(100_000) }))).toEqual({ model: long, member: 'x'.repeat(100_000) });
  });

  it('skips a fact it does not know (one a newer controller adds)', () => {
    expect(decodeAttemptFacts('1b7:ai/chatZ3:newm1:m')).toEqual({ backend: 'ai/chat', member: 'm' });
  });

  it('reaches the extension through the protobuf bytes Envoy sends, Unicode and all', () => {
    const text = encodeAttemptFacts({ backend: 'ai/chat', member: 'naïve, "quoted" 😀', provider: 'openai', priority: 2, modelAliases: { 'fast:1': 'gpt-4o-mini', '😀': ',' } });
    const REQUEST = messageType('envoy.service.ext_proc.v3.ProcessingRequest');
    const bytes = REQUEST.encode(
      REQUEST.fromObject({
        request_headers: { headers: { headers: [] } },
        attributes: { [EXT_PROC_ATTRIBUTES]: { fields: { [ATTEMPT_FACTS_ATTRIBUTE]: { stringValue: text }, [CONNECTION_READY_ATTRIBUTE]: { stringValue: '1us' } } } },
      }),
    ).finish();
    const target = attemptTarget(decodeProcessingRequest(Buffer.from(bytes)).attributes);
    expect(target).toEqual({ backend: 'ai/chat', member: 'naïve, "quoted" 😀', provider: 'openai', priority: 2, authKind: 'None', modelAliases: { 'fast:1': 'gpt-4o-mini', '😀': ',' } });
  });

  it('says which facts are missing, and when the endpoint has none', () => {
    const attributes = (text: string) => new Map([[ATTEMPT_FACTS_ATTRIBUTE, { stringValue: text }]]);
    expect(attemptTarget(attributes(encodeAttemptFacts({ member: 'x' })))).toEqual({ error: expect.stringContaining('backend, provider missing') });
    expect(attemptTarget(new Map())).toEqual({ error: expect.stringContaining(`switchyard.dev ${ATTEMPT_FACTS_KEY} missing`) });
    expect(attemptTarget(attributes('1b3:ai'))).toEqual({ error: expect.stringContaining('cannot be read: the member facts are malformed') });
  });

  it('is what the ext_proc filter asks Envoy for: one CEL attribute for every fact, and the connection flag', () => {
    const config = aiExtensionFilter()['typed_config'] as JsonObject;
    expect(config['request_attributes']).toEqual([`xds.upstream_host_metadata.filter_metadata['switchyard.dev'].attempt`, 'upstream.cx_pool_ready_duration']);
  });
});

describe('AI member endpoint metadata', () => {
  const INLINE_KEY = 'sk-inline-3f9a2c';
  const SECRET_KEY = 'sk-secret-77b1e0';
  const docs: unknown[] = [
    ...EDGE_GATEWAY,
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'openai-key', namespace: 'ai' }, stringData: { Authorization: `Bearer ${SECRET_KEY}` } },
    {
      apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name: 'chat', namespace: 'ai' },
      spec: {
        type: 'AI',
        ai: {
          models: { fast: 'gpt-4o-mini' },
          multipool: {
            priorities: [
              { pool: [{ name: 'primary', provider: { openai: { model: 'gpt-4o', authToken: { kind: 'SecretRef', secretRef: { name: 'openai-key' } } } }, limits: { requestsPerMinute: 60 } }], contextWindowFallback: 'NextPool' },
              { pool: [{ name: 'inline', provider: { openaiCompatible: { host: 'llm.internal', port: 8000, authToken: { kind: 'Inline', inline: INLINE_KEY } } } }] },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'chat', namespace: 'ai' },
      spec: { parentRefs: [{ name: 'edge' }], rules: [{ backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: 'chat' }] }] },
    },
  ];

  function pipeline(): ReturnType<typeof runPipeline> {
    const file = { name: 'config.yaml', documents: parseManifestFile('config.yaml', docs.map((d) => stringify(d)).join('---\n')) };
    const { inputs, problems } = new ManifestStore().build([file]);
    expect(problems).toEqual([]);
    return runPipeline(inputs, { aiExtension: { host: '127.0.0.1', port: 18001 } });
  }

  it('carries every attempt fact once, in one string, which reads back as the member\'s facts', () => {
    const { xds, translation } = pipeline();
    const members = translation.ir.clusters.flatMap((c) => c.priorities.flatMap((p) => p.members));
    expect(members.map((m) => m.name)).toEqual(['primary', 'inline']);
    const endpoints = xds.endpoints.flatMap((cla) => (cla['endpoints'] as JsonObject[]).flatMap((e) => e['lb_endpoints'] as JsonObject[]));
    const clusterEndpoints = xds.clusters.filter((c) => String(c['name']).startsWith('backend/')).flatMap((c) => ((c['load_assignment'] as JsonObject | undefined)?.['endpoints'] as JsonObject[] | undefined) ?? []).flatMap((e) => e['lb_endpoints'] as JsonObject[]);
    const all = [...endpoints, ...clusterEndpoints];
    expect(all).toHaveLength(members.length);
    all.forEach((e, i) => {
      const m = members[i];
      if (m === undefined) throw new Error('no member');
      const metadata = ((e['metadata'] as JsonObject)['filter_metadata'] as JsonObject)['switchyard.dev'] as JsonObject;
      // No fact also as a key of its own: the access log and the request span read the member
      // from the dynamic metadata the extension writes per attempt (src/envoy/access-log.ts).
      expect(Object.keys(metadata)).toEqual(['attempt']);
      const { secret: _operatorsOnly, ...facts } = m.metadata;
      expect(decodeAttemptFacts(metadata['attempt'] as string)).toEqual(facts);
    });
    expect(members[0]?.metadata).toMatchObject({ requestsPerMinute: 60, fallbacks: 'context_length_exceeded', credential: 'credential/ai/openai-key' });
    expect(members[1]?.metadata).toMatchObject({ authKind: 'Inline', modelAliases: { fast: 'gpt-4o-mini' } });
  });

  it('names credentials by reference: no key in any Cluster or ClusterLoadAssignment', () => {
    const { xds } = pipeline();
    for (const resource of [...xds.clusters, ...xds.endpoints]) {
      const bytes = Buffer.from(encodeResourceAny(resource, false)).toString('latin1');
      expect(bytes).not.toContain(INLINE_KEY);
      expect(bytes).not.toContain(SECRET_KEY);
    }
    // The keys do reach Envoy's SDS secrets for the extension, so the check above can fail.
    expect(JSON.stringify(xds.secrets)).toContain(INLINE_KEY);
  });
});
