import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseManifest, formatProblem } from '../../src/api/manifest.js';
import { createNamespace, kubectl } from '../support/kube.js';

/**
 * The Backend CRD refuses what file mode refuses: each invalid Backend is rejected by the real
 * API server through `kubectl apply` with a message naming the field, and by parseManifest with a
 * problem on the same field. One valid Backend proves the checks are not refusing everything.
 */
let ns: { name: string; remove(): Promise<void> };
beforeAll(async () => {
  ns = await createNamespace('crd');
});
afterAll(async () => {
  await ns?.remove();
});

const token = { kind: 'SecretRef', secretRef: { name: 'openai-key' } };
const member = { provider: { openai: { model: 'gpt-4o', authToken: token } } };

function backend(name: string, spec: unknown) {
  return { apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name, namespace: ns.name }, spec };
}

interface Case {
  name: string;
  spec: unknown;
  /** What kubectl's error must contain (the field, and the rule). */
  kubectl: RegExp[];
  /** The field path parseManifest must name. */
  field: string;
}

const CASES: Case[] = [
  { name: 'both-llm-and-multipool', spec: { type: 'AI', ai: { llm: member, multipool: { priorities: [{ pool: [member] }] } } }, kubectl: [/spec\.ai/, /exactly one of llm/], field: 'spec.ai' },
  { name: 'neither-llm-nor-multipool', spec: { type: 'AI', ai: {} }, kubectl: [/spec\.ai/, /exactly one of llm/], field: 'spec.ai' },
  { name: 'empty-pool', spec: { ai: { multipool: { priorities: [{ pool: [] }] } } }, kubectl: [/spec\.ai\.multipool\.priorities\[0\]\.pool/, /at least 1 items/], field: 'spec.ai.multipool.priorities[0].pool' },
  { name: 'secretref-without-name', spec: { ai: { llm: { provider: { openai: { authToken: { kind: 'SecretRef', secretRef: {} } } } } } }, kubectl: [/spec\.ai\.llm\.provider\.openai\.authToken\.secretRef\.name/, /Required value/], field: 'spec.ai.llm.provider.openai.authToken.secretRef.name' },
  { name: 'secretref-kind-without-secretref', spec: { ai: { llm: { provider: { openai: { authToken: { kind: 'SecretRef' } } } } } }, kubectl: [/authToken/, /kind SecretRef needs secretRef\.name/], field: 'spec.ai.llm.provider.openai.authToken.secretRef' },
  { name: 'negative-retry-attempts', spec: { ai: { llm: member }, retry: { attempts: -1 } }, kubectl: [/spec\.retry\.attempts/, /greater than or equal to 0/], field: 'spec.retry.attempts' },
  { name: 'unknown-provider', spec: { ai: { llm: { provider: { mistral: { model: 'x' } } } } }, kubectl: [/unknown field "spec\.ai\.llm\.provider\.mistral"/], field: 'spec.ai.llm.provider' },
  { name: 'two-providers-in-one-member', spec: { ai: { llm: { provider: { openai: { authToken: token }, anthropic: { authToken: token } } } } }, kubectl: [/spec\.ai\.llm\.provider/, /exactly one provider/], field: 'spec.ai.llm.provider' },
  { name: 'type-ai-without-ai', spec: { type: 'AI' }, kubectl: [/spec/, /type AI needs spec\.ai/], field: 'spec.ai' },
  { name: 'bad-duration', spec: { ai: { llm: member }, retry: { perTryTimeout: '5 seconds' } }, kubectl: [/spec\.retry\.perTryTimeout/, /should match/], field: 'spec.retry.perTryTimeout' },
  { name: 'port-out-of-range', spec: { ai: { llm: { ...member, hostOverride: { host: '10.0.0.7', port: 70000 } } } }, kubectl: [/spec\.ai\.llm\.hostOverride\.port/, /less than or equal to 65535/], field: 'spec.ai.llm.hostOverride.port' },
  { name: 'unknown-token-kind', spec: { ai: { llm: { provider: { openai: { authToken: { kind: 'Vault' } } } } } }, kubectl: [/spec\.ai\.llm\.provider\.openai\.authToken\.kind/, /Unsupported value: "Vault"/], field: 'spec.ai.llm.provider.openai.authToken.kind' },
  { name: 'zero-weight', spec: { ai: { multipool: { priorities: [{ pool: [{ ...member, weight: 0 }] }] } } }, kubectl: [/spec\.ai\.multipool\.priorities\[0\]\.pool\[0\]\.weight/, /greater than or equal to 1/], field: 'spec.ai.multipool.priorities[0].pool[0].weight' },
  { name: 'retriable-code-out-of-range', spec: { ai: { llm: member }, retry: { statusCodes: [99] } }, kubectl: [/spec\.retry\.statusCodes\[0\]/, /greater than or equal to 400/], field: 'spec.retry.statusCodes[0]' },
  { name: 'inline-without-token', spec: { ai: { llm: { provider: { openai: { authToken: { kind: 'Inline' } } } } } }, kubectl: [/authToken/, /kind Inline needs inline/], field: 'spec.ai.llm.provider.openai.authToken.inline' },
  { name: 'backoff-max-below-base', spec: { ai: { llm: member }, retry: { backoff: { baseInterval: '1s', maxInterval: '100ms' } } }, kubectl: [/spec\.retry\.backoff/, /maxInterval must be at least baseInterval/], field: 'spec.retry.backoff.maxInterval' },
  { name: 'backoff-zero-base', spec: { ai: { llm: member }, retry: { backoff: { baseInterval: '0s' } } }, kubectl: [/spec\.retry\.backoff/, /baseInterval must be more than 0/], field: 'spec.retry.backoff.baseInterval' },
  { name: 'pool-name-twice', spec: { ai: { multipool: { priorities: [{ name: 'small', pool: [member] }, { name: 'small', pool: [member] }] } } }, kubectl: [/spec\.ai\.multipool/, /pool names \(priorities\[\]\.name\) must be unique/], field: 'spec.ai.multipool.priorities[1].name' },
  { name: 'fallback-to-unknown-pool', spec: { ai: { multipool: { priorities: [{ contextWindowFallback: 'large', pool: [member] }, { name: 'big', pool: [member] }] } } }, kubectl: [/spec\.ai\.multipool/, /NextPool or the name of a later pool/], field: 'spec.ai.multipool.priorities[0].contextWindowFallback' },
  { name: 'uppercase-member-name', spec: { ai: { multipool: { priorities: [{ pool: [{ ...member, name: 'Primary' }] }] } } }, kubectl: [/spec\.ai\.multipool\.priorities\[0\]\.pool\[0\]\.name/, /should match/], field: 'spec.ai.multipool.priorities[0].pool[0].name' },
];

describe('kubectl apply of an invalid Backend is refused with the field named', () => {
  it.each(CASES)('$name', async (c) => {
    const manifest = backend(c.name, c.spec);
    const applied = await kubectl(['apply', '-f', '-'], stringify(manifest));
    expect(applied.code, `kubectl accepted ${c.name}: ${applied.stdout}`).not.toBe(0);
    for (const pattern of c.kubectl) expect(applied.stderr).toMatch(pattern);

    const parsed = parseManifest(manifest, `${c.name}.yaml#0`);
    expect(parsed.ok).toBe(false);
    const problems = parsed.ok === false ? parsed.problems : [];
    expect(problems.map((p) => p.field), problems.map(formatProblem).join('\n')).toContain(c.field);
  });

  it('accepts a valid multipool Backend and defaults its type to AI', async () => {
    const manifest = backend('valid', { ai: { multipool: { priorities: [{ contentPolicyFallback: 'large', contextWindowFallback: 'NextPool', pool: [member] }, { pool: [{ ...member, name: 'second', weight: 2 }] }, { name: 'large', pool: [{ ...member, name: 'third' }] }] } }, retry: { attempts: 3, perTryTimeout: '10s' } });
    const applied = await kubectl(['apply', '-f', '-'], stringify(manifest));
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    const got = await kubectl(['get', 'backends.switchyard.dev', 'valid', '-n', ns.name, '-o', 'jsonpath={.spec.type}']);
    expect(got.stdout).toBe('AI');
    expect(parseManifest(manifest).ok).toBe(true);
  });
});
