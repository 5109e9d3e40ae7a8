import { Counter, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import {
  InProcessLimitStore, MemberLimiter, RedisLimitStore, loggedLimitEvents, type LimitKind, type MemberLimits,
} from './limits.js';

/**
 * The extension's side of member limits: the shared limiter, its series, and the gRPC health
 * service Envoy asks about each member (src/envoy/member-limits.ts says why limits are enforced
 * through health checks).
 */

export interface LimitMetrics {
  limited: Counter<'backend' | 'member' | 'limit'>;
  overruns: Counter<'backend' | 'member'>;
  storeFailures: Counter<never>;
}

export function createLimitMetrics(registry: Registry): LimitMetrics {
  const registers = [registry];
  return {
    limited: new Counter({
      name: 'switchyard_ai_member_limited_total',
      help: 'Times a pool member reached its requestsPerMinute or tokensPerMinute (limit: requests or tokens), once per member, minute and AI extension: Envoy stops picking it until the minute is over.',
      labelNames: ['backend', 'member', 'limit'],
      registers,
    }),
    overruns: new Counter({
      name: 'switchyard_ai_member_limit_overruns_total',
      help: 'Attempts a member took past its limit: Envoy picked it before its next health check (every 250 ms) took it out.',
      labelNames: ['backend', 'member'],
      registers,
    }),
    storeFailures: new Counter({
      name: 'switchyard_ai_member_limits_store_failures_total',
      help: 'Calls to the member limit store (--limits-redis) that failed or timed out; limits are not enforced while it fails (fail open).',
      registers,
    }),
  };
}

/** Serves the limit series from another registry too (the controller's, in one process). */
export function registerLimitMetrics(metrics: LimitMetrics, registry: Registry): void {
  registry.registerMetric(metrics.limited);
  registry.registerMetric(metrics.overruns);
  registry.registerMetric(metrics.storeFailures);
}

/** "backend/member" of a member key: the backend is "namespace/name". */
function split(member: string): { backend: string; member: string } {
  const at = member.lastIndexOf('/');
  return { backend: member.slice(0, at), member: member.slice(at + 1) };
}

export interface MemberLimitsRuntime {
  limiter: MemberLimiter;
  metrics: LimitMetrics;
  /** Counts an attempt on a member with limits (never delays it). */
  admit(backend: string, member: string, limits: MemberLimits): void;
  /** Counts an answer's tokens. */
  spend(backend: string, member: string, limits: MemberLimits, tokens: number): void;
  /** grpc.health.v1.Health/Check: the encoded HealthCheckResponse for a check sent with this :authority. */
  checkHealth(authority: string): Promise<Buffer>;
  close(): Promise<void>;
}

/** `limitsRedis`: redis://HOST:PORT shared by every extension; absent: counts in this process only. */
export function startMemberLimits(opts: { limitsRedis?: string; registry: Registry; logger: Logger }): MemberLimitsRuntime {
  const store = opts.limitsRedis !== undefined ? new RedisLimitStore({ url: opts.limitsRedis }) : new InProcessLimitStore();
  const metrics = createLimitMetrics(opts.registry);
  const events = loggedLimitEvents(opts.logger, store.describe, {
    limited: (key: string, kind: LimitKind) => metrics.limited.inc({ ...split(key), limit: kind }),
    storeFailure: () => metrics.storeFailures.inc(),
  });
  const limiter = new MemberLimiter(store, events);
  opts.logger.info({ store: store.describe }, 'ai-extension: member limits counted');
  return {
    limiter,
    metrics,
    admit(backend, member, limits) {
      void limiter.admit(`${backend}/${member}`, limits).then(({ overrun }) => {
        if (!overrun) return;
        metrics.overruns.inc({ backend, member });
        opts.logger.debug({ backend, member }, 'ai-extension: an attempt reached a member past its limit before its health check took it out');
      });
    },
    spend(backend, member, limits, tokens) {
      void limiter.spend(`${backend}/${member}`, tokens, limits);
    },
    async checkHealth(authority) {
      const target = parseLimitsAuthority(authority);
      // Not a member check (another client, a health probe): the extension itself is serving.
      if (target === undefined) return healthResponse(true);
      try {
        return healthResponse((await limiter.state(target.key, target.limits)) === undefined);
      } catch {
        return healthResponse(true);
      }
    },
    close: () => limiter.close(),
  };
}

/** Reads "r<rpm>.t<tpm>.<base64url of backend/member>" (src/envoy/member-limits.ts). */
export function parseLimitsAuthority(authority: string): { key: string; limits: MemberLimits } | undefined {
  const m = /^r(\d+)\.t(\d+)\.([A-Za-z0-9_-]+)(?::\d+)?$/.exec(authority);
  if (m === null) return undefined;
  const rpm = Number(m[1]);
  const tpm = Number(m[2]);
  const key = Buffer.from(m[3] ?? '', 'base64url').toString('utf8');
  if (!key.includes('/')) return undefined;
  return { key, limits: { ...(rpm > 0 ? { requestsPerMinute: rpm } : {}), ...(tpm > 0 ? { tokensPerMinute: tpm } : {}) } };
}

/** grpc.health.v1.HealthCheckResponse{status: SERVING (1) | NOT_SERVING (2)}, encoded by hand: one enum field. */
function healthResponse(serving: boolean): Buffer {
  return Buffer.from([0x08, serving ? 1 : 2]);
}

/** Where Envoy's member checks go (src/envoy/member-limits.ts sends an empty HealthCheckRequest). */
export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';
