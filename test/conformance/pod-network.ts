import { execFile } from 'node:child_process';

/**
 * Pod networking for the conformance node agent: one host bridge with the node's address, one
 * network namespace per pod joined to it by a veth pair. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN):
 * CI runs as root. Loopback would not do: the API server refuses loopback addresses in
 * EndpointSlices. The /24 (default TEST-NET-2, 198.51.100.0/24, RFC 5737) is split: .1 is the node
 * (the bridge), .2-.126 are pods, .128/25 is left to the Host infrastructure provider, which adds
 * Gateway addresses on the same bridge. TEST-NET-1 is not the default: some sandboxes (this one)
 * use 192.0.2.0/24 for their own uplink, so the agent refuses a subnet any host route overlaps.
 */
export interface PodNetworkConfig {
  bridge: string;
  /** The node's address on the bridge, the pods' default gateway. */
  hostIp: string;
  prefixLength: number;
  /** First and last pod address (inclusive), same /24 as hostIp. */
  firstPodIp: string;
  lastPodIp: string;
  /** Network namespace and veth names start with this; a stale one from a crashed run is removed at start. */
  namePrefix: string;
}

export const DEFAULT_SUBNET = '198.51.100.0/24';
export const DEFAULT_BRIDGE = 'sy-conf0';

/** The layout above for a /24 given as "A.B.C.0/24". */
export function podNetworkFor(subnet: string, bridge: string): PodNetworkConfig {
  const m = /^(\d+\.\d+\.\d+)\.0\/24$/.exec(subnet);
  if (!m) throw new Error(`--subnet must be a /24 written A.B.C.0/24, got "${subnet}"`);
  const base = m[1] ?? '';
  toInt(`${base}.0`);
  return { bridge, hostIp: `${base}.1`, prefixLength: 24, firstPodIp: `${base}.2`, lastPodIp: `${base}.126`, namePrefix: 'syc' };
}

export function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

const ip = (...args: string[]): Promise<string> => run('ip', args);

function toInt(addr: string): number {
  const parts = addr.split('.').map((p) => Number(p));
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`not an IPv4 address: ${addr}`);
  return parts.reduce((n, p) => n * 256 + p, 0);
}

function toAddr(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

export interface PodAttachment {
  netns: string;
  hostVeth: string;
  ip: string;
}

export class PodNetwork {
  private readonly free: string[] = [];
  private readonly taken = new Set<string>();

  constructor(readonly config: PodNetworkConfig) {
    for (let n = toInt(config.firstPodIp); n <= toInt(config.lastPodIp); n++) this.free.push(toAddr(n));
  }

  /** The bridge with the node address, after removing what a previous run left behind. */
  async setUp(): Promise<void> {
    await this.removeLeftovers();
    const { bridge, hostIp, prefixLength } = this.config;
    await this.refuseOverlap();
    const existing = await ip('-o', 'link', 'show', 'dev', bridge).catch(() => '');
    if (existing === '') await ip('link', 'add', bridge, 'type', 'bridge');
    const addrs = await ip('-o', '-4', 'addr', 'show', 'dev', bridge);
    if (!addrs.includes(` ${hostIp}/`)) await ip('addr', 'add', `${hostIp}/${prefixLength}`, 'dev', bridge);
    await ip('link', 'set', bridge, 'up');
  }

  /** Removes every pod namespace and veth of ours, then the bridge (addresses others added on it go with it). */
  async tearDown(): Promise<void> {
    await this.removeLeftovers();
    await ip('link', 'del', this.config.bridge).catch(() => undefined);
  }

  async attach(podUid: string): Promise<PodAttachment> {
    const address = this.free.shift();
    if (!address) throw new Error(`no free pod address left in ${this.config.firstPodIp}-${this.config.lastPodIp}`);
    this.taken.add(address);
    const id = podUid.replace(/-/g, '').slice(0, 8);
    const netns = `${this.config.namePrefix}-${id}`;
    const hostVeth = `${this.config.namePrefix}h${id}`;
    const podVeth = `${this.config.namePrefix}p${id}`;
    const { bridge, hostIp, prefixLength } = this.config;
    try {
      await ip('netns', 'add', netns);
      await ip('link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', podVeth);
      await ip('link', 'set', podVeth, 'netns', netns);
      await ip('-n', netns, 'link', 'set', podVeth, 'name', 'eth0');
      await ip('-n', netns, 'addr', 'add', `${address}/${prefixLength}`, 'dev', 'eth0');
      await ip('-n', netns, 'link', 'set', 'lo', 'up');
      await ip('-n', netns, 'link', 'set', 'eth0', 'up');
      await ip('-n', netns, 'route', 'add', 'default', 'via', hostIp);
      await ip('link', 'set', hostVeth, 'master', bridge);
      await ip('link', 'set', hostVeth, 'up');
    } catch (err) {
      await this.detach({ netns, hostVeth, ip: address });
      throw err;
    }
    return { netns, hostVeth, ip: address };
  }

  async detach(a: PodAttachment): Promise<void> {
    await ip('link', 'del', a.hostVeth).catch(() => undefined);
    await ip('netns', 'del', a.netns).catch(() => undefined);
    if (this.taken.delete(a.ip)) this.free.push(a.ip);
  }

  /** Taking a subnet the host already routes would cut the machine off (its gateway could become "local"). */
  private async refuseOverlap(): Promise<void> {
    const { bridge, hostIp, prefixLength } = this.config;
    const mask = prefixLength === 0 ? 0 : (~0 << (32 - prefixLength)) >>> 0;
    const ours = (toInt(hostIp) & mask) >>> 0;
    const routes = (await ip('-o', '-4', 'route', 'show', 'table', 'all')).split('\n');
    for (const line of routes) {
      const f = line.trim().split(/\s+/);
      const dev = f[f.indexOf('dev') + 1];
      let dest = f[0] ?? '';
      if (['local', 'broadcast', 'unicast', 'multicast'].includes(dest)) dest = f[1] ?? '';
      if (dest === '' || dest === 'default' || dev === bridge) continue;
      const [addr, len] = dest.split('/');
      if (addr === undefined || !/^\d+\.\d+\.\d+\.\d+$/.test(addr)) continue;
      const theirLen = len === undefined ? 32 : Number(len);
      const common = Math.min(theirLen, prefixLength);
      const m = common === 0 ? 0 : (~0 << (32 - common)) >>> 0;
      if (((toInt(addr) & m) >>> 0) === ((ours & m) >>> 0)) {
        throw new Error(`the pod subnet ${toAddr(ours)}/${prefixLength} overlaps the host route "${line.trim()}"; choose another /24 (--subnet, CONFORMANCE_SUBNET)`);
      }
    }
  }

  private async removeLeftovers(): Promise<void> {
    const prefix = this.config.namePrefix;
    const namespaces = (await ip('netns', 'list').catch(() => ''))
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => n.startsWith(`${prefix}-`));
    for (const ns of namespaces) await ip('netns', 'del', ns).catch(() => undefined);
    const links = (await ip('-o', 'link', 'show').catch(() => ''))
      .split('\n')
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '')
      .filter((n) => n.startsWith(`${prefix}h`));
    for (const link of links) await ip('link', 'del', link).catch(() => undefined);
  }
}
