import { describe, expect, it } from 'vitest';
import { WELL_KNOWN_CREDENTIAL_HEADERS } from '../../src/ai-extension/request-headers.js';
import { ACCESS_LOG_FIELDS } from '../../src/envoy/access-log.js';
import { toEnvoyListener } from '../../src/envoy/listeners.js';
import { DEFAULT_ENVOY_OPTIONS } from '../../src/envoy/options.js';
import type { ListenerIR } from '../../src/ir/model.js';

const HTTP: ListenerIR = { name: 'ai/gw/80', gateway: { namespace: 'ai', name: 'gw' }, port: 80, protocol: 'HTTP', tls: [], virtualHosts: [] };
const HTTPS: ListenerIR = { ...HTTP, name: 'ai/gw/443', port: 443, protocol: 'HTTPS', tls: [{ certificates: ['ai/cert'], serverNames: [] }, { certificates: ['ai/other'], serverNames: ['b.example'] }] };

type Node = { [key: string]: unknown };

/** The access_log of every HTTP connection manager in a listener. */
function accessLogs(listener: Node): unknown[] {
  const chains = listener['filter_chains'] as { filters: { typed_config: Node }[] }[];
  return chains.flatMap((c) => c.filters.map((f) => f.typed_config['access_log']));
}

describe('access log on Gateway listeners', () => {
  it('is a JSON line on stdout on every filter chain of HTTP and HTTPS listeners by default', () => {
    for (const ir of [HTTP, HTTPS]) {
      const logs = accessLogs(toEnvoyListener(ir, DEFAULT_ENVOY_OPTIONS));
      expect(logs).toHaveLength(ir.protocol === 'HTTP' ? 1 : 2);
      for (const log of logs) {
        expect(log).toEqual([
          {
            name: 'envoy.access_loggers.stdout',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
              log_format: { json_format: ACCESS_LOG_FIELDS },
            },
          },
        ]);
      }
    }
  });

  it('is left out with accessLog off', () => {
    for (const ir of [HTTP, HTTPS]) {
      expect(accessLogs(toEnvoyListener(ir, { ...DEFAULT_ENVOY_OPTIONS, accessLog: 'off' })).every((l) => l === undefined)).toBe(true);
    }
  });

  it('says which member answered, after how many attempts, and why the others failed', () => {
    expect(ACCESS_LOG_FIELDS).toMatchObject({
      response_code: '%RESPONSE_CODE%',
      response_flags: '%RESPONSE_FLAGS%',
      upstream_cluster: '%UPSTREAM_CLUSTER%',
      upstream_host: '%UPSTREAM_HOST%',
      attempts: '%UPSTREAM_REQUEST_ATTEMPT_COUNT%',
      member: '%UPSTREAM_METADATA(switchyard.dev:member)%',
      priority: '%UPSTREAM_METADATA(switchyard.dev:priority)%',
      upstream_transport_failure_reason: '%UPSTREAM_TRANSPORT_FAILURE_REASON%',
      request_id: '%REQ(X-REQUEST-ID)%',
    });
  });

  it('logs no header that can carry a key, and no query string', () => {
    const formats = Object.values(ACCESS_LOG_FIELDS).join(' ');
    const headers = [...formats.matchAll(/%(?:REQ|RESP|TRAILER|REQ_WITHOUT_QUERY)\(([^)]+)\)/g)].flatMap((m) => (m[1] ?? '').split(/[?:]/)).map((h) => h.toLowerCase()).filter((h) => h !== '');
    expect(headers.length).toBeGreaterThan(0);
    for (const forbidden of [...WELL_KNOWN_CREDENTIAL_HEADERS, 'cookie', 'set-cookie', 'proxy-authorization', 'path']) expect(headers).not.toContain(forbidden);
    expect(formats).not.toMatch(/%(DYNAMIC_METADATA|FILTER_STATE|REQUEST_HEADERS_BYTES)|%REQ\(:PATH\)/);
    expect(ACCESS_LOG_FIELDS['path']).toMatch(/^%PATH\(WQ:/);
  });
});
