import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';

/**
 * The controller's own view of whether a member's hostname resolves. Envoy's DNS failures
 * (STRICT_DNS clusters) are only in its admin stats, and a host that never resolved never
 * appears in a load report; so the controller asks its resolver too. That is the same answer as
 * Envoy's only when both use the same DNS (the cluster DNS in Kubernetes, the host's outside):
 * status says "from the controller" for that reason.
 */
export type Resolution = { resolves: true; addresses: readonly string[] } | { resolves: false; code: string };

/** Answers that say the name does not exist; anything else (timeouts, SERVFAIL) says nothing about it. */
const NOT_FOUND = new Set(['ENOTFOUND', 'ENODATA', 'EAI_NONAME', 'EAI_NODATA']);

/** Every address of `host`, as getaddrinfo answers. */
export type Lookup = (host: string) => Promise<readonly string[]>;

export class DnsProbe {
  private readonly known = new Map<string, Resolution>();
  private readonly inFlight = new Set<string>();
  private queue: string[] = [];
  private running: Promise<void> | undefined;
  private readonly probedAt = new Map<string, number>();
  private revision = 0;

  /** Grows by one whenever an answer changed: nothing read from resolution() moved while it stays put. */
  get changes(): number {
    return this.revision;
  }

  /**
   * `concurrency`: getaddrinfo runs on libuv's small thread pool, which file I/O shares.
   * `minIntervalMs`: a host is looked up again at most this often, however often refresh is called.
   */
  constructor(
    private readonly lookup: Lookup = async (host) => (await dns.lookup(host, { all: true })).map((a) => a.address),
    private readonly concurrency = 4,
    private readonly minIntervalMs = 0,
    private readonly clock: () => number = Date.now,
  ) {}

  /** What is known about `host` (undefined until probed, or when the answer was inconclusive). */
  resolution(host: string): Resolution | undefined {
    return this.known.get(host);
  }

  /** Probes these hostnames again (IP addresses are skipped); results arrive in the background. */
  refresh(hosts: Iterable<string>): Promise<void> {
    const wanted = new Set([...hosts].filter((h) => isIP(h) === 0 && h !== ''));
    for (const h of this.known.keys()) if (!wanted.has(h) && this.known.delete(h)) this.revision++;
    for (const h of this.probedAt.keys()) if (!wanted.has(h)) this.probedAt.delete(h);
    const now = this.clock();
    this.queue = [...wanted].filter((h) => !this.inFlight.has(h) && !(now - (this.probedAt.get(h) ?? -Infinity) < this.minIntervalMs));
    // A round still running takes the new queue: never more than `concurrency` lookups at once.
    if (this.running) return this.running;
    const workers: Promise<void>[] = [];
    for (let i = 0; i < this.concurrency; i++) workers.push(this.work());
    this.running = Promise.all(workers).then(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async work(): Promise<void> {
    for (let host = this.queue.shift(); host !== undefined; host = this.queue.shift()) {
      this.inFlight.add(host);
      this.probedAt.set(host, this.clock());
      try {
        this.answer(host, { resolves: true, addresses: await this.lookup(host) });
      } catch (err) {
        const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
        if (NOT_FOUND.has(code)) this.answer(host, { resolves: false, code });
        else if (this.known.delete(host)) this.revision++;
      } finally {
        this.inFlight.delete(host);
      }
    }
  }

  private answer(host: string, r: Resolution): void {
    const was = this.known.get(host);
    this.known.set(host, r);
    const same = was !== undefined && was.resolves === r.resolves && (r.resolves ? was.resolves && was.addresses.join() === r.addresses.join() : !was.resolves && was.code === r.code);
    if (!same) this.revision++;
  }
}
