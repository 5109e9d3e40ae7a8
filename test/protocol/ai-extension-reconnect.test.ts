import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CredentialStore, type XdsTarget } from '../../src/ai-extension/credentials.js';
import { TypeUrl, type XdsResources } from '../../src/envoy/resources.js';
import { silentLogger } from '../../src/observability/logger.js';
import { SnapshotCache } from '../../src/xds/cache.js';
import { XdsServer } from '../../src/xds/server.js';
import { readXdsClientTls, readXdsServerTls, xdsChannelCredentials, xdsServerCredentials } from '../../src/xds/tls.js';
import { createPki, type Pki } from '../support/certs.js';
import { freePort } from '../support/ports.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * The AI extension's credential client against the real ADS server going away and coming back:
 * it keeps the keys it has while the controller is gone, and is back, with a key rotated during
 * the outage, within a second of the controller's return, however long the outage was. (It used
 * to reuse one channel whose own back-off had grown to many seconds: 7-26 s late.)
 */

const CREDENTIAL = 'credential/ai/openai-key';
const OLD_KEY = 'sk-before-the-outage-0001';
const NEW_KEY = 'sk-rotated-during-outage-0002';
/** Longer than the old client's back-off sequence needed to exceed a second several times over. */
const OUTAGE_MS = 5_000;

function resources(key: string): XdsResources {
  return {
    listeners: [],
    routes: [],
    clusters: [],
    endpoints: [],
    secrets: [{ '@type': TypeUrl.secret, name: CREDENTIAL, generic_secret: { secret: { inline_string: key } } }],
  };
}

function serverWith(key: string): XdsServer {
  const cache = new SnapshotCache();
  cache.setResources(resources(key));
  return new XdsServer({ cache });
}

interface Outage {
  /** From the restarted server listening to the client's first update with the new key. */
  rotatedAfterMs: number;
  keptDuringOutage: string | undefined;
  awayMs: number;
}

/** One controller outage: serve OLD_KEY, stop the server for OUTAGE_MS, serve NEW_KEY from a new one. */
async function outage(target: XdsTarget, listen: (server: XdsServer) => Promise<void>): Promise<Outage> {
  const first = serverWith(OLD_KEY);
  await listen(first);
  const store = new CredentialStore({ nodeId: 'reconnect-test', logger: silentLogger() });
  try {
    store.start(target);
    expect(await store.resolve(CREDENTIAL, 10_000)).toBe(OLD_KEY);
    await waitFor(() => store.disconnectedForMs() === 0, { what: 'the credential client to count itself connected' });

    await first.stop();
    await waitFor(() => store.disconnectedForMs() > 0, { what: 'the credential client to notice the controller left' });
    await sleep(OUTAGE_MS);
    const keptDuringOutage = store.get(CREDENTIAL);
    const awayMs = store.disconnectedForMs();

    const rotated = new Promise<number>((resolve) => {
      store.on('updated', (names) => {
        if (names.includes(CREDENTIAL) && store.get(CREDENTIAL) === NEW_KEY) resolve(performance.now());
      });
    });
    const second = serverWith(NEW_KEY);
    await listen(second);
    const back = performance.now();
    try {
      const at = await Promise.race([rotated, sleep(15_000).then(() => Number.NaN)]);
      return { rotatedAfterMs: at - back, keptDuringOutage, awayMs };
    } finally {
      await second.stop();
    }
  } finally {
    await store.stop();
  }
}

describe('credential client across a controller outage', () => {
  let pki: Pki;
  let dir: string;
  beforeAll(() => {
    pki = createPki('reconnect');
    dir = mkdtempSync(join(tmpdir(), 'switchyard-reconnect-'));
  });
  afterAll(() => {
    pki?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it("over serve's Unix socket: keeps the old key while away, has the rotated one within a second of the return", async () => {
    const socket = join(dir, 'ads.sock');
    const result = await outage({ socket }, async (server) => {
      await server.start({ port: 0, host: '127.0.0.1' });
      await server.listenUnix(socket);
    });
    expect(result.keptDuringOutage).toBe(OLD_KEY);
    expect(result.awayMs).toBeGreaterThanOrEqual(OUTAGE_MS);
    expect(result.rotatedAfterMs).toBeLessThan(1_000);
    process.stderr.write(`unix socket: rotated key ${result.rotatedAfterMs.toFixed(0)} ms after the server was back (outage ${result.awayMs} ms)\n`);
  });

  it('over mTLS TCP (the sidecar in a cluster): the same', async () => {
    const serverDir = pki.issue('controller', { san: ['IP:127.0.0.1'], usage: ['serverAuth'] });
    // The role the server recognises the extension by (a URI SAN), where the server checks it.
    const clientDir = pki.issue('ai-extension', { san: ['URI:spiffe://switchyard.dev/role/ai-extension'], usage: ['clientAuth'] });
    const port = await freePort();
    const credentials = xdsServerCredentials(readXdsServerTls(serverDir));
    const result = await outage({ host: '127.0.0.1', port, credentials: xdsChannelCredentials(readXdsClientTls(clientDir)) }, async (server) => {
      await server.start({ port, host: '127.0.0.1', credentials });
    });
    expect(result.keptDuringOutage).toBe(OLD_KEY);
    expect(result.awayMs).toBeGreaterThanOrEqual(OUTAGE_MS);
    expect(result.rotatedAfterMs).toBeLessThan(1_000);
    process.stderr.write(`mTLS TCP: rotated key ${result.rotatedAfterMs.toFixed(0)} ms after the server was back (outage ${result.awayMs} ms)\n`);
  });
});
