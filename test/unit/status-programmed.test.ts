import { describe, expect, it } from 'vitest';
import { condition } from '../../src/api/conditions.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { applyXdsFeedback, type FleetTypeFeedback, type ServedAs, type XdsFeedback } from '../../src/status/programmed.js';
import type { GatewayStatus, ObjectStatus } from '../../src/translate/status.js';
import { SHARED_VIEW } from '../../src/xds/cache.js';

/**
 * Which objects a NACK is charged to. Two Gateways, each served as its own listener and
 * RouteConfiguration; Envoy NACKs RDS with a message that may or may not name the resource.
 */

const pending = () => [condition('Accepted', true, 'Accepted', 'ok', 1), condition('Programmed', false, 'Pending', 'not yet', 1)];

function gateway(name: string): GatewayStatus {
  return { kind: 'Gateway', namespace: 'ai', name, conditions: pending(), listeners: [{ name: 'http', attachedRoutes: 1, supportedKinds: [], conditions: pending() }] };
}

const servedAs: ServedAs = new Map([
  ['Gateway/ai/one', { views: ['ai/one', SHARED_VIEW], resources: [{ typeUrl: TypeUrl.listener, names: ['ai/one/8080'] }, { typeUrl: TypeUrl.route, names: ['ai/one/8080'] }] }],
  ['Gateway/ai/two', { views: ['ai/two', SHARED_VIEW], resources: [{ typeUrl: TypeUrl.listener, names: ['ai/two/8081'] }, { typeUrl: TypeUrl.route, names: ['ai/two/8081'] }] }],
]);

function feedback(nackMessage: string): XdsFeedback {
  return {
    views: new Map([[SHARED_VIEW, new Map([
      [TypeUrl.listener, { acked: true, rejected: [] }],
      [TypeUrl.route, { acked: false, rejected: [{ nodeId: 'envoy-1', message: nackMessage }] }],
    ])]]),
  };
}

function programmedOf(statuses: ObjectStatus[], name: string): { status?: string; reason?: string; message?: string } {
  const s = statuses.find((x) => x.name === name);
  return (s && 'conditions' in s ? s.conditions.find((c) => c.type === 'Programmed') : undefined) ?? {};
}

describe('applyXdsFeedback: a NACK', () => {
  it('is charged only to the object whose resource the error names', () => {
    const out = applyXdsFeedback([gateway('one'), gateway('two')], servedAs, feedback('Error adding/updating route config ai/two/8081: duplicate virtual host'));
    expect(programmedOf(out, 'two')).toMatchObject({ status: 'False', reason: 'Rejected' });
    expect(programmedOf(out, 'two').message).toContain('duplicate virtual host');
    expect(programmedOf(out, 'one')).toMatchObject({ status: 'False', reason: 'Pending' });
  });

  it('is charged to every object of the type when the error names none of its resources, even when it contains "/"', () => {
    // Envoy 1.40 passes RE2's error through without the RouteConfiguration's name.
    const out = applyXdsFeedback([gateway('one'), gateway('two')], servedAs, feedback('missing ): ^/v2/(('));
    for (const name of ['one', 'two']) {
      expect(programmedOf(out, name)).toMatchObject({ status: 'False', reason: 'Rejected', message: 'Envoy envoy-1 rejected the configuration: missing ): ^/v2/((' });
      const listener = (out.find((s) => s.name === name) as GatewayStatus).listeners[0];
      expect(listener?.conditions.find((c) => c.type === 'Programmed')).toMatchObject({ status: 'False', reason: 'Rejected' });
    }
  });
});

describe('applyXdsFeedback: per Gateway', () => {
  const acked = (view: string): [string, Map<string, FleetTypeFeedback>] => [view, new Map([
    [TypeUrl.listener, { acked: true, rejected: [] }],
    [TypeUrl.route, { acked: true, rejected: [] }],
  ])];

  it('counts only the Envoys that serve the Gateway', () => {
    const out = applyXdsFeedback([gateway('one'), gateway('two')], servedAs, { views: new Map([acked('ai/one')]) });
    expect(programmedOf(out, 'one')).toMatchObject({ status: 'True', reason: 'Programmed', message: 'acknowledged by the Envoys that serve it' });
    expect(programmedOf(out, 'two')).toMatchObject({ status: 'False', reason: 'Pending', message: 'waiting for a connected Envoy to acknowledge the configuration' });
  });

  it('charges a NACK from one Gateway\'s Envoy to that Gateway only, even when the error names no resource', () => {
    const two: [string, Map<string, FleetTypeFeedback>] = ['ai/two', new Map([[TypeUrl.route, { acked: false, rejected: [{ nodeId: 'envoy-two', message: 'missing ): ^/v2/((' }] }]])];
    const out = applyXdsFeedback([gateway('one'), gateway('two')], servedAs, { views: new Map([acked('ai/one'), two]) });
    expect(programmedOf(out, 'one')).toMatchObject({ status: 'True' });
    expect(programmedOf(out, 'two')).toMatchObject({ status: 'False', reason: 'Rejected' });
  });

  it('charges a NACK that names the second of a Gateway\'s listeners to that Gateway', () => {
    const twoListeners: ServedAs = new Map([
      ['Gateway/ai/one', { views: ['ai/one'], resources: [
        { typeUrl: TypeUrl.listener, names: ['ai/one/8080'] }, { typeUrl: TypeUrl.route, names: ['ai/one/8080'] },
        { typeUrl: TypeUrl.listener, names: ['ai/one/9090'] }, { typeUrl: TypeUrl.route, names: ['ai/one/9090'] },
      ] }],
      ['Gateway/ai/two', servedAs.get('Gateway/ai/two') ?? { views: [], resources: [] }],
    ]);
    const views = new Map([['ai/one', new Map([[TypeUrl.listener, { acked: false, rejected: [{ nodeId: 'envoy-one', message: "error adding listener 'ai/one/9090': cannot bind" }] }]])]]);
    const out = applyXdsFeedback([gateway('one')], twoListeners, { views });
    expect(programmedOf(out, 'one')).toMatchObject({ status: 'False', reason: 'Rejected' });
  });

  it('is Pending while one of the types the object is served as is not ACKed in the view', () => {
    const views = new Map([['ai/one', new Map([[TypeUrl.listener, { acked: true, rejected: [] }], [TypeUrl.route, { acked: false, rejected: [] }]])]]);
    const out = applyXdsFeedback([gateway('one')], servedAs, { views });
    expect(programmedOf(out, 'one')).toMatchObject({ status: 'False', reason: 'Pending' });
  });
});
