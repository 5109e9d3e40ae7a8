import { BACKEND_API_VERSION } from './backend.js';
import { backendCrd } from './crd.js';
import { DURATION_PATTERN } from './duration.js';

/**
 * docs/api.md, the Backend reference, rendered from the CRD's OpenAPI schema: the same
 * descriptions `kubectl explain` prints, so the page, the API server and file mode cannot
 * disagree. test/unit/api-docs.test.ts fails when the committed file drifts.
 */
export const API_DOCS_FILE = 'docs/api.md';

interface Node {
  type?: string;
  description?: string;
  properties?: Record<string, Node>;
  items?: Node;
  required?: string[];
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  pattern?: string;
  'x-kubernetes-validations'?: { rule: string; message: string }[];
}

function openApiRoot(): Node {
  const crd = backendCrd() as { spec: { versions: { schema: { openAPIV3Schema: Node } }[] } };
  const version = crd.spec.versions[0];
  if (!version) throw new Error('the Backend CRD has no version');
  return version.schema.openAPIV3Schema;
}

/** `spec.ai.multipool.priorities[0].pool` → `spec-ai-multipool-priorities-pool`. */
export function anchorOf(path: readonly (string | number)[]): string {
  return path.filter((p) => typeof p === 'string').join('-').toLowerCase();
}

/** Object sections of the page, by anchor: each object-typed field (or array of objects) has one. */
function sections(root: Node): Map<string, { path: string; node: Node }> {
  const out = new Map<string, { path: string; node: Node }>();
  const visit = (node: Node, segments: string[], label: string) => {
    const target = node.type === 'array' && node.items ? node.items : node;
    if (target.type !== 'object' || !target.properties) return;
    out.set(anchorOf(segments), { path: label, node: target });
    for (const [name, child] of Object.entries(target.properties)) {
      const childIsArray = child.type === 'array';
      visit(child, [...segments, name], `${label}.${name}${childIsArray ? '[]' : ''}`);
    }
  };
  const spec = root.properties?.spec;
  const status = root.properties?.status;
  if (spec) visit(spec, ['spec'], 'spec');
  if (status) visit(status, ['status'], 'status');
  return out;
}

let sectionAnchors: Set<string> | undefined;

/**
 * The place in docs/api.md that documents the object at `path` (a zod issue path under a Backend),
 * or its nearest documented parent.
 */
export function backendReferenceLink(path: readonly (string | number)[]): string {
  sectionAnchors ??= new Set(sections(openApiRoot()).keys());
  const names = path.filter((p): p is string => typeof p === 'string');
  for (let n = names.length; n > 0; n--) {
    const anchor = anchorOf(names.slice(0, n));
    if (sectionAnchors.has(anchor)) return `${API_DOCS_FILE}#${anchor}`;
  }
  return API_DOCS_FILE;
}

function typeOf(node: Node): string {
  if (node.type === 'array') return `array of ${node.items ? typeOf(node.items) : 'values'}`;
  if (node.type === 'string' && node.pattern === DURATION_PATTERN) return 'duration';
  return node.type ?? 'value';
}

function constraints(node: Node): string[] {
  const out: string[] = [];
  const values = node.enum ?? (node.type === 'array' ? node.items?.enum : undefined);
  if (values) out.push(`one of ${values.map((v) => `\`${String(v)}\``).join(', ')}`);
  if (node.minimum !== undefined && node.maximum !== undefined) out.push(`${node.minimum}-${node.maximum}`);
  else if (node.minimum !== undefined) out.push(`at least ${node.minimum}`);
  else if (node.maximum !== undefined) out.push(`at most ${node.maximum}`);
  if (node.minItems !== undefined || node.maxItems !== undefined) out.push(`${node.minItems ?? 0}-${node.maxItems ?? '∞'} items`);
  if (node.maxLength !== undefined) out.push(`up to ${node.maxLength} characters`);
  if (node.default !== undefined) out.push(`default \`${String(node.default)}\``);
  return out;
}

/** Descriptions are plain text: "<key>" must not become an HTML tag. */
function prose(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function cell(text: string): string {
  return prose(text).replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function renderSections(root: Node): string[] {
  const lines: string[] = [];
  const firstByShape = new Map<string, string>();
  const all = sections(root);
  for (const [anchor, { path, node }] of all) {
    lines.push(`<a id="${anchor}"></a>`, '', `### \`${path}\``, '');
    const shape = JSON.stringify(node);
    const first = firstByShape.get(shape);
    if (node.description) lines.push(prose(node.description), '');
    if (first !== undefined) {
      lines.push(`Same fields as [\`${all.get(first)?.path ?? first}\`](#${first}).`, '');
      continue;
    }
    firstByShape.set(shape, anchor);
    lines.push('| Field | Type | Description |', '|---|---|---|');
    const required = new Set(node.required ?? []);
    for (const [name, child] of Object.entries(node.properties ?? {})) {
      const target = child.type === 'array' && child.items ? child.items : child;
      const childAnchor = `${anchor}-${name.toLowerCase()}`;
      const link = target.type === 'object' && target.properties ? ` ([fields](#${childAnchor}))` : '';
      const notes = [required.has(name) ? 'required' : 'optional', ...constraints(child)].join('; ');
      lines.push(`| \`${name}\` | ${typeOf(child)}${link} | ${cell(child.description ?? '')} <br>*${cell(notes)}* |`);
    }
    const rules = node['x-kubernetes-validations'] ?? [];
    if (rules.length > 0) {
      lines.push('', 'Rules checked by the API server and by file mode:', '');
      for (const r of rules) lines.push(`- ${prose(r.message)}`);
    }
    lines.push('');
  }
  return lines;
}

export function renderApiDocs(): string {
  const root = openApiRoot();
  return [
    '<!-- Generated by `make docs` (scripts/gen-api-docs.ts) from src/api/backend.ts and src/api/crd.ts. Do not edit. -->',
    '',
    '# Backend API reference',
    '',
    `\`Backend\` (\`${BACKEND_API_VERSION}\`) is a failover target for HTTPRoute \`backendRefs\` (\`group: switchyard.dev, kind: Backend\`):`,
    'AI model providers in priority pools, or plain HTTP hosts. Each field below is also what',
    '`kubectl explain backend.<field>` prints, and what `switchyard serve` checks in file mode.',
    'Durations are written like Gateway API durations: `500ms`, `2s`, `1m30s` (units h, m, s, ms, up to four parts).',
    '',
    '```yaml',
    `apiVersion: ${BACKEND_API_VERSION}`,
    'kind: Backend',
    'metadata: {name: chat, namespace: ai}',
    'spec:',
    '  type: AI',
    '  ai:',
    '    multipool:',
    '      priorities:',
    '      - pool:',
    '        - provider: {openai: {model: gpt-4o, authToken: {kind: SecretRef, secretRef: {name: openai-key}}}}',
    '      - pool:',
    '        - name: azure-east',
    '          provider:',
    '            azureopenai: {endpoint: my.openai.azure.com, deploymentName: gpt-4o-mini, apiVersion: "2024-10-21",',
    '                          authToken: {kind: SecretRef, secretRef: {name: azure-key}}}',
    '  retry: {perTryTimeout: 30s}',
    '```',
    '',
    '## Fields',
    '',
    ...renderSections(root),
  ].join('\n');
}
