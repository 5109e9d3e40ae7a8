import { MODEL_HEADER } from '../api/model-http.js';
import type { AttemptTarget } from './attempt.js';
import type { HeaderMutation, HeaderSet } from './protocol.js';

/** Where providers read credentials (DESIGN.md); an openaiCompatible member may add its own. */
export const WELL_KNOWN_CREDENTIAL_HEADERS: readonly string[] = ['authorization', 'api-key', 'x-api-key', 'x-goog-api-key'];

/**
 * Headers of one vendor's protocol, wrong for every other vendor; and the Gateway's own model
 * routing header (the client's model, perhaps an alias), which is no provider's business.
 */
const VENDOR_HEADERS: readonly string[] = ['anthropic-version', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256', MODEL_HEADER];

/** Chat completions, the one operation adapted per provider; other paths pass as the client sent them. */
export function isChatCompletions(path: string): boolean {
  const bare = path.split('?')[0] ?? '';
  return bare.endsWith('/chat/completions');
}

/** A credential in the form its header expects: `Authorization` carries a bearer token. */
export function credentialValue(header: string, key: string): string {
  return header.toLowerCase() === 'authorization' ? `Bearer ${key}` : key;
}

export interface RequestHeaderInput {
  target: AttemptTarget;
  /** The client's own :path (attempts after the first see the previous attempt's). */
  clientPath: string;
  /** The member's key (SecretRef or Inline); undefined for Passthrough and None. */
  key: string | undefined;
  /** The client's credential headers, for Passthrough members. */
  clientCredentials: ReadonlyMap<string, string>;
  /** Every credential header name in use (lower-case): all are cleared on every attempt. */
  credentialHeaders: Iterable<string>;
}

/**
 * The request-header edits of one attempt. The header map is shared by every attempt of a
 * request, so each attempt sets everything its member needs and removes what another member
 * left: every other provider's credential in particular.
 */
export function requestHeaderMutation(input: RequestHeaderInput): HeaderMutation {
  const { target } = input;
  const set: HeaderSet[] = [];
  const remove = new Set<string>([...input.credentialHeaders, ...VENDOR_HEADERS]);
  // Bodies are read (usage) and rewritten (translation): they must not come back compressed.
  remove.add('accept-encoding');

  if (target.path !== undefined && isChatCompletions(input.clientPath)) set.push({ key: ':path', value: target.path });
  else set.push({ key: ':path', value: input.clientPath });
  if (target.hostname !== undefined) set.push({ key: ':authority', value: target.hostname });

  const header = target.authHeader?.toLowerCase();
  if (target.authKind === 'Passthrough') {
    for (const [name, value] of input.clientCredentials) {
      set.push({ key: name, value });
      remove.delete(name);
    }
  } else if (header !== undefined && input.key !== undefined) {
    set.push({ key: header, value: credentialValue(header, input.key) });
    remove.delete(header);
  }
  if (target.provider === 'anthropic') {
    set.push({ key: 'anthropic-version', value: target.apiVersion ?? '2023-06-01' });
    remove.delete('anthropic-version');
  }
  return { set, remove: [...remove] };
}
