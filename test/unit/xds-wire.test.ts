import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeResource, messageType } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource } from '../../src/envoy/resources.js';
import {
  decodeDeltaDiscoveryRequest,
  decodeDiscoveryRequest,
  deltaResourceEntry,
  deltaResponse,
  sotwResponseBody,
  wireBytes,
  withNonce,
} from '../../src/xds/wire.js';

const cluster: EnvoyResource = { '@type': TypeUrl.cluster, name: 'a', type: 'STATIC', connect_timeout: '1s' };
const anyOf = (resource: EnvoyResource): Uint8Array =>
  messageType('google.protobuf.Any').encode({ type_url: resource['@type'], value: encodeResource(resource) }).finish();

describe('xDS wire messages', () => {
  it('reads a NACK whose error_detail carries an Any of a type Switchyard never loaded', () => {
    const type = messageType('envoy.service.discovery.v3.DiscoveryRequest');
    const bytes = type
      .encode({
        version_info: 'v1',
        node: { id: 'envoy-1', cluster: 'gw', user_agent_name: 'envoy' },
        resource_names: ['a', 'b'],
        type_url: TypeUrl.cluster,
        response_nonce: '7',
        error_detail: { code: 3, message: 'bad cluster', details: [{ type_url: 'type.googleapis.com/acme.Unknown', value: new Uint8Array([8, 1]) }] },
      })
      .finish();
    expect(decodeDiscoveryRequest(bytes)).toEqual({
      versionInfo: 'v1',
      node: { id: 'envoy-1', cluster: 'gw', userAgent: 'envoy' },
      resourceNames: ['a', 'b'],
      typeUrl: TypeUrl.cluster,
      responseNonce: '7',
      errorDetail: { code: 3, message: 'bad cluster' },
    });
  });

  it('reads a delta request with initial resource versions', () => {
    const bytes = messageType('envoy.service.discovery.v3.DeltaDiscoveryRequest')
      .encode({ type_url: TypeUrl.endpoint, resource_names_subscribe: ['x'], resource_names_unsubscribe: ['y'], initial_resource_versions: { x: 'v9' } })
      .finish();
    const request = decodeDeltaDiscoveryRequest(bytes);
    expect(request.subscribe).toEqual(['x']);
    expect(request.unsubscribe).toEqual(['y']);
    expect([...request.initialResourceVersions]).toEqual([['x', 'v9']]);
    expect(request.errorDetail).toBeUndefined();
    expect(request.node).toBeUndefined();
  });

  it('reads delta ACKs the short way as protobufjs reads them, and anything else the full way', () => {
    const type = messageType('envoy.service.discovery.v3.DeltaDiscoveryRequest');
    const encode = (fields: Record<string, unknown>): Buffer => Buffer.from(type.encode(type.fromObject(fields)).finish());
    const plain = { node: undefined, subscribe: [], unsubscribe: [], initialResourceVersions: new Map(), errorDetail: undefined };
    const ack = decodeDeltaDiscoveryRequest(encode({ type_url: TypeUrl.cluster, response_nonce: 'd1a' }));
    expect(ack).toEqual({ ...plain, typeUrl: TypeUrl.cluster, responseNonce: 'd1a' });
    // A served type URL is the very string the server's maps are keyed by.
    expect(ack.typeUrl).toBe(TypeUrl.cluster);
    // Field order, a type Switchyard does not serve, a nonce past 127 bytes (two-byte length), inside a larger buffer.
    const long = 'n'.repeat(200);
    const framed = Buffer.concat([Buffer.from([1, 2, 3]), Buffer.concat([encode({ response_nonce: long }), encode({ type_url: 'type.googleapis.com/acme.Thing' })])]);
    expect(decodeDeltaDiscoveryRequest(framed.subarray(3))).toEqual({ ...plain, typeUrl: 'type.googleapis.com/acme.Thing', responseNonce: long });
    expect(decodeDeltaDiscoveryRequest(encode({ type_url: TypeUrl.endpoint, response_nonce: 'é' }))).toEqual({ ...plain, typeUrl: TypeUrl.endpoint, responseNonce: 'é' });
    // A NACK, a subscription alongside the nonce, a node: every field read.
    expect(decodeDeltaDiscoveryRequest(encode({ type_url: TypeUrl.cluster, response_nonce: '4', error_detail: { code: 3, message: 'bad' } }))).toEqual({
      ...plain, typeUrl: TypeUrl.cluster, responseNonce: '4', errorDetail: { code: 3, message: 'bad' },
    });
    expect(decodeDeltaDiscoveryRequest(encode({ type_url: TypeUrl.endpoint, response_nonce: '5', resource_names_subscribe: ['a'] }))).toEqual({
      ...plain, typeUrl: TypeUrl.endpoint, responseNonce: '5', subscribe: ['a'],
    });
    expect(decodeDeltaDiscoveryRequest(encode({ node: { id: 'e1' }, type_url: TypeUrl.cluster, response_nonce: '6' }))).toEqual({
      ...plain, node: { id: 'e1', cluster: '', userAgent: '' }, typeUrl: TypeUrl.cluster, responseNonce: '6',
    });
    // A first request without a nonce, and a type URL given twice (the last one counts in protobuf).
    expect(decodeDeltaDiscoveryRequest(encode({ type_url: TypeUrl.cluster }))).toEqual({ ...plain, typeUrl: TypeUrl.cluster, responseNonce: '' });
    const twice = Buffer.concat([encode({ type_url: TypeUrl.cluster, response_nonce: '7' }), encode({ type_url: TypeUrl.endpoint })]);
    expect(decodeDeltaDiscoveryRequest(twice)).toEqual({ ...plain, typeUrl: TypeUrl.endpoint, responseNonce: '7' });
  });

  it('builds a DiscoveryResponse from a shared body and a per-stream nonce', () => {
    const body = sotwResponseBody(TypeUrl.cluster, 'v2', [{ name: 'a', any: anyOf(cluster) }]);
    expect(decodeMessage('envoy.service.discovery.v3.DiscoveryResponse', wireBytes(withNonce(body, '42')))).toEqual({
      version_info: 'v2',
      resources: [cluster],
      type_url: TypeUrl.cluster,
      nonce: '42',
    });
  });

  it('builds a DeltaDiscoveryResponse from pre-encoded resource entries', () => {
    const message = deltaResponse({
      typeUrl: TypeUrl.cluster,
      systemVersion: 'v3',
      entries: [deltaResourceEntry('a', 'r1', anyOf(cluster))],
      removed: ['gone'],
      nonce: '5',
    });
    expect(decodeMessage('envoy.service.discovery.v3.DeltaDiscoveryResponse', wireBytes(message))).toEqual({
      system_version_info: 'v3',
      resources: [{ name: 'a', version: 'r1', resource: cluster }],
      type_url: TypeUrl.cluster,
      removed_resources: ['gone'],
      nonce: '5',
    });
  });
});
