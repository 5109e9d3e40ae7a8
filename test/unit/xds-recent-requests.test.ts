import { describe, expect, it } from 'vitest';
import { encodeMessage } from '../../src/envoy/proto.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import { RecentRequests } from '../../src/xds/server.js';
import { decodeDeltaDiscoveryRequest, type DeltaDiscoveryRequest } from '../../src/xds/wire.js';

const names = Array.from({ length: 200 }, (_, i) => `backend/ai/chat-${i}`);

function request(json: Parameters<typeof encodeMessage>[1]): Buffer {
  return Buffer.from(encodeMessage('envoy.service.discovery.v3.DeltaDiscoveryRequest', json));
}

describe('RecentRequests: a fleet sending the same large request decodes it once', () => {
  it('gives the request decoded from equal bytes, and nothing for other bytes of the same length or for small requests', () => {
    const recent = new RecentRequests<DeltaDiscoveryRequest>();
    const first = request({ type_url: TypeUrl.endpoint, resource_names_subscribe: names });
    const decoded = decodeDeltaDiscoveryRequest(first);
    expect(recent.get(first)).toBeUndefined();
    recent.set(first, decoded);
    // Another stream's bytes: equal content, another Buffer.
    expect(recent.get(Buffer.from(first))).toBe(decoded);
    // The same length, one name differing in its last character.
    const other = request({ type_url: TypeUrl.endpoint, resource_names_subscribe: [...names.slice(0, -1), 'backend/ai/chat-19x'] });
    expect(other.length).toBe(first.length);
    expect(recent.get(other)).toBeUndefined();
    // An ACK is cheaper to decode than to look up: never kept.
    const ack = request({ type_url: TypeUrl.endpoint, response_nonce: 'd1' });
    recent.set(ack, decodeDeltaDiscoveryRequest(ack));
    expect(recent.get(Buffer.from(ack))).toBeUndefined();
  });

  it('keeps a copy of the bytes, not the read they are a view of', () => {
    const recent = new RecentRequests<string>();
    const first = request({ type_url: TypeUrl.endpoint, resource_names_subscribe: names });
    // A request as a socket read hands it over: a view into a larger buffer.
    const read = Buffer.alloc(64 * 1024);
    first.copy(read, 100);
    const view = read.subarray(100, 100 + first.length);
    recent.set(view, 'request');
    read.fill(0);
    expect(recent.get(first)).toBe('request');
    const kept = (recent as unknown as { entries: { bytes: Buffer }[] }).entries[0]?.bytes;
    expect(kept?.buffer.byteLength).toBe(first.length);
  });

  it('keeps the last few only', () => {
    const recent = new RecentRequests<string>();
    const bytes = Array.from({ length: 12 }, (_, i) => request({ type_url: TypeUrl.endpoint, resource_names_subscribe: names.map((n) => `${n}-${i}`) }));
    bytes.forEach((b, i) => recent.set(b, `request ${i}`));
    expect(recent.get(Buffer.from(bytes[11] as Buffer))).toBe('request 11');
    expect(recent.get(Buffer.from(bytes[0] as Buffer))).toBeUndefined();
  });
});
