/**
 * The intermediate model: what the gateway must do, with every reference resolved and every
 * default applied, and nothing Envoy-specific in it. Translation produces it; the Envoy stage
 * turns it into xDS resources.
 */
export interface IR {
  /** Every Gateway of our classes, served listeners or not: what its infrastructure needs. */
  gateways: GatewayIR[];
  listeners: ListenerIR[];
  clusters: ClusterIR[];
  /** Provider credentials, by name, for the data path (never placed in Listener/Cluster/Route config). */
  credentials: CredentialIR[];
  /** Serving certificates of HTTPS listeners. */
  certificates: CertificateIR[];
}

export interface GatewayIR {
  namespace: string;
  name: string;
  className: string;
  /**
   * metadata.creationTimestamp: on a data plane shared by every Gateway, the older Gateway keeps
   * a port two of them want.
   */
  createdAt?: string;
  /** spec.addresses as asked (type defaults to IPAddress). */
  addresses: { type: string; value: string }[];
  /** spec.infrastructure: labels and annotations for what is created for the Gateway. */
  infrastructure?: {
    labels: Record<string, string>;
    annotations: Record<string, string>;
    parametersRef?: { group: string; kind: string; name: string };
  };
}

export interface ListenerIR {
  /** Unique: "<namespace>/<gateway>/<port>". */
  name: string;
  gateway: { namespace: string; name: string };
  port: number;
  protocol: 'HTTP' | 'HTTPS';
  /** Per-request records as its Gateway asks (annotation); absent: the command's default. */
  accessLog?: 'json' | 'off';
  /**
   * HTTPS: one entry per Gateway listener, selected by SNI; empty serverNames = default chain.
   * All of a listener's certificates go in its one entry: Envoy rejects the whole Listener when
   * two filter chains have the same match.
   */
  tls: { certificates: string[]; serverNames: string[] }[];
  virtualHosts: VirtualHostIR[];
}

export interface VirtualHostIR {
  name: string;
  domains: string[];
  routes: RouteIR[];
}

export interface RouteIR {
  /** "<namespace>/<httproute>/rule/<i>/match/<j>". */
  name: string;
  match: MatchIR;
  action: ForwardAction | DirectResponseAction | RedirectAction;
  requestHeaders?: HeaderEdits;
  responseHeaders?: HeaderEdits;
}

export interface MatchIR {
  path: { kind: 'Exact' | 'PathPrefix' | 'RegularExpression'; value: string };
  headers: { name: string; value: string; regex: boolean }[];
  queryParams: { name: string; value: string; regex: boolean }[];
  method?: string;
}

export interface HeaderEdits {
  set: { name: string; value: string }[];
  add: { name: string; value: string }[];
  remove: string[];
}

export interface WeightedCluster {
  name: string;
  weight: number;
  /** Header edits for requests sent to this cluster only, and for its responses (backendRef filters). */
  requestHeaders?: HeaderEdits;
  responseHeaders?: HeaderEdits;
}

export interface ForwardAction {
  kind: 'forward';
  clusters: WeightedCluster[];
  /** Answer for a cluster that does not exist: the share of an invalid backendRef (Gateway API: 500). */
  clusterNotFoundStatus?: 500;
  /** Undefined: no retries. */
  retry?: RetryPlan;
  /** Whole request, all attempts included; 0 disables. */
  timeoutMs: number;
  /** Rewrite Host per attempt from the picked endpoint's hostname. */
  autoHostRewrite: boolean;
  hostRewrite?: string;
  pathRewrite?: { kind: 'full' | 'prefix'; value: string };
}

export interface DirectResponseAction {
  kind: 'direct';
  status: number;
  body: string;
  /** Default text/plain; charset=utf-8. */
  contentType?: string;
}

export interface RedirectAction {
  kind: 'redirect';
  scheme?: string;
  hostname?: string;
  port?: number;
  path?: { kind: 'full' | 'prefix'; value: string };
  statusCode: number;
}

/**
 * Response header the AI extension sets on an attempt it abandons (value: the cause, e.g.
 * first_token_timeout); routes to a Backend that may abandon attempts retry on it.
 */
export const ABANDONED_HEADER = 'x-switchyard-abandoned';

/**
 * Connect timeout of every Backend and Service cluster. The AI extension relies on it: by then
 * Envoy has a connection to an attempt's member or has failed the attempt itself.
 */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Room for long conversations and inline images; the AI extension and retries hold the body. */
export const DEFAULT_AI_REQUEST_BODY_LIMIT = 16 * 1024 * 1024;

/** Suffix of a Vertex AI service-account credential's SDS name (translate/credentials.ts). */
export const SERVICE_ACCOUNT_SUFFIX = ':service-account';
/**
 * SDS credential listing the names of every service-account credential (a JSON array, no value),
 * so the AI extension fetches their access tokens as soon as the configuration has them, before
 * any attempt needs one. A ":" never occurs in a Kubernetes name: no Secret's credential takes it.
 */
export const SERVICE_ACCOUNT_INDEX = 'credential/:service-accounts';
/**
 * Request header a route sets for the AI extension when its Backend has a fallback naming a later
 * pool: "<num_retries>/<attempts per priority>". Each pool skipped on the way takes a retry, so a
 * refusal whose named pool the retries left cannot reach goes to the client instead.
 */
export const ROUTE_RETRIES_HEADER = 'x-switchyard-route-retries';

export interface RetryPlan {
  /** Retries after the first attempt. */
  attempts: number;
  retryOn: string[];
  statusCodes: number[];
  /** Response headers whose presence makes an attempt retriable (retriable-headers), e.g. an attempt the AI extension abandoned. */
  retriableHeaders?: string[];
  perTryTimeoutMs?: number;
  backoff: { baseMs: number; maxMs?: number };
  /** Honour a server's Retry-After style header (only where no other priority can answer). */
  rateLimited?: { resetHeaders: { name: string; format: 'Seconds' | 'UnixTimestamp' }[]; maxMs: number };
  /** previous_priorities update frequency; undefined when the cluster has one priority. */
  attemptsPerPriority?: number;
  /** Do not re-pick a host that already failed this request (previous_hosts). */
  avoidPreviousHosts: boolean;
  hostSelectionAttempts: number;
  /** A fallback names a later pool: the route tells the AI extension its retries (ROUTE_RETRIES_HEADER). */
  namedFallback?: { retries: number; pool: string };
}

export interface ClusterIR {
  /** "backend/<namespace>/<name>", or "service/<namespace>/<name>/<port>" for a core Service port. */
  name: string;
  /** What the cluster serves: a Backend, or (kind Service) a core Service's endpoints. */
  backend: { kind?: 'Backend' | 'Service'; namespace: string; name: string };
  /** eds: every address is an IP (served as ClusterLoadAssignment); dns: STRICT_DNS, inline endpoints. */
  discovery: 'eds' | 'dns';
  connectTimeoutMs: number;
  /** Contiguous levels, 0 first; empty when no member is usable. */
  priorities: PriorityIR[];
  outlierDetection?: OutlierPlan;
  /** Upstream TLS trust for members with tls: true. */
  tls?: { insecureSkipVerify: boolean; sniOverride?: string };
  /** AI Backends only: every attempt is adapted to the picked member by the AI extension. */
  ai?: AiPlan;
}

export interface AiPlan {
  /** Largest request body buffered for the extension and for retries; larger requests answer 413. */
  requestBodyLimitBytes: number;
}

export interface PriorityIR {
  level: number;
  members: MemberIR[];
}

export interface MemberIR {
  name: string;
  address: string;
  port: number;
  /** Host header and SNI for this member. */
  hostname: string;
  weight: number;
  tls: boolean;
  /** Facts about the member for the data path, placed in endpoint metadata (never secret values). */
  metadata: MemberMetadata;
}

export interface MemberMetadata {
  backend: string;
  member: string;
  priority: number;
  provider?: string;
  model?: string;
  path?: string;
  authHeader?: string;
  /** ServiceAccountKey and AwsKeys: the credential is a JSON object of a vendor's keys (translate/credentials.ts). */
  authKind?: 'SecretRef' | 'Inline' | 'Passthrough' | 'None' | 'ServiceAccountKey' | 'AwsKeys';
  /** Name of the credential resource (SDS) that holds this member's key. */
  credential?: string;
  /** The Kubernetes Secret's name, for operators. */
  secret?: string;
  apiVersion?: string;
  deployment?: string;
  /** The provider's hostname (the attempt's :authority); the address may be a hostOverride. */
  hostname?: string;
  /** First-token deadline of an attempt on this member (the pool's, else the Backend's). */
  firstTokenTimeoutMs?: number;
  /** Refusals retried elsewhere, comma-separated: `cause` on the next priority, `cause>level` on that Envoy priority (a named pool); causes context_length_exceeded, content_policy. */
  fallbacks?: string;
  /** Client model (alias) → the model this member is sent; absent when the member has none. */
  modelAliases?: Record<string, string>;
  /** SDS name of the Backend's drill key (spec.drill); absent: the extension ignores drill headers. */
  drillKey?: string;
  /** Per-minute limits of this member, shared by every AI extension (src/ai-extension/limits.ts). */
  requestsPerMinute?: number;
  tokensPerMinute?: number;
}

export interface OutlierPlan {
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  consecutiveLocalOriginFailure?: number;
  splitExternalLocalOriginErrors: boolean;
  intervalMs: number;
  baseEjectionMs: number;
  maxEjectionMs?: number;
  maxEjectionPercent: number;
}

export interface CredentialIR {
  /** SDS name: "credential/<namespace>/<secret>" or "credential/<namespace>/<backend>/<member>" for inline tokens. */
  name: string;
  /** The bare key (no "Bearer " prefix). */
  value: string;
}

export interface CertificateIR {
  name: string;
  certificateChain: string;
  privateKey: string;
}
