import { afterEach, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer, xdsTransportFromEnv } from '../../src/xds/server.js';
import { RawAdsClient } from '../support/raw-ads.js';
import { resources } from '../support/xds-stream.js';

/**
 * SWITCHYARD_XDS_TRANSPORT picks the transport of a server built without one (README: grpc-js
 * is kept one release as the way back). `make test` runs this file, and the hostile-client, TLS,
 * Envoy, LRS and fan-out suites, a second time with SWITCHYARD_XDS_TRANSPORT=grpc-js: this file is
 * what shows that second run really served them on grpc-js, not on the default again.
 */

const servers: XdsServer[] = [];
const clients: RawAdsClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const server of servers.splice(0)) await server.stop();
});

it('reads h2 (the default) or grpc-js, and names the variable in any other value', () => {
  expect(xdsTransportFromEnv({})).toBe('h2');
  expect(xdsTransportFromEnv({ SWITCHYARD_XDS_TRANSPORT: '' })).toBe('h2');
  expect(xdsTransportFromEnv({ SWITCHYARD_XDS_TRANSPORT: 'h2' })).toBe('h2');
  expect(xdsTransportFromEnv({ SWITCHYARD_XDS_TRANSPORT: 'grpc-js' })).toBe('grpc-js');
  expect(() => xdsTransportFromEnv({ SWITCHYARD_XDS_TRANSPORT: 'nghttp2' })).toThrow(/SWITCHYARD_XDS_TRANSPORT takes h2 \(the default\) or grpc-js, got "nghttp2"/);
});

it("serves ADS on the environment's transport when the server is given none", async () => {
  const written: string[] = [];
  const cache = new SnapshotCache();
  cache.setResources(resources());
  const server = new XdsServer({ cache, logger: createLogger({ level: 'info' }, { write: (line: string) => void written.push(line) }) });
  servers.push(server);
  const port = await server.start({ port: 0, host: '127.0.0.1' });
  const listening = written.map((line) => JSON.parse(line) as Record<string, unknown>).find((l) => l['msg'] === 'xds: server listening');
  expect(listening?.['transport']).toBe(xdsTransportFromEnv(process.env));
  const client = new RawAdsClient({ address: `127.0.0.1:${port}` }, 'sotw');
  clients.push(client);
  client.send({ node: { id: 'edge-env', cluster: 'edge' }, type_url: TypeUrl.cluster, resource_names: ['*'] });
  await client.waitForResponse(TypeUrl.cluster);
  expect(client.namesReceived(TypeUrl.cluster).length).toBeGreaterThan(0);
});
