/**
 * The AI extension reads a member's facts in the form the release before the facts string sent
 * them (one CEL attribute per endpoint metadata key), so that it serves an Envoy configured by a
 * controller of that release, or by this one for a data plane that still has an older Envoy.
 * The attributes below are spelled out as that release's Envoy configuration asked for them.
 */
import { describe, expect, it } from 'vitest';
import { attemptTarget } from '../../src/ai-extension/attempt.js';
import { legacyAttemptFacts } from '../../src/ai-extension/legacy-facts.js';
import { decodeProcessingRequest, type DecodedValue } from '../../src/ai-extension/protocol.js';
import { ATTEMPT_FACTS_ATTRIBUTE, CONNECTION_READY_ATTRIBUTE, EXT_PROC_ATTRIBUTES, aiExtensionFilter } from '../../src/envoy/ai-extension.js';
import { encodeAttemptFacts } from '../../src/envoy/attempt-facts.js';
import { messageType } from '../../src/envoy/proto.js';
import type { JsonObject } from '../../src/envoy/resources.js';

/** What the previous release's Envoy sent: one Struct field per key, keyed by its CEL expression. */
const OLD = (key: string): string => `xds.upstream_host_metadata.filter_metadata['switchyard.dev'].${key}`;

/** The request_attributes of the previous release's ext_proc filter, in its order. */
const PREVIOUS_RELEASE_ATTRIBUTES = [
  'backend', 'member', 'priority', 'provider', 'model', 'path', 'hostname', 'authHeader', 'authKind', 'credential',
  'apiVersion', 'deployment', 'firstTokenTimeoutMs', 'fallbacks', 'modelAliases', 'drillKey', 'requestsPerMinute', 'tokensPerMinute',
].map(OLD);

function sent(fields: Record<string, DecodedValue>): ReadonlyMap<string, DecodedValue> | undefined {
  const REQUEST = messageType('envoy.service.ext_proc.v3.ProcessingRequest');
  const bytes = REQUEST.encode(REQUEST.fromObject({ request_headers: { headers: { headers: [] } }, attributes: { [EXT_PROC_ATTRIBUTES]: { fields } } })).finish();
  return decodeProcessingRequest(Buffer.from(bytes)).attributes;
}

describe('legacy member facts (one attribute per key)', () => {
  it('reads every fact of an Azure member with aliases, fallbacks, limits and a deadline, as Envoy sent them', () => {
    const attributes = sent({
      [OLD('backend')]: { stringValue: 'ai/chat' },
      [OLD('member')]: { stringValue: 'azure-mini' },
      // Envoy 1.40 sends the endpoint's number metadata as number_value.
      [OLD('priority')]: { numberValue: 1 },
      [OLD('provider')]: { stringValue: 'azureopenai' },
      [OLD('model')]: { stringValue: 'gpt-4o-mini' },
      [OLD('path')]: { stringValue: '/openai/deployments/mini/chat/completions?api-version=2024-10-21' },
      [OLD('hostname')]: { stringValue: 'my.openai.azure.com' },
      [OLD('authHeader')]: { stringValue: 'api-key' },
      [OLD('authKind')]: { stringValue: 'SecretRef' },
      [OLD('credential')]: { stringValue: 'switchyard/credential/ai/chat/azure-mini' },
      [OLD('apiVersion')]: { stringValue: '2024-10-21' },
      [OLD('deployment')]: { stringValue: 'mini' },
      [OLD('firstTokenTimeoutMs')]: { numberValue: 1500 },
      [OLD('fallbacks')]: { stringValue: 'content_policy,context_length_exceeded>2' },
      [OLD('modelAliases')]: { stringValue: '{"fast":"gpt-4o-mini","__proto__":"x"}' },
      [OLD('drillKey')]: { stringValue: 'switchyard/drill/ai/chat' },
      [OLD('requestsPerMinute')]: { numberValue: 60 },
      [OLD('tokensPerMinute')]: { numberValue: 90000 },
      [CONNECTION_READY_ATTRIBUTE]: { stringValue: '12us' },
    });
    const target = attemptTarget(attributes);
    expect(target).toMatchObject({
      backend: 'ai/chat',
      member: 'azure-mini',
      priority: 1,
      provider: 'azureopenai',
      model: 'gpt-4o-mini',
      path: '/openai/deployments/mini/chat/completions?api-version=2024-10-21',
      hostname: 'my.openai.azure.com',
      authHeader: 'api-key',
      authKind: 'SecretRef',
      credential: 'switchyard/credential/ai/chat/azure-mini',
      apiVersion: '2024-10-21',
      deployment: 'mini',
      firstTokenTimeoutMs: 1500,
      fallbacks: ['content_policy', 'context_length_exceeded'],
      fallbackLevels: { context_length_exceeded: 2 },
      drillKey: 'switchyard/drill/ai/chat',
      limits: { requestsPerMinute: 60, tokensPerMinute: 90000 },
    });
    expect({ ...(target as { modelAliases: Record<string, string> }).modelAliases }).toEqual({ fast: 'gpt-4o-mini', ['__proto__']: 'x' });
  });

  it('reads a minimal member: numbers sent as strings too, absent keys left out, empty strings ignored', () => {
    const target = attemptTarget(sent({ [OLD('backend')]: { stringValue: 'ai/chat' }, [OLD('member')]: { stringValue: 'm0' }, [OLD('provider')]: { stringValue: 'openai' }, [OLD('priority')]: { stringValue: '2' }, [OLD('model')]: { stringValue: '' } }));
    expect(target).toEqual({ backend: 'ai/chat', member: 'm0', provider: 'openai', priority: 2, authKind: 'None' });
  });

  it('says what is missing, as for the facts string, and reads nothing of unrelated attributes', () => {
    expect(attemptTarget(sent({ [OLD('member')]: { stringValue: 'm0' } }))).toEqual({ error: expect.stringContaining('backend, provider missing') });
    expect(legacyAttemptFacts(new Map([[CONNECTION_READY_ATTRIBUTE, { stringValue: '1us' }]]))).toBeUndefined();
    expect(attemptTarget(new Map())).toEqual({ error: expect.stringContaining('no AI member metadata') });
  });

  it('prefers the facts string when Envoy sends both', () => {
    const both: [string, DecodedValue][] = [
      [ATTEMPT_FACTS_ATTRIBUTE, { stringValue: encodeAttemptFacts({ backend: 'ai/chat', member: 'packed', provider: 'openai', priority: 0 }) }],
      [OLD('backend'), { stringValue: 'ai/other' }],
      [OLD('member'), { stringValue: 'legacy' }],
      [OLD('provider'), { stringValue: 'anthropic' }],
    ];
    const target = attemptTarget(new Map(both));
    expect(target).toMatchObject({ member: 'packed', provider: 'openai' });
  });

  it("is what the legacy form's ext_proc filter asks Envoy for, in the previous release's order, then the facts string", () => {
    const config = aiExtensionFilter('legacy')['typed_config'] as JsonObject;
    // The facts string last: the previous release's extension reads its attributes by name and
    // never this one; this release's reads it whichever form the endpoint Envoy picked is in.
    expect(config['request_attributes']).toEqual([...PREVIOUS_RELEASE_ATTRIBUTES, CONNECTION_READY_ATTRIBUTE, ATTEMPT_FACTS_ATTRIBUTE]);
  });
});
