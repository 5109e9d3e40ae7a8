import { startFakeVertex, type FakeVertex, type FakeVertexOptions } from './fake-vertex.js';
import { NAMESPACE, type Manifest } from './gateway-fixture.js';

/**
 * Pool members of the real vendors' provider kinds (openai, vertexai), pointed at fakes through
 * hostOverride, and the multipool Backend that holds them: the shapes the Vertex e2e suites share.
 */

/** The Vertex project the fakes answer for; the member names the model without the `google/` prefix the fake wants. */
export const VERTEX = { project: 'switchyard-test', region: 'europe-west4', model: 'gemini-2.0-flash' } as const;

/** A fake Vertex answering for VERTEX's project, region and model. */
export function startVertexFake(name: string, o: Pick<FakeVertexOptions, 'tokenLifetimeS' | 'streamIntervalMs'> = {}): Promise<FakeVertex> {
  return startFakeVertex({ name, project: VERTEX.project, region: VERTEX.region, model: `google/${VERTEX.model}`, ...o });
}

/** What a member needs of a fake: where it listens. */
type Address = { host: string; port: number } | undefined;

/** An `openai` member named "openai", its key in the Secret "openai-key", plain HTTP to `fake` unless `tls`. */
export function openaiMember(fake: Address, o: { tls?: boolean } = {}): Manifest {
  return {
    name: 'openai',
    provider: { openai: { model: 'gpt-4o', authToken: { kind: 'SecretRef', secretRef: { name: 'openai-key' } } } },
    hostOverride: { host: fake?.host ?? '', port: fake?.port ?? 0, tls: o.tls ?? false },
  };
}

export interface VertexMemberOptions {
  /** Absent: a nameless member, as an `llm` Backend takes it. */
  name?: string;
  /** The Secret holding the service account's key.json. */
  secret: string;
  /** `GenerateContent` for Gemini's native API; absent: the provider default (OpenAI-compatible). */
  api?: string;
}

/** A `vertexai` member for VERTEX's model, project and region, plain HTTP to `fake`. */
export function vertexMember(fake: Pick<FakeVertex, 'host' | 'port'>, o: VertexMemberOptions): Manifest {
  return {
    ...(o.name === undefined ? {} : { name: o.name }),
    provider: { vertexai: { model: VERTEX.model, projectId: VERTEX.project, region: VERTEX.region, ...(o.api === undefined ? {} : { api: o.api }), serviceAccountKey: { secretRef: { name: o.secret } } } },
    hostOverride: { host: fake.host, port: fake.port, tls: false },
  };
}

/** A Secret holding a service account's key file under `key.json`. */
export function serviceAccountSecret(name: string, keyFile: string): Manifest {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: NAMESPACE }, stringData: { 'key.json': keyFile } };
}

/**
 * A multipool AI Backend, one pool per priority, with outlier detection off so that only the
 * behaviour under test moves traffic between members; `spec` adds to (or overrides) its spec.
 */
export function multipoolBackend(name: string, pools: Manifest[][], spec: Manifest = {}): Manifest {
  return {
    apiVersion: 'switchyard.dev/v1alpha1',
    kind: 'Backend',
    metadata: { name, namespace: NAMESPACE },
    spec: { type: 'AI', ai: { multipool: { priorities: pools.map((pool) => ({ pool })) } }, outlierDetection: { enabled: false }, ...spec },
  };
}

/** An `llm` AI Backend of one member. */
export function llmBackend(name: string, member: Manifest): Manifest {
  return { apiVersion: 'switchyard.dev/v1alpha1', kind: 'Backend', metadata: { name, namespace: NAMESPACE }, spec: { type: 'AI', ai: { llm: member } } };
}
