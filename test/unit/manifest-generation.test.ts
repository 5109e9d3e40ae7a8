import { describe, expect, it } from 'vitest';
import type { ManifestFile, Snapshot } from '../../src/providers/manifest-files.js';
import { ManifestStore, parseManifestFile } from '../../src/providers/manifest-files.js';

/**
 * An object's generation moves when its spec changes, as an API server's does, and only then:
 * the spec is compared as validated (ObjectDocument.contentHigh), so what an API server would
 * drop or not store as written (key order, comments, flow or block style, Gateway API fields
 * Switchyard does not know, which it prunes) is no spec change; metadata is not spec.
 */

const backend = (model: string, extra = ''): string => `apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata:
  name: chat
  namespace: ai
${extra}spec:
  type: AI
  ai:
    llm:
      provider:
        openai:
          model: ${model}
          authToken: {kind: SecretRef, secretRef: {name: key}}
`;
const reordered = (model: string): string => `# the same Backend, written another way
kind: Backend
spec:
  ai:
    llm:
      provider:
        openai:
          authToken:
            secretRef: {name: key}
            kind: SecretRef
          model: ${model}
  type: AI
metadata: {namespace: ai, name: chat}
apiVersion: switchyard.dev/v1alpha1
`;
const route = (extra = ''): string => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: chat, namespace: ai}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: switchyard.dev, kind: Backend, name: chat}]
${extra}`;

const file = (docs: readonly string[]): ManifestFile => ({ name: 'ai.yaml', documents: parseManifestFile('ai.yaml', docs.join('---\n')) });
const generations = (s: Snapshot): Record<string, number | undefined> => ({
  backend: s.inputs.backends[0]?.metadata.generation,
  route: s.inputs.httpRoutes[0]?.metadata.generation,
});

describe('ManifestStore generations', () => {
  it('move with the spec as validated, not with how it is written or with metadata', () => {
    const store = new ManifestStore();
    expect(generations(store.build([file([backend('gpt-4o'), route()])]))).toEqual({ backend: 1, route: 1 });
    // Keys reordered, flow style, a comment: the same spec.
    expect(generations(store.build([file([reordered('gpt-4o'), route()])]))).toEqual({ backend: 1, route: 1 });
    // Metadata only.
    expect(generations(store.build([file([backend('gpt-4o', '  labels: {team: a}\n'), route()])]))).toEqual({ backend: 1, route: 1 });
    // A field Switchyard does not read on a Gateway API kind: pruned (and warned about), no spec change.
    const pruned = store.build([file([backend('gpt-4o'), route('    timeoutz: {request: 5s}\n')])]);
    expect(generations(pruned)).toEqual({ backend: 1, route: 1 });
    expect(pruned.problems.map((p) => p.field)).toEqual(['spec.rules[0].timeoutz']);
    // A spec change, then back: each is a new generation.
    expect(generations(store.build([file([backend('gpt-4.1'), route()])]))).toEqual({ backend: 2, route: 1 });
    expect(generations(store.build([file([backend('gpt-4o'), route('    timeouts: {request: 5s}\n')])]))).toEqual({ backend: 3, route: 2 });
  });

  it('moves for a change while the object was invalid, and not for one made and undone while it was', () => {
    const store = new ManifestStore();
    store.build([file([backend('gpt-4o')])]);
    const invalid = store.build([file([backend('gpt-4o').replace('type: AI', 'type: Nope')])]);
    expect(invalid.inputs.invalid.map((o) => [o.name, o.generation, o.servingLastGood])).toEqual([['chat', 2, true]]);
    // Served again as it was before: a spec the invalid version differed from, so a generation of its own.
    expect(generations(store.build([file([backend('gpt-4o')])])).backend).toBe(3);
    expect(generations(store.build([file([reordered('gpt-4o')])])).backend).toBe(3);
  });
});
