import type { AuthToken, Backend, PoolMember, Provider } from './backend.js';
import { BACKEND_API_VERSION } from './backend.js';
import { HEADER_NAME_PATTERN, HOST_PATTERN } from './http-syntax.js';
import { commonMetadata, isIntegerIn, isObjectName, isPlainRecord, onlyKeys } from './common-shape.js';
import { DNS_LABEL } from './meta.js';

/**
 * The common AI Backend as the Backend schema parses it, without the schema: priorities of pools
 * whose members call openai or openaiCompatible with a Secret (or passthrough) key, optionally
 * through a hostOverride, and nothing else (no retry, outlier detection, pool names, fallbacks,
 * limits, models). zod costs about 50 microseconds for such a Backend of six members, half the
 * parse of a 10,000-Backend configuration once the YAML is read; this costs a tenth of that.
 * Anything else, valid or not, is undefined: the schema decides it, and its messages stay the only
 * ones. test/property/backend-fast-path checks the two agree, down to the order of keys.
 */
export function commonBackend(doc: Record<string, unknown>): Backend | undefined {
  if (!onlyKeys(doc, TOP_KEYS) || doc.apiVersion !== BACKEND_API_VERSION || doc.kind !== 'Backend') return undefined;
  const metadata = commonMetadata(doc.metadata);
  const spec = doc.spec;
  if (metadata === undefined || !onlyKeys(spec, SPEC_KEYS)) return undefined;
  if ('type' in spec && spec.type !== 'AI') return undefined;
  const ai = spec.ai;
  if (!onlyKeys(ai, AI_KEYS) || !onlyKeys(ai.multipool, MULTIPOOL_KEYS)) return undefined;
  const priorities = ai.multipool.priorities;
  if (!Array.isArray(priorities) || priorities.length < 1 || priorities.length > 16) return undefined;
  const out: { pool: PoolMember[] }[] = new Array<{ pool: PoolMember[] }>(priorities.length);
  for (let p = 0; p < priorities.length; p++) {
    const priority: unknown = priorities[p];
    if (!onlyKeys(priority, PRIORITY_KEYS)) return undefined;
    const pool = priority.pool;
    if (!Array.isArray(pool) || pool.length < 1 || pool.length > 64) return undefined;
    const members: PoolMember[] = new Array<PoolMember>(pool.length);
    for (let m = 0; m < pool.length; m++) {
      const member = commonMember(pool[m]);
      if (member === undefined) return undefined;
      members[m] = member;
    }
    out[p] = { pool: members };
  }
  return { apiVersion: BACKEND_API_VERSION, kind: 'Backend', metadata, spec: { type: 'AI', ai: { multipool: { priorities: out } } } };
}

const TOP_KEYS: ReadonlySet<string> = new Set(['apiVersion', 'kind', 'metadata', 'spec']);
const SPEC_KEYS: ReadonlySet<string> = new Set(['type', 'ai']);
const AI_KEYS: ReadonlySet<string> = new Set(['multipool']);
const MULTIPOOL_KEYS: ReadonlySet<string> = new Set(['priorities']);
const PRIORITY_KEYS: ReadonlySet<string> = new Set(['pool']);
const MEMBER_KEYS: ReadonlySet<string> = new Set(['name', 'weight', 'provider', 'hostOverride']);
const OPENAI_KEYS: ReadonlySet<string> = new Set(['model', 'authToken']);
const COMPATIBLE_KEYS: ReadonlySet<string> = new Set(['host', 'port', 'path', 'tls', 'model', 'authHeader', 'authToken']);
const AUTH_KEYS: ReadonlySet<string> = new Set(['kind', 'secretRef']);
const SECRET_REF_KEYS: ReadonlySet<string> = new Set(['name']);
const HOST_OVERRIDE_KEYS: ReadonlySet<string> = new Set(['host', 'port', 'tls']);

function commonMember(value: unknown): PoolMember | undefined {
  if (!onlyKeys(value, MEMBER_KEYS)) return undefined;
  const member = {} as PoolMember;
  if ('name' in value) {
    const name = value.name;
    if (typeof name !== 'string' || name.length > 63 || !DNS_LABEL.test(name)) return undefined;
    member.name = name;
  }
  if ('weight' in value) {
    const weight = value.weight;
    if (!isIntegerIn(weight, 1, 128)) return undefined;
    member.weight = weight;
  }
  const provider = commonProvider(value.provider);
  if (provider === undefined) return undefined;
  member.provider = provider;
  if ('hostOverride' in value) {
    const override = value.hostOverride;
    if (!onlyKeys(override, HOST_OVERRIDE_KEYS) || !isHost(override.host) || !isIntegerIn(override.port, 1, 65535)) return undefined;
    const out: NonNullable<PoolMember['hostOverride']> = { host: override.host, port: override.port };
    if ('tls' in override) {
      if (typeof override.tls !== 'boolean') return undefined;
      out.tls = override.tls;
    }
    member.hostOverride = out;
  }
  // The usual member as a literal of its three fields (same order): grown from {}, it keeps four slots.
  if (member.weight === undefined && member.name !== undefined && member.hostOverride !== undefined) return { name: member.name, provider: member.provider, hostOverride: member.hostOverride };
  return member;
}

function commonProvider(value: unknown): Provider | undefined {
  if (!isPlainRecord(value)) return undefined;
  let only: string | undefined;
  for (const key in value) {
    if (only !== undefined) return undefined;
    only = key;
  }
  if (only === 'openai') {
    const openai = value.openai;
    if (!onlyKeys(openai, OPENAI_KEYS)) return undefined;
    const out = {} as NonNullable<Provider['openai']>;
    if ('model' in openai) {
      if (!isNonEmptyString(openai.model)) return undefined;
      out.model = openai.model;
    }
    const token = commonAuthToken(openai.authToken);
    if (token === undefined) return undefined;
    out.authToken = token;
    return { openai: out };
  }
  if (only !== 'openaiCompatible') return undefined;
  const compatible = value.openaiCompatible;
  if (!onlyKeys(compatible, COMPATIBLE_KEYS) || !isHost(compatible.host)) return undefined;
  // Grown from an empty literal (four in-object slots): from `{ host }` (one), the usual model and
  // authToken went to a property array of their own.
  const out = {} as NonNullable<Provider['openaiCompatible']>;
  out.host = compatible.host;
  if ('port' in compatible) {
    if (!isIntegerIn(compatible.port, 1, 65535)) return undefined;
    out.port = compatible.port;
  }
  if ('path' in compatible) {
    if (typeof compatible.path !== 'string' || !compatible.path.startsWith('/')) return undefined;
    out.path = compatible.path;
  }
  if ('tls' in compatible) {
    if (typeof compatible.tls !== 'boolean') return undefined;
    out.tls = compatible.tls;
  }
  if ('model' in compatible) {
    if (!isNonEmptyString(compatible.model)) return undefined;
    out.model = compatible.model;
  }
  if ('authHeader' in compatible) {
    const header = compatible.authHeader;
    if (!isNonEmptyString(header) || header.length > 256 || !HEADER_NAME_PATTERN.test(header)) return undefined;
    out.authHeader = header;
  }
  if ('authToken' in compatible) {
    const token = commonAuthToken(compatible.authToken);
    if (token === undefined) return undefined;
    out.authToken = token;
  }
  return { openaiCompatible: out };
}

/** A key from a Secret (secretRef.name), or passed through from the client; never an inline key (its warning is the schema's). */
function commonAuthToken(value: unknown): AuthToken | undefined {
  if (!onlyKeys(value, AUTH_KEYS)) return undefined;
  if (value.kind === 'Passthrough') return 'secretRef' in value ? undefined : { kind: 'Passthrough' };
  if (value.kind !== 'SecretRef') return undefined;
  const ref = value.secretRef;
  if (!onlyKeys(ref, SECRET_REF_KEYS) || !isObjectName(ref.name)) return undefined;
  return { kind: 'SecretRef', secretRef: { name: ref.name } };
}

function isHost(v: unknown): v is string {
  return typeof v === 'string' && v.length >= 1 && v.length <= 253 && HOST_PATTERN.test(v);
}

function isNonEmptyString(v: unknown): v is string {
  return typeof v === 'string' && v.length >= 1;
}
