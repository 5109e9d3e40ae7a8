import { describe, expect, it } from 'vitest';
import { decodeMessage, decodeResource, encodeMessage, encodeResource, messageType } from '../../src/envoy/proto.js';
import { TypeUrl, type EnvoyResource } from '../../src/envoy/resources.js';

const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const HTTP_OPTIONS = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** Written in canonical proto3 JSON (durations with 0/3/6/9 digits) so decode gives it back verbatim. */
function chatCluster(): EnvoyResource {
  return {
    '@type': TypeUrl.cluster,
    name: 'chat',
    type: 'STRICT_DNS',
    connect_timeout: '0.250s',
    dns_lookup_family: 'V4_ONLY',
    load_assignment: {
      cluster_name: 'chat',
      endpoints: [
        {
          locality: { zone: 'openai' },
          lb_endpoints: [
            {
              endpoint: {
                address: { socket_address: { address: 'api.openai.com', port_value: 443 } },
                hostname: 'api.openai.com',
              },
              metadata: {
                filter_metadata: {
                  'switchyard.dev': { member: 'openai-0', model: 'gpt-4o', weight: 2, tags: ['a', 1, true, null], nested: { x: null } },
                },
              },
              load_balancing_weight: 2,
            },
          ],
        },
        {
          priority: 1,
          locality: { zone: 'azure' },
          lb_endpoints: [
            {
              endpoint: { address: { socket_address: { address: '10.0.0.7', port_value: 8443 } }, hostname: 'my.openai.azure.com' },
              health_status: 'HEALTHY',
            },
          ],
        },
      ],
      policy: { overprovisioning_factor: 100 },
    },
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': UPSTREAM_TLS,
        common_tls_context: {
          validation_context: { trusted_ca: { filename: '/etc/ssl/certs/ca-certificates.crt' } },
          alpn_protocols: ['h2', 'http/1.1'],
        },
        sni: 'api.openai.com',
      },
    },
    outlier_detection: {
      consecutive_5xx: 3,
      consecutive_gateway_failure: 2,
      interval: '5s',
      base_ejection_time: '30s',
      max_ejection_percent: 100,
      split_external_local_origin_errors: true,
      consecutive_local_origin_failure: 2,
      enforcing_consecutive_local_origin_failure: 100,
    },
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': HTTP_OPTIONS,
        auto_config: { http2_protocol_options: {} },
        http_filters: [
          {
            name: 'envoy.filters.http.ext_proc',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor',
              grpc_service: { envoy_grpc: { cluster_name: 'switchyard-ai' }, timeout: '0.025s' },
              processing_mode: { request_header_mode: 'SEND', response_header_mode: 'SKIP' },
              request_attributes: ["xds.upstream_host_metadata.filter_metadata['switchyard.dev']['member']"],
            },
          },
          {
            name: 'envoy.filters.http.upstream_codec',
            typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec' },
          },
        ],
      },
    },
    per_connection_buffer_limit_bytes: 32768,
  };
}

function listener(): EnvoyResource {
  return {
    '@type': TypeUrl.listener,
    name: 'gw-80',
    address: { socket_address: { address: '0.0.0.0', port_value: 8080 } },
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
              stat_prefix: 'gw-80',
              codec_type: 'HTTP1',
              rds: { route_config_name: 'gw-80', config_source: { ads: {}, resource_api_version: 'V3' } },
              http_filters: [
                {
                  name: 'envoy.filters.http.router',
                  typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router', suppress_envoy_headers: true },
                },
              ],
              common_http_protocol_options: { idle_timeout: '3600s' },
              stream_idle_timeout: '300s',
              use_remote_address: true,
            },
          },
        ],
      },
    ],
  };
}

function route(): EnvoyResource {
  return {
    '@type': TypeUrl.route,
    name: 'gw-80',
    virtual_hosts: [
      {
        name: 'ai',
        domains: ['*'],
        routes: [
          {
            match: { prefix: '/v1/' },
            route: {
              cluster: 'chat',
              timeout: '120s',
              retry_policy: {
                retry_on: 'connect-failure,refused-stream,reset,retriable-status-codes',
                retriable_status_codes: [429, 500, 502, 503, 504],
                num_retries: 2,
                per_try_timeout: '30s',
                retry_back_off: { base_interval: '0.025s', max_interval: '0.250s' },
                retry_priority: {
                  name: 'envoy.retry_priorities.previous_priorities',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig',
                    update_frequency: 1,
                  },
                },
                retry_host_predicate: [
                  {
                    name: 'envoy.retry_host_predicates.previous_hosts',
                    typed_config: { '@type': 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate' },
                  },
                ],
                host_selection_retry_max_attempts: '3',
              },
            },
          },
          { match: { safe_regex: { regex: '^/healthz$' } }, direct_response: { status: 200, body: { inline_string: 'ok' } } },
        ],
      },
    ],
  };
}

describe('encodeResource / decodeResource', () => {
  it.each([
    ['cluster with priorities, metadata, TLS and outlier detection', chatCluster],
    ['listener with an HTTP connection manager using RDS', listener],
    ['route with retry_policy, previous_priorities and previous_hosts', route],
  ])('round-trips a %s', (_label, build) => {
    const resource = build();
    const bytes = encodeResource(resource);
    expect(bytes.length).toBeGreaterThan(50);
    expect(decodeResource(resource['@type'], bytes)).toEqual(resource);
    expect(Buffer.from(encodeResource(decodeResource(resource['@type'], bytes)))).toEqual(Buffer.from(bytes));
  });

  it('writes the binary fields protobufjs itself reads back', () => {
    const bytes = encodeResource({ ...chatCluster(), connect_timeout: '1.5s' });
    const message = messageType('envoy.config.cluster.v3.Cluster').toObject(messageType('envoy.config.cluster.v3.Cluster').decode(bytes), {
      longs: String,
      enums: String,
    });
    expect(message['connect_timeout']).toEqual({ seconds: '1', nanos: 500_000_000 });
    expect(message['type']).toBe('STRICT_DNS');
    expect(message['per_connection_buffer_limit_bytes']).toEqual({ value: 32768 });
    expect(message['load_assignment'].endpoints[1].priority).toBe(1);
    expect(message['transport_socket'].typed_config.type_url).toBe(UPSTREAM_TLS);
    // The Any's value is itself a valid UpstreamTlsContext.
    const tls = messageType('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext').decode(message['transport_socket'].typed_config.value);
    expect(tls.toJSON()['sni']).toBe('api.openai.com');
  });

  it('prints durations, wrappers and 64-bit integers in canonical proto3 JSON', () => {
    const decoded = decodeResource(TypeUrl.cluster, encodeResource({ ...chatCluster(), connect_timeout: '1.5s' }));
    expect(decoded['connect_timeout']).toBe('1.500s');
    const retry = decodeResource(TypeUrl.route, encodeResource(route()));
    const policy = JSON.stringify(retry);
    expect(policy).toContain('"host_selection_retry_max_attempts":"3"');
    expect(policy).toContain('"num_retries":2');
  });

  it('accepts 64-bit integers as numbers and strings beyond 2^53 as strings', () => {
    const big = { ...route() };
    const vh = (big['virtual_hosts'] as EnvoyResource[])[0];
    const retryPolicy = ((vh?.['routes'] as EnvoyResource[])[0]?.['route'] as EnvoyResource)['retry_policy'] as EnvoyResource;
    retryPolicy['host_selection_retry_max_attempts'] = '9007199254740993';
    const decoded = JSON.stringify(decodeResource(TypeUrl.route, encodeResource(big)));
    expect(decoded).toContain('"host_selection_retry_max_attempts":"9007199254740993"');
    retryPolicy['host_selection_retry_max_attempts'] = 9007199254740993;
    expect(() => encodeResource(big)).toThrow(/host_selection_retry_max_attempts: expected an integer \(int64; write values beyond 2\^53 as strings\)/);
  });

  it('keeps bytes, enums by number, Timestamp and an Any holding a well-known type', () => {
    const secret: EnvoyResource = {
      '@type': TypeUrl.secret,
      name: 'openai-key',
      generic_secret: { secret: { inline_bytes: Buffer.from('Bearer sk-test').toString('base64') } },
    };
    expect(decodeResource(TypeUrl.secret, encodeResource(secret))).toEqual(secret);
    const byNumber = decodeResource(TypeUrl.cluster, encodeResource({ ...chatCluster(), type: 1 }));
    expect(byNumber['type']).toBe('STRICT_DNS');
    // A zero enum inside a list is a value, not a default to omit.
    const statuses = { '@type': TypeUrl.cluster, name: 'c', common_lb_config: { override_host_status: { statuses: ['UNKNOWN', 'HEALTHY'] } } };
    expect(decodeResource(TypeUrl.cluster, encodeResource(statuses))).toEqual(statuses);
    const json = { resource: { '@type': 'type.googleapis.com/google.protobuf.Duration', value: '2s' } };
    const any = decodeMessage('envoy.service.discovery.v3.Resource', encodeMessage('envoy.service.discovery.v3.Resource', json));
    expect(any).toEqual(json);
  });

  it('omits proto3 defaults without presence but keeps oneof members, messages and wrapper zeros', () => {
    const decoded = decodeResource(
      TypeUrl.cluster,
      encodeResource({
        '@type': TypeUrl.cluster,
        name: 'c',
        type: 'STATIC',
        dns_lookup_family: 'AUTO',
        respect_dns_ttl: false,
        per_connection_buffer_limit_bytes: 0,
        common_lb_config: { healthy_panic_threshold: { value: 0 } },
        alt_stat_name: '0',
      }),
    );
    expect(decoded).toEqual({
      '@type': TypeUrl.cluster,
      name: 'c',
      type: 'STATIC',
      per_connection_buffer_limit_bytes: 0,
      common_lb_config: { healthy_panic_threshold: {} },
      alt_stat_name: '0',
    });
  });
});

describe('encodeResource strictness', () => {
  function withEndpointField(field: string, value: unknown): EnvoyResource {
    const cluster = chatCluster();
    const la = cluster['load_assignment'] as EnvoyResource;
    const endpoints = la['endpoints'] as EnvoyResource[];
    (endpoints[0]?.['lb_endpoints'] as EnvoyResource[]).push({ [field]: value } as EnvoyResource);
    return cluster;
  }

  it('names the JSON path of an unknown field', () => {
    expect(() => encodeResource(withEndpointField('foo', 1))).toThrow(
      'clusters[chat].load_assignment.endpoints[0].lb_endpoints[1].foo: unknown field (envoy.config.endpoint.v3.LbEndpoint has no field "foo")',
    );
  });

  it('suggests the snake_case name for a camelCase field', () => {
    expect(() => encodeResource({ ...chatCluster(), connectTimeout: '1s' })).toThrow(/clusters\[chat\]\.connectTimeout: unknown field .*did you mean "connect_timeout"/);
  });

  it('finds unknown fields inside an Any, through maps and lists', () => {
    const cluster = chatCluster();
    const options = cluster['typed_extension_protocol_options'] as EnvoyResource;
    const http = options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'] as EnvoyResource;
    ((http['http_filters'] as EnvoyResource[])[0]?.['typed_config'] as EnvoyResource)['request_atributes'] = [];
    expect(() => encodeResource(cluster)).toThrow(
      'clusters[chat].typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions].http_filters[0].typed_config.request_atributes: unknown field',
    );
  });

  it.each([
    ['a string where a uint32 is expected', 'port_value', 'eighty', /port_value: expected an integer \(uint32\), got string "eighty"/],
    ['a negative uint32', 'port_value', -1, /port_value: -1 is out of range for uint32/],
    ['a fraction', 'port_value', 1.5, /port_value: expected an integer/],
  ])('rejects %s', (_label, field, value, message) => {
    const cluster = chatCluster();
    const la = cluster['load_assignment'] as EnvoyResource;
    const endpoint = ((la['endpoints'] as EnvoyResource[])[0]?.['lb_endpoints'] as EnvoyResource[])[0]?.['endpoint'] as EnvoyResource;
    ((endpoint['address'] as EnvoyResource)['socket_address'] as EnvoyResource)[field] = value as number;
    expect(() => encodeResource(cluster)).toThrow(message);
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['an unknown enum name', { type: 'STRICT' }, /clusters\[chat\]\.type: unknown envoy\.config\.cluster\.v3\.Cluster\.DiscoveryType value "STRICT"/],
    ['a malformed duration', { connect_timeout: '5' }, /clusters\[chat\]\.connect_timeout: expected a duration like "1\.5s", got string "5"/],
    ['a number where a message is expected', { outlier_detection: 5 }, /outlier_detection: expected an object/],
    ['an object where a wrapper is expected', { per_connection_buffer_limit_bytes: { value: 1 } }, /expected a bare uint32/],
    ['a string where a bool is expected', { respect_dns_ttl: 'true' }, /respect_dns_ttl: expected true or false/],
    ['two members of one oneof', { cluster_type: { name: 'x' } }, /"cluster_type" and "type" are members of oneof "cluster_discovery_type"/],
    ['an Any without @type', { transport_socket: { name: 'tls', typed_config: { sni: 'x' } } }, /transport_socket\.typed_config: an Any needs "@type"/],
    ['an unloaded @type', { transport_socket: { name: 'tls', typed_config: { '@type': 'type.googleapis.com/acme.Nope' } } }, /typed_config\.@type: unknown @type type\.googleapis\.com\/acme\.Nope/],
    ['a key that exists only on Object.prototype', { constructor: 1 }, /clusters\[chat\]\.constructor: unknown field/],
    ['an enum name that exists only on Object.prototype', { type: 'toString' }, /unknown envoy\.config\.cluster\.v3\.Cluster\.DiscoveryType value "toString"/],
    ['an array where a map is expected', { typed_extension_protocol_options: [] }, /typed_extension_protocol_options: expected an object \(map\)/],
  ])('rejects %s', (_label, patch, message) => {
    expect(() => encodeResource({ ...chatCluster(), ...(patch as EnvoyResource) })).toThrow(message);
  });

  it('rejects a resource whose @type is not loaded', () => {
    expect(() => encodeResource({ '@type': 'type.googleapis.com/acme.Widget', name: 'w' })).toThrow(/unknown message type acme\.Widget/);
  });
});
