import { connect, type Socket } from 'node:net';
import type { Logger } from 'pino';

/**
 * Per-member limits (`limits: {requestsPerMinute, tokensPerMinute}` on a pool member), counted in
 * fixed one-minute windows shared by every AI extension (so by every Envoy replica) through a
 * LimitStore: in process for a single `serve`, Redis for a fleet (`--limits-redis`).
 */

export interface MemberLimits {
  requestsPerMinute?: number;
  tokensPerMinute?: number;
}

export type LimitKind = 'requests' | 'tokens';

/** What a member used in one window. */
export interface WindowCounts {
  requests: number;
  tokens: number;
}

export const WINDOW_MS = 60_000;

/** The window `now` falls in: windows start on whole minutes, so every replica agrees on them. */
export function windowOf(now: number): number {
  return Math.floor(now / WINDOW_MS);
}

/** When the window of `now` ends (the member is usable again), in ms since the epoch. */
export function windowEnd(now: number): number {
  return (windowOf(now) + 1) * WINDOW_MS;
}

/** The limit the counts have reached (a member at its limit takes no more), if any. */
export function reachedLimit(counts: WindowCounts, limits: MemberLimits): LimitKind | undefined {
  if (limits.requestsPerMinute !== undefined && counts.requests >= limits.requestsPerMinute) return 'requests';
  if (limits.tokensPerMinute !== undefined && counts.tokens >= limits.tokensPerMinute) return 'tokens';
  return undefined;
}

/** Shared counts per member and window. Every call may fail (a store out of reach): callers fail open. */
export interface LimitStore {
  /** Adds to the member's counts of `window` and returns the counts after the addition. */
  add(member: string, window: number, requests: number, tokens: number): Promise<WindowCounts>;
  read(member: string, window: number): Promise<WindowCounts>;
  close(): Promise<void>;
  /** For logs: where the counts live. */
  readonly describe: string;
}

/** One process's counts: enough when one `serve` runs every Envoy. */
export class InProcessLimitStore implements LimitStore {
  readonly describe = 'in process';
  private readonly counts = new Map<string, { window: number; requests: number; tokens: number }>();

  add(member: string, window: number, requests: number, tokens: number): Promise<WindowCounts> {
    let c = this.counts.get(member);
    if (c === undefined || c.window !== window) {
      // Older windows are dropped as they are passed, so the map holds one entry per member.
      c = { window, requests: 0, tokens: 0 };
      this.counts.set(member, c);
    }
    c.requests += requests;
    c.tokens += tokens;
    return Promise.resolve({ requests: c.requests, tokens: c.tokens });
  }

  read(member: string, window: number): Promise<WindowCounts> {
    const c = this.counts.get(member);
    return Promise.resolve(c?.window === window ? { requests: c.requests, tokens: c.tokens } : { requests: 0, tokens: 0 });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

type RespValue = string | number | null | RespValue[] | Error;

/** Parses RESP2 replies from a growing buffer; returns undefined until a whole reply is there. */
export function parseResp(buf: Buffer, start = 0): { value: RespValue; end: number } | undefined {
  if (start >= buf.length) return undefined;
  const lineEnd = buf.indexOf('\r\n', start);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buf[start] ?? 0);
  const line = buf.toString('utf8', start + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+': return { value: line, end: next };
    case '-': return { value: new Error(line), end: next };
    case ':': return { value: Number(line), end: next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < n; i++) {
        const item = parseResp(buf, at);
        if (item === undefined) return undefined;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`);
  }
}

function encodeCommand(args: readonly (string | number)[]): string {
  let out = `*${args.length}\r\n`;
  for (const a of args) {
    const s = String(a);
    out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  }
  return out;
}

export interface RedisLimitStoreOptions {
  /** redis://[user:password@]host:port[/db] */
  url: string;
  /** A command not answered within this is a failure (the caller fails open). */
  timeoutMs?: number;
  keyPrefix?: string;
}

/**
 * Counts in Redis, shared by every extension that names the same server. RESP over one TCP
 * connection, commands pipelined in order; a broken connection fails what is in flight and the
 * next command dials again.
 */
export class RedisLimitStore implements LimitStore {
  readonly describe: string;
  private readonly host: string;
  private readonly port: number;
  private readonly auth: string[] | undefined;
  private readonly db: number;
  private readonly timeoutMs: number;
  private readonly prefix: string;
  private socket: Socket | undefined;
  private ready: Promise<Socket> | undefined;
  private buffer: Buffer = Buffer.alloc(0);
  private readonly pending: { resolve: (v: RespValue) => void; reject: (e: Error) => void }[] = [];

  constructor(opts: RedisLimitStoreOptions) {
    let url: URL;
    try {
      url = new URL(opts.url);
    } catch {
      throw new Error(`--limits-redis ${JSON.stringify(opts.url)} is not a URL: give redis://HOST:PORT, e.g. redis://127.0.0.1:6379`);
    }
    if (url.protocol !== 'redis:') throw new Error(`--limits-redis ${opts.url}: only redis:// is supported (plain TCP), e.g. redis://127.0.0.1:6379`);
    this.host = url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
    this.port = url.port === '' ? 6379 : Number(url.port);
    const password = decodeURIComponent(url.password);
    const user = decodeURIComponent(url.username);
    this.auth = password !== '' ? (user !== '' ? [user, password] : [password]) : undefined;
    this.db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
    this.timeoutMs = opts.timeoutMs ?? 250;
    this.prefix = opts.keyPrefix ?? 'switchyard:limits:';
    // Never the password: this string goes to logs.
    this.describe = `redis://${this.host}:${this.port}${this.db !== 0 ? `/${this.db}` : ''}`;
  }

  async add(member: string, window: number, requests: number, tokens: number): Promise<WindowCounts> {
    const key = this.key(member, window);
    // Two windows' life: a replica whose clock is a little behind still finds its counts.
    const ttl = 2 * WINDOW_MS;
    const [r, t] = await Promise.all([
      this.command(['HINCRBY', key, 'requests', requests]),
      this.command(['HINCRBY', key, 'tokens', tokens]),
      this.command(['PEXPIRE', key, ttl]),
    ]);
    return { requests: Number(r), tokens: Number(t) };
  }

  async read(member: string, window: number): Promise<WindowCounts> {
    const v = await this.command(['HMGET', this.key(member, window), 'requests', 'tokens']);
    const [r, t] = Array.isArray(v) ? v : [];
    return { requests: Number(r ?? 0), tokens: Number(t ?? 0) };
  }

  close(): Promise<void> {
    this.fail(new Error('limit store closed'));
    this.socket?.destroy();
    this.socket = undefined;
    this.ready = undefined;
    return Promise.resolve();
  }

  private key(member: string, window: number): string {
    return `${this.prefix}${member}:${window}`;
  }

  private async command(args: readonly (string | number)[]): Promise<RespValue> {
    const socket = await this.connection();
    return this.send(socket, args);
  }

  private send(socket: Socket, args: readonly (string | number)[]): Promise<RespValue> {
    return new Promise<RespValue>((resolve, reject) => {
      const timer = setTimeout(() => {
        // Replies come in order: after a lost one the connection cannot be trusted.
        this.drop(new Error(`${this.describe} did not answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.push({
        resolve: (v) => { clearTimeout(timer); if (v instanceof Error) reject(v); else resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      socket.write(encodeCommand(args));
    });
  }

  private connection(): Promise<Socket> {
    if (this.ready !== undefined) return this.ready;
    this.ready = new Promise<Socket>((resolve, reject) => {
      const socket = connect({ host: this.host, port: this.port });
      this.socket = socket;
      socket.setNoDelay(true);
      const timer = setTimeout(() => socket.destroy(new Error(`${this.describe}: no connection within ${this.timeoutMs} ms`)), this.timeoutMs);
      // A socket already replaced (dropped after a timeout) must not drop its successor.
      const current = (): boolean => this.socket === socket;
      socket.on('data', (d: Buffer) => { if (current()) this.onData(d); });
      socket.on('error', (err) => { clearTimeout(timer); if (current()) this.drop(err); reject(err); });
      socket.on('close', () => { if (current()) this.drop(new Error(`${this.describe} closed the connection`)); });
      socket.once('connect', () => {
        clearTimeout(timer);
        const setup: Promise<RespValue>[] = [];
        if (this.auth !== undefined) setup.push(this.send(socket, ['AUTH', ...this.auth]));
        if (this.db !== 0) setup.push(this.send(socket, ['SELECT', this.db]));
        Promise.all(setup).then(() => resolve(socket), (err: unknown) => {
          const e = err instanceof Error ? err : new Error(String(err));
          this.drop(e);
          reject(e);
        });
      });
    });
    // A failed dial is not kept: the next command dials again.
    this.ready.catch(() => undefined);
    return this.ready;
  }

  private onData(d: Buffer): void {
    this.buffer = this.buffer.length === 0 ? d : Buffer.concat([this.buffer, d]);
    let at = 0;
    for (;;) {
      let parsed: { value: RespValue; end: number } | undefined;
      try {
        parsed = parseResp(this.buffer, at);
      } catch (err) {
        this.drop(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (parsed === undefined) break;
      at = parsed.end;
      this.pending.shift()?.resolve(parsed.value);
    }
    this.buffer = this.buffer.subarray(at);
  }

  private drop(err: Error): void {
    this.socket?.destroy();
    this.socket = undefined;
    this.ready = undefined;
    this.buffer = Buffer.alloc(0);
    this.fail(err);
  }

  private fail(err: Error): void {
    for (const p of this.pending.splice(0)) p.reject(err);
  }
}

export interface LimitEvents {
  /** A member was found at a limit (once per member, window and kind). */
  limited(member: string, kind: LimitKind, until: number): void;
  /** The store failed (`first` of an outage): counts are not enforced until it answers again (fail open). */
  storeFailed(err: Error, first: boolean): void;
  storeRecovered(): void;
}

/**
 * Decides per member from the shared counts. Every store failure fails open (the member is
 * usable), with one warning per outage: a limit store out of reach must never stop traffic.
 */
export class MemberLimiter {
  private failing = false;
  private readonly announced = new Set<string>();

  constructor(
    private readonly store: LimitStore,
    private readonly events: LimitEvents,
    private readonly clock: () => number = Date.now,
  ) {}

  get describe(): string {
    return this.store.describe;
  }

  /**
   * Counts one request on the member: the limit it has reached with it, if any, and whether this
   * request was already past a limit (Envoy picked the member before its health check said so).
   */
  async admit(member: string, limits: MemberLimits): Promise<{ reached: LimitKind | undefined; overrun: boolean }> {
    const now = this.clock();
    const counts = await this.guard(() => this.store.add(member, windowOf(now), 1, 0));
    if (counts === undefined) return { reached: undefined, overrun: false };
    const overrun = (limits.requestsPerMinute !== undefined && counts.requests > limits.requestsPerMinute)
      || (limits.tokensPerMinute !== undefined && counts.tokens >= limits.tokensPerMinute);
    return { reached: this.check(member, counts, limits, now), overrun };
  }

  /** Adds the tokens of an answer (from the provider's usage). */
  async spend(member: string, tokens: number, limits: MemberLimits): Promise<void> {
    if (tokens <= 0) return;
    const now = this.clock();
    const counts = await this.guard(() => this.store.add(member, windowOf(now), 0, tokens));
    if (counts !== undefined) this.check(member, counts, limits, now);
  }

  /** The limit the member has reached in the current window, if any (no count added). */
  async state(member: string, limits: MemberLimits): Promise<LimitKind | undefined> {
    const now = this.clock();
    const counts = await this.guard(() => this.store.read(member, windowOf(now)));
    return counts === undefined ? undefined : this.check(member, counts, limits, now);
  }

  close(): Promise<void> {
    return this.store.close();
  }

  private check(member: string, counts: WindowCounts, limits: MemberLimits, now: number): LimitKind | undefined {
    const kind = reachedLimit(counts, limits);
    if (kind !== undefined) {
      const id = `${member}\u0000${windowOf(now)}\u0000${kind}`;
      if (!this.announced.has(id)) {
        if (this.announced.size > 10_000) this.announced.clear();
        this.announced.add(id);
        this.events.limited(member, kind, windowEnd(now));
      }
    }
    return kind;
  }

  private async guard<T>(op: () => Promise<T>): Promise<T | undefined> {
    try {
      const v = await op();
      if (this.failing) {
        this.failing = false;
        this.events.storeRecovered();
      }
      return v;
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      this.events.storeFailed(e, !this.failing);
      this.failing = true;
      return undefined;
    }
  }
}

/** Events logged and counted, as the extension reports them. */
export function loggedLimitEvents(
  logger: Logger,
  store: string,
  counters: { limited: (member: string, kind: LimitKind) => void; storeFailure: () => void },
): LimitEvents {
  return {
    limited: (member, kind, until) => {
      counters.limited(member, kind);
      logger.info({ member, limit: kind, until: new Date(until).toISOString() }, 'AI member at its per-minute limit: skipped until the window ends');
    },
    storeFailed: (err, first) => {
      counters.storeFailure();
      if (first) logger.warn({ store, err: err.message }, 'member limit store unreachable: limits are not enforced (fail open) until it answers');
    },
    storeRecovered: () => logger.info({ store }, 'member limit store answers again: limits enforced'),
  };
}

export function hasLimits(l: MemberLimits | undefined): l is MemberLimits {
  return l !== undefined && (l.requestsPerMinute !== undefined || l.tokensPerMinute !== undefined);
}
