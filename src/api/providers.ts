import type { AuthToken, Provider, ProviderName } from './backend.js';
import { PROVIDERS } from './backend.js';

/** Where and how one provider is called: the facts the data path needs for an attempt on it. */
export interface ProviderTarget {
  provider: ProviderName;
  host: string;
  port: number;
  tls: boolean;
  /** Request path for chat completions, query included. */
  path: string;
  /** Header that carries the credential; `Authorization` values get "Bearer ". */
  authHeader: string;
  model?: string;
  apiVersion?: string;
  deployment?: string;
  authToken?: AuthToken;
  /** A credential of the vendor's own kind, resolved from several keys of one Secret (see VendorCredentialKind). */
  vendorCredential?: VendorCredential;
}

/**
 * Credentials that are not a key sent as-is: a Google service-account key the extension trades
 * for access tokens, or AWS keys the extension signs each attempt with.
 */
export type VendorCredentialKind = 'ServiceAccountKey' | 'AwsKeys';
export interface VendorCredential {
  kind: VendorCredentialKind;
  secretName: string;
}

/** Bedrock's runtime endpoint of a region (the host every request is signed for). */
export function bedrockHost(region: string): string {
  return `bedrock-runtime.${region}.amazonaws.com`;
}

export function providerName(p: Provider): ProviderName {
  const name = PROVIDERS.find((k) => p[k] !== undefined);
  if (!name) throw new Error('provider has no kind set'); // unreachable: the schema requires one
  return name;
}

export function providerTarget(p: Provider): ProviderTarget {
  if (p.openai) {
    return { provider: 'openai', host: 'api.openai.com', port: 443, tls: true, path: '/v1/chat/completions', authHeader: 'Authorization', ...opt('model', p.openai.model), authToken: p.openai.authToken };
  }
  if (p.azureopenai) {
    const a = p.azureopenai;
    return {
      provider: 'azureopenai', host: a.endpoint, port: 443, tls: true,
      path: `/openai/deployments/${encodeURIComponent(a.deploymentName)}/chat/completions?api-version=${encodeURIComponent(a.apiVersion)}`,
      authHeader: 'api-key', model: a.deploymentName, deployment: a.deploymentName, apiVersion: a.apiVersion, authToken: a.authToken,
    };
  }
  if (p.anthropic) {
    return { provider: 'anthropic', host: 'api.anthropic.com', port: 443, tls: true, path: '/v1/messages', authHeader: 'x-api-key', ...opt('model', p.anthropic.model), apiVersion: p.anthropic.apiVersion ?? '2023-06-01', authToken: p.anthropic.authToken };
  }
  if (p.gemini) {
    const version = p.gemini.apiVersion ?? 'v1beta';
    return { provider: 'gemini', host: 'generativelanguage.googleapis.com', port: 443, tls: true, path: `/${version}/openai/chat/completions`, authHeader: 'Authorization', model: p.gemini.model, apiVersion: version, authToken: p.gemini.authToken };
  }
  if (p.vertexai) {
    const v = p.vertexai;
    return {
      provider: 'vertexai', host: `${v.region}-aiplatform.googleapis.com`, port: 443, tls: true,
      path: v.api === 'GenerateContent'
        ? `/v1/projects/${encodeURIComponent(v.projectId)}/locations/${encodeURIComponent(v.region)}/publishers/${encodeURIComponent(v.publisher ?? 'google')}/models/${encodeURIComponent(v.model)}:generateContent`
        : `/v1/projects/${encodeURIComponent(v.projectId)}/locations/${encodeURIComponent(v.region)}/endpoints/openapi/chat/completions`,
      authHeader: 'Authorization', model: `${v.publisher ?? 'google'}/${v.model}`,
      ...(v.authToken ? { authToken: v.authToken } : {}),
      ...(v.serviceAccountKey ? { vendorCredential: { kind: 'ServiceAccountKey', secretName: v.serviceAccountKey.secretRef.name } } : {}),
    };
  }
  if (p.bedrock) {
    const b = p.bedrock;
    // The model ID goes in the path (its ":" encoded, as AWS's SDKs send it); the body names no model.
    return {
      provider: 'bedrock', host: bedrockHost(b.region), port: 443, tls: true, path: `/model/${encodeURIComponent(b.model)}/converse`,
      authHeader: 'Authorization', model: b.model, vendorCredential: { kind: 'AwsKeys', secretName: b.credentials.secretRef.name },
    };
  }
  const c = p.openaiCompatible;
  if (!c) throw new Error('provider has no kind set');
  const port = c.port ?? (c.tls === false ? 80 : 443);
  return {
    provider: 'openaiCompatible', host: c.host, port, tls: c.tls ?? port === 443, path: c.path ?? '/v1/chat/completions',
    authHeader: c.authHeader ?? 'Authorization', ...opt('model', c.model), ...(c.authToken ? { authToken: c.authToken } : {}),
  };
}

function opt<K extends string>(key: K, value: string | undefined): { [k in K]?: string } {
  return value === undefined ? {} : ({ [key]: value } as { [k in K]?: string });
}
