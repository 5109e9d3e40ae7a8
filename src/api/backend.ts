import { z } from 'zod';
import { DRILL_KEY } from './drill-key.js';
import { parseDuration } from './duration.js';
import { HEADER_NAME_PATTERN, HOST_PATTERN } from './http-syntax.js';
import { DurationString, ObjectMeta, ObjectName } from './meta.js';
import { modelAliasesOf } from './models.js';

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
    }).describe('Where the key comes from. SecretRef: a Secret in the Backend\'s namespace (recommended). Inline: the key in this object (visible to anyone who can read the Backend; status warns). Passthrough: the client\'s own auth header is forwarded unchanged.'),
    secretRef: z.strictObject({
      name: ObjectName.describe('Name of a Secret in the Backend\'s namespace. Its key "Authorization" holds the API key, bare ("sk-...") or as "Bearer sk-...". A missing Secret or key takes only this pool member out of service (status says which); the rest keeps serving. Rotations reach Envoy within a second.'),
    }).optional().describe('The Secret that holds the key; required with kind SecretRef, refused otherwise.'),
    inline: z.string().min(1).optional().describe('The key itself; required with kind Inline, refused otherwise. Prefer kind SecretRef: an inline key is readable by anyone who can read the Backend.'),
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

/** The credential field of a provider whose key travels in `header`. */
function authTokenOf(header: string): typeof AuthToken {
  return AuthToken.describe(`The provider's API key, sent ${header} on every attempt that goes to this member (the other providers' auth headers are removed). Keys reach the AI extension over SDS and never appear in Envoy's configuration.`);
}
const MODEL_OVERRIDE = 'Model name written into the request body\'s "model" field on every attempt to this member, e.g. "gpt-4o"; unset keeps the client\'s own model.';

/** Secret keys read by the vendor-credential members (vertexai serviceAccountKey, bedrock). */
export const SERVICE_ACCOUNT_KEY = 'key.json';
export const AWS_ACCESS_KEY = 'accessKey';
export const AWS_SECRET_KEY = 'secretKey';
export const AWS_SESSION_TOKEN = 'sessionToken';

const OpenAI = z.strictObject({
  model: z.string().min(1).optional().describe(MODEL_OVERRIDE),
  authToken: authTokenOf('as "Authorization: Bearer <key>"'),
});
const AzureOpenAI = z.strictObject({
  endpoint: Host.describe('Hostname of the Azure OpenAI resource, without scheme or path, e.g. "my-resource.openai.azure.com". Envoy connects to it on port 443 with TLS; Host and SNI follow it per attempt.'),
  deploymentName: z.string().min(1, 'deploymentName is the Azure deployment to call').describe('The Azure deployment to call: requests go to /openai/deployments/<deploymentName>/chat/completions, and its name is written into the body\'s "model" field.'),
  apiVersion: z.string().min(1, 'apiVersion is the Azure OpenAI API version, e.g. "2024-10-21"').describe('The Azure OpenAI API version, sent as the "api-version" query parameter, e.g. "2024-10-21".'),
  authToken: authTokenOf('as the "api-key" header'),
});
const Anthropic = z.strictObject({
  model: z.string().min(1).optional().describe('Claude model written into each translated request, e.g. "claude-sonnet-4-5"; unset keeps the client\'s model. OpenAI-style chat requests are translated to the Messages API (/v1/messages on api.anthropic.com) and answers back.'),
  apiVersion: z.string().min(1).optional().describe('Value of the "anthropic-version" header. Default "2023-06-01".'),
  authToken: authTokenOf('as the "x-api-key" header'),
});
const Gemini = z.strictObject({
  model: z.string().min(1, 'model is required for gemini, e.g. "gemini-2.0-flash"').describe('Gemini model written into each request, e.g. "gemini-2.0-flash". Requests go to Gemini\'s OpenAI-compatible endpoint on generativelanguage.googleapis.com.'),
  apiVersion: z.string().min(1).optional().describe('API version in the request path (/<apiVersion>/openai/chat/completions). Default "v1beta".'),
  authToken: authTokenOf('as "Authorization: Bearer <key>"'),
});
const VertexAI = z.strictObject({
  model: z.string().min(1, 'model is required for vertexai').describe('Model name without publisher, e.g. "gemini-2.0-flash"; sent as "<publisher>/<model>" to Vertex AI\'s OpenAI-compatible endpoint.'),
  projectId: z.string().min(1, 'projectId is the Google Cloud project').describe('Google Cloud project ID, used in the request path /v1/projects/<projectId>/locations/<region>/endpoints/openapi/chat/completions.'),
  region: z.string().min(1, 'region is the Vertex AI location, e.g. "us-central1"').describe('Vertex AI location, e.g. "us-central1"; Envoy connects to <region>-aiplatform.googleapis.com.'),
  publisher: z.string().min(1).optional().describe('Model publisher prefixed to the model name. Default "google".'),
  api: z.enum(['OpenAI', 'GenerateContent'], { message: 'api is OpenAI or GenerateContent' }).optional()
    .describe('Which Vertex AI API is called. OpenAI (the default): the OpenAI-compatible endpoint .../endpoints/openapi/chat/completions, the body passed on with "model" set. GenerateContent: the native .../publishers/<publisher>/models/<model>:generateContent (streamGenerateContent?alt=sse when the client streams); OpenAI chat requests and answers are translated.'),
  authToken: AuthToken.optional().describe('An OAuth access token that you keep fresh, sent as "Authorization: Bearer <token>" on every attempt to this member. Exclusive with serviceAccountKey, which lets the AI extension obtain and renew tokens itself.'),
  serviceAccountKey: z.strictObject({
    secretRef: z.strictObject({
      name: ObjectName.describe(`Name of a Secret in the Backend's namespace whose key "${SERVICE_ACCOUNT_KEY}" holds a Google service-account JSON key (as "gcloud iam service-accounts keys create" writes it).`),
    }).describe('The Secret that holds the service-account key.'),
  }).optional().describe('A service-account key from which the AI extension obtains OAuth access tokens itself (a JWT signed with the key, RS256, exchanged at the key\'s token_uri), caches them and renews them before they expire. Exclusive with authToken; set exactly one.'),
}).superRefine((v, ctx) => {
  if ((v.authToken === undefined) === (v.serviceAccountKey === undefined)) {
    ctx.addIssue({ code: 'custom', message: 'vertexai needs exactly one of authToken (an access token) or serviceAccountKey (a Secret with a service-account JSON key, recommended)' });
  }
});
/** AWS regions look like "us-east-1", "eu-central-2", "us-gov-west-1". */
const AWS_REGION = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;
const Bedrock = z.strictObject({
  model: z.string().min(1, 'model is the Bedrock model ID, e.g. "anthropic.claude-3-5-haiku-20241022-v1:0"').max(2048)
    .describe('Bedrock model ID or inference profile ID/ARN, e.g. "anthropic.claude-3-5-haiku-20241022-v1:0" or "us.amazon.nova-lite-v1:0"; requests go to /model/<model>/converse (converse-stream when the client streams).'),
  region: z.string().regex(AWS_REGION, 'region is an AWS region, e.g. "us-east-1"').describe('AWS region, e.g. "us-east-1": Envoy connects to bedrock-runtime.<region>.amazonaws.com and requests are signed for it.'),
  credentials: z.strictObject({
    secretRef: z.strictObject({
      name: ObjectName.describe(`Name of a Secret in the Backend's namespace with keys "${AWS_ACCESS_KEY}" (access key ID), "${AWS_SECRET_KEY}" (secret access key) and optionally "${AWS_SESSION_TOKEN}" (for temporary credentials). A missing Secret or key takes only this member out of service.`),
    }).describe('The Secret that holds the AWS credentials.'),
  }).describe('AWS credentials: every attempt is signed with them (Signature Version 4, service "bedrock"); they reach the AI extension over SDS and never appear in Envoy\'s configuration.'),
});
const OpenAICompatible = z.strictObject({
  host: Host.describe('Hostname or IP address of the OpenAI-style server (vLLM, Ollama, a private gateway), without scheme, port or path, e.g. "vllm.models.svc". Hostnames are resolved by Envoy (STRICT_DNS).'),
  port: Port.optional().describe('TCP port, 1-65535. Default 443, or 80 when tls is false.'),
  path: z.string().startsWith('/', 'path must start with "/"').optional().describe('Request path for chat completions, query included, e.g. "/v1/chat/completions" (the default).'),
  tls: z.boolean().optional().describe('Speak TLS to the server, verifying its certificate for host. Default: true when the port is 443, else false.'),
  model: z.string().min(1).optional().describe(MODEL_OVERRIDE),
  authHeader: HeaderName.optional().describe('Header that carries the key, e.g. "x-api-key". Default "Authorization", whose value gets "Bearer " in front of the key.'),
  authToken: AuthToken.optional().describe('The server\'s API key, sent in authHeader on every attempt to this member. Unset: no credential is sent (and the client\'s own auth headers are removed).'),
});

export const PROVIDERS = ['openai', 'azureopenai', 'anthropic', 'gemini', 'vertexai', 'bedrock', 'openaiCompatible'] as const;
export type ProviderName = (typeof PROVIDERS)[number];

export const Provider = z
  .strictObject({
    openai: OpenAI.optional().describe('OpenAI (api.openai.com:443, /v1/chat/completions).'),
    azureopenai: AzureOpenAI.optional().describe('Azure OpenAI: one deployment of an Azure OpenAI resource.'),
    anthropic: Anthropic.optional().describe('Anthropic (api.anthropic.com:443, /v1/messages); OpenAI chat requests and answers, streamed or not, are translated.'),
    gemini: Gemini.optional().describe('Google Gemini API through its OpenAI-compatible endpoint.'),
    vertexai: VertexAI.optional().describe('Google Vertex AI through its OpenAI-compatible endpoint, with an access token or a service-account key.'),
    bedrock: Bedrock.optional().describe('AWS Bedrock through the Converse API: OpenAI chat requests and answers, streamed or not, are translated, and each attempt is signed (SigV4).'),
    openaiCompatible: OpenAICompatible.optional().describe('Any server that speaks the OpenAI chat completions API: vLLM, Ollama, LiteLLM, a private gateway.'),
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
  host: Host.describe('Hostname or IP address to connect to instead of the provider\'s, e.g. a private endpoint "10.0.0.7".'),
  port: Port.describe('TCP port to connect to, 1-65535.'),
  tls: z.boolean().optional().describe('Speak TLS to the override address. Default: true when port is 443. SNI, certificate check and Host stay the provider\'s hostname.'),
});

export const MemberLimits = z.strictObject({
  requestsPerMinute: z.number().int().min(1, 'requestsPerMinute is at least 1').max(1_000_000_000).optional()
    .describe('Requests this member may take per minute, counted across every Envoy replica (the AI extensions share counts: --limits-redis). Past it the member is not attempted until the minute is over: another member of its pool or the next priority serves. Default: no limit.'),
  tokensPerMinute: z.number().int().min(1, 'tokensPerMinute is at least 1').max(1_000_000_000_000).optional()
    .describe('Tokens (prompt plus completion, from the provider\'s usage) this member may use per minute, counted like requestsPerMinute. Past it the member is not attempted until the minute is over. Default: no limit.'),
}).refine((l) => l.requestsPerMinute !== undefined || l.tokensPerMinute !== undefined, {
  message: 'limits needs requestsPerMinute or tokensPerMinute, e.g. {requestsPerMinute: 60}; remove limits for none',
});
export type MemberLimits = z.infer<typeof MemberLimits>;

export const PoolMember = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'member names are lowercase DNS labels, e.g. "openai-east"')
    .max(63)
    .optional()
    .describe('Member name, a lowercase DNS label unique in the Backend, e.g. "openai-east". It names the member in status, metrics and access logs (switchyard.dev member). Default "p<priority>-<index>-<provider>", e.g. "p0-1-openai".'),
  weight: z.number().int().min(1, 'weight is at least 1').max(128, 'weight is at most 128').optional()
    .describe('Share of this pool\'s requests relative to the other members of the same priority (Envoy load_balancing_weight), 1-128. Default 1.'),
  provider: Provider.describe('The provider to call: set exactly one of openai, azureopenai, anthropic, gemini, vertexai, bedrock, openaiCompatible.'),
  hostOverride: HostOverride.optional().describe('Connect to this address instead of the provider\'s own (a proxy, a private endpoint); path, headers and credentials stay the provider\'s.'),
  models: modelAliasesOf('Model aliases for this member only: a client\'s model (key, e.g. "fast") → the model name this member is sent (value, e.g. "claude-haiku-4-5"). Overrides spec.ai.models and the provider\'s own model for that alias, so one alias can name a different model at each provider. Keys are listed by GET /v1/models.').optional(),
  limits: MemberLimits.optional().describe('Per-minute limits of this member (fixed one-minute windows), shared by every Envoy replica; a member over a limit is skipped, not called. Counted in switchyard_ai_member_limited_total.'),
});
export type PoolMember = z.infer<typeof PoolMember>;

/** Durations Envoy is asked to wait for (override_message_timeout) are bounded: see MAX_FIRST_TOKEN_TIMEOUT. */
const MAX_FIRST_TOKEN_TIMEOUT_MS = 30 * 60_000;
const FirstTokenTimeout = Duration.refine((d) => {
  const ms = parseDuration(d);
  return ms !== undefined && ms > 0 && ms <= MAX_FIRST_TOKEN_TIMEOUT_MS;
}, { message: 'firstTokenTimeout must be more than 0 and at most 30m, e.g. "10s"' });

/** What a pool does with a refusal that another pool's model may not give: the next priority, or a later pool by name. */
export const NEXT_POOL = 'NextPool';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const Fallback = z.string().max(63).regex(/^(NextPool|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$/, 'a fallback is NextPool (the next priority takes the request) or the name of a later pool (spec.ai.multipool.priorities[].name), e.g. "large-context"');

export const Priority = z.strictObject({
  name: z.string().max(63).regex(DNS_LABEL, 'pool names are lowercase DNS labels, e.g. "large-context"').optional()
    .describe('Pool name, a lowercase DNS label unique in the Backend, e.g. "large-context". A pool\'s contextWindowFallback or contentPolicyFallback may name a later pool to skip to. Default: none.'),
  firstTokenTimeout: FirstTokenTimeout.optional()
    .describe('First-token deadline of this pool\'s members, overriding spec.ai.firstTokenTimeout, e.g. "5s" for a pool of slower models.'),
  contextWindowFallback: Fallback.optional()
    .describe('What to do when a member of this pool answers that the request exceeds its context window (HTTP 400: OpenAI and Azure OpenAI error code context_length_exceeded, Anthropic "prompt is too long", Gemini "input token count ... exceeds the maximum"). NextPool: retry on the next priority. The name of a later pool (priorities[].name): retry there, the pools in between are skipped without calling their providers (order the pools so it has members with a larger context). Unset: the 400 goes to the client. Any other 400 is never retried.'),
  contentPolicyFallback: Fallback.optional()
    .describe('What to do when a member of this pool refuses the request under its content policy: HTTP 400 (OpenAI and Azure OpenAI error code content_filter or content_policy_violation), or HTTP 200 before any content (OpenAI and Azure OpenAI finish_reason content_filter, Anthropic stop_reason refusal, Gemini finishReason SAFETY or PROHIBITED_CONTENT or promptFeedback.blockReason, Bedrock stopReason content_filtered or guardrail_intervened). NextPool: retry on the next priority. The name of a later pool (priorities[].name): retry there, skipping the pools in between without calling their providers. Unset: the refusal goes to the client as the provider gave it. Any other 400 is never retried.'),
  pool: z.array(PoolMember).min(1, 'a priority needs at least one pool member: add one or remove the empty priority').max(64, 'at most 64 members per pool')
    .describe('The members of this priority (1-64); requests are spread over them by weight. A member whose Secret is missing is left out, the others keep serving.'),
});

export type Priority = z.infer<typeof Priority>;

/**
 * Pool names are unique, and a fallback names a later pool: Envoy's retries only move down the
 * priorities (previous_priorities), so an earlier pool could never be reached again.
 */
function checkPoolFallbacks(priorities: readonly Priority[], ctx: z.RefinementCtx): void {
  const index = new Map<string, number>();
  priorities.forEach((p, i) => {
    if (p.name === undefined) return;
    const first = index.get(p.name);
    if (first !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['multipool', 'priorities', i, 'name'], message: `pool name "${p.name}" is already used by priorities[${first}]: give every pool a unique name` });
    } else {
      index.set(p.name, i);
    }
  });
  priorities.forEach((p, i) => {
    for (const field of ['contextWindowFallback', 'contentPolicyFallback'] as const) {
      const to = p[field];
      if (to === undefined || to === NEXT_POOL) continue;
      const target = index.get(to);
      const path = ['multipool', 'priorities', i, field];
      if (target === undefined) {
        const names = [...index.keys()];
        ctx.addIssue({ code: 'custom', path, message: `no pool is named "${to}": use NextPool or the name of a later pool (${names.length > 0 ? `named pools: ${names.join(', ')}` : 'give the pool a name in priorities[].name'})` });
      } else if (target <= i) {
        ctx.addIssue({ code: 'custom', path, message: `pool "${to}" is priorities[${target}], not after this pool (priorities[${i}]): a fallback can only name a later pool, since retries move down the priorities` });
      }
    }
  });
}

export const AIBackend = z
  .strictObject({
    firstTokenTimeout: FirstTokenTimeout.optional()
      .describe('First-token deadline of every attempt, e.g. "2s" (more than 0, at most 30m): an attempt whose provider has sent no content token by then (keep-alives, SSE comments and role-only or empty deltas do not count) is abandoned before the client receives a byte and retried on the next priority; counted as cause first_token_timeout in switchyard_ai_failures_total and logged. Streamed and non-streamed requests alike: the answer\'s headers are held back until its first content. A pool\'s own firstTokenTimeout overrides it. Default: none.'),
    llm: PoolMember.omit({ name: true, weight: true, models: true, limits: true }).optional()
      .describe('A single provider. Exclusive with multipool.'),
    multipool: z
      .strictObject({
        priorities: z.array(Priority).min(1, 'multipool needs at least one priority').max(16, 'at most 16 priorities')
          .describe('Pools in failover order (1-16): index 0 is the primary (Envoy priority 0); a failed attempt is retried on the next priority (previous_priorities), and outlier detection skips a dead pool.'),
      })
      .optional()
      .describe('Priority pools of providers, tried in order. Exclusive with llm.'),
    models: modelAliasesOf('Model aliases: a model name a client may send (key, e.g. "fast") → the model each member is sent instead (value, e.g. "gpt-4o-mini"), for members whose provider sets no model of its own; a member\'s own models map overrides it. Route by the alias with an HTTPRoute headers match on x-switchyard-model; GET /v1/models lists the aliases.').optional(),
  })
  .superRefine((ai, ctx) => {
    if (ai.multipool !== undefined) checkPoolFallbacks(ai.multipool.priorities, ctx);
    if ((ai.llm === undefined) === (ai.multipool === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message: ai.llm ? 'set exactly one of llm or multipool, not both' : 'set exactly one of llm (one provider) or multipool (priorities of pools)',
      });
    }
  });

export const StaticHost = z.strictObject({
  host: Host.describe('Hostname (resolved by Envoy, STRICT_DNS) or IP address, e.g. "api.internal.example".'),
  port: Port.describe('TCP port, 1-65535. Port 443 means TLS unless spec.static.tls is set (then every host speaks TLS).'),
  weight: z.number().int().min(1).max(128).optional().describe('Share of this priority\'s requests relative to its other hosts (Envoy load_balancing_weight), 1-128. Default 1.'),
});
export const StaticBackend = z.strictObject({
  priorities: z
    .array(z.strictObject({
      hosts: z.array(StaticHost).min(1, 'a priority needs at least one host').max(64, 'at most 64 hosts per priority')
        .describe('The hosts of this priority (1-64), named "p<priority>-<index>" in status and access logs.'),
    }))
    .min(1, 'static needs at least one priority')
    .max(16, 'at most 16 priorities')
    .describe('Host pools in failover order (1-16): index 0 is the primary (Envoy priority 0).'),
  tls: z.strictObject({
    sni: Host.optional().describe('SNI and certificate name for every host. Default: each host\'s own hostname, per attempt (auto_host_sni).'),
    insecureSkipVerify: z.boolean().optional().describe('Do not verify the hosts\' certificates. Default false: certificates are verified against the system CA bundle.'),
  }).optional().describe('Speak TLS to every host. Without it, only hosts on port 443 speak TLS.'),
});

export const RETRY_ON = [
  '5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'envoy-ratelimited', 'retriable-4xx',
  'refused-stream', 'retriable-status-codes', 'retriable-headers', 'http3-post-connect-failure',
] as const;

export const RetrySpec = z.strictObject({
  attempts: z.number().int().min(0, 'attempts (retries after the first try) cannot be negative').max(10, 'at most 10 retries').optional()
    .describe('Retries after the first attempt, 0-10 (Envoy num_retries); 0 turns retries off. Default: the number of priorities minus 1, at least 2.'),
  retryOn: z.array(z.enum(RETRY_ON, { message: `retryOn values are Envoy retry conditions: ${RETRY_ON.join(', ')}` })).max(RETRY_ON.length).optional()
    .describe(`Failures that are retried (Envoy retry_on conditions): ${RETRY_ON.join(', ')}. Default: connect-failure, refused-stream, reset, retriable-status-codes. retriable-status-codes is added whenever statusCodes is non-empty.`),
  statusCodes: z.array(z.number().int().min(400, 'retriable status codes are 400-599').max(599, 'retriable status codes are 400-599')).max(50).optional()
    .describe('HTTP status codes (400-599) that are retried (Envoy retriable_status_codes). Default: 429, 500, 502, 503, 504.'),
  perTryTimeout: Duration.optional()
    .describe('Time limit of each attempt, e.g. "30s" (units h, m, s, ms); a timed-out attempt is retried on the next priority. Default: none, each attempt may use the whole route timeout (300s unless the HTTPRoute sets timeouts.request).'),
  backoff: z
    .strictObject({
      baseInterval: Duration.describe('Base interval between retries, more than 0, e.g. "25ms"; Envoy waits a random time up to base*(2^n-1) before retry n. Default "25ms".'),
      maxInterval: Duration.optional().describe('Longest wait between retries, at least baseInterval. Default: 10 times baseInterval (Envoy).'),
    })
    .superRefine((b, ctx) => {
      // Envoy refuses both, and a refused route configuration freezes every route of its listener.
      const base = parseDuration(b.baseInterval);
      if (base === 0) ctx.addIssue({ code: 'custom', path: ['baseInterval'], message: 'baseInterval must be more than 0, e.g. "25ms"' });
      const max = b.maxInterval === undefined ? undefined : parseDuration(b.maxInterval);
      if (base !== undefined && max !== undefined && max < base) {
        ctx.addIssue({ code: 'custom', path: ['maxInterval'], message: `maxInterval (${b.maxInterval}) must be at least baseInterval (${b.baseInterval})` });
      }
    })
    .optional()
    .describe('Exponential back-off between retries (Envoy retry_back_off).'),
  rateLimitedBackoff: z
    .strictObject({
      resetHeaders: z.array(z.strictObject({
        name: HeaderName.describe('Response header that says when to retry, e.g. "Retry-After" or "X-RateLimit-Reset".'),
        format: z.enum(['Seconds', 'UnixTimestamp']).describe('How the header\'s value is read: Seconds (a delay, "30") or UnixTimestamp (a point in time, "1767225600").'),
      })).min(1).max(8).describe('Headers read in order (1-8); the first one present sets the delay.'),
      maxInterval: Duration.optional().describe('Longest delay honoured; a longer one falls back to the normal back-off. Default "30s".'),
    })
    .optional()
    .describe('Wait as long as the server asks (e.g. Retry-After on a 429) before retrying (Envoy rate_limited_retry_back_off). Default: Retry-After in seconds, up to 30s, for Backends with one priority; none with several, so a 429 fails over to the next priority at once. Setting it delays every such retry, even one another priority could answer.'),
  attemptsPerPriority: z.number().int().min(1, 'attemptsPerPriority is at least 1').optional()
    .describe('Attempts on a priority before the next one is tried (Envoy previous_priorities update_frequency), at least 1. Default 1: every retry moves to the next priority. Read only when there are several priorities.'),
});
export type RetrySpec = z.infer<typeof RetrySpec>;

export const OutlierDetectionSpec = z.strictObject({
  enabled: z.boolean().optional().describe('Turn passive health checking on or off. Default: on for a Backend with several priorities or when this block is present, else off.'),
  consecutive5xx: z.number().int().min(1).optional().describe('Consecutive 5xx answers (and connection failures) after which a member is ejected, at least 1. Default 3.'),
  consecutiveGatewayFailure: z.number().int().min(1).optional().describe('Consecutive 502, 503, 504 answers (and connection failures) after which a member is ejected, at least 1. Default 3.'),
  consecutiveLocalOriginFailure: z.number().int().min(1).optional().describe('Consecutive locally seen failures (connect failure, timeout, reset) after which a member is ejected, at least 1; read only with splitExternalLocalOriginErrors. Default: Envoy\'s (5).'),
  splitExternalLocalOriginErrors: z.boolean().optional().describe('Count locally seen failures (connect, timeout, reset) apart from HTTP answers (Envoy split_external_local_origin_errors). Default false.'),
  interval: Duration.optional().describe('How often ejections are evaluated, e.g. "2s" (the default).'),
  baseEjectionTime: Duration.optional().describe('How long a member stays ejected the first time; each further ejection multiplies it. Default "15s".'),
  maxEjectionTime: Duration.optional().describe('Upper bound of an ejection. Default: Envoy\'s (300s).'),
  maxEjectionPercent: z.number().int().min(0).max(100).optional().describe('Largest share of a cluster\'s members ejected at once, 0-100. Default 100, so a dead pool is skipped entirely.'),
});
export type OutlierDetectionSpec = z.infer<typeof OutlierDetectionSpec>;

export { DRILL_KEY };

export const DrillSpec = z.strictObject({
  keySecretRef: z.strictObject({
    name: ObjectName.describe(`Name of a Secret in the Backend's namespace whose key "${DRILL_KEY}" holds the drill key (at least 32 characters; e.g. \`openssl rand -hex 32\`). It reaches only the AI extension (SDS over its authenticated channel), never Envoy's configuration.`),
  }).describe('The Secret holding the key that signs drill headers.'),
}).describe('Failover drills (switchyard drill): a request whose x-switchyard-drill header is signed with this key, fresh (60 s) and not replayed, has the attempts of the priority it names failed by the AI extension without calling their provider, so the route fails over to the next priority. Without this block drill headers are ignored.');
export type DrillSpec = z.infer<typeof DrillSpec>;

export const BackendSpec = z
  .strictObject({
    type: z.enum(['AI', 'Static'], { message: 'type is AI or Static' }).default('AI')
      .describe('AI: model providers in spec.ai, each attempt adapted by the AI extension (path, Host, auth header, model). Static: plain HTTP hosts in spec.static. Default AI.'),
    ai: AIBackend.optional().describe('Model providers: exactly one of llm or multipool. Required with type AI.'),
    static: StaticBackend.optional().describe('Plain HTTP hosts in priority pools, with the same failover. Required with type Static.'),
    retry: RetrySpec.optional().describe('Retry policy of every route rule that targets this Backend (Envoy route retry_policy). With no block, a multipool Backend still fails over; an HTTPRoute rule\'s own retry overrides the fields it sets.'),
    outlierDetection: OutlierDetectionSpec.optional().describe('Passive health checking (Envoy outlier_detection): a member that keeps failing is ejected for a while, so requests skip a dead pool instead of paying for a failed attempt.'),
    drill: DrillSpec.optional(),
  })
  .superRefine((s, ctx) => {
    if (s.type === 'Static' && s.drill) ctx.addIssue({ code: 'custom', path: ['drill'], message: 'spec.drill needs type AI (the AI extension fails the drilled attempts); remove it' });
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
