import { afterEach, describe, expect, it } from 'vitest';
import { TypeUrl } from '../../src/envoy/resources.js';
import { createLogger } from '../../src/observability/logger.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { RawAdsClient } from '../support/raw-ads.js';
import { waitFor } from '../support/wait.js';

/**
 * A stream's log lines carry the stream's bindings (stream, kind, role), though its child logger
 * is made only when the stream logs at an enabled level (server.ts, streamLogger): a fleet that
 * connects at info level pays for no child per stream.
 */

const servers: XdsServer[] = [];
const clients: RawAdsClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const server of servers.splice(0)) await server.stop();
});

async function serverLogging(level: 'info' | 'debug'): Promise<{ port: number; lines: () => Record<string, unknown>[] }> {
  const written: string[] = [];
  const server = new XdsServer({ cache: new SnapshotCache(), logger: createLogger({ level }, { write: (line: string) => void written.push(line) }) });
  servers.push(server);
  const port = await server.start({ port: 0, host: '127.0.0.1' });
  return { port, lines: () => written.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

describe.each(['sotw', 'delta'] as const)('xDS stream logs, %s', (variant) => {
  it('at info: no line per connection from the server, and a refusal names the stream', async () => {
    const { port, lines } = await serverLogging('info');
    const client = new RawAdsClient({ address: `127.0.0.1:${port}` }, variant);
    clients.push(client);
    client.send({ node: { id: 'edge-1', cluster: 'edge' }, type_url: TypeUrl.cluster });
    // No type_url: the server refuses the stream and says why, at warn.
    client.send({});
    await client.waitForFailure();
    await waitFor(() => lines().some((l) => l['msg'] === 'xds: undecodable request; closing the stream'), { what: 'the refusal to be logged' });
    const refusal = lines().find((l) => l['msg'] === 'xds: undecodable request; closing the stream');
    expect(refusal).toMatchObject({ level: 40, kind: variant, role: 'anonymous', stream: expect.any(Number) as unknown });
    expect(lines().map((l) => l['msg'])).not.toContain('xds: client connected');
  });

  it('at debug: the connection line, with the stream bindings', async () => {
    const { port, lines } = await serverLogging('debug');
    const client = new RawAdsClient({ address: `127.0.0.1:${port}` }, variant);
    clients.push(client);
    client.send({ node: { id: 'edge-2', cluster: 'edge' }, type_url: TypeUrl.cluster });
    await waitFor(() => lines().some((l) => l['msg'] === 'xds: client connected'), { what: 'the connection line' });
    expect(lines().find((l) => l['msg'] === 'xds: client connected')).toMatchObject({ level: 20, node: 'edge-2', kind: variant, role: 'anonymous', stream: expect.any(Number) as unknown });
  });
});
