import type * as http2 from 'node:http2';

/**
 * A raw SotW ADS stream on a node:http2 client session, for the hostile receive-budget tests:
 * its grpc-status (response headers or trailers) recorded when it comes, and its responses counted.
 */

export const SOTW_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

export interface SotwCall {
  stream: http2.ClientHttp2Stream;
  status: () => { code: string; message: string } | undefined;
  responses: () => number;
}

export function sotwCall(s: http2.ClientHttp2Session): SotwCall {
  const stream = s.request({ ':method': 'POST', ':path': SOTW_PATH, 'content-type': 'application/grpc', te: 'trailers' });
  let status: { code: string; message: string } | undefined;
  let responses = 0;
  let pending = Buffer.alloc(0);
  const record = (h: http2.IncomingHttpHeaders): void => {
    if (h['grpc-status'] !== undefined) status ??= { code: String(h['grpc-status']), message: decodeURIComponent(String(h['grpc-message'] ?? '')) };
  };
  stream.on('response', record);
  stream.on('trailers', record);
  stream.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      responses++;
      pending = pending.subarray(5 + pending.readUInt32BE(1));
    }
  });
  stream.on('error', () => undefined);
  return { stream, status: () => status, responses: () => responses };
}

/** Resolves once the server has read everything sent before it on the session (its PING answer follows them). */
export async function pinged(s: http2.ClientHttp2Session): Promise<void> {
  await new Promise<void>((resolve, reject) => s.ping((err) => (err === null ? resolve() : reject(err))));
}
