/**
 * What the extension must remember about a request between its attempts. Envoy shares one header
 * map across attempts, so once attempt 1 has replaced the client's credential (and path) with a
 * provider's, attempt 2 can no longer read them there: a Passthrough member on attempt 2 needs the
 * client's own credential, kept here under the request's x-request-id (the same on every attempt).
 */
export interface RequestRecord {
  /** The client's credential headers (lower-case name → value), as they arrived. */
  clientCredentials: Map<string, string>;
  /** The client's :path. */
  path: string;
  /** Member of the latest attempt: the next attempt on another member is a failover. */
  lastMember: string;
  lastBackend: string;
  /** When the first attempt reached the extension (ms, performance.now()). */
  startedAt: number;
  /** Attempts seen so far, this one included. */
  attempts: number;
  /** A refusal sent the request to the pool at this Envoy priority: attempts before it are skipped. */
  fallbackTo?: { level: number; cause: string };
  /** The route's num_retries and attempts per priority (ROUTE_RETRIES_HEADER), read on the first attempt. */
  routeRetries?: { retries: number; perPriority: number };
  expires: number;
}

export interface RequestMemoryOptions {
  /** Longest a request is remembered: its whole life, retries included. */
  ttlMs?: number;
  /** A bound for memory, whatever the traffic. */
  maxEntries?: number;
  now?: () => number;
}

export class RequestMemory {
  private readonly records = new Map<string, RequestRecord>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(options: RequestMemoryOptions = {}) {
    this.ttlMs = options.ttlMs ?? 10 * 60_000;
    this.maxEntries = options.maxEntries ?? 50_000;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.records.size;
  }

  get(requestId: string): RequestRecord | undefined {
    const record = this.records.get(requestId);
    if (record === undefined) return undefined;
    if (record.expires < this.now()) {
      this.records.delete(requestId);
      return undefined;
    }
    return record;
  }

  remember(requestId: string, record: Omit<RequestRecord, 'expires'>): RequestRecord {
    this.evict();
    const full = { ...record, expires: this.now() + this.ttlMs };
    this.records.delete(requestId);
    this.records.set(requestId, full);
    return full;
  }

  /** The request is over (its answer is on the way to the client): nothing more to remember. */
  forget(requestId: string): void {
    this.records.delete(requestId);
  }

  private evict(): void {
    const now = this.now();
    // Insertion order is expiry order: the oldest entries sit at the front.
    for (const [id, record] of this.records) {
      if (record.expires >= now && this.records.size < this.maxEntries) break;
      this.records.delete(id);
    }
  }
}
