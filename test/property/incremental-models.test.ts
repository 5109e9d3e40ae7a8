/**
 * Route edits among many routes on one virtual host whose Backends list overlapping model names:
 * the /v1/models answer (the owner of a name is the first route, in precedence order, to serve
 * it) and every status, translated incrementally, equal a translation from scratch after each of
 * a seeded sequence of edits that move routes in precedence and point them at other Backends.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ManifestStore, parseManifestFile } from '../../src/providers/manifest-files.js';
import { translate, type TranslationState } from '../../src/translate/index.js';
import { generateManifests } from '../../bench/translate.js';

type Doc = { kind: string; metadata: { name: string }; spec: Record<string, unknown> };
const BACKENDS = 60;

describe('incremental translation of a host\'s /v1/models answer', () => {
  it('gives, after every route edit, what a translation from scratch gives', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ route: fc.nat(BACKENDS - 1), target: fc.nat(BACKENDS - 1), path: fc.nat(12) }), { minLength: 1, maxLength: 12 }),
        (edits) => {
          const docs = generateManifests(BACKENDS) as Doc[];
          for (const d of docs) {
            const m = /^chat-(\d+)$/.exec(d.metadata.name);
            if (d.kind === 'Backend' && m) (d.spec['ai'] as Record<string, unknown>)['models'] = { [`alias-${Number(m[1]) % 5}`]: 'x', shared: 'y' };
          }
          const store = new ManifestStore();
          let state: TranslationState | undefined;
          for (let e = 0; e <= edits.length; e++) {
            const edit = edits[e - 1];
            if (edit !== undefined) {
              const at = docs.findIndex((d) => d.kind === 'HTTPRoute' && d.metadata.name === `chat-${edit.route}`);
              const r = docs[at] as Doc;
              // Longer than the generated routes' paths (/chat-N/v1): an edited route goes first
              // in precedence, and names the owner of its models; '/' goes last.
              const path = edit.path === 0 ? '/' : `/p${edit.path % 4}/${'x'.repeat(8 + (edit.path % 3))}`;
              docs[at] = { ...r, spec: { ...r.spec, rules: [{ matches: [{ path: { type: 'PathPrefix', value: path } }], backendRefs: [{ group: 'switchyard.dev', kind: 'Backend', name: `chat-${edit.target}` }] }] } };
            }
            const { inputs } = store.build([{ name: 'all.yaml', documents: parseManifestFile('all.yaml', docs.map((d) => stringify(d)).join('---\n')) }]);
            const incremental = translate(inputs, state);
            const scratch = translate(inputs);
            state = incremental.state;
            expect(JSON.stringify(incremental.ir.listeners)).toBe(JSON.stringify(scratch.ir.listeners));
            expect(JSON.stringify(incremental.statuses)).toBe(JSON.stringify(scratch.statuses));
          }
        },
      ),
      { numRuns: 8 },
    );
  });
});
