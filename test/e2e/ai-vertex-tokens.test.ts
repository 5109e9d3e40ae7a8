import { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../../src/ir/model.js';
import type { FakeVertex } from '../support/fake-vertex.js';
import { E2E_LOAD_MARGIN_MS, logTiming } from '../support/timing.js';
import { waitFor } from '../support/wait.js';
import { gatewayManifests, httpRoute, secret, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';
import { multipoolBackend, openaiMember, serviceAccountSecret, startVertexFake, vertexMember } from '../support/vendor-members.js';

/**
 * Vertex AI members in front of an OpenAI member, through the real Envoy and the AI extension of
 * a freshly started serve. Tokens are fetched as soon as the configuration names the key, before
 * any request. A token endpoint that has not answered yet (held, longer than Envoy's 2 s ext_proc
 * message timeout) or that fails must not make an attempt wait past its bound nor end the
 * request: the attempt is handed to the next priority, counted as credential_unavailable; the
 * token request goes on, and its token serves the next requests without their waiting for it.
 */

const OPENAI_KEY = 'sk-openai-vertex-tokens-1';
/** Envoy's connect timeout for a Vertex member (the clusters' default): what a stand-in waits for. */
const CONNECT_TIMEOUT_MS = DEFAULT_CONNECT_TIMEOUT_MS;

let gw: GatewayFixture;
let openai: FakeProvider;
let slow: FakeVertex;
let failing: FakeVertex;
let warm: FakeVertex;
const logLines: string[] = [];

beforeAll(async () => {
  slow = await startVertexFake('vertex-slow');
  failing = await startVertexFake('vertex-failing');
  warm = await startVertexFake('vertex-warm');
  // Not answered until the test lets it: an attempt waiting for it would pass Envoy's 2 s message timeout.
  slow.setTokenMode({ kind: 'hold' });
  failing.setTokenMode({ kind: 'status', status: 500 });
  gw = await startGatewayFixture({
    id: 'ai-vertex-tokens',
    providers: ['openai'],
    fakeOptions: { openai: { vendor: { api: 'openai', key: OPENAI_KEY } } },
    logLines,
    manifests: ({ listenerPort, fakes }) => {
      const fallback = openaiMember(fakes['openai']);
      const vertex = (name: string, fake: FakeVertex): Manifest => vertexMember(fake, { name, secret: `${name}-sa` });
      // statusCodes without 503: the hand-over must not depend on the route retrying 503s.
      const backend = (name: string, pools: Manifest[][]): Manifest => multipoolBackend(name, pools, { retry: { statusCodes: [429] } });
      return {
        'gateway.yaml': gatewayManifests(listenerPort),
        'secrets.yaml': [secret('openai-key', OPENAI_KEY), serviceAccountSecret('vertex-slow-sa', slow.keyFile), serviceAccountSecret('vertex-failing-sa', failing.keyFile), serviceAccountSecret('vertex-warm-sa', warm.keyFile)],
        'backends.yaml': [
          backend('slow-token', [[vertex('vertex-slow', slow)], [fallback]]),
          backend('failing-token', [[vertex('vertex-failing', failing)], [fallback]]),
          backend('warm-token', [[vertex('vertex-warm', warm)], [fallback]]),
        ],
        'routes.yaml': [
          httpRoute('chat', [
            { path: '/slow/v1', rewritePrefix: '/v1', backend: 'slow-token' },
            { path: '/failing/v1', rewritePrefix: '/v1', backend: 'failing-token' },
            { path: '/warm/v1', rewritePrefix: '/v1', backend: 'warm-token' },
          ]),
        ],
      };
    },
    waitForBackends: ['slow-token', 'failing-token', 'warm-token'],
  });
  openai = gw.fakes['openai'] as FakeProvider;
});

afterAll(async () => {
  await gw?.stop();
  await slow?.close();
  await failing?.close();
  await warm?.close();
});

async function failures(member: string, cause: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('switchyard_ai_failures_total{') && l.includes(`member="${member}"`) && l.includes(`cause="${cause}"`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('Vertex AI tokens fetched ahead', () => {
  it('the token is fetched when the configuration names the key, before any request; the first request is Vertex\'s own', async () => {
    // No request has been sent to /warm/v1: the extension asked for the token from the configuration alone.
    await waitFor(() => warm.issuedTokens().length === 1, { what: 'the token of vertex-warm to be fetched with no request', timeoutMs: 10_000 });
    expect(warm.received()).toEqual([]);
    const openaiBefore = openai.received().length;
    const first = await gw.chat('/warm/v1');
    expect(first.content).toBe('answered by vertex-warm');
    expect(openai.received()).toHaveLength(openaiBefore);
    expect(warm.tokenRequests()).toEqual([{ ok: true }]);
    expect(await failures('vertex-warm', 'credential_unavailable')).toBe(0);
    console.log(`vertex-tokens: first request to a warmed member answered by Vertex in ${Math.round(first.elapsedMs)} ms`);
  });
});

describe('a Vertex AI token endpoint that has not answered (longer than the ext_proc message timeout)', () => {
  it('the request is answered by the next priority within the bound, and once the token comes Vertex serves without a wait', async () => {
    await waitFor(() => slow.tokenRequests().length === 1, { what: 'the token request of vertex-slow (held by the fake)', timeoutMs: 10_000 });
    const first = await gw.chat('/slow/v1');
    expect(first.answeredBy).toBe('openai');
    // The attempt waits at most 1.5 s for the token; its stand-in then waits for Envoy's connect
    // timeout (5 s from the attempt's start), as Envoy had no connection to Vertex ready (a
    // stand-in before it crashes Envoy 1.40), and the route retries on priority 1. Envoy is told
    // to wait: past its 2 s message timeout the request would have ended in a local reply.
    expect(first.elapsedMs).toBeGreaterThan(CONNECT_TIMEOUT_MS);
    expect(first.elapsedMs).toBeLessThan(CONNECT_TIMEOUT_MS + E2E_LOAD_MARGIN_MS);
    console.log(`vertex-tokens: request during a held token request answered by the next priority in ${Math.round(first.elapsedMs)} ms`);
    expect(slow.received()).toEqual([]);
    expect(await failures('vertex-slow', 'credential_unavailable')).toBe(1);
    expect(await failures('vertex-slow', 'status_5xx')).toBe(0);

    // The endpoint answers the request it held: that token, asked for once, serves at once.
    slow.setTokenMode({ kind: 'ok' });
    await waitFor(() => slow.issuedTokens().length === 1, { what: 'the held token request to be answered', timeoutMs: 5_000 });
    const openaiBefore = openai.received().length;
    await waitFor(async () => (await gw.chat('/slow/v1')).content === 'answered by vertex-slow', { what: 'Vertex to answer with the token', timeoutMs: 5_000 });
    const second = await gw.chat('/slow/v1');
    expect(second.content).toBe('answered by vertex-slow');
    // No wait left to bound: the token was asked for once (below), so this one used it as cached.
    logTiming('Vertex answered with the cached token', second.elapsedMs);
    console.log(`vertex-tokens: next request answered by Vertex in ${Math.round(second.elapsedMs)} ms`);
    expect(openai.received()).toHaveLength(openaiBefore);
    expect(slow.tokenRequests()).toEqual([{ ok: true }]);
    expect(slow.received().every((r) => r.rejected === undefined)).toBe(true);
  });
});

describe('a Vertex AI token endpoint that fails', () => {
  it('hands every attempt to the next priority at once, asks the endpoint again only after a back-off, and answers 503 when the next priority fails too', async () => {
    const before = await failures('vertex-failing', 'credential_unavailable');
    const asked = failing.tokenRequests().length;
    // Fetched ahead from the configuration, and failing: retried on a timer with back-off.
    expect(asked).toBeGreaterThanOrEqual(1);
    for (let i = 0; i < 5; i++) {
      const answer = await gw.chat('/failing/v1');
      expect(answer.answeredBy).toBe('openai');
      // The first stand-in waits for Envoy's first connection to Vertex (connect timeout, 5 s);
      // Envoy keeps a spare one from then on (preconnect), and the others are handed over at once.
      // The first waits for the connect timeout; the others must not wait for it again.
      logTiming(`failing Vertex, attempt ${i} handed to the next priority`, answer.elapsedMs);
      expect(answer.elapsedMs).toBeLessThan(i === 0 ? CONNECT_TIMEOUT_MS + E2E_LOAD_MARGIN_MS : CONNECT_TIMEOUT_MS);
    }
    expect(failing.received()).toEqual([]);
    expect(await failures('vertex-failing', 'credential_unavailable')).toBe(before + 5);
    // The attempts do not ask the endpoint each: within the back-off (1 s, doubling) the refusal
    // is served as it is; at most the timer's next retry fell among them.
    expect(failing.tokenRequests().length - asked).toBeLessThanOrEqual(1);

    // With the other priority failing too, the client gets a 503; no key in any log line (below).
    await openai.setMode({ kind: 'status', status: 503 });
    try {
      const err = await gw.client('/failing/v1').chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(APIError);
      const apiError = err as APIError;
      expect(apiError.status).toBe(503);
      // Envoy's retries are spent on the openai member (503), and the vertex attempt came first.
      expect(failing.received()).toEqual([]);
    } finally {
      await openai.setMode('ok');
    }
    const privateKeyLine = (JSON.parse(failing.keyFile) as { private_key: string }).private_key.split('\n')[1] ?? '';
    expect(privateKeyLine.length).toBeGreaterThan(40);
    expect(logLines.some((l) => l.includes('no usable credential') && l.includes('"cause":"credential_unavailable"') && l.includes('vertex-failing') && l.includes('failing with 500'))).toBe(true);
    for (const l of logLines) expect(l).not.toContain(privateKeyLine);
  });
});
