import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { AI_EXTENSION_CLUSTER } from '../../src/envoy/ai-extension.js';
import type { EnvoyOptions } from '../../src/envoy/options.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { runPipeline } from '../../src/pipeline.js';
import { ManifestStore, parseManifestFile } from '../../src/providers/manifest-files.js';
import { staticBootstrap } from '../golden/static-bootstrap.js';
import { envoyBinaryPath, requireEnvoyBinary } from '../support/envoy.js';

/**
 * serve running its Envoys gives the AI extension a Unix socket (issue 7): the extension's cluster
 * and the member-limit health checks (which Envoy sends to the extension) then name a `pipe`, and
 * no TCP address of the extension is left in the configuration. The real Envoy accepts it.
 */

const SOCKET = '/run/switchyard/0123456789abcdef/ext-proc.sock';
const CASE = join(import.meta.dirname, '../golden/ai-member-limits.in.yaml');

function resources(aiExtension: EnvoyOptions['aiExtension']): ReturnType<typeof runPipeline>['xds'] {
  const file = { name: 'ai-member-limits.in.yaml', documents: parseManifestFile('ai-member-limits.in.yaml', readFileSync(CASE, 'utf8')) };
  const { inputs, problems } = new ManifestStore().build([file]);
  expect(problems).toEqual([]);
  return runPipeline(inputs, { aiExtension }).xds;
}

/** Every health_check_config.address of the endpoints, in clusters and in ClusterLoadAssignments. */
function healthCheckAddresses(xds: ReturnType<typeof runPipeline>['xds']): unknown[] {
  const assignments = [...xds.endpoints, ...xds.clusters.map((c) => c['load_assignment'] as JsonObject | undefined).filter((a) => a !== undefined)];
  return assignments
    .flatMap((a) => (a['endpoints'] as JsonObject[] | undefined) ?? [])
    .flatMap((e) => e['lb_endpoints'] as JsonObject[])
    .map((e) => ((e['endpoint'] as JsonObject)['health_check_config'] as JsonObject | undefined)?.['address'])
    .filter((a) => a !== undefined);
}

describe('the AI extension on a Unix socket, in Envoy configuration', () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-ext-proc-pipe-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('names the socket as a pipe in the extension cluster and in every member-limit health check; no TCP address of it is left', () => {
    const xds = resources({ socket: SOCKET });
    const cluster = xds.clusters.find((c) => c['name'] === AI_EXTENSION_CLUSTER);
    expect(cluster).toMatchObject({ type: 'STATIC', load_assignment: { endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: SOCKET } } } }] }] } });
    expect(cluster).not.toHaveProperty('dns_lookup_family');
    const checks = healthCheckAddresses(xds);
    expect(checks.length).toBeGreaterThan(0);
    for (const address of checks) expect(address).toEqual({ pipe: { path: SOCKET } });
    // Over TCP the same case names the extension's port: the check above is not vacuous.
    const tcp = healthCheckAddresses(resources({ host: '127.0.0.1', port: 18001 }));
    expect(tcp[0]).toEqual({ socket_address: { address: '127.0.0.1', port_value: 18001 } });
    expect(JSON.stringify(xds)).not.toContain('18001');
  });

  it('is accepted by the real Envoy (--mode validate)', async () => {
    requireEnvoyBinary();
    const file = join(dir, 'bootstrap.json');
    writeFileSync(file, JSON.stringify(staticBootstrap(resources({ socket: SOCKET }))));
    const run = promisify(execFile);
    const { stdout, stderr } = await run(envoyBinaryPath(), ['--mode', 'validate', '-c', file, '--disable-hot-restart', '-l', 'warning']);
    expect(stdout + stderr).toContain('OK');
  });
});
