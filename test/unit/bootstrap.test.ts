import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REGEX_PROGRAM_SIZE_LIMIT } from '../../src/api/httproute.js';
import { buildBootstrap, EXT_PROC_GRACEFUL_CLOSE, XDS_CLUSTER_NAME } from '../../src/envoy/bootstrap.js';
import type { JsonObject } from '../../src/envoy/resources.js';
import { createPki, type Pki } from '../support/certs.js';
import { envoyBinaryPath, requireEnvoyBinary } from '../support/envoy.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'switchyard-bootstrap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the real Envoy in validate mode; resolves with its exit code and output. */
async function validate(bootstrap: JsonObject, file: string): Promise<{ code: number; output: string }> {
  requireEnvoyBinary();
  const path = join(dir, file);
  writeFileSync(path, JSON.stringify(bootstrap));
  try {
    const { stdout, stderr } = await run(envoyBinaryPath(), ['--mode', 'validate', '-c', path, '--disable-hot-restart', '-l', 'warning']);
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

function at(value: unknown, ...path: (string | number)[]): unknown {
  let v = value;
  for (const key of path) v = (v as Record<string | number, unknown> | undefined)?.[key];
  return v;
}

describe('buildBootstrap', () => {
  const base = { xds: { host: '127.0.0.1', port: 18000 }, nodeId: 'gw-1', adminPort: 19000 };

  it.each([
    ['SotW over an IP', { ...base }],
    ['delta over an IP', { ...base, delta: true }],
    ['SotW over a hostname', { ...base, xds: { host: 'localhost', port: 18000 } }],
    ['delta over a hostname', { ...base, xds: { host: 'switchyard.switchyard-system.svc', port: 18000 }, delta: true }],
    ['naming the Gateway it serves', { ...base, gateway: 'ai/edge' }],
  ])('is accepted by the real Envoy in validate mode: %s', async (label, opts) => {
    const result = await validate(buildBootstrap(opts), `${label.replace(/\W+/g, '-')}.json`);
    expect(result.output).not.toMatch(/\]\[(warning|error|critical)\]/);
    expect(result.code, result.output).toBe(0);
  });

  it('fails validation when Envoy meets a field it does not know (the check can fail)', async () => {
    const broken = buildBootstrap(base);
    (broken['dynamic_resources'] as JsonObject)['ads_config'] = { api_type: 'GRPC_SOMETHING' };
    const result = await validate(broken, 'broken.json');
    expect(result.code).toBe(1);
    expect(result.output).toContain('GRPC_SOMETHING');
  });

  it('reports load (LRS) to the controller over the xDS cluster unless told not to', () => {
    expect(at(buildBootstrap(base), 'cluster_manager', 'load_stats_config')).toEqual({
      api_type: 'GRPC',
      transport_api_version: 'V3',
      grpc_services: [{ envoy_grpc: { cluster_name: XDS_CLUSTER_NAME } }],
      set_node_on_first_message_only: true,
    });
    expect(buildBootstrap({ ...base, loadReporting: false })['cluster_manager']).toBeUndefined();
  });

  it('selects SotW or delta ADS and sources LDS and CDS from ADS', () => {
    const sotw = buildBootstrap(base);
    const delta = buildBootstrap({ ...base, delta: true });
    expect(at(sotw, 'dynamic_resources', 'ads_config', 'api_type')).toBe('GRPC');
    expect(at(delta, 'dynamic_resources', 'ads_config', 'api_type')).toBe('DELTA_GRPC');
    for (const b of [sotw, delta]) {
      expect(at(b, 'dynamic_resources', 'ads_config', 'grpc_services', 0, 'envoy_grpc', 'cluster_name')).toBe(XDS_CLUSTER_NAME);
      expect(at(b, 'dynamic_resources', 'lds_config')).toEqual({ ads: {}, resource_api_version: 'V3' });
      expect(at(b, 'dynamic_resources', 'cds_config')).toEqual({ ads: {}, resource_api_version: 'V3' });
    }
  });

  it('raises Envoy\'s RE2 program size limit (default 100) to the one the translator admits regexes up to', () => {
    expect(at(buildBootstrap(base), 'layered_runtime', 'layers', 0, 'static_layer', 're2.max_program_size.error_level')).toBe(REGEX_PROGRAM_SIZE_LIMIT);
  });

  it('makes Envoy half-close each ext_proc stream instead of resetting it (the AI extension answers with its status)', () => {
    expect(at(buildBootstrap(base), 'layered_runtime', 'layers', 0, 'static_layer', EXT_PROC_GRACEFUL_CLOSE)).toBe(true);
  });

  it('names the node and keeps the admin API on loopback unless told otherwise', () => {
    const b = buildBootstrap({ ...base, nodeCluster: 'edge' });
    expect(b['node']).toEqual({ id: 'gw-1', cluster: 'edge', metadata: { 'switchyard.dev/attempt-facts': '1' } });
    expect(at(b, 'admin', 'address', 'socket_address')).toEqual({ address: '127.0.0.1', port_value: 19000 });
    expect(at(buildBootstrap({ ...base, adminHost: '0.0.0.0' }), 'admin', 'address', 'socket_address', 'address')).toBe('0.0.0.0');
  });

  it('names the Gateway the Envoy serves in node metadata', () => {
    expect(buildBootstrap({ ...base, gateway: 'ai/edge' })['node']).toEqual({ id: 'gw-1', cluster: 'switchyard', metadata: { 'switchyard.dev/gateway': 'ai/edge', 'switchyard.dev/attempt-facts': '1' } });
    expect(() => buildBootstrap({ ...base, gateway: 'edge' })).toThrow(/gateway: a Gateway is named "namespace\/name", got "edge"/);
    expect(() => buildBootstrap({ ...base, gateway: 'ai/' })).toThrow(/gateway/);
  });

  it('resolves a hostname controller with STRICT_DNS and an IP with STATIC, over HTTP/2', () => {
    const ip = at(buildBootstrap(base), 'static_resources', 'clusters', 0) as JsonObject;
    const dns = at(buildBootstrap({ ...base, xds: { host: 'switchyard.svc', port: 18000 } }), 'static_resources', 'clusters', 0) as JsonObject;
    expect(ip['type']).toBe('STATIC');
    expect(dns['type']).toBe('STRICT_DNS');
    expect(at(dns, 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address')).toEqual({
      address: 'switchyard.svc',
      port_value: 18000,
    });
    const options = at(ip, 'typed_extension_protocol_options', 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions');
    expect(at(options, 'explicit_http_config', 'http2_protocol_options')).toBeDefined();
  });

  describe('with xdsTls', () => {
    let pki: Pki;
    let files: { caFile: string; certFile: string; keyFile: string };
    beforeAll(() => {
      pki = createPki('bootstrap');
      const d = pki.issue('envoy', { usage: ['clientAuth'] });
      files = { caFile: join(d, 'ca.crt'), certFile: join(d, 'tls.crt'), keyFile: join(d, 'tls.key') };
    });
    afterAll(() => pki?.remove());

    it.each([
      ['over an IP', { ...base }],
      ['over a hostname, delta', { ...base, xds: { host: 'switchyard.switchyard-system.svc', port: 18000 }, delta: true }],
    ])('is accepted by the real Envoy in validate mode (files exist): %s', async (label, opts) => {
      const result = await validate(buildBootstrap({ ...opts, xdsTls: files }), `tls-${label.replace(/\W+/g, '-')}.json`);
      expect(result.output).not.toMatch(/\]\[(warning|error|critical)\]/);
      expect(result.code, result.output).toBe(0);
    });

    it('adds only an UpstreamTlsContext to the xDS cluster: SNI and SAN for a hostname, SAN by IP for an address', () => {
      for (const host of ['127.0.0.1', 'switchyard.svc']) {
        const plain = buildBootstrap({ ...base, xds: { host, port: 18000 } });
        const tls = buildBootstrap({ ...base, xds: { host, port: 18000 }, xdsTls: files });
        const cluster = at(tls, 'static_resources', 'clusters', 0) as JsonObject;
        const { transport_socket: socket, ...rest } = cluster;
        expect(rest).toEqual(at(plain, 'static_resources', 'clusters', 0));
        expect({ ...tls, static_resources: {} }).toEqual({ ...plain, static_resources: {} });
        const context = at(socket, 'typed_config') as JsonObject;
        expect(context['sni']).toBe(host === '127.0.0.1' ? undefined : host);
        expect(at(context, 'common_tls_context', 'validation_context')).toEqual({
          trusted_ca: { filename: files.caFile },
          match_typed_subject_alt_names: [{ san_type: host === '127.0.0.1' ? 'IP_ADDRESS' : 'DNS', matcher: { exact: host } }],
        });
        expect(at(context, 'common_tls_context', 'tls_certificates')).toEqual([{ certificate_chain: { filename: files.certFile }, private_key: { filename: files.keyFile } }]);
      }
      expect(JSON.stringify(buildBootstrap(base))).not.toContain('transport_socket');
    });
  });

  it('rejects values Envoy would refuse, naming the field', () => {
    expect(() => buildBootstrap({ ...base, nodeId: '' })).toThrow(/nodeId/);
    expect(() => buildBootstrap({ ...base, xds: { host: '127.0.0.1', port: 0 } })).toThrow(/xds\.port/);
    expect(() => buildBootstrap({ ...base, adminPort: 70000 })).toThrow(/adminPort/);
  });
});
