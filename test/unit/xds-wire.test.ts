import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeResource, messageType } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource } from '../../src/envoy/resources.js';
import {
  decodeDeltaDiscoveryRequest,
  decodeDiscoveryRequest,
  deltaReplyAt,
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

  it("reads the Gateway and the member facts format from an Envoy's node metadata", () => {
    const type = messageType('envoy.service.discovery.v3.DiscoveryRequest');
    const node = (metadata: Record<string, string>) =>
      decodeDiscoveryRequest(
        type.encode({ node: { id: 'e', cluster: 'c', user_agent_name: 'envoy', metadata: { fields: Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, { stringValue: v }])) } }, type_url: TypeUrl.cluster }).finish(),
      ).node;
    expect(node({ 'switchyard.dev/gateway': 'ai/edge', 'switchyard.dev/attempt-facts': '1' })).toEqual({ id: 'e', cluster: 'c', userAgent: 'envoy', gateway: 'ai/edge', attemptFacts: '1' });
    expect(node({})).toEqual({ id: 'e', cluster: 'c', userAgent: 'envoy' });
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

  it('reads a delta ACK in place inside a larger buffer as the full decoder reads it alone, and leaves anything else to it', () => {
    const type = messageType('envoy.service.discovery.v3.DeltaDiscoveryRequest');
    const encode = (fields: Record<string, unknown>): Buffer => Buffer.from(type.encode(type.fromObject(fields)).finish());
    const messages = [
      encode({ type_url: TypeUrl.cluster, response_nonce: 'd1a' }),
      encode({ response_nonce: 'n'.repeat(200), type_url: TypeUrl.endpoint }),
      encode({ type_url: TypeUrl.cluster, response_nonce: '4', error_detail: { code: 3, message: 'bad' } }),
      encode({ type_url: TypeUrl.endpoint, response_nonce: '5', resource_names_subscribe: ['a'] }),
      encode({ type_url: TypeUrl.cluster }),
    ];
    // As in an HTTP/2 DATA frame: each behind a 5-byte gRPC prefix, the ACK's last byte followed by the next message.
    const frame = Buffer.concat(messages.flatMap((m) => [Buffer.alloc(5, 0xff), m]));
    let at = 0;
    const read = messages.map((m) => {
      const start = at + 5;
      at = start + m.length;
      return deltaReplyAt(frame, start, start + m.length);
    });
    expect(read[0]).toEqual(decodeDeltaDiscoveryRequest(messages[0] as Buffer));
    expect(read[1]).toEqual(decodeDeltaDiscoveryRequest(messages[1] as Buffer));
    expect(read[0]?.typeUrl).toBe(TypeUrl.cluster);
    // A NACK, a subscription, no nonce: not ACKs, for the full decoder.
    expect(read.slice(2)).toEqual([undefined, undefined, undefined]);
    // A length that runs past the end given is not read beyond it.
    expect(deltaReplyAt(frame, 5, 5 + (messages[0] as Buffer).length - 1)).toBeUndefined();
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

  it('builds a DeltaDiscoveryResponse from pre-encoded resources', () => {
    const message = deltaResponse({
      typeUrl: TypeUrl.cluster,
      systemVersion: 'v3',
      resources: [{ name: 'a', version: 'r1', any: anyOf(cluster) }],
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

  it('writes delta responses byte for byte as protobufjs encodes them, sharing runs and each Any held once', () => {
    const big = new Uint8Array(70 * 1024).map((_, i) => (i * 31) % 251);
    const anyBytes = (value: Uint8Array): Uint8Array => messageType('google.protobuf.Any').encode({ type_url: TypeUrl.cluster, value }).finish();
    interface Held { name: string; version: string; any: Uint8Array; keepIn(bytes: Uint8Array): void }
    const resources: Held[] = Array.from({ length: 300 }, (_, i) => {
      const held: Held = {
        name: i === 7 ? 'ü-名前-7' : `cluster-${i}`,
        version: i === 11 ? '' : `v${i}`,
        any: i === 150 ? anyBytes(big) : anyOf({ ...cluster, name: `cluster-${i}` }),
        keepIn(bytes) {
          expect(Buffer.from(bytes).equals(Buffer.from(held.any))).toBe(true);
          held.any = bytes;
        },
      };
      return held;
    });
    // What Switchyard wrote before runs (a protobufjs Writer per Resource, then per response): name, version, resource.
    const expected = (list: readonly Held[], nonce: string): Buffer => {
      const writer = protobuf.Writer.create().uint32(0x0a).string('sv');
      for (const r of list) writer.uint32(0x12).bytes(protobuf.Writer.create().uint32(0x1a).string(r.name).uint32(0x0a).string(r.version).uint32(0x12).bytes(r.any).finish());
      writer.uint32(0x22).string(TypeUrl.cluster);
      for (const name of ['gone', 'gone-too']) writer.uint32(0x32).string(name);
      return Buffer.from(writer.uint32(0x2a).string(nonce).finish());
    };
    const decoded = messageType('envoy.service.discovery.v3.DeltaDiscoveryResponse').toObject(messageType('envoy.service.discovery.v3.DeltaDiscoveryResponse').decode(expected(resources.slice(0, 8), 'x')));
    expect(decoded['resources'][7]).toMatchObject({ name: 'ü-名前-7', version: 'v7' });
    expect(decoded['removed_resources']).toEqual(['gone', 'gone-too']);
    // A SotW body over the same resources first: its runs carry the same field tag and must not be taken for delta runs.
    const sotw = sotwResponseBody(TypeUrl.cluster, 'sv', resources);
    expect(wireBytes(sotw).equals(Buffer.from(messageType('envoy.service.discovery.v3.DiscoveryResponse').encode({ version_info: 'sv', resources: resources.map((r) => messageType('google.protobuf.Any').decode(r.any)), type_url: TypeUrl.cluster }).finish()))).toBe(true);
    const first = deltaResponse({ typeUrl: TypeUrl.cluster, systemVersion: 'sv', resources, removed: ['gone', 'gone-too'], nonce: 'd1' });
    expect(wireBytes(first).equals(expected(resources, 'd1'))).toBe(true);
    // Runs, not a piece per resource, and the 70 KiB Any is not copied.
    expect(first.pieces.length).toBeLessThan(resources.length / 4);
    expect(first.pieces.some((piece) => piece.byteLength === resources[150]?.any.byteLength && piece.buffer === resources[150]?.any.buffer)).toBe(true);
    // Another stream's response with the same resources reuses the same runs; a changed resource costs its own run only.
    const again = deltaResponse({ typeUrl: TypeUrl.cluster, systemVersion: 'sv', resources, removed: ['gone', 'gone-too'], nonce: 'd2' });
    const shared = again.pieces.slice(1, -1);
    expect(shared.every((piece, i) => piece === first.pieces[i + 1])).toBe(true);
    const edited = resources.slice();
    edited[200] = { ...(resources[200] as Held), version: 'v200b', keepIn: () => undefined };
    const next = deltaResponse({ typeUrl: TypeUrl.cluster, systemVersion: 'sv', resources: edited, removed: ['gone', 'gone-too'], nonce: 'd3' });
    expect(wireBytes(next).equals(expected(edited, 'd3'))).toBe(true);
    const reused = next.pieces.filter((piece) => first.pieces.includes(piece)).length;
    expect(reused).toBe(next.pieces.length - 3);
  });

  it('cuts a response of many small resources into a few runs, since every piece is a write per stream', () => {
    // 6,000 Secrets of about 200 bytes (1,000 Backends): 94 runs of 12 KiB at one run in 64 resources.
    const secrets = Array.from({ length: 6000 }, (_, i) => ({ name: `ns/secret-${i}`, version: `v${i}`, any: anyOf({ ...cluster, name: `ns/secret-${i}`.padEnd(170, 'x') }) }));
    for (const message of [sotwResponseBody(TypeUrl.cluster, 'v', secrets), deltaResponse({ typeUrl: TypeUrl.cluster, systemVersion: 'v', resources: secrets, removed: [], nonce: 'n' })]) {
      expect(message.byteLength).toBeGreaterThan(6000 * 190);
      expect(message.pieces.length).toBeLessThan(40);
    }
  });
});
