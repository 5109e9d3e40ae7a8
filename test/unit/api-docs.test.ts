import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { API_DOCS_FILE, backendReferenceLink, renderApiDocs } from '../../src/api/api-docs.js';
import { parseManifest, formatProblem } from '../../src/api/manifest.js';

const BACKEND = `
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: chat, namespace: ai}
spec:
  ai:
    multipool:
      priorities:
      - pool:
        - provider: {openai: {modle: gpt-4o, authToken: {kind: Passthrough}}}
  retry: {attempts: 2, perTryTimeOut: 5s}
`;

function anchors(markdown: string): Set<string> {
  return new Set([...markdown.matchAll(/<a id="([^"]+)"><\/a>/g)].map((m) => m[1] ?? ''));
}

describe('docs/api.md, the Backend reference', () => {
  it('is the committed file: the page and the schema cannot drift apart (make docs regenerates it)', () => {
    expect(readFileSync(API_DOCS_FILE, 'utf8')).toBe(renderApiDocs());
  });

  it('documents every field with the schema description, defaults and limits', () => {
    const page = renderApiDocs();
    expect(page).toContain('<a id="spec-retry"></a>');
    expect(page).toMatch(/\| `attemptsPerPriority` \| integer \| Attempts on a priority before the next one is tried \(Envoy previous_priorities update_frequency\)/);
    expect(page).toMatch(/\| `perTryTimeout` \| duration \|/);
    expect(page).toMatch(/\| `priorities` \| array of object \(\[fields\]\(#spec-ai-multipool-priorities\)\) \|.*required; 1-16 items/);
    // Descriptions are text: a "<key>" in one must not turn into an HTML tag.
    expect(page).not.toMatch(/Bearer <key>/);
  });

  it('is what an unknown-field error points at, to the section of the object holding the typo', () => {
    const result = parseManifest(parse(BACKEND));
    expect(result.ok).toBe(false);
    const messages = result.ok === false ? result.problems.map(formatProblem) : [];
    expect(messages).toEqual(expect.arrayContaining([
      expect.stringContaining('spec.ai.multipool.priorities[0].pool[0].provider.openai: unknown field "modle": check the spelling against the Backend reference, docs/api.md#spec-ai-multipool-priorities-pool-provider-openai'),
      expect.stringContaining('spec.retry: unknown field "perTryTimeOut": check the spelling against the Backend reference, docs/api.md#spec-retry'),
    ]));
    const page = anchors(readFileSync(API_DOCS_FILE, 'utf8'));
    for (const m of messages) {
      const anchor = /docs\/api\.md#([a-z0-9-]+)/.exec(m)?.[1];
      expect(anchor, m).toBeDefined();
      expect(page.has(anchor ?? ''), `${anchor} in ${API_DOCS_FILE}`).toBe(true);
    }
  });

  it('links a path below the documented objects to its nearest documented parent', () => {
    expect(backendReferenceLink(['spec', 'retry', 'backoff'])).toBe('docs/api.md#spec-retry-backoff');
    expect(backendReferenceLink(['spec', 'retry', 'statusCodes', 0])).toBe('docs/api.md#spec-retry');
    expect(backendReferenceLink(['spec', 'static', 'priorities', 1, 'hosts', 0])).toBe('docs/api.md#spec-static-priorities-hosts');
  });
});
