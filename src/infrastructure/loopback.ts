import { isIPv4 } from 'node:net';
import type { GatewayIR } from '../ir/model.js';

/** Where Gateways without spec.addresses get their loopback address from: 127.0.10.1 upwards. */
export const FIRST_ALLOCATED_ADDRESS = '127.0.10.1';

export interface Placement {
  /** "namespace/name" -> the loopback IPv4 address its Envoy's listeners bind. */
  addresses: Map<string, string>;
  /** "namespace/name" -> why it has no address (its spec.addresses cannot be honoured on this host). */
  unusable: Map<string, string>;
}

export function gatewayKey(g: { namespace: string; name: string }): string {
  return `${g.namespace}/${g.name}`;
}

function toNumber(ip: string): number {
  return ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
}

function toAddress(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
}

function isLoopbackV4(value: string): boolean {
  return isIPv4(value) && value.startsWith('127.');
}

/**
 * One loopback address per Gateway, stable: spec.addresses (type IPAddress, in 127.0.0.0/8) are
 * honoured first; a Gateway keeps the address it had (`previous`, kept across restarts by the
 * caller); the others get the lowest free address from FIRST_ALLOCATED_ADDRESS, skipping .0 and
 * .255 so that no address looks like a network or broadcast address to a reader. Pure.
 */
export function placeGateways(gateways: readonly GatewayIR[], previous: ReadonlyMap<string, string>, first = FIRST_ALLOCATED_ADDRESS): Placement {
  const sorted = [...gateways].sort((a, b) => (gatewayKey(a) < gatewayKey(b) ? -1 : gatewayKey(a) > gatewayKey(b) ? 1 : 0));
  const addresses = new Map<string, string>();
  const unusable = new Map<string, string>();
  const owner = new Map<string, string>();
  const claim = (key: string, ip: string): void => {
    addresses.set(key, ip);
    owner.set(ip, key);
  };

  const unplaced: GatewayIR[] = [];
  for (const g of sorted) {
    const key = gatewayKey(g);
    if (g.addresses.length === 0) {
      unplaced.push(g);
      continue;
    }
    const problems: string[] = [];
    let placed = false;
    g.addresses.forEach((a, i) => {
      if (placed) return;
      const field = `spec.addresses[${i}]`;
      if (a.type !== 'IPAddress') problems.push(`${field} is of type ${a.type}; only IPAddress can be bound on this host`);
      else if (!isLoopbackV4(a.value)) problems.push(`${field} ${a.value} is not a loopback IPv4 address (127.0.0.0/8)`);
      else if (owner.has(a.value)) problems.push(`${field} ${a.value} is already the address of Gateway ${owner.get(a.value) ?? ''}`);
      else {
        claim(key, a.value);
        placed = true;
      }
    });
    if (!placed) {
      unusable.set(key, `${problems.join('; ')}: the Host infrastructure runs this Gateway's Envoy on this machine; set an unused address in 127.0.0.0/8, or remove spec.addresses to get one assigned`);
    }
  }

  const fresh: GatewayIR[] = [];
  for (const g of unplaced) {
    const key = gatewayKey(g);
    const before = previous.get(key);
    if (before !== undefined && isLoopbackV4(before) && !owner.has(before)) claim(key, before);
    else fresh.push(g);
  }

  let next = toNumber(first);
  for (const g of fresh) {
    for (;;) {
      const candidate = toAddress(next++);
      const last = candidate.split('.')[3];
      if (last === '0' || last === '255' || owner.has(candidate)) continue;
      if (!candidate.startsWith('127.')) throw new Error('no loopback address left for a Gateway: 127.0.0.0/8 is used up');
      claim(gatewayKey(g), candidate);
      break;
    }
  }
  return { addresses, unusable };
}
