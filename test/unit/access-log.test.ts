import { describe, expect, it } from 'vitest';
import { WELL_KNOWN_CREDENTIAL_HEADERS } from '../../src/ai-extension/request-headers.js';
import { ACCESS_LOG_FIELDS, AI_ACCESS_LOG_FIELDS } from '../../src/envoy/access-log.js';
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
        // One line per request: the AI one when the extension named the member, else the host's.
        const named = { filter: 'switchyard.dev', path: [{ key: 'member' }] };
        expect(log).toEqual([
          {
            name: 'envoy.access_loggers.stdout',
            filter: { metadata_filter: { matcher: { ...named, value: { present_match: true } }, match_if_key_not_found: false } },
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
              log_format: { json_format: AI_ACCESS_LOG_FIELDS },
            },
          },
          {
            name: 'envoy.access_loggers.stdout',
            filter: { metadata_filter: { matcher: { ...named, value: { null_match: {} } }, match_if_key_not_found: true } },
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

  it('writes the same fields for an AI request, its member as the extension named it', () => {
    expect(Object.keys(AI_ACCESS_LOG_FIELDS)).toEqual(Object.keys(ACCESS_LOG_FIELDS));
    for (const key of ['backend', 'member', 'priority', 'provider', 'model']) {
      expect(AI_ACCESS_LOG_FIELDS[key]).toBe(`%DYNAMIC_METADATA(switchyard.dev:${key})%`);
    }
    const asHost: Record<string, string> = { ...AI_ACCESS_LOG_FIELDS };
    for (const key of ['backend', 'member', 'priority', 'provider', 'model']) asHost[key] = `%UPSTREAM_METADATA(switchyard.dev:${key})%`;
    expect(asHost).toEqual(ACCESS_LOG_FIELDS);
  });

  it('logs no header that can carry a key, and no query string', () => {
    // Dynamic metadata only as the five member facts of our own namespace, which the extension
    // writes (ext_proc accepts no other namespace from it): never a whole namespace or another's.
    const facts = /%DYNAMIC_METADATA\(switchyard\.dev:(backend|member|priority|provider|model)\)%/g;
    const formats = [...Object.values(ACCESS_LOG_FIELDS), ...Object.values(AI_ACCESS_LOG_FIELDS).map((f) => f.replace(facts, ''))].join(' ');
    const headers = [...formats.matchAll(/%(?:REQ|RESP|TRAILER|REQ_WITHOUT_QUERY)\(([^)]+)\)/g)].flatMap((m) => (m[1] ?? '').split(/[?:]/)).map((h) => h.toLowerCase()).filter((h) => h !== '');
    expect(headers.length).toBeGreaterThan(0);
    for (const forbidden of [...WELL_KNOWN_CREDENTIAL_HEADERS, 'cookie', 'set-cookie', 'proxy-authorization', 'path']) expect(headers).not.toContain(forbidden);
    expect(formats).not.toMatch(/%(DYNAMIC_METADATA|FILTER_STATE|REQUEST_HEADERS_BYTES)|%REQ\(:PATH\)/);
    expect(ACCESS_LOG_FIELDS['path']).toMatch(/^%PATH\(WQ:/);
  });
});
