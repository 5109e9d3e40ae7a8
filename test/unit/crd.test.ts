import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { BACKEND_CRD_FILE, CHART_CRD_FILE, renderBackendCrd } from '../../src/api/crd-file.js';
import { backendCrd } from '../../src/api/crd.js';

type Node = { [key: string]: unknown };

function at(node: unknown, ...path: string[]): Node {
  let cur = node;
  for (const p of path) cur = (cur as Node)[p];
  return cur as Node;
}

describe('Backend CRD', () => {
  it('is the committed file: the CRD and the zod schema cannot drift apart (make crds regenerates it)', () => {
    expect(readFileSync(BACKEND_CRD_FILE, 'utf8')).toBe(renderBackendCrd());
    expect(readFileSync(CHART_CRD_FILE, 'utf8')).toBe(renderBackendCrd());
  });

  it('is structural: every property has a type and no JSON-Schema-only keywords remain', () => {
    const schema = at(parse(renderBackendCrd()), 'spec', 'versions').valueOf() as Node[];
    const root = at(schema[0], 'schema', 'openAPIV3Schema');
    const problems: string[] = [];
    const walk = (n: Node, path: string) => {
      if (!('type' in n)) problems.push(`${path}: no type`);
      for (const bad of ['$ref', '$defs', '$schema', 'anyOf', 'oneOf', 'allOf', 'const']) if (bad in n) problems.push(`${path}: ${bad}`);
      if (n.additionalProperties === false) problems.push(`${path}: additionalProperties false`);
      for (const [k, v] of Object.entries((n.properties as Record<string, Node>) ?? {})) walk(v, `${path}.${k}`);
      if (n.items) walk(n.items as Node, `${path}[]`);
    };
    walk(root, 'root');
    expect(problems).toEqual([]);
  });

  it('describes every field, so kubectl explain and docs/api.md say what each one does', () => {
    const versions = at(backendCrd(), 'spec', 'versions') as unknown as Node[];
    const root = at(versions[0], 'schema', 'openAPIV3Schema');
    const missing: string[] = [];
    let described = 0;
    const walk = (n: Node, path: string) => {
      for (const [k, v] of Object.entries((n.properties as Record<string, Node>) ?? {})) {
        // The API server refuses a description on metadata ("must not specify anything other than name and generateName").
        if (`${path}.${k}` === 'backend.metadata') expect(Object.keys(v)).toEqual(['type']);
        else if (typeof v.description === 'string' && v.description.length >= 10) described++;
        else missing.push(`${path}.${k}`);
        walk(v, `${path}.${k}`);
      }
      if (n.items) walk(n.items as Node, `${path}[]`);
    };
    walk(root, 'backend');
    expect(missing).toEqual([]);
    // The walk reached the whole schema (every provider under llm and multipool, status too).
    expect(described).toBeGreaterThanOrEqual(180);
  });

  it('carries a CEL twin of every cross-field rule of the zod schema', () => {
    const spec = at(backendCrd(), 'spec', 'versions') as unknown as Node[];
    const specSchema = at(spec[0], 'schema', 'openAPIV3Schema', 'properties', 'spec');
    const rules = (n: Node) => ((n['x-kubernetes-validations'] as { rule: string }[] | undefined) ?? []).map((r) => r.rule);
    expect(rules(specSchema)).toContain("self.type != 'AI' || has(self.ai)");
    const ai = at(specSchema, 'properties', 'ai');
    expect(rules(ai)).toEqual(['has(self.llm) != has(self.multipool)']);
    const member = at(ai, 'properties', 'multipool', 'properties', 'priorities', 'items', 'properties', 'pool', 'items');
    expect(rules(at(member, 'properties', 'provider'))[0]).toMatch(/filter\(x, x\)\.size\(\) == 1/);
    expect(rules(at(member, 'properties', 'provider', 'properties', 'openai', 'properties', 'authToken'))).toHaveLength(4);
    expect(at(specSchema, 'properties', 'type').default).toBe('AI');
  });
});
