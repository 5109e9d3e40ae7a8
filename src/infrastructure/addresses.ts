import { condition } from '../api/conditions.js';
import type { GatewayAddress, GatewayStatus, ObjectStatus } from '../translate/status.js';
import { dataPlaneName, gatewayKey } from './data-plane-objects.js';

function isGatewayStatus(s: ObjectStatus): s is GatewayStatus {
  return s.kind === 'Gateway' && 'listeners' in s;
}

/**
 * Gateway status with the addresses of its data plane's Service. Until there is one the
 * Gateway is not Programmed (Gateway API: reason AddressNotAssigned), whatever its Envoys ACKed:
 * nothing can reach it yet. Pure; applied after xDS feedback.
 */
export function withGatewayAddresses(statuses: readonly ObjectStatus[], addresses: ReadonlyMap<string, readonly GatewayAddress[]>, namespace: string): ObjectStatus[] {
  return statuses.map((s) => {
    if (!isGatewayStatus(s)) return s;
    const found = addresses.get(gatewayKey(s)) ?? [];
    if (found.length > 0) return { ...s, addresses: found.map((a) => ({ type: a.type, value: a.value })) };
    const conditions = s.conditions.map((c) =>
      c.type === 'Programmed' && c.status === 'True' || c.type === 'Programmed' && c.reason === 'Pending'
        ? condition('Programmed', false, 'AddressNotAssigned', `no address yet: waiting for Service ${namespace}/${dataPlaneName(s)} to get a load balancer or a cluster IP`, c.observedGeneration)
        : c,
    );
    return { ...s, conditions, addresses: [] };
  });
}
