import { describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/resources.js';
import { servesGateway } from '../../src/xds/access.js';

// Stand-in for the dataplane branch's per-Gateway views (servesGateway in src/xds/access.ts):
// delete this file when that branch is merged; its own tests cover the views.
describe('an Envoy that names its Gateway', () => {
  it('gets only its Gateway’s listeners and routes', () => {
    const node = { id: 'n', cluster: 'switchyard', userAgent: 'envoy', gateway: 'a/edge' };
    expect(servesGateway(node, TypeUrl.listener, 'a/edge/8080')).toBe(true);
    expect(servesGateway(node, TypeUrl.listener, 'b/edge/8080')).toBe(false);
    expect(servesGateway(node, TypeUrl.route, 'a/edge-2/8080')).toBe(false);
    expect(servesGateway(node, TypeUrl.cluster, 'backend/b/web')).toBe(true);
    // An Envoy that names no Gateway serves them all, as before.
    expect(servesGateway({ id: 'x', cluster: 'switchyard', userAgent: 'envoy' }, TypeUrl.listener, 'b/edge/8080')).toBe(true);
  });
});
