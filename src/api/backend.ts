import { z } from 'zod';
import { DurationString, parseDuration } from './duration.js';
import { HEADER_NAME_PATTERN, HOST_PATTERN } from './http-syntax.js';
import { ObjectMeta, ObjectName } from './meta.js';

export const BACKEND_GROUP = 'switchyard.dev';
export const BACKEND_API_VERSION = 'switchyard.dev/v1alpha1';

const Duration = DurationString;
const Port = z.number().int().min(1, 'a port is 1-65535').max(65535, 'a port is 1-65535');
const Host = z.string().min(1, 'give a hostname or IP address').max(253)
  .regex(HOST_PATTERN, 'give a hostname ("api.example.com") or an IP address, without scheme, port, path or spaces');
/** A header name Envoy and HTTP accept. */
const HeaderName = z.string().min(1).max(256).regex(HEADER_NAME_PATTERN, 'give an HTTP header name (RFC 9110 token: letters, digits and !#$%&\'*+-.^_`|~, no spaces or colons)');

export const AuthToken = z
  .strictObject({
    kind: z.enum(['SecretRef', 'Inline', 'Passthrough'], {
      message: 'authToken.kind is one of SecretRef, Inline, Passthrough',
    }),
    secretRef: z.strictObject({ name: ObjectName.describe('name of a Secret in the Backend namespace') }).optional(),
    inline: z.string().min(1).optional(),
  })
  .superRefine((t, ctx) => {
    if (t.kind === 'SecretRef' && !t.secretRef) {
      ctx.addIssue({ code: 'custom', path: ['secretRef'], message: 'kind SecretRef needs secretRef.name: the Secret (same namespace) that holds key "Authorization"' });
    }
    if (t.kind === 'Inline' && !t.inline) {
      ctx.addIssue({ code: 'custom', path: ['inline'], message: 'kind Inline needs inline: the token (prefer kind SecretRef)' });
    }
    if (t.kind !== 'SecretRef' && t.secretRef) {
      ctx.addIssue({ code: 'custom', path: ['secretRef'], message: `secretRef is only read with kind SecretRef (kind is ${t.kind}); remove it or set kind: SecretRef` });
    }
    if (t.kind !== 'Inline' && t.inline) {
      ctx.addIssue({ code: 'custom', path: ['inline'], message: `inline is only read with kind Inline (kind is ${t.kind}); remove it` });
    }
  });
export type AuthToken = z.infer<typeof AuthToken>;

const OpenAI = z.strictObject({ model: z.string().min(1).optional(), authToken: AuthToken });
const AzureOpenAI = z.strictObject({
  endpoint: Host.describe('e.g. my-resource.openai.azure.com'),
  deploymentName: z.string().min(1, 'deploymentName is the Azure deployment to call'),
  apiVersion: z.string().min(1, 'apiVersion is the Azure OpenAI API version, e.g. "2024-10-21"'),
  authToken: AuthToken,
});
const Anthropic = z.strictObject({
  model: z.string().min(1).optional(),
  apiVersion: z.string().min(1).optional(),
  authToken: AuthToken,
});
const Gemini = z.strictObject({
  model: z.string().min(1, 'model is required for gemini, e.g. "gemini-2.0-flash"'),
  apiVersion: z.string().min(1).optional(),
  authToken: AuthToken,
});
const VertexAI = z.strictObject({
  model: z.string().min(1, 'model is required for vertexai'),
  projectId: z.string().min(1, 'projectId is the Google Cloud project'),
  region: z.string().min(1, 'region is the Vertex AI location, e.g. "us-central1"'),
  publisher: z.string().min(1).optional(),
  authToken: AuthToken,
});
const OpenAICompatible = z.strictObject({
  host: Host,
  port: Port.optional(),
  path: z.string().startsWith('/', 'path must start with "/"').optional(),
  tls: z.boolean().optional(),
  model: z.string().min(1).optional(),
  authHeader: HeaderName.optional(),
  authToken: AuthToken.optional(),
});

export const PROVIDERS = ['openai', 'azureopenai', 'anthropic', 'gemini', 'vertexai', 'openaiCompatible'] as const;
export type ProviderName = (typeof PROVIDERS)[number];

export const Provider = z
  .strictObject({
    openai: OpenAI.optional(),
    azureopenai: AzureOpenAI.optional(),
    anthropic: Anthropic.optional(),
    gemini: Gemini.optional(),
    vertexai: VertexAI.optional(),
    openaiCompatible: OpenAICompatible.optional(),
  })
  .superRefine((p, ctx) => {
    const set = PROVIDERS.filter((k) => p[k] !== undefined);
    if (set.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message:
          set.length === 0
            ? `set exactly one provider: ${PROVIDERS.join(', ')}`
            : `set exactly one provider, found ${set.join(' and ')}; split them into separate pool members`,
      });
    }
  });
export type Provider = z.infer<typeof Provider>;

export const HostOverride = z.strictObject({
  host: Host,
  port: Port,
  /** Speak TLS to the override address; default: port 443 means TLS. SNI and Host stay the provider's hostname. */
  tls: z.boolean().optional(),
});

export const PoolMember = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'member names are lowercase DNS labels, e.g. "openai-east"')
    .max(63)
    .optional(),
  weight: z.number().int().min(1, 'weight is at least 1').max(128, 'weight is at most 128').optional(),
  provider: Provider,
  hostOverride: HostOverride.optional(),
});
export type PoolMember = z.infer<typeof PoolMember>;

export const Priority = z.strictObject({
  pool: z.array(PoolMember).min(1, 'a priority needs at least one pool member: add one or remove the empty priority').max(64, 'at most 64 members per pool'),
});

export const AIBackend = z
  .strictObject({
    llm: PoolMember.omit({ name: true, weight: true }).optional(),
    multipool: z
      .strictObject({
        priorities: z.array(Priority).min(1, 'multipool needs at least one priority').max(16, 'at most 16 priorities'),
      })
      .optional(),
  })
  .superRefine((ai, ctx) => {
    if ((ai.llm === undefined) === (ai.multipool === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: ai.llm ? 'set exactly one of llm or multipool, not both' : 'set exactly one of llm (one provider) or multipool (priorities of pools)',
      });
    }
  });

export const StaticHost = z.strictObject({ host: Host, port: Port, weight: z.number().int().min(1).max(128).optional() });
export const StaticBackend = z.strictObject({
  priorities: z
    .array(z.strictObject({ hosts: z.array(StaticHost).min(1, 'a priority needs at least one host').max(64, 'at most 64 hosts per priority') }))
    .min(1, 'static needs at least one priority')
    .max(16, 'at most 16 priorities'),
  tls: z.strictObject({ sni: Host.optional(), insecureSkipVerify: z.boolean().optional() }).optional(),
});

export const RETRY_ON = [
  '5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'envoy-ratelimited', 'retriable-4xx',
  'refused-stream', 'retriable-status-codes', 'retriable-headers', 'http3-post-connect-failure',
] as const;

export const RetrySpec = z.strictObject({
  attempts: z.number().int().min(0, 'attempts (retries after the first try) cannot be negative').max(10, 'at most 10 retries').optional(),
  retryOn: z.array(z.enum(RETRY_ON, { message: `retryOn values are Envoy retry conditions: ${RETRY_ON.join(', ')}` })).max(RETRY_ON.length).optional(),
  statusCodes: z.array(z.number().int().min(400, 'retriable status codes are 400-599').max(599, 'retriable status codes are 400-599')).max(50).optional(),
  perTryTimeout: Duration.optional(),
  backoff: z
    .strictObject({ baseInterval: Duration, maxInterval: Duration.optional() })
    .superRefine((b, ctx) => {
      // Envoy refuses both, and a refused route configuration freezes every route of its listener.
      const base = parseDuration(b.baseInterval);
      if (base === 0) ctx.addIssue({ code: 'custom', path: ['baseInterval'], message: 'baseInterval must be more than 0, e.g. "25ms"' });
      const max = b.maxInterval === undefined ? undefined : parseDuration(b.maxInterval);
      if (base !== undefined && max !== undefined && max < base) {
        ctx.addIssue({ code: 'custom', path: ['maxInterval'], message: `maxInterval (${b.maxInterval}) must be at least baseInterval (${b.baseInterval})` });
      }
    })
    .optional(),
  rateLimitedBackoff: z
    .strictObject({
      resetHeaders: z.array(z.strictObject({ name: HeaderName, format: z.enum(['Seconds', 'UnixTimestamp']) })).min(1).max(8),
      maxInterval: Duration.optional(),
    })
    .optional(),
  attemptsPerPriority: z.number().int().min(1, 'attemptsPerPriority is at least 1').optional(),
});
export type RetrySpec = z.infer<typeof RetrySpec>;

export const OutlierDetectionSpec = z.strictObject({
  enabled: z.boolean().optional(),
  consecutive5xx: z.number().int().min(1).optional(),
  consecutiveGatewayFailure: z.number().int().min(1).optional(),
  consecutiveLocalOriginFailure: z.number().int().min(1).optional(),
  splitExternalLocalOriginErrors: z.boolean().optional(),
  interval: Duration.optional(),
  baseEjectionTime: Duration.optional(),
  maxEjectionTime: Duration.optional(),
  maxEjectionPercent: z.number().int().min(0).max(100).optional(),
});
export type OutlierDetectionSpec = z.infer<typeof OutlierDetectionSpec>;

export const BackendSpec = z
  .strictObject({
    type: z.enum(['AI', 'Static'], { message: 'type is AI or Static' }).default('AI'),
    ai: AIBackend.optional(),
    static: StaticBackend.optional(),
    retry: RetrySpec.optional(),
    outlierDetection: OutlierDetectionSpec.optional(),
  })
  .superRefine((s, ctx) => {
    if (s.type === 'AI' && !s.ai) ctx.addIssue({ code: 'custom', path: ['ai'], message: 'type AI needs spec.ai' });
    if (s.type === 'Static' && !s.static) ctx.addIssue({ code: 'custom', path: ['static'], message: 'type Static needs spec.static' });
    if (s.type === 'AI' && s.static) ctx.addIssue({ code: 'custom', path: ['static'], message: 'spec.static is only read with type Static; remove it' });
    if (s.type === 'Static' && s.ai) ctx.addIssue({ code: 'custom', path: ['ai'], message: 'spec.ai is only read with type AI; remove it' });
  });
export type BackendSpec = z.infer<typeof BackendSpec>;

export const Backend = z.object({
  apiVersion: z.literal(BACKEND_API_VERSION, { message: `apiVersion is ${BACKEND_API_VERSION}` }),
  kind: z.literal('Backend'),
  metadata: ObjectMeta,
  spec: BackendSpec,
});
export type Backend = z.infer<typeof Backend>;
