import { describe, expect, it } from 'vitest';
import { Backend } from '../../src/api/backend.js';
import { translateBackend } from '../../src/translate/backends.js';

/** A Backend with one member per pool at these host:port pairs. */
function pools(...endpoints: [string, number][]): Backend {
  return Backend.parse({
    apiVersion: 'switchyard.dev/v1alpha1',
    kind: 'Backend',
    metadata: { name: 'models', namespace: 'ai' },
    spec: {
      type: 'AI',
      ai: {
        multipool: {
          priorities: endpoints.map(([host, port], i) => ({ pool: [{ name: `m${i}`, provider: { openaiCompatible: { host, port, model: `model-${i}` } } }] })),
        },
      },
    },
  });
}

const discoveryOf = (b: Backend): string | undefined => translateBackend(b, new Map()).cluster?.discovery;

describe('a Backend whose members share an address and port (Envoy EDS would keep only the first)', () => {
  it.each([
    ['the same IPv4 address and port', [['10.0.0.1', 8000], ['10.0.0.1', 8000]], 'dns'],
    ['one IPv6 address written two ways', [['::1', 8000], ['0:0::1', 8000]], 'dns'],
    ['the same address on two ports', [['10.0.0.1', 8000], ['10.0.0.1', 8001]], 'eds'],
    ['two addresses on one port', [['10.0.0.1', 8000], ['10.0.0.2', 8000]], 'eds'],
    ['an IPv4 address and its IPv4-mapped IPv6 form (two hosts to Envoy)', [['127.0.0.1', 8000], ['::ffff:127.0.0.1', 8000]], 'eds'],
  ] satisfies [string, [string, number][], string][])('%s: %s discovery', (_, endpoints, discovery) => {
    expect(discoveryOf(pools(...endpoints))).toBe(discovery);
  });
});
