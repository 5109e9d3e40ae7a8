/**
 * bench/edit-latency.ts's ADS client, in a process of its own so that receiving and decoding a
 * 20 MB CDS response is not counted as serve's CPU or time: raw HTTP/2 (SotW, CDS wildcard), a
 * window large enough that flow control never waits on it. Per CDS response it sends its parent
 * the version and the epoch times (ms) of its first byte and of its last, then ACKs it.
 *
 *   child of edit-latency.ts: argv[2] = serve's xDS port
 */
import http2 from 'node:http2';
import protobuf from 'protobufjs';
import { encodeMessage, messageType } from '../src/envoy/proto.js';
import { TypeUrl } from '../src/envoy/resources.js';

export interface ClientReport {
  typeUrl: string;
  version: string;
  firstByteAt: number;
  completeAt: number;
  bytes: number;
}

const ADS_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const epochMs = (): number => performance.timeOrigin + performance.now();

function frame(json: Parameters<typeof encodeMessage>[1]): Buffer {
  const body = Buffer.from(encodeMessage('envoy.service.discovery.v3.DiscoveryRequest', json));
  const out = Buffer.alloc(body.length + 5);
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

/** The fields an ACK needs, without decoding the resources. */
function envelope(bytes: Uint8Array): { version: string; nonce: string; typeUrl: string } {
  const fields = messageType('envoy.service.discovery.v3.DiscoveryResponse').fields;
  const reader = protobuf.Reader.create(bytes);
  let version = '';
  let nonce = '';
  let typeUrl = '';
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    const id = tag >>> 3;
    if (id === fields['version_info']?.id) version = reader.string();
    else if (id === fields['nonce']?.id) nonce = reader.string();
    else if (id === fields['type_url']?.id) typeUrl = reader.string();
    else reader.skipType(tag & 7);
  }
  return { version, nonce, typeUrl };
}

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) throw new Error(`edit-latency-client: argv[2] must be serve's xDS port, got ${process.argv[2]}`);
const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 64 * 1024 * 1024 } });
session.on('connect', () => session.setLocalWindowSize(256 * 1024 * 1024));
session.on('error', (err) => {
  console.error('edit-latency-client:', err);
  process.exit(1);
});
const stream = session.request({ ':method': 'POST', ':path': ADS_PATH, 'content-type': 'application/grpc', te: 'trailers' });
let chunks: Buffer[] = [];
let have = 0;
let firstByteAt = 0;
stream.on('data', (chunk: Buffer) => {
  const at = epochMs();
  if (have === 0) firstByteAt = at;
  chunks.push(chunk);
  have += chunk.length;
  for (;;) {
    if (have < 5) return;
    if (chunks[0]!.length < 5) chunks = [Buffer.concat(chunks)];
    const length = chunks[0]!.readUInt32BE(1);
    if (have < length + 5) return;
    const whole = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    const e = envelope(whole.subarray(5, 5 + length));
    const report: ClientReport = { typeUrl: e.typeUrl, version: e.version, firstByteAt, completeAt: epochMs(), bytes: length };
    process.send?.(report);
    stream.write(frame({ version_info: e.version, response_nonce: e.nonce, type_url: e.typeUrl }));
    const rest = whole.subarray(5 + length);
    chunks = rest.length > 0 ? [Buffer.from(rest)] : [];
    have = rest.length;
    // What is left of this chunk starts the next message: its first byte came now.
    firstByteAt = at;
  }
});
stream.on('error', (err) => {
  console.error('edit-latency-client:', err);
  process.exit(1);
});
stream.write(frame({ node: { id: 'bench-envoy' }, type_url: TypeUrl.cluster }));
process.on('disconnect', () => process.exit(0));
