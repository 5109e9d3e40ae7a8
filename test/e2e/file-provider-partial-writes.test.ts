import { appendFileSync, rmSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { FakeProvider } from '../../examples/demo/fake-provider.js';
import { TypeUrl } from '../../src/envoy/resources.js';
import {
  aiBackend,
  clusterName,
  gatewayManifests,
  httpRoute,
  staticBackend,
  startGatewayFixture,
  type FakeMember,
  type GatewayFixture,
  type Manifest,
} from '../support/gateway-fixture.js';
import { steadyStream } from '../support/steady-stream.js';
import { E2E_LOAD_MARGIN_MS, logTiming, WATCHED_CHANGE_MS } from '../support/timing.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * A writer that truncates a file and writes it later (`cat > file`, a large `cp`, some editors'
 * save) must not take the file's routes and clusters out of Envoy in between: serve holds what
 * the file served until it is written or has stayed empty for the settle time (1 s), and removes
 * the objects of a deleted file at once. Watched at the controller's cache (every configuration
 * it published) and at the real Envoy (its clusters, and a stream of requests).
 */

const SETTLE_MS = 1_000;
const RATE_PER_SECOND = 20;

let gw: GatewayFixture;
let alpha: FakeProvider;
let bravo: FakeProvider;
let alphaMember: FakeMember;
let bravoMember: FakeMember;
/** Every configuration the controller published since the fixture was up: which clusters it had, and when. */
const published: { at: number; clusters: Set<string> }[] = [];

function chatFile(priorities: FakeMember[][]): Manifest[] {
  return [aiBackend({ name: 'chat', priorities }), httpRoute('chat', [{ path: '/v1', backend: 'chat' }])];
}

function extraFile(name: string): Manifest[] {
  return [staticBackend(name, { host: bravo.host, port: bravo.port }), httpRoute(name, [{ path: `/${name}`, backend: name }])];
}

function text(docs: Manifest[]): string {
  return docs.map((d) => stringify(d)).join('---\n');
}

beforeAll(async () => {
  gw = await startGatewayFixture({
    id: 'file-partial-writes',
    providers: ['alpha', 'bravo'],
    manifests: ({ listenerPort, fakes }) => {
      alpha = fakes['alpha']!;
      bravo = fakes['bravo']!;
      alphaMember = { name: 'alpha', fake: alpha, hostname: 'alpha.llm.test' };
      bravoMember = { name: 'bravo', fake: bravo, hostname: 'bravo.llm.test' };
      return {
        'gateway.yaml': gatewayManifests(listenerPort),
        'chat.yaml': chatFile([[alphaMember], [bravoMember]]),
        'left-empty.yaml': extraFile('left-empty'),
        'deleted.yaml': extraFile('deleted'),
        'emptied-with-deletion.yaml': extraFile('emptied-with-deletion'),
      };
    },
    waitForBackends: ['chat', 'left-empty', 'deleted', 'emptied-with-deletion'],
  });
  gw.controller.cache.watch(() => {
    const clusters = gw.controller.cache.snapshot(TypeUrl.cluster)?.resources;
    published.push({ at: Date.now(), clusters: new Set(clusters?.keys()) });
  });
});

afterAll(async () => {
  await gw?.stop();
});

/** Sends RATE_PER_SECOND chat requests a second while `during` runs and for `tailMs` after; the failures. */
async function failuresDuring(during: () => Promise<void>, tailMs: number): Promise<{ sent: number; failures: string[] }> {
  const outcomes = await steadyStream(() => gw.chat().then(
    () => undefined,
    (err: unknown) => (err instanceof Error ? err.message : String(err)),
  ), RATE_PER_SECOND, during, tailMs);
  return { sent: outcomes.length, failures: outcomes.filter((f): f is string => f !== undefined) };
}

it('keeps a file truncated and written 200 ms later in Envoy throughout (no configuration without it, no failed request) and serves the write', async () => {
  const file = join(gw.dir, 'chat.yaml');
  const removedBefore = (await gw.envoy.stat('cluster_manager.cluster_removed')) ?? 0;
  const from = published.length;
  let writtenAt = 0;
  const run = await failuresDuring(async () => {
    // The stream is under way before the truncation.
    await waitFor(() => alpha.received().length >= RATE_PER_SECOND / 4, { what: `alpha to be sent ${RATE_PER_SECOND / 4} requests before the truncation`, timeoutMs: E2E_LOAD_MARGIN_MS });
    // What a writer leaves between its open(O_TRUNC) and its write: a sleep on purpose, the time
    // the file stays empty, well inside the settle time (nothing may be removed meanwhile).
    truncateSync(file, 0);
    await sleep(200);
    appendFileSync(file, text(chatFile([[bravoMember], [alphaMember]])));
    writtenAt = Date.now();
  }, 1_000);
  await gw.waitForHosts('chat', new Map([[bravo.port, 0], [alpha.port, 1]]), WATCHED_CHANGE_MS);
  const lacking = published.slice(from).filter((p) => !p.clusters.has(clusterName('chat')));
  expect(lacking, 'configurations published without the chat cluster').toEqual([]);
  // The write was served: the new priority 0 got requests, through the watch (how soon is printed).
  const servedSinceWrite = (): boolean => bravo.received().some((r) => r.time >= writtenAt);
  await waitFor(async () => {
    if (servedSinceWrite()) return true;
    await gw.chat();
    return servedSinceWrite();
  }, {
    what: 'bravo to be sent a request after the write',
    timeoutMs: WATCHED_CHANGE_MS,
  });
  const firstOnBravo = bravo.received().find((r) => r.time >= writtenAt)?.time ?? Infinity;
  logTiming('first request on the written priority 0 after the write', firstOnBravo - writtenAt);
  expect(firstOnBravo - writtenAt).toBeLessThan(WATCHED_CHANGE_MS);
  expect(run.failures).toEqual([]);
  expect(run.sent).toBeGreaterThanOrEqual(RATE_PER_SECOND);
  expect((await gw.envoy.stat('cluster_manager.cluster_removed')) ?? 0).toBe(removedBefore);
});

it('removes the objects of a file left empty once it has stayed empty for the settle time, not before', async () => {
  const file = join(gw.dir, 'left-empty.yaml');
  const emptiedAt = Date.now();
  truncateSync(file, 0);
  const removal = await waitFor(() => published.find((p) => p.at >= emptiedAt && !p.clusters.has(clusterName('left-empty'))), {
    what: 'the configuration without the emptied file',
    timeoutMs: SETTLE_MS + E2E_LOAD_MARGIN_MS,
    intervalMs: 10,
  });
  expect(removal.at - emptiedAt, 'removed no sooner than the settle time').toBeGreaterThanOrEqual(SETTLE_MS);
  await waitFor(async () => (await gw.hosts('left-empty')).length === 0, { what: 'Envoy without the left-empty cluster', timeoutMs: E2E_LOAD_MARGIN_MS, intervalMs: 20 });
  // The other files' objects stayed.
  expect(removal.clusters.has(clusterName('chat'))).toBe(true);
});

it('removes the objects of a deleted file at once: before those of a file emptied at the same moment, which wait for the settle time', async () => {
  const deletedAt = Date.now();
  rmSync(join(gw.dir, 'deleted.yaml'));
  truncateSync(join(gw.dir, 'emptied-with-deletion.yaml'), 0);
  const without = (name: string) => () => published.find((p) => p.at >= deletedAt && !p.clusters.has(clusterName(name)));
  const removal = await waitFor(without('deleted'), { what: 'the configuration without the deleted file', timeoutMs: SETTLE_MS + E2E_LOAD_MARGIN_MS, intervalMs: 5 });
  const emptiedRemoval = await waitFor(without('emptied-with-deletion'), { what: 'the configuration without the emptied file', timeoutMs: SETTLE_MS + E2E_LOAD_MARGIN_MS, intervalMs: 5 });
  // At once rather than after the settle time, told by order, not by the clock: the first
  // configuration without the deleted file's objects still has those of the file emptied with it
  // (the test above shows those stay for the settle time). How soon each went is printed.
  logTiming('deleted file\'s objects removed', removal.at - deletedAt);
  logTiming('objects of the file emptied with it removed', emptiedRemoval.at - deletedAt);
  expect(removal.clusters.has(clusterName('emptied-with-deletion'))).toBe(true);
  expect(removal.at).toBeLessThan(emptiedRemoval.at);
  expect(removal.clusters.has(clusterName('chat'))).toBe(true);
  await waitFor(async () => (await gw.hosts('deleted')).length === 0, { what: 'Envoy without the deleted cluster', timeoutMs: E2E_LOAD_MARGIN_MS, intervalMs: 20 });
});
