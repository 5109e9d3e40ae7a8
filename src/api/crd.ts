import { z } from 'zod';
import { BACKEND_GROUP, BackendSpec, PROVIDERS } from './backend.js';

/**
 * The Backend CustomResourceDefinition, generated from the zod schema that file mode validates
 * with, so the API server and `switchyard serve` accept exactly the same objects. zod's
 * cross-field rules (superRefine) cannot be exported, so each has a CEL twin below.
 */
type Schema = { [key: string]: unknown };

interface CelRule {
  rule: string;
  message: string;
}

const PROVIDER_ONE_OF: CelRule = {
  rule: `[${PROVIDERS.map((p) => `has(self.${p})`).join(', ')}].filter(x, x).size() == 1`,
  message: `set exactly one provider: ${PROVIDERS.join(', ')}`,
};

/** CEL rules by the name of the property whose schema they guard. */
const RULES_BY_PROPERTY: Record<string, CelRule[]> = {
  ai: [{ rule: 'has(self.llm) != has(self.multipool)', message: 'set exactly one of llm (one provider) or multipool (priorities of pools)' }],
  provider: [PROVIDER_ONE_OF],
  // A fallback naming an earlier pool is left to the controller (Accepted False): CEL has no list
  // index, and comparing whole pools for one would cost more than the API server's budget allows.
  multipool: [
    { rule: 'self.priorities.all(p, !has(p.name) || self.priorities.filter(q, has(q.name) && q.name == p.name).size() == 1)', message: 'pool names (priorities[].name) must be unique in the Backend: give every pool a unique name' },
    {
      rule: "self.priorities.all(p, [has(p.contextWindowFallback) ? p.contextWindowFallback : 'NextPool', has(p.contentPolicyFallback) ? p.contentPolicyFallback : 'NextPool'].all(f, f == 'NextPool' || self.priorities.exists(q, has(q.name) && q.name == f)))",
      message: 'contextWindowFallback and contentPolicyFallback are NextPool or the name of a later pool (priorities[].name): name that pool or use NextPool',
    },
  ],
  // Kubernetes schemas have no propertyNames: the alias length is checked here.
  models: [{ rule: 'self.all(alias, size(alias) >= 1 && size(alias) <= 256)', message: 'a model alias is 1-256 characters' }],
  vertexai: [{ rule: 'has(self.authToken) != has(self.serviceAccountKey)', message: 'vertexai needs exactly one of authToken (an access token) or serviceAccountKey (a Secret with a service-account JSON key, recommended)' }],
  backoff: [
    { rule: "duration(self.baseInterval) > duration('0s')", message: 'baseInterval must be more than 0, e.g. "25ms"' },
    { rule: '!has(self.maxInterval) || duration(self.maxInterval) >= duration(self.baseInterval)', message: 'maxInterval must be at least baseInterval' },
  ],
  authToken: [
    { rule: "self.kind != 'SecretRef' || has(self.secretRef)", message: 'kind SecretRef needs secretRef.name: the Secret (same namespace) that holds key "Authorization"' },
    { rule: "self.kind != 'Inline' || has(self.inline)", message: 'kind Inline needs inline: the token (prefer kind SecretRef)' },
    { rule: "self.kind == 'SecretRef' || !has(self.secretRef)", message: 'secretRef is only read with kind SecretRef; remove it or set kind: SecretRef' },
    { rule: "self.kind == 'Inline' || !has(self.inline)", message: 'inline is only read with kind Inline; remove it' },
  ],
};

const SPEC_RULES: CelRule[] = [
  { rule: "self.type != 'AI' || has(self.ai)", message: 'type AI needs spec.ai' },
  { rule: "self.type != 'Static' || has(self.static)", message: 'type Static needs spec.static' },
  { rule: "self.type == 'AI' || !has(self.ai)", message: 'spec.ai is only read with type AI; remove it' },
  { rule: "self.type == 'Static' || !has(self.static)", message: 'spec.static is only read with type Static; remove it' },
];

const SAFE_INTEGER = Number.MAX_SAFE_INTEGER;
const KNOWN_FORMATS = new Set(['int32', 'int64', 'date-time', 'hostname', 'ipv4', 'ipv6', 'uri', 'uuid']);

/** JSON Schema (draft 2020-12, from zod) → Kubernetes structural OpenAPI v3 schema. */
function structural(node: unknown, property?: string): Schema {
  if (typeof node !== 'object' || node === null) throw new Error('unexpected schema node');
  const src = node as Schema;
  const out: Schema = {};
  for (const [key, value] of Object.entries(src)) {
    switch (key) {
      case '$schema':
      case 'additionalProperties':
        // Unknown fields are refused by the API server's strict field validation instead.
        if (key === 'additionalProperties' && typeof value === 'object') out.additionalProperties = structural(value);
        break;
      case 'properties':
        out.properties = Object.fromEntries(Object.entries(value as Schema).map(([k, v]) => [k, structural(v, k)]));
        break;
      case 'items':
        out.items = structural(value);
        break;
      case 'propertyNames':
        break;
      case 'minimum':
        if (value !== -SAFE_INTEGER) out.minimum = value;
        break;
      case 'maximum':
        if (value !== SAFE_INTEGER) out.maximum = value;
        break;
      case 'format':
        // zod names its string checks as formats ("starts_with"); the pattern beside it is what validates.
        if (KNOWN_FORMATS.has(String(value))) out.format = value;
        break;
      default:
        out[key] = value;
    }
  }
  const rules = property ? RULES_BY_PROPERTY[property] : undefined;
  if (rules) out['x-kubernetes-validations'] = rules;
  return out;
}

const CONDITIONS: Schema = {
  type: 'array',
  description: 'Accepted (the spec can be served), ResolvedRefs (every referenced Secret is usable) and Programmed (connected Envoys ACKed this generation), as Gateway API conditions; Degraded (a member has been failing or getting no traffic over the last minute, from the Envoys\' load reports).',
  maxItems: 8,
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
  items: {
    type: 'object',
    required: ['type', 'status', 'reason', 'message', 'lastTransitionTime'],
    properties: {
      type: { type: 'string', maxLength: 316, description: 'Accepted, ResolvedRefs or Programmed.' },
      status: { type: 'string', enum: ['True', 'False', 'Unknown'], description: 'True, False or Unknown.' },
      reason: { type: 'string', maxLength: 1024, description: 'Why, in one CamelCase word, e.g. SecretNotFound.' },
      message: { type: 'string', maxLength: 32768, description: 'Why, for a person: the field and the fix.' },
      observedGeneration: { type: 'integer', format: 'int64', minimum: 0, description: 'The metadata.generation this condition describes.' },
      lastTransitionTime: { type: 'string', format: 'date-time', description: 'When status last changed.' },
    },
  },
};

const STATUS: Schema = {
  type: 'object',
  description: 'What Switchyard made of the spec, written by the controller.',
  properties: {
    observedGeneration: { type: 'integer', format: 'int64', description: 'The metadata.generation this status describes.' },
    conditions: CONDITIONS,
    servedPriorities: { type: 'integer', description: 'Envoy priority levels in use: pools with at least one usable member.' },
    usableMembers: { type: 'integer', description: 'Pool members that are served.' },
    totalMembers: { type: 'integer', description: 'Pool members in the spec.' },
    priorities: {
      type: 'array',
      description: 'Per spec priority: which members are served and why the others are not.',
      items: {
        type: 'object',
        required: ['priority', 'members'],
        properties: {
          priority: { type: 'integer', description: 'Index in the spec\'s priorities.' },
          envoyPriority: { type: 'integer', description: 'Envoy priority level it is served at; absent when none of its members is usable (later priorities move up).' },
          members: {
            type: 'array',
            description: 'One entry per pool member.',
            items: {
              type: 'object',
              required: ['name', 'usable'],
              properties: {
                name: { type: 'string', description: 'Member name (spec name, else "p<priority>-<index>-<provider>").' },
                provider: { type: 'string', description: 'Provider kind, e.g. openai; "static" for static hosts.' },
                usable: { type: 'boolean', description: 'Whether Envoy sends requests to it.' },
                reason: { type: 'string', description: 'Why it is not usable, e.g. SecretNotFound.' },
                message: { type: 'string', description: 'What is wrong and how to fix it.' },
                requests: { type: 'integer', description: 'Attempts the Envoys sent it in the last minute (load reports), rounded to two significant digits above 100.' },
                errors: { type: 'integer', description: 'Of those, attempts that failed: 5xx answers, failed or reset connections.' },
              },
            },
          },
        },
      },
    },
  },
};

function conditionColumn(type: string): Schema {
  return { name: type, type: 'string', jsonPath: `.status.conditions[?(@.type=="${type}")].status` };
}

export function backendCrd(): Schema {
  const spec = structural(z.toJSONSchema(BackendSpec, { io: 'input', unrepresentable: 'throw' }));
  spec['x-kubernetes-validations'] = SPEC_RULES;
  spec.description = 'A failover target: an AI provider (llm) or priority pools of providers (multipool), or plain hosts (static).';
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `backends.${BACKEND_GROUP}`, labels: { 'app.kubernetes.io/part-of': 'switchyard' } },
    spec: {
      group: BACKEND_GROUP,
      scope: 'Namespaced',
      names: { kind: 'Backend', listKind: 'BackendList', plural: 'backends', singular: 'backend', shortNames: ['sybe'], categories: ['switchyard'] },
      versions: [
        {
          name: 'v1alpha1',
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: 'Type', type: 'string', jsonPath: '.spec.type' },
            conditionColumn('Accepted'),
            conditionColumn('ResolvedRefs'),
            conditionColumn('Programmed'),
            { name: 'Priorities', type: 'integer', jsonPath: '.status.servedPriorities' },
            { name: 'Usable', type: 'integer', jsonPath: '.status.usableMembers' },
            conditionColumn('Degraded'),
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              type: 'object',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string', description: 'The API version of this object: switchyard.dev/v1alpha1.' },
                kind: { type: 'string', description: 'The kind of this object: Backend.' },
                // The API server refuses anything but `type` here, a description included.
                metadata: { type: 'object' },
                spec,
                status: STATUS,
              },
            },
          },
        },
      ],
    },
  };
}
