import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait.js';
import { aiBackend, gatewayManifests, httpRoute, startGatewayFixture, type GatewayFixture, type Manifest } from '../support/gateway-fixture.js';

/**
 * Failover between two pools whose members share one address and port: a self-hosted server
 * (vLLM, Ollama) serving two models, or gpt-4o then gpt-4o-mini at api.openai.com:443. Envoy
 * keys an EDS cluster's hosts by address across every priority and keeps only the first of a
 * duplicate, so the second pool used to be empty and every attempt went to the first pool's
 * model. Through the real Envoy: one provider that answers 503 for `m-one` and 200 for `m-two`.
 */

/** One OpenAI-compatible server for both models; it records the model of every attempt. */
interface ModelServer {
  server: Server;
  port: number;
  models: string[];
  failing: Set<string>;
  /** Models that answer 429 (retried on the next pool; not a 5xx, so never ejected). */
  limited: Set<string>;
}

async function startModelServer(): Promise<ModelServer> {
  const state: ModelServer = { server: createServer(), port: 0, models: [], failing: new Set(), limited: new Set() };
  state.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    let raw = '';
    req.on('data', (chunk: Buffer) => (raw += chunk.toString('utf8')));
    req.on('end', () => {
      const model = String((JSON.parse(raw || '{}') as { model?: unknown }).model);
      state.models.push(model);
      if (state.limited.has(model)) {
        res.writeHead(429, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `${model} is rate limited`, type: 'rate_limit_exceeded' } }));
        return;
      }
      if (state.failing.has(model)) {
        res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `${model} is overloaded`, type: 'server_error' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-fake-provider': model }).end(
        JSON.stringify({
          id: 'chatcmpl-shared',
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model,
          choices: [{ index: 0, message: { role: 'assistant', content: `answered by ${model}` }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => state.server.listen(0, '127.0.0.1', resolve));
  state.port = (state.server.address() as AddressInfo).port;
  return state;
}

let models: ModelServer;
let gw: GatewayFixture;
const logLines: string[] = [];

const at = (host: string): { host: string; port: number } => ({ host, port: models.port });

/** m-one at priority 0 on `host`, m-two at priority 1 on `second` (default: the same host). */
function twoModels(name: string, host: string, second = host): Manifest {
  return aiBackend({
    name,
    priorities: [
      [{ name: 'one', fake: at(host), hostname: 'models.llm.test', model: 'm-one' }],
      [{ name: 'two', fake: at(second), hostname: 'models.llm.test', model: 'm-two' }],
    ],
    outlierDetection: { enabled: false },
  });
}

/** Three pools whose members all sit at 127.0.0.1, with outlier detection on. */
function threePoolsGuarded(name: string): Manifest {
  return aiBackend({
    name,
    priorities: [
      [{ name: 'first', fake: at('127.0.0.1'), hostname: 'models.llm.test', model: 'm-one' }],
      [{ name: 'second', fake: at('127.0.0.1'), hostname: 'models.llm.test', model: 'm-two' }],
      [{ name: 'third', fake: at('127.0.0.1'), hostname: 'models.llm.test', model: 'm-three' }],
    ],
    outlierDetection: { consecutive5xx: 2, baseEjectionTime: '30s', interval: '250ms' },
  });
}

beforeAll(async () => {
  models = await startModelServer();
  gw = await startGatewayFixture({
    id: 'ai-shared-address',
    providers: [],
    // serve follows Envoy's outlier events and names the member of each (src/observability/outlier-events.ts).
    outlierEventLog: true,
    envoyArgs: ['--file-flush-interval-msec', '100'],
    logLines,
    manifests: ({ listenerPort }) => ({
      'gateway.yaml': gatewayManifests(listenerPort),
      'backends.yaml': [
        // Every member an IP address: Switchyard would send its endpoints over EDS.
        twoModels('by-ip', '127.0.0.1'),
        // A hostname: STRICT_DNS, as for api.openai.com.
        twoModels('by-name', 'localhost'),
        // Three pools on one address, every member an IP address, and outlier detection on.
        threePoolsGuarded('guarded'),
        // The same, for a second pool ejected while the first is not.
        threePoolsGuarded('limited'),
      ],
      // Nothing listens on 127.0.0.2: its second pool starts apart, and an edit moves it.
      'edited.yaml': [twoModels('edited', '127.0.0.1', '127.0.0.2')],
      'routes.yaml': [
        httpRoute('chat', [
          { path: '/by-ip/v1', rewritePrefix: '/v1', backend: 'by-ip' },
          { path: '/by-name/v1', rewritePrefix: '/v1', backend: 'by-name' },
          { path: '/guarded/v1', rewritePrefix: '/v1', backend: 'guarded' },
          { path: '/limited/v1', rewritePrefix: '/v1', backend: 'limited' },
          { path: '/edited/v1', rewritePrefix: '/v1', backend: 'edited' },
        ]),
      ],
    }),
    waitForBackends: ['by-ip', 'by-name', 'guarded', 'limited', 'edited'],
  });
});

afterAll(async () => {
  await gw?.stop();
  await new Promise((resolve) => models?.server.close(resolve));
});

beforeEach(() => {
  models.models.length = 0;
  models.failing.clear();
  models.limited.clear();
});

const ejectionLogs = (backend: string): Record<string, unknown>[] =>
  logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['backend'] === backend && typeof l['msg'] === 'string' && l['msg'].startsWith('pool member ejected'));

async function ejectionsOf(backend: string, member: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${gw.controller.metricsPort}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith('switchyard_member_ejections_total{') && l.includes(`backend="${backend}"`) && l.includes(`member="${member}"`)).reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

describe('two pools whose members share an address and port', () => {
  for (const backend of ['by-ip', 'by-name']) {
    it(`${backend}: Envoy holds one host per pool, each at its own priority`, async () => {
      const hosts = await gw.hosts(backend);
      expect(hosts.map((h) => [h.port, h.priority]).sort()).toEqual([
        [models.port, 0],
        [models.port, 1],
      ]);
    });

    it(`${backend}: a 503 from the first pool's model is answered by the second pool's model`, async () => {
      models.failing.add('m-one');
      const answer = await gw.chat(`/${backend}/v1`);
      expect(answer.content).toBe('answered by m-two');
      expect(models.models).toEqual(['m-one', 'm-two']);
    });

    it(`${backend}: with both pools up, the first pool's model answers`, async () => {
      const answer = await gw.chat(`/${backend}/v1`);
      expect(answer.content).toBe('answered by m-one');
      expect(models.models).toEqual(['m-one']);
    });
  }
});

describe('outlier detection keeps each pool\'s member apart', () => {
  it('ejects the first two pools\' members and still serves the third pool on the same address', async () => {
    models.failing.add('m-one');
    models.failing.add('m-two');
    // Each request fails on m-one and m-two, and m-three answers; after two, both are ejected.
    for (let i = 0; i < 2; i++) expect((await gw.chat('/guarded/v1')).content).toBe('answered by m-three');
    expect(models.models).toEqual(['m-one', 'm-two', 'm-three', 'm-one', 'm-two', 'm-three']);
    const ejected = async (): Promise<number[]> => (await gw.hosts('guarded')).filter((h) => h.healthFlags.includes('failed_outlier_check')).map((h) => h.priority).sort();
    await waitFor(async () => (await ejected()).length === 2, { what: 'Envoy to eject the members of guarded at priorities 0 and 1', timeoutMs: 5_000 });
    expect(await ejected()).toEqual([0, 1]);
    models.models.length = 0;
    // Both ejected: the request goes straight to the third pool, whose host is not ejected.
    expect((await gw.chat('/guarded/v1')).content).toBe('answered by m-three');
    expect(models.models).toEqual(['m-three']);
    // Envoy's outlier event names the address only, which the three members share: serve names each.
    await waitFor(() => ejectionLogs('ai/guarded').length === 2, { what: 'serve to log both ejections of guarded', timeoutMs: 5_000 });
    expect(ejectionLogs('ai/guarded').map((l) => [l['member'], l['priority']]).sort()).toEqual([['first', 0], ['second', 1]]);
    expect(await ejectionsOf('ai/guarded', 'first')).toBe(1);
    expect(await ejectionsOf('ai/guarded', 'second')).toBe(1);
  });

  it('names the ejected member of the second pool while the first pool\'s member, at the same address, is not ejected', async () => {
    models.limited.add('m-one');
    models.failing.add('m-two');
    for (let i = 0; i < 2; i++) expect((await gw.chat('/limited/v1')).content).toBe('answered by m-three');
    const ejected = async (): Promise<number[]> => (await gw.hosts('limited')).filter((h) => h.healthFlags.includes('failed_outlier_check')).map((h) => h.priority);
    await waitFor(async () => (await ejected()).length === 1, { what: 'Envoy to eject the member of limited at priority 1', timeoutMs: 5_000 });
    expect(await ejected()).toEqual([1]);
    const logged = await waitFor(() => ejectionLogs('ai/limited')[0], { what: 'serve to log the ejection in limited', timeoutMs: 5_000 });
    expect(logged).toMatchObject({ member: 'second', priority: 1 });
    expect(await ejectionsOf('ai/limited', 'second')).toBe(1);
    expect(await ejectionsOf('ai/limited', 'first')).toBe(0);
  });
});

describe('an edit that makes two pools share an address, then parts them again', () => {
  const hostsOf = async (backend: string): Promise<string> =>
    (await gw.hosts(backend)).map((h) => `${h.priority} ${h.address}:${h.port}`).sort().join(', ');

  it('moves the cluster to one host per pool and back, and failover follows', async () => {
    const shared = `0 127.0.0.1:${models.port}, 1 127.0.0.1:${models.port}`;
    const apart = `0 127.0.0.1:${models.port}, 1 127.0.0.2:${models.port}`;
    expect(await hostsOf('edited')).toBe(apart);

    gw.write('edited.yaml', [twoModels('edited', '127.0.0.1')]);
    await waitFor(async () => (await hostsOf('edited')) === shared, { what: `Envoy cluster of edited to have hosts ${shared}` });
    models.failing.add('m-one');
    expect((await gw.chat('/edited/v1')).content).toBe('answered by m-two');
    expect(models.models).toEqual(['m-one', 'm-two']);

    gw.write('edited.yaml', [twoModels('edited', '127.0.0.1', '127.0.0.2')]);
    await waitFor(async () => (await hostsOf('edited')) === apart, { what: `Envoy cluster of edited to have hosts ${apart}` });
  });
});
