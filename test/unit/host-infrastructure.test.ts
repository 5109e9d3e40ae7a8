import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { condition } from '../../src/api/conditions.js';
import { CONTROLLER_NAME } from '../../src/api/gateway.js';
import { buildBootstrap, GATEWAY_NODE_METADATA } from '../../src/envoy/bootstrap.js';
import { messageType } from '../../src/envoy/proto.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { findEnvoyBinary, HostInfrastructure, withDataPlaneStatus, type DataPlaneView } from '../../src/infrastructure/host.js';
import { placeGateways } from '../../src/infrastructure/loopback.js';
import type { GatewayIR } from '../../src/ir/model.js';
import { createLogger } from '../../src/observability/logger.js';
import { desiredStatus } from '../../src/status/desired.js';
import type { GatewayStatus, ObjectStatus } from '../../src/translate/status.js';
import { decodeDiscoveryRequest } from '../../src/xds/wire.js';
import { waitFor } from '../support/wait.js';

function gw(namespace: string, name: string, addresses: { type: string; value: string }[] = []): GatewayIR {
  return { namespace, name, className: 'switchyard', addresses };
}

describe('loopback addresses per Gateway', () => {
  it('allocates from 127.0.10.1 in name order and keeps what a Gateway had', () => {
    const first = placeGateways([gw('b', 'edge'), gw('a', 'edge')], new Map());
    expect([...first.addresses]).toEqual([['a/edge', '127.0.10.1'], ['b/edge', '127.0.10.2']]);
    // a/edge is gone and c/edge arrives: b keeps its address, c takes the lowest free one.
    const second = placeGateways([gw('b', 'edge'), gw('c', 'edge')], first.addresses);
    expect(second.addresses.get('b/edge')).toBe('127.0.10.2');
    expect(second.addresses.get('c/edge')).toBe('127.0.10.1');
  });

  it('honours a loopback spec.addresses, and takes it back from a Gateway that only had it allocated', () => {
    const out = placeGateways([gw('a', 'edge'), gw('b', 'edge', [{ type: 'IPAddress', value: '127.0.10.1' }])], new Map([['a/edge', '127.0.10.1']]));
    expect(out.addresses.get('b/edge')).toBe('127.0.10.1');
    expect(out.addresses.get('a/edge')).toBe('127.0.10.2');
    expect(out.unusable.size).toBe(0);
  });

  it('skips .0 and .255 when allocating', () => {
    const out = placeGateways([gw('a', 'x'), gw('a', 'y')], new Map(), '127.0.10.254');
    expect([...out.addresses.values()]).toEqual(['127.0.10.254', '127.0.11.1']);
  });

  it('says which spec.addresses entry cannot be bound on this host, and why', () => {
    const out = placeGateways(
      [
        gw('a', 'edge', [{ type: 'IPAddress', value: '127.0.0.9' }]),
        gw('b', 'edge', [{ type: 'IPAddress', value: '10.0.0.1' }, { type: 'Hostname', value: 'gw.example' }, { type: 'IPAddress', value: '127.0.0.9' }]),
      ],
      new Map(),
    );
    expect(out.addresses.get('a/edge')).toBe('127.0.0.9');
    expect(out.addresses.has('b/edge')).toBe(false);
    const why = out.unusable.get('b/edge') ?? '';
    expect(why).toContain('spec.addresses[0] 10.0.0.1 is not a loopback IPv4 address');
    expect(why).toContain('spec.addresses[1] is of type Hostname');
    expect(why).toContain('spec.addresses[2] 127.0.0.9 is already the address of Gateway a/edge');
    expect(why).toContain('remove spec.addresses');
  });
});

describe('Gateway status from its Envoy', () => {
  const status: GatewayStatus = {
    kind: 'Gateway', namespace: 'a', name: 'edge', listeners: [],
    conditions: [condition('Accepted', true, 'Accepted', 'ok', 2), condition('Programmed', true, 'Programmed', 'acknowledged by 1 Envoy', 2)],
  };
  const plane = (v: Partial<DataPlaneView>): Map<string, DataPlaneView> => new Map([['a/edge', { gateway: 'a/edge', ...v }]]);

  it('carries the address once the Envoy is ready', () => {
    const [out] = withDataPlaneStatus([status], plane({ address: '127.0.10.1', state: 'ready', pid: 7, restarts: 0 })) as GatewayStatus[];
    expect(out?.addresses).toEqual([{ type: 'IPAddress', value: '127.0.10.1' }]);
    expect(out?.conditions.find((c) => c.type === 'Programmed')?.status).toBe('True');
  });

  it('is not Programmed, and has no address, while its Envoy restarts', () => {
    const [out] = withDataPlaneStatus([status], plane({ address: '127.0.10.1', state: 'restarting', lastExit: 'killed by SIGKILL', restarts: 1, log: '/s/envoy.log' })) as GatewayStatus[];
    expect(out?.addresses).toEqual([]);
    const programmed = out?.conditions.find((c) => c.type === 'Programmed');
    expect(programmed).toMatchObject({ status: 'False', reason: 'Pending', observedGeneration: 2 });
    expect(programmed?.message).toContain('killed by SIGKILL');
  });

  it('says AddressNotUsable for an address it cannot bind, and leaves other objects alone', () => {
    const route: ObjectStatus = { kind: 'HTTPRoute', namespace: 'a', name: 'r', parents: [] };
    const [out, same] = withDataPlaneStatus([status, route], plane({ unusable: 'spec.addresses[0] 10.0.0.1 is not a loopback IPv4 address' }));
    expect((out as GatewayStatus).conditions.find((c) => c.type === 'Programmed')).toMatchObject({ status: 'False', reason: 'AddressNotUsable' });
    expect(same).toBe(route);
  });

  it('is written to the Gateway: its addresses replace the ones there, none removes them', () => {
    const object = { metadata: { name: 'edge', namespace: 'a', generation: 2 }, status: { addresses: [{ type: 'IPAddress', value: '127.0.10.9' }] } };
    const ctx = { controllerName: CONTROLLER_NAME, now: '2030-01-01T00:00:00Z' };
    expect(desiredStatus({ ...status, addresses: [{ type: 'IPAddress', value: '127.0.10.1' }] }, object, ctx).addresses).toEqual([{ type: 'IPAddress', value: '127.0.10.1' }]);
    expect(desiredStatus({ ...status, addresses: [] }, object, ctx)).not.toHaveProperty('addresses');
    expect(desiredStatus(status, object, ctx).addresses).toEqual([{ type: 'IPAddress', value: '127.0.10.9' }]);
  });
});

describe('an Envoy that names its Gateway', () => {
  it('says so in its bootstrap node metadata, and reaches xDS over a Unix socket', () => {
    const b = buildBootstrap({ xds: { socket: '/run/sy/ads.sock' }, nodeId: 'host/a/edge', gateway: 'a/edge', adminPort: 0 });
    expect(b.node).toEqual({ id: 'host/a/edge', cluster: 'switchyard', metadata: { [GATEWAY_NODE_METADATA]: 'a/edge', 'switchyard.dev/attempt-facts': '1' } });
    expect(JSON.stringify(b.static_resources)).toContain('"pipe":{"path":"/run/sy/ads.sock"}');
    expect(() => buildBootstrap({ xds: { socket: '/s' }, nodeId: 'x', gateway: 'edge', adminPort: 0 })).toThrow('namespace/name');
  });

  it('is read from the request', () => {
    const type = messageType('envoy.service.discovery.v3.DiscoveryRequest');
    const bytes = type.encode({ node: { id: 'n', cluster: 'switchyard', metadata: { fields: { [GATEWAY_NODE_METADATA]: { stringValue: 'a/edge' } } } }, type_url: TypeUrl.listener }).finish();
    const node = decodeDiscoveryRequest(bytes).node;
    expect(node?.gateway).toBe('a/edge');
  });
});

describe('supervision of an Envoy that will not stay up', () => {
  it('restarts it with a growing back-off and says why in readiness and in the Gateway status', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-host-unit-'));
    // A binary that exits at once stands for an Envoy that crashes at start (a bad flag, a missing library).
    const infra = new HostInfrastructure({ envoyPath: '/bin/false', stateDir: dir, logger: createLogger({ level: 'silent' }), backoff: { initialMs: 20, maxMs: 160, resetAfterMs: 10_000 } });
    try {
      expect([...infra.addresses([gw('a', 'edge')])]).toEqual([['a/edge', '127.0.10.1']]);
      infra.start({ socket: join(dir, 'ads.sock') });
      const started = Date.now();
      const view = await waitFor(() => infra.views().find((v) => (v.restarts ?? 0) >= 6), { what: 'six restarts', timeoutMs: 10_000, intervalMs: 10 });
      // The sixth exit comes after five back-offs: 20 + 40 + 80 + 160 + 160 ms (capped at maxMs).
      expect(Date.now() - started).toBeGreaterThanOrEqual(20 + 40 + 80 + 160 + 160);
      expect(view.lastExit).toBe('exited with code 1');
      const readiness = infra.readiness();
      expect(readiness).toMatchObject({ ready: false });
      expect(typeof readiness === 'object' ? readiness.reason : '').toContain('a/edge');
      const gateway: GatewayStatus = { kind: 'Gateway', namespace: 'a', name: 'edge', listeners: [], conditions: [condition('Programmed', false, 'Pending', 'waiting', 1)] };
      const [out] = infra.statuses([gateway]) as GatewayStatus[];
      expect(out?.addresses).toEqual([]);
      expect(out?.conditions[0]).toMatchObject({ status: 'False', reason: 'Pending' });
      expect(out?.conditions[0]?.message).toMatch(/its Envoy on 127\.0\.10\.1 (exited with code 1 and is being restarted|is starting)/);
      expect(readFileSync(join(dir, 'gateway-addresses.json'), 'utf8')).toContain('"a/edge": "127.0.10.1"');
    } finally {
      await infra.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses an --envoy-path that is not an executable, naming the flag', () => {
    expect(() => findEnvoyBinary('/nonexistent/envoy')).toThrow('--envoy-path /nonexistent/envoy: no executable file there');
  });
});
