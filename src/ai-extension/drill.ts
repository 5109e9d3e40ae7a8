import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Failover drills (`switchyard drill`): a request carrying a drill header signed with the
 * Backend's drill key asks the extension to fail the attempts of a priority (and of the
 * priorities before it, through which traffic reaches it) itself, so that Envoy's retry policy
 * moves on to the next priority without those priorities' providers being called.
 *
 * Header: `x-switchyard-drill: v1;ts=<unix seconds>;nonce=<hex>;backend=<ns/name>;priority=<n>;sig=<base64url>`
 * where sig = HMAC-SHA256(key, "switchyard-drill-v1\n" + ts + "\n" + nonce + "\n" + backend + "\n" + priority).
 * The backend and priority are signed, so a captured header cannot be replayed against another
 * Backend or pool; the timestamp bounds replay to the window, and a nonce is honoured for one
 * request only (its attempts share it, see DrillNonces).
 */

export const DRILL_HEADER = 'x-switchyard-drill';
/** Set on a drill's answer: which priority and member answered, for the CLI's table. */
export const DRILL_ANSWER_HEADER = 'x-switchyard-drill-answer';
/**
 * On the answer to a drill request that could not be failed over because Envoy had no connection
 * to the drilled member ready (a stand-in then crashes Envoy 1.40): the drill sends it again, as
 * the connection is being made.
 */
export const DRILL_NOT_READY_HEADER = 'x-switchyard-drill-not-ready';
const VERSION = 'v1';
const CONTEXT = 'switchyard-drill-v1';
/** How far a drill header's timestamp may be from the extension's clock. */
export const DRILL_WINDOW_MS = 60_000;

export interface DrillOrder {
  /** The Backend, `namespace/name`. */
  backend: string;
  /** The priority whose attempts the extension fails. */
  priority: number;
  /** Unix time in seconds. */
  ts: number;
  nonce: string;
}

/**
 * What a signed order is for: a drill, or serve's warm-up of a Backend's connections
 * (warmup.ts). Signed in, so a header made for one is never honoured as the other.
 */
export type OrderPurpose = 'drill' | 'warmup';
const CONTEXTS: Record<OrderPurpose, string> = { drill: CONTEXT, warmup: 'switchyard-warmup-v1' };

function signature(key: string, o: DrillOrder, purpose: OrderPurpose): string {
  return createHmac('sha256', key).update(`${CONTEXTS[purpose]}\n${o.ts}\n${o.nonce}\n${o.backend}\n${o.priority}`).digest('base64url');
}

/** A drill order whose signature, freshness and nonce were checked. */
export interface VerifiedDrill extends DrillOrder {
  /** When the request's first attempt brought this header to the extension (ms since the epoch). */
  firstSeenMs: number;
}

/**
 * Status of the answer the extension stands in for a drilled attempt. Not a 5xx: Envoy's outlier
 * detection counts the 5xx of a member, and a drill must not eject the pool it pretends is down.
 * The route retries it for its ABANDONED_HEADER (retriable-headers), whatever its status.
 */
export const DRILL_FAILED_STATUS = 424;

/** The answer header a drill's surviving attempt carries: who answered, and how long failing over took. */
export function drillAnswerHeader(priority: number, member: string, addedMs: number): string {
  return `priority=${priority};member=${member};addedMs=${Math.max(0, Math.round(addedMs))}`;
}

/** Reads drillAnswerHeader's value; undefined when malformed. */
export function parseDrillAnswer(value: string): { priority: number; member: string; addedMs: number } | undefined {
  const fields = new Map(value.split(';').map((p) => [p.slice(0, p.indexOf('=')).trim(), p.slice(p.indexOf('=') + 1).trim()] as const));
  const priority = Number(fields.get('priority'));
  const addedMs = Number(fields.get('addedMs'));
  const member = fields.get('member') ?? '';
  if (!Number.isInteger(priority) || !Number.isFinite(addedMs) || member === '') return undefined;
  return { priority, member, addedMs };
}

/** A signed drill header for `backend` and `priority`, now (or at `nowMs`). */
export function signDrillHeader(key: string, backend: string, priority: number, nowMs = Date.now(), nonce = randomBytes(12).toString('hex'), purpose: OrderPurpose = 'drill'): string {
  const order: DrillOrder = { backend, priority, ts: Math.floor(nowMs / 1000), nonce };
  return `${VERSION};ts=${order.ts};nonce=${nonce};backend=${backend};priority=${priority};sig=${signature(key, order, purpose)}`;
}

/** Why a drill header is ignored (logged once per reason). */
export type DrillRejection = 'malformed' | 'no_key' | 'bad_signature' | 'stale' | 'replayed' | 'other_backend';

/** The header's fields, unverified; undefined when it is not a drill header of this version. */
export function parseDrillHeader(value: string): (DrillOrder & { sig: string }) | undefined {
  const [version, ...parts] = value.split(';');
  if (version?.trim() !== VERSION) return undefined;
  const fields = new Map<string, string>();
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq <= 0) return undefined;
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const ts = Number(fields.get('ts'));
  const priority = Number(fields.get('priority'));
  const nonce = fields.get('nonce') ?? '';
  const backend = fields.get('backend') ?? '';
  const sig = fields.get('sig') ?? '';
  if (!Number.isInteger(ts) || !Number.isInteger(priority) || priority < 0 || !/^[0-9a-f]{16,64}$/.test(nonce) || !/^[^/\s]+\/[^/\s]+$/.test(backend) || sig === '') return undefined;
  return { ts, priority, nonce, backend, sig };
}

/**
 * Nonces already honoured, each bound to the request (x-request-id) that used it and to the
 * attempts Envoy made of it (x-envoy-attempt-count). Every attempt of that request carries the
 * same header (or none, once an attempt took it off), and each comes with a higher attempt count;
 * anything else is a replay, even with the same request id (a client may send its own).
 */
export class DrillNonces {
  private readonly seen = new Map<string, NonceUse>();
  /** Request id to its nonce's use: later attempts no longer carry the header. */
  private readonly requests = new Map<string, NonceUse>();

  constructor(private readonly windowMs = DRILL_WINDOW_MS) {}

  /**
   * When `nonce` was first seen (ms), if it is new, or was first used by `requestId` and this is
   * a later attempt of it; undefined for a replay.
   */
  claim(nonce: string, requestId: string, attempt: number, now: number): number | undefined {
    this.sweep(now);
    const known = this.seen.get(nonce);
    if (known === undefined) {
      // A nonce must outlive every timestamp the window still accepts.
      const use: NonceUse = { requestId, firstSeen: now, lastAttempt: attempt, expires: now + 2 * this.windowMs };
      this.seen.set(nonce, use);
      return now;
    }
    return this.nextAttempt(known, requestId, attempt);
  }

  /** Remembers a verified drill for the request's later attempts. */
  remember(requestId: string, nonce: string, drill: VerifiedDrill): void {
    const use = this.seen.get(nonce);
    if (use === undefined) return;
    use.drill = drill;
    this.requests.set(requestId, use);
  }

  /** Whether a drill is remembered for this request id (forRequest may find one). */
  remembers(requestId: string): boolean {
    return this.requests.has(requestId);
  }

  /** The verified drill of this request, if an earlier attempt brought one and this is a later attempt. */
  forRequest(requestId: string, attempt: number, now: number): VerifiedDrill | undefined {
    // Every attempt asks; with no drill remembered (the usual case) there is nothing to sweep or find.
    if (this.requests.size === 0) return undefined;
    this.sweep(now);
    const use = this.requests.get(requestId);
    if (use === undefined || this.nextAttempt(use, requestId, attempt) === undefined) return undefined;
    return use.drill;
  }

  private nextAttempt(use: NonceUse, requestId: string, attempt: number): number | undefined {
    if (use.requestId !== requestId || attempt <= use.lastAttempt) return undefined;
    use.lastAttempt = attempt;
    return use.firstSeen;
  }

  private sweep(now: number): void {
    // Both maps are in insertion order, which is expiry order.
    for (const [nonce, entry] of this.seen) {
      if (entry.expires > now) break;
      this.seen.delete(nonce);
    }
    for (const [id, entry] of this.requests) {
      if (entry.expires > now) break;
      this.requests.delete(id);
    }
  }
}

interface NonceUse {
  requestId: string;
  firstSeen: number;
  lastAttempt: number;
  expires: number;
  drill?: VerifiedDrill;
}

/**
 * Checks a drill header for the attempt's Backend: the signature with that Backend's drill key
 * (undefined: the Backend names none, or it has not arrived), the timestamp within the window,
 * the nonce unused by another request.
 */
export function verifyDrillHeader(
  value: string,
  input: { backend: string; key: string | undefined; requestId: string; attempt: number; nowMs: number; nonces: DrillNonces; windowMs?: number; purpose?: OrderPurpose },
): VerifiedDrill | { rejected: DrillRejection } {
  const order = parseDrillHeader(value);
  if (order === undefined) return { rejected: 'malformed' };
  if (order.backend !== input.backend) return { rejected: 'other_backend' };
  if (input.key === undefined) return { rejected: 'no_key' };
  const expected = Buffer.from(signature(input.key, order, input.purpose ?? 'drill'));
  const given = Buffer.from(order.sig);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { rejected: 'bad_signature' };
  if (Math.abs(input.nowMs - order.ts * 1000) > (input.windowMs ?? DRILL_WINDOW_MS)) return { rejected: 'stale' };
  // Without a request id every attempt would look like a replay of the first.
  if (input.requestId === '') return { rejected: 'malformed' };
  const firstSeenMs = input.nonces.claim(order.nonce, input.requestId, input.attempt, input.nowMs);
  if (firstSeenMs === undefined) return { rejected: 'replayed' };
  return { backend: order.backend, priority: order.priority, ts: order.ts, nonce: order.nonce, firstSeenMs };
}

/** Logs each kind of ignored drill header once per Backend: a flood of bad headers is one line each. */
export class DrillRejectionLog {
  private readonly logged = new Set<string>();

  /** True the first time this Backend sees this rejection. */
  first(backend: string, reason: DrillRejection): boolean {
    const key = `${backend}\n${reason}`;
    if (this.logged.has(key)) return false;
    this.logged.add(key);
    return true;
  }
}
