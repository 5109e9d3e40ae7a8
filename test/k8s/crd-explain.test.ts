import { describe, expect, it } from 'vitest';
import { backendCrd } from '../../src/api/crd.js';
import { kubectl } from '../support/kube.js';
import { waitFor } from '../support/wait.js';

/**
 * `kubectl explain` against the real API server prints the descriptions written in the zod
 * schema (src/api/backend.ts) and carried into the CRD: what a user reads before writing a field.
 */

type Node = { description?: string; properties?: Record<string, Node>; items?: Node };

/** The CRD's schema node at a `kubectl explain` path (arrays are stepped through, as kubectl does). */
function schemaAt(path: string): Node {
  const crd = backendCrd() as { spec: { versions: { schema: { openAPIV3Schema: Node } }[] } };
  let node = crd.spec.versions[0]?.schema.openAPIV3Schema;
  for (const part of path.split('.')) {
    if (node?.items) node = node.items;
    node = node?.properties?.[part];
  }
  if (!node?.description) throw new Error(`no description at ${path}`);
  return node;
}

const words = (text: string): string => text.replace(/\s+/g, ' ').trim();

async function explain(path: string): Promise<string> {
  let out = '';
  // The API server publishes a CRD's OpenAPI a moment after the CRD is established.
  await waitFor(async () => {
    // Group-qualified: another CRD of kind Backend (Envoy Gateway's, kgateway's, a test's) may exist.
    const r = await kubectl(['explain', `backends.${path}`, '--api-version=switchyard.dev/v1alpha1']);
    out = r.stdout;
    return r.code === 0 && out.includes('DESCRIPTION:');
  }, { what: `kubectl explain backend.${path} to answer`, timeoutMs: 20_000 });
  return words(out);
}

describe('kubectl explain on the Backend CRD', () => {
  it('describes spec.retry and every field under it', async () => {
    const out = await explain('spec.retry');
    const retry = schemaAt('spec.retry');
    expect(out).toContain(words(retry.description ?? ''));
    const fields = Object.entries(retry.properties ?? {});
    expect(fields.map(([name]) => name)).toEqual(expect.arrayContaining(['attempts', 'attemptsPerPriority', 'perTryTimeout', 'backoff']));
    for (const [name, field] of fields) expect(out, name).toContain(words(field.description ?? ''));
    expect(out).not.toContain('<no description>');
    expect(out).toMatch(/previous_priorities update_frequency/);
  });

  it('describes a field nested in a multipool member\'s provider', async () => {
    for (const path of ['spec.ai.multipool.priorities.pool.provider.azureopenai.deploymentName', 'spec.ai.llm.provider.openai.authToken.secretRef.name', 'spec.outlierDetection.maxEjectionPercent']) {
      const out = await explain(path);
      expect(out, path).toContain(words(schemaAt(path).description ?? ''));
      expect(out, path).not.toContain('<no description>');
    }
    expect(await explain('spec.ai.llm.provider.openai.authToken.secretRef.name')).toMatch(/key "Authorization"/);
  });
});
