import { isIP } from 'node:net';
import { NEXT_POOL, type AuthToken, type Backend, type OutlierDetectionSpec, type PoolMember, type Priority } from '../api/backend.js';
import { condition, type Condition } from '../api/conditions.js';
import { parseDuration } from '../api/duration.js';
import { providerName, providerTarget, type VendorCredential } from '../api/providers.js';
import type { Secret } from '../api/secret.js';
import { DEFAULT_AI_REQUEST_BODY_LIMIT, DEFAULT_CONNECT_TIMEOUT_MS, type ClusterIR, type CredentialIR, type MemberIR, type OutlierPlan, type PriorityIR, type RetryPlan } from '../ir/model.js';
import { resolveCredential, resolveVendorCredential, resolveDrillKey, type SecretLookup } from './credentials.js';
import { memberModelAliases, servedModels, type ServedModels } from './models.js';
import { backendRetryPlan } from './retry.js';
import type { BackendStatus, MemberStatus, PriorityStatus, WarningEvent } from './status.js';
import { compact } from '../ir/compact.js';
import { CommonAiMember, memberShape, type MemberShape } from '../ir/common-member.js';
import { shared } from './shared.js';

export { DEFAULT_AI_REQUEST_BODY_LIMIT, DEFAULT_CONNECT_TIMEOUT_MS };

/** What translation knows about one Backend, for the routes that point at it. */
export interface TranslatedBackend {
  key: string;
  /** Absent when no member is usable: routes then answer 503 with `unavailable`. */
  cluster?: ClusterIR;
  unavailable?: string;
  /** AI Backends with a usable member: the model names a client may send. */
  models?: ServedModels;
  retry: RetryPlan;
  credentials: CredentialIR[];
  status: BackendStatus;
  events: WarningEvent[];
}

export function clusterNameForBackend(namespace: string, name: string): string {
  // Flat (join): the name is kept by the cluster and every route entry to it, and a concatenation
  // kept its pieces beside the flat copy that hashing or encoding it made.
  return ['backend', namespace, name].join('/');
}

/** A pool member before credentials are checked. */
interface Candidate {
  name: string;
  provider: string;
  member: Omit<MemberIR, 'metadata'> & { metadata: Omit<MemberIR['metadata'], 'priority'> };
  /** Its metadata has, beyond the fields every member has, only `model` (what commonMetadata needs). */
  modelOnly: boolean;
  token?: AuthToken;
  vendorCredential?: VendorCredential;
}

/**
 * The shape of a common member (Candidate.modelOnly, a key from a Secret): what it shares with
 * members alike. Undefined when a fact it needs is missing, which the common member never lacks.
 */
function commonShape(c: Candidate): MemberShape | undefined {
  const { port, weight, tls, hostname, metadata } = c.member;
  const { provider, path, authHeader, model } = metadata;
  if (provider === undefined || path === undefined || authHeader === undefined || model === undefined || metadata.hostname !== hostname) return undefined;
  return memberShape({ port, weight, tls, provider, path, authHeader, model, authKind: 'SecretRef' });
}

/** `key` is the Backend's "<namespace>/<name>", the one string every member's metadata shares. */
function aiCandidates(backend: Backend, key: string): Candidate[][] {
  const ai = backend.spec.ai;
  if (!ai) return [];
  const pools: PoolMember[][] = ai.multipool ? ai.multipool.priorities.map((p) => p.pool) : ai.llm ? [[ai.llm]] : [];
  const deadlines = pools.map((_, p) => parseDuration(ai.multipool?.priorities[p]?.firstTokenTimeout ?? ai.firstTokenTimeout ?? ''));
  const fallbacks = pools.map((_, p) => poolFallbacks(ai.multipool?.priorities[p]));
  return pools.map((pool, p) =>
    pool.map((m, i) => {
      const firstTokenTimeoutMs = deadlines[p];
      const fallback = fallbacks[p];
      const target = providerTarget(m.provider);
      const provider = providerName(m.provider);
      const name = m.name ?? `p${p}-${i}-${provider.toLowerCase()}`;
      const address = m.hostOverride?.host ?? target.host;
      const modelAliases = memberModelAliases(ai.models, m, target.model);
      const port = m.hostOverride?.port ?? target.port;
      // Assigned one by one in this order, not spread from literals: 60,000 members made half a
      // million objects only to be copied (the key order, which the Envoy metadata keeps, is the same).
      const metadata: Candidate['member']['metadata'] = { backend: key, member: name, provider, path: target.path, hostname: target.host, authHeader: target.authHeader };
      if (target.model) metadata.model = target.model;
      if (target.apiVersion) metadata.apiVersion = target.apiVersion;
      if (target.deployment) metadata.deployment = target.deployment;
      if (firstTokenTimeoutMs !== undefined) metadata.firstTokenTimeoutMs = firstTokenTimeoutMs;
      if (fallback !== undefined) metadata.fallbacks = fallback;
      if (modelAliases) metadata.modelAliases = modelAliases;
      if (m.limits?.requestsPerMinute !== undefined) metadata.requestsPerMinute = m.limits.requestsPerMinute;
      if (m.limits?.tokensPerMinute !== undefined) metadata.tokensPerMinute = m.limits.tokensPerMinute;
      const modelOnly =
        !!target.model && !target.apiVersion && !target.deployment && firstTokenTimeoutMs === undefined && fallback === undefined && !modelAliases && m.limits === undefined;
      const c: Candidate = {
        name,
        provider,
        modelOnly,
        member: {
          name,
          address,
          port,
          hostname: target.host,
          weight: m.weight ?? 1,
          // The member's own port decides (443 means TLS) unless the member says `tls` itself.
          tls: m.hostOverride?.tls ?? m.provider.openaiCompatible?.tls ?? port === 443,
          metadata,
        },
      };
      if (target.authToken) c.token = target.authToken;
      if (target.vendorCredential) c.vendorCredential = target.vendorCredential;
      return c;
    }),
  );
}

/**
 * The refusals a pool hands on, as the AI extension reads them (endpoint metadata): `cause` for
 * the next priority, `cause>name` for a named pool until translateBackend turns the name into the
 * Envoy priority it is served at (`cause>level`).
 */
function poolFallbacks(p: Priority | undefined): string | undefined {
  if (p?.contextWindowFallback === undefined && p?.contentPolicyFallback === undefined) return undefined;
  const causes: string[] = [];
  fallbackEntry(causes, 'context_length_exceeded', p.contextWindowFallback);
  fallbackEntry(causes, 'content_policy', p.contentPolicyFallback);
  return causes.join(',');
}

function fallbackEntry(causes: string[], cause: string, to: string | undefined): void {
  if (to !== undefined) causes.push(to === NEXT_POOL ? cause : `${cause}>${to}`);
}

/**
 * Named pools become Envoy priorities: the level the named pool is served at, or the next served
 * one when none of its members is usable. With no served pool at or after it, the refusal goes to
 * the client (the entry is dropped), as it would without a fallback.
 */
function resolveNamedFallbacks(fallbacks: string, levelOfPool: ReadonlyMap<string, number>): string | undefined {
  const entries = fallbacks.split(',').flatMap((entry) => {
    const [cause = '', to] = entry.split('>');
    if (to === undefined) return [cause];
    const level = levelOfPool.get(to);
    return level === undefined ? [] : [`${cause}>${level}`];
  });
  return entries.length > 0 ? entries.join(',') : undefined;
}

/**
 * Retries a named fallback needs: every pool between the refusing one and the named one is
 * skipped by an attempt of its own (attemptsPerPriority each), and the named pool may sit behind
 * pools that failed ordinarily before the refusal. Returns the most any fallback needs, and which.
 */
function namedFallbackRetries(backend: Backend, attemptsPerPriority: number): { retries: number; pool: string } | undefined {
  const priorities = backend.spec.ai?.multipool?.priorities ?? [];
  let most: { retries: number; pool: string } | undefined;
  for (const p of priorities) {
    for (const to of [p.contextWindowFallback, p.contentPolicyFallback]) {
      if (to === undefined || to === NEXT_POOL) continue;
      const index = priorities.findIndex((q) => q.name === to);
      const retries = attemptsPerPriority * index;
      if (index > 0 && (most === undefined || retries > most.retries)) most = { retries, pool: to };
    }
  }
  return most;
}

/** Whether the AI extension may abandon an attempt of this Backend, which its routes must then retry. */
function mayAbandon(backend: Backend): boolean {
  const ai = backend.spec.ai;
  if (backend.spec.type !== 'AI' || ai === undefined) return false;
  if (ai.firstTokenTimeout !== undefined || backend.spec.drill !== undefined) return true;
  // A member whose credential the extension obtains (a Vertex AI token, Bedrock's keys) can find
  // none at an attempt's time: that attempt is handed to the next member whatever statusCodes says.
  const members = ai.multipool ? ai.multipool.priorities.flatMap((p) => p.pool) : ai.llm ? [ai.llm] : [];
  if (members.some((m) => m.provider.vertexai?.serviceAccountKey !== undefined || m.provider.bedrock !== undefined)) return true;
  return ai.multipool?.priorities.some((p) => p.firstTokenTimeout !== undefined || poolFallbacks(p) !== undefined) ?? false;
}

function staticCandidates(backend: Backend, key: string): Candidate[][] {
  const st = backend.spec.static;
  if (!st) return [];
  return st.priorities.map((p, pi) =>
    p.hosts.map((h, i) => {
      const name = `p${pi}-${i}`;
      return {
        name,
        provider: 'static',
        modelOnly: false,
        member: {
          name,
          address: h.host,
          port: h.port,
          hostname: h.host,
          weight: h.weight ?? 1,
          tls: st.tls !== undefined || h.port === 443,
          metadata: { backend: key, member: name },
        },
      };
    }),
  );
}

function outlierPlan(spec: OutlierDetectionSpec | undefined, multi: boolean): OutlierPlan | undefined {
  const enabled = spec?.enabled ?? (multi || spec !== undefined);
  if (!enabled) return undefined;
  const plan: OutlierPlan = {
    consecutive5xx: spec?.consecutive5xx ?? 3,
    consecutiveGatewayFailure: spec?.consecutiveGatewayFailure ?? 3,
    splitExternalLocalOriginErrors: spec?.splitExternalLocalOriginErrors ?? false,
    intervalMs: parseDuration(spec?.interval ?? '') ?? 2_000,
    baseEjectionMs: parseDuration(spec?.baseEjectionTime ?? '') ?? 15_000,
    maxEjectionPercent: spec?.maxEjectionPercent ?? 100,
  };
  if (spec?.consecutiveLocalOriginFailure !== undefined) plan.consecutiveLocalOriginFailure = spec.consecutiveLocalOriginFailure;
  const maxEjection = parseDuration(spec?.maxEjectionTime ?? '');
  if (maxEjection !== undefined) plan.maxEjectionMs = maxEjection;
  return plan;
}

function duplicateNames(pools: Candidate[][]): string[] {
  const seen = new Set<string>();
  const dup = new Set<string>();
  for (const c of pools.flat()) {
    if (seen.has(c.name)) dup.add(c.name);
    seen.add(c.name);
  }
  return [...dup];
}

/**
 * Two members at one address and port, in one pool or in two (a server serving two models).
 * Envoy's EDS keeps one host per address across all priorities and drops the others
 * (EdsClusterImpl "only the first one will be retained"), so the later pools would be empty;
 * STRICT_DNS keeps a host per endpoint, each with its own priority, metadata and outlier state.
 */
function sharesAnEndpoint(priorities: readonly PriorityIR[]): boolean {
  const seen = new Set<string>();
  for (const p of priorities) {
    for (const m of p.members) {
      // Envoy compares the parsed address: `::1` and `0:0::1` are one host (URL prints IPv6 canonically).
      const address = isIP(m.address) === 6 && !m.address.includes('%') ? new URL(`http://[${m.address}]`).hostname : m.address;
      const endpoint = `${address}\0${m.port}`;
      if (seen.has(endpoint)) return true;
      seen.add(endpoint);
    }
  }
  return false;
}

export function translateBackend(backend: Backend, secrets: SecretLookup): TranslatedBackend {
  const { namespace, name, generation, uid } = backend.metadata;
  // Flat (join, not a template's concatenation) and one for the Backend: its result, its members'
  // metadata and its served models held a concatenation each (and, once hashed, its flat copy).
  const key = [namespace, name].join('/');
  const identity = uid !== undefined ? { uid } : {};
  const pools = backend.spec.type === 'AI' ? aiCandidates(backend, key) : staticCandidates(backend, key);
  const multi = pools.length > 1;
  const retry = backendRetryPlan(backend.spec.retry, pools.length, mayAbandon(backend));
  const events: WarningEvent[] = [];
  const credentials = new Map<string, CredentialIR>();
  const warnings: string[] = [];
  const refProblems: { reason: string; message: string }[] = [];

  const dups = duplicateNames(pools);
  if (dups.length > 0) {
    const message = `member name${dups.length > 1 ? 's' : ''} ${dups.join(', ')} used more than once: give every pool member a unique name`;
    return {
      key, retry, credentials: [], events: [], unavailable: `Backend ${key} is invalid: ${message}`,
      status: {
        kind: 'Backend', namespace, name, ...identity, priorities: [], servedPriorities: 0, usableMembers: 0, totalMembers: pools.flat().length,
        conditions: [
          condition('Accepted', false, 'Invalid', message, generation),
          condition('ResolvedRefs', 'Unknown', 'Invalid', 'references are not checked until the spec is valid', generation),
          condition('Programmed', false, 'Invalid', 'nothing is served for an invalid Backend', generation),
        ],
      },
    };
  }

  const drill = backend.spec.type === 'AI' && backend.spec.drill ? resolveDrillKey(backend.spec.drill, { namespace, secrets }) : undefined;
  if (drill !== undefined && !drill.ok) {
    refProblems.push({ reason: drill.reason, message: drill.message });
    events.push({ object: { kind: 'Backend', namespace, name }, reason: drill.reason, message: drill.message });
  } else if (drill !== undefined) {
    credentials.set(drill.credential.name, drill.credential);
  }

  const named = backend.spec.type === 'AI' ? namedFallbackRetries(backend, retry.attemptsPerPriority ?? 1) : undefined;
  if (named !== undefined) retry.namedFallback = named;
  if (named !== undefined && retry.attempts < named.retries) {
    if (backend.spec.retry?.attempts === undefined) {
      retry.attempts = named.retries;
    } else {
      warnings.push(`spec.retry.attempts (${retry.attempts}) is below the ${named.retries} retries a fallback to pool "${named.pool}" may need (each skipped pool takes an attempt, without calling its provider): raise it to ${named.retries} or remove it`);
    }
  }

  const priorities: PriorityIR[] = [];
  const priorityStatus: PriorityStatus[] = [];
  /** Pool name → the Envoy priority a fallback naming it goes to. */
  const levelOfPool = new Map<string, number>();
  const specPriorities = backend.spec.ai?.multipool?.priorities ?? [];
  pools.forEach((pool, p) => {
    const poolName = specPriorities[p]?.name;
    if (poolName !== undefined) levelOfPool.set(poolName, priorities.length);
    const members: MemberIR[] = [];
    const memberStatus: MemberStatus[] = [];
    for (const c of pool) {
      const res = c.vendorCredential
        ? resolveVendorCredential(c.vendorCredential, { namespace, member: c.name, secrets })
        : resolveCredential(c.token, { namespace, backend: name, member: c.name, secrets });
      if (!res.ok) {
        memberStatus.push({ name: c.name, provider: c.provider, usable: false, reason: res.reason, message: res.message });
        refProblems.push({ reason: res.reason, message: res.message });
        events.push({ object: { kind: 'Backend', namespace, name }, reason: res.reason, message: res.message });
        continue;
      }
      const common = c.modelOnly && c.provider !== 'static' && drill?.ok !== true && c.vendorCredential === undefined && res.kind === 'SecretRef' && res.secret !== undefined;
      const shape = common ? commonShape(c) : undefined;
      if (shape !== undefined && res.kind === 'SecretRef' && res.secret !== undefined) {
        // The common member (a model and a key from a Secret): one object, with the facts members
        // alike share in one shape (ir/common-member.ts), where its metadata was a second object.
        members.push(new CommonAiMember(c.name, c.member.address, c.member.hostname, key, priorities.length, res.credential.name, res.secret, shape));
        credentials.set(res.credential.name, res.credential);
        if (res.warning) warnings.push(res.warning);
      } else {
        // The candidate's objects become the IR in place: spreading them into copies and then adding
        // properties gave every member's metadata a hidden class of its own, which cost a third of
        // translate() at 10k Backends. The key order (priority after the provider's keys) is unchanged.
        const metadata: MemberIR['metadata'] = Object.assign(c.member.metadata, { priority: priorities.length });
        if (c.provider !== 'static') metadata.authKind = c.vendorCredential?.kind ?? res.kind;
        if (drill?.ok === true) metadata.drillKey = drill.credential.name;
        if (res.kind === 'SecretRef' || res.kind === 'Inline') {
          credentials.set(res.credential.name, res.credential);
          metadata.credential = res.credential.name;
          if (res.secret) metadata.secret = res.secret;
          if (res.warning) warnings.push(res.warning);
        }
        members.push(Object.assign(c.member, { metadata }));
      }
      memberStatus.push({ name: c.name, provider: c.provider, usable: true });
    }
    const status: PriorityStatus = { priority: p, members: compact(memberStatus) };
    if (members.length > 0) {
      status.envoyPriority = priorities.length;
      priorities.push({ level: priorities.length, members: compact(members) });
    }
    priorityStatus.push(status);
  });

  for (const [name, level] of levelOfPool) if (level >= priorities.length) levelOfPool.delete(name);
  for (const member of priorities.flatMap((p) => p.members)) {
    const fallbacks = member.metadata.fallbacks;
    if (fallbacks === undefined || !fallbacks.includes('>')) continue;
    const resolved = resolveNamedFallbacks(fallbacks, levelOfPool);
    if (resolved === undefined) delete member.metadata.fallbacks;
    else member.metadata.fallbacks = resolved;
  }

  const all = pools.flat();
  const usable = priorities.reduce((n, p) => n + p.members.length, 0);
  const conditions: Condition[] = [
    condition('Accepted', true, 'Accepted', warnings.length > 0 ? `Backend is valid; warning: ${warnings.join('; ')}` : 'Backend is valid', generation),
  ];
  if (refProblems.length === 0) {
    conditions.push(condition('ResolvedRefs', true, 'ResolvedRefs', 'all references are resolved', generation));
  } else {
    conditions.push(condition('ResolvedRefs', false, refProblems[0]?.reason ?? 'SecretNotFound', refProblems.map((r) => r.message).join('; '), generation));
  }

  let cluster: ClusterIR | undefined;
  let unavailable: string | undefined;
  if (usable === 0) {
    unavailable = `Backend ${key} has no usable member: ${refProblems.map((r) => r.message).join('; ') || 'no members'}`;
    conditions.push(condition('Programmed', false, 'NoUsableMembers', `requests answer 503: ${unavailable}`, generation));
  } else {
    const everyIp = priorities.every((p) => p.members.every((m) => isIP(m.address) !== 0));
    cluster = {
      name: clusterNameForBackend(namespace, name),
      backend: { namespace, name },
      discovery: everyIp && !sharesAnEndpoint(priorities) ? 'eds' : 'dns',
      connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
      priorities: compact(priorities),
    };
    if (backend.spec.type === 'AI') cluster.ai = shared({ requestBodyLimitBytes: DEFAULT_AI_REQUEST_BODY_LIMIT });
    const outlier = outlierPlan(backend.spec.outlierDetection, multi);
    if (outlier) cluster.outlierDetection = shared(outlier);
    if (priorities.some((p) => p.members.some((m) => m.tls))) {
      const tls = backend.spec.static?.tls;
      cluster.tls = { insecureSkipVerify: tls?.insecureSkipVerify ?? false, ...(tls?.sni ? { sniOverride: tls.sni } : {}) };
    }
    conditions.push(condition('Programmed', false, 'Pending', 'waiting for a connected Envoy to acknowledge the configuration', generation));
  }

  return {
    key,
    retry: shared(retry),
    credentials: compact([...credentials.values()]),
    events: events.length > 0 ? compact(events) : shared([]),
    ...(cluster ? { cluster } : {}),
    ...(cluster && backend.spec.type === 'AI' ? { models: servedModels(backend, cluster, key) } : {}),
    ...(unavailable ? { unavailable } : {}),
    status: { kind: 'Backend', namespace, name, ...identity, conditions: shared(compact(conditions)), priorities: shared(compact(priorityStatus)), servedPriorities: priorities.length, usableMembers: usable, totalMembers: all.length },
  };
}
